"""Classical per-bone similarity registration: the public entry of the engine.

For each bone side of the baseline crop we estimate a :class:`~jsnq.geometry.Similarity`
mapping baseline pixels to follow-up pixels. The follow-up, resampled through it, is modelled
as an exposure change of the baseline on that side::

    followup(S(x)) = gain * baseline(x) + offset + noise,      x in the side's mask

which makes the least-squares fit equivalent to maximising the normalised cross-correlation.
The engine's jobs live in their own modules: the options (:mod:`.options`), the global search
over rotation and scale with phase correlation for the shift (:mod:`.search`), the Gaussian
scale space and its coarse-to-fine loop (:mod:`.scale_space`), inverse-compositional
Gauss-Newton (:mod:`.gauss_newton`) and each bone's block-sandwich covariance
(:mod:`.covariance`). This module puts them together and holds the result types.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, TypeVar

import numpy as np

from ..geometry import Similarity, crop_centre
from ..labels import edge_weights, side_masks
from .covariance import cross_covariance, normal_matrix, sandwich_cov
from .gauss_newton import N_FIT_PARAMS, PairSolution, Solution, evaluate, gauss_newton, symmetric_gauss_newton
from .options import RegistrationOptions
from .scale_space import ScaleSpace, coarse_to_fine, dot
from .search import global_search

__all__ = ["RegistrationOptions", "BoneFit", "Registration", "PairRegistration", "register_bones", "register_pair",
           "fit_similarity", "evaluate_similarity", "global_search"]

T = TypeVar("T")


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
    #: (:func:`~jsnq.register.covariance.cross_covariance`). With the two covariances they give
    #: the one fit's error: the mean of the two directions'
    #: (:func:`jsnq.jsn.inverse_consistent_narrowing`).
    cross_covariance: tuple[np.ndarray, np.ndarray] | None = None


def fit_similarity(baseline: np.ndarray, followup: np.ndarray, mask: np.ndarray, *,
                   init: Similarity | None = None, options: RegistrationOptions | None = None) -> BoneFit:
    """Fit one similarity to the pixels of ``mask`` (baseline frame).

    Args:
        baseline, followup: 2-D float images [row, col] of the same shape.
        mask: boolean [row, col], the pixels whose motion is estimated; or float weights
            (0 = left out), e.g. from :func:`~jsnq.labels.edge_weights`.
        init: starting transform (default: identity about the crop centre).
        options: :class:`RegistrationOptions`.
    """
    opts = options or RegistrationOptions()
    init = init or Similarity.identity(crop_centre(baseline.shape))
    return _fit(ScaleSpace(baseline, followup, opts.grad_sigma), _as_mask(mask), init, opts)


def evaluate_similarity(baseline: np.ndarray, followup: np.ndarray, mask: np.ndarray, transform: Similarity, *,
                        options: RegistrationOptions | None = None) -> BoneFit:
    """The diagnostics of a given transform (e.g. a network's) without optimising it.

    The covariance is the sandwich estimate at ``transform`` (the noise-driven uncertainty
    a refinement from there would have); ``iterations`` is 0 and ``converged`` is True.

    Raises:
        ValueError: fewer than 20 pixels of the mask map inside the follow-up.
    """
    opts = options or RegistrationOptions()
    return _evaluate_at(ScaleSpace(baseline, followup, opts.grad_sigma), _as_mask(mask), transform, opts)


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
    space = ScaleSpace(baseline, followup, opts.grad_sigma)
    masks = _side_masks(labels, opts)
    if inits is not None and not refine:
        return Registration(*(_evaluate_at(space, m, s, opts) for m, s in zip(masks, inits)), initial=inits[0])
    inits, start = _starts(space, labels, init, inits, opts)
    upper, lower = _per_bone(lambda k: _fit(space, masks[k], inits[k], opts), ((space, opts.bone_levels),), opts)
    return Registration(upper=upper, lower=lower, initial=start)


def register_pair(baseline: np.ndarray, followup: np.ndarray, labels: np.ndarray, followup_labels: np.ndarray, *,
                  init: Similarity | None = None, inits: tuple[Similarity, Similarity] | None = None,
                  options: RegistrationOptions | None = None) -> PairRegistration:
    """Inverse-consistent per-bone registration with both visits' labels: one fit per bone.

    Each bone's similarity ``S`` (baseline -> follow-up) is the fixed point where the forward
    Gauss-Newton step (baseline grid, baseline labels) and the backward one (follow-up grid,
    follow-up labels, for ``S^-1``) cancel
    (:func:`~jsnq.register.gauss_newton.symmetric_gauss_newton`), instead of two separate fits
    averaged. Swapping the visits gives the inverse transforms (to the
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
    space_f = ScaleSpace(baseline, followup, opts.grad_sigma)
    space_b = space_f.reversed()
    masks_f, masks_b = _side_masks(labels, opts), _side_masks(followup_labels, opts)
    inits, start = _starts(space_f, labels, init, inits, opts)

    def fit(k: int) -> PairSolution:
        views = ((space_f, masks_f[k]), (space_b, masks_b[k]))
        return coarse_to_fine(symmetric_gauss_newton, views, inits[k], opts.bone_levels, opts, capture=gauss_newton)

    # The backward direction joins at the last level only (coarse_to_fine's capture).
    bones = _per_bone(fit, ((space_f, opts.bone_levels), (space_b, opts.bone_levels[-1:])), opts)
    # Each direction's normal matrix, once: for its covariance and for the cross-covariance.
    normals = [(normal_matrix(space_f, b.forward, opts), normal_matrix(space_b, b.backward, opts)) for b in bones]
    return PairRegistration(
        forward=Registration(*(_bone_fit(space_f, b.forward, opts, a_f) for b, (a_f, _) in zip(bones, normals)),
                             initial=start),
        backward=Registration(*(_bone_fit(space_b, b.backward, opts, a_b) for b, (_, a_b) in zip(bones, normals)),
                              initial=start.inverse()),
        one_way_forward=(bones[0].one_way_forward, bones[1].one_way_forward),
        one_way_backward=(bones[0].one_way_backward, bones[1].one_way_backward),
        cross_covariance=tuple(cross_covariance(space_f.baseline.shape, b.forward, a_f, b.backward, a_b,
                                                opts.block_px) for b, (a_f, a_b) in zip(bones, normals)))


# ----------------------------------------------------------------------------------------
# The set-up register_bones and register_pair share
# ----------------------------------------------------------------------------------------
def _as_mask(mask: np.ndarray) -> np.ndarray:
    """A boolean mask as is; anything else as float weights (0 = left out)."""
    m = np.asarray(mask)
    return m if m.dtype == bool else m.astype(float)


def _side_masks(labels: np.ndarray, opts: RegistrationOptions) -> tuple[np.ndarray, np.ndarray]:
    """The (upper, lower) sides' masks of a label map: boolean, or with ``edge_ramp_px`` weights."""
    if opts.edge_ramp_px > 0:
        masks = edge_weights(labels, opts.gap_exclusion_px, opts.edge_ramp_px)
    else:
        masks = side_masks(labels, opts.gap_exclusion_px)
    return _as_mask(masks[0]), _as_mask(masks[1])


def _starts(space: ScaleSpace, labels: np.ndarray, init: Similarity | None,
            inits: tuple[Similarity, Similarity] | None,
            opts: RegistrationOptions) -> tuple[tuple[Similarity, Similarity], Similarity]:
    """Each bone's starting transform and the joint start recorded as ``Registration.initial``.

    Without ``init`` or ``inits``: the global search, refined as one similarity of both sides
    through ``global_levels``."""
    if inits is None:
        if init is None:
            init = global_search(space.baseline, space.followup, options=opts)
            init = coarse_to_fine(gauss_newton, ((space, labels > 0),), init, opts.global_levels, opts).transform
        inits = (init, init)
    return inits, init if init is not None else inits[0]


def _per_bone(fit: Callable[[int], T], fills: tuple[tuple[ScaleSpace, tuple[tuple[float, int], ...]], ...],
              opts: RegistrationOptions) -> tuple[T, T]:
    """``(fit(0), fit(1))``: the upper and the lower bone, in two threads with ``parallel_bones``
    (the levels ``fills`` names filled first in each space, so that the threads only read them)."""
    if not opts.parallel_bones:
        return fit(0), fit(1)
    for space, levels in fills:
        space.fill(levels, opts)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(fit, 0)
        lower = fit(1)
        return future.result(), lower


# ----------------------------------------------------------------------------------------
# One bone
# ----------------------------------------------------------------------------------------
def _fit(space: ScaleSpace, mask: np.ndarray, init: Similarity, opts: RegistrationOptions) -> BoneFit:
    """Gauss-Newton through the per-bone levels from ``init``, and the fit's diagnostics."""
    return _bone_fit(space, coarse_to_fine(gauss_newton, ((space, mask),), init, opts.bone_levels, opts), opts)


def _evaluate_at(space: ScaleSpace, mask: np.ndarray, transform: Similarity, opts: RegistrationOptions) -> BoneFit:
    """The diagnostics of ``transform`` at full resolution (:func:`evaluate_similarity`)."""
    level = space.level(mask, 0.0, 1, transform.center, opts)
    ev = evaluate(level, transform)
    if ev is None:
        raise ValueError("too few pixels of the mask map inside the follow-up")
    return _bone_fit(space, Solution(transform, level, ev, 0, True), opts)


def _bone_fit(space: ScaleSpace, sol: Solution, opts: RegistrationOptions,
              a_mat: np.ndarray | None = None) -> BoneFit:
    """The fit's result and diagnostics; ``a_mat``: its covariance's normal matrix when already
    computed (:func:`~jsnq.register.covariance.normal_matrix`)."""
    level, st, s = sol.level, sol.state, sol.transform
    gain, offset, resid, vals, valid = st.gain, st.offset, st.resid, st.vals, st.valid
    n = int(valid.sum())
    if a_mat is None:
        a_mat = normal_matrix(space, sol, opts)
    cov = sandwich_cov(level, st.scores, a_mat, gain, n, opts.block_px)
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


def _ncc_mse(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """NCC and the mean squared difference of z-scored values (``= 2 (1 - NCC)``)."""
    if len(x) < 3:
        return float("nan"), float("nan")
    xs, ys = x - x.mean(), y - y.mean()
    den = math.sqrt(dot(xs, xs) * dot(ys, ys))
    ncc = dot(xs, ys) / den if den > 0 else 0.0
    return ncc, 2.0 * (1.0 - ncc)


def _at_bound(s: Similarity, opts: RegistrationOptions) -> bool:
    lo, hi = opts.scale_range
    return bool(not (lo <= s.scale <= hi) or abs(s.angle_deg) > opts.max_abs_angle_deg
                or math.hypot(s.tx, s.ty) > opts.max_shift_px)
