"""Classical joint-space line: a minimal-cost dark path through the gap, by dynamic programming.

A canonical joint crop (finger up) shows two bright bones separated by a dark joint space
running roughly left to right through the middle. The line is the left-to-right path that
maximises a "valley" response (darker than the image a few pixels above *and* below), with
a smoothness penalty, found exactly by dynamic programming (Viterbi). Its pixels lie on the
midline of the gap, which is where the split between the bone sides belongs.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["joint_space_line", "valley_response", "min_cost_path"]


def valley_response(img: np.ndarray, offsets: tuple[int, ...]) -> np.ndarray:
    """``max_k min(I(r-k), I(r+k)) - I(r)``: how much darker a pixel is than both sides."""
    best = np.full(img.shape, -np.inf)
    pad = max(offsets)
    p = np.pad(img, ((pad, pad), (0, 0)), mode="edge")
    n = img.shape[0]
    for k in offsets:
        above = p[pad - k : pad - k + n]
        below = p[pad + k : pad + k + n]
        best = np.maximum(best, np.minimum(above, below) - img)
    return best


def joint_space_line(image: np.ndarray, *, band: tuple[float, float] = (0.2, 0.8), smooth_px: float = 2.0,
                     offsets: tuple[int, ...] = (2, 3, 5), step_penalty: float = 1.0,
                     prior: np.ndarray | None = None) -> np.ndarray:
    """Row (y, float) of the joint-space midline at every column of a canonical crop.

    Args:
        image: 2-D [row, col] crop, finger up, joint roughly in the middle rows.
        band: fraction of the rows searched (the gap lies inside it).
        smooth_px: Gaussian blur before the valley response.
        offsets: vertical distances (px) at which the valley compares its neighbours.
        step_penalty: cost per row the path moves between neighbouring columns, in units of
            the valley response's standard deviation.
        prior: optional cost per searched row (same units), added at every column: e.g. a
            penalty for leaving the row where the joint is expected.

    Returns:
        ``(cols,)`` array of row positions.
    """
    img = np.asarray(image, dtype=float)
    rows, cols = img.shape
    r0, r1 = int(band[0] * rows), int(np.ceil(band[1] * rows))
    s = ndi.gaussian_filter(img, smooth_px)
    v = valley_response(s, offsets)[r0:r1]
    scale = v.std() or 1.0
    cost = -v / scale
    if prior is not None:
        cost = cost + np.asarray(prior, dtype=float)[:, None]
    return (min_cost_path(cost, step_penalty) + r0).astype(float)


def min_cost_path(cost: np.ndarray, step_penalty: float, max_step: int = 1) -> np.ndarray:
    """The left-to-right path of one row per column through ``cost`` ``[row, col]`` that
    minimises the summed cost plus ``step_penalty`` per row it moves between neighbouring
    columns (at most ``max_step``), found exactly by dynamic programming: ``(cols,)`` int rows."""
    n, cols = cost.shape
    acc = cost[:, 0].copy()
    back = np.zeros((n, cols), dtype=np.int8)
    moves = np.arange(-max_step, max_step + 1)  # from row r + move; ties go to the first
    pad = np.full(max_step, np.inf)
    for c in range(1, cols):
        padded = np.concatenate([pad, acc, pad])
        cand = np.stack([padded[max_step + d:max_step + d + n] + step_penalty * abs(d) for d in moves])
        k = np.argmin(cand, axis=0)
        back[:, c] = moves[k]
        acc = cand[k, np.arange(n)] + cost[:, c]
    path = np.empty(cols, dtype=int)
    path[-1] = int(np.argmin(acc))
    for c in range(cols - 1, 0, -1):
        path[c - 1] = path[c] + back[path[c], c]
    return path
