"""Cramér-Rao lower bound of the narrowing for a known image, motion and noise level."""

from __future__ import annotations

import math

import numpy as np

from ..geometry import Similarity, narrowing_jacobian

__all__ = ["narrowing_crb"]


def _fisher(clean: np.ndarray, mask: np.ndarray, center: tuple[float, float], sigma_eff: float) -> np.ndarray:
    """Fisher information of ``(log_scale, angle, tx, ty)`` with gain and offset as nuisances."""
    gy, gx = np.gradient(np.asarray(clean, float))
    ys, xs = np.nonzero(mask)
    gx, gy, t = gx[ys, xs], gy[ys, xs], clean[ys, xs]
    dx, dy = xs - center[0], ys - center[1]
    jac = np.stack([gx * dx + gy * dy, -gx * dy + gy * dx, gx, gy, t, np.ones_like(t)], axis=1)
    info = jac.T @ jac / sigma_eff**2
    # Schur complement: information left for the geometry once gain and offset are estimated.
    return info[:4, :4] - info[:4, 4:] @ np.linalg.solve(info[4:, 4:], info[4:, :4])


def narrowing_crb(clean_baseline: np.ndarray, labels: np.ndarray, upper: Similarity, lower: Similarity, *,
                  noise_baseline: float, noise_followup: float, gain: float = 1.0,
                  point: tuple[float, float] | None = None) -> float:
    """Lower bound of the standard deviation (px) of any unbiased narrowing estimate.

    Model: ``followup(S_bone(x)) = gain * baseline(x) + offset`` on each side, with
    independent white Gaussian noise of standard deviation ``noise_baseline`` and
    ``noise_followup`` added to the two images. Noise in the baseline is folded into an
    effective noise ``sqrt(noise_followup^2 + gain^2 noise_baseline^2)`` (first-order
    errors-in-variables approximation). Image gradients are central differences of the
    noise-free baseline.

    Args:
        clean_baseline: noise-free baseline [row, col].
        labels: 1 = upper side, 2 = lower side (baseline frame).
        upper, lower: true motions (they fix where the narrowing is linearised).
        noise_baseline, noise_followup: noise standard deviations in image units.
        gain: follow-up / baseline intensity gain.
        point: where the narrowing is evaluated (default: the transforms' centre).
    """
    sigma_eff = math.sqrt(noise_followup**2 + (gain * noise_baseline) ** 2)
    if sigma_eff <= 0:
        return 0.0
    g_u, g_l = narrowing_jacobian(upper, lower, point)
    var = 0.0
    for g, lab, s in ((g_u, 1, upper), (g_l, 2, lower)):
        cov = np.linalg.inv(_fisher(clean_baseline, labels == lab, s.center, sigma_eff))
        var += float(g @ cov @ g)
    return math.sqrt(var)
