"""Intensity normalisation shared by the registration engines and both networks."""

from __future__ import annotations

import numpy as np

__all__ = ["normalise"]


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
