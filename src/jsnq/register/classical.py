"""Classical per-bone similarity registration: coarse search, then Gauss-Newton.

For each bone side of the baseline crop we estimate a :class:`~jsnq.geometry.Similarity`
mapping baseline pixels to follow-up pixels. The follow-up, resampled through it, is modelled
as an affine change of intensity of the baseline on that side::

    followup(S(x)) = gain * baseline(x) + offset + noise,      x in the side's mask

The gain and offset absorb exposure and contrast changes between visits, which makes the
least-squares fit equivalent to maximising the normalised cross-correlation. The geometric
part is solved by inverse-compositional Gauss-Newton (Baker & Matthews 2004): the Jacobian
involves only the baseline, the gain and offset enter linearly and are solved jointly with
the geometric step, and only one cubic-spline resampling of the follow-up is needed per
iteration. A coarse-to-fine schedule of Gaussian scale-space levels and a global search
over rotation and scale with phase correlation for the shift give the capture range.

The covariance of each bone's parameters is the block "sandwich" estimate
``A^-1 B A^-1`` (``A`` the Gauss-Newton normal matrix, ``B`` the covariance of the score
summed over 8x8-pixel blocks), which stays honest when the residual noise is spatially
correlated, as it is in real radiographs.
"""

from __future__ import annotations

import functools
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ..geometry import Similarity, crop_centre
from ..intensity import estimate_noise_sd
from ..labels import edge_weights, side_masks
from .warp import SplineImage

__all__ = ["RegistrationOptions", "BoneFit", "Registration", "PairRegistration", "register_bones", "register_pair",
           "fit_similarity",
           "evaluate_similarity", "global_search"]


#: Photometric models of the follow-up against the baseline on each side: ``linear`` (gain and
#: offset), ``monotone`` (a monotone quadratic curve: gain, offset and curvature).
EXPOSURE_MODELS = ("linear", "monotone")


@dataclass(frozen=True)
class RegistrationOptions:
    """Options of the classical engine.

    Attributes:
        global_levels: ``(sigma_px, step_px)`` scale-space levels for the joint (both-bone)
            similarity that follows the global search. ``sigma`` is the Gaussian blur applied
            to both images; ``step`` the spacing of the baseline sample grid.
        bone_levels: levels for the per-bone refinement; the last must be ``(0, 1)``
            (full resolution, every pixel) for sub-pixel precision.
        max_iter: Gauss-Newton iterations per level.
        tol_px: stop a level when the update moves no pixel of the side by more than this.
        search_angles_deg: rotations tried by the global search.
        search_scales: scales tried by the global search.
        search_factor: downsampling of the global search.
        block_px: block size of the sandwich covariance.
        grad_sigma: extra Gaussian smoothing (px) of the baseline for the Jacobian only.
        gap_exclusion_px: pixels of one side closer than this to the other side are left out
            of both fits. They lie in the joint space, which belongs to neither bone and
            deforms as the joint narrows; including them biases the narrowing towards zero
            (on real crops moved by known per-bone motions, the noise-free error SD falls
            from 0.042 to 0.016 px with a 3 px band; see benchmarks/split_line.py).
        edge_ramp_px: 0 (the default): every pixel of a side outside the gap band counts
            fully. Above 0: each side's pixels are weighted by their distance from the side's
            edge (0 within ``gap_exclusion_px``, rising linearly to 1 over ``edge_ramp_px``;
            :func:`~jsnq.labels.edge_weights`), so that pixels near the split line and near the bones'
            overlap enter a fit gradually. With 10 px this halves how much the narrowing
            depends on where the labels put the split (real pairs, network against true-mask
            labels: 0.046 instead of 0.090 px RMS) but discards information: at 5 % noise the
            error SD rises from 0.055 to 0.067 px (above the Cramér-Rao bound) and on real
            pairs the repeatability from 0.048 to 0.058 px. For labels you do not trust.
        gain_free: False (the default): the geometric update uses the smoothed-gradient
            instrument as is. True: the instrument is made orthogonal to the (centred)
            template, so the fixed point of the geometry no longer depends on the fitted gain
            and offset (:func:`_gain_free`). The gain is then only a step size. Without it, a
            gain error leaks into the geometry through the mask's boundary. Unequal noise in
            the two visits biases the ratio-of-SDs gain, and with it the narrowing: on
            synthetic motions of real crops, -0.015 px with 2 % noise in the baseline only,
            +0.016 px with 2 % in the follow-up only, and about 0.08 px at 5 %. With the
            option these are below 0.006 px, and equal noise gives the same SD as the
            default. On real pairs the forward/backward disagreement rises slightly (0.44
            against 0.40 px RMS), and a pair takes ~10 % longer, so it is not the default.
        max_abs_angle_deg, scale_range, max_shift_px: plausibility bounds; a fit beyond them
            is flagged ``at_bound``.
        parallel_bones: fit the two bones in two threads. The fits are independent (the
            same result either way) and numpy and scipy release the GIL in their heavy loops,
            so on two cores a registration takes about a fifth less time; turn it off when
            every core already runs its own process.
        inverse_consistent: with both visits' labels (and ``symmetric``), fit each bone once,
            inverse-consistently (:func:`register_pair`: the forward and backward Gauss-Newton
            steps averaged into one transform), instead of registering both ways and averaging
            the two narrowings. False: the two separate fits (jsnq 0.1's behaviour).
        exposure_model: ``monotone`` (the default): the follow-up is a monotone quadratic
            curve of the baseline on each side (gain, offset and curvature, fitted with the
            geometry: :func:`_monotone_exposure`), which absorbs nonlinear exposure changes
            such as a gamma (synthetic error SD 0.037 -> 0.024 px under I -> a I^g + b,
            g = exp(U(+-0.25))) and on those real crops costs no precision under noise (the
            same SD within 2 % at 0, 2 and 5 % noise); on phantoms at 2 % noise its SD is 9 %
            larger and at the +10 % scale corners of the capture range its worst error 0.067
            against 0.040 px (tests/test_register.py). Fitted at the full-resolution level
            only. ``linear``: a gain and an offset (jsnq 0.1).
        network_passes: forward passes of the registration network's cascade that start the
            hybrid's refinement (default 1: the refinement reaches the same fit from the
            coarse pass, identical to 4 decimals on the wide-motion condition, in a third of
            the network's time); 0: the shipped weights' own number (``inference_passes``, 3,
            which the network-only engine always uses).
    """

    global_levels: tuple[tuple[float, int], ...] = ((4.0, 4),)
    bone_levels: tuple[tuple[float, int], ...] = ((2.0, 2), (0.0, 1))
    max_iter: int = 30
    tol_px: float = 2e-3
    search_angles_deg: tuple[float, ...] = tuple(float(a) for a in np.arange(-20.0, 20.1, 5.0))
    search_scales: tuple[float, ...] = (0.9, 1.0, 1.1)
    search_factor: int = 4
    block_px: int = 8
    grad_sigma: float = 1.5
    gap_exclusion_px: float = 3.0
    edge_ramp_px: float = 0.0
    gain_free: bool = False
    max_abs_angle_deg: float = 30.0
    scale_range: tuple[float, float] = (0.75, 1.33)
    max_shift_px: float = 60.0
    parallel_bones: bool = True
    inverse_consistent: bool = True
    exposure_model: str = "monotone"
    network_passes: int = 1

    def __post_init__(self) -> None:
        if self.network_passes < 0:
            raise ValueError(f"network_passes must be >= 0, got {self.network_passes}")
        if self.exposure_model not in EXPOSURE_MODELS:
            raise ValueError(f"exposure_model must be one of {', '.join(map(repr, EXPOSURE_MODELS))}; "
                             f"got {self.exposure_model!r}")
        if not self.bone_levels or tuple(self.bone_levels[-1]) != (0, 1):
            raise ValueError("bone_levels must end with (0, 1): full resolution, every pixel")
        for sigma, step in (*self.global_levels, *self.bone_levels):
            if sigma < 0 or int(step) < 1:
                raise ValueError(f"levels need sigma >= 0 and step >= 1, got ({sigma}, {step})")
        if not self.edge_ramp_px >= 0:
            raise ValueError(f"edge_ramp_px must be >= 0, got {self.edge_ramp_px}")


