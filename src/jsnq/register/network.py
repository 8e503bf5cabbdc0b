"""The paper's registration network: one forward pass gives both bones' similarities.

Inputs (4 channels, the crop resized to ``input_size`` with its aspect ratio kept and padded):
the follow-up, the baseline, the baseline's upper-side label and its lower-side label. A
ResNet-like encoder (strided residual blocks) ends in a 4 x 4 feature map that is flattened
(the shifts need to know *where* things are) into a small MLP head regressing 2 x 4 raw
numbers. They are mapped to bounded parameters per bone::

    log_scale = B_s tanh(r0 / (l B_s)),  angle = B_a tanh(r1 / (l B_a)),  t = B_t tanh(u r / B_t)

(``l`` = ``lever_px``: every raw unit moves the bone by about a pixel)

so the head's last layer, initialised to zero, gives the identity for both bones.

The network's transforms follow :mod:`jsnq.geometry`: a similarity maps baseline pixel
coordinates to follow-up pixel coordinates about the crop centre. In the network's own
pixels (``q = c_net + f (p - c)`` with ``f = input_size / max(H, W)``) scale and angle are
the same and shifts are ``f`` times smaller.

**Cascade.** ``passes > 1`` applies the same network again to the follow-up warped into the
baseline frame bone by bone (each side through its own estimate) and right-composes the
residual it finds: ``T <- T o dT``. The second pass sees a nearly aligned pair, where a small
network is most precise.

Everything here is pure tensor maths; loading shipped weights goes through
:func:`jsnq.networks.load_network` (``weights_only=True``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..networks import SHIPPED, inference_threads, load_network
from ..geometry import Similarity, crop_centre
from ..intensity import normalise

__all__ = [
    "RegNetConfig", "RegistrationNet", "build_regnet", "load_regnet", "REGNET_WEIGHTS_FILE",
    "params_to_matrix", "matrix_to_params", "compose_params", "warp", "side_weights", "predict_similarities",
    "net_geometry", "prepare_inputs", "predict_similarities_batch", "cascade", "composite",
]

REGNET_WEIGHTS_FILE = SHIPPED["register"]
CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class RegNetConfig:
    """Everything needed to rebuild and feed the network (stored in every checkpoint).

    Attributes:
        widths: channels of the stem and of each strided residual stage; the input is halved
            ``len(widths)`` times, so ``input_size / 2**len(widths)`` is the final map's side.
        hidden: width of the MLP head.
        input_size: side of the square network input, px.
        max_log_scale, max_angle_deg, max_shift: bounds of the per-bone parameters (the shift
            in network pixels).
        shift_unit: network pixels per raw shift unit.
        lever_px: a raw unit of log-scale or angle is ``1 / lever_px``, i.e. about one pixel of
            displacement at ``lever_px`` from the centre, like a raw unit of shift. Without this
            balance the scale and angle outputs, whose raw units moved the bone surfaces by ~50
            px, swamped the few-pixel shifts the narrowing lives in, and the network never
            learned the relative shift of the bones.
        passes: forward passes of the cascade in training (one per network, normally).
        inference_passes: forward passes at inference; 0 = ``passes``. Later passes reuse
            the last (fine) network: each sees a better-aligned pair, and the shipped
            network's narrowing error falls from 0.25-0.42 px SD after two passes to
            0.19-0.28 px after three (benchmarks/registration.py).
        networks: separate weight sets along the cascade: pass ``k`` uses network
            ``min(k, networks - 1)``. Two (the default): a coarse network for the first pass
            (large motions) and a fine one for the nearly aligned pairs after it. One network
            serving both never learned the few-pixel relative shift in which the narrowing
            lies: the large first-pass errors dominated its gradients.
        percentiles: intensity percentiles mapped to 0 and 1.
    """

    widths: tuple[int, ...] = (24, 32, 48, 64, 96)
    hidden: int = 192
    input_size: int = 128
    max_log_scale: float = 0.3
    max_angle_deg: float = 35.0
    max_shift: float = 40.0
    shift_unit: float = 1.0
    lever_px: float = 32.0
    passes: int = 2
    inference_passes: int = 0
    networks: int = 2
    percentiles: tuple[float, float] = (0.5, 99.5)

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "percentiles", tuple(float(p) for p in self.percentiles))
        if len(self.widths) < 2 or min(self.widths) < 1:
            raise ValueError(f"widths must list >= 2 positive channel counts, got {self.widths!r}")
        if self.input_size % (2 ** len(self.widths)):
            raise ValueError(f"input_size must be a multiple of {2 ** len(self.widths)}, got {self.input_size}")
        if self.passes < 1:
            raise ValueError(f"passes must be >= 1, got {self.passes}")
        if self.inference_passes < 0:
            raise ValueError(f"inference_passes must be >= 0, got {self.inference_passes}")

    @property
    def passes_at_inference(self) -> int:
        return self.inference_passes or self.passes

    @property
    def final_side(self) -> int:
        return self.input_size // 2 ** len(self.widths)

    def to_dict(self) -> dict[str, Any]:
        return {"architecture": "resnet-similarity-x2", "widths": list(self.widths), "hidden": self.hidden,
                "input_size": self.input_size, "max_log_scale": self.max_log_scale,
                "max_angle_deg": self.max_angle_deg, "max_shift": self.max_shift, "shift_unit": self.shift_unit,
                "lever_px": self.lever_px, "passes": self.passes,
                "inference_passes": self.inference_passes, "networks": self.networks, "percentiles": list(self.percentiles)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RegNetConfig":
        if d.get("architecture") != "resnet-similarity-x2":
            raise ValueError(f"unknown architecture {d.get('architecture')!r} (expected 'resnet-similarity-x2')")
        return cls(widths=tuple(d["widths"]), hidden=int(d["hidden"]), input_size=int(d["input_size"]),
                   max_log_scale=float(d["max_log_scale"]), max_angle_deg=float(d["max_angle_deg"]),
                   max_shift=float(d["max_shift"]), shift_unit=float(d["shift_unit"]),
                   lever_px=float(d.get("lever_px", 1.0)), passes=int(d["passes"]),
                   inference_passes=int(d.get("inference_passes", 0)),
                   networks=int(d.get("networks", 1)),
                   percentiles=tuple(d.get("percentiles", (0.5, 99.5))))


class _Residual(nn.Module):
    """A strided basic residual block (He et al. 2016): two 3x3 convolutions plus a 1x1 shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
        self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.short(x))


