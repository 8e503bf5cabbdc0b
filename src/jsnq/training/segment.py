"""Training the bone segmenter (:class:`~jsnq.segment.network.UNetPlusPlus`) on a manifest folder.

The loop is plain and seeded: the network's initialisation comes from ``seed``, and every
epoch draws its shuffling and augmentation from ``torch.Generator().manual_seed(f(seed, epoch))``,
so an interrupted run resumed from its last checkpoint continues exactly as it would have.
The learning rate is a pure function of the step (linear warm-up, cosine decay).

Loss: binary cross-entropy + soft Dice, per bone channel (the two bones may overlap, so each
channel is its own sigmoid), computed at the crop's resolution: the logits are resized
bilinearly from the network's input size to the masks' size first, exactly as at inference.

Checkpoints (``torch.save``, readable with ``torch.load(weights_only=True)``) hold::

    {"format", "jsnq_version", "config": {"network", "training", "split", "excluded"},
     "state_dict", "epoch", "optimizer", "history"}

:func:`jsnq.training.loop.export_weights` strips the optimizer state for shipping.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Callable, ClassVar

import torch
import torch.nn.functional as F

from ..errors import JsnqInputError
from ..segment.network import CHECKPOINT_FORMAT, NetworkConfig, build_model
from .augment import AugmentRanges, apply_augmentation, sample_augmentation
from .data import SPLIT_RULE, SegmentationData, load_dataset
from .loop import EpochSummary, Hooks, RunConfig, RunResult, fit, read_init, seeded_model, start_run

__all__ = ["TrainConfig", "EpochRecord", "TrainResult", "train_segmenter", "evaluate", "segmentation_loss"]


@dataclass(frozen=True)
class TrainConfig(RunConfig):
    """Options of a training run (stored in the checkpoint).

    Attributes:
        data: the data folder (holds manifest.csv).
        epochs, batch_size, lr, weight_decay, warmup_fraction: optimisation (AdamW, cosine).
        seed: initialisation, shuffling and augmentation.
        val_fraction, split_seed: the split by joint (:data:`~jsnq.training.data.SPLIT_RULE`).
        target_size: side of the masks the loss is computed on (the crop size for 256-px crops).
        max_overlap: annotation-error filter (see :func:`~jsnq.training.data.load_dataset`).
        device: "cpu" or "cuda".
        augment: the augmentation ranges.
        network: the network's config.
        init: the checkpoint a fine-tune started from (set by :func:`train_segmenter`).
    """

    epochs: int = 30
    lr: float = 3e-3
    warmup_fraction: float = 0.05
    target_size: int = 256
    max_overlap: float = 0.8
    augment: AugmentRanges = field(default_factory=AugmentRanges)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    init: str | None = None  # the weights a fine-tune started from

    NESTED: ClassVar[dict[str, type]] = {"augment": AugmentRanges}
    NETWORK: ClassVar[type] = NetworkConfig

    def __post_init__(self) -> None:
        self.check_run()
        if self.target_size < self.network.input_size:
            raise ValueError(f"target_size ({self.target_size}) must be >= the input size ({self.network.input_size})")


@dataclass(frozen=True)
class EpochRecord(EpochSummary):
    """Per-epoch summary: mean training loss, validation Dice per bone, seconds."""

    val_dsc_upper: float
    val_dsc_lower: float


@dataclass(frozen=True)
class TrainResult(RunResult):
    n_train: int
    n_val: int
    excluded: tuple[tuple[str, str], ...]


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice, averaged over the batch and the two channels.

    ``logits`` ``(N, 2, S, S)`` are resized bilinearly to the target's ``(T, T)`` first.
    """
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum((-2, -1))
    dice = 1.0 - (2.0 * inter + 1.0) / (p.sum((-2, -1)) + target.sum((-2, -1)) + 1.0)
    return bce + dice.mean()


