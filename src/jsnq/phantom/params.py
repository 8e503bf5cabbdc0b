"""The joint phantom's parameters, nested by what they describe, and their sampling.

:class:`PhantomParams` holds the crop's ``shape``, the bones' motions (``upper``, ``lower``)
and three groups: :class:`BoneShape` (the geometry), :class:`Texture` (attenuation levels,
trabecular texture, soft tissue, background) and :class:`Acquisition` (blur, noise, render
grid, the follow-up's exposure). :func:`sample_params` draws every random number of a phantom;
:func:`jsnq.phantom.joint.render` turns the params into images (see there for the model).
All lengths are in pixels of the crop; coordinates are ``(x, y) = (col, row)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..geometry import Similarity, crop_centre, symmetric_narrowing_px

__all__ = ["BoneShape", "Texture", "Acquisition", "PhantomParams", "sample_params", "check_number", "MIN_SIDE", "EDGE_PX"]

#: The smallest crop side.
MIN_SIDE = 32
#: Width of the anti-aliased bone edge (smoothstep), in pixels.
EDGE_PX = 1.0


def check_number(name: str, value: float, lo: float | None = None, hi: float | None = None,
           *, lo_open: bool = False, hi_open: bool = False) -> None:
    """ValueError naming ``name`` and its allowed range when ``value`` is outside it."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(float(value))
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        left = "(-inf" if lo is None else ("(" if lo_open else "[") + f"{lo:g}"
        right = "inf)" if hi is None else f"{hi:g}" + (")" if hi_open else "]")
        raise ValueError(f"{name} must be a finite number in {left}, {right}, got {value!r}")


def _as_floats(obj: object, names: Sequence[str]) -> None:
    for name in names:
        object.__setattr__(obj, name, float(getattr(obj, name)))


def _check_seed(obj: object, name: str, label: str) -> None:
    v = getattr(obj, name)
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
        raise ValueError(f"{label} must be a non-negative integer, got {v!r}")
    object.__setattr__(obj, name, int(v))


def _check_int(obj: object, name: str, label: str, lo: int, hi: int) -> None:
    v = getattr(obj, name)
    if not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
        raise ValueError(f"{label} must be an integer in [{lo}, {hi}], got {v!r}")
    object.__setattr__(obj, name, int(v))


@dataclass(frozen=True)
class BoneShape:
    """The bones' geometry (``u``/``v``: bone-local offsets from the crop centre, ``v`` down).

    Attributes:
        gap_px: joint space width at the crop centre in the baseline, in ``(0, rows/4]``.
        upper_half_width_px: half-width of the upper bone at the joint (its flared base).
        upper_shaft_half_width_px: half-width of the upper bone far from the joint.
        upper_flare_px: decay length of the flare from base to shaft width (going up).
        upper_concavity_radius_px: radius of the concave joint surface of the upper bone
            (larger = flatter); must exceed ``lower_head_radius_px`` and ``upper_half_width_px + 2``.
        lower_head_radius_px: radius of the convex metacarpal head.
        lower_shaft_half_width_px: half-width of the metacarpal shaft, < head radius.
        corner_radius_px: rounding of the bone corners (smooth max/min width).
        cortex_px: thickness of the bright cortical rim.
        upper_tilt_deg, lower_tilt_deg: small tilt of each bone about the crop centre
            (baseline), within +-15 deg.
    """

    gap_px: float = 8.0
    upper_half_width_px: float = 84.0
    upper_shaft_half_width_px: float = 58.0
    upper_flare_px: float = 40.0
    upper_concavity_radius_px: float = 240.0
    lower_head_radius_px: float = 76.0
    lower_shaft_half_width_px: float = 58.0
    corner_radius_px: float = 8.0
    cortex_px: float = 4.0
    upper_tilt_deg: float = 0.0
    lower_tilt_deg: float = 0.0

    def __post_init__(self) -> None:
        check_number("gap_px", self.gap_px, 0.0, None, lo_open=True)
        check_number("upper_half_width_px", self.upper_half_width_px, 0.0, None, lo_open=True)
        check_number("upper_shaft_half_width_px", self.upper_shaft_half_width_px, 0.0, self.upper_half_width_px,
               lo_open=True)
        check_number("upper_flare_px", self.upper_flare_px, 0.0, None, lo_open=True)
        check_number("lower_head_radius_px", self.lower_head_radius_px, 0.0, None, lo_open=True)
        check_number("upper_concavity_radius_px", self.upper_concavity_radius_px,
               max(self.lower_head_radius_px, self.upper_half_width_px + 2.0 * EDGE_PX), None, lo_open=True)
        check_number("lower_shaft_half_width_px", self.lower_shaft_half_width_px, 0.0, self.lower_head_radius_px,
               lo_open=True, hi_open=True)
        check_number("corner_radius_px", self.corner_radius_px, 0.0, None)
        check_number("cortex_px", self.cortex_px, 0.0, min(self.upper_shaft_half_width_px, self.lower_shaft_half_width_px),
               lo_open=True)
        check_number("upper_tilt_deg", self.upper_tilt_deg, -15.0, 15.0)
        check_number("lower_tilt_deg", self.lower_tilt_deg, -15.0, 15.0)
        _as_floats(self, [f for f in self.__dataclass_fields__])


