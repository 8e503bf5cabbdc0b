"""Synthetic MCP joint crops with a known joint space narrowing (JSN), for testing registration.

Two halves, kept apart (like TorchIO's transforms):

* **sampling** -- :func:`~jsnq.phantom.params.sample_params` turns a random generator into a
  frozen :class:`~jsnq.phantom.params.PhantomParams`, nested as bone shape, texture and
  acquisition (all randomness lives there, including the integer seeds of the texture and
  the noise);
* **rendering** -- :func:`render` turns a :class:`PhantomParams` into a
  :class:`PhantomPair`. It is deterministic: the same params give bit-identical arrays.

Physical model (projection radiography is additive in attenuation)::

    image = background + soft_tissue + bone_upper + bone_lower

Each term is a function of *continuous* coordinates, so the follow-up is rendered exactly
from the moved geometry, never by interpolating the baseline: at follow-up point ``y`` the
upper bone is evaluated at ``upper^-1(y)``, the lower bone at ``lower^-1(y)``, and the soft
tissue at ``mean^-1(y)`` where ``mean`` is the similarity whose ``(log_scale, angle, tx, ty)``
is the average of the two bones' (about the crop centre). The background is a constant.

Geometry (bone-local coordinates ``(u, v)`` in pixels, origin at the centre of the joint
space, which is the crop centre; ``v`` points down; each bone may be tilted by a small angle
about that origin):

* the **upper bone** (proximal phalanx base) is a shaft whose half-width flares from
  ``bone.upper_shaft_half_width_px`` at the top to ``bone.upper_half_width_px`` at the joint, with a
  concave bottom: the outside of a circle of radius ``bone.upper_concavity_radius_px`` whose top
  point is ``(0, -gap_px/2)``;
* the **lower bone** (metacarpal head) is a circle of radius ``bone.lower_head_radius_px`` whose
  top point is ``(0, +gap_px/2)``, merged (smooth union) with a shaft of half-width
  ``bone.lower_shaft_half_width_px`` going down;
* the joint space (gap) is therefore ``bone.gap_px`` wide at the crop centre (baseline) and widens
  towards the sides.

Each bone is drawn from a smooth signed distance ``d`` (negative inside): an anti-aliased
interior mask (smoothstep over 1 px) times ``texture.bone_level + texture.contrast * T`` plus a
bright cortical rim of thickness ``bone.cortex_px``. ``T`` is a band-limited random field (a sum
of ``texture.waves`` plane-wave cosines with wavelengths in ``texture.wavelength_px``, unit
standard deviation) attached to the bone's baseline coordinates, so it moves exactly with
the bone. The bones are rendered on a ``acquisition.supersample`` x finer grid, blurred there by a
Gaussian of ``acquisition.blur_sigma_px`` (base pixels), then averaged over each pixel's
``supersample**2`` samples (pixel integration): this keeps the content above the Nyquist
frequency -- and hence sub-pixel aliasing bias -- small (docs/development.md#phantoms). The soft tissue (smooth, scales >= ~12 px) is sampled at the pixel
centres and blurred with the same Gaussian on the pixel grid. The follow-up is then mapped
through ``acquisition.gain * I + acquisition.offset``, and each image gets its own Gaussian noise with standard
deviation ``acquisition.noise_sigma * (max - min)`` of that image's noise-free version, drawn from
``np.random.default_rng([acquisition.noise_seed, 0])`` (baseline) and ``[acquisition.noise_seed, 1]`` (follow-up).

:func:`apply_bone_motions` is the companion for REAL crops: it warps an image with one
similarity per side of the joint-space line, blended smoothly across the line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..geometry import Similarity
from .params import EDGE_PX, PhantomParams, check_number, sample_params
from .shapes import plane_waves, smooth_max, smooth_min, smoothstep, wave_bank

__all__ = [
    "PhantomParams",
    "PhantomPair",
    "sample_params",
    "render",
    "make_pair",
    "apply_bone_motions",
    "side_weight",
]

UPPER = 1
"""Label of the upper side of the joint-space midline (the proximal phalanx)."""
LOWER = 2
"""Label of the lower side of the joint-space midline (the metacarpal head)."""


@dataclass(frozen=True)
class PhantomPair:
    """A rendered baseline/follow-up pair and its ground truth.

    ``baseline_labels``/``followup_labels``: 1 = upper side, 2 = lower side of the
    joint-space midline (closer to the upper / to the lower bone); every pixel is 1 or 2.
    ``upper_mask``/``lower_mask``: bone masks (signed distance < 0 at the pixel centre) in
    the baseline frame. ``narrowing_px``: true narrowing at the crop centre.
    """

    baseline: np.ndarray
    followup: np.ndarray
    baseline_labels: np.ndarray
    followup_labels: np.ndarray
    upper_mask: np.ndarray
    lower_mask: np.ndarray
    params: PhantomParams
    narrowing_px: float


# --------------------------------------------------------------------------------------
# rendering helpers (all vectorised; grids are separable: xs along columns, ys along rows)
# --------------------------------------------------------------------------------------
def _grid_axes(shape: tuple[int, int], ss: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample positions (x along columns, y along rows) of an ``ss`` x supersampled grid:
    the ``ss`` samples of pixel ``i`` sit at ``i + (k + 0.5)/ss - 0.5``, k = 0..ss-1."""
    off = (np.arange(ss) + 0.5) / ss - 0.5
    ys = (np.arange(shape[0])[:, None] + off[None, :]).ravel()
    xs = (np.arange(shape[1])[:, None] + off[None, :]).ravel()
    return xs, ys


