"""The covariance of a fit: the block sandwich ``A^-1 B A^-T / gain^2`` and its parts.

``A`` is the Gauss-Newton normal matrix without the part the baseline's own noise adds
(:func:`noise_free_normal`), ``B`` the covariance of the score summed over ``block`` x ``block``
pixel blocks, which stays honest when the residual noise is spatially correlated, as it is in
real radiographs. :func:`cross_covariance` pairs the two directions of an inverse-consistent fit.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import ndimage as ndi

from .gauss_newton import N_FIT_PARAMS, Evaluation, Solution
from .options import RegistrationOptions
from .scale_space import Level, ScaleSpace, dot

__all__ = ["MAX_NOISE_CORRECTION", "cross_covariance", "gradient_noise_overlap", "noise_free_normal",
           "normal_matrix", "sandwich_cov"]


def _block_sums(scores: np.ndarray, rows: np.ndarray, cols: np.ndarray, per_row: int, block: int,
                n_blocks: int) -> np.ndarray:
    """Per-sample ``scores`` (N x 4) summed over ``block`` x ``block`` pixel blocks, numbered row
    by row with ``per_row`` blocks a row: at least ``n_blocks`` rows, up to the last occupied
    block (the sandwich's and the cross-covariance's block sums)."""
    idx = (rows // block) * per_row + (cols // block)
    return np.stack([np.bincount(idx, weights=scores[:, k], minlength=n_blocks) for k in range(4)], axis=1)


def sandwich_cov(level: Level, score: np.ndarray, a_mat: np.ndarray, gain: float, n: int, block: int) -> np.ndarray:
    """Block-sandwich covariance ``A^-1 B A^-T / gain^2`` of the geometric step (4x4), from each
    sample's score (``jc * resid``, N x 4)."""
    # Empty blocks add zero rows, which leave B unchanged.
    per_row = int(level.cols.max()) // block + 1 if len(level.cols) else 0
    summed = _block_sums(score, level.rows, level.cols, per_row, block, 0)
    b_mat = summed.T @ summed * (n / max(n - N_FIT_PARAMS, 1.0))
    try:
        a_inv = np.linalg.inv(a_mat)
    except np.linalg.LinAlgError:
        return np.full((4, 4), np.inf)
    return a_inv @ b_mat @ a_inv.T / (gain * gain)


#: The noise correction of the normal matrix removes at most this fraction of any of its
#: diagonal terms (a guard against a noise estimate inflated by fine texture).
MAX_NOISE_CORRECTION = 0.5


