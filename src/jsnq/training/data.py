"""Training data for the bone segmenter: manifest, split by joint, preloading.

A data folder holds ``manifest.csv`` with the columns ``image``, ``upper_mask`` and
``lower_mask`` (paths relative to the folder) and optionally ``joint_id`` (default: the
image's parent folder), as in ``../shared/data/finger-joints``. Masks are images of the
crop's size whose non-zero pixels (above half their maximum) are bone.

Everything is read and resized once (:func:`load_dataset`), so epochs touch no files.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import JsnqInputError
from ..io import load_image
from ..segment.network import preprocess

__all__ = ["ManifestRow", "SegmentationData", "data_file", "read_manifest", "split_joints", "load_dataset",
           "MANIFEST", "REQUIRED_COLUMNS", "SPLIT_RULE"]

MANIFEST = "manifest.csv"
REQUIRED_COLUMNS = ("image", "upper_mask", "lower_mask")
SPLIT_RULE = ("validation iff int(sha256(f'{split_seed}:{joint_id}').hexdigest()[:16], 16) / 2**64 "
              "< val_fraction (if that selects no joint: the joint with the smallest hash)")


@dataclass(frozen=True)
class ManifestRow:
    """One crop: absolute paths of the image and its two masks, and its joint."""

    joint_id: str
    image: Path
    upper_mask: Path
    lower_mask: Path
    joint: str = ""


def data_file(folder: str | os.PathLike, name: str, what: str) -> tuple[Path, Path]:
    """``(folder, folder / name)`` for a training data folder and its index file (a manifest, the
    landmarks), or a one-line JsnqInputError naming what is missing."""
    root = Path(folder)
    if not root.is_dir():
        raise JsnqInputError(root, "data folder not found")
    path = root / name
    if not path.is_file():
        raise JsnqInputError(path, f"{what} not found (the data folder needs a {name})")
    return root, path


def read_manifest(folder: str | os.PathLike) -> list[ManifestRow]:
    """Read ``folder/manifest.csv``.

    Raises:
        JsnqInputError: missing folder or manifest, missing columns, no rows, an empty cell,
            or a listed file that does not exist (each a one-line message naming it).
    """
    root, path = data_file(folder, MANIFEST, "manifest")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [(h or "").strip() for h in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise JsnqInputError(path, f"missing column(s) {', '.join(missing)} (need "
                                     f"{', '.join(REQUIRED_COLUMNS)}; optional joint_id)")
            raw = [{(k or "").strip(): (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
    except (UnicodeDecodeError, csv.Error) as err:
        raise JsnqInputError(path, f"cannot read CSV: {' '.join(str(err).split())}") from None
    raw = [r for r in raw if any(r.values())]
    if not raw:
        raise JsnqInputError(path, "no crops listed")
    rows = []
    for number, r in enumerate(raw, start=2):  # line 1 is the header
        for col in REQUIRED_COLUMNS:
            if not r.get(col):
                raise JsnqInputError(f"{path} line {number}", f"empty {col}")
        files = {col: root / r[col] for col in REQUIRED_COLUMNS}
        for col, f in files.items():
            if not f.is_file():
                raise JsnqInputError(f, f"{col.replace('_', ' ')} file not found (listed in {path.name} line {number})")
        joint = r.get("joint_id") or str(PurePosixPath(r["image"].replace("\\", "/")).parent)
        rows.append(ManifestRow(joint, files["image"], files["upper_mask"], files["lower_mask"], r.get("joint", "")))
    return rows


def _hash01(joint_id: str, split_seed: int) -> float:
    return int(hashlib.sha256(f"{split_seed}:{joint_id}".encode()).hexdigest()[:16], 16) / 2.0**64


def is_validation(joint_id: str, *, val_fraction: float, split_seed: int = 0) -> bool:
    """The split rule (:data:`SPLIT_RULE`): a seeded hash of the joint, the same on every machine."""
    return _hash01(joint_id, split_seed) < val_fraction


def split_joints(joint_ids: Sequence[str], *, val_fraction: float = 0.15, split_seed: int = 0
                 ) -> tuple[list[str], list[str]]:
    """Sorted ``(train_joints, validation_joints)``: every joint lies on exactly one side.

    With ``val_fraction > 0`` and at least two joints, a hash that happens to select no joint
    (tiny data sets) falls back to the joint with the smallest hash, so validation is never empty.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    joints = sorted(set(joint_ids))
    val = [j for j in joints if is_validation(j, val_fraction=val_fraction, split_seed=split_seed)]
    if not val and val_fraction > 0 and len(joints) >= 2:
        val = [min(joints, key=lambda j: _hash01(j, split_seed))]
    vs = set(val)
    return [j for j in joints if j not in vs], val