def _affine_to_local(motion: Similarity, centre: tuple[float, float],
                     tilt_rad: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``(A, b)`` with ``local = A @ p + b``: follow-up point ``p`` -> baseline point
    ``q = motion^-1(p)`` -> offsets from ``centre`` rotated by ``-tilt`` (bone-local)."""
    m = motion.inverse().matrix()
    c, s = math.cos(tilt_rad), math.sin(tilt_rad)
    r = np.array([[c, s], [-s, c]])  # R(-tilt)
    a = r @ m[:2, :2]
    b = r @ (m[:2, 2] - np.asarray(centre, dtype=float))
    return a, b


def _eval_affine(a: np.ndarray, b: np.ndarray, xs: np.ndarray, ys: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    u = (a[0, 0] * xs)[None, :] + (a[0, 1] * ys + b[0])[:, None]
    v = (a[1, 0] * xs)[None, :] + (a[1, 1] * ys + b[1])[:, None]
    return u, v


def _upper_sdf(p: PhantomParams, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Approximate signed distance (px, < 0 inside) to the upper bone, bone-local coords."""
    g2 = p.bone.gap_px / 2.0
    rc = p.bone.upper_concavity_radius_px
    w = v - (rc - g2)
    d_cup = rc - np.sqrt(u * u + w * w)  # outside the cup circle = bone
    hb, hs, lf = p.bone.upper_half_width_px, p.bone.upper_shaft_half_width_px, p.bone.upper_flare_px
    e = np.exp(np.minimum(v + g2, 0.0) / lf)  # 1 at/below the joint level, -> 0 upwards
    hw = hs + (hb - hs) * e
    slope = (hb - hs) / lf * e * (v < -g2)
    d_side = (np.abs(u) - hw) / np.sqrt(1.0 + slope * slope)
    return smooth_max(d_cup, d_side, p.bone.corner_radius_px)


def _lower_sdf(p: PhantomParams, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Approximate signed distance (px, < 0 inside) to the lower bone, bone-local coords."""
    r = p.bone.lower_head_radius_px
    vc = p.bone.gap_px / 2.0 + r
    w = v - vc
    d_head = np.sqrt(u * u + w * w) - r
    d_shaft = np.maximum(np.abs(u) - p.bone.lower_shaft_half_width_px, vc - v)
    return smooth_min(d_head, d_shaft, 2.0 * p.bone.corner_radius_px)


def _bone_intensity(p: PhantomParams, d: np.ndarray, tex: np.ndarray) -> np.ndarray:
    inside = smoothstep(0.5 - d / EDGE_PX)
    deep = smoothstep(0.5 - (d + p.bone.cortex_px) / EDGE_PX)
    rim = inside - deep  # = inside * (1 - deep) since deep <= inside
    return inside * (p.texture.bone_level + p.texture.contrast * tex) + p.texture.cortex_level * rim


def _mean_motion(p: PhantomParams) -> Similarity:
    """Soft-tissue motion: the average of the bones' (log_scale, angle, tx, ty) about the
    crop centre."""
    c = p.centre
    mp = 0.5 * (p.upper.with_center(c).params + p.lower.with_center(c).params)
    return Similarity.from_params(mp, c)


def _soft_tissue(p: PhantomParams, a: np.ndarray, b: np.ndarray, xs: np.ndarray,
                 ys: np.ndarray, bank) -> np.ndarray:
    u, v = _eval_affine(a, b, xs, ys)
    rows = p.shape[0]
    hw = p.texture.soft_tissue_half_width_px * (1.0 + 0.06 * np.exp(-(v / (0.2 * rows)) ** 2))
    x = np.abs(u) / hw
    chord = np.sqrt(np.clip(1.0 - x * x, 0.0, 1.0) * 0.75 + 0.25)  # thicker in the middle
    edge = smoothstep((hw - np.abs(u)) / 12.0 + 0.5)               # skin edge over ~12 px
    st = p.texture.soft_tissue_level * edge * chord
    if p.texture.soft_tissue_variation > 0:
        st = st * (1.0 + p.texture.soft_tissue_variation * 0.5 * plane_waves(bank, a, b, xs, ys))
    return st


def _row_range(a: np.ndarray, b: np.ndarray, xs: np.ndarray, ys: np.ndarray,
               v_lo: float, v_hi: float) -> tuple[int, int]:
    """Rows ``[start, stop)`` of the grid outside which the local ``v = a[1] . p + b[1]``
    is outside ``[v_lo, v_hi]`` for every column (a superset of the rows that matter)."""
    vx = a[1, 0] * np.array([xs[0], xs[-1]])
    vy = a[1, 1] * ys + b[1]
    ok = (vy + vx.max() >= v_lo) & (vy + vx.min() <= v_hi)
    idx = np.flatnonzero(ok)
    return (0, 0) if idx.size == 0 else (int(idx[0]), int(idx[-1]) + 1)


def _bone_v_extent(p: PhantomParams, which: str) -> tuple[float, float]:
    """Local ``v`` range outside which the bone's intensity is exactly zero."""
    g2 = p.bone.gap_px / 2.0
    if which == "upper":
        rc, hb = p.bone.upper_concavity_radius_px, p.bone.upper_half_width_px + EDGE_PX
        rc_in = rc - EDGE_PX
        return -math.inf, rc - g2 - math.sqrt(rc_in * rc_in - hb * hb) + 1.0
    return g2 - 1.0 - EDGE_PX - 0.5 * p.bone.corner_radius_px, math.inf


def _render_visit(p: PhantomParams, upper: Similarity, lower: Similarity, soft: Similarity,
                  banks) -> np.ndarray:
    """Noise-free image of one visit (bones moved by ``upper``/``lower``), float64.

    Bones: evaluated on the supersampled grid (only on the rows they can reach), blurred
    there, then averaged over each pixel. Soft tissue (smooth, scales >= ~12 px): evaluated
    at the pixel centres and blurred at the pixel grid -- the same pipeline for both visits.
    """
    ss = p.acquisition.supersample
    xs, ys = _grid_axes(p.shape, ss)
    c = p.centre
    fine = np.zeros((ys.size, xs.size))
    for motion, tilt, sdf, bank, which in (
            (upper, p.bone.upper_tilt_deg, _upper_sdf, banks[0], "upper"),
            (lower, p.bone.lower_tilt_deg, _lower_sdf, banks[1], "lower")):
        a, b = _affine_to_local(motion, c, math.radians(tilt))
        r0, r1 = _row_range(a, b, xs, ys, *_bone_v_extent(p, which))
        if r1 <= r0:
            continue
        u, v = _eval_affine(a, b, xs, ys[r0:r1])
        d = sdf(p, u, v)
        # texture in the bone's baseline coordinates (no tilt): q = motion^-1(p) - c
        at, bt = _affine_to_local(motion, c)
        tex = plane_waves(bank, at, bt, xs, ys[r0:r1])
        fine[r0:r1] += _bone_intensity(p, d, tex)
    if p.acquisition.blur_sigma_px > 0:
        fine = ndimage.gaussian_filter(fine, p.acquisition.blur_sigma_px * ss, mode="nearest", truncate=4.0)
    img = fine.reshape(p.shape[0], ss, p.shape[1], ss).mean(axis=(1, 3)) if ss > 1 else fine
    bx, by = _grid_axes(p.shape, 1)
    a, b = _affine_to_local(soft, c)
    st = _soft_tissue(p, a, b, bx, by, banks[2])
    if p.acquisition.blur_sigma_px > 0:
        st = ndimage.gaussian_filter(st, p.acquisition.blur_sigma_px, mode="nearest", truncate=4.0)
    img += st
    img += p.texture.background_level
    return img


def _labels(p: PhantomParams, upper: Similarity, lower: Similarity
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (1 where closer to the upper bone, else 2) and bone masks at pixel centres."""
    xs, ys = _grid_axes(p.shape, 1)
    c = p.centre
    out = []
    for motion, tilt, sdf in ((upper, p.bone.upper_tilt_deg, _upper_sdf),
                              (lower, p.bone.lower_tilt_deg, _lower_sdf)):
        a, b = _affine_to_local(motion, c, math.radians(tilt))
        u, v = _eval_affine(a, b, xs, ys)
        out.append(sdf(p, u, v) * motion.scale)  # distances in follow-up pixels
    du, dl = out
    labels = np.where(du < dl, UPPER, LOWER).astype(np.uint8)
    return labels, du < 0, dl < 0


def _add_noise(img: np.ndarray, sigma_frac: float, seed: int, stream: int) -> np.ndarray:
    if sigma_frac <= 0:
        return img
    rng = np.random.default_rng([seed, stream])
    sigma = sigma_frac * float(img.max() - img.min())
    return img + rng.normal(0.0, sigma, img.shape)


# --------------------------------------------------------------------------------------
# public rendering API
# --------------------------------------------------------------------------------------
def render(params: PhantomParams) -> PhantomPair:
    """Render a baseline/follow-up pair from ``params`` (deterministic)."""
    if not isinstance(params, PhantomParams):
        raise ValueError(f"params must be a PhantomParams, got {type(params).__name__}")
    p = params
    c = p.centre
    ident = Similarity.identity(c)
    banks = (
        wave_bank(p.texture.seed, 0, p.texture.waves, p.texture.wavelength_px, True),
        wave_bank(p.texture.seed, 1, p.texture.waves, p.texture.wavelength_px, True),
        wave_bank(p.texture.seed, 2, 8, (0.25 * max(p.shape), 1.0 * max(p.shape)), False),
    )
    base = _render_visit(p, ident, ident, ident, banks)
    follow = _render_visit(p, p.upper, p.lower, _mean_motion(p), banks)
    follow = p.acquisition.gain * follow + p.acquisition.offset
    base = _add_noise(base, p.acquisition.noise_sigma, p.acquisition.noise_seed, 0)
    follow = _add_noise(follow, p.acquisition.noise_sigma, p.acquisition.noise_seed, 1)
    base_labels, upper_mask, lower_mask = _labels(p, ident, ident)
    follow_labels, _, _ = _labels(p, p.upper, p.lower)
    return PhantomPair(
        baseline=base.astype(np.float32),
        followup=follow.astype(np.float32),
        baseline_labels=base_labels,
        followup_labels=follow_labels,
        upper_mask=upper_mask,
        lower_mask=lower_mask,
        params=p,
        narrowing_px=p.narrowing_px,
    )


def make_pair(seed: int = 0, **sample_kwargs) -> PhantomPair:
    """``render(sample_params(np.random.default_rng(seed), **sample_kwargs))``."""
    return render(sample_params(np.random.default_rng(seed), **sample_kwargs))


# --------------------------------------------------------------------------------------
# motion of a real crop
# --------------------------------------------------------------------------------------
def side_weight(labels: np.ndarray, blend_px: float) -> np.ndarray:
    """Weight of the upper motion on the pixel grid: smoothstep of the signed distance to
    the boundary between label 1 and label 2 over ``[-blend_px, +blend_px]``.

    The signed distance is ``s = (dist_to_side2 - dist_to_side1) / 2`` (Euclidean distance
    transforms): > 0 on the upper side, 0 half-way between the two sides -- which also
    defines it for label-0 pixels. It is lightly smoothed (Gaussian, sigma 1 px) to remove
    the pixel staircase of the boundary.
    """
    up = labels == UPPER
    lo = labels == LOWER
    d_up = ndimage.distance_transform_edt(~up)  # 0 on the upper side
    d_lo = ndimage.distance_transform_edt(~lo)
    s = 0.5 * (d_lo - d_up)
    s = ndimage.gaussian_filter(s, 1.0, mode="nearest")
    return smoothstep((s + blend_px) / (2.0 * blend_px))


#: Half-width of the band (in :func:`side_weight`'s half-distance units) where
#: :func:`apply_bone_motions` blends the two motions. Inside it the bones do not move rigidly;
#: with 2 the weights are 0 or 1 (to 1e-9) from 3.5 px of a straight split, outside the
#: engine's 3 px gap band. About the narrowest at which the inverse map converges for
#: relative motions of ~2 px; 4 (before) reached into the facing edges of real MCP crops
#: (docs/benchmarks.md, "The render's blend").
BLEND_PX = 2.0


def apply_bone_motions(image: np.ndarray, labels: np.ndarray, upper: Similarity,
                       lower: Similarity, *, blend_px: float = BLEND_PX, order: int = 5,
                       tol_px: float = 1e-9, max_iter: int = 1000) -> np.ndarray:
    """Synthesise a follow-up from a real crop by moving each side of the joint by its bone.

    Forward map (baseline -> follow-up): ``F(x) = x + D(x)`` with
    ``D(x) = w(x) (upper(x) - x) + (1 - w(x)) (lower(x) - x)``, where ``w`` is 1 on the
    upper side (``labels == 1``), 0 on the lower side (``labels == 2``) and blends by a
    smoothstep over ``+-blend_px`` of :func:`side_weight`'s signed distance (half a pixel's
    distance from the other side: ``blend_px`` 2 blends within about 3 px of the boundary)
    (label-0 pixels get ``w`` from their distances to both sides). ``w`` is sampled on the
    pixel grid and evaluated between pixels by cubic-spline interpolation; the two affine
    displacements are evaluated exactly, so the displacement field is exact wherever ``w``
    is constant (deep on either side).

    The follow-up at pixel ``y`` is the baseline at the pre-image ``x = F^-1(y)``, found by
    the fixed-point iteration ``x <- y - D(x)`` (converges while ``D`` is a contraction,
    i.e. for small rotations/scales and a relative motion well below ``blend_px``), and
    sampled with ``scipy.ndimage.map_coordinates(order=order, mode='reflect')``.

    Returns a float array (float64 for float64 input, else float32), same shape.
    """
    img = np.asarray(image)
    lab = np.asarray(labels)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {img.shape}")
    if lab.shape != img.shape:
        raise ValueError(f"labels shape {lab.shape} must equal image shape {img.shape}")
    if not (np.any(lab == UPPER) and np.any(lab == LOWER)):
        raise ValueError("labels must contain both sides: 1 (upper) and 2 (lower)")
    if not np.all(np.isin(lab, (0, UPPER, LOWER))):
        raise ValueError("labels must only contain 0, 1 (upper side) and 2 (lower side)")
    if not isinstance(upper, Similarity) or not isinstance(lower, Similarity):
        raise ValueError("upper and lower must be jsnq.geometry.Similarity")
    check_number("blend_px", blend_px, 0.0, None, lo_open=True)
    if not isinstance(order, (int, np.integer)) or not 0 <= order <= 5:
        raise ValueError(f"order must be an integer in [0, 5], got {order!r}")
    if not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    check_number("tol_px", tol_px, 0.0, None, lo_open=True)
    out_dtype = np.float64 if img.dtype == np.float64 else np.float32

    w_grid = side_weight(lab, float(blend_px))
    w_coef = ndimage.spline_filter(w_grid, order=3, mode="nearest")
    mu, mlo = upper.matrix(), lower.matrix()
    lin_u, off_u = mu[:2, :2] - np.eye(2), mu[:2, 2]  # upper(x) - x = lin_u x + off_u
    lin_l, off_l = mlo[:2, :2] - np.eye(2), mlo[:2, 2]

    rows, cols = img.shape
    yy, xx = np.mgrid[0:rows, 0:cols].astype(float)
    y = np.stack([xx.ravel(), yy.ravel()], axis=1)  # (N, 2) as (x, y)

    def displacement(x: np.ndarray) -> np.ndarray:
        w = ndimage.map_coordinates(w_coef, [x[:, 1], x[:, 0]], order=3, mode="nearest",
                                    prefilter=False)
        w = np.clip(w, 0.0, 1.0)[:, None]
        du = x @ lin_u.T + off_u
        dl = x @ lin_l.T + off_l
        return dl + w * (du - dl)

    x = y - displacement(y)
    for _ in range(max_iter):
        x_new = y - displacement(x)
        step = float(np.max(np.abs(x_new - x)))
        x = x_new
        if step < tol_px:
            break
    else:  # pragma: no cover - only for huge relative motions / tiny blend bands
        raise ValueError(f"bone motions are too large for blend_px={blend_px:g}: the inverse "
                         f"map did not converge (last step {step:.3g} px)")
    out = ndimage.map_coordinates(img.astype(np.float64), [x[:, 1], x[:, 0]], order=int(order),
                                  mode="reflect")
    return out.reshape(rows, cols).astype(out_dtype)
