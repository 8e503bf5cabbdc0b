"""Tests of jsnq.geometry: the similarity parameterisation, its conventions and the narrowing.

All checks are pure arithmetic on 2-D points (no images): tolerances of 1e-9 are a few
hundred ulps of the coordinates involved (|p| <= ~300 px), i.e. round-off only.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from jsnq.geometry import Similarity, crop_centre, narrowing_jacobian, narrowing_px, px_to_mm

C = crop_centre((256, 256))  # (127.5, 127.5)
#: Round-off tolerance for coordinates up to a few hundred pixels (float64, ~1e-13 relative).
TOL = 1e-9


def _random_similarity(rng: np.random.Generator, center=C) -> Similarity:
    """A generic similarity: scale 0.7-1.4, any angle in +-60 deg, shifts up to +-20 px."""
    return Similarity(
        scale=float(np.exp(rng.uniform(-0.35, 0.35))),
        angle=float(np.radians(rng.uniform(-60.0, 60.0))),
        tx=float(rng.uniform(-20.0, 20.0)),
        ty=float(rng.uniform(-20.0, 20.0)),
        center=center,
    )


def _points(rng: np.random.Generator, n: int = 50) -> np.ndarray:
    return rng.uniform(-50.0, 300.0, size=(n, 2))


SEEDS = range(8)


# -- construction and round trips ------------------------------------------------------------
def test_identity_maps_points_to_themselves():
    rng = np.random.default_rng(0)
    p = _points(rng)
    for center in ((0.0, 0.0), C, (10.0, -3.0)):
        np.testing.assert_allclose(Similarity.identity(center).apply(p), p, rtol=0, atol=TOL)


def test_apply_matches_the_documented_formula():
    """p' = c + s R(a) (p - c) + t, written out independently of matrix()."""
    rng = np.random.default_rng(1)
    for _ in SEEDS:
        s = _random_similarity(rng, center=tuple(rng.uniform(0, 255, 2)))
        p = _points(rng)
        c = np.asarray(s.center)
        rot = np.array([[math.cos(s.angle), -math.sin(s.angle)], [math.sin(s.angle), math.cos(s.angle)]])
        expected = c + s.scale * (p - c) @ rot.T + np.array([s.tx, s.ty])
        np.testing.assert_allclose(s.apply(p), expected, rtol=0, atol=TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_from_params_params_round_trip(seed):
    rng = np.random.default_rng(seed)
    s = _random_similarity(rng)
    back = Similarity.from_params(s.params, s.center)
    np.testing.assert_allclose(back.params, s.params, rtol=0, atol=1e-12)
    assert back.center == s.center
    # params are (log_scale, angle, tx, ty)
    np.testing.assert_allclose(s.params, [math.log(s.scale), s.angle, s.tx, s.ty], rtol=0, atol=1e-15)


@pytest.mark.parametrize("seed", SEEDS)
def test_matrix_from_matrix_round_trip(seed):
    rng = np.random.default_rng(seed)
    s = _random_similarity(rng, center=tuple(rng.uniform(0, 255, 2)))
    back = Similarity.from_matrix(s.matrix(), s.center)
    np.testing.assert_allclose(back.params, s.params, rtol=0, atol=TOL)
    np.testing.assert_allclose(back.matrix(), s.matrix(), rtol=0, atol=TOL)
    # a 2x3 matrix is accepted too
    np.testing.assert_allclose(Similarity.from_matrix(s.matrix()[:2], s.center).params, s.params, rtol=0, atol=TOL)


def test_from_matrix_rejects_shear_and_anisotropic_scale():
    shear = np.array([[1.0, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match="not a similarity"):
        Similarity.from_matrix(shear)
    aniso = np.diag([1.0, 1.05, 1.0])
    with pytest.raises(ValueError, match="not a similarity"):
        Similarity.from_matrix(aniso, C)
    reflection = np.diag([1.0, -1.0, 1.0])  # det < 0: not a rotation either
    with pytest.raises(ValueError, match="not a similarity"):
        Similarity.from_matrix(reflection)


# -- algebra ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_inverse_composes_to_identity(seed):
    rng = np.random.default_rng(100 + seed)
    s = _random_similarity(rng)
    p = _points(rng)
    np.testing.assert_allclose(s.inverse().compose(s).apply(p), p, rtol=0, atol=TOL)
    np.testing.assert_allclose(s.compose(s.inverse()).apply(p), p, rtol=0, atol=TOL)
    np.testing.assert_allclose(s.inverse().apply(s.apply(p)), p, rtol=0, atol=TOL)
    assert s.inverse().center == s.center


@pytest.mark.parametrize("seed", SEEDS)
def test_compose_applies_the_right_operand_first(seed):
    rng = np.random.default_rng(200 + seed)
    a, b = _random_similarity(rng), _random_similarity(rng, center=(3.0, 200.0))
    p = _points(rng)
    np.testing.assert_allclose(a.compose(b).apply(p), a.apply(b.apply(p)), rtol=0, atol=TOL)
    assert a.compose(b).center == a.center
    # and the order matters for generic similarities (guards against a symmetric implementation)
    assert np.max(np.abs(b.compose(a).apply(p) - a.compose(b).apply(p))) > 1e-3


@pytest.mark.parametrize("seed", SEEDS)
def test_with_center_keeps_the_mapping(seed):
    rng = np.random.default_rng(300 + seed)
    s = _random_similarity(rng)
    p = _points(rng)
    other = s.with_center((12.0, 240.0))
    assert other.center == (12.0, 240.0)
    np.testing.assert_allclose(other.apply(p), s.apply(p), rtol=0, atol=TOL)
    # scale and angle do not depend on the centre; the shift does (unless scale=1, angle=0)
    assert other.scale == pytest.approx(s.scale, abs=1e-12)
    assert other.angle == pytest.approx(s.angle, abs=1e-12)
    assert (other.tx, other.ty) != pytest.approx((s.tx, s.ty), abs=1e-6)


def test_angle_convention_positive_is_clockwise_as_displayed():
    """+90 deg maps the point right of the centre to the point below it (y points down)."""
    s = Similarity(angle=math.radians(90.0), center=C)
    right = np.array([C[0] + 1.0, C[1]])
    below = np.array([C[0], C[1] + 1.0])
    np.testing.assert_allclose(s.apply(right), below, rtol=0, atol=1e-12)
    assert s.angle_deg == pytest.approx(90.0, abs=1e-12)
    # the centre is fixed by a rotation/scale about it
    np.testing.assert_allclose(Similarity(1.3, 0.7, 0.0, 0.0, C).apply(np.array(C)), C, rtol=0, atol=1e-12)


# -- narrowing -------------------------------------------------------------------------------
@pytest.mark.parametrize("ty_u, ty_l, tx_u, tx_l", [(0.5, 0.0, 0.0, 0.0), (1.25, -0.5, 3.0, -2.0),
                                                     (-0.3, 0.4, 0.0, 7.0)])
def test_narrowing_of_pure_translations(ty_u, ty_l, tx_u, tx_l):
    u = Similarity(1.0, 0.0, tx_u, ty_u, C)
    lo = Similarity(1.0, 0.0, tx_l, ty_l, C)
    for point in (None, C, (0.0, 0.0), (250.0, 17.0)):  # translation: the same at every point
        assert narrowing_px(u, lo, point) == pytest.approx(ty_u - ty_l, abs=TOL)


def test_narrowing_sign():
    still = Similarity.identity(C)
    down = Similarity(1.0, 0.0, 0.0, 0.5, C)  # +y is down in the image
    assert narrowing_px(down, still) == pytest.approx(+0.5, abs=TOL)  # upper moved down: narrowing
    assert narrowing_px(still, down) == pytest.approx(-0.5, abs=TOL)  # lower moved down: widening
    assert narrowing_px(still, still) == 0.0


def test_narrowing_is_evaluated_at_the_upper_centre_by_default():
    rng = np.random.default_rng(5)
    u, lo = _random_similarity(rng), _random_similarity(rng)
    assert narrowing_px(u, lo) == pytest.approx(narrowing_px(u, lo, u.center), abs=TOL)
    rel = lo.inverse().compose(u)
    p = np.array([40.0, 90.0])
    assert narrowing_px(u, lo, tuple(p)) == pytest.approx(rel.apply(p)[1] - p[1], abs=TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_narrowing_antisymmetry_pure_translations(seed):
    rng = np.random.default_rng(400 + seed)
    u = Similarity(1.0, 0.0, *rng.uniform(-10, 10, 2), C)
    lo = Similarity(1.0, 0.0, *rng.uniform(-10, 10, 2), C)
    assert narrowing_px(u.inverse(), lo.inverse()) == pytest.approx(-narrowing_px(u, lo), abs=TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_narrowing_antisymmetry_general_similarities(seed):
    """Backward narrowing, derived: with ``rel = L^-1 o U`` and ``d = rel(p) - p`` (so the
    forward narrowing is ``d.y``), the backward pair ``(U^-1, L^-1)`` has relative map
    ``L o U^-1``; at the image ``q = U(p)`` of the evaluation point it gives
    ``L(p).y - U(p).y = -(U(p) - L(p)).y = -(A_L d).y`` with ``A_L`` the linear part of ``L``.
    So the backward narrowing at ``U(p)`` is exactly ``-(A_L d).y``, and exactly
    ``-narrowing(p)`` when ``L`` is a pure translation (``A_L = I``). In general the two
    differ, because the narrowing is measured along each baseline frame's own +y.
    """
    rng = np.random.default_rng(500 + seed)
    u, lo = _random_similarity(rng), _random_similarity(rng)
    for p in (np.array(C), rng.uniform(0, 255, 2)):
        d = lo.inverse().compose(u).apply(p) - p
        q = tuple(u.apply(p))
        backward = narrowing_px(u.inverse(), lo.inverse(), q)
        assert backward == pytest.approx(-(lo.linear() @ d)[1], abs=TOL)
        # with the lower bone only translated, antisymmetry at the image point is exact
        lo_t = Similarity(1.0, 0.0, lo.tx, lo.ty, C)
        assert narrowing_px(u.inverse(), lo_t.inverse(), q) == pytest.approx(-narrowing_px(u, lo_t, tuple(p)),
                                                                              abs=TOL)


# -- the Jacobian ----------------------------------------------------------------------------
def _fd_jacobian(u: Similarity, lo: Similarity, point, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Independent central differences of narrowing_px w.r.t. right-composed perturbations
    ``S o from_params(d)^-1`` (the convention documented in narrowing_jacobian)."""
    out = []
    for which in (0, 1):
        g = np.zeros(4)
        for k in range(4):
            vals = []
            for sign in (+1.0, -1.0):
                d = np.zeros(4)
                d[k] = sign * h
                pair = [u, lo]
                pair[which] = pair[which].compose(Similarity.from_params(d, pair[which].center).inverse())
                vals.append(narrowing_px(pair[0], pair[1], point))
            g[k] = (vals[0] - vals[1]) / (2 * h)
        out.append(g)
    return out[0], out[1]


@pytest.mark.parametrize("seed", SEEDS)
def test_narrowing_jacobian_matches_finite_differences(seed):
    # h = 1e-4 (100x the engine's step): truncation ~ h^2 |f'''| / 6 ~ 1e-8 * (lever arm
    # ~200 px) ~ 2e-6 and round-off ~ 1e-13 / h ~ 1e-9, so 2e-5 is a >10x margin.
    rng = np.random.default_rng(600 + seed)
    u, lo = _random_similarity(rng), _random_similarity(rng)
    point = tuple(rng.uniform(60, 200, 2))
    g_u, g_l = narrowing_jacobian(u, lo, point)
    f_u, f_l = _fd_jacobian(u, lo, point, 1e-4)
    np.testing.assert_allclose(g_u, f_u, rtol=0, atol=2e-5)
    np.testing.assert_allclose(g_l, f_l, rtol=0, atol=2e-5)
    assert np.abs(g_u).max() > 0.1 and np.abs(g_l).max() > 0.1  # not trivially zero


def test_narrowing_jacobian_analytic_at_identity():
    """At identity transforms, the perturbation ``from_params(d)^-1`` of the upper bone moves
    a point p by ``-(d_s (p-c) + d_a R90 (p-c) + (d_tx, d_ty))``; its y part gives
    ``dN/dd_upper = -((p-c).y, (p-c).x, 0, 1)`` and the lower bone the opposite."""
    ident = Similarity.identity(C)
    off = np.array([30.0, -20.0])
    p = tuple(np.array(C) + off)
    g_u, g_l = narrowing_jacobian(ident, ident, p)
    expected = -np.array([off[1], off[0], 0.0, 1.0])
    np.testing.assert_allclose(g_u, expected, rtol=0, atol=1e-6)  # eps=1e-6 central differences
    np.testing.assert_allclose(g_l, -expected, rtol=0, atol=1e-6)


# -- validation and small helpers ------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [
    dict(scale=0.0), dict(scale=-1.0), dict(scale=float("nan")), dict(scale=float("inf")),
    dict(angle=float("nan")), dict(tx=float("nan")), dict(ty=float("inf")), dict(tx=-float("inf")),
])
def test_invalid_values_raise(kwargs):
    with pytest.raises(ValueError):
        Similarity(**kwargs)


def test_from_params_with_nan_raises():
    with pytest.raises(ValueError):
        Similarity.from_params([float("nan"), 0.0, 0.0, 0.0], C)
    with pytest.raises(ValueError):
        Similarity.from_params([0.0, 0.0, float("nan"), 0.0], C)


def test_px_to_mm():
    assert px_to_mm(2.5, 0.2) == pytest.approx(0.5, abs=1e-15)
    assert px_to_mm(2.5, None) is None


def test_crop_centre():
    assert crop_centre((256, 256)) == (127.5, 127.5)
    assert crop_centre((240, 100)) == (49.5, 119.5)  # (x, y) = (cols, rows)


def test_reading_point_uncertainty_enters_the_se_through_the_relative_rotation():
    """The reading point's SD times the narrowing's gradient along the joint: the gradient along
    x is the relative rotation (sin of it; 2 % for the axis turned half-way), along y the relative
    scale change (here 0, up to 1 - cos of the rotation, 0.004); without a relative motion the
    point's SD adds nothing."""
    import math

    from jsnq.jsn import narrowing, point_gradient

    c = (64.0, 64.0)
    d = math.radians(5.0)
    upper, lower = Similarity(1.0, d / 2, 0.0, 0.3, c), Similarity(1.0, -d / 2, 0.0, -0.3, c)
    g = point_gradient(upper, lower, c, None)
    assert g[0] == pytest.approx(math.sin(d), rel=0.02) and abs(g[1]) < 1.0 - math.cos(d)
    cov = np.diag([1e-6, 1e-6, 1e-4, 1e-4])
    plain = narrowing(upper, lower, cov, cov, point=c)
    with_point = narrowing(upper, lower, cov, cov, point=c, point_sd_px=(0.5, 1.2))
    assert with_point.narrowing_px == plain.narrowing_px
    assert with_point.se_px ** 2 - plain.se_px ** 2 == pytest.approx((0.5 * g[0]) ** 2 + (1.2 * g[1]) ** 2, rel=1e-6)
    still = Similarity(1.0, 0.0, 0.0, 0.3, c), Similarity(1.0, 0.0, 0.0, -0.3, c)
    assert narrowing(*still, cov, cov, point=c, point_sd_px=(0.5, 1.2)).se_px == pytest.approx(
        narrowing(*still, cov, cov, point=c).se_px, abs=1e-9)
