"""The scale space of a registration: blurred images, the baseline's samples at each level, and
the coarse-to-fine loop that runs a solver through the levels.

:class:`ScaleSpace` holds the Gaussian-blurred copies of both images, computed once per sigma;
:class:`Level` the baseline's samples, Jacobian and instrument on one level's grid for one mask;
:func:`coarse_to_fine` runs a Gauss-Newton solver (:mod:`jsnq.register.gauss_newton`) level by
level, each from the last one's transform.
"""

from __future__ import annotations

import math
from typing import Callable, Protocol, TypeVar

import numpy as np
from scipy import ndimage as ndi

from ..geometry import Similarity
from ..intensity import estimate_noise_sd
from .options import RegistrationOptions
from .warp import SplineImage

__all__ = ["MIN_SAMPLES", "Level", "ScaleSpace", "coarse_to_fine", "dot"]

#: Fewer valid samples than this and a fit is not attempted (the 4 + 2 parameters need many more).
MIN_SAMPLES = 20


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """1-D dot product without BLAS: threaded OpenBLAS ``ddot`` can stall for milliseconds
    when the other cores are busy, which dominated the run time of a registration."""
    return float(np.multiply(a, b).sum())


def _zero_centre_kernel(sigma: float = 1.0, radius: int = 2) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    k = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma * sigma))
    k[radius, radius] = 0.0
    return k / k.sum()


_ZERO_CENTRE_KERNEL = _zero_centre_kernel()


