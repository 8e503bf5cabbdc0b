"""Augmentation of the segmenter's (image, bone masks) batches, TorchIO-style: sample
parameters, then apply.

:func:`sample_augmentation` is the only place that draws random numbers (from a
``torch.Generator`` passed in); it returns a frozen :class:`AugmentParams`.
:func:`apply_augmentation` is deterministic: the same params give the same output, so any
augmented batch can be replayed.

Geometric transforms (rotation, isotropic scale, shift, left/right flip) are one affine map
per sample in normalised coordinates (``align_corners=False``), applied with the same map to
the image (at the network's input size) and to the masks (at the loss's size), both with
reflection padding. A left/right flip keeps the upper bone upper. Intensity transforms
act on the image only: gamma, contrast and brightness, then Gaussian noise
(:mod:`jsnq.training.photometric`, the sampler every trainer shares).

Three optional transforms (off by default, and then drawing nothing, so a config without them
replays exactly) make crops like those cut from other radiographs, such as the PIP/DIP crops
that :mod:`jsnq.hand.crops` cuts from whole hands (docs/hand.md):

* **aspect**: a different magnification across and along the finger (``exp(±aspect_log/2)``),
  so heads are flatter or rounder than a metacarpal head;
* **gap squeeze**: the joint space narrowed by a fraction of its width, as in joint space
  narrowing itself: the rows of the gap band are compressed and the bones on either side move
  towards each other, image and masks alike (the gap is found from the masks per sample);
* **degrade**: the image (not the masks) resampled down by a factor and back up, with its grey
  levels quantised in between, as a crop upsampled from a coarser 8-bit radiograph is.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .photometric import PhotometricParams, PhotometricRanges, add_noise, adjust_intensity, sample_photometric

__all__ = ["AugmentRanges", "HAND_CROPS", "AugmentParams", "sample_augmentation", "apply_augmentation", "affine_theta", "gap_rows",
           "squeeze_map"]


@dataclass(frozen=True)
class AugmentRanges:
    """Ranges the parameters are drawn from (uniform unless stated).

    Attributes:
        rotation_deg: maximum absolute rotation.
        scale: ``(low, high)`` scale factor, log-uniform.
        shift: maximum absolute shift as a fraction of the crop side.
        flip_probability: probability of a left/right flip.
        gamma_log: maximum absolute log of the gamma exponent.
        contrast: ``(low, high)`` intensity gain.
        brightness: maximum absolute offset (images are ~[0, 1]).
        noise_std: ``(low, high)`` standard deviation of the Gaussian noise.
        aspect_log: maximum absolute log of the across/along magnification ratio (0: off).
        gap_squeeze: ``(low, high)`` fraction of the joint space's width removed (0, 0: off).
        gap_squeeze_probability: share of the samples whose gap is squeezed.
        degrade: ``(low, high)`` down-sampling factor at the network's input size, log-uniform
            ((1, 1): off).
        degrade_probability: share of the samples degraded.
        quantise_levels: ``(low, high)`` grey levels over the image's range for the degraded
            samples, log-uniform ((0, 0): no quantisation).
    """

    rotation_deg: float = 15.0
    scale: tuple[float, float] = (0.87, 1.15)
    shift: float = 0.06
    flip_probability: float = 0.5
    gamma_log: float = 0.35
    contrast: tuple[float, float] = (0.75, 1.3)
    brightness: float = 0.1
    noise_std: tuple[float, float] = (0.0, 0.04)
    aspect_log: float = 0.0
    gap_squeeze: tuple[float, float] = (0.0, 0.0)
    gap_squeeze_probability: float = 0.0
    degrade: tuple[float, float] = (1.0, 1.0)
    degrade_probability: float = 0.0
    quantise_levels: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        for name in ("rotation_deg", "shift", "gamma_log", "brightness", "aspect_log"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("scale", "contrast", "noise_std"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi or (name != "noise_std" and lo <= 0):
                raise ValueError(f"{name} must be a (low, high) pair with 0 < low <= high, got {getattr(self, name)!r}")
        for name in ("flip_probability", "gap_squeeze_probability", "degrade_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        lo, hi = self.gap_squeeze
        if not 0.0 <= lo <= hi < 1.0:
            raise ValueError(f"gap_squeeze must be a (low, high) pair with 0 <= low <= high < 1, got {self.gap_squeeze!r}")
        lo, hi = self.degrade
        if not 1.0 <= lo <= hi:
            raise ValueError(f"degrade must be a (low, high) pair with 1 <= low <= high, got {self.degrade!r}")
        lo, hi = self.quantise_levels
        if not (lo == hi == 0.0 or 2.0 <= lo <= hi):
            raise ValueError(f"quantise_levels must be (0, 0) or a pair with 2 <= low <= high, got {self.quantise_levels!r}")

    @property
    def extended(self) -> bool:
        """Whether any of the optional transforms (aspect, gap squeeze, degrade) is on."""
        return (self.aspect_log > 0 or (self.gap_squeeze_probability > 0 and self.gap_squeeze[1] > 0)
                or (self.degrade_probability > 0 and self.degrade[1] > 1.0))

    @property
    def photometric(self) -> PhotometricRanges:
        """The photometric ranges (gamma, contrast, brightness, noise)."""
        return PhotometricRanges(gamma_log=self.gamma_log, contrast=self.contrast, brightness=self.brightness,
                                 noise_std=self.noise_std)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentRanges":
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


#: The ranges of ``jsnq train segment --hand-crops``: the defaults plus the three optional
#: transforms, sized to the hand crops (docs/hand.md#fine-tuning-the-segmenter-towards-hand-crops-tried-not-shipped).
HAND_CROPS = AugmentRanges(aspect_log=0.25, gap_squeeze=(0.0, 0.75), gap_squeeze_probability=0.5,
                           degrade=(1.0, 2.5), degrade_probability=0.5, quantise_levels=(24.0, 128.0))


@dataclass(frozen=True)
class AugmentParams:
    """Per-sample parameters, each a ``(N,)`` tensor, and the photometric ones."""

    angle_rad: torch.Tensor
    scale: torch.Tensor
    shift_x: torch.Tensor
    shift_y: torch.Tensor
    flip: torch.Tensor
    photometric: PhotometricParams
    aspect: torch.Tensor | None = None
    gap_squeeze: torch.Tensor | None = None
    degrade: torch.Tensor | None = None
    levels: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.angle_rad.shape[0])


def sample_augmentation(n: int, generator: torch.Generator, ranges: AugmentRanges | None = None) -> AugmentParams:
    """Draw ``n`` samples' parameters from ``generator`` (the only randomness)."""
    r = ranges or AugmentRanges()

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)

    def log_u(lo: float, hi: float) -> torch.Tensor:
        return torch.exp(u(math.log(lo), math.log(hi)))

    def sometimes(p: float, values: torch.Tensor, off: float) -> torch.Tensor:
        return torch.where(torch.rand(n, generator=generator, dtype=torch.float64) < p, values, off)

    base = dict(
        angle_rad=u(-1.0, 1.0) * math.radians(r.rotation_deg),
        scale=torch.exp(u(math.log(r.scale[0]), math.log(r.scale[1]))),
        shift_x=u(-r.shift, r.shift),
        shift_y=u(-r.shift, r.shift),
        flip=torch.rand(n, generator=generator, dtype=torch.float64) < r.flip_probability,
        photometric=sample_photometric(n, generator, r.photometric),
    )
    if not r.extended:  # the optional transforms draw nothing when off
        return AugmentParams(**base)
    # drawn after the others, so the draws above are those of a config without them
    aspect = torch.exp(u(-r.aspect_log, r.aspect_log))
    squeeze = sometimes(r.gap_squeeze_probability, u(*r.gap_squeeze), 0.0)
    degrade = sometimes(r.degrade_probability, log_u(*r.degrade), 1.0)
    levels = log_u(*r.quantise_levels) if r.quantise_levels[1] > 0 else torch.zeros(n, dtype=torch.float64)
    levels = torch.where(degrade > 1.0, levels, 0.0)
    return AugmentParams(**base, aspect=aspect, gap_squeeze=squeeze, degrade=degrade, levels=levels)


