"""What every training run of jsnq shares: the one loop (:func:`fit`), the learning-rate
schedule, the seeded per-epoch generator, checkpoints written atomically and read safely, the
start and resume of a run, and the export of a checkpoint for shipping.

Each trainer (:mod:`jsnq.training.segment`, :mod:`jsnq.training.register`,
:mod:`jsnq.training.locate`) keeps only its own data, loss and evaluation and hands them to
:func:`fit`; everything about running and resuming lives here.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Sequence

import torch

from ..errors import JsnqInputError
from ..version import __version__
from .data import read_manifest, split_joints

__all__ = ["RunConfig", "EpochSummary", "RunResult", "DEVICES", "lr_at", "epoch_generator", "save_checkpoint", "read_checkpoint", "start_run",
           "resume_run", "restore", "run_epochs", "check_device", "seeded_model", "Hooks", "fit", "export_weights"]

#: The devices a training run may ask for.
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class EpochSummary:
    """What every trainer records per epoch (subclasses add their validation figures).

    Attributes:
        epoch: 1-based; loss: the epoch's mean training loss; seconds: its wall time.
    """

    epoch: int
    loss: float
    seconds: float


@dataclass(frozen=True)
class RunResult:
    """What every training run returns (subclasses add their data counts): the checkpoint
    written and the history of epoch summaries."""

    checkpoint: Path
    history: tuple


@dataclass(frozen=True)
class RunConfig:
    """What every trainer's options share: the base of their frozen dataclasses.

    Attributes:
        data: the data folder.
        epochs, batch_size, lr, weight_decay, warmup_fraction: optimisation (AdamW, linear
            warm-up, cosine decay; :func:`lr_at`).
        seed: initialisation, order and augmentation (:func:`epoch_generator`).
        val_fraction, split_seed: the split of the data into training and validation, by joint
            or by hand (:data:`~jsnq.training.data.SPLIT_RULE`).
        device: one of :data:`DEVICES`.

    A subclass redeclares the defaults it wants otherwise, adds its own fields (and ``network``),
    and says which fields are nested option objects (:attr:`NESTED`), which type its network
    config has (:attr:`NETWORK`) and which counts must be at least 1 (:attr:`COUNTS`).
    It gets the run's checks (:meth:`check_run`, to call from ``__post_init__``) and the form a
    checkpoint keeps it in: :meth:`to_dict` without the network (stored apart, as the model's
    constructor config) and :meth:`from_dict`, its inverse.
    """

    #: Nested option fields -> their type (``from_dict``/``to_dict`` when it has them, else a plain dataclass).
    NESTED: ClassVar[dict[str, type]] = {}
    #: The network config's type (with ``from_dict``).
    NETWORK: ClassVar[type]
    #: Fields that must be >= 1.
    COUNTS: ClassVar[tuple[str, ...]] = ("epochs", "batch_size")

    data: str
    epochs: int = 20
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.03
    seed: int = 0
    val_fraction: float = 0.15
    split_seed: int = 0
    device: str = "cpu"

    def check_run(self) -> None:
        """Raise a ValueError naming the counts below 1 or a device that is not one of :data:`DEVICES`."""
        low = [f"{name} = {getattr(self, name)}" for name in self.COUNTS if getattr(self, name) < 1]
        if low:
            raise ValueError(f"{', '.join(self.COUNTS)} must be >= 1, got {', '.join(low)}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(map(repr, DEVICES))}; got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        """The options as plain data, without the network config."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "network"}
        for name in self.NESTED:
            value = d[name]
            d[name] = value.to_dict() if hasattr(value, "to_dict") else asdict(value)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], network: dict[str, Any]) -> Any:
        """The options :meth:`to_dict` wrote, with the network config stored beside them."""
        d = dict(d)
        for name, kind in cls.NESTED.items():
            if name in d:
                d[name] = kind.from_dict(d[name]) if hasattr(kind, "from_dict") else kind(**d[name])
        return cls(**d, network=cls.NETWORK.from_dict(network))


def lr_at(step: int, total: int, *, lr: float, warmup_fraction: float) -> float:
    """Learning rate at ``step`` of ``total``: linear warm-up, then cosine decay to 1 % of ``lr``."""
    warm = max(1, int(round(warmup_fraction * total)))
    if step < warm:
        return lr * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t))))


def run_epochs(config: RunConfig, model: torch.nn.Module, first_epoch: int, per_epoch: int,
               on_start: Callable[[int, int, int], None] | None = None):
    """The epochs a run has left: tells ``on_start`` ``(first_epoch, epochs, batches_per_epoch)``,
    puts ``model`` in training mode, then yields ``(epoch, its generator, its start time)``
    (:func:`epoch_generator`, ``time.perf_counter()``) for each epoch from ``first_epoch`` on."""
    if on_start is not None:
        on_start(first_epoch, config.epochs, per_epoch)
    model.train()
    for epoch in range(first_epoch, config.epochs):
        yield epoch, epoch_generator(config.seed, epoch), time.perf_counter()


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's shuffling and augmentation: a pure function of the run's seed
    and the epoch, so a run resumed from its checkpoint continues exactly as it would have."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


