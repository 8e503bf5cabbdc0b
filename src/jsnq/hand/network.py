"""The finger-joint locator's networks: a coarse whole-hand heatmap regressor and a patch refiner.

Two small U-Nets, both heatmap regressors (one channel per landmark, a Gaussian of peak 1 at
the landmark, linear output; a landmark outside the view has an all-zero target):

* **coarse**: the whole radiograph, intensities normalised, resized so that its long side is
  ``coarse_size`` and centred on a ``coarse_size`` square (zero padding); a stride-2 stem, so
  its heatmaps are ``coarse_size / 2`` a side. Channels: :data:`COARSE_LANDMARKS` (the 14
  joints of :data:`~jsnq.hand.types.JOINT_NAMES` and the 5 fingertips, which give the distal
  phalanges' axes).
* **fine**: a ``fine_size`` square patch around each coarse estimate, cut from the image
  resized so that its long side is ``fine_frame`` (4x the coarse resolution by default);
  heatmaps at ``fine_size / fine_stride``, one channel per joint; only the channel of the joint the
  patch was cut for is read.

Geometry conventions: arrays ``[row, col]``; points ``(x, y) = (col, row)`` in pixel-centre
coordinates (pixel ``i`` covers ``[i - 0.5, i + 0.5]``), so a resize by ``f`` maps
``x -> (x + 0.5) f - 0.5``. Views are cut with one pixel affine ``src = A @ [x_out, y_out, 1]``
(:func:`warp`), the same function in training and inference.

Device and dtype come from the model's parameters; shipped weights are read with
``torch.load(weights_only=True)`` (:func:`jsnq.networks.load_network`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._torch import fuse_batchnorm
from ..networks import load_network
from .types import JOINT_NAMES

__all__ = [
    "COARSE_LANDMARKS", "FINE_LANDMARKS", "CHECKPOINT_FORMAT", "LocatorConfig", "HeatmapUNet",
    "JointLocator", "build_locator", "load_locator", "fuse_for_inference", "warp", "fit_affine",
    "gaussian_heatmaps", "heatmap_peaks", "apply_affine", "invert_affine",
]

#: Channels of the coarse network: the joints, then the fingertips.
COARSE_LANDMARKS = (*JOINT_NAMES, "TIP1", "TIP2", "TIP3", "TIP4", "TIP5")
#: Channels of the fine network.
FINE_LANDMARKS = JOINT_NAMES
#: Version of the checkpoint layout.
CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class LocatorConfig:
    """Everything needed to rebuild both networks and feed them (stored in every checkpoint).

    Attributes:
        coarse_landmarks, fine_landmarks: channel names of the two networks.
        coarse_size: side in pixels of the coarse network's square input.
        coarse_stride, fine_stride: input pixels per heatmap pixel (the networks' strided stems).
        coarse_features: channels per level of the coarse U-Net (after the stem).
        fine_frame: long side in pixels of the resized radiograph the patches are cut from.
        fine_size: side of the fine network's square patch.
        fine_features: channels per level of the fine U-Net.
        coarse_sigma, fine_sigma: standard deviation of the target Gaussians, in heatmap pixels.
        percentiles: intensity percentiles mapped to 0 and 1.
    """

    coarse_landmarks: tuple[str, ...] = COARSE_LANDMARKS
    fine_landmarks: tuple[str, ...] = FINE_LANDMARKS
    coarse_size: int = 256
    coarse_stride: int = 4
    coarse_features: tuple[int, ...] = (16, 32, 64, 96, 128)
    fine_frame: int = 1024
    fine_size: int = 64
    fine_stride: int = 2
    fine_features: tuple[int, ...] = (16, 32, 64, 96)
    coarse_sigma: float = 1.5
    fine_sigma: float = 1.5
    percentiles: tuple[float, float] = (0.5, 99.5)

    def __post_init__(self) -> None:
        for name in ("coarse_landmarks", "fine_landmarks", "coarse_features", "fine_features", "percentiles"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name, feats, size, stem in (("coarse", self.coarse_features, self.coarse_size, self.coarse_stride),
                                        ("fine", self.fine_features, self.fine_size, self.fine_stride)):
            if stem not in (1, 2, 4):
                raise ValueError(f"{name}_stride must be 1, 2 or 4, got {stem}")
            if len(feats) < 2 or min(feats) < 1:
                raise ValueError(f"{name}_features must list >= 2 positive channel counts, got {feats!r}")
            step = stem * 2 ** (len(feats) - 1)
            if size < step or size % step:
                raise ValueError(f"{name}_size must be a positive multiple of {step}, got {size}")
        unknown = [n for n in self.fine_landmarks if n not in self.coarse_landmarks]
        if unknown:
            raise ValueError(f"fine landmarks {unknown} are not coarse landmarks")
        if self.fine_frame < self.coarse_size:
            raise ValueError(f"fine_frame ({self.fine_frame}) must be >= coarse_size ({self.coarse_size})")
        lo, hi = self.percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles!r}")

    @property
    def coarse_out(self) -> int:
        """Side of the coarse heatmaps."""
        return self.coarse_size // self.coarse_stride

    @property
    def fine_out(self) -> int:
        """Side of the fine heatmaps."""
        return self.fine_size // self.fine_stride

    def to_dict(self) -> dict[str, Any]:
        return {"architecture": "locator-unet2", "coarse_landmarks": list(self.coarse_landmarks),
                "fine_landmarks": list(self.fine_landmarks), "coarse_size": self.coarse_size,
                "coarse_stride": self.coarse_stride, "fine_stride": self.fine_stride,
                "coarse_features": list(self.coarse_features), "fine_frame": self.fine_frame,
                "fine_size": self.fine_size, "fine_features": list(self.fine_features),
                "coarse_sigma": self.coarse_sigma, "fine_sigma": self.fine_sigma,
                "percentiles": list(self.percentiles)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LocatorConfig":
        if d.get("architecture") != "locator-unet2":
            raise ValueError(f"unknown architecture {d.get('architecture')!r} (expected 'locator-unet2')")
        return cls(**{k: v for k, v in d.items() if k != "architecture"})


class _Block(nn.Sequential):
    """``convs`` 3x3 convolutions, each followed by batch norm and ReLU."""

    def __init__(self, cin: int, cout: int, *, convs: int = 2) -> None:
        layers: list[nn.Module] = []
        for k in range(convs):
            layers += [nn.Conv2d(cin if k == 0 else cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU(inplace=True)]
        super().__init__(*layers)


class HeatmapUNet(nn.Module):
    """A plain U-Net heatmap regressor (max-pool down, bilinear up, concatenated skips).

    Input ``(N, 1, H, W)`` with ``H``, ``W`` multiples of ``stem_stride * 2**(L-1)``; output
    ``(N, out_channels, H / stem_stride, W / stem_stride)`` heatmaps (linear), same device
    and dtype. A stem of one (``stem_stride = 2``) or two (4) strided 3x3 convolutions shrinks
    the input first; encoder levels have two convolutions, decoder levels one.
    """

    def __init__(self, features: Sequence[int], out_channels: int, *, stem_stride: int = 1) -> None:
        super().__init__()
        f = [int(c) for c in features]
        self.stem_stride = int(stem_stride)
        if self.stem_stride not in (1, 2, 4):
            raise ValueError(f"stem_stride must be 1, 2 or 4, got {stem_stride}")
        layers: list[nn.Module] = []
        cin = 1
        for k in range({1: 0, 2: 1, 4: 2}[self.stem_stride]):
            cout = f[0] if k == {2: 0, 4: 1}[self.stem_stride] else max(4, f[0] // 2)
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU(inplace=True)]
            cin = cout
        self.stem = nn.Sequential(*layers) if layers else nn.Identity()
        self.encoder = nn.ModuleList(_Block(cin if i == 0 else f[i - 1], f[i]) for i in range(len(f)))
        self.decoder = nn.ModuleList(_Block(f[i] + f[i + 1], f[i], convs=1) for i in range(len(f) - 1))
        self.head = nn.Conv2d(f[0], out_channels, 1)
        nn.init.zeros_(self.head.bias)
        nn.init.normal_(self.head.weight, std=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        skips = []
        for i, block in enumerate(self.encoder):
            h = block(h if i == 0 else F.max_pool2d(h, 2))
            skips.append(h)
        for i in range(len(self.decoder) - 1, -1, -1):
            h = F.interpolate(h, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
            h = self.decoder[i](torch.cat([skips[i], h], 1))
        return self.head(h)


class JointLocator(nn.Module):
    """The two networks together (one state_dict): ``coarse`` and ``fine``, see the module doc."""

    def __init__(self, config: LocatorConfig) -> None:
        super().__init__()
        self.coarse = HeatmapUNet(config.coarse_features, len(config.coarse_landmarks), stem_stride=config.coarse_stride)
        self.fine = HeatmapUNet(config.fine_features, len(config.fine_landmarks), stem_stride=config.fine_stride)
        self.config = config


def build_locator(config: LocatorConfig) -> JointLocator:
    """A freshly initialised locator (CPU, float32, train mode; initialised from torch's global
    generator: seed it with :func:`torch.random.fork_rng` around the call)."""
    return JointLocator(config)


def load_locator(path: Any, *, map_location: str | torch.device = "cpu"
                 ) -> tuple[JointLocator, LocatorConfig, dict[str, Any]]:
    """Load a locator checkpoint (training or shipped) with ``torch.load(weights_only=True)``.

    Returns:
        ``(model in eval mode, its LocatorConfig, the whole checkpoint dict)``.

    Raises:
        WeightsUnavailableError: missing or unreadable file, unknown layout, weights that do
            not fit the network.
    """
    model, ckpt = load_network(path, kind="locate", map_location=map_location)
    return model, model.config, ckpt


def fuse_for_inference(model: JointLocator) -> JointLocator:
    """A copy for inference with batch norms folded (:func:`jsnq._torch.fuse_batchnorm`)."""
    fused = fuse_batchnorm(model)
    fused.config = model.config
    return fused


# -- geometry of views ----------------------------------------------------------------------------


def fit_affine(scale: torch.Tensor, angle_rad: torch.Tensor, centre_src: torch.Tensor, out_size: int,
               *, flip: torch.Tensor | None = None) -> torch.Tensor:
    """Pixel affines ``(N, 2, 3)`` from output to source: ``src = A @ [x_out, y_out, 1]``.

    The output view (``out_size`` square) is centred on ``centre_src`` ``(N, 2)`` (x, y in
    source pixels), shows the source magnified by ``scale`` ``(N,)`` (output px per source
    px), rotated by ``angle_rad`` ``(N,)`` (clockwise as displayed), mirrored left/right
    where ``flip`` ``(N,)`` bool.
    """
    n = scale.shape[0]
    dt = torch.float64
    s, a = scale.to(dt), angle_rad.to(dt)
    fx = torch.ones(n, dtype=dt) if flip is None else torch.where(flip, -1.0, 1.0).to(dt)
    c, si = torch.cos(a), torch.sin(a)
    # src - centre = R(-a) @ diag(fx, 1) @ (out - oc) / s ; R(-a) = [[c, si], [-si, c]]
    A = torch.zeros(n, 2, 3, dtype=dt)
    A[:, 0, 0] = c * fx / s
    A[:, 0, 1] = si / s
    A[:, 1, 0] = -si * fx / s
    A[:, 1, 1] = c / s
    oc = (out_size - 1) / 2.0
    A[:, :, 2] = centre_src.to(dt) - (A[:, :, 0] + A[:, :, 1]) * oc
    return A


def invert_affine(A: torch.Tensor) -> torch.Tensor:
    """Inverse ``(N, 2, 3)`` of pixel affines ``(N, 2, 3)``."""
    M = A[:, :, :2]
    Mi = torch.linalg.inv(M)
    return torch.cat([Mi, -(Mi @ A[:, :, 2:])], 2)


def apply_affine(A: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``points`` ``(N, K, 2)`` mapped by ``A`` ``(N, 2, 3)``."""
    return points @ A[:, :, :2].transpose(1, 2).to(points.dtype) + A[:, None, :, 2].to(points.dtype)


def warp(images: torch.Tensor, A: torch.Tensor, out_size: int, *, padding_mode: str = "zeros") -> torch.Tensor:
    """Views ``(N, C, out_size, out_size)`` of ``images`` ``(N, C, H, W)`` (or one image
    ``(1, C, H, W)`` for all ``N`` affines), bilinear: output pixel ``(x, y)`` shows the source
    at ``A @ [x, y, 1]`` (pixel-centre coordinates)."""
    n = A.shape[0]
    h, w = images.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(out_size, dtype=torch.float64),
                            torch.arange(out_size, dtype=torch.float64), indexing="ij")
    pts = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)[None].expand(n, -1, -1)
    src = apply_affine(A.to(torch.float64), pts)
    grid = torch.stack([(2 * src[..., 0] + 1) / w - 1, (2 * src[..., 1] + 1) / h - 1], -1)
    grid = grid.view(n, out_size, out_size, 2).to(device=images.device, dtype=images.dtype)
    if images.shape[0] == 1 and n > 1:
        images = images.expand(n, -1, -1, -1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


# -- heatmaps ---------------------------------------------------------------------------------


def gaussian_heatmaps(points: torch.Tensor, valid: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Targets ``(N, K, size, size)``: a Gaussian of peak 1 and SD ``sigma`` px at each valid
    point ``(N, K, 2)`` (x, y in heatmap pixels); zero where ``valid`` ``(N, K)`` is False or
    the point lies outside the map."""
    ax = torch.arange(size, dtype=torch.float32)
    px, py = points[..., 0].float(), points[..., 1].float()
    gx = torch.exp(-((ax[None, None] - px[..., None]) ** 2) / (2 * sigma**2))
    gy = torch.exp(-((ax[None, None] - py[..., None]) ** 2) / (2 * sigma**2))
    inside = valid & (px >= -0.5) & (px <= size - 0.5) & (py >= -0.5) & (py <= size - 0.5)
    return gy[..., :, None] * gx[..., None, :] * inside[..., None, None].float()


def heatmap_peaks(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-pixel peak of every channel.

    The maximum pixel, refined by fitting a Gaussian (a parabola to the logarithm) through it
    and its two neighbours along each axis (a parabola to the values where they are not all
    positive); the step is clamped to half a pixel.

    Args:
        heatmaps: ``(N, K, H, W)``.

    Returns:
        ``(points (N, K, 2) as (x, y) heatmap pixels, peak values (N, K))``, float64.
    """
    n, k, h, w = heatmaps.shape
    hm = heatmaps.detach().double()
    flat = hm.reshape(n, k, -1)
    val, idx = flat.max(-1)
    iy, ix = idx // w, idx % w

    def at(dy: int, dx: int) -> torch.Tensor:
        yy, xx = (iy + dy).clamp(0, h - 1), (ix + dx).clamp(0, w - 1)
        return flat.gather(-1, (yy * w + xx)[..., None])[..., 0]

    def step(lo: torch.Tensor, c: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        pos = (lo > 1e-6) & (c > 1e-6) & (hi > 1e-6)
        llo, lc, lhi = (torch.log(t.clamp(min=1e-6)) for t in (lo, c, hi))
        a = torch.where(pos, llo, lo), torch.where(pos, lc, c), torch.where(pos, lhi, hi)
        den = a[0] - 2 * a[1] + a[2]
        d = torch.where(den < -1e-12, 0.5 * (a[0] - a[2]) / den.clamp(max=-1e-12), torch.zeros_like(den))
        return d.clamp(-0.5, 0.5)

    dx = step(at(0, -1), val, at(0, 1))
    dy = step(at(-1, 0), val, at(1, 0))
    dx = torch.where((ix > 0) & (ix < w - 1), dx, torch.zeros_like(dx))
    dy = torch.where((iy > 0) & (iy < h - 1), dy, torch.zeros_like(dy))
    return torch.stack([ix.double() + dx, iy.double() + dy], -1), val

