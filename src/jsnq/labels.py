"""Label maps of a joint crop and what is derived from them: one module for every label helper.

A label map is ``uint8 [row, col]``: :data:`UPPER` (1) on the upper side of the joint (the
joint's distal bone, e.g. the proximal phalanx of an MCP), :data:`LOWER` (2) on the lower side,
0 elsewhere (ignored). Pure numpy/scipy; points are ``(x, y) = (col, row)``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

__all__ = ["UPPER", "LOWER", "labels_from_line", "labels_from_masks", "line_from_labels", "split_line_points",
           "side_masks", "edge_weights"]

#: Label of the upper side of the joint (its distal bone).
UPPER = 1
#: Label of the lower side of the joint (its proximal bone).
LOWER = 2


def labels_from_line(line: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Labels from a line of rows per column: 1 above (rows <= line), 2 below."""
    rows = np.arange(shape[0])[:, None]
    return np.where(rows <= np.asarray(line)[None, :], UPPER, LOWER).astype(np.uint8)


def labels_from_masks(upper_mask: np.ndarray, lower_mask: np.ndarray) -> np.ndarray:
    """Split a crop at the midline between two bone masks.

    Each pixel goes to the nearer bone (1 = upper, 2 = lower): the boundary runs along the
    middle of the gap. Pixels inside both masks (bone overlap on the projection) are 0.
    """
    up = np.asarray(upper_mask, bool)
    lo = np.asarray(lower_mask, bool)
    if not up.any() or not lo.any():
        raise ValueError("both bone masks must be non-empty")
    d_up = ndi.distance_transform_edt(~up)
    d_lo = ndi.distance_transform_edt(~lo)
    labels = np.where(d_up <= d_lo, UPPER, LOWER).astype(np.uint8)
    labels[up & lo] = 0
    return labels


def line_from_labels(labels: np.ndarray) -> np.ndarray:
    """Row of the upper/lower boundary per column (NaN where a column lacks either side)."""
    lab = np.asarray(labels)
    rows = np.arange(lab.shape[0])[:, None]
    up_last = np.where(lab == UPPER, rows, -1).max(axis=0).astype(float)
    lo_first = np.where(lab == LOWER, rows, lab.shape[0]).min(axis=0).astype(float)
    out = (up_last + lo_first) / 2.0
    out[(up_last < 0) | (lo_first >= lab.shape[0])] = np.nan
    return out


def split_line_points(labels: np.ndarray) -> np.ndarray:
    """Points ``(x, y)`` on the line between label 1 (upper side) and label 2 (lower side):
    per column, half-way between the upper side's last row and the lower side's first
    (:func:`~jsnq.segment.classical.line_from_labels`), so an unlabelled band between the
    sides has its middle found. Empty when no column has both sides."""
    line = line_from_labels(labels)
    cols = np.nonzero(np.isfinite(line))[0]
    return np.stack([cols, line[cols]], axis=1).astype(float)


def side_masks(labels: np.ndarray, gap_exclusion_px: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Pixels that the upper (1) and lower (2) fits use, without a band around their border.

    A pixel of one side within ``gap_exclusion_px`` of the other side is left out.
    """
    up, lo = labels == 1, labels == 2
    if gap_exclusion_px > 0 and up.any() and lo.any():
        return up & ~_dilate_disc(lo, gap_exclusion_px), lo & ~_dilate_disc(up, gap_exclusion_px)
    return up, lo


def _dilate_disc(mask: np.ndarray, radius: float) -> np.ndarray:
    """``mask`` dilated by the disc of ``radius``: exactly the pixels whose Euclidean distance to
    ``mask`` is <= ``radius`` (pixels beyond the border count as outside). The disc is a stack of
    rows, so the dilation is each row's width as a 1-D maximum filter, shifted and or-ed (ten
    times cheaper than a 2-D binary dilation, with the same result)."""
    r = int(math.floor(radius))
    h = mask.shape[0]
    m8 = mask.view(np.uint8)
    rows: dict[int, np.ndarray] = {}
    out = np.zeros(mask.shape, bool)
    for dy in range(-r, r + 1):
        half = int(math.floor(math.sqrt(radius * radius - dy * dy)))
        if half not in rows:
            rows[half] = ndi.maximum_filter1d(m8, 2 * half + 1, axis=1, mode="constant").view(bool)
        # out[y] |= row-dilated mask[y + dy]
        out[max(0, -dy):h - max(0, dy)] |= rows[half][max(0, dy):h - max(0, -dy)]
    return out


def edge_weights(labels: np.ndarray, gap_exclusion_px: float, ramp_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Float weights of the upper (1) and lower (2) sides: 0 within ``gap_exclusion_px`` of
    the side's edge (the other side, or pixels labelled 0), rising linearly to 1 over the
    next ``ramp_px``; 0 outside the side. The crop's border is not an edge."""
    if ramp_px <= 0:
        raise ValueError(f"ramp_px must be > 0, got {ramp_px}")
    out = []
    for value in (1, 2):
        side = labels == value
        d = ndi.distance_transform_edt(side)  # to the nearest pixel outside the side
        out.append(np.where(side, np.clip((d - gap_exclusion_px) / ramp_px, 0.0, 1.0), 0.0))
    return out[0], out[1]
