"""Every network jsnq ships, loaded one way.

:func:`load_network` reads any jsnq checkpoint, a training checkpoint or a shipped file, with
``torch.load(weights_only=True)``: plain tensors, numbers, strings, lists and dicts only, never
pickled code. It builds the network that ``config["network"]["architecture"]`` names, loads the
weights, and the network carries its constructor config as ``model.config`` (VoxelMorph-style:
a checkpoint loads without code edits). The shipped files (:data:`SHIPPED`) are found through
:mod:`importlib.resources`, never relative to the working directory.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ._torch import fuse_batchnorm
from .errors import WeightsUnavailableError

__all__ = ["SHIPPED", "ARCHITECTURES", "Architecture", "shipped_weights", "load_network", "INFERENCE_THREADS",
           "inference_threads"]

#: The shipped networks: name -> file inside the jsnq package.
SHIPPED = {
    "segment": "weights/segment_unetpp.pt",
    "register": "weights/register_resnet.pt",
    "locate": "weights/locate_unet2.pt",
}

#: torch's intra-op threads at most during the shipped networks' inference. The networks are
#: small (a 128 px UNet++, a 128 px ResNet): split over threads, every operation ends at a
#: barrier that waits for the slowest thread, which on cores shared with other work is often a
#: whole time slice away (docs/benchmarks.md, issue 23's speed). Parallelism comes from pairs,
#: joints and workers instead (:mod:`jsnq.study`).
INFERENCE_THREADS = 1


@contextlib.contextmanager
def inference_threads(limit: int = INFERENCE_THREADS) -> Iterator[None]:
    """torch's intra-op threads lowered to ``limit`` (never raised) while the block runs, and
    the caller's setting back afterwards. torch keeps the setting per OS thread (OpenMP; a thread
    that first runs torch starts from the latest one set), so threads running networks at once
    (``jsnq hand --workers``) do not undo one another's limit."""
    before = torch.get_num_threads()
    if before <= limit:
        yield
        return
    torch.set_num_threads(limit)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class Architecture:
    """How to rebuild one kind of network: its kind (a :data:`SHIPPED` name), what it is (for
    messages), and, imported on first use, its config type (with ``from_dict``), its builder
    and the newest checkpoint format this jsnq understands."""

    kind: str
    what: str
    module: str
    config: str
    build: str

    def resolve(self) -> tuple[type, Callable[[Any], nn.Module], int]:
        import importlib

        mod = importlib.import_module(self.module, __package__)
        return getattr(mod, self.config), getattr(mod, self.build), int(mod.CHECKPOINT_FORMAT)


#: ``config["network"]["architecture"]`` -> how to rebuild it (a checkpoint without one is a
#: segmenter's, as the first ones were).
ARCHITECTURES = {
    "unetpp": Architecture("segment", "segmentation", ".segment.network", "NetworkConfig", "build_model"),
    "resnet-similarity-x2": Architecture("register", "registration", ".register.network", "RegNetConfig",
                                         "build_regnet"),
    "locator-unet2": Architecture("locate", "joint locator", ".hand.network", "LocatorConfig", "build_locator"),
}


def shipped_weights(name: str) -> Any:
    """The shipped file of network ``name`` (one of :data:`SHIPPED`) as an
    :mod:`importlib.resources` traversable (which may not exist)."""
    if name not in SHIPPED:
        raise ValueError(f"no shipped network {name!r}; one of {', '.join(map(repr, SHIPPED))}")
    return resources.files("jsnq").joinpath(SHIPPED[name])


def load_network(source: Any, *, kind: str | None = None, map_location: str | torch.device = "cpu"
                 ) -> tuple[nn.Module, dict[str, Any]]:
    """Load a jsnq checkpoint safely and rebuild its network.

    Args:
        source: a shipped network's name (:data:`SHIPPED`), a file path or an
            :mod:`importlib.resources` traversable.
        kind: the kind of network expected (a :data:`SHIPPED` name); None accepts any. A
            shipped name implies its own kind.
        map_location: where the tensors go.

    Returns:
        ``(model in eval mode on map_location with its config as model.config, the whole
        checkpoint dict)``.

    Raises:
        WeightsUnavailableError: a missing or unreadable file, a layout or format this version
            does not know, a network of another kind, or weights that do not fit the network.
    """
    if isinstance(source, str) and source in SHIPPED:
        kind, source = kind or source, shipped_weights(source)
    name = str(source)
    ckpt = _read(source, name)
    net = ckpt["config"].get("network") if isinstance(ckpt["config"], dict) else None
    arch = ARCHITECTURES.get(net.get("architecture", "unetpp")) if isinstance(net, dict) else None
    what = {a.kind: a.what for a in ARCHITECTURES.values()}.get(kind, "network")
    if arch is None or (kind is not None and arch.kind != kind):
        found = "an unknown" if arch is None else f"a {arch.what}"
        raise WeightsUnavailableError(f"{name}: weights do not match the network: {found} checkpoint, "
                                      f"not a {what} one")
    config_type, build, max_format = arch.resolve()
    if int(ckpt.get("format", 0)) > max_format:
        raise WeightsUnavailableError(f"{name}: checkpoint format {ckpt.get('format')} is newer than this "
                                      f"jsnq understands ({max_format}); upgrade jsnq")
    try:
        config = config_type.from_dict(net)
        model = build(config)
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, ValueError, RuntimeError, TypeError) as err:
        first = str(err).strip().splitlines()[0]
        raise WeightsUnavailableError(f"{name}: weights do not match the network: {first[:200]}") from None
    model.config = config
    model.to(map_location).eval()
    return model, ckpt


@functools.lru_cache(maxsize=None)
def shipped_network(name: str) -> nn.Module:
    """The shipped network ``name`` (one of :data:`SHIPPED`) for inference: loaded
    (:func:`load_network`), batch norms folded (:func:`jsnq._torch.fuse_batchnorm`, the copy
    keeps ``model.config``), once per process.

    Raises:
        WeightsUnavailableError: the weights are missing or cannot be read.
    """
    model, _ = load_network(name)
    return fuse_batchnorm(model)


def _read(source: Any, name: str) -> dict[str, Any]:
    try:
        with (source.open("rb") if hasattr(source, "open") and not isinstance(source, (str, os.PathLike))
              else open(source, "rb")) as fh:
            ckpt = torch.load(fh, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsUnavailableError(f"{name}: weights file not found") from None
    except Exception as err:  # corrupt file, unsafe pickle, ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsUnavailableError(f"{name}: cannot load weights: {first[:200]}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "config" not in ckpt:
        raise WeightsUnavailableError(f"{name}: not a jsnq checkpoint (needs state_dict and config)")
    return ckpt
