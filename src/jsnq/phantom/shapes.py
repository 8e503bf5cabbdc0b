"""Smooth blending of signed distances, shared by the joint and the hand phantoms."""

from __future__ import annotations

import numpy as np

__all__ = ["smoothstep", "smooth_max", "smooth_min"]


def smoothstep(t: np.ndarray) -> np.ndarray:
    """``3t^2 - 2t^3`` on ``t`` clipped to [0, 1]."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def smooth_max(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth maximum (C1); equals max(a, b) where |a - b| >= k."""
    if k <= 0:
        return np.maximum(a, b)
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.maximum(a, b) + h * h * (k / 4.0)


def smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (C1); equals min(a, b) where |a - b| >= k."""
    if k <= 0:
        return np.minimum(a, b)
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * (k / 4.0)
