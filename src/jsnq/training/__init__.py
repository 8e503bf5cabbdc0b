"""Training of jsnq's networks: data, augmentation, loops, checkpoints with their config.

This is an edge of the package (like the CLI): it chooses devices and reads files; the
maths it trains lives in :mod:`jsnq.segment.network`.
"""

from __future__ import annotations

from .augment import AugmentParams, AugmentRanges, apply_augmentation, sample_augmentation
from .data import ManifestRow, SegmentationData, load_dataset, read_manifest, split_joints
from .loop import export_weights
from .segment import EpochRecord, TrainConfig, TrainResult, evaluate, train_segmenter

__all__ = [
    "AugmentParams", "AugmentRanges", "apply_augmentation", "sample_augmentation",
    "ManifestRow", "SegmentationData", "load_dataset", "read_manifest", "split_joints",
    "EpochRecord", "TrainConfig", "TrainResult", "evaluate", "export_weights", "train_segmenter",
]
