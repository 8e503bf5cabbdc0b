"""Augmentation of (image, bone masks) batches, TorchIO-style: sample parameters, then apply.

:func:`sample_augmentation` is the only place that draws random numbers (from a
``torch.Generator`` passed in); it returns a frozen :class:`AugmentParams`.
:func:`apply_augmentation` is deterministic: the same params give the same output, so any
augmented batch can be replayed.

Geometric transforms (rotation, isotropic scale, shift, left/right flip) are one affine map
per sample in normalised coordinates (``align_corners=False``), applied with the same map to
the image (at the network's input size) and to the masks (at the loss's size), both with
reflection padding. A left/right flip keeps the upper bone upper. Intensity transforms
act on the image only: gamma, contrast and brightness, then Gaussian noise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

__all__ = ["AugmentRanges", "AugmentParams", "sample_augmentation", "apply_augmentation", "affine_theta"]


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
    """

    rotation_deg: float = 15.0
    scale: tuple[float, float] = (0.87, 1.15)
    shift: float = 0.06
    flip_probability: float = 0.5
    gamma_log: float = 0.35
    contrast: tuple[float, float] = (0.75, 1.3)
    brightness: float = 0.1
    noise_std: tuple[float, float] = (0.0, 0.04)

    def __post_init__(self) -> None:
        for name in ("rotation_deg", "shift", "gamma_log", "brightness"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("scale", "contrast", "noise_std"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi or (name != "noise_std" and lo <= 0):
                raise ValueError(f"{name} must be a (low, high) pair with 0 < low <= high, got {getattr(self, name)!r}")
        if not 0.0 <= self.flip_probability <= 1.0:
            raise ValueError(f"flip_probability must be in [0, 1], got {self.flip_probability!r}")

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentRanges":
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


@dataclass(frozen=True)
class AugmentParams:
    """Per-sample parameters, each a ``(N,)`` tensor (``noise_seed``: int64)."""

    angle_rad: torch.Tensor
    scale: torch.Tensor
    shift_x: torch.Tensor
    shift_y: torch.Tensor
    flip: torch.Tensor
    gamma: torch.Tensor
    contrast: torch.Tensor
    brightness: torch.Tensor
    noise_std: torch.Tensor
    noise_seed: torch.Tensor

    def __len__(self) -> int:
        return int(self.angle_rad.shape[0])


def sample_augmentation(n: int, generator: torch.Generator, ranges: AugmentRanges | None = None) -> AugmentParams:
    """Draw ``n`` samples' parameters from ``generator`` (the only randomness)."""
    r = ranges or AugmentRanges()

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)

    return AugmentParams(
        angle_rad=u(-1.0, 1.0) * math.radians(r.rotation_deg),
        scale=torch.exp(u(math.log(r.scale[0]), math.log(r.scale[1]))),
        shift_x=u(-r.shift, r.shift),
        shift_y=u(-r.shift, r.shift),
        flip=torch.rand(n, generator=generator, dtype=torch.float64) < r.flip_probability,
        gamma=torch.exp(u(-r.gamma_log, r.gamma_log)),
        contrast=u(*r.contrast),
        brightness=u(-r.brightness, r.brightness),
        noise_std=u(*r.noise_std),
        noise_seed=torch.randint(0, 2**62, (n,), generator=generator, dtype=torch.int64),
    )


def affine_theta(params: AugmentParams) -> torch.Tensor:
    """``(N, 2, 3)`` maps from output to input normalised coordinates (for ``affine_grid``).

    The output shows the input rotated by ``angle_rad`` (clockwise as displayed), magnified
    by ``scale`` about the centre, shifted by ``shift_x/y`` (fractions of the side), and
    mirrored left/right where ``flip``.
    """
    a, s = params.angle_rad, params.scale
    fx = torch.where(params.flip, -1.0, 1.0).to(torch.float64)
    c, si = torch.cos(a), torch.sin(a)
    # input = R(-a) @ (output * [fx, 1] - 2 * shift) / s
    tx, ty = 2.0 * params.shift_x, 2.0 * params.shift_y
    theta = torch.zeros(len(params), 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = c * fx / s
    theta[:, 0, 1] = si / s
    theta[:, 1, 0] = -si * fx / s
    theta[:, 1, 1] = c / s
    theta[:, 0, 2] = -(c * tx + si * ty) / s
    theta[:, 1, 2] = (si * tx - c * ty) / s
    return theta


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


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
    img = _warp(images, theta)
    msk = _warp(masks, theta).clamp_(0.0, 1.0)
    view = (-1, 1, 1, 1)
    p = {k: getattr(params, k).to(device=images.device, dtype=images.dtype).view(view)
         for k in ("gamma", "contrast", "brightness", "noise_std")}
    img = img.clamp(0.0, 1.0) ** p["gamma"]
    img = (img - 0.5) * p["contrast"] + 0.5 + p["brightness"]
    noise = torch.stack([
        torch.randn(images.shape[1:], generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float32)
        for seed in params.noise_seed.tolist()]).to(device=images.device, dtype=images.dtype)
    return img + p["noise_std"] * noise, msk