def save_checkpoint(ckpt: dict[str, Any], path: Path) -> None:
    """``torch.save`` through a temporary file and ``os.replace``: a crash never leaves half a checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A training checkpoint as a dict (``weights_only=True``)."""
    try:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise JsnqInputError(path, "checkpoint not found") from None
    except Exception as err:
        raise JsnqInputError(path, f"cannot read checkpoint: {' '.join(str(err).split())[:200]}") from None
    if not isinstance(ckpt, dict) or not {"state_dict", "config", "epoch"} <= set(ckpt):
        raise JsnqInputError(path, "not a jsnq training checkpoint")
    return ckpt


def resume_run(config: Any, out: str | os.PathLike, resume: str | os.PathLike | None
               ) -> tuple[Path, Any, dict[str, Any] | None]:
    """Check the output folder and, with ``resume``, take the checkpoint's options except
    ``epochs``, ``device`` and ``data``: ``(out, config, previous checkpoint or None)``."""
    out = Path(out)
    if not out.parent.is_dir():
        raise JsnqInputError(out, "output directory does not exist")
    prev = None
    if resume is not None:
        prev = read_checkpoint(resume)
        stored = type(config).from_dict(prev["config"]["training"], prev["config"]["network"])
        config = replace(stored, epochs=config.epochs, device=config.device, data=config.data)
    return out, config, prev


def start_run(config: Any, out: str | os.PathLike, resume: str | os.PathLike | None
              ) -> tuple[Path, Any, dict[str, Any] | None, torch.device, list, list[str], list[str]]:
    """What every training run does first: check the output folder; with ``resume``, take the
    checkpoint's options except ``epochs``, ``device`` and ``data``; check the device; read the
    manifest and split it by joint (a resumed run must find the same validation joints).

    ``config`` is a frozen dataclass with ``from_dict(training, network)``, ``epochs``,
    ``device``, ``data``, ``val_fraction`` and ``split_seed``.

    Returns:
        ``(out, config, previous checkpoint or None, device, manifest rows, train joints,
        validation joints)``.
    """
    out, config, prev = resume_run(config, out, resume)
    check_device(config)
    rows = read_manifest(config.data)
    train_j, val_j = split_joints([r.joint_id for r in rows], val_fraction=config.val_fraction,
                                  split_seed=config.split_seed)
    if not train_j:
        raise JsnqInputError(config.data, "no training joints after the split")
    if prev is not None and sorted(prev["config"]["split"]["validation_joints"]) != val_j:
        raise JsnqInputError(resume, "the checkpoint's validation joints differ from this data's split")
    return out, config, prev, torch.device(config.device), rows, train_j, val_j


def check_device(config: RunConfig) -> torch.device:
    """The run's device; a ValueError when it asks for CUDA that is not there."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return torch.device(config.device)


def seeded_model(config: RunConfig, build: Callable[[Any], torch.nn.Module], start: dict[str, Any] | None = None,
                 init: str | os.PathLike | None = None) -> torch.nn.Module:
    """``build(config.network)`` initialised from ``config.seed`` (the global generator left as it
    was), then given the weights of ``start``, the checkpoint read from ``init`` for a fine-tune.

    Raises:
        JsnqInputError: ``start``'s weights do not fit the network.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build(config.network)
    if start is not None:
        try:
            model.load_state_dict(start["state_dict"])
        except RuntimeError as err:
            raise JsnqInputError(init, f"its networks differ from this run's: {str(err).splitlines()[0][:160]}") from None
    return model


@dataclass(frozen=True)
class Hooks:
    """A run's progress callbacks: ``on_start(first_epoch, epochs, batches_per_epoch)`` once the
    data are loaded, ``on_batch(epoch, batch, loss)`` after each step, ``on_epoch(record)`` after
    each epoch."""

    on_start: Callable[[int, int, int], None] | None = None
    on_batch: Callable[[int, int, float], None] | None = None
    on_epoch: Callable[[Any], None] | None = None