@dataclass(frozen=True)
class SegmentationData:
    """Preloaded crops, resized once.

    Attributes:
        images: ``float32 (N, 1, S, S)``, the network input (:func:`~jsnq.segment.network.preprocess`).
        masks: ``uint8 (N, 2, T, T)``, upper and lower bone, 0..255 (area-resized when the
            crop is not ``T`` x ``T``; for 256-px crops and ``T = 256`` they are the masks as drawn).
        rows: the manifest rows, in the same order.
        excluded: ``(image path, reason)`` of crops left out.
    """

    images: torch.Tensor = field(repr=False)
    masks: torch.Tensor = field(repr=False)
    rows: tuple[ManifestRow, ...]
    excluded: tuple[tuple[str, str], ...] = ()

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, joints: Sequence[str]) -> "SegmentationData":
        keep = set(joints)
        idx = [i for i, r in enumerate(self.rows) if r.joint_id in keep]
        t = torch.as_tensor(idx, dtype=torch.long)
        return SegmentationData(self.images[t], self.masks[t], tuple(self.rows[i] for i in idx), self.excluded)


def _read_mask(path: Path, shape: tuple[int, int], image: Path) -> np.ndarray:
    try:
        a = load_image(path).array
    except JsnqInputError as err:
        if "blank" in err.problem and "constant value 0" in err.problem:
            return np.zeros(shape, bool)  # an empty mask: caught below with a clear reason
        raise
    if a.shape != shape:
        raise JsnqInputError(path, f"mask is {a.shape[0]}x{a.shape[1]} but its image {image.name} is "
                             f"{shape[0]}x{shape[1]}")
    return a > 0.5 * float(a.max())


def load_dataset(rows: Sequence[ManifestRow], *, input_size: int, target_size: int,
                 percentiles: tuple[float, float] = (0.5, 99.5), max_overlap: float = 0.8) -> SegmentationData:
    """Read, check and resize every crop once.

    Args:
        rows: from :func:`read_manifest`.
        input_size: side of the network input ``S``.
        target_size: side ``T`` of the masks the loss compares with (the crop size for 256-px crops).
        percentiles: intensity normalisation (see :func:`~jsnq.segment.network.preprocess`).
        max_overlap: crops whose two masks overlap by more than this fraction of the smaller
            one are left out as annotation errors (in the shared data, 6 crops whose "upper"
            mask outlines the lower bone).

    Raises:
        JsnqInputError: unreadable image or mask, a mask of another size than its image, an
            empty mask.
    """
    images, masks, kept, excluded = [], [], [], []
    for r in rows:
        img = load_image(r.image).array
        up = _read_mask(r.upper_mask, img.shape, r.image)
        lo = _read_mask(r.lower_mask, img.shape, r.image)
        for m, name, path in ((up, "upper", r.upper_mask), (lo, "lower", r.lower_mask)):
            if not m.any():
                raise JsnqInputError(path, f"{name} mask is empty (no bone pixels)")
        overlap = float((up & lo).sum()) / float(min(up.sum(), lo.sum()))
        if overlap > max_overlap:
            excluded.append((str(r.image), f"masks overlap by {overlap:.0%} of the smaller one "
                                           f"(> {max_overlap:.0%}): annotation error"))
            continue
        images.append(preprocess(img, size=input_size, percentiles=percentiles))
        m = torch.from_numpy(np.stack([up, lo]).astype(np.float32))[None]
        if m.shape[-2:] != (target_size, target_size):
            m = F.interpolate(m, size=(target_size, target_size), mode="area")
        masks.append(torch.round(m[0] * 255.0).to(torch.uint8))
        kept.append(r)
    if not kept:
        raise JsnqInputError(rows[0].image.parent if rows else "data", "no usable crops")
    return SegmentationData(torch.from_numpy(np.stack(images))[:, None].contiguous(), torch.stack(masks),
                            tuple(kept), tuple(excluded))