def evaluate(model: torch.nn.Module, data: SegmentationData, *, batch_size: int = 32) -> tuple[float, float]:
    """Mean Dice of the upper and the lower bone over ``data`` (threshold 0.5, masks' resolution)."""
    if not len(data):
        return float("nan"), float("nan")
    p = next(model.parameters())
    was_training = model.training
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64)
    with torch.inference_mode():
        for i in range(0, len(data), batch_size):
            x = data.images[i:i + batch_size].to(p.device).contiguous(memory_format=torch.channels_last)
            t = data.masks[i:i + batch_size].to(p.device) >= 128
            logits = F.interpolate(model(x), size=t.shape[-2:], mode="bilinear", align_corners=False)
            pred = logits > 0
            inter = (pred & t).sum((-2, -1)).double()
            sums += (2 * inter / ((pred.sum((-2, -1)) + t.sum((-2, -1))).double().clamp(min=1))).sum(0).cpu()
    model.train(was_training)
    dsc = sums / len(data)
    return float(dsc[0]), float(dsc[1])


def train_segmenter(config: TrainConfig, out: str | os.PathLike, *, resume: str | os.PathLike | None = None,
                    init: str | os.PathLike | None = None,
                    on_start: Callable[[int, int, int], None] | None = None,
                    on_batch: Callable[[int, int, float], None] | None = None,
                    on_epoch: Callable[[EpochRecord], None] | None = None) -> TrainResult:
    """Train (or resume training) and write the checkpoint to ``out`` after every epoch.

    Args:
        config: the run's options. When resuming, the checkpoint's options are used, except
            ``epochs`` (which may extend the run) and ``device``.
        out: checkpoint path (its folder must exist).
        resume: a checkpoint of an earlier, interrupted run on the same data and split.
        init: a checkpoint or weights file whose network weights this run starts from (a
            fine-tune: new optimizer, this run's options; its network options must match).
        on_start: ``(first_epoch, epochs, batches_per_epoch)`` once the data are loaded.
        on_batch: ``(epoch, batch, loss)`` after each optimisation step.
        on_epoch: after each epoch, with its :class:`EpochRecord`.

    Returns:
        The :class:`TrainResult`.

    Raises:
        JsnqInputError: bad data folder, manifest or files; a resume checkpoint that does
            not match the data.
    """
    out, config, prev, device, rows, train_j, val_j = start_run(config, out, resume)
    net_cfg = config.network
    start = None
    if init is not None and resume is None:  # checked before the data are loaded
        start = read_init(init, net_cfg)
        config = replace(config, init=os.fspath(init))
    data = load_dataset(rows, input_size=net_cfg.input_size, target_size=config.target_size,
                        percentiles=net_cfg.percentiles, max_overlap=config.max_overlap)
    train, val = data.subset(train_j), data.subset(val_j)
    if not len(train):
        raise JsnqInputError(config.data, "no usable training crops")
    model = seeded_model(config, build_model, start, init).to(device).to(memory_format=torch.channels_last)
    n = len(train)
    per_epoch = math.ceil(n / config.batch_size)
    split = {"rule": SPLIT_RULE, "val_fraction": config.val_fraction, "split_seed": config.split_seed,
             "validation_joints": val_j, "n_train_joints": len(train_j), "n_train_crops": n,
             "n_validation_crops": len(val)}
    checkpoint = {"format": CHECKPOINT_FORMAT, "config": {"network": net_cfg.to_dict(), "training": config.to_dict(),
                                                          "split": split,
                                                          "excluded": [list(e) for e in data.excluded]}}

    def batches(epoch: int, gen: torch.Generator):
        order = torch.randperm(n, generator=gen)
        for b in range(per_epoch):
            idx = order[b * config.batch_size:(b + 1) * config.batch_size]
            params = sample_augmentation(len(idx), gen, config.augment)
            x, y = apply_augmentation(train.images[idx], train.masks[idx].float() / 255.0, params)
            yield x.to(device).contiguous(memory_format=torch.channels_last), y.to(device)

    def summarise(epoch: int, losses: list[float], seconds: float) -> EpochRecord:
        du, dl = evaluate(model, val)
        return EpochRecord(epoch=epoch, loss=losses[0], val_dsc_upper=du, val_dsc_lower=dl, seconds=seconds)

    history = fit(config, model, out=out, prev=prev, checkpoint=checkpoint, record=EpochRecord, per_epoch=per_epoch,
                  batches=batches, loss=lambda batch, gen: (segmentation_loss(model(batch[0]), batch[1]),),
                  summarise=summarise, hooks=Hooks(on_start, on_batch, on_epoch))
    return TrainResult(checkpoint=out, history=history, n_train=n, n_val=len(val), excluded=data.excluded)
