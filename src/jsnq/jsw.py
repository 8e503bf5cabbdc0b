"""Joint space width (JSW) of one visit from the two bone masks, and the joint's articular centre.

Conventions: arrays ``[row, col]``; points ``(x, y) = (col, row)`` with pixel centres at
integer coordinates; +y points down, from the upper bone (proximal phalanx) towards the lower
bone (metacarpal head). Widths are in pixels of the crop, and in mm when a spacing is given.

Definition (what :func:`joint_space_width` measures):

1. **Facing surfaces.** Per column, the upper bone's lowest edge ``y_u(x)`` and the lower
   bone's highest edge ``y_l(x)``: the 0.5 crossing between the last pixel inside the mask
   and the next one outside, linearly interpolated. For a binary mask that is the pixel
   boundary (``r + 0.5``), so ``y_l - y_u`` counts the background pixels between the bones;
   for probability maps it is sub-pixel.
2. **Central part.** The columns in which both bones are present span ``[c0, c1]``; only the
   central ``central_fraction`` (default 50 %) of that span is measured, which avoids the
   flaring margins of the bones, where the "facing" surfaces are the bones' sides.
3. **Width per column.** The Euclidean distance from each surface point to the other
   surface (a polyline over all shared columns), averaged over the two directions, so a
   sloping joint is measured across the gap, not vertically. It is **signed**: negative
   where the upper bone's edge lies below the lower bone's (the two masks overlap on the
   projection, as in about half of the real MCP crops, where the phalanx base's lip covers the
   metacarpal head).
4. ``mean_px`` and ``min_px`` over the central columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.ndimage import map_coordinates

from .geometry import Similarity, px_to_mm, sqrt_similarity

__all__ = ["JointSpaceWidth", "joint_space_width", "facing_surfaces", "articular_centre",
           "pair_articular_centre"]

#: Fraction of the bones' shared column span that is measured (centred).
CENTRAL_FRACTION = 0.5


@dataclass(frozen=True)
class JointSpaceWidth:
    """Joint space width of one visit.

    Attributes:
        mean_px, min_px: mean and minimum signed width over the measured columns (px);
            negative = the bones overlap on the projection.
        mean_mm, min_mm: the same in mm, or None without a pixel spacing.
        spacing_mm: the spacing used, or None.
        columns: ``(first, last)`` measured column (inclusive).
        profile_px: width per measured column (px).
        centre_px: the joint centre ``(x, y)``: the mean column measured and the mean of the
            mid-points between the facing surfaces there. It moves with the bones, not with
            the crop window, which makes it the anatomical anchor of the narrowing
            (:func:`jsnq.geometry.symmetric_narrowing_px`).
    """

    mean_px: float
    min_px: float
    mean_mm: float | None
    min_mm: float | None
    spacing_mm: float | None
    columns: tuple[int, int]
    profile_px: np.ndarray = field(repr=False, compare=False)
    centre_px: tuple[float, float] = (float("nan"), float("nan"))

    @property
    def n_columns(self) -> int:
        return int(self.profile_px.size)

    def to_dict(self) -> dict[str, Any]:
        return {"mean_px": self.mean_px, "min_px": self.min_px, "mean_mm": self.mean_mm, "min_mm": self.min_mm,
                "spacing_mm": self.spacing_mm, "columns": list(self.columns), "n_columns": self.n_columns,
                "centre_px": list(self.centre_px)}


def _edge(p: np.ndarray, threshold: float, *, lowest: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per column: sub-pixel row of the lowest (or highest) 0.5 crossing, and where defined."""
    rows = p.shape[0]
    inside = p >= threshold
    valid = inside.any(axis=0)
    cols = np.arange(p.shape[1])
    if lowest:
        r = rows - 1 - np.argmax(inside[::-1], axis=0)
        nxt = np.minimum(r + 1, rows - 1)
        p_out = np.where(r + 1 < rows, p[nxt, cols], 0.0)
        sign = 1.0
    else:
        r = np.argmax(inside, axis=0)
        nxt = np.maximum(r - 1, 0)
        p_out = np.where(r > 0, p[nxt, cols], 0.0)
        sign = -1.0
    p_in = p[r, cols]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(p_in > p_out, (p_in - threshold) / (p_in - p_out), 0.5)
    return r + sign * np.clip(frac, 0.0, 1.0), valid


