"""The main job: baseline + follow-up crops of one joint -> narrowing with uncertainty and QA."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from . import __version__
from .errors import JsnqInputError
from .geometry import Similarity, px_to_mm
from .io import Image, load_image, load_labels
from .jsn import narrowing, systematic_se_px
from .jsw import JointSpaceWidth
from .quality import ReliabilityThresholds, ResidualMaps, assess, residual_maps
from .register.classical import BoneFit, RegistrationOptions, register_bones
from .segment.classical import joint_space_line, labels_from_line

__all__ = ["BoneMotion", "Measurement", "measure", "ENGINES", "SEGMENTERS", "jsw_disagreement"]

ImageLike = Union[str, os.PathLike, np.ndarray, Image]
ENGINES = ("auto", "classical")
SEGMENTERS = ("auto", "network", "classical")
#: Two visits whose pixel spacings differ by more than this fraction are refused.
SPACING_TOLERANCE = 0.01
#: Standard error (px) of one visit's mean JSW from the network's masks: the robust SD
#: (1.4826 MAD) of its error against the true masks on the 187 validation crops, 1.07 px
#: (benchmarks/segmentation.py; the RMS, 2.5 px, is dominated by crops whose bones overlap).
JSW_SE_PX = 1.0
#: The JSW change and the registration's narrowing "disagree grossly" beyond
#: max(JSW_DISAGREEMENT_MIN_PX, JSW_DISAGREEMENT_SIGMAS x their combined standard error).
JSW_DISAGREEMENT_MIN_PX = 1.0
JSW_DISAGREEMENT_SIGMAS = 3.0


@dataclass(frozen=True)
class BoneMotion:
    """One bone's motion from baseline to follow-up, with its fit diagnostics.

    ``scale``, ``angle_deg`` (positive = clockwise as displayed), ``tx_px`` and ``ty_px``
    define the similarity about the crop centre (see :mod:`jsnq.geometry`).
    """

    scale: float
    angle_deg: float
    tx_px: float
    ty_px: float
    gain: float
    ncc_before: float
    ncc_after: float
    mse_before: float
    mse_after: float
    converged: bool
    at_bound: bool
    iterations: int

    @classmethod
    def from_fit(cls, fit: BoneFit) -> "BoneMotion":
        t = fit.transform
        return cls(scale=t.scale, angle_deg=t.angle_deg, tx_px=t.tx, ty_px=t.ty, gain=fit.gain,
                   ncc_before=fit.ncc_before, ncc_after=fit.ncc_after, mse_before=fit.mse_before,
                   mse_after=fit.mse_after, converged=fit.converged, at_bound=fit.at_bound,
                   iterations=fit.iterations)


@dataclass(frozen=True)
class Measurement:
    """Joint space narrowing between two visits of one joint.

    Attributes:
        narrowing_px: relative displacement of the upper bone towards the lower bone at the
            crop centre (baseline frame), px; positive = the joint space narrowed.
        narrowing_mm: the same in mm, None when the pixel spacing is unknown.
        narrowing_se_px, narrowing_se_mm: standard errors.
        dy_difference_px: the paper's ``dy_upper - dy_lower``.
        spacing_mm: pixel spacing used for mm, or None.
        upper, lower: per-bone motions and diagnostics.
        reliable: False when any check failed; ``reasons`` says which.
        engine, segmenter: what produced the result ("given", "network" or "classical").
        jsw_baseline, jsw_followup: joint space width of each visit from the network's bone
            masks (None unless the network segmented the baseline).
        baseline_source, followup_source: file names (or "<array>").
        baseline, followup, labels, followup_labels, residuals: arrays for figures and
            reports (not part of equality or ``to_dict``).
    """

    narrowing_px: float
    narrowing_mm: float | None
    narrowing_se_px: float
    narrowing_se_mm: float | None
    dy_difference_px: float
    spacing_mm: float | None
    upper: BoneMotion
    lower: BoneMotion
    reliable: bool
    reasons: tuple[str, ...]
    engine: str
    segmenter: str
    baseline_source: str
    followup_source: str
    jsw_baseline: JointSpaceWidth | None
    jsw_followup: JointSpaceWidth | None
    upper_transform: Similarity = field(repr=False)
    lower_transform: Similarity = field(repr=False)
    baseline: np.ndarray = field(repr=False, compare=False)
    followup: np.ndarray = field(repr=False, compare=False)
    labels: np.ndarray = field(repr=False, compare=False)
    followup_labels: np.ndarray | None = field(repr=False, compare=False)
    residuals: ResidualMaps = field(repr=False, compare=False)

    @property
    def units(self) -> str:
        return "mm" if self.spacing_mm is not None else "px"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays)."""
        def bone(b: BoneMotion) -> dict[str, Any]:
            return {k: getattr(b, k) for k in b.__dataclass_fields__}

        return _json_safe({
            "jsnq_version": __version__,
            "baseline": self.baseline_source,
            "followup": self.followup_source,
            "narrowing_px": self.narrowing_px,
            "narrowing_se_px": self.narrowing_se_px,
            "narrowing_mm": self.narrowing_mm,
            "narrowing_se_mm": self.narrowing_se_mm,
            "dy_difference_px": self.dy_difference_px,
            "spacing_mm": self.spacing_mm,
            "units": self.units,
            "reliable": self.reliable,
            "reasons": list(self.reasons),
            "engine": self.engine,
            "segmenter": self.segmenter,
            "jsw_baseline": None if self.jsw_baseline is None else self.jsw_baseline.to_dict(),
            "jsw_followup": None if self.jsw_followup is None else self.jsw_followup.to_dict(),
            "upper": bone(self.upper),
            "lower": bone(self.lower),
            "sign_convention": "positive narrowing = the joint space narrowed (upper bone moved towards the lower)",
        })


