"""Training the finger-joint locator (:class:`~jsnq.hand.network.JointLocator`) on a landmarks folder.

A data folder holds ``landmarks.csv`` (``image``, then ``<name>_x``, ``<name>_y`` per landmark,
full-resolution pixel coordinates, x = column; an empty cell = not annotated) and the images it
names, as ``../shared/data/hand-landmarks`` (left hands, PA, fingers up). Every image is read,
normalised and resized once (:func:`load_landmark_data`), so epochs touch no files.

The split is **by hand** (one image = one hand): a hand is held out iff
``int(sha256(f"{split_seed}:{image id}").hexdigest()[:16], 16) / 2**64 < val_fraction``
(:func:`jsnq.training.data.split_joints`, the rule the segmenter uses for joints).

Each step trains both networks on the same batch of hands:

* **coarse**: the whole hand in the 256-px canvas under a random affine (rotation, log-scale,
  shift, and a left/right mirror that turns a left hand into a right one, the landmark names
  kept anatomical) and random intensities (window, gamma, contrast, brightness, blur, noise);
* **fine**: ``patches_per_hand`` 64-px patches per hand, each around one joint's true
  position displaced by a random offset (about the coarse stage's error), with its own
  rotation, scale, mirror and intensities; the loss reads only that joint's channel.

Loss: foreground-weighted mean squared error of the heatmaps against Gaussians of peak 1
(weight ``1 + fg_weight`` where the target exceeds 0.05). AdamW, linear warm-up and cosine
decay (:func:`jsnq.training.loop.lr_at`). Seeded: the initialisation comes from ``seed``,
every epoch's order and augmentation from ``torch.Generator().manual_seed(f(seed, epoch))``, so
an interrupted run resumed from its checkpoint continues as it would have.

Checkpoints (``torch.save``, readable with ``torch.load(weights_only=True)``)::

    {"format", "jsnq_version", "config": {"network", "training", "split"}, "state_dict",
     "epoch", "optimizer", "history"}

:func:`jsnq.training.loop.export_weights` strips the optimizer state for shipping.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import JsnqInputError
from ..hand.locate import find_joints, intensity_window
from ..hand.network import (CHECKPOINT_FORMAT, LocatorConfig, apply_affine, build_locator, fit_affine,
                            gaussian_heatmaps, invert_affine, warp)
from ..hand.types import JOINT_NAMES
from ..io import load_image
from .data import data_file, split_joints
from .loop import (EpochSummary, Hooks, RunConfig, RunResult, check_device, fit, read_checkpoint, resume_run,
                   seeded_model)
from .photometric import PhotometricParams, PhotometricRanges, apply_photometric, sample_photometric

__all__ = ["LANDMARKS_FILE", "SPLIT_RULE", "LandmarkData", "LocateAugment", "LocateTrainConfig",
           "LocateEpochRecord", "LocateTrainResult", "read_landmarks", "load_landmark_data", "train_locator",
           "LocateDraw", "sample_locate_batch", "apply_locate_batch", "evaluate_locator", "heatmap_loss"]

LANDMARKS_FILE = "landmarks.csv"
SPLIT_RULE = ("validation iff int(sha256(f'{split_seed}:{hand_id}').hexdigest()[:16], 16) / 2**64 "
              "< val_fraction (hand_id = image file name without suffix; if that selects no hand: the "
              "hand with the smallest hash)")
#: Landmarks that define the millimetre scale of the atlas (wrist width = 50 mm, Payer et al.).
WRIST = ("carpal01", "carpal05")
WRIST_MM = 50.0


# -- data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LandmarkData:
    """Preloaded hands.

    Attributes:
        ids: hand ids (image names without suffix).
        frames: per hand ``float16 (1, 1, h, w)``: the image normalised, resized so that its
            long side is ``fine_frame`` (the fine network's source).
        halves: per hand ``float32 (1, 1, h/2, w/2)``: the same at half size (the coarse source).
        points: ``float64 (N, K, 2)`` landmarks (x, y) in frame pixels, NaN where not annotated.
        names: the K landmark names (the coarse network's channels).
        mm_per_frame_px: ``(N,)`` millimetres per frame pixel (wrist convention), NaN if unknown.
        scale: ``(N,)`` frame px per input px.
        paths: the image files; raw_points: ``(N, K, 2)`` landmarks in input pixels.
    """

    ids: tuple[str, ...]
    frames: tuple[torch.Tensor, ...] = field(repr=False)
    halves: tuple[torch.Tensor, ...] = field(repr=False)
    points: torch.Tensor = field(repr=False)
    names: tuple[str, ...]
    mm_per_frame_px: np.ndarray = field(repr=False)
    scale: np.ndarray = field(repr=False)
    paths: tuple[str, ...] = ()
    raw_points: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, ids: Sequence[str]) -> "LandmarkData":
        keep = set(ids)
        idx = [i for i, h in enumerate(self.ids) if h in keep]
        pick = lambda seq: tuple(seq[i] for i in idx)  # noqa: E731
        return LandmarkData(pick(self.ids), pick(self.frames), pick(self.halves), self.points[idx], self.names,
                            self.mm_per_frame_px[idx], self.scale[idx], pick(self.paths),
                            None if self.raw_points is None else self.raw_points[idx])


def read_landmarks(folder: str | os.PathLike, names: Sequence[str]) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Read ``folder/landmarks.csv``.

    Args:
        folder: the data folder.
        names: the landmarks wanted (each needs ``<name>_x`` and ``<name>_y`` columns).

    Returns:
        ``(image paths, points (N, K, 2) in input pixels with NaN where empty, wrist (N, 2, 2)
        or NaN when the wrist landmarks are absent)``.

    Raises:
        JsnqInputError: missing folder, file or column, no rows, a missing image, a bad number.
    """
    root, path = data_file(folder, LANDMARKS_FILE, "landmarks file")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [(h or "").strip() for h in (reader.fieldnames or [])]
        need = ["image", *[f"{n}_{c}" for n in names for c in "xy"]]
        missing = [c for c in need if c not in header]
        if missing:
            raise JsnqInputError(path, f"missing column(s) {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
        rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
    rows = [r for r in rows if r.get("image")]
    if not rows:
        raise JsnqInputError(path, "no images listed")

    def num(r: dict[str, str], col: str, line: int) -> float:
        v = r.get(col, "")
        if v == "":
            return float("nan")
        try:
            return float(v)
        except ValueError:
            raise JsnqInputError(f"{path} line {line}", f"{col} is not a number: {v!r}") from None

    paths, pts, wrist = [], [], []
    for line, r in enumerate(rows, start=2):
        p = root / r["image"]
        if not p.is_file():
            raise JsnqInputError(p, f"image file not found (listed in {LANDMARKS_FILE} line {line})")
        paths.append(p)
        pts.append([[num(r, f"{n}_x", line), num(r, f"{n}_y", line)] for n in names])
        wrist.append([[num(r, f"{n}_x", line), num(r, f"{n}_y", line)] for n in WRIST])
    return paths, np.asarray(pts, np.float64), np.asarray(wrist, np.float64)


def load_landmark_data(folder: str | os.PathLike, network: LocatorConfig) -> LandmarkData:
    """Read every hand once: normalised, resized to the fine frame and to half of it."""
    names = network.coarse_landmarks
    paths, pts, wrist = read_landmarks(folder, names)
    frames, halves, scale, mm = [], [], [], []
    for p in paths:
        a = load_image(p).array
        h, w = a.shape
        f = network.fine_frame / max(h, w)
        lo, hi = intensity_window(a, network.percentiles)
        t = torch.from_numpy((a - lo) / (hi - lo if hi > lo else 1.0))[None, None]
        size = (max(1, round(h * f)), max(1, round(w * f)))
        fr = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)
        frames.append(fr.to(torch.float16))
        halves.append(F.avg_pool2d(fr, 2, ceil_mode=True))
        scale.append(size[1] / w)
    scale_a = np.asarray(scale)
    width_px = np.linalg.norm(wrist[:, 0] - wrist[:, 1], axis=-1)
    mm = WRIST_MM / (width_px * scale_a)
    frame_pts = (pts + 0.5) * scale_a[:, None, None] - 0.5
    ids = tuple(p.stem for p in paths)
    return LandmarkData(ids, tuple(frames), tuple(halves), torch.from_numpy(frame_pts), tuple(names), mm, scale_a,
                        tuple(str(p) for p in paths), pts)


# -- augmentation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocateAugment:
    """Ranges of the random transforms (uniform unless stated).

    Attributes:
        rotation_deg: maximum absolute rotation (coarse view and patches).
        scale: ``(low, high)`` magnification of the coarse view, log-uniform.
        shift: maximum shift of the coarse view, fraction of the canvas.
        patch_scale: ``(low, high)`` magnification of the patches, log-uniform.
        patch_offset_px: SD of the patch centre's offset from the joint, frame pixels
            (clipped at 2.5 SD).
        flip_probability: probability of a left/right mirror (a right hand).
        window_low, window_high: the intensity window ``[low, high]`` mapped to [0, 1]
            (clipped), each drawn from its range: a high low end turns a grey background black.
        gamma_log: maximum absolute log of the gamma exponent.
        contrast, brightness: gain range and maximum absolute offset after the window.
        blur_sigma: ``(low, high)`` SD in pixels of a Gaussian blur (resolution).
        noise_std: ``(low, high)`` SD of Gaussian noise.
    """

    rotation_deg: float = 30.0
    scale: tuple[float, float] = (0.7, 1.25)
    shift: float = 0.12
    patch_scale: tuple[float, float] = (0.8, 1.25)
    patch_offset_px: float = 6.0
    flip_probability: float = 0.5
    window_low: tuple[float, float] = (-0.15, 0.45)
    window_high: tuple[float, float] = (0.8, 1.2)
    gamma_log: float = 0.5
    contrast: tuple[float, float] = (0.75, 1.25)
    brightness: float = 0.1
    blur_sigma: tuple[float, float] = (0.0, 1.5)
    noise_std: tuple[float, float] = (0.0, 0.03)

    @property
    def photometric(self) -> PhotometricRanges:
        """The photometric ranges (window, gamma, contrast, brightness, blur, noise)."""
        return PhotometricRanges(gamma_log=self.gamma_log, contrast=self.contrast, brightness=self.brightness,
                                 noise_std=self.noise_std, window_low=self.window_low,
                                 window_high=self.window_high, blur_sigma=self.blur_sigma)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LocateAugment":
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


def _u(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)


@dataclass(frozen=True)
class _Pose:
    """Random affines of ``n`` views: mirror, rotation (rad), magnification, and for the coarse
    views a shift (canvas px, ``(n, 2)``) or for the patches the landmark picked and the centre's
    offset from it (frame px, ``(n, 2)``)."""

    flip: torch.Tensor
    angle: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor | None = None
    pick: torch.Tensor | None = None
    offset: torch.Tensor | None = None


@dataclass(frozen=True)
class LocateDraw:
    """Everything random about one batch (:func:`sample_locate_batch`): the coarse views' poses,
    each hand's patches, and the photometric parameters of both."""

    coarse: _Pose
    coarse_photometric: PhotometricParams
    patches: tuple[_Pose, ...]
    patch_photometric: PhotometricParams


def sample_locate_batch(data: LandmarkData, idx: Sequence[int], cfg: LocatorConfig, aug: LocateAugment,
                        patches_per_hand: int, gen: torch.Generator) -> LocateDraw:
    """Draw a batch's augmentation for the hands ``idx`` from ``gen`` (the only randomness):
    a pose per coarse view, ``patches_per_hand`` joints per hand among the annotated ones with
    the pose of each patch, and photometric parameters for views and patches."""
    b = len(idx)
    flips = torch.rand(b, generator=gen) < aug.flip_probability
    angles = _u(b, -1, 1, gen) * math.radians(aug.rotation_deg)
    scales = torch.exp(_u(b, math.log(aug.scale[0]), math.log(aug.scale[1]), gen))
    shifts = _u(2 * b, -aug.shift, aug.shift, gen).view(b, 2) * cfg.coarse_size
    coarse = _Pose(flips, angles, scales, shift=shifts)
    coarse_photometric = sample_photometric(b, gen, aug.photometric)
    fine_idx = torch.tensor([data.names.index(n) for n in cfg.fine_landmarks])
    patches = []
    for i in idx:
        ok = torch.nonzero(~torch.isnan(data.points[i][fine_idx]).any(-1))[:, 0]
        if not len(ok):  # no joint annotated: no patch, nothing drawn
            none = torch.zeros(0, dtype=torch.float64)
            patches.append(_Pose(torch.zeros(0, dtype=torch.bool), none, none, pick=ok, offset=none.view(0, 2)))
            continue
        pick = ok[torch.randperm(len(ok), generator=gen)[:patches_per_hand]]
        m = len(pick)
        off = (torch.randn(m, 2, generator=gen, dtype=torch.float64) * aug.patch_offset_px).clamp(
            -2.5 * aug.patch_offset_px, 2.5 * aug.patch_offset_px)
        scale = torch.exp(_u(m, math.log(aug.patch_scale[0]), math.log(aug.patch_scale[1]), gen))
        angle = _u(m, -1, 1, gen) * math.radians(aug.rotation_deg)
        patches.append(_Pose(torch.rand(m, generator=gen) < aug.flip_probability, angle, scale, pick=pick, offset=off))
    patch_photometric = sample_photometric(sum(len(p.flip) for p in patches), gen, aug.photometric)
    return LocateDraw(coarse, coarse_photometric, tuple(patches), patch_photometric)


@dataclass(frozen=True)
class _Batch:
    coarse: torch.Tensor   # (B, 1, S, S)
    coarse_target: torch.Tensor  # (B, K, S / coarse_stride, S / coarse_stride)
    patches: torch.Tensor  # (P, 1, s, s)
    patch_target: torch.Tensor  # (P, 1, s / fine_stride, s / fine_stride)
    patch_channel: torch.Tensor  # (P,) fine channel index


def apply_locate_batch(data: LandmarkData, idx: Sequence[int], cfg: LocatorConfig, draw: LocateDraw) -> _Batch:
    """The coarse views and fine patches of the hands ``idx`` under ``draw``, with their
    target heatmaps (deterministic)."""
    size = cfg.coarse_size
    views, cpts = [], []
    pose = draw.coarse
    for j, i in enumerate(idx):
        half = data.halves[i]
        h, w = half.shape[-2:]
        centre = torch.tensor([[(w - 1) / 2.0, (h - 1) / 2.0]], dtype=torch.float64)
        A = fit_affine(pose.scale[j:j + 1] * (size / max(h, w)), pose.angle[j:j + 1], centre, size,
                       flip=pose.flip[j:j + 1])
        # the shift moves the content: output (x + shift) shows what x showed
        A[:, :, 2] -= (A[:, :, :2] @ pose.shift[j].view(1, 2, 1))[:, :, 0]
        views.append(warp(half, A, size))
        hp = (data.points[i][None] + 0.5) / 2 - 0.5  # half-frame pixels
        vp = apply_affine(invert_affine(A), hp)  # view pixels
        cpts.append((vp + 0.5) / cfg.coarse_stride - 0.5)  # heatmap pixels
    cp = torch.cat(cpts)
    valid = ~torch.isnan(cp).any(-1)
    target = gaussian_heatmaps(torch.nan_to_num(cp), valid, cfg.coarse_out, cfg.coarse_sigma)
    coarse = apply_photometric(torch.cat(views), draw.coarse_photometric)

    fine_idx = torch.tensor([data.names.index(n) for n in cfg.fine_landmarks])
    ps, pt, pc = [], [], []
    s = cfg.fine_size
    for i, patch in zip(idx, draw.patches):
        if not len(patch.pick):
            continue
        pts = data.points[i][fine_idx][patch.pick]
        A = fit_affine(patch.scale, patch.angle, pts + patch.offset, s, flip=patch.flip)
        ps.append(warp(data.frames[i].float(), A, s))
        local = apply_affine(invert_affine(A), pts[:, None])  # (m, 1, 2) patch pixels
        local = (local + 0.5) / cfg.fine_stride - 0.5  # heatmap pixels
        pt.append(gaussian_heatmaps(local, torch.ones(len(pts), 1, dtype=torch.bool), cfg.fine_out, cfg.fine_sigma))
        pc.append(patch.pick)
    patches = apply_photometric(torch.cat(ps), draw.patch_photometric)
    return _Batch(coarse, target, patches, torch.cat(pt), torch.cat(pc))


# -- loss, evaluation ---------------------------------------------------------------------------


def heatmap_loss(pred: torch.Tensor, target: torch.Tensor, *, fg_weight: float = 10.0) -> torch.Tensor:
    """Foreground-weighted MSE: mean of ``(1 + fg_weight [target > 0.05]) (pred - target)^2``."""
    w = 1.0 + fg_weight * (target > 0.05).to(pred.dtype)
    return (w * (pred - target) ** 2).mean()


def evaluate_locator(model: torch.nn.Module, data: LandmarkData, *, mirror: bool = False) -> dict[str, float]:
    """Run :func:`~jsnq.hand.locate.find_joints` on every hand of ``data`` (held out).

    Returns:
        ``{"mean_mm", "within2_pct", "within4_pct", "missing_pct", "side_pct", "no_hand"}`` over
        the 14 joints of every hand (errors in mm by the wrist convention, on hands with
        a wrist; a hand raising "no hand found" counts all its joints missing).
    """
    was = model.training
    model.eval()
    errs, missing, total, side_ok, no_hand = [], 0, 0, 0, 0
    for i in range(len(data)):
        a = load_image(data.paths[i]).array
        truth = data.raw_points[i].copy()
        if mirror:
            a = a[:, ::-1].copy()
            truth[..., 0] = a.shape[1] - 1 - truth[..., 0]
        total += len(JOINT_NAMES)
        try:
            hand = find_joints(a, model=model)
        except JsnqInputError:
            missing += len(JOINT_NAMES)
            no_hand += 1
            continue
        side_ok += hand.side == ("R" if mirror else "L")
        mm_px = data.mm_per_frame_px[i] * data.scale[i]
        for n in JOINT_NAMES:
            t = truth[data.names.index(n)]
            if n not in hand.joints:
                missing += 1
            elif not np.isnan(t).any():
                j = hand.joints[n]
                errs.append(math.hypot(j.x - t[0], j.y - t[1]) * mm_px)
    model.train(was)
    e = np.asarray(errs)
    nan = float("nan")
    return {"mean_mm": float(e.mean()) if len(e) else nan,
            "within2_pct": float((e <= 2).mean() * 100) if len(e) else nan,
            "within4_pct": float((e <= 4).mean() * 100) if len(e) else nan,
            "missing_pct": 100.0 * missing / max(1, total), "side_pct": 100.0 * side_ok / max(1, len(data)),
            "no_hand": float(no_hand)}


# -- the loop -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocateTrainConfig(RunConfig):
    """Options of a training run (stored in the checkpoint).

    Attributes:
        data: the data folder (``landmarks.csv`` + images).
        epochs: passes over the training hands.
        batch_size: hands per step; patches_per_hand: fine patches per hand and step.
        lr, weight_decay, warmup_fraction: AdamW with linear warm-up and cosine decay.
        fg_weight: foreground weight of the heatmap loss; fine_weight: weight of the fine loss.
        seed: initialisation, order and augmentation.
        val_fraction, split_seed: the split by hand (:data:`SPLIT_RULE`).
        val_every: validate (full :func:`~jsnq.hand.locate.find_joints`) every this many
            epochs and after the last one; 0 = only after the last.
        device: "cpu" or "cuda".
        init: the checkpoint a fine-tune started from (set by :func:`train_locator`).
        augment: the augmentation ranges; network: the network's config.
    """

    epochs: int = 120
    batch_size: int = 8
    patches_per_hand: int = 4
    fg_weight: float = 10.0
    fine_weight: float = 1.0
    val_every: int = 10
    init: str | None = None  # the weights a fine-tune started from
    augment: LocateAugment = field(default_factory=LocateAugment)
    network: LocatorConfig = field(default_factory=LocatorConfig)

    NESTED: ClassVar[dict[str, type]] = {"augment": LocateAugment}
    NETWORK: ClassVar[type] = LocatorConfig
    COUNTS: ClassVar[tuple[str, ...]] = ("epochs", "batch_size", "patches_per_hand")

    def __post_init__(self) -> None:
        self.check_run()


@dataclass(frozen=True)
class LocateEpochRecord(EpochSummary):
    """Per-epoch summary: mean losses; validation figures (NaN on epochs not validated); seconds."""

    coarse_loss: float
    fine_loss: float
    val_mean_mm: float
    val_within4_pct: float
    val_missing_pct: float


@dataclass(frozen=True)
class LocateTrainResult(RunResult):
    n_train: int
    n_val: int
    validation_hands: tuple[str, ...]


def train_locator(config: LocateTrainConfig, out: str | os.PathLike, *, resume: str | os.PathLike | None = None,
                  init: str | os.PathLike | None = None,
                  on_start: Callable[[int, int, int], None] | None = None,
                  on_batch: Callable[[int, int, float], None] | None = None,
                  on_epoch: Callable[[LocateEpochRecord], None] | None = None) -> LocateTrainResult:
    """Train (or resume training) the locator and write the checkpoint to ``out`` after every epoch.

    Args:
        config: the run's options. When resuming, the checkpoint's options are used, except
            ``epochs`` (which may extend the run), ``device`` and ``data``.
        out: checkpoint path (its folder must exist).
        resume: a checkpoint of an earlier, interrupted run on the same data and split.
        init: a checkpoint or weights file whose network weights this run starts from (a
            fine-tune: new optimizer, this run's options). Its networks must have the same
            layers (the input and patch sizes may differ: the convolutions do not depend on
            them) and it must have held out the same hands.
        on_start: ``(first_epoch, epochs, batches_per_epoch)`` once the data are loaded.
        on_batch: ``(epoch, batch, loss)`` after each optimisation step.
        on_epoch: after each epoch, with its :class:`LocateEpochRecord`.

    Returns:
        The :class:`LocateTrainResult`.

    Raises:
        JsnqInputError: bad data folder or files; a resume checkpoint that does not match the
            data's split.
    """
    out, config, prev = resume_run(config, out, resume)
    start = None
    if init is not None and resume is None:
        start = read_checkpoint(init)
        config = replace(config, init=os.fspath(init))
    device = check_device(config)
    net_cfg = config.network
    train, val, val_ids = _split_hands(config, load_landmark_data(config.data, net_cfg), prev, resume, start, init)
    model = seeded_model(config, build_locator, start, init).to(device).to(memory_format=torch.channels_last)
    n = len(train)
    per_epoch = math.ceil(n / config.batch_size)
    split = {"rule": SPLIT_RULE, "val_fraction": config.val_fraction, "split_seed": config.split_seed,
             "validation_hands": val_ids, "n_train_hands": n, "n_validation_hands": len(val)}
    checkpoint = {"format": CHECKPOINT_FORMAT,
                  "config": {"network": net_cfg.to_dict(), "training": config.to_dict(), "split": split}}

    def batches(epoch: int, gen: torch.Generator):
        order = torch.randperm(n, generator=gen)
        for b in range(per_epoch):
            idx = order[b * config.batch_size:(b + 1) * config.batch_size].tolist()
            yield apply_locate_batch(train, idx, net_cfg, sample_locate_batch(train, idx, net_cfg, config.augment,
                                                                              config.patches_per_hand, gen))

    def summarise(epoch: int, losses: list[float], seconds: float) -> LocateEpochRecord:
        validate = len(val) and (epoch == config.epochs or (config.val_every and epoch % config.val_every == 0))
        v = evaluate_locator(model, val) if validate else {}
        nan = float("nan")
        return LocateEpochRecord(epoch=epoch, loss=losses[0], coarse_loss=losses[1], fine_loss=losses[2],
                                 val_mean_mm=v.get("mean_mm", nan), val_within4_pct=v.get("within4_pct", nan),
                                 val_missing_pct=v.get("missing_pct", nan), seconds=seconds)

    history = fit(config, model, out=out, prev=prev, checkpoint=checkpoint, record=LocateEpochRecord,
                  per_epoch=per_epoch, batches=batches, loss=lambda batch, gen: _locate_loss(model, batch, config),
                  summarise=summarise, hooks=Hooks(on_start, on_batch, on_epoch))
    return LocateTrainResult(checkpoint=out, history=history, n_train=n, n_val=len(val),
                             validation_hands=tuple(val_ids))


def _split_hands(config: LocateTrainConfig, data: LandmarkData, prev: dict[str, Any] | None,
                 resume: str | os.PathLike | None, start: dict[str, Any] | None, init: str | os.PathLike | None
                 ) -> tuple[LandmarkData, LandmarkData, list[str]]:
    """``(training hands, validation hands, validation ids)``, checked against the split of the
    run resumed from and of the checkpoint a fine-tune starts from."""
    train_ids, val_ids = split_joints(list(data.ids), val_fraction=config.val_fraction, split_seed=config.split_seed)
    if not train_ids:
        raise JsnqInputError(config.data, "no training hands after the split")
    if prev is not None and sorted(prev["config"]["split"]["validation_hands"]) != val_ids:
        raise JsnqInputError(resume, "the checkpoint's validation hands differ from this data's split")
    if start is not None and sorted(start["config"]["split"]["validation_hands"]) != val_ids:
        raise JsnqInputError(init, "it held out other hands than this run's split (a fine-tune would see them)")
    return data.subset(train_ids), data.subset(val_ids), val_ids


def _locate_loss(model: torch.nn.Module, batch: _Batch, config: LocateTrainConfig
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(total, coarse, fine)`` heatmap losses of a batch; the fine loss reads only each patch's own channel."""
    device = next(model.parameters()).device
    cl = torch.channels_last
    lc = heatmap_loss(model.coarse(batch.coarse.to(device).contiguous(memory_format=cl)),
                      batch.coarse_target.to(device), fg_weight=config.fg_weight)
    fh = model.fine(batch.patches.to(device).contiguous(memory_format=cl))
    own = fh[torch.arange(fh.shape[0], device=device), batch.patch_channel.to(device)][:, None]
    lf = heatmap_loss(own, batch.patch_target.to(device), fg_weight=config.fg_weight)
    return lc + config.fine_weight * lf, lc, lf
