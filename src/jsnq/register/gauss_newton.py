"""Inverse-compositional Gauss-Newton (Baker & Matthews 2004) with a photometric fit.

On each side the follow-up resampled through the similarity ``S`` is modelled as an exposure
change of the baseline: ``followup(S(x)) = gain * baseline(x) + offset (+ a monotone curvature)``.
The Jacobian involves only the baseline (:class:`~jsnq.register.scale_space.Level`), the
photometric parameters are solved in closed form at each step, and only one resampling of the
follow-up is needed per iteration. :func:`gauss_newton` fits one direction;
:func:`symmetric_gauss_newton` one transform for both directions (inverse-consistent). Both
are solvers for :func:`~jsnq.register.scale_space.coarse_to_fine`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np

from ..geometry import Similarity
from .scale_space import MIN_SAMPLES, Instrument, Level, dot

__all__ = ["N_FIT_PARAMS", "Evaluation", "PairSolution", "Solution", "evaluate", "gauss_newton", "monotone_exposure",
           "symmetric_gauss_newton"]

#: Gauss-Newton also stops once its step is below this fraction of the step's own noise SD:
#: further iterations only chase noise and cost time (docs/benchmarks.md, "Figures behind the defaults").
NOISE_STOP_FRACTION = 0.1
#: Parameters fitted per side: 4 of the similarity, gain and offset (degrees of freedom of the residual).
N_FIT_PARAMS = 6
#: A gain below this (the follow-up's side has no contrast left) stops the iteration.
MIN_GAIN = 1e-3
#: Out of iterations, a fit whose last step is within this many ``tol_px`` is dithering around the
#: optimum in the noise, and is called converged.
DITHER_FACTOR = 10.0


@dataclass
class Evaluation:
    """The fit's state at one transform: photometric fit, residual, the instrument of the valid
    samples, the resampled follow-up and its validity, and the number of valid samples. The
    N x 4 instrument ``jc`` and the normal matrix ``a_mat`` (the monotone curve's slope
    included) are formed when asked, i.e. once, for the covariance."""

    gain: float
    offset: float
    resid: np.ndarray
    instrument: Instrument
    vals: np.ndarray
    valid: np.ndarray
    n: float
    #: The monotone exposure curve's slope relative to the gain at each sample (None: linear).
    slope: np.ndarray | None = None

    @classmethod
    def start(cls, level: Level) -> "Evaluation":
        """The state before any evaluation (unit gain, zero residual, every sample valid)."""
        m = len(level.t)
        return cls(1.0, 0.0, np.zeros(m), level.instrument(np.ones(m), float(m)), np.zeros(m), np.ones(m, bool),
                   float(m))

    def score(self) -> np.ndarray:
        """``Z^T r``: the instrument (times the curve's slope) against the residual."""
        return self.instrument.score(self.resid if self.slope is None else self.resid * self.slope)

    @functools.cached_property
    def jc(self) -> np.ndarray:
        """The instrument, centred, weighted and scaled by the curve's slope (N x 4)."""
        return self.instrument.matrix(self.slope)

    @functools.cached_property
    def a_mat(self) -> np.ndarray:
        """The instrumental-variable normal matrix: ``jc`` against the plain Jacobian, both
        scaled by the curve's slope."""
        if self.slope is None:
            return self.instrument.a_mat
        return self.instrument.raw_product(self.jc, self.slope)

    @functools.cached_property
    def scores(self) -> np.ndarray:
        """Each sample's score ``jc * resid`` (N x 4), whose block sums give the covariance."""
        return self.jc * self.resid[:, None]


@dataclass
class Solution:
    """A Gauss-Newton run's outcome: the transform, the level it ran on, the state at its last
    evaluation, the iterations it took and whether its step fell below ``tol_px``."""

    transform: Similarity
    level: Level
    state: Evaluation
    iterations: int
    converged: bool

    def with_iterations(self, iterations: int) -> "Solution":
        """The same solution, counting ``iterations`` (e.g. those of all levels)."""
        return dataclasses.replace(self, iterations=iterations)


def _noise_px(a_mat: np.ndarray, zz: np.ndarray, resid: np.ndarray, n: float, gain: float, radius: float) -> float:
    """Noise SD of a Gauss-Newton step, as a pixel displacement (white-noise approximation;
    ``zz``: the instrument's product with itself)."""
    try:
        a_inv = np.linalg.inv(a_mat)
    except np.linalg.LinAlgError:
        return 0.0
    var = dot(resid, resid) / max(n - N_FIT_PARAMS, 1.0)
    sd = np.sqrt(np.maximum(np.diag(a_inv @ zz @ a_inv.T), 0.0) * var) / abs(gain)
    return _step_px(sd, radius)


def _step_px(dp: np.ndarray, radius: float) -> float:
    """Upper bound of the displacement that parameter step ``dp`` causes within ``radius``."""
    return float(abs(math.expm1(dp[0])) * radius + abs(dp[1]) * radius + math.hypot(dp[2], dp[3]))


def evaluate(level: Level, s: Similarity) -> Evaluation | None:
    """One evaluation of the fit at ``s``: the photometric fit, the residual and the instrument
    of the valid samples; None with < MIN_SAMPLES valid samples."""
    vals, valid = level.followup.sample_rows_cols(level.mapped(s))
    w = valid.astype(float)
    n = w.sum()
    if n < MIN_SAMPLES:
        return None
    t = level.t
    mt, mv = dot(w, t) / n, dot(w, vals) / n
    tc, vc = (t - mt) * w, (vals - mv) * w
    inst = level.instrument(w, n)
    if level.q is None:
        gain = math.copysign(math.sqrt(dot(vc, vc) / max(dot(tc, tc), 1e-300)), dot(tc, vc))
        offset = mv - gain * mt
        resid = vc - gain * tc
        return Evaluation(gain, offset, resid, inst, vals, valid, n)
    gain, curve, resid = monotone_exposure(level, w, n, tc, vc)
    # The curve's slope at each sample, relative to the mean gain, scales its row of the Jacobian.
    return Evaluation(gain, mv - gain * mt, resid, inst, vals, valid, n, curve)


#: The monotone exposure curve's slope stays above this fraction of its mean slope (the gain)
#: over the side's intensities: a steeper quadratic term is shrunk to this bound.
MIN_CURVE_SLOPE = 0.25


def monotone_exposure(level: Level, w: np.ndarray, n: float, tc: np.ndarray,
                      vc: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The monotone exposure model ``followup ~ offset + gain * t + beta * q(t)``, with ``q`` the
    square of the centred template made orthogonal to it (so ``gain`` is still the mean slope).

    ``beta`` is the least-squares coefficient of ``q``; the gain, the ratio of standard
    deviations of what remains (:func:`gauss_newton`'s unbiased choice). The curve's slope
    ``gain + beta * q'(t)`` is kept above ``MIN_CURVE_SLOPE * gain`` over the side's range, so
    the curve stays monotone. Returns (gain, the slope relative to the gain at each sample, the
    residual)."""
    # With qo = qc - k tc the part of q orthogonal to tc and rest = vc - beta qo, every product
    # below is one of tc, qc and vc's (tc . qo = 0): no qo or rest array is formed.
    qc = (level.q - dot(w, level.q) / n) * w
    tt = max(dot(tc, tc), 1e-300)
    tq, tv = dot(tc, qc), dot(tc, vc)
    k = tq / tt
    qq = dot(qc, qc) - k * tq  # qo . qo
    vq = dot(vc, qc) - k * tv  # vc . qo
    vv = dot(vc, vc)
    beta = vq / qq if qq > 0 else 0.0

    def fitted_gain(b: float) -> float:  # the ratio of SDs of rest, signed by tc . rest = tv
        return math.copysign(math.sqrt(max(vv - 2.0 * b * vq + b * b * qq, 0.0) / tt), tv)

    gain = fitted_gain(beta)
    if abs(gain) > 0 and beta != 0.0:
        # d qo / d t = dq - k over the valid samples' intensities
        valid = w > 0
        lo = float(np.min(level.dq, where=valid, initial=np.inf)) - k
        hi = float(np.max(level.dq, where=valid, initial=-np.inf)) - k
        worst = min(1.0 + beta / gain * lo, 1.0 + beta / gain * hi)
        if worst < MIN_CURVE_SLOPE:
            beta *= (1.0 - MIN_CURVE_SLOPE) / (1.0 - worst)
            gain = fitted_gain(beta)
    if gain == 0:
        return gain, np.ones_like(tc), vc - beta * (qc - k * tc)
    b = beta / gain
    curve = b * level.dq
    curve += 1.0 - b * k
    # vc - beta qo - gain tc
    resid = vc - beta * qc
    resid += (beta * k - gain) * tc
    return gain, curve, resid


def _ic_step(level: Level, s: Similarity) -> tuple[Evaluation, np.ndarray, float] | None:
    """One inverse-compositional Gauss-Newton step at ``s``: (the evaluation, the parameter step
    ``dp`` with ``s o W(dp)^-1`` the update, the step's noise SD in px); None when the fit cannot
    go on (too few valid samples, no contrast left, a singular or non-finite step)."""
    ev = evaluate(level, s)
    if ev is None:
        return None
    if ev.gain <= MIN_GAIN:
        return ev, np.full(4, np.nan), 0.0
    # The step's normal matrix: the instrumental-variable one (the smoothed Jacobian against the
    # plain one; the smoothed one on both sides shortens every step, docs/benchmarks.md, "Figures
    # behind the defaults"), without the monotone curve's slope, which changes it by a few
    # per cent: the secant correction (:class:`_Secant`) absorbs that with the rest.
    inst = ev.instrument
    try:
        v = np.linalg.solve(inst.a_mat, ev.score())
    except np.linalg.LinAlgError:
        return ev, np.full(4, np.nan), 0.0
    dp = v / ev.gain
    return ev, dp, _noise_px(inst.a_mat, inst.zz, ev.resid, ev.n, ev.gain, level.radius)


#: The secant correction lengthens a plain Gauss-Newton step by at most this factor; a corrected
#: step that turns away from the plain one is not trusted, and the correction starts afresh.
MAX_SECANT_GAIN = 20.0
#: The secant correction acts on plain steps below this length (px at the lever arm, as
#: ``_Secant`` measures them) and makes steps no longer than it: beyond, the fit is not yet in
#: the range where the steps are linear in the remaining motion.
SECANT_RANGE_PX = 1.0


class _Secant:
    """Broyden's method on the fixed-point iteration ``s <- s o W(d(s))`` of the Gauss-Newton steps.

    The instrumental-variable step ``d`` is a Newton step only where the baseline's gradient is
    the follow-up's: on real pairs the two differ (texture, blur and exposure change between
    visits) and the normal matrix overstates the score's slope up to 10-30 fold in some direction,
    so the plain steps fall short and converge linearly. The fixed point (``d = 0``) does not
    depend on the step's length. From consecutive steps the secant learns ``K``, how much the
    step shrinks per unit of motion (Broyden's good update, in pixels at ``radius``: lever arm
    times log-scale and angle, and the shifts), and moves by ``K^-1 d``; ``K`` starts at the
    identity, i.e. the plain step."""

    def __init__(self, radius: float) -> None:
        self.units = np.array([radius, radius, 1.0, 1.0]) if radius > 0 else np.ones(4)
        self.k = np.eye(4)
        self.last: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self, d: np.ndarray) -> np.ndarray:
        """The update to apply for the plain step ``d`` (parameters, as ``d``)."""
        dt = d * self.units
        if dt @ dt > SECANT_RANGE_PX ** 2:
            # Far from the fixed point the steps are not linear in the motion: plain steps, and
            # nothing learnt from them.
            self.k, self.last = np.eye(4), None
            return d
        if self.last is not None:
            u, d_last = self.last
            uu = float(u @ u)
            if uu > 0:
                self.k = self.k + np.outer(d_last - dt - self.k @ u, u) / uu
        try:
            u = np.linalg.solve(self.k, dt)
        except np.linalg.LinAlgError:
            u = np.full(4, np.nan)
        if not (np.isfinite(u).all() and u @ dt > 0):
            self.k, u = np.eye(4), dt
        else:
            longest = min(MAX_SECANT_GAIN * math.sqrt(float(dt @ dt)), SECANT_RANGE_PX)
            if u @ u > longest ** 2:
                u = u * (longest / math.sqrt(float(u @ u)))
        self.last = (u, dt)
        return u / self.units


def gauss_newton(level: Level, init: Similarity, *, max_iter: int, tol_px: float) -> Solution:
    """Inverse-compositional Gauss-Newton with a symmetric photometric fit.

    The gain is the ratio of the intensity standard deviations over the side (geometric-mean
    regression) rather than the least-squares slope: noise in the baseline attenuates the
    least-squares slope ("regression dilution"), and a biased gain leaks into the geometry
    through the mask boundary (docs/method.md, "How the classical engine works").
    The ratio is consistent when each visit's noise scales with its exposure.

    Returns the :class:`Solution`, with the state at the last evaluation.
    """
    s = init
    center = init.center
    converged = False
    it = 0
    state = Evaluation.start(level)
    step = np.inf
    secant = _Secant(level.radius)
    for it in range(1, max_iter + 1):
        out = _ic_step(level, s)
        if out is None:
            break
        state, dp, noise = out
        if not np.isfinite(dp).all():
            break
        d = Similarity.from_params(dp, center).inverse().params
        u = secant(d)
        s = s.compose(Similarity.from_params(u, center))
        step = _step_px(u, level.radius)
        if step < tol_px or _step_px(d, level.radius) < NOISE_STOP_FRACTION * noise:
            converged = True
            break
    else:
        # Out of iterations: noise can make the last steps dither around the optimum just
        # above ``tol_px``; that is still a converged fit.
        converged = bool(step < DITHER_FACTOR * tol_px)
    return Solution(s, level, state, it, converged)


@dataclass
class PairSolution:
    """An inverse-consistent run's outcome: the transform (baseline -> follow-up), both
    directions' last evaluations, and each direction's last step as a right-composed
    perturbation of the transform in the baseline frame (their difference is the one-way fits'
    disagreement, to first order)."""

    transform: Similarity
    forward: Solution
    backward: Solution
    one_way_forward: Similarity
    one_way_backward: Similarity

    @property
    def iterations(self) -> int:
        return self.forward.iterations

    def with_iterations(self, iterations: int) -> "PairSolution":
        """The same solution, counting ``iterations`` (e.g. those of all levels) in both directions."""
        return dataclasses.replace(self, forward=self.forward.with_iterations(iterations),
                                   backward=self.backward.with_iterations(iterations))


def symmetric_gauss_newton(lev_f: Level, lev_b: Level, init: Similarity, *, max_iter: int,
                           tol_px: float) -> PairSolution:
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
    st_f, st_b = Evaluation.start(lev_f), Evaluation.start(lev_b)
    d_f = d_b = np.zeros(4)
    converged = False
    step = np.inf
    it = 0
    radius = max(lev_f.radius, lev_b.radius)
    secant = _Secant(radius)
    for it in range(1, max_iter + 1):
        out_f = _ic_step(lev_f, s)
        out_b = _ic_step(lev_b, s.inverse())
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
        u = secant(d)
        s_eval = s
        s = s.compose(Similarity.from_params(u, center))
        step = _step_px(u, radius)
        noise = math.sqrt(0.5 * (noise_f ** 2 + noise_b ** 2))
        if step < tol_px or _step_px(d, radius) < NOISE_STOP_FRACTION * noise:
            converged = True
            break
    else:
        converged = bool(step < DITHER_FACTOR * tol_px)
    # Each direction's own step from where it was last evaluated: one Gauss-Newton step towards
    # the one-way fit, i.e. what that direction alone would have found (to first order).
    one_f = s_eval.compose(Similarity.from_params(d_f, center))
    one_b = s_eval.compose(Similarity.from_params(d_b, center)).inverse()
    return PairSolution(s, Solution(s, lev_f, st_f, it, converged), Solution(s.inverse(), lev_b, st_b, it, converged),
                        one_f, one_b)