def _json_safe(value: Any) -> Any:
    """Non-finite floats -> None, so that ``json.dumps`` writes standard JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _choose(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def _common_spacing(base: Image, fol: Image) -> float | None:
    if base.spacing_mm is not None and fol.spacing_mm is not None:
        if abs(base.spacing_mm - fol.spacing_mm) > SPACING_TOLERANCE * base.spacing_mm:
            raise JsnqInputError(fol.source, f"pixel spacing {fol.spacing_mm:g} mm differs from the baseline's "
                                 f"{base.spacing_mm:g} mm; resample the crops to a common spacing first")
    return base.spacing_mm if base.spacing_mm is not None else fol.spacing_mm


def _normalise(a: np.ndarray) -> np.ndarray:
    """Scale to roughly [0, 1] by the 0.5-99.5 percentile range (the fit is gain-invariant)."""
    lo, hi = np.percentile(a, [0.5, 99.5])
    return ((a - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float64)


def jsw_disagreement(jsw_baseline: JointSpaceWidth | None, jsw_followup: JointSpaceWidth | None,
                     narrowing_px: float, se_px: float, *, scale: float = 1.0) -> str | None:
    """A reason string when the JSW change and the registration's narrowing disagree grossly.

    The JSW change is ``jsw_baseline - jsw_followup / scale`` (px, positive = narrowed; the
    follow-up's width is brought to the baseline's magnification by the bones' mean scale).
    It is a coarse cross-check: each visit's mean JSW from the network's masks errs by about
    :data:`JSW_SE_PX`, so the tolerance is ``max(JSW_DISAGREEMENT_MIN_PX, JSW_DISAGREEMENT_SIGMAS *
    sqrt(se_px**2 + 2 * JSW_SE_PX**2))``, about 4.3 px: 3 SD of the disagreement expected
    from the JSW's own error. On 126 real visit pairs of the validation joints the
    disagreement has a robust SD of 1.9 px and this flags 9 pairs (1 of the 77 that pass the
    other checks). None when they agree or a JSW is missing.
    """
    if jsw_baseline is None or jsw_followup is None or not math.isfinite(narrowing_px):
        return None
    change = jsw_baseline.mean_px - jsw_followup.mean_px / scale
    se = math.sqrt((se_px if math.isfinite(se_px) else 0.0) ** 2 + 2.0 * JSW_SE_PX ** 2)
    tol = max(JSW_DISAGREEMENT_MIN_PX, JSW_DISAGREEMENT_SIGMAS * se)
    if abs(change - narrowing_px) <= tol:
        return None
    return (f"JSW change {change:+.2f} px (network masks) disagrees with the registration's narrowing "
            f"{narrowing_px:+.2f} px by more than {tol:.2f} px: check the segmentation and the registration")


def _network_segment(image: Image, required: bool):
    """The network's segmentation of ``image``, or None when ``required`` is False and it fails."""
    from .segment.network import WeightsUnavailableError, segment

    try:
        return segment(image)
    except (WeightsUnavailableError, JsnqInputError, ValueError):
        if required:
            raise
        return None


def measure(baseline: ImageLike, followup: ImageLike, *, baseline_labels: ImageLike | None = None,
            followup_labels: ImageLike | None = None, split_masks: bool = False, spacing_mm: float | None = None,
            engine: str = "auto", segmenter: str = "auto", options: RegistrationOptions | None = None,
            thresholds: ReliabilityThresholds | None = None) -> Measurement:
    """Measure joint space narrowing between a baseline and a follow-up crop of one joint.

    Both crops must show the same joint in canonical orientation (finger up), have the same
    size and, when known, the same pixel spacing: jsnq refuses crops of different sizes
    rather than guessing how they correspond (crop both visits with the same box).

    Args:
        baseline, followup: paths or 2-D arrays [row, col] (or :class:`~jsnq.io.Image`).
        baseline_labels: label image in the baseline frame, 1 = upper bone side, 2 = lower
            bone side, 0 = ignore; or with ``split_masks`` a binary mask, non-zero = upper side.
            When None, the joint-space line is found automatically (``segmenter``).
        followup_labels: the same for the follow-up; validated and shown in figures (the
            fit itself uses the baseline's labels). When None and the network segmented the
            baseline, the network's labels of the follow-up are used for the figures.
        split_masks: read the label images as paper-style binary split masks.
        spacing_mm: pixel spacing; overrides the files' spacing. Without any, results are
            in pixels and the mm fields are None.
        engine: ``"auto"`` or ``"classical"``.
        segmenter: ``"auto"``, ``"network"`` or ``"classical"`` (used only when no baseline
            labels are given). ``"network"``: the shipped UNet++ segments both visits' bones;
            the baseline's labels split the crop on the midline between its bone masks, and
            each visit's joint space width is reported. ``"auto"``: the network when its weights
            load and it finds both bones, else the classical joint-space line.
        options: registration options.
        thresholds: reliability thresholds.
    """
    engine = _choose(engine, ENGINES, "engine")
    segmenter = _choose(segmenter, SEGMENTERS, "segmenter")
    base = load_image(baseline, spacing_mm=spacing_mm, name=None)
    fol = load_image(followup, spacing_mm=spacing_mm, name=None)
    if base.array.shape != fol.array.shape:
        raise JsnqInputError(fol.source, f"follow-up is {fol.array.shape[0]}x{fol.array.shape[1]} but the baseline is "
                             f"{base.array.shape[0]}x{base.array.shape[1]}; crop both visits to the same size")
    spacing = _common_spacing(base, fol)
    shape = base.array.shape
    seg_base = seg_fol = None
    if baseline_labels is not None:
        labels = load_labels(baseline_labels, shape=shape, split_mask=split_masks)
        used_segmenter = "given"
    else:
        if segmenter != "classical":
            seg_base = _network_segment(base, required=segmenter == "network")
        if seg_base is not None:
            labels = seg_base.labels
            used_segmenter = "network"
            seg_fol = _network_segment(fol, required=False)
        else:
            labels = labels_from_line(joint_space_line(base.array), shape)
            used_segmenter = "classical"
    fol_labels = (load_labels(followup_labels, shape=shape, split_mask=split_masks)
                  if followup_labels is not None else None)
    if fol_labels is None and seg_fol is not None:
        fol_labels = seg_fol.labels

    b, f = _normalise(base.array), _normalise(fol.array)
    try:
        reg = register_bones(b, f, labels, options=options)
    except ValueError as err:
        raise JsnqInputError(base.source, f"registration failed: {err}") from None
    nar = narrowing(reg.upper.transform, reg.lower.transform, reg.upper.covariance, reg.lower.covariance,
                    systematic_px=systematic_se_px(used_segmenter))
    maps = residual_maps(b, f, labels, reg.upper.transform, reg.lower.transform)
    reliable, reasons = assess({"upper": reg.upper, "lower": reg.lower}, nar.narrowing_px, nar.se_px, thresholds)
    jsw_b = seg_base.jsw if seg_base is not None else None
    jsw_f = seg_fol.jsw if seg_fol is not None else None
    if jsw_b is not None and spacing is not None and jsw_b.spacing_mm is None:
        jsw_b = _with_spacing(jsw_b, spacing)
    if jsw_f is not None and spacing is not None and jsw_f.spacing_mm is None:
        jsw_f = _with_spacing(jsw_f, spacing)
    mean_scale = math.sqrt(reg.upper.transform.scale * reg.lower.transform.scale)
    disagreement = jsw_disagreement(jsw_b, jsw_f, nar.narrowing_px, nar.se_px, scale=mean_scale)
    if disagreement is not None:
        reliable, reasons = False, (*reasons, disagreement)
    return Measurement(
        narrowing_px=nar.narrowing_px,
        narrowing_mm=px_to_mm(nar.narrowing_px, spacing),
        narrowing_se_px=nar.se_px,
        narrowing_se_mm=px_to_mm(nar.se_px, spacing),
        dy_difference_px=nar.dy_difference_px,
        spacing_mm=spacing,
        upper=BoneMotion.from_fit(reg.upper),
        lower=BoneMotion.from_fit(reg.lower),
        reliable=reliable,
        reasons=reasons,
        engine="classical",
        segmenter=used_segmenter,
        baseline_source=base.source,
        followup_source=fol.source,
        jsw_baseline=jsw_b,
        jsw_followup=jsw_f,
        upper_transform=reg.upper.transform,
        lower_transform=reg.lower.transform,
        baseline=b.astype(np.float32),
        followup=f.astype(np.float32),
        labels=labels,
        followup_labels=fol_labels,
        residuals=maps,
    )


def _with_spacing(jsw: JointSpaceWidth, spacing_mm: float) -> JointSpaceWidth:
    return dataclasses.replace(jsw, spacing_mm=spacing_mm, mean_mm=px_to_mm(jsw.mean_px, spacing_mm),
                               min_mm=px_to_mm(jsw.min_px, spacing_mm))