@functools.lru_cache(maxsize=8)
def gradient_noise_overlap(grad_sigma: float) -> float:
    """``E[z_x r_x] / sigma^2`` for white noise of SD ``sigma``: the covariance of one pixel's
    instrument gradient (``np.gradient`` of the image blurred by ``grad_sigma``) with its plain
    gradient (``np.gradient``), along the same axis (across axes it is 0 by symmetry)."""
    n = 2 * int(math.ceil(4 * max(grad_sigma, 1.0))) + 9
    delta = np.zeros((n, n))
    delta[n // 2, n // 2] = 1.0
    smoothed = ndi.gaussian_filter(delta, grad_sigma) if grad_sigma > 0 else delta
    return float((np.gradient(smoothed)[1] * np.gradient(delta)[1]).sum())


def noise_free_normal(level: Level, st: Evaluation, center: tuple[float, float], noise_sd: float,
                       grad_sigma: float) -> np.ndarray:
    """The normal matrix ``A = Z^T J`` without the part that the baseline's own noise adds.

    The instrument ``Z`` (smoothed gradient) and the plain gradient ``J`` that sets the step
    are both taken from the noisy baseline, so ``Z^T J`` also sums the product of each pixel's
    two noise gradients, a positive term of expectation ``sigma^2 c M`` (``c`` from
    :func:`gradient_noise_overlap`, ``M`` the samples' lever-arm moments). The estimate's real
    sensitivity is to the noise-free gradient: the follow-up's gradient, whose noise is
    independent of ``Z``, gives the same matrix. Left in, the term makes ``A`` too large and
    the covariance ``A^-1 B A^-T`` too small (docs/method.md, "What the numbers mean"; figures
    in docs/benchmarks.md, "Figures behind the defaults"). The fixed point does not depend on
    ``A`` (it only scales the steps), so only the covariance uses the corrected matrix."""
    if not noise_sd > 0:
        return st.a_mat
    w = st.valid.astype(float)
    if st.slope is not None:
        w = w * st.slope * st.slope
    if level.weights is not None:
        w = w * level.weights[:, 0]
    dx, dy = level.cols - center[0], level.rows - center[1]
    r2, sx, sy, n = dot(w, dx * dx + dy * dy), dot(w, dx), dot(w, dy), float(w.sum())
    moments = np.array([[r2, 0.0, sx, sy], [0.0, r2, -sy, sx], [sx, -sy, n, 0.0], [sy, sx, 0.0, n]])
    term = gradient_noise_overlap(float(grad_sigma)) * noise_sd * noise_sd * moments
    diag = np.diag(st.a_mat)
    worst = float(np.max(np.diag(term) / np.where(diag > 0, diag, np.inf)))
    if worst > MAX_NOISE_CORRECTION:
        term *= MAX_NOISE_CORRECTION / worst
    return st.a_mat - term


def normal_matrix(space: ScaleSpace, sol: Solution, opts: RegistrationOptions) -> np.ndarray:
    """The normal matrix of a solution's covariance (:func:`noise_free_normal`)."""
    return noise_free_normal(sol.level, sol.state, sol.transform.center, space.noise_sd(), opts.grad_sigma)


def cross_covariance(shape: tuple[int, int], sol_f: Solution, a_f: np.ndarray, sol_b: Solution, a_b: np.ndarray,
                     block: int) -> np.ndarray:
    """``Cov(e_f, e_b)`` of one bone's forward and backward errors (4x4), on a baseline of ``shape``.

    Each direction's error is ``A^-1 s / gain`` (its normal matrix, as in its covariance, and
    its score ``s = Z^T r``). The two scores come from the same image pair at corresponding
    places: the backward samples (follow-up grid) are carried into the baseline frame by the
    fitted transform and both scores are summed over the baseline's blocks; the products of
    the paired block sums estimate the scores' covariance, as the sandwich's ``B`` does for one
    direction. Noise seen by both directions through matching labels makes the two errors
    equal; a misfit that each direction weights by its own visit's gradients and labels makes
    them differ, and the mean of the two is then more precise than either."""
    per_row = (shape[1] - 1) // block + 1
    n_blocks = per_row * ((shape[0] - 1) // block + 1)
    sums = []
    for sol, a_mat, to_baseline in ((sol_f, a_f, None), (sol_b, a_b, sol_b.transform)):
        level, st = sol.level, sol.state
        try:
            a_inv = np.linalg.inv(a_mat)
        except np.linalg.LinAlgError:
            return np.full((4, 4), np.nan)
        if to_baseline is None:  # the samples are the baseline's own pixels
            score, rows, cols = st.scores, level.rows, level.cols
        else:
            y, x = level.mapped(to_baseline)
            inside = (x >= -0.5) & (x < shape[1] - 0.5) & (y >= -0.5) & (y < shape[0] - 0.5)
            rows = np.clip(np.rint(y[inside]).astype(int), 0, shape[0] - 1)
            cols = np.clip(np.rint(x[inside]).astype(int), 0, shape[1] - 1)
            score = st.scores if inside.all() else st.scores[inside]
        n = float(st.valid.sum())
        scale = math.sqrt(n / max(n - N_FIT_PARAMS, 1.0)) / st.gain
        sums.append((_block_sums(score, rows, cols, per_row, block, n_blocks), a_inv, scale))
    (s_f, inv_f, k_f), (s_b, inv_b, k_b) = sums
    return inv_f @ (s_f.T @ s_b) @ inv_b.T * (k_f * k_b)