@dataclass(frozen=True)
class Texture:
    """What the crop is made of: attenuation levels, trabecular texture, soft tissue, background.

    Attributes:
        bone_level: attenuation of the bone interior (added to the soft tissue).
        cortex_level: extra attenuation of the cortical rim.
        seed: seed of the trabecular texture (plane-wave bank).
        contrast: standard deviation of the texture, in intensity units.
        waves: number of plane waves in the texture.
        wavelength_px: ``(min, max)`` wavelength of the texture waves, min >= 2.
        soft_tissue_level: attenuation of the soft tissue at the finger's centre.
        soft_tissue_half_width_px: half-width of the finger's soft tissue.
        soft_tissue_variation: relative amplitude of slow soft-tissue variations, in [0, 1].
        background_level: constant intensity outside the finger.
    """

    bone_level: float = 0.30
    cortex_level: float = 0.22
    seed: int = 0
    contrast: float = 0.06
    waves: int = 64
    wavelength_px: tuple[float, float] = (4.0, 20.0)
    soft_tissue_level: float = 0.25
    soft_tissue_half_width_px: float = 120.0
    soft_tissue_variation: float = 0.1
    background_level: float = 0.06

    def __post_init__(self) -> None:
        levels = ("bone_level", "cortex_level", "contrast", "soft_tissue_level", "background_level")
        for name in levels:
            check_number(f"texture.{name}", getattr(self, name), 0.0, None)
        check_number("texture.soft_tissue_variation", self.soft_tissue_variation, 0.0, 1.0)
        check_number("texture.soft_tissue_half_width_px", self.soft_tissue_half_width_px, 0.0, None, lo_open=True)
        _check_seed(self, "seed", "texture.seed")
        _check_int(self, "waves", "texture.waves", 1, 1024)
        lam = tuple(float(v) for v in self.wavelength_px)
        if len(lam) != 2 or not (2.0 <= lam[0] <= lam[1] < math.inf):
            raise ValueError("texture.wavelength_px must be (min, max) with 2 <= min <= max < inf, "
                             f"got {self.wavelength_px!r}")
        object.__setattr__(self, "wavelength_px", lam)
        _as_floats(self, [*levels, "soft_tissue_variation", "soft_tissue_half_width_px"])


@dataclass(frozen=True)
class Acquisition:
    """How the crop is imaged.

    Attributes:
        blur_sigma_px: Gaussian blur (detector PSF), same for both visits, in [0, 10]; 0 = none.
        noise_sigma: noise SD as a fraction of each image's intensity range.
        noise_seed: seed of the noise (baseline and follow-up use independent streams).
        supersample: supersampling factor of the render grid (1..4).
        gain, offset: follow-up exposure change, ``followup = gain * I + offset`` (before noise).
    """

    blur_sigma_px: float = 1.0
    noise_sigma: float = 0.01
    noise_seed: int = 0
    supersample: int = 2
    gain: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        check_number("blur_sigma_px", self.blur_sigma_px, 0.0, 10.0)
        check_number("noise_sigma", self.noise_sigma, 0.0, None)
        _check_seed(self, "noise_seed", "noise_seed")
        _check_int(self, "supersample", "supersample", 1, 4)
        check_number("gain", self.gain, 0.0, None, lo_open=True)
        check_number("offset", self.offset)
        _as_floats(self, ("blur_sigma_px", "noise_sigma", "gain", "offset"))


