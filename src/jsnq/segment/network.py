"""Bone segmentation of a joint crop with a compact UNet++ (Zhou et al. 2018), as in the paper.

The network sees the crop resized to ``input_size`` x ``input_size`` (default 128) and predicts
two logit maps, the **upper** bone (proximal phalanx) and the **lower** bone (metacarpal head).
Each is a separate sigmoid, because the two bones may overlap on a projection radiograph.
The logits are resized back to the crop (bilinear) before the sigmoid, so the 0.5 contour
is placed with sub-pixel precision in the crop's own pixels.

From the two masks everything else follows, with the same functions used for the true masks:

* ``labels`` (what :func:`jsnq.measure` uses): 1 = upper side, 2 = lower side of the midline
  of the joint space, 0 = pixels inside both bones (:func:`~jsnq.segment.classical.labels_from_masks`);
* ``line``: the row of that midline per column (:func:`~jsnq.segment.classical.line_from_labels`);
* ``jsw``: the joint space width (:func:`jsnq.jsw.joint_space_width`).

Conventions: arrays are ``[row, col]``; device and dtype come from the model's parameters
(the input is a numpy array); only the CLI and the training loop choose a device. Shipped
weights live in ``jsnq/weights/`` and are found through :mod:`importlib.resources`; every
checkpoint is read with ``torch.load(weights_only=True)`` and carries its constructor config.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from torch import nn

from .._torch import fuse_batchnorm
from ..errors import JsnqInputError, WeightsUnavailableError
from ..networks import SHIPPED, inference_threads, load_network, shipped_weights as shipped_network_weights
from ..intensity import normalise
from ..io import Image, load_image, validate_spacing
from ..jsw import JointSpaceWidth, joint_space_width
from ..labels import labels_from_masks, line_from_labels

__all__ = [
    "UNetPlusPlus", "NetworkConfig", "SegmentationResult", "WeightsUnavailableError",
    "build_model", "fuse_for_inference", "load_model", "shipped_model", "shipped_weights", "preprocess",
    "predict_logits", "predict_masks", "clean_mask", "segment", "CHECKPOINT_FORMAT", "WEIGHTS_FILE",
]

ImageLike = Union[str, os.PathLike, np.ndarray, Image]

#: Version of the checkpoint layout (``{"format", "config", "state_dict", ...}``).
CHECKPOINT_FORMAT = 1
#: The shipped weights, inside the ``jsnq`` package.
WEIGHTS_FILE = SHIPPED["segment"]
#: Probability above which a pixel belongs to a bone.
THRESHOLD = 0.5
#: Channel order of the network's output.
CHANNELS = ("upper", "lower")


# -- the network -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkConfig:
    """Everything needed to rebuild the network and feed it (stored in every checkpoint).

    Attributes:
        features: channels per level, finest first; ``len(features)`` levels (the deepest is
            reached after ``len(features) - 1`` poolings).
        in_channels, out_channels: 1 grey input; 2 outputs (upper bone, lower bone).
        input_size: side in pixels of the square input the crop is resized to.
        percentiles: intensity percentiles mapped to 0 and 1 before the network.
    """

    features: tuple[int, ...] = (16, 32, 64, 128)
    in_channels: int = 1
    out_channels: int = 2
    input_size: int = 128
    percentiles: tuple[float, float] = (0.5, 99.5)

    def __post_init__(self) -> None:
        feats = tuple(int(f) for f in self.features)
        if len(feats) < 2 or min(feats) < 1:
            raise ValueError(f"features must list >= 2 positive channel counts, got {self.features!r}")
        object.__setattr__(self, "features", feats)
        object.__setattr__(self, "percentiles", tuple(float(p) for p in self.percentiles))
        step = 2 ** (len(feats) - 1)
        if self.input_size < step or self.input_size % step:
            raise ValueError(f"input_size must be a positive multiple of {step} for {len(feats)} levels, "
                             f"got {self.input_size}")
        lo, hi = self.percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"architecture": "unetpp", "features": list(self.features), "in_channels": self.in_channels,
                "out_channels": self.out_channels, "input_size": self.input_size,
                "percentiles": list(self.percentiles)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "NetworkConfig":
        if d.get("architecture", "unetpp") != "unetpp":
            raise ValueError(f"unknown architecture {d.get('architecture')!r} (expected 'unetpp')")
        return cls(features=tuple(d["features"]), in_channels=int(d.get("in_channels", 1)),
                   out_channels=int(d.get("out_channels", 2)), input_size=int(d["input_size"]),
                   percentiles=tuple(d.get("percentiles", (0.5, 99.5))))


class _ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by batch norm and ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )


class UNetPlusPlus(nn.Module):
    """UNet++ with nested dense skip paths (Zhou et al., DLMIA 2018), compact for the CPU.

    Node ``X[i, 0]`` is the encoder at level ``i`` (``i`` poolings); node ``X[i, j]``
    (``j >= 1``) convolves the concatenation of ``X[i, 0..j-1]`` and the transposed-conv
    upsampling of ``X[i+1, j-1]``. The output is a 1x1 convolution of ``X[0, L-1]``.

    Input ``(N, in_channels, H, W)`` with ``H``, ``W`` multiples of ``2**(L-1)``; output
    ``(N, out_channels, H, W)`` logits, same device and dtype.
    """

    def __init__(self, features: Sequence[int] = (16, 32, 64, 128), in_channels: int = 1,
                 out_channels: int = 2) -> None:
        super().__init__()
        f = [int(c) for c in features]
        self.levels = len(f)
        self.encoder = nn.ModuleList(_ConvBlock(in_channels if i == 0 else f[i - 1], f[i])
                                     for i in range(self.levels))
        self.up = nn.ModuleDict()
        self.nodes = nn.ModuleDict()
        for j in range(1, self.levels):
            for i in range(self.levels - j):
                self.up[f"{i}_{j}"] = nn.ConvTranspose2d(f[i + 1], f[i], 2, stride=2)
                self.nodes[f"{i}_{j}"] = _ConvBlock((j + 1) * f[i], f[i])
        self.head = nn.Conv2d(f[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        step = 2 ** (self.levels - 1)
        if x.ndim != 4 or x.shape[-1] % step or x.shape[-2] % step:
            raise ValueError(f"input must be (N, C, H, W) with H, W multiples of {step}, got {tuple(x.shape)}")
        nodes: dict[tuple[int, int], torch.Tensor] = {}
        h = x
        for i, block in enumerate(self.encoder):
            h = block(h if i == 0 else F.max_pool2d(h, 2))
            nodes[i, 0] = h
        for j in range(1, self.levels):
            for i in range(self.levels - j):
                up = self.up[f"{i}_{j}"](nodes[i + 1, j - 1])
                nodes[i, j] = self.nodes[f"{i}_{j}"](torch.cat([nodes[i, k] for k in range(j)] + [up], 1))
        return self.head(nodes[0, self.levels - 1])


def build_model(config: NetworkConfig) -> UNetPlusPlus:
    """A freshly initialised network for ``config`` (CPU, float32, train mode).

    The config rides along as ``model.config`` so that inference knows the input size.
    """
    model = UNetPlusPlus(config.features, config.in_channels, config.out_channels)
    model.config = config
    return model


def fuse_for_inference(model: UNetPlusPlus) -> UNetPlusPlus:
    """A copy for inference with batch norms folded (:func:`jsnq._torch.fuse_batchnorm`)."""
    fused = fuse_batchnorm(model)
    if hasattr(model, "config"):
        fused.config = model.config
    return fused


# -- checkpoints ---------------------------------------------------------------------------------


def load_model(path: str | os.PathLike | Any, *, map_location: str | torch.device = "cpu"
               ) -> tuple[UNetPlusPlus, NetworkConfig, dict[str, Any]]:
    """Load a checkpoint written by the training (or the shipped weights), safely.

    The file is read with ``torch.load(weights_only=True)``: plain tensors, numbers,
    strings, lists and dicts only, never pickled code.

    Args:
        path: file path or an :mod:`importlib.resources` traversable.
        map_location: where the tensors go.

    Returns:
        ``(model in eval mode, its NetworkConfig, the whole checkpoint dict)``.

    Raises:
        WeightsUnavailableError: missing or unreadable file, or a layout this version does not know.
    """
    model, ckpt = load_network(path, kind="segment", map_location=map_location)
    return model, model.config, ckpt


def shipped_weights() -> Any:
    """The shipped weights file as an :mod:`importlib.resources` traversable (may not exist)."""
    return shipped_network_weights("segment")


@functools.lru_cache(maxsize=1)
def _shipped() -> tuple[UNetPlusPlus, NetworkConfig]:
    model, config, _ = load_model(shipped_weights())
    return fuse_for_inference(model), config


def shipped_model() -> UNetPlusPlus:
    """The shipped network on the CPU, ready for inference (:func:`fuse_for_inference`),
    loaded once per process.

    Raises:
        WeightsUnavailableError: the weights are missing or cannot be read.
    """
    return _shipped()[0]


def _config_of(model: nn.Module) -> NetworkConfig:
    config = getattr(model, "config", None)
    if isinstance(config, NetworkConfig):
        return config
    if isinstance(model, UNetPlusPlus):
        f = [blk[0].out_channels for blk in model.encoder]  # noqa: the first layer is always a conv
        return NetworkConfig(features=tuple(f), in_channels=model.encoder[0][0].in_channels,
                             out_channels=model.head.out_channels)
    raise ValueError("model must be a UNetPlusPlus (or carry a NetworkConfig as .config)")


# -- inference ---------------------------------------------------------------------------------


def preprocess(image: np.ndarray, *, size: int, percentiles: tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """The network's input: intensities mapped to ~[0, 1], resized to ``size`` x ``size``.

    Args:
        image: 2-D crop ``[row, col]``, any numeric dtype.
        size: side of the square output in pixels.
        percentiles: the intensity percentiles mapped to 0 and 1.

    Returns:
        ``float32 [size, size]``; the resize is bilinear with antialiasing (area-like when
        shrinking), ``align_corners=False`` (pixel centres at ``(i + 0.5) / n``).
    """
    a = np.asarray(image)
    if a.ndim != 2:
        raise ValueError(f"image must be 2-D [row, col], got shape {a.shape}")
    a = normalise(a, percentiles, dtype=np.float32)
    t = torch.from_numpy(np.ascontiguousarray(a))[None, None]
    if a.shape != (size, size):
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return t[0, 0].numpy()


def predict_logits(model: nn.Module, batch: torch.Tensor, shape: tuple[int, int] | None = None) -> torch.Tensor:
    """Logits ``(N, 2, *shape)`` for a preprocessed batch ``(N, 1, S, S)``, resized bilinearly.

    Runs on the model's device and dtype; no gradient; :func:`jsnq.networks.inference_threads`.
    """
    p = next(model.parameters())
    with torch.inference_mode(), inference_threads():
        x = batch.to(device=p.device, dtype=p.dtype).contiguous(memory_format=torch.channels_last)
        logits = model(x)
        if shape is not None and tuple(logits.shape[-2:]) != tuple(shape):
            logits = F.interpolate(logits, size=tuple(shape), mode="bilinear", align_corners=False)
    return logits


def _as_array(image: ImageLike) -> tuple[np.ndarray, float | None]:
    if isinstance(image, np.ndarray) and image.ndim == 2 and image.dtype.kind in "uif":
        return image, None
    img = load_image(image)
    return img.array, img.spacing_mm


def predict_masks(image: ImageLike, model: nn.Module | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel probabilities of the upper and the lower bone, at the crop's size.

    Args:
        image: 2-D crop ``[row, col]`` (canonical: finger up), a path, or an Image.
        model: a :class:`UNetPlusPlus` (its device and dtype are used); default: the shipped one.

    Returns:
        ``(upper_prob, lower_prob)``, each ``float32 [row, col]`` in [0, 1] with the image's
        shape. The two may both be high where the bones overlap on the projection.
    """
    array, _ = _as_array(image)
    model = shipped_model() if model is None else model
    config = _config_of(model)
    with inference_threads():  # the resizes and the sigmoid too
        x = torch.from_numpy(preprocess(array, size=config.input_size, percentiles=config.percentiles))[None, None]
        prob = torch.sigmoid(predict_logits(model, x, array.shape)).float()[0].cpu().numpy()
    return prob[0], prob[1]


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a binary mask, with its holes filled (a hole is a
    4-connected background region that does not touch the crop's border)."""
    m = np.asarray(mask, bool)
    lab, n = ndi.label(m, structure=np.ones((3, 3)))
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        m = lab == int(np.argmax(sizes))
    bg, nb = ndi.label(~m)
    if nb > 1:
        border = np.unique(np.concatenate([bg[0], bg[-1], bg[:, 0], bg[:, -1]]))
        m = m | ((bg > 0) & ~np.isin(bg, border))
    return m


def _dilate3(m: np.ndarray) -> np.ndarray:
    """Binary dilation by a 3x3 square (by shifts: faster than scipy for one step)."""
    out = m.copy()
    out[1:] |= m[:-1]
    out[:-1] |= m[1:]
    rows = out.copy()
    out[:, 1:] |= rows[:, :-1]
    out[:, :-1] |= rows[:, 1:]
    return out


def _surface_maps(up_p: np.ndarray, lo_p: np.ndarray, up: np.ndarray, lo: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel edges come from the probabilities, restricted to (a ring around) the kept
    components so that stray blobs do not count as bone."""
    return (np.where(_dilate3(up), up_p, 0.0).astype(np.float32),
            np.where(_dilate3(lo), lo_p, 0.0).astype(np.float32))


@dataclass(frozen=True)
class SegmentationResult:
    """The network's reading of one joint crop (all arrays ``[row, col]``, the crop's shape).

    Attributes:
        upper_mask, lower_mask: boolean bone masks (largest component, holes filled); they may overlap.
        labels: uint8, 1 = upper side, 2 = lower side of the joint-space midline, 0 = inside both bones.
        line: ``(cols,)`` row of the midline per column (NaN where a column lacks a side).
        jsw: joint space width from the masks, or None when it cannot be measured.
        upper_prob, lower_prob: the probabilities behind the masks.
    """

    upper_mask: np.ndarray = field(repr=False)
    lower_mask: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    line: np.ndarray = field(repr=False)
    jsw: JointSpaceWidth | None
    upper_prob: np.ndarray = field(repr=False, compare=False)
    lower_prob: np.ndarray = field(repr=False, compare=False)

    def surface_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """The probabilities restricted to a 1-px ring around the kept masks: what the JSW
        (and :func:`jsnq.jsw.facing_surfaces`) should read for sub-pixel bone edges."""
        return _surface_maps(self.upper_prob, self.lower_prob, self.upper_mask, self.lower_mask)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: mask areas (px) and the JSW."""
        return {"upper_area_px": int(self.upper_mask.sum()), "lower_area_px": int(self.lower_mask.sum()),
                "overlap_px": int((self.upper_mask & self.lower_mask).sum()),
                "jsw": None if self.jsw is None else self.jsw.to_dict()}


def segment(image: ImageLike, *, model: nn.Module | None = None, spacing_mm: float | None = None,
            threshold: float = THRESHOLD) -> SegmentationResult:
    """Segment the two bones of a joint crop and derive the labels, the midline and the JSW.

    Args:
        image: 2-D crop ``[row, col]`` (finger up), a path or an :class:`~jsnq.io.Image`.
        model: default the shipped network.
        spacing_mm: pixel spacing for the JSW in mm (default: the image's, if it has one).
        threshold: probability threshold of the masks.

    Raises:
        JsnqInputError: the network found no upper or no lower bone (the crop is probably
            not a canonical joint crop).
        WeightsUnavailableError: ``model`` is None and the shipped weights cannot be loaded.
    """
    array, own_spacing = _as_array(image)
    source = image.source if isinstance(image, Image) else (
        "<array>" if isinstance(image, np.ndarray) else os.fspath(image))
    up_p, lo_p = predict_masks(array, model)
    up, lo = clean_mask(up_p > threshold), clean_mask(lo_p > threshold)
    for name, m in (("upper", up), ("lower", lo)):
        if not m.any():
            raise JsnqInputError(source, f"the network found no {name} bone (is this a canonical joint crop, finger up?)")
    labels = labels_from_masks(up, lo)
    line = line_from_labels(labels)
    up_s, lo_s = _surface_maps(up_p, lo_p, up, lo)
    spacing = validate_spacing(spacing_mm, source) if spacing_mm is not None else own_spacing
    try:
        jsw = joint_space_width(up_s, lo_s, spacing_mm=spacing, threshold=threshold)
    except ValueError:
        jsw = None
    return SegmentationResult(upper_mask=up, lower_mask=lo, labels=labels, line=line, jsw=jsw,
                              upper_prob=up_p, lower_prob=lo_p)