@dataclass(frozen=True)
class BoneFit:
    """Result of fitting one bone side.

    Attributes:
        transform: baseline -> follow-up similarity of this bone.
        covariance: 4x4 covariance of a right-composed perturbation ``d`` of the transform,
            ``transform o Similarity.from_params(d)^-1``, in ``(log_scale, angle_rad, tx, ty)``.
        gain, offset: photometric fit ``followup(S(x)) ~ gain * baseline(x) + offset``.
        ncc_before, ncc_after: normalised cross-correlation over the side at the identity
            and at the fit.
        mse_before, mse_after: mean squared difference of the z-scored intensities over the
            side (the paper's masked loss, made exposure-invariant).
        residual_sd: standard deviation of the final intensity residual.
        n_pixels: pixels that entered the final fit.
        iterations: Gauss-Newton iterations over all levels.
        converged: the last level met ``tol_px`` within ``max_iter``.
        at_bound: the fit lies beyond the plausibility bounds.
    """

    transform: Similarity
    covariance: np.ndarray = field(repr=False)
    gain: float
    offset: float
    ncc_before: float
    ncc_after: float
    mse_before: float
    mse_after: float
    residual_sd: float
    n_pixels: int
    iterations: int
    converged: bool
    at_bound: bool


@dataclass(frozen=True)
class Registration:
    """Both bones' fits plus the joint initialisation they started from."""

    upper: BoneFit
    lower: BoneFit
    initial: Similarity


# ----------------------------------------------------------------------------------------
# Scale space
# ----------------------------------------------------------------------------------------
def _zero_centre_kernel(sigma: float = 1.0, radius: int = 2) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    k = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma * sigma))
    k[radius, radius] = 0.0
    return k / k.sum()


_ZERO_CENTRE_KERNEL = _zero_centre_kernel()


class _Level:
    """Baseline samples and Jacobian data at one scale-space level for one mask.

    ``mask`` is boolean, or float weights (pixels > 0 are sampled; the weights multiply the
    instrument, i.e. each sample's row of the smoothed Jacobian)."""

    def __init__(self, base_s: np.ndarray, grads: tuple[tuple[np.ndarray, np.ndarray], ...], mask: np.ndarray,
                 step: int, center: tuple[float, float], base_other: np.ndarray | None = None,
                 curve: bool = False) -> None:
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
        self._t_mean = float(t.mean()) if len(t) else 0.0
        # The baseline smoothed by a kernel with a zero centre weight: a direction along the
        # template that is uncorrelated with each pixel's own noise (see ``_gain_free``).
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


class _ScaleSpace:
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

    def reversed(self) -> "_ScaleSpace":
        """The space of (followup, baseline), sharing the blurred images."""
        rev = _ScaleSpace(self.followup, self.baseline, self.grad_sigma)
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

    def get(self, sigma: float):
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