class _Regressor(nn.Module):
    """Stem, strided residual stages and the MLP head: raw ``(N, 8)`` numbers."""

    def __init__(self, config: RegNetConfig) -> None:
        super().__init__()
        w = config.widths
        self.stem = nn.Sequential(nn.Conv2d(4, w[0], 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w[0]),
                                  nn.ReLU(inplace=True))
        self.stages = nn.Sequential(*(_Residual(w[i], w[i + 1], 2) for i in range(len(w) - 1)))
        flat = w[-1] * config.final_side ** 2
        # Leaky: with a plain ReLU the fine network's hidden layer died within the first few
        # hundred steps (every unit negative for every input), its output froze at a constant
        # and no gradient reached its backbone again.
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, config.hidden), nn.LeakyReLU(0.1, inplace=True),
                                  nn.Linear(config.hidden, 8))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


class RegistrationNet(nn.Module):
    """ResNet-like regressor of two similarities (upper bone, lower bone).

    ``forward(x, stage)`` takes ``(N, 4, S, S)`` (follow-up, baseline, upper label, lower
    label) and returns ``(N, 2, 4)`` parameters ``(log_scale, angle_rad, tx, ty)`` in network
    pixels, bone 0 = upper, bone 1 = lower, from network ``min(stage, networks - 1)``.
    """

    def __init__(self, config: RegNetConfig) -> None:
        super().__init__()
        self.config = config
        self.nets = nn.ModuleList(_Regressor(config) for _ in range(config.networks))

    def raw(self, x: torch.Tensor, stage: int = 0) -> torch.Tensor:
        return self.nets[min(stage, len(self.nets) - 1)](x).view(-1, 2, 4)

    def forward(self, x: torch.Tensor, stage: int = 0) -> torch.Tensor:
        c = self.config
        r = self.raw(x, stage)
        bs, ba, bt = c.max_log_scale, math.radians(c.max_angle_deg), c.max_shift
        lever = c.lever_px
        return torch.stack([bs * torch.tanh(r[..., 0] / (lever * bs)), ba * torch.tanh(r[..., 1] / (lever * ba)),
                            bt * torch.tanh(c.shift_unit * r[..., 2] / bt),
                            bt * torch.tanh(c.shift_unit * r[..., 3] / bt)], dim=-1)


def build_regnet(config: RegNetConfig | None = None) -> RegistrationNet:
    """A freshly initialised network (CPU, float32, train mode); the identity until trained."""
    return RegistrationNet(config or RegNetConfig())


# -- similarity algebra on tensors (same conventions as jsnq.geometry) --------------------------