def affine_theta(params: AugmentParams) -> torch.Tensor:
    """``(N, 2, 3)`` maps from output to input normalised coordinates (for ``affine_grid``).

    The output shows the input rotated by ``angle_rad`` (clockwise as displayed), magnified
    by ``scale`` about the centre, shifted by ``shift_x/y`` (fractions of the side), and
    mirrored left/right where ``flip``.
    """
    a, s = params.angle_rad, params.scale
    fx = torch.where(params.flip, -1.0, 1.0).to(torch.float64)
    c, si = torch.cos(a), torch.sin(a)
    # input = R(-a) @ (output * [fx, 1] - 2 * shift) / (s * [ax, 1 / ax])
    tx, ty = 2.0 * params.shift_x, 2.0 * params.shift_y
    ax = params.aspect if params.aspect is not None else torch.ones_like(s)
    sx, sy = s * ax, s / ax
    theta = torch.zeros(len(params), 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = c * fx / sx
    theta[:, 0, 1] = si / sy
    theta[:, 1, 0] = -si * fx / sx
    theta[:, 1, 1] = c / sy
    theta[:, 0, 2] = -(c * tx / sx + si * ty / sy)
    theta[:, 1, 2] = si * tx / sx - c * ty / sy
    return theta


def gap_rows(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's joint space from its masks ``(N, 2, T, T)``, in normalised rows
    (``align_corners=False``): the median over the central half of the columns of the gap's
    centre, and of its width. A sample whose masks leave no gap there gets width 0."""
    t = masks.shape[-2]
    rows = torch.arange(t, dtype=torch.float64, device=masks.device).view(1, t, 1)
    cols = slice(masks.shape[-1] // 4, masks.shape[-1] - masks.shape[-1] // 4)
    up, lo = masks[:, 0, :, cols] >= 0.5, masks[:, 1, :, cols] >= 0.5
    bottom = torch.where(up, rows, -1.0).amax(1)                    # last upper-bone row per column
    top = torch.where(lo, rows, float(t)).amin(1)                   # first lower-bone row per column
    ok = (bottom >= 0) & (top < t) & (top > bottom)
    centre = torch.where(ok, 0.5 * (bottom + top), float("nan")).nanmedian(1).values
    width = torch.where(ok, top - bottom - 1.0, float("nan")).nanmedian(1).values
    width = torch.nan_to_num(width, nan=0.0)
    centre = torch.nan_to_num(centre, nan=0.5 * (t - 1))
    return (2.0 * centre + 1.0) / t - 1.0, 2.0 * width / t


def squeeze_map(y: torch.Tensor, centre: torch.Tensor, width: torch.Tensor, fraction: torch.Tensor) -> torch.Tensor:
    """Where an output row ``y`` samples its input once the gap (``centre``, ``width``,
    normalised) has lost ``fraction`` of its width: the gap's rows are compressed by
    ``1 - fraction``, every row beyond it moves towards it by ``fraction * width / 2``, so the
    bones keep their shape and come together by ``fraction * width``. All ``(N, 1, 1)``."""
    keep = (1.0 - fraction).clamp(min=1e-3)
    d = y - centre
    inside = d.abs() <= 0.5 * width * keep
    return torch.where(inside, centre + d / keep, y + torch.sign(d) * 0.5 * fraction * width)


def _warp(x: torch.Tensor, theta: torch.Tensor, squeeze: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    if squeeze is not None:  # the affine's input is the squeezed crop: map it back to the original
        centre, width, fraction = (v.to(x.dtype).view(-1, 1, 1) for v in squeeze)
        grid = torch.stack([grid[..., 0], squeeze_map(grid[..., 1], centre, width, fraction)], -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _degrade(img: torch.Tensor, factor: torch.Tensor, levels: torch.Tensor | None) -> torch.Tensor:
    """Each sample with ``factor > 1`` resampled down (area) by it and back up (bilinear), its
    grey levels quantised at the low resolution to ``levels`` steps over its range."""
    out = img.clone()
    size = img.shape[-2:]
    for i in torch.nonzero(factor > 1.0).flatten().tolist():
        f = float(factor[i])
        small = F.interpolate(img[i:i + 1], size=(max(4, round(size[0] / f)), max(4, round(size[1] / f))),
                              mode="area")
        if levels is not None and float(levels[i]) >= 2:
            lo, hi = small.amin(), small.amax()
            step = (hi - lo).clamp(min=1e-6) / (float(levels[i]) - 1.0)
            small = lo + torch.round((small - lo) / step) * step
        out[i:i + 1] = F.interpolate(small, size=size, mode="bilinear", align_corners=False)
    return out


def apply_augmentation(images: torch.Tensor, masks: torch.Tensor, params: AugmentParams
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``params`` to a batch (deterministic).

    Args:
        images: ``(N, 1, S, S)`` float, ~[0, 1].
        masks: ``(N, 2, T, T)`` float in [0, 1] (any ``T``).

    Returns:
        ``(images, masks)`` of the same shapes, dtypes and device; masks stay in [0, 1]
        (soft at the edges after interpolation).
    """
    if len(params) != images.shape[0] or masks.shape[0] != images.shape[0]:
        raise ValueError(f"batch sizes differ: params {len(params)}, images {images.shape[0]}, masks {masks.shape[0]}")
    theta = affine_theta(params).to(images.device)
    squeeze = None
    if params.gap_squeeze is not None and bool((params.gap_squeeze > 0).any()):
        centre, width = gap_rows(masks)
        squeeze = (centre, width, params.gap_squeeze.to(images.device))
    img = _warp(images, theta, squeeze)
    msk = _warp(masks, theta, squeeze).clamp_(0.0, 1.0)
    img = adjust_intensity(img, params.photometric)
    if params.degrade is not None:
        img = _degrade(img, params.degrade, params.levels)
    return add_noise(img, params.photometric), msk