def facing_surfaces(upper: np.ndarray, lower: np.ndarray, *, threshold: float = 0.5
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The facing bone surfaces per column.

    Args:
        upper, lower: 2-D masks (bool) or probability maps in [0, 1], ``[row, col]``, same shape.
        threshold: the level that separates bone from background.

    Returns:
        ``(y_upper, y_lower, both)``: the upper bone's lowest and the lower bone's highest edge
        row per column (sub-pixel; NaN where that bone is absent), and where both are present.
    """
    u = np.asarray(upper, dtype=np.float64)
    lo = np.asarray(lower, dtype=np.float64)
    if u.ndim != 2 or u.shape != lo.shape:
        raise ValueError(f"masks must be two 2-D arrays of the same shape, got {u.shape} and {lo.shape}")
    yu, vu = _edge(u, threshold, lowest=True)
    yl, vl = _edge(lo, threshold, lowest=False)
    return np.where(vu, yu, np.nan), np.where(vl, yl, np.nan), vu & vl


def _distance_to_polyline(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Euclidean distance from ``(N, 2)`` points to the polyline through ``(M, 2)`` vertices,
    whose consecutive vertices are joined only when they are adjacent columns."""
    a, b = line[:-1], line[1:]
    joined = np.abs(b[:, 0] - a[:, 0]) <= 1.0 + 1e-9
    a, b = a[joined], b[joined]
    d_vert = np.sqrt(((points[:, None, :] - line[None, :, :]) ** 2).sum(-1)).min(axis=1)
    if not len(a):
        return d_vert
    ab = b - a
    ap = points[:, None, :] - a[None, :, :]
    t = np.clip((ap * ab[None]).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12)[None], 0.0, 1.0)
    closest = a[None] + t[..., None] * ab[None]
    d_seg = np.sqrt(((points[:, None, :] - closest) ** 2).sum(-1)).min(axis=1)
    return np.minimum(d_seg, d_vert)


def joint_space_width(upper: np.ndarray, lower: np.ndarray, *, spacing_mm: float | None = None,
                      central_fraction: float = CENTRAL_FRACTION, threshold: float = 0.5) -> JointSpaceWidth:
    """Mean and minimum width of the joint space between two bone masks (see the module doc).

    Args:
        upper, lower: 2-D bone masks (bool) or probability maps in [0, 1], ``[row, col]``.
        spacing_mm: pixel spacing for the mm fields (None: pixels only).
        central_fraction: fraction of the shared column span measured, in (0, 1].
        threshold: bone/background level of the maps.

    Raises:
        ValueError: masks of different shapes, an empty mask, or bones that share no column.
    """
    if not 0.0 < central_fraction <= 1.0:
        raise ValueError(f"central_fraction must be in (0, 1], got {central_fraction!r}")
    yu, yl, both = facing_surfaces(upper, lower, threshold=threshold)
    if not np.isfinite(yu).any() or not np.isfinite(yl).any():
        raise ValueError("both bone masks must be non-empty")
    cu, cl = np.flatnonzero(np.isfinite(yu)), np.flatnonzero(np.isfinite(yl))
    c0, c1 = max(cu[0], cl[0]), min(cu[-1], cl[-1])
    if c1 < c0 or not both[c0:c1 + 1].any():
        raise ValueError("the two bones share no column: no joint space to measure")
    margin = 0.5 * (1.0 - central_fraction) * (c1 - c0)
    cols = np.arange(int(np.ceil(c0 + margin)), int(np.floor(c1 - margin)) + 1)
    cols = cols[both[cols]]
    if not cols.size:
        raise ValueError("no column in the central part of the joint holds both bones")
    # The nearest point of the other surface lies within |vertical gap| columns (the point
    # straight below/above is that close), so only those columns of the polylines matter.
    reach = int(np.ceil(np.nanmax(np.abs(yl[cols] - yu[cols])))) + 1
    shared = np.flatnonzero(both)
    shared = shared[(shared >= max(c0, cols[0] - reach)) & (shared <= min(c1, cols[-1] + reach))]
    up_line = np.stack([shared, yu[shared]], axis=1).astype(float)
    lo_line = np.stack([shared, yl[shared]], axis=1).astype(float)
    up_pts = np.stack([cols, yu[cols]], axis=1).astype(float)
    lo_pts = np.stack([cols, yl[cols]], axis=1).astype(float)
    sign = np.sign(yl[cols] - yu[cols])
    width = 0.5 * sign * (_distance_to_polyline(up_pts, lo_line) + _distance_to_polyline(lo_pts, up_line))
    mean_px, min_px = float(width.mean()), float(width.min())
    return JointSpaceWidth(mean_px=mean_px, min_px=min_px, mean_mm=px_to_mm(mean_px, spacing_mm),
                           min_mm=px_to_mm(min_px, spacing_mm),
                           spacing_mm=None if spacing_mm is None else float(spacing_mm),
                           columns=(int(cols[0]), int(cols[-1])), profile_px=width,
                           centre_px=(float(cols.mean()), float(np.mean(0.5 * (yu[cols] + yl[cols])))))


