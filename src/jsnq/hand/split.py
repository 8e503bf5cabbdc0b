"""Which bone split of a hand joint the pair of visits supports.

A hand crop's intensity profiles offer a split line: the valley nearest the crop's centre
(:func:`jsnq.segment.profile.profile_candidates`). A child's growth plate, or a landmark a few
mm off, puts that valley beside the joint space, and a split there reads a fraction of the
narrowing. The pair itself tells the joint line apart: the joint is where the two bones'
motions part. So, after the line is measured:

1. where the fit's two motions carry the bones apart by more than :data:`MOTION_Z` narrowing
   SEs (:func:`relative_motion_px`), each row of the baseline is asked which one it follows
   (:func:`motion_boundary_row`);
2. where the rows stop following the upper bone's motion far from the line, the valley nearest
   that row is measured too, and taken when the band of rows between the two lines follows the
   motion of the bone the new line gives it by more than :data:`MOTION_Z` standard deviations
   of that comparison's noise (:func:`band_z`);
3. where the motions still carry the bones apart, the line is traced again column by column
   where the rows stop following the upper bone's motion, through the dark valley nearest it
   (:func:`motion_line`), and the pair is measured along it: a joint line curves and runs
   obliquely at the bones' margins, where a line held flat, or a valley path cutting a corner,
   gives a strip of one bone's end plate to the other, which then reads a fraction of the
   narrowing.

Where the bones hardly moved relative to each other, no band tells the lines apart, and the
choice hardly changes the number. (A second candidate, the deepest valley, chosen by the
fits' residuals, was measured and dropped: docs/hand.md.)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import ndimage as ndi

from ..config import MeasureConfig, resolve
from ..intensity import estimate_noise_sd
from ..io import Image
from ..register.warp import warp_to_baseline
from ..segment.classical import min_cost_path, valley_response
from ..segment.profile import (DISTINCT_PX, VALLEY_OFFSETS, ProfileSplit, finger_columns, profile_line_near,
                               search_columns, search_rows, split_from_line)

__all__ = ["SplitChoice", "choose_split", "nearest_split", "relative_motion_px", "motion_boundary_row", "band_z",
           "motion_line", "carried_line", "split_config", "SPLIT_GAP_EXCLUSION_PX", "MOTION_Z", "BAND_MARGIN_PX",
           "MOTION_HALF_BAND", "MOTION_COLUMN_SIGMA_PX", "MOTION_CAP"]

#: The band between two lines decides between them when it follows one bone's motion better
#: than the other's by more than this many SDs of the comparison's noise.
MOTION_Z = 3.0
#: Rows this close to either line are left out of the band (the joint space's own edges).
BAND_MARGIN_PX = 3
#: The motions' boundary, and the valley near it, are searched in this fraction of the crop's
#: height either side of its centre: wider than the profiles' own band, since a landmark a few
#: mm off puts the joint near the crop's edge.
MOTION_HALF_BAND = 0.42
#: The fits along a split from the profiles leave out this many px of either bone next to the
#: line (``RegistrationOptions.gap_exclusion_px``, 3 px for masks): the line is less certain than
#: a segmentation's, and a strip of one bone's end plate on the other's side reads a fraction of
#: the narrowing (docs/hand.md, 3 -> 4.5 -> 6 -> 8 px on the rendered RA hand).
SPLIT_GAP_EXCLUSION_PX = 6.0
#: :func:`motion_line` pools each column's evidence with its neighbours' (Gaussian, px).
MOTION_COLUMN_SIGMA_PX = 4.0
#: ... and weighs it at most this many SDs of the valley response, so that a strong motion
#: places the line in the joint but the valley still decides its row within it.
MOTION_CAP = 10.0


@dataclass(frozen=True)
class SplitChoice:
    """The chosen split of one joint's pair: its measurement and each visit's line."""

    measurement: Any
    baseline: ProfileSplit
    followup: ProfileSplit


def nearest_split(candidates: Sequence[ProfileSplit], split: ProfileSplit) -> ProfileSplit:
    """The candidate whose centre row lies nearest ``split``'s: the same joint line in another
    visit (the crops are placed so that the joint lies on the same rows)."""
    return min(candidates, key=lambda c: abs(c.centre_px[1] - split.centre_px[1]))


def _fitted(baseline: np.ndarray, warped: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``warped`` with the gain and offset that best match ``baseline`` over ``region``."""
    ok = region & np.isfinite(warped)
    if ok.sum() < 3:
        return warped
    design = np.c_[warped[ok], np.ones(int(ok.sum()))]
    gain, offset = np.linalg.lstsq(design, baseline[ok], rcond=None)[0]
    return gain * warped + offset


