"""The one photometric augmentation of every trainer, TorchIO-style: sample, then apply.

:func:`sample_photometric` is the only place that draws (from a ``torch.Generator`` passed in)
and returns a frozen :class:`PhotometricParams`; :func:`adjust_intensity` and :func:`add_noise`
apply them deterministically (the noise of each sample comes from its own drawn seed), so an
augmented batch can be replayed from its params.

Per sample of a ``(N, C, H, W)`` batch, in this order: an optional intensity window mapped to
[0, 1] (a high low end turns a grey background black), gamma on the image clipped to [0, 1],
contrast about 0.5 and brightness, an optional Gaussian blur, then Gaussian noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["PhotometricRanges", "PhotometricParams", "sample_photometric", "adjust_intensity", "add_noise",
           "apply_photometric"]

#: Half-width in pixels of the blur kernel (sigma up to about 2 px).
BLUR_RADIUS = 4


@dataclass(frozen=True)
class PhotometricRanges:
    """Ranges (uniform) of the photometric draws.

    Attributes:
        gamma_log: maximum absolute log of the gamma exponent.
        contrast: ``(low, high)`` gain about 0.5.
        brightness: maximum absolute offset (images are ~[0, 1]).
        noise_std: ``(low, high)`` SD of the Gaussian noise.
        window_low, window_high: ranges of the window's ends mapped to 0 and 1 (None: no window).
        blur_sigma: ``(low, high)`` SD in pixels of a Gaussian blur (None: no blur).
    """

    gamma_log: float
    contrast: tuple[float, float]
    brightness: float
    noise_std: tuple[float, float]
    window_low: tuple[float, float] | None = None
    window_high: tuple[float, float] | None = None
    blur_sigma: tuple[float, float] | None = None


@dataclass(frozen=True)
class PhotometricParams:
    """Per-sample parameters, each a ``(N,)`` float64 tensor (``noise_seed``: int64); the
    optional ones are None where their transform is off."""

    gamma: torch.Tensor
    contrast: torch.Tensor
    brightness: torch.Tensor
    noise_std: torch.Tensor
    noise_seed: torch.Tensor
    window_low: torch.Tensor | None = None
    window_high: torch.Tensor | None = None
    blur_sigma: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.gamma.shape[0])


def sample_photometric(n: int, generator: torch.Generator, ranges: PhotometricRanges) -> PhotometricParams:
    """Draw ``n`` samples' parameters from ``generator`` (the only randomness), in a fixed order."""
    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)

    r = ranges
    params = dict(gamma=torch.exp(u(-r.gamma_log, r.gamma_log)), contrast=u(*r.contrast),
                  brightness=u(-r.brightness, r.brightness), noise_std=u(*r.noise_std),
                  noise_seed=torch.randint(0, 2**62, (n,), generator=generator, dtype=torch.int64))
    if r.window_low is not None and r.window_high is not None:
        params.update(window_low=u(*r.window_low), window_high=u(*r.window_high))
    if r.blur_sigma is not None:
        params.update(blur_sigma=u(*r.blur_sigma))
    return PhotometricParams(**params)


def adjust_intensity(x: torch.Tensor, p: PhotometricParams) -> torch.Tensor:
    """Window, gamma, contrast, brightness and blur of ``x`` ``(N, C, H, W)`` (deterministic)."""
    def per_sample(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)

    if p.window_low is not None:
        lo, hi = per_sample(p.window_low), per_sample(p.window_high)
        x = (x - lo) / (hi - lo).clamp(min=0.2)
    x = x.clamp(0.0, 1.0) ** per_sample(p.gamma)
    x = (x - 0.5) * per_sample(p.contrast) + 0.5 + per_sample(p.brightness)
    return x if p.blur_sigma is None else _blur(x, p.blur_sigma)


def add_noise(x: torch.Tensor, p: PhotometricParams) -> torch.Tensor:
    """``x`` plus each sample's Gaussian noise (its own seed, its own SD; deterministic)."""
    noise = torch.stack([
        torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float32)
        for seed in p.noise_seed.tolist()]).to(device=x.device, dtype=x.dtype)
    return x + p.noise_std.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1) * noise


def apply_photometric(x: torch.Tensor, p: PhotometricParams) -> torch.Tensor:
    """:func:`adjust_intensity`, then :func:`add_noise`."""
    return add_noise(adjust_intensity(x, p), p)


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each sample blurred by its own separable Gaussian (``sigma`` px), edges replicated."""
    n, c = x.shape[:2]
    r = BLUR_RADIUS
    ax = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-ax[None] ** 2 / (2 * sigma[:, None].clamp(min=1e-3) ** 2))
    k = (k / k.sum(1, keepdim=True)).to(device=x.device, dtype=x.dtype).repeat_interleave(c, 0)
    xs = x.reshape(1, n * c, *x.shape[2:])  # one group per channel of each sample
    xs = F.conv2d(F.pad(xs, (r, r, 0, 0), mode="replicate"), k[:, None, None, :], groups=n * c)
    xs = F.conv2d(F.pad(xs, (0, 0, r, r), mode="replicate"), k[:, None, :, None], groups=n * c)
    return xs.reshape(x.shape)

