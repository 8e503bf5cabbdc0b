"""From two bone similarities to narrowing, its standard error and the paper's dy difference."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .geometry import Similarity, narrowing_jacobian, symmetric_narrowing_px

__all__ = ["Narrowing", "JointNarrowing", "narrowing", "inverse_consistent_narrowing", "SYSTEMATIC_SE_PX", "DEEP_SYSTEMATIC_SE_PX",
           "systematic_se_px", "READING_POINT_SD_PX", "point_gradient"]

#: Systematic part of the narrowing's standard error, by where the bone sides came from (px):
#: what a noise-free fit still misses and the noise-driven covariance cannot see, added in
#: quadrature. Set so that on synthetic motions of real crops the SD of error / SE is about 1
#: ("given", "network", "classical") and on known narrowing rendered into whole radiographs
#: ("profile", a whole hand's split) (docs/benchmarks.md, "Figures behind the defaults").
SYSTEMATIC_SE_PX = {"given": 0.01, "network": 0.01, "profile": 0.02, "classical": 0.05}


#: Systematic SE of the network-only ("deep") engine: about the largest SD of its narrowing
#: error on synthetic motions. It has no optimiser to reach the noise-limited fit, so the fit
#: covariance at its answer does not describe its error (docs/benchmarks.md, "Figures behind
#: the defaults").
DEEP_SYSTEMATIC_SE_PX = 0.25


#: SD ``(x, y)`` of the reading point about the joint's true articular centre, by where the
#: point came from (px; :func:`jsnq.jsw.pair_articular_centre`): "network", the scatter of the
#: pair's centre from the network's masks about the true masks' on held-out crops and real
#: pairs; "crop centre", the crop centre's distance from the true centre, the fallback without
#: the network; "given", exact. Multiplied by the narrowing's gradient along each axis and added
#: to the variance (docs/method.md, "What the numbers mean"; figures in docs/benchmarks.md,
#: "Issue 23: one reading point").
READING_POINT_SD_PX = {"network": (0.6, 0.6), "crop centre": (5.5, 5.5), "given": (0.0, 0.0)}


def point_gradient(upper: Similarity, lower: Similarity, point: tuple[float, float],
                   followup_point: tuple[float, float] | None) -> np.ndarray:
    """The narrowing's gradient ``(d/dx, d/dy)`` with respect to the anatomical place it is read
    at (the half-way point of :func:`~jsnq.geometry.symmetric_narrowing_px`): along x the
    relative rotation, along y the relative scale change (px per px)."""
    p = np.asarray(point, dtype=float)
    if followup_point is not None:
        p = 0.5 * (p + lower.inverse().apply(np.asarray(followup_point, dtype=float)))
    h = 1.0
    return np.array([(symmetric_narrowing_px(upper, lower, tuple(p + d)) -
                      symmetric_narrowing_px(upper, lower, tuple(p - d))) / (2 * h)
                     for d in (np.array([h, 0.0]), np.array([0.0, h]))])


def systematic_se_px(segmenter: str, engine: str = "classical") -> float:
    """The systematic SE floor for a label source (the automatic line's, when not measured),
    or the network-only engine's when it is larger."""
    floor = SYSTEMATIC_SE_PX.get(segmenter, SYSTEMATIC_SE_PX["classical"])
    return max(floor, DEEP_SYSTEMATIC_SE_PX) if engine == "deep" else floor


@dataclass(frozen=True)
class Narrowing:
    """Joint space narrowing in pixels of the baseline crop.

    Attributes:
        narrowing_px: displacement of the upper bone relative to the lower one along +y at
            ``point`` (baseline frame); positive = the joint space narrowed.
        se_px: standard error of ``narrowing_px`` propagated from both bones' covariances.
        dy_difference_px: the paper's ``dy_upper - dy_lower`` (equal to ``narrowing_px``
            for pure translations).
        point: ``(x, y)`` the baseline anchor the narrowing is evaluated at (half-way to the
            follow-up's anchor when that is known).
    """

    narrowing_px: float
    se_px: float
    dy_difference_px: float
    point: tuple[float, float]


def narrowing(upper: Similarity, lower: Similarity, cov_upper: np.ndarray, cov_lower: np.ndarray,
              *, point: tuple[float, float] | None = None, followup_point: tuple[float, float] | None = None,
              systematic_px: float = 0.0, point_sd_px: tuple[float, float] = (0.0, 0.0)) -> Narrowing:
    """Narrowing (:func:`~jsnq.geometry.symmetric_narrowing_px`) and its standard error.

    Args:
        upper, lower: baseline -> follow-up similarities of the two bones (same centre).
        cov_upper, cov_lower: 4x4 covariances of right-composed perturbations of each
            transform in ``(log_scale, angle, tx, ty)`` (see :class:`~jsnq.register.classical.BoneFit`);
            the bones are fitted on disjoint pixels, so their errors are independent.
        point: the joint's anchor in the baseline (default: the transforms' centre, i.e. the crop centre).
        followup_point: the same anatomical anchor in the follow-up, when known.
        systematic_px: a systematic error SD added in quadrature to the propagated one.
        point_sd_px: the reading point's SD ``(x, y)`` (:data:`READING_POINT_SD_PX`); times the
            narrowing's gradient along each axis (:func:`point_gradient`), added in quadrature.
    """
    p = upper.center if point is None else (float(point[0]), float(point[1]))
    place = _place_sd(upper, lower, p, followup_point, point_sd_px)
    return _reading(upper, lower, cov_upper, cov_lower, p, followup_point, math.hypot(systematic_px, place))[0]


def _place_sd(upper: Similarity, lower: Similarity, point: tuple[float, float],
              followup_point: tuple[float, float] | None, point_sd_px: tuple[float, float]) -> float:
    """The narrowing's SD from its reading point's (0 without one)."""
    if not any(point_sd_px):
        return 0.0
    g = point_gradient(upper, lower, point, followup_point)
    return float(math.hypot(g[0] * point_sd_px[0], g[1] * point_sd_px[1]))


def _reading(upper: Similarity, lower: Similarity, cov_upper: np.ndarray, cov_lower: np.ndarray,
             point: tuple[float, float], followup_point: tuple[float, float] | None,
             systematic_px: float) -> tuple[Narrowing, tuple[np.ndarray, np.ndarray], float]:
    """One reading of the narrowing at ``point``: the :class:`Narrowing`, its gradients with
    respect to each bone's perturbation, and the fit's part of its variance (without the floor)."""
    def fn(u: Similarity, lo: Similarity) -> float:
        return symmetric_narrowing_px(u, lo, point, followup_point)

    g_u, g_l = narrowing_jacobian(upper, lower, function=fn)
    var = float(g_u @ np.asarray(cov_upper) @ g_u + g_l @ np.asarray(cov_lower) @ g_l)
    nar = Narrowing(narrowing_px=fn(upper, lower), se_px=_se(var + systematic_px**2),
                    dy_difference_px=upper.ty - lower.ty, point=point)
    return nar, (g_u, g_l), var


@dataclass(frozen=True)
class JointNarrowing:
    """One inverse-consistent fit read both ways (:func:`inverse_consistent_narrowing`).

    Attributes:
        forward, backward: each reading on its own (:class:`Narrowing`, with that direction's
            SE and the floor), the backward one of the inverse transforms at the follow-up's anchor.
        narrowing_px: the mean of the forward reading and the negated backward one.
        se_px: its standard error, from both readings' SEs and their measured covariance.
    """

    forward: Narrowing
    backward: Narrowing
    narrowing_px: float
    se_px: float


def inverse_consistent_narrowing(forward: tuple[Similarity, Similarity], backward: tuple[Similarity, Similarity],
                                 cov_forward: tuple[np.ndarray, np.ndarray],
                                 cov_backward: tuple[np.ndarray, np.ndarray],
                                 cross: tuple[np.ndarray, np.ndarray], *, point: tuple[float, float],
                                 followup_point: tuple[float, float], systematic_px: float = 0.0,
                                 point_sd_px: tuple[float, float] = (0.0, 0.0)) -> JointNarrowing:
    """The narrowing of one inverse-consistent fit, read both ways, and its standard error.

    ``forward`` = ``(upper, lower)`` baseline -> follow-up and ``backward`` their inverses, with
    each direction's covariances and ``cross`` their cross-covariances ``Cov(e_f, e_b)`` per
    bone (:attr:`jsnq.register.classical.PairRegistration.cross_covariance`). The narrowing is
    the mean of the forward reading and the negated backward one. The fit's error is the mean
    of the two directions' errors, so its variance is
    ``(se_f^2 + se_b^2 + 2 cov) / 4`` with ``cov`` the covariance of the forward reading's and
    the negated backward reading's errors (``-g_f^T cross g_b`` summed over the bones, ``g``
    each reading's gradient): ``se_f^2`` when the two directions err together, half of the
    mean square when they err independently. The bones are fitted on disjoint pixels, so their
    errors are independent; ``systematic_px`` and the reading point's share (``point_sd_px``, see
    :func:`narrowing`; one anatomical place for both readings) are added in quadrature once.
    """
    fwd_point = (float(point[0]), float(point[1]))
    bwd_point = (float(followup_point[0]), float(followup_point[1]))
    systematic_px = math.hypot(systematic_px, _place_sd(*forward, fwd_point, bwd_point, point_sd_px))
    fwd, g_f, var_f = _reading(*forward, *cov_forward, fwd_point, bwd_point, systematic_px)
    bwd, g_b, var_b = _reading(*backward, *cov_backward, bwd_point, fwd_point, systematic_px)
    cov = -sum(float(gf @ np.asarray(x) @ gb) for gf, gb, x in zip(g_f, g_b, cross))
    var = 0.25 * (var_f + var_b + 2.0 * cov) + systematic_px ** 2
    return JointNarrowing(fwd, bwd, 0.5 * (fwd.narrowing_px - bwd.narrowing_px), _se(var))


def _se(var: float) -> float:
    return math.sqrt(var) if var >= 0 and math.isfinite(var) else float("inf")