@dataclass(frozen=True)
class PhantomParams:
    """Everything :func:`~jsnq.phantom.joint.render` needs. Defaults give a canonical,
    motionless, slightly noisy crop.

    Attributes:
        shape: ``(rows, cols)`` of the crop, each >= 32.
        bone, texture, acquisition: the groups above (``bone.gap_px`` at most ``rows/4``, the
            bones' half-widths and head radius below ``cols``).
        upper: true motion of the upper bone, baseline -> follow-up (default: identity about
            the crop centre).
        lower: true motion of the lower bone, baseline -> follow-up.
    """

    shape: tuple[int, int] = (256, 256)
    bone: BoneShape = field(default_factory=BoneShape)
    texture: Texture = field(default_factory=Texture)
    acquisition: Acquisition = field(default_factory=Acquisition)
    upper: Similarity | None = None
    lower: Similarity | None = None

    def __post_init__(self) -> None:
        rows, cols = _check_shape(self.shape)
        object.__setattr__(self, "shape", (rows, cols))
        for name, kind in (("bone", BoneShape), ("texture", Texture), ("acquisition", Acquisition)):
            if not isinstance(getattr(self, name), kind):
                raise ValueError(f"{name} must be a jsnq.phantom.{kind.__name__}, got {type(getattr(self, name)).__name__}")
        check_number("bone.gap_px", self.bone.gap_px, 0.0, rows / 4.0, lo_open=True)
        for name in ("upper_half_width_px", "lower_head_radius_px"):
            check_number(f"bone.{name}", getattr(self.bone, name), 0.0, cols, lo_open=True)
        for name in ("upper", "lower"):
            v = getattr(self, name)
            if v is None:
                object.__setattr__(self, name, Similarity.identity(crop_centre((rows, cols))))
            elif not isinstance(v, Similarity):
                raise ValueError(f"{name} must be a jsnq.geometry.Similarity, got {type(v).__name__}")

    @property
    def centre(self) -> tuple[float, float]:
        """Crop centre ``(x, y)``: the centre of the joint space in the baseline."""
        return crop_centre(self.shape)

    @property
    def narrowing_px(self) -> float:
        """True narrowing at the crop centre, as jsnq defines it:
        ``geometry.symmetric_narrowing_px(upper, lower, centre)``."""
        return symmetric_narrowing_px(self.upper, self.lower, self.centre)


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    s = tuple(shape)
    if len(s) != 2 or not all(isinstance(v, (int, np.integer)) for v in s) or min(s) < MIN_SIDE:
        raise ValueError(f"shape must be two integers (rows, cols), each >= {MIN_SIDE}, got {shape!r}")
    return int(s[0]), int(s[1])


def _range(name: str, value: Sequence[float], lo: float | None = None) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair, got {value!r}") from None
    if not (math.isfinite(a) and math.isfinite(b) and a <= b and (lo is None or a >= lo)):
        where = "" if lo is None else f" and low >= {lo:g}"
        raise ValueError(f"{name} must be a finite (low, high) pair with low <= high{where}, got {value!r}")
    return a, b


