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

__all__ = ["COARSE_TOL_PX", "MIN_SAMPLES", "Instrument", "Level", "ScaleSpace", "coarse_to_fine", "dot"]

#: Fewer valid samples than this and a fit is not attempted (the 4 + 2 parameters need many more).
MIN_SAMPLES = 20
#: A level before the last stops once its step moves no pixel by more than this: it only brings
#: the fit into the next level's capture range, and its own optimum lies about this far or
#: farther from the full-resolution one (median 0.05 px on the accuracy targets' crops, 0.8 px
#: on the RA hand pair's joints; docs/benchmarks.md, "Speed, the registration's own cost").
COARSE_TOL_PX = 0.05


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """1-D dot product without BLAS (threaded OpenBLAS ``ddot`` can stall for milliseconds
    when the other cores are busy, which dominated the run time of a registration) and
    without a temporary array."""
    return float(np.einsum("i,i->", a, b))


def _zero_centre_kernel(sigma: float = 1.0, radius: int = 2) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    k = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma * sigma))
    k[radius, radius] = 0.0
    return k / k.sum()


_ZERO_CENTRE_KERNEL = _zero_centre_kernel()


def _jacobian(gx: np.ndarray, gy: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """``(N, 4)``: the image gradient's Jacobian for (log_scale, angle, tx, ty) about the lever arms."""
    out = np.empty((len(gx), 4))
    out[:, 0] = gx * dx + gy * dy
    out[:, 1] = gy * dx - gx * dy
    out[:, 2] = gx
    out[:, 3] = gy
    return out


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
        flat = np.flatnonzero(sel)
        ys, xs = np.divmod(flat, mask.shape[1])
        self.weights = None if mask.dtype == bool else mask.ravel()[flat].astype(float)[:, None]
        self.rows, self.cols = ys, xs
        #: The samples' pixel coordinates.
        self.x, self.y = xs.astype(float), ys.astype(float)
        t = base_s.ravel()[flat]
        dx, dy = self.x - center[0], self.y - center[1]
        # Jacobians of T(W(x; p)) at p = 0 for p = (log_scale, angle, tx, ty): from the
        # smoothed gradient (the "instrument" that weights the residual) and from the plain one
        # (which sets the step length).
        self.design, self.design_raw = (_jacobian(g[1].ravel()[flat], g[0].ravel()[flat], dx, dy) for g in grads)
        self.t = t
        self.t_mean = float(t.mean()) if len(t) else 0.0
        # The monotone exposure curve's quadratic term: the square of the centred template, and
        # its derivative along the template.
        self.q = (t - self.t_mean) ** 2 if curve and len(t) else None
        self.dq = 2.0 * (t - self.t_mean) if curve and len(t) else None
        # The baseline smoothed by a kernel with a zero centre weight: a direction along the
        # template that is uncorrelated with each pixel's own noise (see :class:`Instrument`).
        self.t_other = None if base_other is None else base_other.ravel()[flat]
        # Largest lever arm, to turn a parameter step into a pixel displacement.
        self.radius = math.sqrt(float(np.max(dx * dx + dy * dy))) if len(xs) else 0.0
        # Sums over all samples, from which each set of valid samples' products follow
        # (:class:`Instrument`): the weights, and their squares for the instrument's own product.
        ones = np.ones(len(t))
        om = ones if self.weights is None else self.weights[:, 0]
        om2 = om if self.weights is None else om * om
        zw = self.design if self.weights is None else self.design * om[:, None]
        zw2 = self.design if self.weights is None else self.design * om2[:, None]
        self.omega, self.omega2 = om, om2
        self._sums = (ones @ self.design, ones @ self.design_raw, om @ self.design, om @ self.design_raw,
                      float(om.sum()), zw.T @ self.design_raw, om2 @ self.design, float(om2.sum()),
                      zw2.T @ self.design)

    def mapped(self, s: Similarity) -> np.ndarray:
        """The samples mapped by ``s``, as ``(2, N)`` rows (y) and columns (x)."""
        m = s.matrix()
        out = np.empty((2, len(self.x)))
        np.multiply(self.x, m[1, 0], out=out[0])
        out[0] += m[1, 1] * self.y
        out[0] += m[1, 2]
        np.multiply(self.x, m[0, 0], out=out[1])
        out[1] += m[0, 1] * self.y
        out[1] += m[0, 2]
        return out

    def instrument(self, w: np.ndarray, n: float) -> "Instrument":
        """The instrument of the valid samples ``w`` (0/1; ``n`` of them)."""
        return Instrument(self, w, n)


class Instrument:
    """The instrument of one set of valid samples: the smoothed Jacobian centred over them and
    zero elsewhere, times the weights, and with ``gain_free`` made orthogonal to the template
    (the direction removed is the template smoothed without its centre pixel, so the projection
    adds no correlation with a pixel's own noise); ``a_mat``, its product with the plain
    Jacobian centred alike (the instrumental-variable normal matrix), and ``zz``, with itself.

    Both products come from the level's sums over all samples less those of the invalid ones,
    and :meth:`score` is one matrix-vector product: an iteration forms no N x 4 matrix.
    :meth:`matrix` gives the N x 4 instrument itself (for the covariance)."""

    def __init__(self, level: Level, w: np.ndarray, n: float) -> None:
        self.level, self.w, self.n = level, w, n
        s_z, s_r, s_wz, s_wr, s_w, s_wzr, s_w2z, s_w2, s_w2zz = level._sums
        bad = np.flatnonzero(w == 0)
        if len(bad):
            z, r = level.design[bad], level.design_raw[bad]
            om, om2 = level.omega[bad], level.omega2[bad]
            s_z, s_r = s_z - z.sum(axis=0), s_r - r.sum(axis=0)
            s_wz, s_wr, s_w = s_wz - om @ z, s_wr - om @ r, s_w - float(om.sum())
            s_wzr = s_wzr - (z * om[:, None]).T @ r
            s_w2z, s_w2 = s_w2z - om2 @ z, s_w2 - float(om2.sum())
            s_w2zz = s_w2zz - (z * om2[:, None]).T @ z
        self.mz, self.mr = s_z / n, s_r / n
        mz, mr = self.mz, self.mr
        self.a_mat = s_wzr - np.outer(mz, s_wr) - np.outer(s_wz, mr) + s_w * np.outer(mz, mr)
        self.zz = s_w2zz - np.outer(mz, s_w2z) - np.outer(s_w2z, mz) + s_w2 * np.outer(mz, mz)
        self._u: np.ndarray | None = None
        self._v = np.zeros(4)
        if level.t_other is not None:
            self._gain_free()

    def _gain_free(self) -> None:
        """``Z <- Z - u v^T``: ``u`` the centred smoothed template, ``v`` chosen so that the
        instrument is orthogonal to the centred template ``tc`` (``Z^T tc = 0``)."""
        level, w, n = self.level, self.w, self.n
        tc = (level.t - dot(w, level.t) / n) * w
        u = (level.t_other - dot(w, level.t_other) / n) * w
        denom = dot(tc, u)
        if abs(denom) < 1e-300:
            return
        v = self._plain_score(tc) / denom
        zu = self._plain_score(u)
        ru = level.design_raw.T @ u - self.mr * float(u.sum())
        self.a_mat = self.a_mat - np.outer(v, ru)
        self.zz = self.zz - np.outer(zu, v) - np.outer(v, zu) + dot(u, u) * np.outer(v, v)
        self._u, self._v = u, v

    def _plain_score(self, x: np.ndarray) -> np.ndarray:
        if self.level.weights is not None:
            x = x * self.level.omega
        return self.level.design.T @ x - self.mz * float(x.sum())

    def score(self, x: np.ndarray) -> np.ndarray:
        """``Z^T x`` for a per-sample ``x`` that is zero at the invalid samples."""
        out = self._plain_score(x)
        return out if self._u is None else out - self._v * dot(self._u, x)

    def matrix(self, scale: np.ndarray | None = None) -> np.ndarray:
        """The N x 4 instrument ``Z``, each row times ``scale`` when given."""
        wt = self.w if self.level.weights is None else self.w * self.level.omega
        if scale is not None:
            wt = wt * scale
        z = self.level.design - self.mz
        z *= wt[:, None]
        if self._u is not None:
            z -= np.outer(self._u if scale is None else self._u * scale, self._v)
        return z

    def raw_product(self, z: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """``z^T R``: an N x 4 ``z`` against the plain Jacobian centred over the valid samples,
        each row of it times ``scale``."""
        ws = self.w * scale
        return z.T @ (self.level.design_raw * ws[:, None]) - np.outer(z.T @ ws, self.mr)


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
                   levels: tuple[tuple[float, int], ...], opts: RegistrationOptions,
                   capture: Callable[..., _Solved] | None = None) -> _S:
    """Run ``solve`` through the scale-space ``levels``, each level from the last one's transform.

    ``views`` holds one ``(space, mask)`` per direction the solver fits: one for
    :func:`~jsnq.register.gauss_newton.gauss_newton`, the forward and the backward one for
    :func:`~jsnq.register.gauss_newton.symmetric_gauss_newton`. The last level is solved as
    ``solve(*levels, start, max_iter=, tol_px=)``, with one :class:`Level` per view (about
    ``init``'s centre). The levels before it only bring the fit into the last one's capture
    range: they stop at ``COARSE_TOL_PX``, and with ``capture`` (a one-way solver) they fit the
    first view alone. Returns the last level's solution, with the iterations of all.

    Raises:
        ValueError: a mask has fewer than ``MIN_SAMPLES`` pixels on a level's grid.
    """
    s, total, sol = init, 0, None
    for i, (sigma, step) in enumerate(levels):
        last = i == len(levels) - 1
        run, used = (solve, views) if last or capture is None else (capture, views[:1])
        built = [space.level(mask, sigma, step, init.center, opts) for space, mask in used]
        if any(len(level.t) < MIN_SAMPLES for level in built):
            raise ValueError("too few pixels in the mask to register")
        sol = run(*built, s, max_iter=opts.max_iter, tol_px=opts.tol_px if last else max(opts.tol_px, COARSE_TOL_PX))
        s = sol.transform
        total += sol.iterations
    return sol.with_iterations(total)