# ----------------------------------------------------------------------------------------
# Gauss-Newton
# ----------------------------------------------------------------------------------------
#: Gauss-Newton also stops once its step is below this fraction of the step's own noise SD:
#: further iterations only chase noise (at 5 % noise they doubled the run time).
NOISE_STOP_FRACTION = 0.1
#: Fewer valid samples than this and a fit is not attempted (the 4 + 2 parameters need many more).
MIN_SAMPLES = 20
#: Parameters fitted per side: 4 of the similarity, gain and offset (degrees of freedom of the residual).
N_FIT_PARAMS = 6
#: A gain below this (the follow-up's side has no contrast left) stops the iteration.
MIN_GAIN = 1e-3
#: Out of iterations, a fit whose last step is within this many ``tol_px`` is dithering around the
#: optimum in the noise, and is called converged.
DITHER_FACTOR = 10.0


@dataclass
class _Evaluation:
    """The fit's state at one transform: photometric fit, residual, centred Jacobian (instrument),
    normal matrix, the resampled follow-up and its validity, and the number of valid samples."""

    gain: float
    offset: float
    resid: np.ndarray
    jc: np.ndarray
    a_mat: np.ndarray
    vals: np.ndarray
    valid: np.ndarray
    n: float
    #: The monotone exposure curve's slope relative to the gain at each sample (None: linear).
    slope: np.ndarray | None = None

    @classmethod
    def start(cls, level: "_Level") -> "_Evaluation":
        """The state before any evaluation (unit gain, zero residual, every sample valid)."""
        m = len(level.t)
        return cls(1.0, 0.0, np.zeros(m), level.design, np.eye(4), np.zeros(m), np.ones(m, bool), float(m))


@dataclass
class _Solution:
    """A Gauss-Newton run's outcome: the transform, the level it ran on, the state at its last
    evaluation, the iterations it took and whether its step fell below ``tol_px``."""

    transform: Similarity
    level: "_Level"
    state: _Evaluation
    iterations: int
    converged: bool


def _noise_px(a_mat: np.ndarray, jc: np.ndarray, resid: np.ndarray, n: float, gain: float, radius: float) -> float:
    """Noise SD of a Gauss-Newton step, as a pixel displacement (white-noise approximation)."""
    try:
        a_inv = np.linalg.inv(a_mat)
    except np.linalg.LinAlgError:
        return 0.0
    var = _dot(resid, resid) / max(n - N_FIT_PARAMS, 1.0)
    sd = np.sqrt(np.maximum(np.diag(a_inv @ (jc.T @ jc) @ a_inv.T), 0.0) * var) / abs(gain)
    return _step_px(sd, radius)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """1-D dot product without BLAS: threaded OpenBLAS ``ddot`` can stall for milliseconds
    when the other cores are busy, which dominated the run time of a registration."""
    return float(np.multiply(a, b).sum())


def _step_px(dp: np.ndarray, radius: float) -> float:
    """Upper bound of the displacement that parameter step ``dp`` causes within ``radius``."""
    return float(abs(math.expm1(dp[0])) * radius + abs(dp[1]) * radius + math.hypot(dp[2], dp[3]))


def _evaluate(level: _Level, fol: SplineImage, s: Similarity) -> _Evaluation | None:
    """One evaluation of the fit at ``s``: the photometric fit, the residual, the centred
    Jacobian and the instrumental-variable normal matrix; None with < MIN_SAMPLES valid samples."""
    vals, valid = fol.sample(s.apply(level.pts))
    w = valid.astype(float)
    n = w.sum()
    if n < MIN_SAMPLES:
        return None
    t = level.t
    mt, mv = _dot(w, t) / n, _dot(w, vals) / n
    tc, vc = (t - mt) * w, (vals - mv) * w
    jc, a_mat, raw_c = level.instrument(w, n)
    if level.q is None:
        gain = math.copysign(math.sqrt(_dot(vc, vc) / max(_dot(tc, tc), 1e-300)), _dot(tc, vc))
        offset = mv - gain * mt
        resid = vc - gain * tc
        # Instrumental-variable normal matrix: the smoothed Jacobian against the plain one.
        # Using the smoothed one on both sides shortens every step and made convergence
        # linear (step ratio ~0.9 at 10 % scale change).
        return _Evaluation(gain, offset, resid, jc, a_mat, vals, valid, n)
    gain, curve, resid = _monotone_exposure(level, w, n, tc, vc)
    # The curve's slope at each sample, relative to the mean gain, scales its row of the Jacobian.
    jc = jc * curve[:, None]
    a_mat = jc.T @ (raw_c * curve[:, None])
    return _Evaluation(gain, mv - gain * mt, resid, jc, a_mat, vals, valid, n, curve)


#: The monotone exposure curve's slope stays above this fraction of its mean slope (the gain)
#: over the side's intensities: a steeper quadratic term is shrunk to this bound.
MIN_CURVE_SLOPE = 0.25


def _curve(opts: RegistrationOptions, sigma: float) -> bool:
    """Whether a level fits the monotone exposure curve: only at full resolution, where the
    sub-pixel fit is made; the coarse levels only need to bring the fit within their capture
    range, and keep the two-parameter model."""
    return opts.exposure_model == "monotone" and sigma <= 0


