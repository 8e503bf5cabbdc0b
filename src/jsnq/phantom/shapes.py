"""Smooth blending of signed distances and the random plane-wave texture, shared by the joint
and the hand phantoms."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["smoothstep", "smooth_max", "smooth_min", "wave_bank", "plane_waves"]


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


def wave_bank(seed: int, stream: int, n: int, lam: tuple[float, float],
               anisotropic: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wave vectors (n, 2), phases (n,), amplitudes (n,) of a unit-variance random field."""
    rng = np.random.default_rng([seed, stream])
    wl = np.exp(rng.uniform(math.log(lam[0]), math.log(lam[1]), n))
    if anisotropic:
        # trabeculae run mostly along the bone axis (vertical streaks <=> wave vectors near
        # horizontal): 60 % of the waves within +-35 deg of horizontal, the rest isotropic
        theta = np.where(rng.uniform(size=n) < 0.6, rng.uniform(-0.6, 0.6, n),
                         rng.uniform(0.0, math.pi, n))
    else:
        theta = rng.uniform(0.0, math.pi, n)
    k = (2.0 * math.pi / wl)[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1)
    phase = rng.uniform(0.0, 2.0 * math.pi, n)
    amp = np.full(n, math.sqrt(2.0 / n))
    return k, phase, amp


def plane_waves(bank: tuple[np.ndarray, np.ndarray, np.ndarray], a: np.ndarray, b: np.ndarray,
                xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """``sum_n amp_n cos(k_n . (A p + b) + phase_n)`` on the grid ``p = (xs, ys)``.

    ``k.(A p + b) = (A^T k).p + k.b`` is again a plane wave on the pixel grid, and
    ``cos(kx x + ky y + f) = cos(ky y + f) cos(kx x) - sin(ky y + f) sin(kx x)``: the sum
    is one real matrix product ``(rows x 2n) @ (2n x cols)`` -- exact, and far cheaper than
    n full-grid cosines.
    """
    k, phase, amp = bank
    kp = k @ a  # rows: (A^T k_n)^T
    ph = phase + k @ b
    arg_y = ys[:, None] * kp[None, :, 1] + ph[None, :]
    arg_x = kp[:, 0][:, None] * xs[None, :]
    left = np.concatenate([amp * np.cos(arg_y), -amp * np.sin(arg_y)], axis=1)
    right = np.concatenate([np.cos(arg_x), np.sin(arg_x)], axis=0)
    return left @ right