#: :func:`articular_centre`: the band around the joint line whose bone pixels give x, and the
#: columns whose lower-bone surface gives y, as fractions of the bones' shared column span.
CENTRE_BAND = 0.5
CENTRE_COLUMNS = 0.15


def articular_centre(upper: np.ndarray, lower: np.ndarray) -> tuple[float, float]:
    """The joint's articular centre ``(x, y)`` in one visit's rows and columns.

    * **x**: the mean of the two bones' column centroids over their pixels within half the
      joint's width of the joint line (the mid-points of the facing surfaces, interpolated
      over every column), i.e. the middle of the span where the two bones face each other,
      taken over areas rather than at the span's two ends;
    * **y**: the lower bone's articular surface there: the mean of its highest edge over the
      columns within 15 % of the shared span of x.

    Both are averages over many pixels, so they move little when a mask's margin moves. y is
    on the lower bone, not half-way across the gap: the upper bone's lowest edge is what the
    network finds worst (it lies inside the lower bone where the two overlap on the projection),
    and a point of the lower bone is what its fit carries to the other visit
    (docs/benchmarks.md, "Issue 23: one reading point, the joint's articular centre").

    The definition is in the image's rows and columns, so two visits' centres are the same
    anatomical point only when found in one frame: :func:`pair_articular_centre`.

    Args:
        upper, lower: 2-D boolean bone masks ``[row, col]`` of one visit (they may overlap).

    Raises:
        ValueError: an empty mask, or bones that share no column.
    """
    u, lo = np.asarray(upper, dtype=bool), np.asarray(lower, dtype=bool)
    yu, yl, both = facing_surfaces(u, lo)
    cols = np.flatnonzero(both)
    if not cols.size:
        raise ValueError("the two bones share no column: no joint to centre on")
    span = float(cols[-1] - cols[0])
    xs = np.arange(u.shape[1])
    mid = 0.5 * (yu + yl)
    line = np.interp(xs, cols, mid[cols])
    rows = np.arange(u.shape[0])[:, None]
    band = np.abs(rows - line[None, :]) <= max(CENTRE_BAND * span, 2.0)
    above = rows < line[None, :]
    xu = np.nonzero(u & band & above)[1]
    xl = np.nonzero(lo & band & ~above)[1]
    if not xu.size or not xl.size:
        x = 0.5 * float(cols[0] + cols[-1])
    else:
        x = 0.5 * (float(xu.mean()) + float(xl.mean()))
    near = cols[np.abs(cols - x) <= max(CENTRE_COLUMNS * span, 1.0)]
    y = float(yl[near].mean()) if near.size else float(np.interp(x, cols, yl[cols]))
    return float(x), y


def _warp_mask(mask: np.ndarray, transform: Similarity) -> np.ndarray:
    """``mask`` moved by ``transform`` (its frame -> the output's), bilinear, at the 0.5 level."""
    h, w = mask.shape
    rows, cols = np.indices((h, w), dtype=float)
    src = transform.inverse().apply(np.stack([cols.ravel(), rows.ravel()], axis=1))
    moved = map_coordinates(np.asarray(mask, dtype=float), [src[:, 1], src[:, 0]], order=1, mode="constant")
    return moved.reshape(h, w) >= 0.5


def pair_articular_centre(baseline: tuple[np.ndarray, np.ndarray] | None,
                          followup: tuple[np.ndarray, np.ndarray] | None,
                          lower: Similarity) -> tuple[tuple[float, float], tuple[float, float]]:
    """The articular centre of a pair, one anatomical point, in each visit's frame.

    Each visit's ``(upper, lower)`` masks are moved into the frame half-way between the visits
    along the lower bone's motion ``lower`` (baseline -> follow-up): the baseline's by
    ``H = sqrt(lower)``, the follow-up's by ``H^-1``; their :func:`articular_centre` there are
    averaged and taken back to each visit (``H^-1(c)``, ``H(c)``). Found in one frame, the
    centre does not depend on how each visit's crop is turned, and swapping the visits (with
    ``lower^-1``) gives the same point. A visit without masks (None) or without a centre is
    left out.

    Raises:
        ValueError: neither visit has a centre.
    """
    h = sqrt_similarity(lower)
    h_inv = h.inverse()
    centres = []
    for masks, move in ((baseline, h), (followup, h_inv)):
        if masks is None:
            continue
        try:
            centres.append(articular_centre(_warp_mask(masks[0], move), _warp_mask(masks[1], move)))
        except ValueError:
            continue
    if not centres:
        raise ValueError("neither visit's masks give an articular centre")
    c = np.mean(np.asarray(centres, dtype=float), axis=0)
    p, q = h_inv.apply(c), h.apply(c)
    return (float(p[0]), float(p[1])), (float(q[0]), float(q[1]))