def _warp(b: np.ndarray, motion: Any, shape: tuple[int, int]) -> np.ndarray:
    """Follow-up crop ``b`` carried into the baseline frame by one bone's ``motion``."""
    return warp_to_baseline(b, motion.transform(shape)).astype(float)


def _noise_sd(a: np.ndarray, b: np.ndarray) -> float:
    """Both visits' white noise together: the SD of a difference of the two crops."""
    return math.hypot(estimate_noise_sd(a), estimate_noise_sd(b))


def _fitted_warps(a: np.ndarray, b: np.ndarray, m: Any, split: ProfileSplit) -> tuple[np.ndarray, np.ndarray]:
    """Follow-up ``b`` carried into the baseline frame by the upper and by the lower bone's
    motion of ``m``, each with the gain and offset that best match ``a`` over its own side of
    ``split``."""
    up_w, lo_w = _warp(b, m.upper, a.shape), _warp(b, m.lower, a.shape)
    rows = np.arange(a.shape[0])[:, None]
    finger = split.labels > 0
    return (_fitted(a, up_w, finger & (rows < split.line[None, :])),
            _fitted(a, lo_w, finger & (rows > split.line[None, :])))


def relative_motion_px(m: Any, shape: tuple[int, int]) -> float:
    """RMS over the crop's central band of how far the fit ``m``'s two bone motions carry a
    point apart (crop px): zero where the bones moved as one."""
    r0, r1 = search_rows(shape[0], MOTION_HALF_BAND)
    c0, c1 = search_columns(shape[1])
    yy, xx = np.mgrid[r0:r1 + 1:4, c0:c1 + 1:4]
    pts = np.c_[xx.ravel(), yy.ravel()].astype(float)
    gap = m.upper.transform(shape).apply(pts) - m.lower.transform(shape).apply(pts)
    return float(np.sqrt(np.mean(np.sum(gap ** 2, axis=1))))


def _moved_apart(m: Any, shape: tuple[int, int]) -> bool:
    """Whether the fit's two motions carry the bones apart by more than :data:`MOTION_Z`
    narrowing SEs: only then can the rows show which bone they follow."""
    return relative_motion_px(m, shape) > MOTION_Z * m.narrowing_se_px


def motion_boundary_row(a: np.ndarray, b: np.ndarray, m: Any, split: ProfileSplit, *,
                        warps: tuple[np.ndarray, np.ndarray] | None = None) -> int:
    """The row of baseline crop ``a`` above which the rows follow the upper bone's motion of
    ``m`` (its fit with ``split``) and below which the lower bone's, best: per row of the
    central columns, the squared residual under the lower motion minus that under the upper
    (each with its gain and offset over its own side of ``split``), then the flat split that
    maximises the rows above's sum minus the rows below's. ``warps``: ``b`` under the two
    motions so fitted, when already made (:func:`motion_line` uses the same)."""
    a = np.asarray(a, float)
    r0, r1 = search_rows(a.shape[0], MOTION_HALF_BAND)
    c0, c1 = search_columns(a.shape[1])
    up_f, lo_f = warps if warps is not None else _fitted_warps(a, np.asarray(b, float), m, split)
    evidence = ((a - lo_f) ** 2 - (a - up_f) ** 2)[r0:r1 + 1, c0:c1 + 1]
    per_row = np.where(np.isfinite(evidence), evidence, 0.0).sum(axis=1)
    cum = np.concatenate([[0.0], np.cumsum(per_row)])
    return r0 + int(np.argmax(2 * cum - cum[-1]))


