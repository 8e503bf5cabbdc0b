"""The main job: baseline + follow-up crops of one joint -> narrowing with uncertainty and QA."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence, Union

import numpy as np

from .version import __version__
from .errors import JsnqInputError, WeightsUnavailableError
from .geometry import Similarity, px_to_mm
from .intensity import normalise
from .io import Image, load_image, load_labels
from .jsn import narrowing, systematic_se_px
from .jsw import JointSpaceWidth
from .quality import ReliabilityThresholds, ResidualMaps, assess, label_disagreement_px, residual_maps
from .register.classical import BoneFit, RegistrationOptions, register_bones
from .segment.classical import joint_space_line, labels_from_line

__all__ = ["BoneMotion", "Measurement", "measure", "measure_many", "series", "SeriesResult", "ENGINES", "SEGMENTERS", "jsw_disagreement"]

ImageLike = Union[str, os.PathLike, np.ndarray, Image]
ENGINES = ("auto", "classical", "deep", "hybrid")
SEGMENTERS = ("auto", "network", "classical")
#: Two visits whose pixel spacings differ by more than this fraction are refused.
SPACING_TOLERANCE = 0.01
#: Forward and backward narrowings "disagree grossly" beyond
#: max(DIRECTION_DISAGREEMENT_MIN_PX, DIRECTION_DISAGREEMENT_SIGMAS x the SE of their sum).
DIRECTION_DISAGREEMENT_MIN_PX = 0.3
DIRECTION_DISAGREEMENT_SIGMAS = 4.0
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
        narrowing_px: displacement of the upper bone towards the lower bone at the joint's
            anchor, measured half-way between the visits
            (:func:`~jsnq.geometry.symmetric_narrowing_px`), px; positive = the joint space narrowed.
        narrowing_mm: the same in mm, None when the pixel spacing is unknown.
        narrowing_se_px, narrowing_se_mm: standard errors.
        dy_difference_px: the paper's ``dy_upper - dy_lower``.
        spacing_mm: pixel spacing used for mm, or None.
        upper, lower: per-bone motions and diagnostics.
        reliable: False when any check failed; ``reasons`` says which.
        engine, segmenter: what produced the result ("given", "network" or "classical").
        jsw_baseline, jsw_followup: joint space width of each visit from the network's bone
            masks (None unless the network segmented the baseline).
        point_px, followup_point_px: the anchor in each crop (the follow-up's may be None).
        narrowing_forward_px, narrowing_backward_px: the two directions when the follow-up
            had labels too (``narrowing_px`` is then ``(forward - backward) / 2``); None otherwise.
        label_disagreement_px: median distance between the baseline's split line and the
            follow-up's carried into the baseline frame
            (:func:`~jsnq.quality.label_disagreement_px`); without follow-up labels, between
            the given baseline labels and the network's (``check_labels``); else None.
        inputs: how it was asked for (label sources, split_masks, spacing_mm, segmenter):
            what ``jsnq report`` needs to measure it again from the files.
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
    point_px: tuple[float, float]
    followup_point_px: tuple[float, float] | None
    narrowing_forward_px: float | None
    narrowing_backward_px: float | None
    label_disagreement_px: float | None
    inputs: dict = field(repr=False, compare=False)
    upper_transform: Similarity = field(repr=False)
    lower_transform: Similarity = field(repr=False)
    baseline: np.ndarray = field(repr=False, compare=False)
    followup: np.ndarray = field(repr=False, compare=False)
    labels: np.ndarray = field(repr=False, compare=False)
    followup_labels: np.ndarray | None = field(repr=False, compare=False)

    @functools.cached_property
    def residuals(self) -> ResidualMaps:
        """The residual maps before and after registration, computed on first use (figures and
        reports need them; a batch of numbers does not) from the stored crops and transforms."""
        return residual_maps(self.baseline.astype(np.float64), self.followup.astype(np.float64), self.labels,
                             self.upper_transform, self.lower_transform)

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
            "narrowing_forward_px": self.narrowing_forward_px,
            "narrowing_backward_px": self.narrowing_backward_px,
            "label_disagreement_px": self.label_disagreement_px,
            "point_px": list(self.point_px),
            "followup_point_px": None if self.followup_point_px is None else list(self.followup_point_px),
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
            "inputs": self.inputs,
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


def _shipped_regnet(required: bool):
    """The shipped registration network, or None when ``required`` is False and it cannot load."""
    from .register.network import shipped_regnet

    try:
        return shipped_regnet()
    except WeightsUnavailableError:
        if required:
            raise
        return None


def _register(engine: str, b: np.ndarray, f: np.ndarray, labels: np.ndarray, options: RegistrationOptions | None,
              inits: tuple[Similarity, Similarity] | None = None):
    """Run ``engine`` (``auto`` resolved here) -> (Registration, engine used); ``inits``: the
    network's transforms when already predicted (batched)."""
    if inits is None and engine != "classical":
        model = _shipped_regnet(required=engine != "auto")
        if model is not None:
            from .register.network import predict_similarities

            inits = predict_similarities(model, b, f, labels)
    if inits is None:
        return register_bones(b, f, labels, options=options), "classical"
    # The hybrid refines each bone from the network's transform through the classical
    # engine's per-bone levels (sigma 2 px, then full resolution), skipping its global search:
    # from the network's ~2 deg / ~2 px the coarse level converges in fewer iterations than
    # full resolution alone.
    used = "hybrid" if engine == "auto" else engine
    return register_bones(b, f, labels, inits=inits, refine=used == "hybrid", options=options), used


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
            thresholds: ReliabilityThresholds | None = None, point: tuple[float, float] | None = None,
            followup_point: tuple[float, float] | None = None, symmetric: bool = True,
            check_labels: bool = True) -> Measurement:
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
        engine: ``"classical"`` (global search + per-bone Gauss-Newton), ``"deep"`` (the
            registration network alone, as in the paper), ``"hybrid"`` (the network's
            per-bone transforms refined by Gauss-Newton at full resolution) or ``"auto"``
            (hybrid when the shipped network loads, else classical).
        segmenter: ``"auto"``, ``"network"`` or ``"classical"`` (used only when no baseline
            labels are given). ``"network"``: the shipped UNet++ segments both visits' bones;
            the baseline's labels split the crop on the midline between its bone masks, and
            each visit's joint space width is reported. ``"auto"``: the network when its weights
            load and it finds both bones, else the classical joint-space line.
        options: registration options.
        thresholds: reliability thresholds.
        point, followup_point: the joint's anatomical anchor ``(x, y)`` in each crop, where
            the narrowing is evaluated (:func:`~jsnq.geometry.symmetric_narrowing_px`). With
            relative bone rotation the narrowing varies along the joint, so the anchor must
            move with the bones, not with the crop window. Default: each visit's joint
            centre from the network's bone masks when the network segmented it, else the
            crop centre (baseline) and none (follow-up).
        symmetric: when the follow-up has labels (given, or from the network), also register
            it back onto the baseline and report the mean of the two directions (exactly
            antisymmetric under swapping the visits), with their disagreement in the SE and
            flagged when gross. False: one direction only (half the time).
        check_labels: with baseline labels but none for the follow-up, compare the given
            split line with the midline between the bones the segmentation network finds in
            the baseline (when its weights load and ``segmenter`` is not ``"classical"``;
            about 25 ms) and flag a gross disagreement. With both visits' labels the two
            visits' split lines are compared instead, at no cost.
    """
    engine = _choose(engine, ENGINES, "engine")
    prepared = _prepare(baseline, followup, baseline_labels=baseline_labels, followup_labels=followup_labels,
                        split_masks=split_masks, spacing_mm=spacing_mm, segmenter=segmenter, point=point,
                        followup_point=followup_point, symmetric=symmetric, check_labels=check_labels)
    return _finish(prepared, engine, options, thresholds)


def measure_many(jobs: Sequence[Mapping[str, Any]], *, engine: str = "auto", segmenter: str = "auto",
                 batch_size: int = 16, options: RegistrationOptions | None = None,
                 thresholds: ReliabilityThresholds | None = None) -> Iterator[Measurement | Exception]:
    """:func:`measure` for many pairs, with the registration network run on batches.

    Args:
        jobs: one mapping per pair with the keyword arguments of :func:`measure`
            (``baseline``, ``followup`` and optionally ``baseline_labels``, ``followup_labels``,
            ``split_masks``, ``spacing_mm``).
        batch_size: pairs per batched forward pass of the registration network.

    Yields:
        per job, in order, its :class:`Measurement` or the exception that stopped it (a
        ``ValueError`` such as :class:`~jsnq.errors.JsnqInputError` for bad input): one bad
        pair does not stop the others.
    """
    engine = _choose(engine, ENGINES, "engine")
    segmenter = _choose(segmenter, SEGMENTERS, "segmenter")
    for start in range(0, len(jobs), max(1, batch_size)):
        chunk: list[_Prepared | Exception] = []
        for job in jobs[start:start + max(1, batch_size)]:
            try:
                chunk.append(_prepare(segmenter=segmenter, **job))
            except Exception as err:  # reported per pair; the batch goes on
                chunk.append(err)
        ok = [p for p in chunk if isinstance(p, _Prepared)]
        inits: dict[tuple[int, int], tuple[Similarity, Similarity]] = {}
        model = None if engine == "classical" or not ok else _shipped_regnet(required=engine != "auto")
        if model is not None:
            from .register.network import predict_similarities_batch

            todo = [((id(p), 0), (p.b, p.f, p.labels)) for p in ok]
            todo += [((id(p), 1), (p.f, p.b, p.fol_labels)) for p in ok if p.symmetric and p.fol_labels is not None]
            for (key, _), init in zip(todo, predict_similarities_batch(model, [t for _, t in todo])):
                inits[key] = init
        for p in chunk:
            if isinstance(p, Exception):
                yield p
                continue
            try:
                result: Measurement | Exception = _finish(p, engine, options, thresholds, inits=inits.get((id(p), 0)),
                                                          backward_inits=inits.get((id(p), 1)))
            except Exception as err:  # reported per pair; the batch goes on
                result = err
            yield result


@dataclass
class _Prepared:
    """A pair loaded, checked and labelled, ready to register."""

    base: Image
    fol: Image
    spacing: float | None
    labels: np.ndarray
    fol_labels: np.ndarray | None
    segmenter: str
    seg_base: Any
    seg_fol: Any
    b: np.ndarray
    f: np.ndarray
    point: tuple[float, float] | None = None
    followup_point: tuple[float, float] | None = None
    inputs: dict = field(default_factory=dict)
    symmetric: bool = True
    label_reference: np.ndarray | None = None  # the network's labels of the baseline, to check given ones


def _prepare(baseline: ImageLike, followup: ImageLike, *, baseline_labels: ImageLike | None = None,
             followup_labels: ImageLike | None = None, split_masks: bool = False, spacing_mm: float | None = None,
             segmenter: str = "auto", point: tuple[float, float] | None = None,
             followup_point: tuple[float, float] | None = None, segment_cache: dict | None = None,
             symmetric: bool = True, check_labels: bool = True) -> _Prepared:
    """Load, check and label a pair. ``segment_cache`` (``id(image array) -> result``) lets a
    series segment each visit once."""
    segmenter = _choose(segmenter, SEGMENTERS, "segmenter")

    def seg(img: Image, required: bool):
        if segment_cache is None:
            return _network_segment(img, required)
        key = id(img.array)  # load_image(Image) makes a new Image around the same array
        if key not in segment_cache:
            segment_cache[key] = _network_segment(img, required)
        return segment_cache[key]

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
            seg_base = seg(base, segmenter == "network")
        if seg_base is not None:
            labels = seg_base.labels
            used_segmenter = "network"
            seg_fol = seg(fol, False)
        else:
            labels = labels_from_line(joint_space_line(base.array), shape)
            used_segmenter = "classical"
    fol_labels = (load_labels(followup_labels, shape=shape, split_mask=split_masks)
                  if followup_labels is not None else None)
    if fol_labels is None and seg_fol is not None:
        fol_labels = seg_fol.labels
    reference = None
    if check_labels and baseline_labels is not None and fol_labels is None and segmenter != "classical":
        checked = seg(base, False)
        reference = checked.labels if checked is not None else None
    if point is None and seg_base is not None and seg_base.jsw is not None:
        point = seg_base.jsw.centre_px
    if followup_point is None and seg_fol is not None and seg_fol.jsw is not None:
        followup_point = seg_fol.jsw.centre_px
    inputs = {"baseline_labels": _source_of(baseline_labels), "followup_labels": _source_of(followup_labels),
              "split_masks": bool(split_masks), "spacing_mm": spacing_mm, "segmenter": segmenter,
              "check_labels": bool(check_labels)}
    return _Prepared(base, fol, spacing, labels, fol_labels, used_segmenter, seg_base, seg_fol,
                     normalise(base.array), normalise(fol.array), point, followup_point, inputs, symmetric,
                     reference)


def _source_of(value: Any) -> str | None:
    """A label input as recorded in the results: its path, "<array>", or None."""
    if value is None:
        return None
    if isinstance(value, Image):
        return value.source
    if isinstance(value, np.ndarray):
        return "<array>"
    return os.fspath(value)


def _finish(p: _Prepared, engine: str, options: RegistrationOptions | None, thresholds: ReliabilityThresholds | None,
            *, inits: tuple[Similarity, Similarity] | None = None,
            backward_inits: tuple[Similarity, Similarity] | None = None) -> Measurement:
    base, fol, spacing, labels, used_segmenter = p.base, p.fol, p.spacing, p.labels, p.segmenter
    seg_base, seg_fol, fol_labels, b, f = p.seg_base, p.seg_fol, p.fol_labels, p.b, p.f
    try:
        reg, used_engine = _register(engine, b, f, labels, options, inits)
        back = None
        if p.symmetric and fol_labels is not None:
            back, _ = _register(used_engine, f, b, fol_labels, options, backward_inits)
    except ValueError as err:
        if isinstance(err, (JsnqInputError, WeightsUnavailableError)):
            raise
        raise JsnqInputError(base.source, f"registration failed: {err}") from None
    floor = systematic_se_px(used_segmenter, used_engine)
    nar = narrowing(reg.upper.transform, reg.lower.transform, reg.upper.covariance, reg.lower.covariance,
                    point=p.point, followup_point=p.followup_point, systematic_px=floor)
    forward = backward = None
    direction_reason = None
    if back is not None:
        # Inverse consistency: the follow-up registered back onto the baseline, with its own
        # labels, measures the same narrowing with the opposite sign. The two are averaged
        # (swapping the visits then negates the result exactly); their disagreement is the
        # part of the error that depends on the direction (labels, fit regions), so half of
        # it joins the standard error, and a gross one is flagged.
        nb = narrowing(back.upper.transform, back.lower.transform, back.upper.covariance, back.lower.covariance,
                       point=p.followup_point, followup_point=p.point, systematic_px=floor)
        forward, backward = nar.narrowing_px, nb.narrowing_px
        gap = forward + backward
        se_one = math.sqrt(0.5 * (nar.se_px ** 2 + nb.se_px ** 2))
        nar = dataclasses.replace(nar, narrowing_px=0.5 * (forward - backward),
                                  se_px=math.sqrt(se_one ** 2 + (0.5 * gap) ** 2))
        tol = max(DIRECTION_DISAGREEMENT_MIN_PX, DIRECTION_DISAGREEMENT_SIGMAS * math.sqrt(2.0) * se_one)
        if not abs(gap) <= tol:
            direction_reason = (f"forward and backward registrations disagree: {forward:+.2f} px vs "
                                f"{-backward:+.2f} px (difference {gap:+.2f} px > {tol:.2f} px)")
    reliable, reasons = assess({"upper": reg.upper, "lower": reg.lower}, nar.narrowing_px, nar.se_px, thresholds)
    if direction_reason is not None:
        reliable, reasons = False, (*reasons, direction_reason)
    label_gap = None
    limit = (thresholds or ReliabilityThresholds()).max_label_disagreement_px
    if fol_labels is not None:
        # Both visits' labels should follow the same joint space: carried into the baseline
        # frame by the bones' motions, the follow-up's split line lands on the baseline's.
        label_gap = label_disagreement_px(labels, fol_labels, reg.upper.transform, reg.lower.transform)
        what = "the follow-up's split line lies {:.1f} px from the baseline's after registration"
    elif p.label_reference is not None:
        # Given baseline labels only: their split line against the network's midline.
        identity = Similarity.identity()
        label_gap = label_disagreement_px(labels, p.label_reference, identity, identity)
        what = "the given split line lies {:.1f} px from the midline between the bones the network finds"
    if label_gap is not None and not math.isfinite(label_gap):
        label_gap = None  # no split line to compare
    if label_gap is not None and label_gap > limit:
        reliable, reasons = False, (*reasons, f"labels disagree: {what.format(label_gap)} (> {limit} px); "
                                              "check that the labels follow the joint space")
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
        engine=used_engine,
        segmenter=used_segmenter,
        baseline_source=base.source,
        followup_source=fol.source,
        jsw_baseline=jsw_b,
        jsw_followup=jsw_f,
        point_px=nar.point,
        followup_point_px=p.followup_point,
        narrowing_forward_px=forward,
        narrowing_backward_px=backward,
        label_disagreement_px=label_gap,
        inputs=p.inputs,
        upper_transform=reg.upper.transform,
        lower_transform=reg.lower.transform,
        baseline=b.astype(np.float32),
        followup=f.astype(np.float32),
        labels=labels,
        followup_labels=fol_labels,
    )


def _with_spacing(jsw: JointSpaceWidth, spacing_mm: float) -> JointSpaceWidth:
    return dataclasses.replace(jsw, spacing_mm=spacing_mm, mean_mm=px_to_mm(jsw.mean_px, spacing_mm),
                               min_mm=px_to_mm(jsw.min_px, spacing_mm))


# -- series ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeriesResult:
    """One joint across N visits (in time order).

    Attributes:
        sources: the visits' file names.
        dates: ISO dates per visit, or None.
        spacing_mm: common pixel spacing, or None (results in px only).
        trajectory: the fitted cumulative narrowing per visit (:class:`~jsnq.trajectory.Trajectory`).
        measurements: ``{(i, j): Measurement}`` for every ordered pair that could be measured.
        errors: ``{(i, j): message}`` for the pairs that could not.
        inputs: how it was asked for (label sources, settings): what ``jsnq report`` needs.
    """

    sources: tuple[str, ...]
    dates: tuple[str, ...] | None
    spacing_mm: float | None
    trajectory: Any
    measurements: dict[tuple[int, int], Measurement] = field(repr=False)
    errors: dict[tuple[int, int], str]
    inputs: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def years(self) -> np.ndarray | None:
        """Time since the first visit in years (365.25 days), when dates are known."""
        if self.dates is None:
            return None
        import datetime as _dt

        d = [_dt.date.fromisoformat(x) for x in self.dates]
        return np.array([(x - d[0]).days / 365.25 for x in d])

    def to_dict(self) -> dict[str, Any]:
        t = self.trajectory
        visits = []
        for k, src in enumerate(self.sources):
            visits.append({
                "visit": k, "source": src, "date": None if self.dates is None else self.dates[k],
                "narrowing_px": float(t.narrowing_px[k]), "se_px": float(t.se_px[k]),
                "narrowing_mm": px_to_mm(float(t.narrowing_px[k]), self.spacing_mm),
                "se_mm": px_to_mm(float(t.se_px[k]), self.spacing_mm),
                "flag": t.flagged_visits.get(k)})
        return _json_safe({
            "jsnq_version": __version__, "kind": "series", "spacing_mm": self.spacing_mm, "visits": visits,
            "trajectory": t.to_dict(),
            "pairs": [{"baseline": i, "followup": j, **m.to_dict()} for (i, j), m in sorted(self.measurements.items())],
            "errors": [{"baseline": i, "followup": j, "error": e} for (i, j), e in sorted(self.errors.items())],
            "inputs": self.inputs,
        })


def series(visits: Sequence[ImageLike], *, labels: Sequence[ImageLike | None] | None = None,
           dates: Sequence[str] | None = None, split_masks: bool = False, spacing_mm: float | None = None,
           engine: str = "auto", segmenter: str = "auto", options: RegistrationOptions | None = None,
           thresholds: ReliabilityThresholds | None = None,
           points: Sequence[tuple[float, float] | None] | None = None) -> SeriesResult:
    """Follow one joint across visits: measure every ordered pair, fit one trajectory.

    Args:
        visits: the crops of one joint, in time order (paths, arrays or Images), same size.
        labels: per visit, its label image (1 = upper side, 2 = lower side) or None; a
            visit's labels are used when it is the baseline of a pair.
        dates: per visit an ISO date (``YYYY-MM-DD``), increasing; optional.
        split_masks, spacing_mm, engine, segmenter, options, thresholds: as for :func:`measure`.
        points: per visit, the joint's anatomical anchor ``(x, y)`` (see :func:`measure`).
            Default: each visit's joint centre from the network's bone masks (also when
            labels are given), so that every pair is read at the same anatomical place and the
            pairs add up; the crop centre when the network cannot run (``segmenter="classical"``).

    Returns:
        A :class:`SeriesResult`; pairs that fail are recorded in ``errors`` and left out of
        the fit (a visit left without any pair is flagged).

    Raises:
        JsnqInputError: fewer than two visits, a bad visit image, dates out of order, or
            no pair could be measured.
    """
    from .trajectory import PairEstimate, fit_trajectory

    engine = _choose(engine, ENGINES, "engine")
    segmenter = _choose(segmenter, SEGMENTERS, "segmenter")
    if len(visits) < 2:
        raise JsnqInputError("series", f"needs at least two visits, got {len(visits)}")
    if labels is not None and len(labels) != len(visits):
        raise JsnqInputError("series", f"{len(labels)} label images for {len(visits)} visits")
    if dates is not None:
        import datetime as _dt

        if len(dates) != len(visits):
            raise JsnqInputError("series", f"{len(dates)} dates for {len(visits)} visits")
        try:
            parsed = [_dt.date.fromisoformat(str(d)) for d in dates]
        except ValueError as err:
            raise JsnqInputError("series", f"bad date: {err} (use YYYY-MM-DD)") from None
        if any(b < a for a, b in zip(parsed, parsed[1:])):
            raise JsnqInputError("series", "dates must be in time order, like the visits")
    images = [load_image(v, spacing_mm=spacing_mm, name=None) for v in visits]
    lab = list(labels) if labels is not None else [None] * len(images)
    cache: dict = {}
    if points is not None and len(points) != len(images):
        raise JsnqInputError("series", f"{len(points)} anchor points for {len(images)} visits")
    anchors = list(points) if points is not None else [None] * len(images)
    if points is None and segmenter != "classical":
        for k, im in enumerate(images):
            seg = _network_segment(im, required=False)
            cache[id(im.array)] = seg
            if seg is not None and seg.jsw is not None:
                anchors[k] = seg.jsw.centre_px
    measurements: dict[tuple[int, int], Measurement] = {}
    errors: dict[tuple[int, int], str] = {}
    for i, j in ((i, j) for i in range(len(images)) for j in range(len(images)) if i != j):
        try:
            # One direction per ordered pair: the fit below combines J(i, j) and J(j, i) itself.
            prepared = _prepare(images[i], images[j], baseline_labels=lab[i], followup_labels=lab[j],
                                split_masks=split_masks, segmenter=segmenter, segment_cache=cache,
                                symmetric=False, point=anchors[i], followup_point=anchors[j])
            measurements[i, j] = _finish(prepared, engine, options, thresholds)
        except ValueError as err:
            errors[i, j] = " ".join(str(err).split())
    pairs = []
    for i, j in ((i, j) for i in range(len(images)) for j in range(i + 1, len(images))):
        f, b = measurements.get((i, j)), measurements.get((j, i))
        if f is None and b is None:
            continue
        fwd = f.narrowing_px if f is not None else -b.narrowing_px
        bwd = b.narrowing_px if b is not None else -f.narrowing_px
        se = max(m.narrowing_se_px for m in (f, b) if m is not None)
        pairs.append(PairEstimate(i, j, 0.5 * (fwd - bwd), se, fwd, bwd,
                                  all(m is not None and m.reliable for m in (f, b))))
    if not pairs:
        first = next(iter(errors.values()), "no pair measured")
        raise JsnqInputError("series", f"no pair of visits could be measured ({first})")
    spacing = next((m.spacing_mm for m in measurements.values() if m.spacing_mm is not None), None)
    return SeriesResult(sources=tuple(im.source for im in images), dates=None if dates is None else tuple(map(str, dates)),
                        spacing_mm=spacing, trajectory=fit_trajectory(len(images), pairs),
                        measurements=measurements, errors=errors,
                        inputs={"visits": [im.source for im in images], "labels": [_source_of(x) for x in lab],
                                "dates": None if dates is None else list(map(str, dates)),
                                "split_masks": bool(split_masks), "spacing_mm": spacing_mm, "engine": engine,
                                "segmenter": segmenter})
