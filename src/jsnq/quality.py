"""Residual ("loss") maps and every reliability check: the one place that decides when a
number is not to be used.

* :func:`assess`: the fits themselves (convergence, bounds, match, posture, plausibility; the SE
  only when a gate is asked for, ``ReliabilityThresholds.max_se_px``);
* :func:`precision_notes`: a large SE, reported beside the flag rather than as a failure;
* :func:`combine_directions`: the ONE rule that combines a pair measured both ways (forward
  with the baseline's labels, backward with the follow-up's), used by :func:`jsnq.measure`
  and :func:`jsnq.series` alike;
* :func:`label_check`: the labels follow the joint space;
* :func:`jsw_check` (a note), :func:`jsw_disagreement` (a check): the segmentation's joint
  space width is positive, and agrees with the registration.

Every check returns reason strings; a measurement is reliable when there are none. Reliability
and precision are separate: ``reliable=False`` means a check failed (mismatch, posture, labels,
convergence, an implausible value) and the number is not to be used; a large but honest standard
error is the measurement's precision, reported as its SE with a note, and the number stands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .geometry import Similarity
from .labels import split_line_points
from .register.warp import SplineImage

if TYPE_CHECKING:  # pragma: no cover
    from .jsw import JointSpaceWidth

__all__ = ["ResidualMaps", "residual_maps", "ReliabilityThresholds", "assess", "split_line_points",
           "label_disagreement_px", "label_check", "precision_notes", "Directions", "combine_directions", "jsw_check",
           "jsw_disagreement", "JSW_SE_PX"]

#: Forward and backward narrowings "disagree grossly" beyond
#: max(DIRECTION_DISAGREEMENT_MIN_PX, DIRECTION_DISAGREEMENT_SIGMAS x the SE of their sum).
DIRECTION_DISAGREEMENT_MIN_PX = 0.3
DIRECTION_DISAGREEMENT_SIGMAS = 4.0
#: Standard error (px) of one visit's mean JSW from the network's masks: the robust SD of its
#: error against the true masks on the validation crops (docs/benchmarks.md, "Figures behind
#: the defaults").
JSW_SE_PX = 1.0
#: The JSW change and the registration's narrowing "disagree grossly" beyond
#: max(JSW_DISAGREEMENT_MIN_PX, JSW_DISAGREEMENT_SIGMAS x their combined standard error).
JSW_DISAGREEMENT_MIN_PX = 1.0
JSW_DISAGREEMENT_SIGMAS = 3.0


@dataclass(frozen=True)
class ResidualMaps:
    """Per-pixel residuals on the bone sides, in units of each side's intensity SD.

    ``before`` compares the follow-up as acquired with the baseline, ``after`` the follow-up
    warped by each side's own similarity. Both are ``z(followup) - z(baseline)`` with ``z``
    the standardisation over that side, so ``mean(map**2) = 2 (1 - NCC)`` on each side.
    Pixels outside the labels, or mapped outside the follow-up, are NaN. ``warped`` is the
    follow-up in the baseline frame, each side through its own bone's similarity.
    """

    before: np.ndarray
    after: np.ndarray
    warped: np.ndarray


def _z(values: np.ndarray) -> np.ndarray:
    sd = float(np.nanstd(values))
    return (values - float(np.nanmean(values))) / (sd if sd > 0 else 1.0)


def residual_maps(baseline: np.ndarray, followup: np.ndarray, labels: np.ndarray,
                  upper: Similarity, lower: Similarity) -> ResidualMaps:
    """Residual maps of both sides before and after registration (baseline frame)."""
    shape = baseline.shape
    before = np.full(shape, np.nan, np.float32)
    after = np.full(shape, np.nan, np.float32)
    warped = np.full(shape, np.nan, np.float32)
    spline = SplineImage(followup)
    for lab, s in ((1, upper), (2, lower)):
        rows, cols = np.nonzero(labels == lab)
        vals, ok = spline.sample(s.apply(np.stack([cols, rows], axis=1).astype(float)))
        warped[rows[ok], cols[ok]] = vals[ok]
        before[rows, cols] = _z(followup[rows, cols]) - _z(baseline[rows, cols])
        r, c = rows[ok], cols[ok]
        after[r, c] = _z(vals[ok]) - _z(baseline[r, c])
    return ResidualMaps(before=before, after=after, warped=warped)


@dataclass(frozen=True)
class ReliabilityThresholds:
    """When a measurement is flagged unreliable (each reason is independent).

    Attributes:
        min_ncc_after: smallest acceptable NCC of either side after registration.
        max_se_px: a standard error above it is implausible for two visits of one joint and
            makes the measurement unreliable: it lies just above the largest SE of a real pair
            that passes the other checks and below those of crops of another joint
            (docs/benchmarks.md, "Reliability flag"). An SE below it is the measurement's
            precision, not a failure: above ``note_se_px`` it is a note. 0.25 px restores the
            former gate; None disables it.
        max_abs_narrowing_px: larger changes are implausible between two visits of a joint.
        max_relative_rotation_deg: a larger rotation of one bone relative to the other means
            the joint was positioned differently (flexion, deviation): the joint space then
            narrows on one side and widens on the other, and the narrowing at the crop centre
            depends strongly on where that centre falls on the joint.
        max_label_disagreement_px: largest acceptable median distance between the baseline's
            split line and the follow-up's, carried into the baseline frame by the two bones'
            motions (:func:`label_disagreement_px`), or without follow-up labels between the
            given split line and the segmentation network's.
            Labels that follow the joint space agree to a pixel or two whatever the motion;
            labels drawn in the wrong place (a split through a bone, another joint's labels)
            disagree by the misplacement (docs/benchmarks.md, "Figures behind the defaults").
        note_se_px: a standard error above it adds a precision note to the measurement
            (:func:`precision_notes`; ``Measurement.precise`` is then False); it does not
            make the measurement unreliable.
    """

    min_ncc_after: float = 0.8
    max_se_px: float | None = 0.33
    max_abs_narrowing_px: float = 6.0
    max_relative_rotation_deg: float = 5.0
    max_label_disagreement_px: float = 8.0
    note_se_px: float = 0.25


def label_disagreement_px(labels: np.ndarray, followup_labels: np.ndarray, upper: Similarity,
                          lower: Similarity) -> float:
    """Median distance (px) from the follow-up's split line, carried into the baseline frame,
    to the baseline's split line.

    A point of the joint space moves with neither bone alone, so each follow-up point ``q``
    goes to the mean of ``upper^-1(q)`` and ``lower^-1(q)``. NaN when either line is empty.
    """
    from scipy.spatial import cKDTree

    base_pts = split_line_points(labels)
    fol_pts = split_line_points(followup_labels)
    if not len(base_pts) or not len(fol_pts):
        return float("nan")
    mapped = 0.5 * (upper.inverse().apply(fol_pts) + lower.inverse().apply(fol_pts))
    dist, _ = cKDTree(base_pts).query(mapped)
    return float(np.median(dist))


def assess(fits: dict, narrowing_px: float, se_px: float,
           thresholds: ReliabilityThresholds | None = None) -> tuple[bool, tuple[str, ...]]:
    """The reliability flag and its reasons.

    Args:
        fits: ``{"upper": BoneFit, "lower": BoneFit}``.
        narrowing_px, se_px: the narrowing and its standard error.
        thresholds: :class:`ReliabilityThresholds`.
    """
    th = thresholds or ReliabilityThresholds()
    reasons: list[str] = []
    for name, fit in fits.items():
        if not fit.converged:
            reasons.append(f"{name} bone: optimisation did not converge")
        if fit.at_bound:
            reasons.append(f"{name} bone: motion at the plausibility bounds "
                           f"(scale {fit.transform.scale:.3f}, angle {fit.transform.angle_deg:.1f} deg)")
        if not (fit.ncc_after >= th.min_ncc_after):
            reasons.append(f"{name} bone: poor match after registration (NCC {fit.ncc_after:.3f} < {th.min_ncc_after})")
    if "upper" in fits and "lower" in fits:
        rel = fits["lower"].transform.inverse().compose(fits["upper"].transform).angle_deg
        if abs(rel) > th.max_relative_rotation_deg:
            reasons.append(f"joint posture changed: bones rotated {rel:+.1f} deg relative to each other "
                           f"(> {th.max_relative_rotation_deg} deg); the narrowing depends on the evaluation point")
    if th.max_se_px is not None and not (se_px <= th.max_se_px):
        reasons.append(f"uncertain: standard error {se_px:.3f} px > {th.max_se_px} px (implausible for two "
                       "visits of one joint: check the pair)")
    elif not math.isfinite(se_px):
        reasons.append("standard error is not finite")
    if not (abs(narrowing_px) <= th.max_abs_narrowing_px):
        reasons.append(f"implausible narrowing {narrowing_px:+.2f} px (|JSN| > {th.max_abs_narrowing_px} px)")
    if not math.isfinite(narrowing_px):
        reasons.append("narrowing is not finite")
    return (not reasons), tuple(reasons)


#: How a precision note begins (``Measurement.precise`` looks for it).
IMPRECISE = "imprecise:"


def precision_notes(se_px: float, thresholds: ReliabilityThresholds | None = None) -> tuple[str, ...]:
    """Notes on a measurement's precision: a standard error above ``note_se_px``.

    Not a failed check: the narrowing and its SE stand, and a trial weighs the measurement by
    its SE (a series' trajectory does). A non-finite SE is a failure, left to :func:`assess`.
    """
    th = thresholds or ReliabilityThresholds()
    if math.isfinite(se_px) and se_px > th.note_se_px:
        return (f"{IMPRECISE} standard error {se_px:.3f} px > {th.note_se_px} px (not a failed check: "
                "use the narrowing with its SE)",)
    return ()


@dataclass(frozen=True)
class Directions:
    """A pair measured both ways, combined (:func:`combine_directions`).

    Attributes:
        narrowing_px: ``(forward - backward) / 2``: exactly antisymmetric under swapping the visits.
        se_px: ``se_one``, the RMS of the two directions' SEs (the gap is not added: the
            directions' SEs already describe it, see :func:`combine_directions`).
        gap_px: ``forward + backward``, 0 for perfectly inverse-consistent fits.
        tolerance_px: the gap beyond which the two directions disagree grossly.
        reason: the reason string when they do, else None.
    """

    narrowing_px: float
    se_px: float
    gap_px: float
    tolerance_px: float
    reason: str | None


def combine_directions(forward_px: float, backward_px: float, forward_se_px: float,
                       backward_se_px: float) -> Directions:
    """Combine the forward (baseline labels) and backward (follow-up labels) narrowings of a pair.

    Inverse consistency: the follow-up registered back onto the baseline, with its own labels,
    measures the same narrowing with the opposite sign. The two are averaged (swapping the
    visits then negates the result exactly). The SE is ``se_one``, the RMS of the two SEs: the
    value for fully correlated directions, the conservative choice for two separate fits, whose
    scores are not paired. (The one inverse-consistent fit of :func:`jsnq.measure` measures the
    two directions' correlation instead, :func:`jsnq.jsn.inverse_consistent_narrowing`; it uses
    this rule only for the gross-gap check.)

    The gap ``forward + backward`` is *not* added to the SE: it is the difference of the two
    directions' errors, which their own SEs already describe, so adding it would count the same
    error twice (docs/method.md, "What the numbers mean").
    A gross gap, beyond ``max(DIRECTION_DISAGREEMENT_MIN_PX, DIRECTION_DISAGREEMENT_SIGMAS *
    sqrt(2) * se_one)``, is a failed check (``reason``). This is the rule for
    :func:`jsnq.series` and for two separate fits in :func:`jsnq.measure`.
    """
    gap = forward_px + backward_px
    se_one = math.sqrt(0.5 * (forward_se_px ** 2 + backward_se_px ** 2))
    tol = max(DIRECTION_DISAGREEMENT_MIN_PX, DIRECTION_DISAGREEMENT_SIGMAS * math.sqrt(2.0) * se_one)
    reason = None
    if not abs(gap) <= tol:
        reason = (f"forward and backward registrations disagree: {forward_px:+.2f} px vs "
                  f"{-backward_px:+.2f} px (difference {gap:+.2f} px > {tol:.2f} px)")
    return Directions(narrowing_px=0.5 * (forward_px - backward_px), se_px=se_one, gap_px=gap, tolerance_px=tol,
                      reason=reason)


def label_check(labels: np.ndarray, followup_labels: np.ndarray | None, reference: np.ndarray | None,
                upper: Similarity, lower: Similarity, *,
                thresholds: ReliabilityThresholds | None = None) -> tuple[float | None, str | None]:
    """Do the labels follow the joint space? -> (disagreement in px or None, reason or None).

    With both visits' labels, the follow-up's split line carried into the baseline frame by the
    bones' motions must land on the baseline's (:func:`label_disagreement_px`). With baseline
    labels only and the network's labels of the baseline as ``reference``, the given split line
    is compared with the network's midline. None when there is nothing to compare.
    """
    limit = (thresholds or ReliabilityThresholds()).max_label_disagreement_px
    if followup_labels is not None:
        gap = label_disagreement_px(labels, followup_labels, upper, lower)
        what = "the follow-up's split line lies {:.1f} px from the baseline's after registration"
    elif reference is not None:
        identity = Similarity.identity()
        gap = label_disagreement_px(labels, reference, identity, identity)
        what = "the given split line lies {:.1f} px from the midline between the bones the network finds"
    else:
        return None, None
    if not math.isfinite(gap):
        return None, None  # no split line to compare
    if gap > limit:
        return gap, (f"labels disagree: {what.format(gap)} (> {limit} px); "
                     "check that the labels follow the joint space")
    return gap, None


def jsw_check(jsw: "JointSpaceWidth | None", visit: str) -> str | None:
    """A note when a visit's bone masks leave no joint space on the projection (mean JSW <= 0).

    The JSW is signed: negative where the two bone masks overlap on the projection, which is
    ordinary (the phalanx base's lip covers the metacarpal head in about half of the real MCP
    crops). A mean width that is not positive is ordinary too (a quarter of the true masks of
    the validation crops have one, and the network's almost only where the true masks' do), so
    it is a note, not a failed check (docs/benchmarks.md, "Figures behind the defaults"). The
    JSW is then no width, and the label check and the JSW cross-check still guard the
    segmentation. None when the JSW is positive or missing.
    """
    if jsw is None:
        return None
    if not (jsw.mean_px > 0):
        return (f"no joint space at the {visit}: the bone masks overlap on the projection (mean JSW "
                f"{jsw.mean_px:+.2f} px), so its JSW is no width; check the segmentation if the bones do not overlap")
    return None


def jsw_disagreement(jsw_baseline: "JointSpaceWidth | None", jsw_followup: "JointSpaceWidth | None",
                     narrowing_px: float, se_px: float, *, scale: float = 1.0) -> str | None:
    """A reason string when the JSW change and the registration's narrowing disagree grossly.

    The JSW change is ``jsw_baseline - jsw_followup / scale`` (px, positive = narrowed; the
    follow-up's width is brought to the baseline's magnification by the bones' mean scale).
    It is a coarse cross-check: each visit's mean JSW from the network's masks errs by about
    :data:`JSW_SE_PX`, so the tolerance is ``max(JSW_DISAGREEMENT_MIN_PX, JSW_DISAGREEMENT_SIGMAS *
    sqrt(se_px**2 + 2 * JSW_SE_PX**2))``: 3 SD of the disagreement expected from the JSW's own
    error (how often it fires on real pairs: docs/benchmarks.md, "Figures behind the defaults").
    None when they agree or a JSW is missing.
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