class Level:
    """Baseline samples and Jacobian data at one scale-space level for one mask, and the
    follow-up at that level (``followup``), ready to be sampled (:meth:`ScaleSpace.level`).

    ``mask`` is boolean, or float weights (pixels > 0 are sampled; the weights multiply the
    instrument, i.e. each sample's row of the smoothed Jacobian)."""

    def __init__(self, base_s: np.ndarray, grads: tuple[tuple[np.ndarray, np.ndarray], ...], followup: SplineImage,
                 mask: np.ndarray, step: int, center: tuple[float, float], base_other: np.ndarray | None = None,
                 curve: bool = False) -> None:
        self.followup = followup
        sel = np.zeros(mask.shape, bool)
        sel[::step, ::step] = mask[::step, ::step] > 0
        ys, xs = np.nonzero(sel)
        self.weights = None if mask.dtype == bool else mask[ys, xs].astype(float)[:, None]
        self.rows, self.cols = ys, xs
        self.pts = np.stack([xs, ys], axis=1).astype(float)
        t = base_s[ys, xs]
        dx, dy = xs - center[0], ys - center[1]
        # Jacobians of T(W(x; p)) at p = 0 for p = (log_scale, angle, tx, ty): from the
        # smoothed gradient (the "instrument" that weights the residual) and from the plain one
        # (which sets the step length).
        self.design, self.design_raw = (
            np.stack([gx * dx + gy * dy, -gx * dy + gy * dx, gx, gy], axis=1)
            for gx, gy in ((g[1][ys, xs], g[0][ys, xs]) for g in grads))
        self.t = t
        # The square of the (centred) template: the quadratic term of the monotone exposure curve.
        self.q = (t - t.mean()) ** 2 if curve and len(t) else None
        self.t_mean = float(t.mean()) if len(t) else 0.0
        # The baseline smoothed by a kernel with a zero centre weight: a direction along the
        # template that is uncorrelated with each pixel's own noise (see :func:`_gain_free`).
        self.t_other = None if base_other is None else base_other[ys, xs]
        # Largest lever arm, to turn a parameter step into a pixel displacement.
        self.radius = float(np.max(np.hypot(dx, dy))) if len(xs) else 0.0
        self._all_valid: tuple[np.ndarray, np.ndarray] | None = None
        self._last: tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None

    def instrument(self, w: np.ndarray, n: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The instrument (the smoothed Jacobian, centred over the valid samples ``w``, times
        the weights, and with ``gain_free`` made orthogonal to the template) and the
        instrumental-variable normal matrix. When every sample is valid both are fixed for
        the level, so they are computed once rather than every iteration."""
        if n == len(w):
            if self._all_valid is None:
                self._all_valid = self._finish(self.design - self.design.mean(axis=0),
                                               self.design_raw - self.design_raw.mean(axis=0), w, n)
            return self._all_valid
        # The valid samples rarely change from one iteration to the next: the last set's result
        # is reused when they did not (the same numbers, without the N x 4 products).
        if self._last is not None and np.array_equal(self._last[0], w):
            return self._last[1]
        out = self._finish((self.design - (w @ self.design) / n) * w[:, None],
                           (self.design_raw - (w @ self.design_raw) / n) * w[:, None], w, n)
        self._last = (w.copy(), out)
        return out

    def _finish(self, jc: np.ndarray, raw_c: np.ndarray, w: np.ndarray,
                n: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.weights is not None:
            jc = jc * self.weights
        if self.t_other is not None:
            jc = _gain_free(self, jc, w, n)
        return jc, jc.T @ raw_c, raw_c


def _gain_free(level: Level, jc: np.ndarray, w: np.ndarray, n: float) -> np.ndarray:
    """The instrument made orthogonal to the centred template, so that the geometric
    estimating equation no longer depends on the gain (nor the offset): a gain error, e.g.
    from unequal noise in the two visits, then cannot leak into the geometry through the
    mask's boundary. The direction removed is the template smoothed without its centre
    pixel, so the projection adds no correlation with a pixel's own noise."""
    tc = (level.t - dot(w, level.t) / n) * w
    u = (level.t_other - dot(w, level.t_other) / n) * w
    denom = dot(tc, u)
    if abs(denom) < 1e-300:
        return jc
    return jc - np.outer(u, (tc @ jc) / denom)


class ScaleSpace:
    """Blurred copies of both images, spline-ready, computed once per sigma.

    :meth:`reversed` gives the space of the swapped pair (the follow-up as the baseline), which
    shares the blurred copies with this one: the inverse-consistent fit needs both."""

    def __init__(self, baseline: np.ndarray, followup: np.ndarray, grad_sigma: float = 0.0) -> None:
        self.grad_sigma = grad_sigma
        self.baseline = np.asarray(baseline, dtype=np.float64)
        self.followup = np.asarray(followup, dtype=np.float64)
        self._cache: dict[float, tuple] = {}
        self._other: dict[float, np.ndarray] = {}
        self._names = ("a", "b")
        self._blurred: dict[tuple[str, float], np.ndarray] = {}
        self._noise_sd: float | None = None

    def reversed(self) -> "ScaleSpace":
        """The space of (followup, baseline), sharing the blurred images."""
        rev = ScaleSpace(self.followup, self.baseline, self.grad_sigma)
        rev._names = self._names[::-1]
        rev._blurred = self._blurred
        return rev

    def _blur(self, which: int, sigma: float) -> np.ndarray:
        image = self.baseline if which == 0 else self.followup
        if sigma <= 0:
            return image
        key = (self._names[which], float(sigma))
        if key not in self._blurred:
            self._blurred[key] = ndi.gaussian_filter(image, sigma)
        return self._blurred[key]

    def get(self, sigma: float) -> tuple[np.ndarray, tuple, SplineImage]:
        """The baseline blurred by ``sigma``, its gradients (the instrument's, smoothed by
        ``grad_sigma`` more, and the plain ones) and the blurred follow-up, computed once."""
        if sigma not in self._cache:
            b = self._blur(0, sigma)
            f = self._blur(1, sigma)
            # The residual is weighted by a slightly smoothed gradient (an instrumental
            # variable): the noise of a raw finite-difference gradient would otherwise enter
            # the estimate. The antisymmetric derivative kernel gives the centre pixel zero
            # weight, so the smoothing adds no bias to the fixed point.
            g = b if self.grad_sigma <= 0 else self._blur(0, math.hypot(sigma, self.grad_sigma))
            grads = (tuple(np.gradient(g)), tuple(np.gradient(b)))
            # Linear interpolation is enough on the blurred coarse levels.
            self._cache[sigma] = (b, grads, SplineImage(f, order=1 if sigma >= 2 else 3))
        return self._cache[sigma]

    def noise_sd(self) -> float:
        """The baseline's white-noise SD (:func:`jsnq.intensity.estimate_noise_sd`), computed once."""
        if self._noise_sd is None:
            self._noise_sd = estimate_noise_sd(self.baseline)
        return self._noise_sd

    def other(self, sigma: float) -> np.ndarray:
        """The baseline at ``sigma`` smoothed by a kernel without its centre weight (for
        :attr:`RegistrationOptions.gain_free`), computed once."""
        if sigma not in self._other:
            self._other[sigma] = ndi.convolve(self.get(sigma)[0], _ZERO_CENTRE_KERNEL, mode="nearest")
        return self._other[sigma]

    def level(self, mask: np.ndarray, sigma: float, step: int, center: tuple[float, float],
              opts: RegistrationOptions) -> Level:
        """The :class:`Level` of ``mask`` at ``sigma`` on a grid of ``step`` px. The monotone
        exposure curve is fitted at full resolution only, where the sub-pixel fit is made; the
        coarse levels only bring the fit within their capture range, with gain and offset."""
        base_s, grads, fol = self.get(sigma)
        curve = opts.exposure_model == "monotone" and sigma <= 0
        return Level(base_s, grads, fol, mask, int(step), center, self.other(sigma) if opts.gain_free else None,
                     curve)

    def fill(self, levels: tuple[tuple[float, int], ...], opts: RegistrationOptions) -> None:
        """Compute every level's images now, e.g. before threads share this space."""
        for sigma, _ in levels:
            self.get(sigma)
            if opts.gain_free:
                self.other(sigma)


class _Solved(Protocol):
    """What :func:`coarse_to_fine` needs of a solver's result."""

    transform: Similarity
    iterations: int

    def with_iterations(self, iterations: int) -> "_Solved": ...


_S = TypeVar("_S", bound=_Solved)


def coarse_to_fine(solve: Callable[..., _S], views: tuple[tuple[ScaleSpace, np.ndarray], ...], init: Similarity,
                   levels: tuple[tuple[float, int], ...], opts: RegistrationOptions) -> _S:
    """Run ``solve`` through the scale-space ``levels``, each level from the last one's transform.

    ``views`` holds one ``(space, mask)`` per direction the solver fits: one for
    :func:`~jsnq.register.gauss_newton.gauss_newton`, the forward and the backward one for
    :func:`~jsnq.register.gauss_newton.symmetric_gauss_newton`. At each level the solver is
    called as ``solve(*levels, start, max_iter=, tol_px=)``, with one :class:`Level` per view
    (about ``init``'s centre). Returns the last level's solution, with the iterations of all.

    Raises:
        ValueError: a mask has fewer than ``MIN_SAMPLES`` pixels on a level's grid.
    """
    s, total, sol = init, 0, None
    for sigma, step in levels:
        built = [space.level(mask, sigma, step, init.center, opts) for space, mask in views]
        if any(len(level.t) < MIN_SAMPLES for level in built):
            raise ValueError("too few pixels in the mask to register")
        sol = solve(*built, s, max_iter=opts.max_iter, tol_px=opts.tol_px)
        s = sol.transform
        total += sol.iterations
    return sol.with_iterations(total)