def _monotone_exposure(level: _Level, w: np.ndarray, n: float, tc: np.ndarray,
                       vc: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The monotone exposure model ``followup ~ offset + gain * t + beta * q(t)``, with ``q`` the
    square of the centred template made orthogonal to it (so ``gain`` is still the mean slope).

    ``beta`` is the least-squares coefficient of ``q``; the gain, the ratio of standard
    deviations of what remains (:func:`_gauss_newton`'s unbiased choice). The curve's slope
    ``gain + beta * q'(t)`` is kept above ``MIN_CURVE_SLOPE * gain`` over the side's range, so
    the curve stays monotone. Returns (gain, the slope relative to the gain at each sample, the
    residual)."""
    t = level.t
    qc = (level.q - _dot(w, level.q) / n) * w
    tt = max(_dot(tc, tc), 1e-300)
    k = _dot(tc, qc) / tt
    qo = qc - k * tc
    qq = _dot(qo, qo)
    beta = _dot(vc, qo) / qq if qq > 0 else 0.0
    dq = 2.0 * (t - level._t_mean) - k  # d qo / d t
    rest = vc - beta * qo
    gain = math.copysign(math.sqrt(_dot(rest, rest) / tt), _dot(tc, rest))
    if abs(gain) > 0 and beta != 0.0:
        lo, hi = float(dq[w > 0].min()), float(dq[w > 0].max())
        worst = min(1.0 + beta / gain * lo, 1.0 + beta / gain * hi)
        if worst < MIN_CURVE_SLOPE:
            beta *= (1.0 - MIN_CURVE_SLOPE) / (1.0 - worst)
            rest = vc - beta * qo
            gain = math.copysign(math.sqrt(_dot(rest, rest) / tt), _dot(tc, rest))
    curve = 1.0 + (beta / gain) * dq if gain != 0 else np.ones_like(t)
    return gain, curve, rest - gain * tc


def _gain_free(level: _Level, jc: np.ndarray, w: np.ndarray, n: float) -> np.ndarray:
    """The instrument made orthogonal to the centred template, so that the geometric
    estimating equation no longer depends on the gain (nor the offset): a gain error, e.g.
    from unequal noise in the two visits, then cannot leak into the geometry through the
    mask's boundary. The direction removed is the template smoothed without its centre
    pixel, so the projection adds no correlation with a pixel's own noise."""
    tc = (level.t - _dot(w, level.t) / n) * w
    u = (level.t_other - _dot(w, level.t_other) / n) * w
    denom = _dot(tc, u)
    if abs(denom) < 1e-300:
        return jc
    return jc - np.outer(u, (tc @ jc) / denom)


def _ic_step(level: _Level, fol: SplineImage, s: Similarity) -> tuple[_Evaluation, np.ndarray, float] | None:
    """One inverse-compositional Gauss-Newton step at ``s``: (the evaluation, the parameter step
    ``dp`` with ``s o W(dp)^-1`` the update, the step's noise SD in px); None when the fit cannot
    go on (too few valid samples, no contrast left, a singular or non-finite step)."""
    ev = _evaluate(level, fol, s)
    if ev is None:
        return None
    if ev.gain <= MIN_GAIN:
        return ev, np.full(4, np.nan), 0.0
    try:
        v = np.linalg.solve(ev.a_mat, ev.jc.T @ ev.resid)
    except np.linalg.LinAlgError:
        return ev, np.full(4, np.nan), 0.0
    dp = v / ev.gain
    return ev, dp, _noise_px(ev.a_mat, ev.jc, ev.resid, ev.n, ev.gain, level.radius)


def _gauss_newton(level: _Level, fol: SplineImage, init: Similarity, *, max_iter: int, tol_px: float) -> _Solution:
    """Inverse-compositional Gauss-Newton with a symmetric photometric fit.

    The gain is the ratio of the intensity standard deviations over the side (geometric-mean
    regression) rather than the least-squares slope: noise in the baseline attenuates the
    least-squares slope ("regression dilution"), and a biased gain leaks into the geometry
    through the mask boundary (a 0.02 px narrowing bias at 2 % noise before this choice).
    The ratio is consistent when each visit's noise scales with its exposure.

    Returns the :class:`_Solution`, with the state at the last evaluation.
    """
    s = init
    center = init.center
    converged = False
    it = 0
    state = _Evaluation.start(level)
    step = np.inf
    for it in range(1, max_iter + 1):
        out = _ic_step(level, fol, s)
        if out is None:
            break
        state, dp, noise = out
        if not np.isfinite(dp).all():
            break
        s = s.compose(Similarity.from_params(dp, center).inverse())
        step = _step_px(dp, level.radius)
        if step < max(tol_px, NOISE_STOP_FRACTION * noise):
            converged = True
            break
    else:
        # Out of iterations: noise can make the last steps dither around the optimum just
        # above ``tol_px``; that is still a converged fit.
        converged = bool(step < DITHER_FACTOR * tol_px)
    return _Solution(s, level, state, it, converged)


@dataclass
class _PairSolution:
    """An inverse-consistent run's outcome: the transform (baseline -> follow-up), both
    directions' last evaluations, and each direction's last step as a right-composed
    perturbation of the transform in the baseline frame (their difference is the one-way fits'
    disagreement, to first order)."""

    transform: Similarity
    forward: _Solution
    backward: _Solution
    one_way_forward: Similarity
    one_way_backward: Similarity


def _symmetric_gauss_newton(lev_f: _Level, fol_f: SplineImage, lev_b: _Level, fol_b: SplineImage,
                            init: Similarity, *, max_iter: int, tol_px: float) -> _PairSolution:
    """Inverse-consistent Gauss-Newton: one transform ``S`` for both directions.

    Each iteration takes the forward step (the follow-up sampled at ``S(x)`` on the baseline's
    grid, the baseline's labels and gradients: exactly the one-way step) and the backward step
    (the baseline sampled at ``S^-1(z)`` on the follow-up's grid, with the follow-up's labels and
    gradients), expresses both as right-composed perturbations of ``S`` and moves by their mean.
    The fixed point, where the two steps cancel, does not depend on which visit is called the
    baseline, so swapping the visits inverts ``S``. Each direction's instrument is its own image's
    smoothed gradient on its own grid, exactly as in the one-way fit, so neither picks up a
    correlation with the noise of the image it is sampled with (which would bias a fit in a
    half-way frame that resamples both images).
    """
    s = s_eval = init
    center = init.center
    st_f, st_b = _Evaluation.start(lev_f), _Evaluation.start(lev_b)
    d_f = d_b = np.zeros(4)
    converged = False
    step = np.inf
    it = 0
    radius = max(lev_f.radius, lev_b.radius)
    for it in range(1, max_iter + 1):
        out_f = _ic_step(lev_f, fol_f, s)
        out_b = _ic_step(lev_b, fol_b, s.inverse())
        if out_f is None or out_b is None:
            break
        st_f, dp_f, noise_f = out_f
        st_b, dp_b, noise_b = out_b
        if not (np.isfinite(dp_f).all() and np.isfinite(dp_b).all()):
            break
        # forward: S o W(dp_f)^-1; backward: S^-1 o W(dp_b)^-1, i.e. S <- W(dp_b) o S = S o (S^-1 W(dp_b) S)
        d_f = Similarity.from_params(dp_f, center).inverse().params
        d_b = s.inverse().compose(Similarity.from_params(dp_b, center)).compose(s).params
        d = 0.5 * (d_f + d_b)
        s_eval = s
        s = s.compose(Similarity.from_params(d, center))
        step = _step_px(d, radius)
        noise = math.sqrt(0.5 * (noise_f ** 2 + noise_b ** 2))
        if step < max(tol_px, NOISE_STOP_FRACTION * noise):
            converged = True
            break
    else:
        converged = bool(step < DITHER_FACTOR * tol_px)
    # Each direction's own step from where it was last evaluated: one Gauss-Newton step towards
    # the one-way fit, i.e. what that direction alone would have found (to first order).
    one_f = s_eval.compose(Similarity.from_params(d_f, center))
    one_b = s_eval.compose(Similarity.from_params(d_b, center)).inverse()
    return _PairSolution(s, _Solution(s, lev_f, st_f, it, converged), _Solution(s.inverse(), lev_b, st_b, it, converged),
                         one_f, one_b)


def _refine_pair(space_f: _ScaleSpace, space_b: _ScaleSpace, mask_f: np.ndarray, mask_b: np.ndarray,
                 init: Similarity, opts: RegistrationOptions) -> _PairSolution:
    """:func:`_symmetric_gauss_newton` through the per-bone levels (the forward frame's masks in
    ``mask_f``, the follow-up frame's in ``mask_b``)."""
    s = init
    total = 0
    sol = None
    for sigma, step in opts.bone_levels:
        levels = []
        for space, mask in ((space_f, mask_f), (space_b, mask_b)):
            base_s, grads, fol = space.get(sigma)
            level = _Level(base_s, grads, mask, int(step), init.center,
                           space.other(sigma) if opts.gain_free else None, _curve(opts, sigma))
            if len(level.t) < MIN_SAMPLES:
                raise ValueError("too few pixels in the mask to register")
            levels.append((level, fol))
        (lev_f, fol_f), (lev_b, fol_b) = levels
        sol = _symmetric_gauss_newton(lev_f, fol_f, lev_b, fol_b, s, max_iter=opts.max_iter, tol_px=opts.tol_px)
        s = sol.transform
        total += sol.forward.iterations
    f, b = sol.forward, sol.backward
    return _PairSolution(sol.transform, _Solution(f.transform, f.level, f.state, total, f.converged),
                         _Solution(b.transform, b.level, b.state, total, b.converged),
                         sol.one_way_forward, sol.one_way_backward)


def _block_sums(scores: np.ndarray, rows: np.ndarray, cols: np.ndarray, per_row: int, block: int,
                n_blocks: int) -> np.ndarray:
    """Per-sample ``scores`` (N x 4) summed over ``block`` x ``block`` pixel blocks, numbered row
    by row with ``per_row`` blocks a row: at least ``n_blocks`` rows, up to the last occupied
    block (the sandwich's and the cross-covariance's block sums)."""
    idx = (rows // block) * per_row + (cols // block)
    return np.stack([np.bincount(idx, weights=scores[:, k], minlength=n_blocks) for k in range(4)], axis=1)


def _sandwich_cov(level: _Level, jc: np.ndarray, resid: np.ndarray, a_mat: np.ndarray,
                  gain: float, n: int, block: int) -> np.ndarray:
    """Block-sandwich covariance ``A^-1 B A^-T / gain^2`` of the geometric step (4x4)."""
    score = jc * resid[:, None]
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


def _noise_free_normal(level: _Level, st: _Evaluation, center: tuple[float, float], noise_sd: float,
                       grad_sigma: float) -> np.ndarray:
    """The normal matrix ``A = Z^T J`` without the part that the baseline's own noise adds.

    The instrument ``Z`` (smoothed gradient) and the plain gradient ``J`` that sets the step
    are both taken from the noisy baseline, so ``Z^T J`` also sums the product of each pixel's
    two noise gradients, a positive term of expectation ``sigma^2 c M`` (``c`` from
    :func:`gradient_noise_overlap`, ``M`` the samples' lever-arm moments). The estimate's real
    sensitivity is to the noise-free gradient: the follow-up's gradient, whose noise is
    independent of ``Z``, would give the same matrix (checked to 2 % on 5 % noise). Left in,
    the term made ``A`` too large and the covariance ``A^-1 B A^-T`` too small, by ~20 % in SD
    at 5 % noise on real crops and more on smooth phantoms. The fixed point does not depend on
    ``A`` (it only scales the steps), so only the covariance uses the corrected matrix."""
    if not noise_sd > 0:
        return st.a_mat
    w = st.valid.astype(float)
    if st.slope is not None:
        w = w * st.slope * st.slope
    if level.weights is not None:
        w = w * level.weights[:, 0]
    dx, dy = level.cols - center[0], level.rows - center[1]
    r2, sx, sy, n = _dot(w, dx * dx + dy * dy), _dot(w, dx), _dot(w, dy), float(w.sum())
    moments = np.array([[r2, 0.0, sx, sy], [0.0, r2, -sy, sx], [sx, -sy, n, 0.0], [sy, sx, 0.0, n]])
    term = gradient_noise_overlap(float(grad_sigma)) * noise_sd * noise_sd * moments
    diag = np.diag(st.a_mat)
    worst = float(np.max(np.diag(term) / np.where(diag > 0, diag, np.inf)))
    if worst > MAX_NOISE_CORRECTION:
        term *= MAX_NOISE_CORRECTION / worst
    return st.a_mat - term


def _ncc_mse(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """NCC and the mean squared difference of z-scored values (``= 2 (1 - NCC)``)."""
    if len(x) < 3:
        return float("nan"), float("nan")
    xs, ys = x - x.mean(), y - y.mean()
    den = math.sqrt(_dot(xs, xs) * _dot(ys, ys))
    ncc = _dot(xs, ys) / den if den > 0 else 0.0
    return ncc, 2.0 * (1.0 - ncc)


def _at_bound(s: Similarity, opts: RegistrationOptions) -> bool:
    lo, hi = opts.scale_range
    return bool(not (lo <= s.scale <= hi) or abs(s.angle_deg) > opts.max_abs_angle_deg
                or math.hypot(s.tx, s.ty) > opts.max_shift_px)


def _refine(space: _ScaleSpace, mask: np.ndarray, init: Similarity,
            levels: tuple[tuple[float, int], ...], opts: RegistrationOptions) -> _Solution:
    """Gauss-Newton through the scale-space ``levels``, each from the last one's transform: the
    last level's solution, with the iterations of all levels."""
    s = init
    total = 0
    sol = None
    for sigma, step in levels:
        base_s, grads, fol = space.get(sigma)
        level = _Level(base_s, grads, mask, int(step), init.center,
                       space.other(sigma) if opts.gain_free else None, _curve(opts, sigma))
        if len(level.t) < MIN_SAMPLES:
            raise ValueError("too few pixels in the mask to register")
        sol = _gauss_newton(level, fol, s, max_iter=opts.max_iter, tol_px=opts.tol_px)
        s = sol.transform
        total += sol.iterations
    return _Solution(sol.transform, sol.level, sol.state, total, sol.converged)


def _as_mask(mask: np.ndarray) -> np.ndarray:
    """A boolean mask as is; anything else as float weights (0 = left out)."""
    m = np.asarray(mask)
    return m if m.dtype == bool else m.astype(float)


def fit_similarity(baseline: np.ndarray, followup: np.ndarray, mask: np.ndarray, *,
                   init: Similarity | None = None, options: RegistrationOptions | None = None,
                   _space: _ScaleSpace | None = None) -> BoneFit:
    """Fit one similarity to the pixels of ``mask`` (baseline frame).

    Args:
        baseline, followup: 2-D float images [row, col] of the same shape.
        mask: boolean [row, col], the pixels whose motion is estimated; or float weights
            (0 = left out), e.g. from :func:`~jsnq.labels.edge_weights`.
        init: starting transform (default: identity about the crop centre).
        options: :class:`RegistrationOptions`.
    """
    opts = options or RegistrationOptions()
    space = _space or _ScaleSpace(baseline, followup, opts.grad_sigma)
    mask = _as_mask(mask)
    init = init or Similarity.identity(crop_centre(baseline.shape))
    return _bone_fit(space, _refine(space, mask, init, opts.bone_levels, opts), opts)


def _normal(space: _ScaleSpace, sol: _Solution, opts: RegistrationOptions) -> np.ndarray:
    """The normal matrix of a solution's covariance (:func:`_noise_free_normal`)."""
    return _noise_free_normal(sol.level, sol.state, sol.transform.center, space.noise_sd(), opts.grad_sigma)


def _bone_fit(space: _ScaleSpace, sol: _Solution, opts: RegistrationOptions,
              a_mat: np.ndarray | None = None) -> BoneFit:
    """The fit's result and diagnostics; ``a_mat``: its covariance's normal matrix when already
    computed (:func:`_normal`)."""
    level, st, s = sol.level, sol.state, sol.transform
    gain, offset, resid, vals, valid = st.gain, st.offset, st.resid, st.vals, st.valid
    n = int(valid.sum())
    if a_mat is None:
        a_mat = _normal(space, sol, opts)
    cov = _sandwich_cov(level, st.jc, resid, a_mat, gain, n, opts.block_px)
    # Diagnostics over the mask at full resolution: before (identity) and after (the last
    # evaluation, within ``tol_px`` of the fit when converged).
    # At the identity every sample sits on its own pixel: read the follow-up there (the
    # interpolating spline would return the same values).
    ncc0, mse0 = _ncc_mse(level.t, space.followup[level.rows, level.cols])
    ncc1, mse1 = _ncc_mse(level.t[valid], vals[valid])
    sd = float(np.sqrt((resid[valid] ** 2).sum() / max(n - N_FIT_PARAMS, 1)))
    return BoneFit(
        transform=s, covariance=cov, gain=float(gain), offset=float(offset), ncc_before=ncc0, ncc_after=ncc1,
        mse_before=mse0, mse_after=mse1, residual_sd=sd, n_pixels=n, iterations=sol.iterations,
        converged=bool(sol.converged), at_bound=_at_bound(s, opts),
    )


def evaluate_similarity(baseline: np.ndarray, followup: np.ndarray, mask: np.ndarray, transform: Similarity, *,
                        options: RegistrationOptions | None = None, _space: _ScaleSpace | None = None) -> BoneFit:
    """The diagnostics of a given transform (e.g. a network's) without optimising it.

    The covariance is the sandwich estimate at ``transform`` (the noise-driven uncertainty
    a refinement from there would have); ``iterations`` is 0 and ``converged`` is True.

    Raises:
        ValueError: fewer than 20 pixels of the mask map inside the follow-up.
    """
    opts = options or RegistrationOptions()
    space = _space or _ScaleSpace(baseline, followup, opts.grad_sigma)
    base_s, grads, fol = space.get(0.0)
    level = _Level(base_s, grads, _as_mask(mask), 1, transform.center,
                   space.other(0.0) if opts.gain_free else None, _curve(opts, 0.0))
    ev = _evaluate(level, fol, transform)
    if ev is None:
        raise ValueError("too few pixels of the mask map inside the follow-up")
    return _bone_fit(space, _Solution(transform, level, ev, 0, True), opts)


# ----------------------------------------------------------------------------------------
# Global search
# ----------------------------------------------------------------------------------------
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


def global_search(baseline: np.ndarray, followup: np.ndarray, *, options: RegistrationOptions | None = None) -> Similarity:
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


# ----------------------------------------------------------------------------------------
# Bone sides
# ----------------------------------------------------------------------------------------
# ----------------------------------------------------------------------------------------
# Both bones
# ----------------------------------------------------------------------------------------
def register_bones(baseline: np.ndarray, followup: np.ndarray, labels: np.ndarray, *,
                   init: Similarity | None = None, inits: tuple[Similarity, Similarity] | None = None,
                   refine: bool = True, options: RegistrationOptions | None = None) -> Registration:
    """Estimate the upper (label 1) and lower (label 2) bone similarities.

    Args:
        baseline, followup: 2-D float images [row, col] of the same shape.
        labels: uint8 [row, col] in the baseline frame: 1 = upper side, 2 = lower side, 0 = ignore.
        init: a joint starting transform for both bones; the global search runs when neither
            ``init`` nor ``inits`` is given.
        inits: one starting transform per bone ``(upper, lower)``, e.g. a network's.
        refine: False keeps ``inits`` as they are and only evaluates their diagnostics
            (the network-only engine).
        options: :class:`RegistrationOptions`.
    """
    opts = options or RegistrationOptions()
    if baseline.shape != followup.shape or baseline.shape != labels.shape:
        raise ValueError("baseline, followup and labels must have the same shape")
    space = _ScaleSpace(baseline, followup, opts.grad_sigma)
    if opts.edge_ramp_px > 0:
        upper_mask, lower_mask = edge_weights(labels, opts.gap_exclusion_px, opts.edge_ramp_px)
    else:
        upper_mask, lower_mask = side_masks(labels, opts.gap_exclusion_px)
    if inits is None:
        if init is None:
            init = global_search(baseline, followup, options=opts)
            init = _refine(space, labels > 0, init, opts.global_levels, opts).transform
        inits = (init, init)
    elif not refine:
        return Registration(
            upper=evaluate_similarity(baseline, followup, upper_mask, inits[0], options=opts, _space=space),
            lower=evaluate_similarity(baseline, followup, lower_mask, inits[1], options=opts, _space=space),
            initial=inits[0])
    def fit(mask: np.ndarray, start: Similarity) -> BoneFit:
        return fit_similarity(baseline, followup, mask, init=start, options=opts, _space=space)

    if opts.parallel_bones:
        for sigma, _ in opts.bone_levels:
            space.get(sigma)  # filled before the two threads share it
            if opts.gain_free:
                space.other(sigma)
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(fit, upper_mask, inits[0])
            lower = fit(lower_mask, inits[1])
            upper = future.result()
    else:
        upper, lower = fit(upper_mask, inits[0]), fit(lower_mask, inits[1])
    return Registration(upper=upper, lower=lower, initial=init if init is not None else inits[0])


@dataclass(frozen=True)
class PairRegistration:
    """An inverse-consistent registration (:func:`register_pair`).

    Attributes:
        forward: both bones' fits baseline -> follow-up (the diagnostics and covariances of the
            forward direction, on the baseline's grid and labels) at the one transform per bone.
        backward: the same follow-up -> baseline, on the follow-up's grid and labels; each
            transform is exactly the inverse of the forward one.
        one_way_forward, one_way_backward: ``(upper, lower)``: each direction's own Gauss-Newton
            step from the joint solution, i.e. what the one-way fit with that visit's labels
            would find, to first order (baseline -> follow-up and follow-up -> baseline). Their
            disagreement is the direction-dependent part of the fit, kept as a diagnostic.
    """

    forward: Registration
    backward: Registration
    one_way_forward: tuple[Similarity, Similarity]
    one_way_backward: tuple[Similarity, Similarity]
    #: ``(upper, lower)``: 4x4 covariances between the forward and the backward direction's
    #: errors (each in its own transform's right-composed perturbation, as the two
    #: :attr:`BoneFit.covariance`), from their scores paired block by block
    #: (:func:`_cross_covariance`). With the two covariances they give the one fit's error:
    #: the mean of the two directions' (:func:`jsnq.jsn.inverse_consistent_narrowing`).
    cross_covariance: tuple[np.ndarray, np.ndarray] | None = None


def _cross_covariance(space_f: _ScaleSpace, sol_f: _Solution, a_f: np.ndarray, sol_b: _Solution, a_b: np.ndarray,
                      block: int) -> np.ndarray:
    """``Cov(e_f, e_b)`` of one bone's forward and backward errors (4x4).

    Each direction's error is ``A^-1 s / gain`` (its normal matrix, as in its covariance, and
    its score ``s = Z^T r``). The two scores come from the same image pair at corresponding
    places: the backward samples (follow-up grid) are carried into the baseline frame by the
    fitted transform and both scores are summed over the baseline's blocks; the products of
    the paired block sums estimate the scores' covariance, as the sandwich's ``B`` does for one
    direction. Noise seen by both directions through matching labels makes the two errors
    equal; a misfit that each direction weights by its own visit's gradients and labels makes
    them differ, and the mean of the two is then more precise than either."""
    shape = space_f.baseline.shape
    per_row = (shape[1] - 1) // block + 1
    n_blocks = per_row * ((shape[0] - 1) // block + 1)
    sums = []
    for sol, a_mat, to_baseline in ((sol_f, a_f, None), (sol_b, a_b, sol_b.transform)):
        level, st = sol.level, sol.state
        score = st.jc * st.resid[:, None]
        pts = level.pts if to_baseline is None else to_baseline.apply(level.pts)
        x, y = pts[:, 0], pts[:, 1]
        inside = (x >= -0.5) & (x < shape[1] - 0.5) & (y >= -0.5) & (y < shape[0] - 0.5)
        rows = np.clip(np.rint(y[inside]).astype(int), 0, shape[0] - 1)
        cols = np.clip(np.rint(x[inside]).astype(int), 0, shape[1] - 1)
        n = float(st.valid.sum())
        try:
            a_inv = np.linalg.inv(a_mat)
        except np.linalg.LinAlgError:
            return np.full((4, 4), np.nan)
        scale = math.sqrt(n / max(n - N_FIT_PARAMS, 1.0)) / st.gain
        sums.append((_block_sums(score[inside], rows, cols, per_row, block, n_blocks), a_inv, scale))
    (s_f, inv_f, k_f), (s_b, inv_b, k_b) = sums
    return inv_f @ (s_f.T @ s_b) @ inv_b.T * (k_f * k_b)


def register_pair(baseline: np.ndarray, followup: np.ndarray, labels: np.ndarray, followup_labels: np.ndarray, *,
                  init: Similarity | None = None, inits: tuple[Similarity, Similarity] | None = None,
                  options: RegistrationOptions | None = None) -> PairRegistration:
    """Inverse-consistent per-bone registration with both visits' labels: one fit per bone.

    Each bone's similarity ``S`` (baseline -> follow-up) is the fixed point where the forward
    Gauss-Newton step (baseline grid, baseline labels) and the backward one (follow-up grid,
    follow-up labels, for ``S^-1``) cancel (:func:`_symmetric_gauss_newton`), instead of two
    separate fits averaged. Swapping the visits gives the inverse transforms (to the
    convergence tolerance; :func:`jsnq.measure` makes it exact by always fitting in one
    canonical order).

    Args:
        baseline, followup: 2-D float images [row, col] of the same shape.
        labels, followup_labels: uint8 label maps of each visit in its own frame (1 = upper
            side, 2 = lower side, 0 = ignore).
        init, inits: as for :func:`register_bones` (the global search when neither is given).
        options: :class:`RegistrationOptions`.
    """
    opts = options or RegistrationOptions()
    if not (baseline.shape == followup.shape == labels.shape == followup_labels.shape):
        raise ValueError("baseline, followup and both labels must have the same shape")
    space_f = _ScaleSpace(baseline, followup, opts.grad_sigma)
    space_b = space_f.reversed()
    if opts.edge_ramp_px > 0:
        masks_f = edge_weights(labels, opts.gap_exclusion_px, opts.edge_ramp_px)
        masks_b = edge_weights(followup_labels, opts.gap_exclusion_px, opts.edge_ramp_px)
    else:
        masks_f = side_masks(labels, opts.gap_exclusion_px)
        masks_b = side_masks(followup_labels, opts.gap_exclusion_px)
    if inits is None:
        if init is None:
            init = global_search(baseline, followup, options=opts)
            init = _refine(space_f, labels > 0, init, opts.global_levels, opts).transform
        inits = (init, init)

    def fit(k: int) -> _PairSolution:
        return _refine_pair(space_f, space_b, _as_mask(masks_f[k]), _as_mask(masks_b[k]), inits[k], opts)

    if opts.parallel_bones:
        for sigma, _ in opts.bone_levels:
            for space in (space_f, space_b):
                space.get(sigma)  # filled before the two threads share them
                if opts.gain_free:
                    space.other(sigma)
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(fit, 0)
            lower = fit(1)
            upper = future.result()
    else:
        upper, lower = fit(0), fit(1)
    start = init if init is not None else inits[0]
    # Each direction's normal matrix, once: for its covariance and for the cross-covariance.
    normals = [(_normal(space_f, bone.forward, opts), _normal(space_b, bone.backward, opts)) for bone in (upper, lower)]
    (a_uf, a_ub), (a_lf, a_lb) = normals
    return PairRegistration(
        forward=Registration(_bone_fit(space_f, upper.forward, opts, a_uf),
                             _bone_fit(space_f, lower.forward, opts, a_lf), start),
        backward=Registration(_bone_fit(space_b, upper.backward, opts, a_ub),
                              _bone_fit(space_b, lower.backward, opts, a_lb), start.inverse()),
        one_way_forward=(upper.one_way_forward, lower.one_way_forward),
        one_way_backward=(upper.one_way_backward, lower.one_way_backward),
        cross_covariance=tuple(_cross_covariance(space_f, bone.forward, a_f, bone.backward, a_b, opts.block_px)
                               for bone, (a_f, a_b) in zip((upper, lower), normals)))
