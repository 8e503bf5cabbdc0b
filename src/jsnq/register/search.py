"""The global search: a coarse whole-crop similarity that starts the Gauss-Newton fits.

A grid over rotation and scale on downsampled, lightly blurred crops, with phase-only
correlation for the shift; it gives the refinement its capture range.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from ..geometry import Similarity, crop_centre
from .options import RegistrationOptions

__all__ = ["global_search"]


def _downsample(img: np.ndarray, f: int) -> np.ndarray:
    h, w = (img.shape[0] // f) * f, (img.shape[1] // f) * f
    return img[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))


def _poc(a: np.ndarray, b: np.ndarray, win: np.ndarray) -> tuple[float, float, float]:
    """Phase-only correlation: shift (dx, dy) with ``b(y) ~ a(y - d)`` and the peak height."""
    fa = np.fft.rfft2((a - a.mean()) * win)
    fb = np.fft.rfft2((b - b.mean()) * win)
    cross = fb * np.conj(fa)
    cross /= np.abs(cross) + 1e-12
    r = np.fft.irfft2(cross, s=a.shape)
    iy, ix = np.unravel_index(int(np.argmax(r)), r.shape)
    dy = iy if iy <= a.shape[0] // 2 else iy - a.shape[0]
    dx = ix if ix <= a.shape[1] // 2 else ix - a.shape[1]
    return float(dx), float(dy), float(r[iy, ix])


def global_search(baseline: np.ndarray, followup: np.ndarray, *,
                  options: RegistrationOptions | None = None) -> Similarity:
    """Coarse whole-crop similarity: a grid over rotation and scale, phase correlation for the shift.

    Returns the candidate whose phase-correlation peak is highest, about the crop centre.
    """
    opts = options or RegistrationOptions()
    f = opts.search_factor
    b = _downsample(np.asarray(baseline, float), f)
    fo = _downsample(np.asarray(followup, float), f)
    b = ndi.gaussian_filter(b, 0.7)
    fo = ndi.gaussian_filter(fo, 0.7)
    win = np.outer(np.hanning(b.shape[0]), np.hanning(b.shape[1]))
    c_small = crop_centre(b.shape)
    c_full = crop_centre(baseline.shape)
    ys, xs = np.mgrid[0 : b.shape[0], 0 : b.shape[1]]
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(float)
    best = (-np.inf, Similarity.identity(c_full))
    for scale in opts.search_scales:
        for ang in opts.search_angles_deg:
            rot = Similarity(scale, math.radians(ang), 0.0, 0.0, c_small)
            src = rot.inverse().apply(grid)  # predicted follow-up: baseline(R^-1(y))
            pred = ndi.map_coordinates(b, [src[:, 1], src[:, 0]], order=1, mode="nearest").reshape(b.shape)
            dx, dy, peak = _poc(pred, fo, win)
            if peak > best[0]:
                best = (peak, Similarity(scale, math.radians(ang), dx * f, dy * f, c_full))
    return best[1]

