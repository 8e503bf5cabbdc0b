"""Intensity normalisation shared by the registration engines and both networks, and the
white-noise estimate that the registration's covariance uses."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

__all__ = ["normalise", "estimate_noise_sd"]

#: Immerkaer's noise-estimation mask: the difference of two Laplacians, zero on any quadratic.
_IMMERKAER = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])


def normalise(image: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5), *,
              dtype: type = np.float64) -> np.ndarray:
    """``image`` as ``dtype`` with its ``percentiles`` mapped to 0 and 1.

    Percentiles rather than the extremes, so that a few saturated or dead pixels do not set
    the scale. A constant image is only shifted (its range would be 0). The fits are
    gain-invariant; the networks were trained on inputs normalised this way.
    """
    a = np.asarray(image, dtype=dtype)
    lo, hi = (float(v) for v in np.percentile(a, percentiles))
    return ((a - lo) / (hi - lo if hi > lo else 1.0)).astype(dtype, copy=False)


def estimate_noise_sd(image: np.ndarray) -> float:
    """The SD of an image's white noise, by Immerkaer's fast estimator (Comput Vis Image
    Underst 64:300, 1996): the mean absolute response to a mask that cancels planes and
    quadratics, times ``sqrt(pi / 2) / 6``. Fine texture counts as noise, so on real
    radiographs it is an upper bound; 0 for images under 3 px a side."""
    a = np.asarray(image, dtype=np.float64)
    if a.ndim != 2 or min(a.shape) < 3:
        return 0.0
    r = ndi.convolve(a, _IMMERKAER, mode="nearest")[1:-1, 1:-1]
    return math.sqrt(math.pi / 2.0) * float(np.abs(r).mean()) / 6.0
