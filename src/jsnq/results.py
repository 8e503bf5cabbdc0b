"""The results jsnq returns and saves: one pair (:class:`Measurement`), one bone's motion
(:class:`BoneMotion`), one joint across visits (:class:`SeriesResult`), and their JSON.

Results are frozen dataclasses. ``to_dict()`` gives JSON-ready summaries without arrays, with the
jsnq version and the :class:`~jsnq.config.MeasureConfig` that measured them, so that any saved
number can be measured again exactly (:mod:`jsnq.report.rebuild`). A number that could not be
measured is written as ``None`` (JSON ``null``), never as a number.
"""

from __future__ import annotations

import datetime
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .geometry import Similarity, crop_centre, px_to_mm
from .jsw import JointSpaceWidth
from .quality import IMPRECISE, ResidualMaps, residual_maps
from .register.classical import BoneFit
from .version import __version__

__all__ = ["BoneMotion", "Measurement", "SeriesResult", "json_safe"]


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

    def transform(self, shape: Sequence[int]) -> Similarity:
        """The motion as a baseline -> follow-up :class:`Similarity` of a crop of ``shape``."""
        return Similarity(self.scale, math.radians(self.angle_deg), self.tx_px, self.ty_px, center=crop_centre(shape))

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
        reliable: False when any check failed; ``reasons`` says which. A large SE alone is
            no failed check (unless ``ReliabilityThresholds.max_se_px`` asks for that gate).
        notes: remarks that are not failed checks: a standard error above
            ``ReliabilityThresholds.note_se_px`` (:func:`~jsnq.quality.precision_notes`;
            ``precise`` is then False), bone masks that overlap on the projection
            (:func:`~jsnq.quality.jsw_check`).
        engine, segmenter: what produced the result; the labels "given" (the caller's),
            "profile" (a whole hand's split), "network" or "classical".
        jsw_baseline, jsw_followup: joint space width of each visit from the network's bone
            masks (None unless the network segmented the baseline).
        point_px, followup_point_px: the anchor in each crop (the follow-up's may be None):
            where the narrowing is read, the joint's articular centre by default.
        point_source: where ``point_px`` came from: "network" (the articular centre of the
            network's bone masks of the baseline, with or without given labels), "given" (by
            the caller) or "crop centre" (the fallback without the network); its SD
            (:data:`jsnq.jsn.READING_POINT_SD_PX`) times the narrowing's gradient along the
            joint is part of the SE.
        narrowing_forward_px, narrowing_backward_px: the two directions when the follow-up
            had labels too; None otherwise. With the inverse-consistent fit (the default) each
            is one Gauss-Newton step of that direction alone from the joint fit (what a one-way
            fit with that visit's labels would find, to first order), a diagnostic of how much
            the fit depends on the direction; with ``inverse_consistent=False`` the two separate
            fits, and ``narrowing_px`` is ``(forward - backward) / 2``.
        label_disagreement_px: median distance between the baseline's split line and the
            follow-up's carried into the baseline frame
            (:func:`~jsnq.quality.label_disagreement_px`); without follow-up labels, between
            the given baseline labels and the network's (``check_labels``); else None.
        inputs: what it was measured from (label sources, spacing_mm): with ``config``, what
            ``jsnq report`` needs to measure it again from the files.
        config: the :class:`~jsnq.config.MeasureConfig` it was measured with.
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
    config: Any = field(default=None, repr=False, compare=False)
    notes: tuple[str, ...] = ()
    point_source: str = "crop centre"

    @property
    def precise(self) -> bool:
        """No precision note: the SE is at most ``ReliabilityThresholds.note_se_px``."""
        return not any(n.startswith(IMPRECISE) for n in self.notes)

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

        return json_safe({
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
            "point_source": self.point_source,
            "spacing_mm": self.spacing_mm,
            "units": self.units,
            "reliable": self.reliable,
            "reasons": list(self.reasons),
            "precise": self.precise,
            "notes": list(self.notes),
            "engine": self.engine,
            "segmenter": self.segmenter,
            "jsw_baseline": None if self.jsw_baseline is None else self.jsw_baseline.to_dict(),
            "jsw_followup": None if self.jsw_followup is None else self.jsw_followup.to_dict(),
            "upper": bone(self.upper),
            "lower": bone(self.lower),
            "inputs": self.inputs,
            "config": None if self.config is None else self.config.to_dict(),
            "sign_convention": "positive narrowing = the joint space narrowed (upper bone moved towards the lower)",
        })


def json_safe(value: Any) -> Any:
    """Non-finite floats -> None, so that ``json.dumps`` writes standard JSON
    (:func:`jsnq.outputs.json_ready`, the one JSON sanitiser)."""
    from .outputs import json_ready

    return json_ready(value)



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
        inputs: what it was measured from (visits, label sources, dates, spacing).
        config: the :class:`~jsnq.config.MeasureConfig` it was measured with.

    A visit that no measured pair links to the first has NaN narrowing and SE, and its reason
    in ``trajectory.flagged_visits``: it is never written as a number.
    """

    sources: tuple[str, ...]
    dates: tuple[str, ...] | None
    spacing_mm: float | None
    trajectory: Any
    measurements: dict[tuple[int, int], Measurement] = field(repr=False)
    errors: dict[tuple[int, int], str]
    inputs: dict = field(default_factory=dict, repr=False, compare=False)
    config: Any = field(default=None, repr=False, compare=False)

    @property
    def years(self) -> np.ndarray | None:
        """Time since the first visit in years (365.25 days), when dates are known."""
        if self.dates is None:
            return None
        d = [datetime.date.fromisoformat(x) for x in self.dates]
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
        return json_safe({
            "jsnq_version": __version__, "kind": "series", "spacing_mm": self.spacing_mm, "visits": visits,
            "trajectory": t.to_dict(),
            "pairs": [{"baseline": i, "followup": j, **m.to_dict()} for (i, j), m in sorted(self.measurements.items())],
            "errors": [{"baseline": i, "followup": j, "error": e} for (i, j), e in sorted(self.errors.items())],
            "inputs": self.inputs,
            "config": None if self.config is None else self.config.to_dict(),
        })