def params_to_matrix(params: torch.Tensor, center: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """``(..., 4)`` parameters -> ``(..., 3, 3)`` homogeneous matrices acting on ``(x, y, 1)``.

    ``p' = c + s R(a) (p - c) + t``, exactly :meth:`jsnq.geometry.Similarity.matrix`.
    """
    c = torch.as_tensor(center, dtype=params.dtype, device=params.device)
    s = torch.exp(params[..., 0])
    ca, sa = torch.cos(params[..., 1]) * s, torch.sin(params[..., 1]) * s
    tx = c[..., 0] - ca * c[..., 0] + sa * c[..., 1] + params[..., 2]
    ty = c[..., 1] - sa * c[..., 0] - ca * c[..., 1] + params[..., 3]
    zero, one = torch.zeros_like(s), torch.ones_like(s)
    return torch.stack([torch.stack([ca, -sa, tx], -1), torch.stack([sa, ca, ty], -1),
                        torch.stack([zero, zero, one], -1)], -2)


def matrix_to_params(m: torch.Tensor, center: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Inverse of :func:`params_to_matrix` (the linear part must be a scaled rotation)."""
    c = torch.as_tensor(center, dtype=m.dtype, device=m.device)
    a, b = m[..., 0, 0], m[..., 1, 0]
    log_s = 0.5 * torch.log(a * a + b * b)
    ang = torch.atan2(b, a)
    tx = m[..., 0, 2] - (c[..., 0] - a * c[..., 0] + b * c[..., 1])
    ty = m[..., 1, 2] - (c[..., 1] - b * c[..., 0] - a * c[..., 1])
    return torch.stack([log_s, ang, tx, ty], -1)


def compose_params(outer: torch.Tensor, inner: torch.Tensor, center: Sequence[float]) -> torch.Tensor:
    """Parameters of ``outer o inner`` (apply ``inner`` first), both about ``center``."""
    return matrix_to_params(params_to_matrix(outer, center) @ params_to_matrix(inner, center), center)


def warp(image: torch.Tensor, matrix: torch.Tensor, *, padding_mode: str = "zeros") -> torch.Tensor:
    """``out(p) = image(M p)`` for every pixel ``p`` of the output (bilinear, differentiable).

    Args:
        image: ``(N, C, H, W)``.
        matrix: ``(N, 3, 3)`` (or ``(N, 2, 3)``) acting on pixel coordinates ``(x, y, 1)``
            with ``(0, 0)`` the centre of the top-left pixel.
    """
    n, _, h, w = image.shape
    if n == 0:
        return image.clone()
    if matrix.shape[-2] == 2:
        matrix = torch.cat([matrix, matrix.new_tensor([0.0, 0.0, 1.0]).expand(n, 1, 3)], 1)
    # Pixel -> normalised coordinates (align_corners=False): u = (2x + 1) / W - 1.
    to_norm = image.new_tensor([[2.0 / w, 0.0, 1.0 / w - 1.0], [0.0, 2.0 / h, 1.0 / h - 1.0], [0.0, 0.0, 1.0]])
    from_norm = image.new_tensor([[w / 2.0, 0.0, (w - 1) / 2.0], [0.0, h / 2.0, (h - 1) / 2.0], [0.0, 0.0, 1.0]])
    theta = (to_norm @ matrix @ from_norm)[:, :2]
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def side_weights(labels: torch.Tensor) -> torch.Tensor:
    """Per-pixel weight of the upper bone's warp when compositing (``(N, 1, H, W)``).

    ``labels`` is ``(N, 2, H, W)`` (upper side, lower side, soft in [0, 1]); pixels in
    neither side (inside both bones) get 1/2.
    """
    up, lo = labels[:, :1], labels[:, 1:2]
    tot = up + lo
    return torch.where(tot > 1e-6, up / tot.clamp(min=1e-6), torch.full_like(up, 0.5))


def composite(followup: torch.Tensor, params: torch.Tensor, labels: torch.Tensor, center: Sequence[float]
              ) -> torch.Tensor:
    """The follow-up warped into the baseline frame, each side through its own bone's transform."""
    w = side_weights(labels)
    m = params_to_matrix(params, center)
    return w * warp(followup, m[:, 0]) + (1 - w) * warp(followup, m[:, 1])


def cascade(model: RegistrationNet, followup: torch.Tensor, baseline: torch.Tensor, labels: torch.Tensor,
            passes: int, *, detach_between: bool = True) -> list[torch.Tensor]:
    """Parameters ``(N, 2, 4)`` after each of ``passes`` forward passes (network pixels)."""
    size = baseline.shape[-1]
    center = ((size - 1) / 2.0, (baseline.shape[-2] - 1) / 2.0)
    out = []
    params = model(torch.cat([followup, baseline, labels], 1), 0)
    out.append(params)
    for stage in range(1, passes):
        prev = params.detach() if detach_between else params
        moved = composite(followup, prev, labels, center)
        delta = model(torch.cat([moved, baseline, labels], 1), stage)
        params = compose_params(prev, delta, center)
        out.append(params)
    return out


# -- numpy edge: crops in, Similarity objects out ------------------------------------------------


@dataclass(frozen=True)
class NetGeometry:
    """How a crop sits in the network's square input: ``q = c_net + f (p - c_crop)``."""

    factor: float
    crop_center: tuple[float, float]
    net_center: tuple[float, float]
    out_shape: tuple[int, int]
    size: int


def net_geometry(shape: tuple[int, int], size: int) -> NetGeometry:
    """The scale-and-pad mapping of a crop of ``shape`` into a ``size`` x ``size`` input."""
    h, w = int(shape[0]), int(shape[1])
    f = size / max(h, w)
    return NetGeometry(f, crop_centre((h, w)), crop_centre((size, size)),
                       (max(1, round(h * f)), max(1, round(w * f))), size)


def _to_net(a: np.ndarray, geo: NetGeometry, *, pad_value: float = 0.0) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
    if t.shape[-2:] != geo.out_shape:
        t = F.interpolate(t, size=geo.out_shape, mode="bilinear", align_corners=False, antialias=True)
    ph, pw = geo.size - geo.out_shape[0], geo.size - geo.out_shape[1]
    if ph or pw:
        t = F.pad(t, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=pad_value)
    return t[0, 0]


def prepare_inputs(baseline: np.ndarray, followup: np.ndarray, labels: np.ndarray, config: RegNetConfig
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, NetGeometry]:
    """Network tensors ``(1, 1, S, S)`` follow-up, baseline and ``(1, 2, S, S)`` labels.

    When the crop is not square, the aspect ratio is kept and the input padded; pixels
    whose resize would not be exact (a square crop whose side divides evenly) are shifted
    consistently with :func:`net_geometry` because both use ``align_corners=False``.
    """
    if baseline.shape != followup.shape or baseline.shape != labels.shape:
        raise ValueError("baseline, followup and labels must have the same shape")
    geo = net_geometry(baseline.shape, config.input_size)
    b = _to_net(normalise(baseline, config.percentiles, dtype=np.float32), geo)
    f = _to_net(normalise(followup, config.percentiles, dtype=np.float32), geo)
    lab = np.asarray(labels)
    lt = torch.stack([_to_net((lab == 1).astype(np.float32), geo), _to_net((lab == 2).astype(np.float32), geo)])
    return f[None, None], b[None, None], lt[None], geo


def to_crop_similarity(params: np.ndarray, geo: NetGeometry) -> Similarity:
    """One bone's network-pixel parameters -> a :class:`Similarity` about the crop centre.

    With ``q = c_net + f (p - c)``, a network transform ``q' = c_net + s R (q - c_net) + t``
    is ``p' = c + s R (p - c) + t / f`` in crop pixels (the crop centre maps to the net centre).
    """
    log_s, ang, tx, ty = (float(v) for v in params)
    return Similarity(math.exp(log_s), ang, tx / geo.factor, ty / geo.factor, geo.crop_center)


def predict_similarities(model: RegistrationNet, baseline: np.ndarray, followup: np.ndarray, labels: np.ndarray,
                         *, passes: int | None = None) -> tuple[Similarity, Similarity]:
    """The network's (upper, lower) baseline -> follow-up similarities of one pair, crop pixels."""
    return predict_similarities_batch(model, [(baseline, followup, labels)], passes=passes)[0]


def predict_similarities_batch(model: RegistrationNet, pairs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                               *, passes: int | None = None) -> list[tuple[Similarity, Similarity]]:
    """:func:`predict_similarities` for many ``(baseline, followup, labels)`` at once: one
    batched forward pass per cascade step (crops may differ in size), with
    :func:`jsnq.networks.inference_threads`."""
    if not pairs:
        return []
    config = model.config
    with inference_threads():  # the resizes too
        prepared = [prepare_inputs(b, f, lab, config) for b, f, lab in pairs]
        p = next(model.parameters())
        fol = torch.cat([x[0] for x in prepared]).to(p.device, p.dtype)
        base = torch.cat([x[1] for x in prepared]).to(p.device, p.dtype)
        lab = torch.cat([x[2] for x in prepared]).to(p.device, p.dtype)
        with torch.inference_mode():
            out = cascade(model, fol, base, lab, passes or config.passes_at_inference)[-1].double().cpu().numpy()
    return [(to_crop_similarity(o[0], x[3]), to_crop_similarity(o[1], x[3])) for o, x in zip(out, prepared)]


# -- weights -------------------------------------------------------------------------------------


def load_regnet(path: Any, *, map_location: str | torch.device = "cpu") -> tuple[RegistrationNet, dict[str, Any]]:
    """Load a registration checkpoint safely (``weights_only=True``); eval mode."""
    return load_network(path, kind="register", map_location=map_location)