def motion_line(a: np.ndarray, b: np.ndarray, m: Any, split: ProfileSplit, *, smooth_px: float = 1.5,
                warps: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The split line of baseline crop ``a`` traced where its rows stop following the upper
    bone's motion of ``m`` (the fit with ``split``) and start following the lower's, column by
    column, through the valley nearest that boundary: one row per column (``split``'s line
    beyond the finger's columns).

    Per pixel, the evidence is the squared residual under the lower motion minus that under the
    upper (each with its gain and offset over its own side of ``split``), pooled over
    neighbouring columns (:data:`MOTION_COLUMN_SIGMA_PX`). A row's cost in a column is the
    evidence below it minus that above it, over the SD that white noise gives it (the same
    noise model as :func:`band_z`), scaled to at most :data:`MOTION_CAP`; plus the valley
    response's cost of :func:`jsnq.segment.profile.profile_candidates`. The path is the
    minimal-cost one through the central ``MOTION_HALF_BAND`` of the rows. ``warps``: as for
    :func:`motion_boundary_row`."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    r0, r1 = search_rows(a.shape[0], MOTION_HALF_BAND)
    f0, f1 = finger_columns(a.shape[1])
    up_f, lo_f = warps if warps is not None else _fitted_warps(a, b, m, split)
    part = (slice(r0, r1 + 1), slice(f0, f1 + 1))
    evidence = ((a - lo_f) ** 2 - (a - up_f) ** 2)[part]
    contrast = ((up_f - lo_f) ** 2)[part]
    ok = np.isfinite(evidence) & np.isfinite(contrast)
    evidence = ndi.gaussian_filter1d(np.where(ok, evidence, 0.0), MOTION_COLUMN_SIGMA_PX, axis=1)
    contrast = ndi.gaussian_filter1d(np.where(ok, contrast, 0.0), MOTION_COLUMN_SIGMA_PX, axis=1)
    above = np.cumsum(evidence, axis=0) - evidence  # the evidence of the rows above each row
    # white noise: the pooled sum's SD over the ~2.5 sigma columns it effectively averages
    spread = 2.0 * _noise_sd(a, b) * np.sqrt(contrast.sum(axis=0) / (2.5 * MOTION_COLUMN_SIGMA_PX)) + 1e-12
    motion = -(2.0 * above - evidence.sum(axis=0)[None, :]) / spread[None, :]
    motion /= max(1.0, float(np.abs(motion).max()) / MOTION_CAP)
    valley = valley_response(ndi.gaussian_filter(a, smooth_px), VALLEY_OFFSETS)[part]
    line = np.asarray(split.line, float).copy()
    line[f0:f1 + 1] = min_cost_path(-valley / (valley.std() or 1.0) + motion, 1.0) + r0
    return line


def carried_line(line: np.ndarray, motion: Any, shape: tuple[int, int]) -> np.ndarray:
    """``line`` (one row per column of the baseline crop) carried into the follow-up's crop by
    one bone's ``motion``, as one row per column."""
    x = np.arange(shape[1], dtype=float)
    pts = motion.transform(shape).apply(np.c_[x, np.asarray(line, float)])
    order = np.argsort(pts[:, 0])
    return np.interp(x, pts[order, 0], pts[order, 1])


def band_z(a: np.ndarray, b: np.ndarray, upper_fit: Any, lower_fit: Any, upper_line: np.ndarray,
           lower_line: np.ndarray, finger: np.ndarray) -> float:
    """How much better the band of ``a`` between ``upper_line`` and ``lower_line`` (rows, per
    column; :data:`BAND_MARGIN_PX` left out at each) follows the upper bone's motion of
    ``upper_fit`` (the fit split at the upper line, whose upper bone leaves the band out) than
    the lower bone's of ``lower_fit``: the difference of the squared residuals (each with its
    own gain and offset) over the SD of that difference under white noise, ``2 sigma |w_u -
    w_l|`` (sigma: both visits' noise). Positive: the band moves with the upper bone."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    up_w, lo_w = _warp(b, upper_fit.upper, a.shape), _warp(b, lower_fit.lower, a.shape)
    rows = np.arange(a.shape[0])[:, None]
    band = ((rows > np.asarray(upper_line)[None, :] + BAND_MARGIN_PX)
            & (rows < np.asarray(lower_line)[None, :] - BAND_MARGIN_PX) & finger
            & np.isfinite(up_w) & np.isfinite(lo_w))
    if band.sum() < 50:
        return 0.0
    up_r = a[band] - _fitted(a, up_w, band)[band]
    lo_r = a[band] - _fitted(a, lo_w, band)[band]
    spread = 2.0 * _noise_sd(a, b) * math.sqrt(float(np.sum((up_w[band] - lo_w[band]) ** 2)))
    return float((np.sum(lo_r ** 2) - np.sum(up_r ** 2)) / spread) if spread > 0 else 0.0


def _row(split: ProfileSplit) -> float:
    return split.centre_px[1]


def _by_motion(a: Image, b: Image, m: Any, sa: ProfileSplit, sb: ProfileSplit, fit,
               spacing_mm: float | None, warps: tuple[np.ndarray, np.ndarray]) -> SplitChoice | None:
    """The split at the motions' boundary (module doc, step 2) of a pair whose bones moved
    apart (``warps``: ``b`` under ``m``'s fitted motions), or None where the pair does not show
    it clearly elsewhere than ``sa``."""
    row = motion_boundary_row(a.array, b.array, m, sa, warps=warps)
    if abs(row - _row(sa)) <= DISTINCT_PX:
        return None
    na = profile_line_near(a.array, row, spacing_mm=spacing_mm, half_band=MOTION_HALF_BAND)
    if abs(_row(na) - _row(sa)) <= DISTINCT_PX:
        return None
    nb = profile_line_near(b.array, row + _row(sb) - _row(sa), spacing_mm=spacing_mm,
                           half_band=MOTION_HALF_BAND)
    mn = fit(na, nb)
    finger = sa.labels > 0
    if _row(na) > _row(sa):  # the band lies below the kept line: the new line gives it to the upper bone
        z = band_z(a.array, b.array, m, mn, sa.line, na.line, finger)
    else:
        z = -band_z(a.array, b.array, mn, m, na.line, sa.line, finger)
    return SplitChoice(mn, na, nb) if z > MOTION_Z else None


def split_config(config: MeasureConfig | None) -> MeasureConfig:
    """``config`` for the fits along a profile split: its gap band at least
    :data:`SPLIT_GAP_EXCLUSION_PX` wide."""
    config = resolve(config)
    reg = config.registration
    if reg.gap_exclusion_px >= SPLIT_GAP_EXCLUSION_PX:
        return config
    return dataclasses.replace(config, registration=dataclasses.replace(reg, gap_exclusion_px=SPLIT_GAP_EXCLUSION_PX))


def choose_split(a: Image, b: Image, base: Sequence[ProfileSplit], fol: Sequence[ProfileSplit],
                 spacing_mm: float | None, config: MeasureConfig) -> SplitChoice:
    """Measure crop ``a`` -> crop ``b`` with the split line the pair supports (module doc).
    ``base``/``fol``: each visit's :func:`~jsnq.segment.profile.profile_candidates`; the
    baseline's first, and the follow-up's nearest it."""
    from .. import pipeline  # lazily: the pipeline is heavy

    config = split_config(config)

    def fit(sa: ProfileSplit, sb: ProfileSplit, start: Any = None) -> Any:
        """The pair measured with these lines; ``start``: a fit to refine from (its motions)."""
        p = pipeline.prepare(a, b, config, baseline_labels=sa.labels, followup_labels=sb.labels,
                             spacing_mm=spacing_mm, point=sa.centre_px, label_source="profile")
        inits = back = None
        if start is not None:
            inits = (start.upper.transform(a.array.shape), start.lower.transform(a.array.shape))
            back = (inits[0].inverse(), inits[1].inverse())
        return pipeline.finish(p, config, pipeline.fit(p, config, inits=inits, backward_inits=back))

    sa = base[0]
    sb = nearest_split(fol, sa)
    m = fit(sa, sb)
    if not _moved_apart(m, a.array.shape):
        return SplitChoice(m, sa, sb)  # no row can show which bone it follows
    # b under m's two fitted motions, made once for both steps
    warps = _fitted_warps(np.asarray(a.array, float), np.asarray(b.array, float), m, sa)
    choice = _by_motion(a, b, m, sa, sb, fit, spacing_mm, warps) or SplitChoice(m, sa, sb)
    if choice.measurement is not m:
        m, warps = choice.measurement, None
        if not _moved_apart(m, a.array.shape):
            return choice
    line = motion_line(a.array, b.array, m, choice.baseline, warps=warps)
    ta = split_from_line(a.array, line, spacing_mm=spacing_mm)
    tb = split_from_line(b.array, carried_line(line, m.lower, a.array.shape), spacing_mm=spacing_mm)
    return SplitChoice(fit(ta, tb, start=m), ta, tb)