def sample_params(
    rng: np.random.Generator,
    *,
    shape: tuple[int, int] = (256, 256),
    narrowing_px: tuple[float, float] = (-1.0, 1.0),
    max_rotation_deg: float = 5.0,
    max_scale: float = 0.05,
    max_shift_px: float = 5.0,
    relative_rotation_deg: float = 0.5,
    noise: float = 0.01,
    exposure: float = 0.1,
    blur: tuple[float, float] = (0.7, 1.5),
    gap_px: tuple[float, float] | None = None,
) -> PhantomParams:
    """Draw random phantom parameters (all randomness of a phantom comes from ``rng``).

    Motion: a common similarity ``C`` (rotation uniform in +-``max_rotation_deg``, log-scale
    uniform in +-``max_scale``, tx and ty uniform in +-``max_shift_px``) applied to both
    bones after a small relative motion: ``upper = C o Ru``, ``lower = C o Rl`` with ``Ru``
    (``Rl``) a rotation by ``+d/2`` (``-d/2``) about the crop centre, ``d`` uniform in
    +-``relative_rotation_deg``, and a vertical shift chosen so that the baseline-frame
    narrowing at the crop centre (:func:`jsnq.geometry.narrowing_px`) is exactly ``n``,
    uniform in ``narrowing_px``; the truth jsnq reports, the half-way definition
    (:attr:`PhantomParams.narrowing_px`), differs from ``n`` by about the common scale change
    (a few % of ``n``). All similarity centres are the crop centre. Exposure: gain uniform in
    ``1 +- exposure``, offset uniform in ``+- exposure/2``. ``noise`` is the noise_sigma of
    both images (fixed, not drawn). ``gap_px``: range of the baseline gap width; default
    ``(4, 12) * rows/256``. Bone geometry is drawn around real MCP crops (bones ~60-70 % of
    the crop width). The draws come in a fixed order (bone, texture, acquisition, motion,
    exposure), so a seed's phantom stays the same.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    rows, cols = _check_shape(shape)
    n_range = _range("narrowing_px", narrowing_px)
    check_number("max_rotation_deg", max_rotation_deg, 0.0, 45.0)
    check_number("max_scale", max_scale, 0.0, 0.5)
    check_number("max_shift_px", max_shift_px, 0.0, None)
    check_number("relative_rotation_deg", relative_rotation_deg, 0.0, 10.0)
    check_number("noise", noise, 0.0, None)
    check_number("exposure", exposure, 0.0, 1.0, hi_open=True)
    b_lo, b_hi = _range("blur", blur, lo=0.0)
    if b_hi > 10.0:
        raise ValueError(f"blur must be within [0, 10] px, got {blur!r}")
    g_lo, g_hi = _range("gap_px", (4.0 * rows / 256.0, 12.0 * rows / 256.0) if gap_px is None else gap_px, lo=0.0)
    if g_lo <= 0.0 or g_hi > rows / 4.0:
        raise ValueError(f"gap_px must be a (low, high) pair within (0, rows/4 = {rows / 4:g}], got {gap_px!r}")

    bone = _sample_bone(rng, rows, cols, (g_lo, g_hi))
    texture = _sample_texture(rng, cols)
    blur_sigma, noise_seed = rng.uniform(b_lo, b_hi), int(rng.integers(0, 2**31 - 1))
    upper, lower = _sample_motion(rng, crop_centre((rows, cols)), n_range, max_rotation_deg, max_scale,
                                  max_shift_px, relative_rotation_deg)
    gain = rng.uniform(1.0 - exposure, 1.0 + exposure)
    offset = rng.uniform(-exposure / 2.0, exposure / 2.0)
    acquisition = Acquisition(blur_sigma_px=blur_sigma, noise_sigma=float(noise), noise_seed=noise_seed,
                              gain=gain, offset=offset)
    return PhantomParams(shape=(rows, cols), bone=bone, texture=texture, acquisition=acquisition,
                         upper=upper, lower=lower)


def _sample_bone(rng: np.random.Generator, rows: int, cols: int, gap: tuple[float, float]) -> BoneShape:
    u = rng.uniform
    s = min(rows, cols) / 256.0
    gap_px = u(*gap)
    head_r = u(0.27, 0.32) * cols
    upper_hw = u(0.30, 0.35) * cols
    return BoneShape(gap_px=gap_px, upper_half_width_px=upper_hw, upper_shaft_half_width_px=upper_hw * u(0.70, 0.84),
                     upper_flare_px=u(0.18, 0.32) * rows, upper_concavity_radius_px=head_r * u(1.6, 4.0),
                     lower_head_radius_px=head_r, lower_shaft_half_width_px=head_r * u(0.80, 0.92),
                     corner_radius_px=u(5.0, 12.0) * s, cortex_px=u(3.0, 6.0) * s,
                     upper_tilt_deg=u(-3.0, 3.0), lower_tilt_deg=u(-3.0, 3.0))


def _sample_texture(rng: np.random.Generator, cols: int) -> Texture:
    u = rng.uniform
    return Texture(bone_level=u(0.25, 0.33), cortex_level=u(0.15, 0.28), seed=int(rng.integers(0, 2**31 - 1)),
                   contrast=u(0.04, 0.08), soft_tissue_level=u(0.18, 0.30),
                   soft_tissue_half_width_px=u(0.42, 0.56) * cols, soft_tissue_variation=u(0.0, 0.15),
                   background_level=u(0.02, 0.10))


def _sample_motion(rng: np.random.Generator, centre: tuple[float, float], n_range: tuple[float, float],
                   max_rotation_deg: float, max_scale: float, max_shift_px: float, relative_rotation_deg: float
                   ) -> tuple[Similarity, Similarity]:
    """``(upper, lower)``: the common motion after the relative one (see :func:`sample_params`)."""
    u = rng.uniform
    rot = math.radians(u(-max_rotation_deg, max_rotation_deg))
    log_s = u(-max_scale, max_scale)
    tx = u(-max_shift_px, max_shift_px)
    ty = u(-max_shift_px, max_shift_px)
    n = u(*n_range)
    d = math.radians(u(-relative_rotation_deg, relative_rotation_deg))
    common = Similarity(math.exp(log_s), rot, tx, ty, centre)
    # Ru = rot(+d/2) then shift +h/2; Rl = rot(-d/2) then shift -h/2 (about the centre c):
    # (Rl^-1 o Ru)(c) = c + R(d/2) (0, h)  =>  narrowing = h cos(d/2); pick h = n / cos(d/2).
    h = n / math.cos(d / 2.0)
    rel_u = Similarity(1.0, d / 2.0, 0.0, h / 2.0, centre)
    rel_l = Similarity(1.0, -d / 2.0, 0.0, -h / 2.0, centre)
    return common.compose(rel_u).with_center(centre), common.compose(rel_l).with_center(centre)