def fit(config: RunConfig, model: torch.nn.Module, *, out: Path, prev: dict[str, Any] | None,
        checkpoint: dict[str, Any], record: Callable[..., EpochSummary], per_epoch: int,
        batches: Callable[[int, torch.Generator], Iterable[Any]],
        loss: Callable[[Any, torch.Generator], Sequence[torch.Tensor]],
        summarise: Callable[[int, list[float], float], EpochSummary],
        clip_grad_norm: float | None = None, hooks: Hooks = Hooks()) -> tuple[EpochSummary, ...]:
    """The one training loop: AdamW with the schedule of :func:`lr_at`, one step per batch,
    the checkpoint written after every epoch, a resumed run continuing exactly.

    Args:
        config: the run's options (``lr``, ``weight_decay``, ``warmup_fraction``, ``epochs``, ``seed``).
        model: on its device; prev: the checkpoint resumed from, or None.
        checkpoint: what every checkpoint holds besides the weights and the run's state:
            ``{"format", "config"}``.
        record: the epoch record's type (rebuilds a resumed run's history).
        per_epoch: batches per epoch.
        batches: ``(epoch, its generator)`` -> the epoch's ``per_epoch`` batches, drawn from that generator.
        loss: ``(batch, generator)`` -> ``(total loss, any parts to record)``.
        summarise: ``(epoch (1-based), mean of each loss term over the epoch, seconds)`` -> the
            epoch's record (validation included).
        clip_grad_norm: clip the gradients' norm to this before each step (None: no clipping).
        hooks: progress callbacks.

    Returns:
        The history of epoch records, the resumed run's included.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history, first_epoch = restore(prev, model, opt, record)
    total = per_epoch * config.epochs
    for epoch, gen, t0 in run_epochs(config, model, first_epoch, per_epoch, hooks.on_start):
        sums: list[float] = []
        for b, batch in enumerate(batches(epoch, gen)):
            for group in opt.param_groups:
                group["lr"] = lr_at(epoch * per_epoch + b, total, lr=config.lr, warmup_fraction=config.warmup_fraction)
            terms = loss(batch, gen)
            opt.zero_grad(set_to_none=True)
            terms[0].backward()
            if clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            opt.step()
            values = [float(t.detach()) for t in terms]
            sums = values if not sums else [a + v for a, v in zip(sums, values)]
            if hooks.on_batch is not None:
                hooks.on_batch(epoch, b, values[0])
        rec = summarise(epoch + 1, [v / per_epoch for v in sums], time.perf_counter() - t0)
        history.append(rec)
        save_checkpoint({"format": checkpoint["format"], "jsnq_version": __version__, "config": checkpoint["config"],
                         "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                         "epoch": epoch + 1, "optimizer": opt.state_dict(),
                         "history": [asdict(h) for h in history]}, out)
        if hooks.on_epoch is not None:
            hooks.on_epoch(rec)
    if first_epoch >= config.epochs and prev is not None:
        save_checkpoint(prev, out)
    return tuple(history)


def restore(prev: dict[str, Any] | None, model: torch.nn.Module, opt: torch.optim.Optimizer,
            record: Callable[..., Any]) -> tuple[list[Any], int]:
    """Load a previous checkpoint's weights and optimizer state into ``model`` and ``opt``:
    ``(history as records, first epoch to run)``; ``([], 0)`` for a fresh run."""
    if prev is None:
        return [], 0
    model.load_state_dict(prev["state_dict"])
    opt.load_state_dict(prev["optimizer"])
    return [record(**h) for h in prev.get("history", [])], int(prev["epoch"])


def read_init(init: str | os.PathLike, network: Any, same: Callable[[Any], Any] = lambda cfg: cfg) -> dict[str, Any]:
    """The checkpoint a fine-tune starts from, checked before any data are loaded: its network
    options (``network``'s class ``from_dict``, mapped through ``same`` to drop options that only
    matter at inference) must equal this run's ``network``.

    Raises:
        JsnqInputError: an unreadable file, or other network options.
    """
    start = read_checkpoint(init)
    theirs = type(network).from_dict(start["config"]["network"])
    if same(theirs) != same(network):
        raise JsnqInputError(init, "its network options differ from this run's")
    return start


def export_weights(checkpoint: str | os.PathLike, out: str | os.PathLike, *,
                   extra: dict[str, Any] | None = None, inference_passes: int | None = None) -> Path:
    """Write a slim copy of any training checkpoint for shipping: no optimizer state, float32 weights.

    ``extra`` (e.g. the command line and wall time) is added to ``config["provenance"]``;
    re-exporting an exported file appends a new note to the earlier one, a line each.
    ``inference_passes`` sets a registration network's cascade passes at inference
    (:attr:`jsnq.register.network.RegNetConfig.inference_passes`). The file is loaded back with
    :func:`jsnq.networks.load_network` before returning (refusing to ship one that does not load).

    Raises:
        JsnqInputError: ``inference_passes`` for another network than a registration one, or below 0.
    """
    from ..networks import load_network

    ckpt = read_checkpoint(checkpoint)
    slim = {k: v for k, v in ckpt.items() if k != "optimizer"}
    slim["state_dict"] = {k: v.float().contiguous() if v.is_floating_point() else v
                          for k, v in ckpt["state_dict"].items()}
    if inference_passes is not None:
        if slim["config"].get("network", {}).get("architecture") != "resnet-similarity-x2" or inference_passes < 0:
            raise JsnqInputError(checkpoint, "--inference-passes needs a registration checkpoint and a count >= 0")
        slim["config"] = {**slim["config"], "network": {**slim["config"]["network"],
                                                        "inference_passes": int(inference_passes)}}
    if extra:
        provenance = dict(slim["config"].get("provenance", {}))
        for key, value in extra.items():  # notes of earlier exports are kept, one per line
            old = provenance.get(key)
            provenance[key] = f"{old}\n{value}" if isinstance(old, str) and isinstance(value, str) else value
        slim["config"] = {**slim["config"], "provenance": provenance}
    out = Path(out)
    save_checkpoint(slim, out)
    load_network(out)
    return out
