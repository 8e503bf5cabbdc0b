"""The bone split of a joint crop cut from a whole hand, from intensity profiles along the finger.

A crop cut by :mod:`jsnq.hand.crops` has the finger up, the joint space near its centre row
and the distal bone's base about :data:`~jsnq.hand.crops.TARGET_BASE_WIDTH_PX` wide. Along the
finger's axis, every column through the joint shows two bright subchondral bone plates with
the dark joint space between them. The split line is the minimal-cost left-to-right path
through that valley (:func:`jsnq.segment.classical.joint_space_line`), searched only in the
central band of rows and over the bones' central columns, where the crop cutter put the joint,
with a penalty on leaving the centre row; beyond those columns it is held flat, and beside the
finger the labels are 0.

Whether the line lies in a joint space is checked from the image alone: in most of the central
columns the line must lie in a valley with a bright edge within reach on both sides
(:func:`split_problem`). The joint space width is read off the same profiles: per column the
sub-pixel positions of the steepest rise towards each bone (:func:`profile_jsw`).

Pure numpy/scipy; arrays ``[row, col]``; points ``(x, y)``; widths in px of the crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ..geometry import px_to_mm
from ..intensity import estimate_noise_sd
from ..jsw import JointSpaceWidth
from ..labels import labels_from_line
from .classical import joint_space_line

__all__ = ["ProfileSplit", "profile_split", "profile_candidates", "profile_line_near", "split_from_line", "profile_jsw",
           "valley_fraction", "VALLEY_OFFSETS",
           "split_problem", "search_rows", "search_columns", "finger_columns", "DISTINCT_PX",
           "SEARCH_HALF_BAND", "BONE_HALF_WIDTH", "MIN_VALLEY_FRACTION"]

#: Rows searched either side of the crop's centre row, as a fraction of its height.
SEARCH_HALF_BAND = 0.3
#: The penalty on the line's distance from the centre row grows as (distance / this)^2 (px).
PRIOR_SCALE_PX = 51.0
#: The penalties tried for leaving the centre row (see :func:`profile_candidates`): one, the
#: valley nearest the centre. The deepest valley (penalty 0) was a second candidate until the
#: pair's motions chose the line (:mod:`jsnq.hand.split`); with them it only misled (docs/hand.md).
CENTRE_WEIGHTS = (6.0,)
#: Candidate lines whose median rows lie closer than this (px) are the same line.
DISTINCT_PX = 5.0
#: Row distances (px) at which a valley is compared with its neighbours above and below.
VALLEY_OFFSETS = (2, 3, 5, 8, 12, 16)
#: Columns searched either side of the crop's centre column, as a fraction of its width (the
#: distal bone's base spans about +-0.34 of the crop).
BONE_HALF_WIDTH = 0.24
#: Columns labelled either side of the centre, as a fraction of the crop's width: the distal
#: bone's base (+-0.34) and a margin; beyond, the soft tissue and the neighbouring fingers are
#: left out of both fits.
FINGER_HALF_WIDTH = 0.36
#: A column is in a joint space when the line is at least this much darker (in units of the
#: crop's contrast, its 5-95 % spread, see :func:`_contrast`) than the brightest point within
#: :data:`EDGE_REACH_PX` above and below it.
MIN_DEPTH = 0.04
EDGE_REACH_PX = 14
#: ... and at least this many times the (smoothed) image's noise SD (Immerkaer's estimate).
NOISE_DEPTH = 6.0
#: ... in at least this fraction of the central columns.
MIN_VALLEY_FRACTION = 0.6


@dataclass(frozen=True)
class ProfileSplit:
    """A crop's split line from its intensity profiles.

    Attributes:
        line: row of the split per column (float, every column).
        columns: ``(first, last)`` column searched (the bones' central part).
        labels: 1 above the line (the distal bone), 2 below, 0 beside the finger.
        centre_px: ``(x, y)``: the central column and the line's mean row over the central
            half of the searched columns.
        valley_fraction: share of the searched columns in which the line lies in a valley.
        jsw: the joint space width from the profiles, or None when it cannot be read.
        problem: why the line is not taken to lie in a joint space, or None.
    """

    line: np.ndarray = field(repr=False)
    columns: tuple[int, int]
    labels: np.ndarray = field(repr=False)
    centre_px: tuple[float, float]
    valley_fraction: float
    jsw: JointSpaceWidth | None
    problem: str | None


def _contrast(smooth: np.ndarray) -> float:
    """The crop's intensity scale: the spread between its 5th and 95th percentiles."""
    lo, hi = np.percentile(smooth, [5, 95])
    return float(hi - lo) or 1.0


def profile_split(crop: np.ndarray, *, spacing_mm: float | None = None, smooth_px: float = 1.5) -> ProfileSplit:
    """The split line of a hand crop (see the module doc): the first of :func:`profile_candidates`."""
    return profile_candidates(crop, spacing_mm=spacing_mm, smooth_px=smooth_px)[0]


def profile_candidates(crop: np.ndarray, *, spacing_mm: float | None = None, smooth_px: float = 1.5,
                       centre_weights: tuple[float, ...] = CENTRE_WEIGHTS) -> list[ProfileSplit]:
    """The distinct split lines a hand crop supports, most likely first.

    One valley path per weight of the penalty for leaving the centre row (in units of the
    valley response's standard deviation at :data:`PRIOR_SCALE_PX`, quadratic): with a
    strong penalty the valley nearest the centre, without one the deepest in the band (a
    child's growth plate may be deeper than the joint space; a landmark off by a few mm puts
    the joint away from the centre). Paths whose median rows lie within :data:`DISTINCT_PX`
    of an earlier one are dropped. Which line the pair of visits supports is
    :func:`jsnq.hand.split.choose_split`'s choice.

    Args:
        crop: 2-D ``[row, col]`` crop, finger up, joint near the centre.
        spacing_mm: the crop's pixel spacing, for the JSW in mm.
        smooth_px: Gaussian blur before the profiles are read.
        centre_weights: the penalties tried, strongest first.
    """
    img = np.asarray(crop, dtype=float)
    c0, c1 = search_columns(img.shape[1])
    smooth = ndi.gaussian_filter(img, smooth_px)
    noise_sd = estimate_noise_sd(img)
    out: list[ProfileSplit] = []
    for weight in centre_weights:
        split = _valley_split(img, smooth, noise_sd, None, weight, smooth_px, spacing_mm)
        row = float(np.median(split.line[c0:c1 + 1]))
        if all(abs(row - float(np.median(o.line[c0:c1 + 1]))) > DISTINCT_PX for o in out):
            out.append(split)
    return out


def profile_line_near(crop: np.ndarray, row: float, *, spacing_mm: float | None = None, smooth_px: float = 1.5,
                      weight: float = CENTRE_WEIGHTS[0], half_band: float = SEARCH_HALF_BAND) -> ProfileSplit:
    """The valley path of :func:`profile_candidates` with its penalty centred on ``row``
    instead of the crop's centre row: the joint line near a row found otherwise (where the two
    visits' motions part, :func:`jsnq.hand.split.motion_boundary_row`), searched in the
    central ``half_band`` of the height either side of the centre."""
    img = np.asarray(crop, dtype=float)
    return _valley_split(img, ndi.gaussian_filter(img, smooth_px), estimate_noise_sd(img), row, weight, smooth_px,
                         spacing_mm, half_band)


def split_from_line(crop: np.ndarray, line: np.ndarray, *, spacing_mm: float | None = None,
                    smooth_px: float = 1.5) -> ProfileSplit:
    """A :class:`ProfileSplit` along a ``line`` found otherwise (one row per column; where the
    two visits' motions part, :func:`jsnq.hand.split.motion_line`), with the same valley check
    and JSW as a profile line."""
    img = np.asarray(crop, dtype=float)
    smooth = ndi.gaussian_filter(img, smooth_px)
    columns = search_columns(img.shape[1])
    line = np.asarray(line, dtype=float)
    frac = valley_fraction(smooth, line, columns, smooth_px=smooth_px, smoothed=True, noise_sd=estimate_noise_sd(img))
    return _split(img, smooth, line, frac, columns, spacing_mm)


def _valley_split(img: np.ndarray, smooth: np.ndarray, noise_sd: float, row: float | None, weight: float,
                  smooth_px: float, spacing_mm: float | None, half_band: float = SEARCH_HALF_BAND) -> ProfileSplit:
    """The valley path through the search band with a penalty ``weight`` for leaving ``row``
    (None: the band's centre), as a :class:`ProfileSplit`."""
    c0, c1 = search_columns(img.shape[1])
    r0, r1 = search_rows(img.shape[0], half_band)
    n = r1 - r0 + 1
    centre = 0.5 * (n - 1) if row is None else float(row) - r0
    prior = weight * ((np.arange(n) - centre) / PRIOR_SCALE_PX) ** 2
    line = _line(img, smooth_px, (r0, r1), (c0, c1), prior)
    frac = valley_fraction(smooth, line, (c0, c1), smooth_px=smooth_px, smoothed=True, noise_sd=noise_sd)
    return _split(img, smooth, line, frac, (c0, c1), spacing_mm)


def _split(img, smooth, line, frac, columns, spacing_mm) -> ProfileSplit:
    rows, cols = img.shape
    c0, c1 = columns
    q0, q1 = c0 + (c1 - c0) // 4, c1 - (c1 - c0) // 4
    centre = (0.5 * (cols - 1), float(np.mean(line[q0:q1 + 1])))
    jsw = profile_jsw(smooth, line, (q0, q1), spacing_mm=spacing_mm, smoothed=True)
    labels = labels_from_line(line, img.shape)
    f0, f1 = finger_columns(cols)
    labels[:, :f0] = 0  # beside the finger: soft tissue and neighbours, not the joint's bones
    labels[:, f1 + 1:] = 0
    return ProfileSplit(line, (c0, c1), labels, centre, frac, jsw, split_problem(frac))


def finger_columns(cols: int) -> tuple[int, int]:
    """The columns of a crop ``cols`` wide that are labelled: the distal bone's base and a margin.
    (Tracing the line across them, rather than holding it flat beyond :func:`search_columns`,
    measured no better on benchmarks/hand_known.py.)"""
    return int(round((0.5 - FINGER_HALF_WIDTH) * (cols - 1))), int(round((0.5 + FINGER_HALF_WIDTH) * (cols - 1)))


def search_rows(rows: int, half_band: float = SEARCH_HALF_BAND) -> tuple[int, int]:
    """The rows of a crop ``rows`` high in which the split line is searched: the central band
    of ``half_band`` of the height either side of the centre."""
    return int(round((0.5 - half_band) * (rows - 1))), int(round((0.5 + half_band) * (rows - 1)))


def search_columns(cols: int) -> tuple[int, int]:
    """The central columns of a crop ``cols`` wide in which the split line is checked and the JSW read."""
    return int(round((0.5 - BONE_HALF_WIDTH) * (cols - 1))), int(round((0.5 + BONE_HALF_WIDTH) * (cols - 1)))


def valley_fraction(image: np.ndarray, line: np.ndarray, columns: tuple[int, int] | None = None, *,
                    smooth_px: float = 1.5, smoothed: bool = False, noise_sd: float | None = None) -> float:
    """Share of the ``columns`` (default :func:`search_columns`) in which ``line`` lies in a
    dark valley: below the brightest point within :data:`EDGE_REACH_PX` above it and below it
    by at least :data:`MIN_DEPTH` of the crop's contrast and :data:`NOISE_DEPTH` times its
    smoothed noise SD (``noise_sd``: the unsmoothed image's; estimated when not given, 0 for a
    ``smoothed`` image)."""
    smooth = np.asarray(image, float) if smoothed else ndi.gaussian_filter(np.asarray(image, float), smooth_px)
    c0, c1 = search_columns(smooth.shape[1]) if columns is None else columns
    depth = _valley_depth(smooth, np.asarray(line, float), c0, c1)
    # deeper than a share of the crop's contrast, and than its smoothed noise could make a valley
    if noise_sd is None:
        noise_sd = 0.0 if smoothed else estimate_noise_sd(np.asarray(image, float))
    noise = NOISE_DEPTH * noise_sd / (2.0 * math.sqrt(math.pi) * smooth_px)  # white noise after the blur
    return float(np.mean(depth >= max(MIN_DEPTH * _contrast(smooth), noise)))


def _line(img: np.ndarray, smooth_px: float, rows: tuple[int, int], columns: tuple[int, int],
          prior: np.ndarray | None) -> np.ndarray:
    """The valley path through ``rows`` x ``columns`` of ``img``, held flat beyond the columns."""
    (r0, r1), (c0, c1) = rows, columns
    part = joint_space_line(img[r0:r1 + 1, c0:c1 + 1], band=(0.0, 1.0), smooth_px=smooth_px, offsets=VALLEY_OFFSETS,
                            step_penalty=1.0, prior=prior) + r0
    line = np.empty(img.shape[1])
    line[c0:c1 + 1] = part
    line[:c0], line[c1 + 1:] = part[0], part[-1]
    return line



def _valley_depth(smooth: np.ndarray, line: np.ndarray, c0: int, c1: int) -> np.ndarray:
    """Per column c0..c1: min(brightest above, brightest below within reach) - value on the line."""
    rows = smooth.shape[0]
    out = np.empty(c1 - c0 + 1)
    for k, c in enumerate(range(c0, c1 + 1)):
        r = int(np.clip(round(line[c]), 0, rows - 1))
        above = smooth[max(0, r - EDGE_REACH_PX):r + 1, c]
        below = smooth[r:min(rows, r + EDGE_REACH_PX + 1), c]
        out[k] = min(above.max(), below.max()) - smooth[r, c]
    return out


def split_problem(fraction: float) -> str | None:
    """Why a split line whose :func:`valley_fraction` is ``fraction`` is not taken to lie in a
    joint space, or None."""
    if fraction < MIN_VALLEY_FRACTION:
        shown = math.floor(fraction * 100)  # rounded down: 0.597 is not "60 % (< 60 %)"
        return (f"the split line lies in a dark valley in only {shown}% of the central columns "
                f"(< {MIN_VALLEY_FRACTION:.0%}): no joint space found")
    return None


def _edge(profile: np.ndarray, start: int, step: int, reach: int) -> float:
    """Sub-pixel row of the steepest rise of ``profile`` going from ``start`` in direction
    ``step`` (+1 down, -1 up) within ``reach`` rows, or NaN when it does not rise."""
    n = profile.size
    idx = np.arange(start, np.clip(start + step * reach, -1, n), step)
    if idx.size < 3:
        return float("nan")
    g = np.gradient(profile)[idx] * step  # rise in the walking direction
    k = int(np.argmax(g))
    if g[k] <= 0:
        return float("nan")
    off = 0.0
    if 0 < k < idx.size - 1:
        a, b, c = g[k - 1], g[k], g[k + 1]
        den = a - 2 * b + c
        off = 0.5 * (a - c) / den if den < 0 else 0.0
    return float(idx[k] + step * off)


def profile_jsw(image: np.ndarray, line: np.ndarray, columns: tuple[int, int], *, spacing_mm: float | None = None,
                smooth_px: float = 1.5, reach_px: int = EDGE_REACH_PX, smoothed: bool = False) -> JointSpaceWidth | None:
    """Joint space width per column from the intensity profile across the split line: the
    distance between the steepest rise towards the upper bone (above the line) and towards the
    lower bone (below it), sub-pixel (parabola through the gradient's peak), measured
    vertically (the crop's finger axis). None when fewer than half of the columns give both
    edges."""
    smooth = np.asarray(image, float) if smoothed else ndi.gaussian_filter(np.asarray(image, float), smooth_px)
    cols = np.arange(columns[0], columns[1] + 1)
    up = np.empty(cols.size)
    lo = np.empty(cols.size)
    for k, c in enumerate(cols):
        r = int(round(line[c]))
        up[k] = _edge(smooth[:, c], r, -1, reach_px)
        lo[k] = _edge(smooth[:, c], r, +1, reach_px)
    ok = np.isfinite(up) & np.isfinite(lo)
    if ok.sum() < 0.5 * cols.size:
        return None
    width = (lo - up)[ok]
    mean_px, min_px = float(width.mean()), float(width.min())
    return JointSpaceWidth(mean_px=mean_px, min_px=min_px, mean_mm=px_to_mm(mean_px, spacing_mm),
                           min_mm=px_to_mm(min_px, spacing_mm), spacing_mm=spacing_mm,
                           columns=(int(cols[0]), int(cols[-1])), profile_px=width,
                           centre_px=(float(cols[ok].mean()), float(np.mean(0.5 * (up + lo)[ok]))))
