"""Training the registration network (:class:`~jsnq.register.network.RegistrationNet`).

Every batch mixes two kinds of pairs, all built on the fly at the network's resolution from
crops preloaded once (:func:`~jsnq.training.data.load_dataset`), training joints only:

* **synthetic pairs**: a real crop is posed by a random augmentation ``A`` (rotation,
  scale, shift, left/right flip) to make the baseline; the follow-up moves its upper and its
  lower side by known similarities ``U`` and ``L`` (a common motion plus a relative one),
  composited with a smooth weight across the joint space. The truth is known, so these
  carry a supervised term: the displacement error of the predicted transform over each
  bone side, and that of the upper bone's motion relative to the lower one over the joint
  (Huber, network pixels), plus the unsupervised term below.
* **real pairs**: two visits of the same training joint, both posed by the same random
  augmentation plus an extra random motion of the follow-up. Only the unsupervised term:
  the paper's masked similarity loss, ``1 - NCC`` between the baseline and the follow-up
  warped through each bone's transform, over that bone's side (without the band around the
  joint space that belongs to neither bone; NCC makes it exposure-invariant).

Both passes of the cascade are trained, each with its own network: the first on the pair as
is, the second on the follow-up warped bone by bone from a start near the truth (synthetic
pairs) or from the first pass's detached answer (real pairs); see :func:`_training_passes`.
Intensity augmentation: gamma, contrast, brightness and Gaussian noise, independently per image
(:mod:`jsnq.training.photometric`).

Seeded like the segmenter: the initialisation from ``seed``, each epoch's draws from
``torch.Generator().manual_seed(f(seed, epoch))``, so a resumed run continues exactly.
Checkpoints hold ``{"format", "jsnq_version", "config": {"network", "training", "split"},
"state_dict", "epoch", "optimizer", "history"}``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Callable, ClassVar

import numpy as np
import torch

from ..errors import JsnqInputError
from ..phantom import side_weight
from ..labels import labels_from_masks, side_masks
from ..register.network import (CHECKPOINT_FORMAT, RegistrationNet, RegNetConfig, build_regnet, cascade,
                                composite, compose_params, matrix_to_params, params_to_matrix, warp)
from .data import SPLIT_RULE, load_dataset
from .photometric import PhotometricParams, PhotometricRanges, apply_photometric, sample_photometric
from .loop import EpochSummary, Hooks, RunConfig, RunResult, fit, read_init, seeded_model, start_run

__all__ = ["RegTrainConfig", "RegEpochRecord", "RegTrainResult", "PairData", "prepare_pairs", "MotionRanges", "Batch",
           "PairDraw", "sample_pair_draw", "apply_pair_draw", "sample_batch",
           "registration_loss", "evaluate_regnet", "train_registration"]


@dataclass(frozen=True)
class MotionRanges:
    """Ranges (uniform) of the synthetic motions and augmentations, in crop pixels of a
    256-px crop (halved at the 128-px network input) and degrees.

    Attributes:
        rotation_deg, log_scale, shift_px: the pose augmentation of the baseline and the
            common motion of both bones (each drawn independently).
        relative_rotation_deg, relative_log_scale, relative_shift_px, narrowing_px: the
            motion of one bone relative to the other (half to each, opposite signs).
        flip_probability: left/right flip of the pair.
        gain, offset, gamma_log, noise: photometric, per image (:attr:`photometric`).
    """

    rotation_deg: float = 20.0
    log_scale: float = 0.14
    shift_px: float = 20.0
    relative_rotation_deg: float = 12.0
    relative_log_scale: float = 0.03
    relative_shift_px: float = 3.0
    narrowing_px: float = 4.0
    flip_probability: float = 0.5
    gain: float = 0.2
    offset: float = 0.05
    gamma_log: float = 0.2
    noise: float = 0.05

    @property
    def photometric(self) -> PhotometricRanges:
        """The photometric ranges: contrast ``1 +- gain``, brightness ``+- offset``, noise SD up to ``noise``."""
        return PhotometricRanges(gamma_log=self.gamma_log, contrast=(1.0 - self.gain, 1.0 + self.gain),
                                 brightness=self.offset, noise_std=(0.0, self.noise))


@dataclass(frozen=True)
class RegTrainConfig(RunConfig):
    """Options of a registration training run (stored in the checkpoint)."""

    batch_size: int = 32
    steps_per_epoch: int = 200
    real_fraction: float = 0.5
    supervised_weight: float = 1.0
    crop_px: int = 256
    max_overlap: float = 0.8
    gap_exclusion_px: float = 3.0
    motion: MotionRanges = field(default_factory=MotionRanges)
    network: RegNetConfig = field(default_factory=RegNetConfig)
    init: str | None = None  # the weights a fine-tune started from

    NESTED: ClassVar[dict[str, type]] = {"motion": MotionRanges}
    NETWORK: ClassVar[type] = RegNetConfig
    COUNTS: ClassVar[tuple[str, ...]] = ("epochs", "steps_per_epoch", "batch_size")

    def __post_init__(self) -> None:
        self.check_run()
        if not 0.0 <= self.real_fraction <= 1.0:
            raise ValueError(f"real_fraction must be in [0, 1], got {self.real_fraction}")


@dataclass(frozen=True)
class RegEpochRecord(EpochSummary):
    """Per-epoch summary: mean loss; validation narrowing RMS error (crop px) after pass 1
    and after the last pass on synthetic pairs; validation NCC on real pairs; seconds."""

    val_rms_pass1_px: float
    val_rms_px: float
    val_real_ncc: float


@dataclass(frozen=True)
class RegTrainResult(RunResult):
    n_train_crops: int
    n_train_pairs: int
    n_val_crops: int


@dataclass(frozen=True)
class PairData:
    """Crops of some joints at the network's resolution.

    Attributes:
        images: ``(N, 1, S, S)`` in ~[0, 1].
        labels: ``(N, 2, S, S)`` upper side, lower side (0/1), split on the joint-space midline.
        loss_masks: ``(N, 2, S, S)`` the sides without the band around the joint space.
        weights: ``(N, 1, S, S)`` smooth weight of the upper bone's motion when compositing.
        pairs: ``(P, 2)`` indices of ordered visit pairs of the same joint.
        joints: joint id of each crop.
    """

    images: torch.Tensor = field(repr=False)
    labels: torch.Tensor = field(repr=False)
    loss_masks: torch.Tensor = field(repr=False)
    weights: torch.Tensor = field(repr=False)
    pairs: torch.Tensor = field(repr=False)
    joints: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.joints)


def prepare_pairs(data_images: torch.Tensor, masks: torch.Tensor, joints: tuple[str, ...], *,
                  gap_exclusion_px: float, scale: float) -> PairData:
    """Labels, loss masks, blend weights and visit pairs from preloaded crops and bone masks
    (masks ``uint8 (N, 2, S, S)`` at the network's resolution; ``scale`` = network px per crop px)."""
    labels, loss, weights = [], [], []
    for m in masks.numpy():
        lab = labels_from_masks(m[0] >= 128, m[1] >= 128)
        up, lo = side_masks(lab, gap_exclusion_px * scale)
        labels.append(np.stack([lab == 1, lab == 2]))
        loss.append(np.stack([up, lo]))
        weights.append(side_weight(lab, max(4.0 * scale, 1.0))[None])
    by_joint: dict[str, list[int]] = {}
    for i, j in enumerate(joints):
        by_joint.setdefault(j, []).append(i)
    pairs = [(a, b) for idx in by_joint.values() for a in idx for b in idx if a != b]
    return PairData(data_images, torch.from_numpy(np.stack(labels)).float(), torch.from_numpy(np.stack(loss)).float(),
                    torch.from_numpy(np.stack(weights)).float(),
                    torch.as_tensor(pairs, dtype=torch.long).reshape(-1, 2), tuple(joints))


def _uniform(n: int, bound: float, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=gen, dtype=torch.float64) * 2.0 - 1.0) * bound


def _random_params(n: int, rot_deg: float, log_scale: float, shift: float, gen: torch.Generator) -> torch.Tensor:
    return torch.stack([_uniform(n, log_scale, gen), _uniform(n, math.radians(rot_deg), gen),
                        _uniform(n, shift, gen), _uniform(n, shift, gen)], -1)


@dataclass(frozen=True)
class Batch:
    """Network inputs and what the losses need; ``truth`` is NaN for real pairs."""

    followup: torch.Tensor
    baseline: torch.Tensor
    labels: torch.Tensor
    loss_masks: torch.Tensor
    truth: torch.Tensor  # (N, 2, 4) network px, NaN where unknown

    def to(self, device: torch.device) -> "Batch":
        return Batch(*(t.to(device) for t in (self.followup, self.baseline, self.labels, self.loss_masks, self.truth)))


@dataclass(frozen=True)
class PairDraw:
    """Everything random about one batch (:func:`sample_pair_draw`). Motions are
    ``(log_scale, angle, tx, ty)`` rows in network px about the centre.

    Attributes:
        pose: ``(N, 4)`` the baseline's pose; flip: ``(N,)`` its left/right mirror.
        sources: ``(S,)`` the crop of each synthetic pair; pairs: ``(R, 2)`` the visits of each real pair.
        common, relative: ``(S, 4)`` the synthetic follow-ups' common motion and the relative one
            (half to each bone).
        extra: ``(R, 4)`` the real follow-ups' extra motion.
        followup_photometric, baseline_photometric: per image of the batch (synthetic pairs first).
    """

    pose: torch.Tensor
    flip: torch.Tensor
    sources: torch.Tensor
    pairs: torch.Tensor
    common: torch.Tensor
    relative: torch.Tensor
    extra: torch.Tensor
    followup_photometric: PhotometricParams
    baseline_photometric: PhotometricParams


def sample_pair_draw(data: PairData, n: int, gen: torch.Generator, ranges: MotionRanges, *, real_fraction: float,
                     scale: float) -> PairDraw:
    """Draw a batch of ``n`` pairs from ``gen`` (the only randomness): ``round(n * real_fraction)``
    real visit pairs (when the data have any), the rest synthetic."""
    n_real = int(round(n * real_fraction)) if len(data.pairs) else 0
    n_syn = n - n_real
    r = ranges
    pose = _random_params(n, r.rotation_deg, r.log_scale, r.shift_px * scale, gen)
    flip = torch.rand(n, generator=gen) < r.flip_probability
    sources = torch.randint(len(data), (n_syn,), generator=gen)
    pairs = data.pairs[torch.randint(len(data.pairs), (n_real,), generator=gen)] if n_real else \
        torch.zeros((0, 2), dtype=torch.long)
    common = _random_params(n_syn, r.rotation_deg, r.log_scale, r.shift_px * scale, gen)
    relative = torch.stack([_uniform(n_syn, r.relative_log_scale, gen),
                            _uniform(n_syn, math.radians(r.relative_rotation_deg), gen),
                            _uniform(n_syn, r.relative_shift_px * scale, gen),
                            _uniform(n_syn, r.narrowing_px * scale, gen)], -1)
    extra = _random_params(n_real, r.rotation_deg / 2, r.log_scale / 2, r.shift_px * scale / 2, gen)
    followup_photometric = sample_photometric(n, gen, r.photometric)
    return PairDraw(pose, flip, sources, pairs, common, relative, extra, followup_photometric,
                    sample_photometric(n, gen, r.photometric))


def apply_pair_draw(data: PairData, draw: PairDraw) -> Batch:
    """The batch ``draw`` describes (deterministic): baselines posed, synthetic follow-ups
    moved bone by bone with their truth, real follow-ups posed plus their extra motion."""
    size = data.images.shape[-1]
    c = ((size - 1) / 2.0, (size - 1) / 2.0)
    n_syn = len(draw.sources)
    # Pose of the baseline: A maps baseline pixels to source pixels (with an optional flip).
    f_mat = torch.eye(3, dtype=torch.float64).repeat(len(draw.flip), 1, 1)
    f_mat[draw.flip, 0, 0] = -1.0
    f_mat[draw.flip, 0, 2] = size - 1.0
    a_mat = f_mat @ params_to_matrix(draw.pose, c)
    base_idx = torch.cat([draw.sources, draw.pairs[:, 0]])
    img = data.images[base_idx]
    af = a_mat.float()
    baseline = warp(img, af, padding_mode="reflection")
    labels = (warp(data.labels[base_idx], af) > 0.5).float()
    loss_masks = (warp(data.loss_masks[base_idx], af) > 0.99).float()
    # Synthetic follow-ups: common motion plus a relative one, half to each bone.
    cm = params_to_matrix(draw.common, c)
    up_m = cm @ params_to_matrix(draw.relative / 2, c)
    lo_m = cm @ params_to_matrix(-draw.relative / 2, c)
    syn_fol = _move_bones(img[:n_syn], data.weights[draw.sources], a_mat[:n_syn], up_m, lo_m)
    truth_syn = torch.stack([matrix_to_params(up_m, c), matrix_to_params(lo_m, c)], 1)
    # Real follow-ups: the other visit, same pose plus an unknown extra motion.
    extra = params_to_matrix(draw.extra, c)
    real_fol = warp(data.images[draw.pairs[:, 1]], (a_mat[n_syn:] @ extra).float(), padding_mode="reflection")
    followup = torch.cat([syn_fol, real_fol])
    truth = torch.cat([truth_syn, torch.full((len(draw.pairs), 2, 4), float("nan"), dtype=torch.float64)]).float()
    return Batch(apply_photometric(followup, draw.followup_photometric),
                 apply_photometric(baseline, draw.baseline_photometric), labels, loss_masks, truth)


def _move_bones(img: torch.Tensor, w: torch.Tensor, a_syn: torch.Tensor, up_m: torch.Tensor, lo_m: torch.Tensor
                ) -> torch.Tensor:
    """Follow-ups of the crops ``img`` posed by ``a_syn``: the upper side moved by ``up_m``, the
    lower by ``lo_m``, blended by the upper side's weight ``w`` carried along with each."""
    inv_u = (a_syn @ torch.linalg.inv(up_m)).float()
    inv_l = (a_syn @ torch.linalg.inv(lo_m)).float()
    w_u = warp(w, inv_u, padding_mode="border")
    w_l = warp(1 - w, inv_l, padding_mode="border")
    tot = w_u + w_l
    w_u = torch.where(tot > 0.05, w_u / tot.clamp(min=0.05), torch.full_like(w_u, 0.5))
    return (w_u * warp(img, inv_u, padding_mode="reflection")
            + (1 - w_u) * warp(img, inv_l, padding_mode="reflection"))


def sample_batch(data: PairData, n: int, gen: torch.Generator, ranges: MotionRanges, *, real_fraction: float,
                 scale: float) -> Batch:
    """A batch of ``n`` pairs (:func:`sample_pair_draw`, then :func:`apply_pair_draw`); deterministic given ``gen``."""
    return apply_pair_draw(data, sample_pair_draw(data, n, gen, ranges, real_fraction=real_fraction, scale=scale))


def _masked_ncc(x: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """NCC of ``x`` and ``y`` over weights ``m`` per sample (``(N, 1, H, W)`` each) -> ``(N,)``."""
    n = m.sum((-2, -1)).clamp(min=1.0)
    mx = (x * m).sum((-2, -1)) / n
    my = (y * m).sum((-2, -1)) / n
    xc, yc = (x - mx[..., None, None]) * m, (y - my[..., None, None]) * m
    cov = (xc * yc).sum((-2, -1))
    return (cov / torch.sqrt((xc * xc).sum((-2, -1)) * (yc * yc).sum((-2, -1)) + 1e-8)).view(-1)


def _grid(size: int, step: int, device: torch.device) -> torch.Tensor:
    v = torch.arange(step / 2 - 0.5, size, step, dtype=torch.float32, device=device)
    yy, xx = torch.meshgrid(v, v, indexing="ij")
    return torch.stack([xx.ravel(), yy.ravel(), torch.ones_like(xx.ravel())], 0)  # (3, P)


def registration_loss(params: torch.Tensor, batch: Batch, *, supervised_weight: float
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(total loss, per-sample unsupervised NCC)`` for predicted ``(N, 2, 4)`` parameters."""
    size = batch.baseline.shape[-1]
    c = ((size - 1) / 2.0, (size - 1) / 2.0)
    mats = params_to_matrix(params, c)
    nccs = []
    for k in range(2):
        moved = warp(batch.followup, mats[:, k])
        valid = warp(torch.ones_like(batch.followup), mats[:, k]) > 0.999
        nccs.append(_masked_ncc(moved, batch.baseline, batch.loss_masks[:, k:k + 1] * valid))
    ncc = torch.stack(nccs, 1)
    loss = (1.0 - ncc).mean()
    known = torch.isfinite(batch.truth).all(-1).all(-1)
    if supervised_weight > 0 and bool(known.any()):
        pts = _grid(size, 8, params.device)
        tm = params_to_matrix(batch.truth[known], c)
        err = (mats[known] - tm)[..., :2, :] @ pts  # (K, 2, 2, P) displacement error
        dist = torch.sqrt((err ** 2).sum(-2) + 1e-12)  # (K, 2, P)
        wts = batch.loss_masks[known][..., 4::8, 4::8].reshape(dist.shape)
        loss = loss + supervised_weight * ((_huber(dist) * wts).sum((-1,)) / wts.sum(-1).clamp(min=1.0)).mean()
        # The narrowing lives in the motion of one bone relative to the other, a few pixels
        # against the common motion's tens: its own term, over the joint (+-32 px of the centre).
        rel_err = (torch.linalg.inv(mats[known][:, 1]) @ mats[known][:, 0]
                   - torch.linalg.inv(tm[:, 1]) @ tm[:, 0])[..., :2, :] @ _joint_points(c, params.device)
        loss = loss + supervised_weight * RELATIVE_WEIGHT * _huber(torch.sqrt((rel_err ** 2).sum(-2) + 1e-12)).mean()
    return loss, ncc.detach()


#: Weight of the relative-motion term against the per-bone displacement term.
RELATIVE_WEIGHT = 2.0


def _huber(d: torch.Tensor) -> torch.Tensor:
    return torch.where(d < 1.0, 0.5 * d ** 2, d - 0.5)


def _joint_points(c: tuple[float, float], device: torch.device) -> torch.Tensor:
    v = torch.linspace(-32.0, 32.0, 5, device=device)
    yy, xx = torch.meshgrid(v + c[1], v + c[0], indexing="ij")
    return torch.stack([xx.ravel(), yy.ravel(), torch.ones_like(xx.ravel())], 0)


def _narrowing_net(params: torch.Tensor, c: tuple[float, float]) -> torch.Tensor:
    """Narrowing at the centre, network px: ``(L^-1 U)(c).y - c.y``."""
    m = params_to_matrix(params.double(), c)
    rel = torch.linalg.inv(m[:, 1]) @ m[:, 0]
    p = torch.tensor([c[0], c[1], 1.0], dtype=torch.float64, device=params.device)
    return (rel @ p)[:, 1] - c[1]


def evaluate_regnet(model: RegistrationNet, data: PairData, *, scale: float, ranges: MotionRanges,
                    n: int = 256, seed: int = 12345, batch_size: int = 32) -> tuple[float, float, float]:
    """``(RMS narrowing error after pass 1, after the last pass, both in crop px; mean NCC
    on real pairs after the last pass)`` on fixed draws from ``data`` (no photometric noise
    changes between calls: the generator is seeded)."""
    if not len(data):
        return float("nan"), float("nan"), float("nan")
    p = next(model.parameters())
    was = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    size = data.images.shape[-1]
    c = ((size - 1) / 2.0, (size - 1) / 2.0)
    e1, e2, ncc = [], [], []
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            b = sample_batch(data, min(batch_size, n - start), gen, ranges, real_fraction=0.5, scale=scale).to(p.device)
            outs = cascade(model, b.followup, b.baseline, b.labels, model.config.passes)
            known = torch.isfinite(b.truth).all(-1).all(-1)
            truth = _narrowing_net(b.truth[known], c)
            e1.append((_narrowing_net(outs[0][known], c) - truth) / scale)
            e2.append((_narrowing_net(outs[-1][known], c) - truth) / scale)
            _, nc = registration_loss(outs[-1][~known], Batch(b.followup[~known], b.baseline[~known],
                                      b.labels[~known], b.loss_masks[~known], b.truth[~known]), supervised_weight=0.0)
            ncc.append(nc.mean(1))
    model.train(was)

    def rms(v: list[torch.Tensor]) -> float:
        return float(torch.sqrt(torch.cat(v).square().mean()))

    real = torch.cat(ncc)
    return rms(e1), rms(e2), float(real.mean()) if len(real) else float("nan")


#: Per-bone perturbation of the truth that starts the later passes on synthetic pairs
#: (network pixels / radians / log-scale): about the first pass's error once trained.
FINE_START = (0.02, math.radians(2.0), 1.5)


def _training_passes(model: RegistrationNet, batch: Batch, net: RegNetConfig, gen: torch.Generator
                     ) -> list[torch.Tensor]:
    """Every pass of the cascade on a training batch. The first pass sees the pair as is;
    each later one sees the follow-up warped bone by bone from a start that is, on synthetic
    pairs, the truth perturbed by up to :data:`FINE_START` (so the fine network trains on
    nearly aligned pairs from the first step, whatever the coarse one has learned) and, on
    real pairs, the previous pass's (detached) answer."""
    size = batch.baseline.shape[-1]
    c = ((size - 1) / 2.0, (size - 1) / 2.0)
    params = model(torch.cat([batch.followup, batch.baseline, batch.labels], 1), 0)
    outs = [params]
    known = torch.isfinite(batch.truth).all(-1).all(-1)
    for stage in range(1, net.passes):
        start = params.detach().clone()
        k = int(known.sum())
        if k:
            ls, ang, sh = FINE_START
            noise = torch.stack([_uniform(2 * k, ls, gen), _uniform(2 * k, ang, gen), _uniform(2 * k, sh, gen),
                                 _uniform(2 * k, sh, gen)], -1).float().view(k, 2, 4)
            start[known] = compose_params(batch.truth[known], noise, c).float()
        moved = composite(batch.followup, start, batch.labels, c)
        params = compose_params(start, model(torch.cat([moved, batch.baseline, batch.labels], 1), stage), c)
        outs.append(params)
    return outs


def train_registration(config: RegTrainConfig, out: str | os.PathLike, *, resume: str | os.PathLike | None = None,
                       init: str | os.PathLike | None = None,
                       on_start: Callable[[int, int, int], None] | None = None,
                       on_batch: Callable[[int, int, float], None] | None = None,
                       on_epoch: Callable[[RegEpochRecord], None] | None = None) -> RegTrainResult:
    """Train (or resume) the registration network; write the checkpoint after every epoch.

    ``init``: a checkpoint or weights file whose network weights this run starts from (a
    fine-tune: new optimizer, this run's options; its network options must match).

    Raises:
        JsnqInputError: bad data folder, manifest or files; a resume checkpoint that does
            not match the data.
    """
    out, config, prev, device, rows, train_j, val_j = start_run(config, out, resume)
    net = config.network
    start = None
    if init is not None and resume is None:  # checked before the data are loaded
        # inference_passes only matters at inference: a shipped file may set it (this run's
        # checkpoint gets this run's value)
        start = read_init(init, net, lambda cfg: replace(cfg, inference_passes=0))
        config = replace(config, init=os.fspath(init))
    scale = net.input_size / config.crop_px
    loaded = load_dataset(rows, input_size=net.input_size, target_size=net.input_size,
                          percentiles=net.percentiles, max_overlap=config.max_overlap)

    def subset(joints: list[str]) -> PairData:
        d = loaded.subset(joints)
        return prepare_pairs(d.images, d.masks, tuple(r.joint_id for r in d.rows),
                             gap_exclusion_px=config.gap_exclusion_px, scale=scale)

    train, val = subset(train_j), subset(val_j)
    if not len(train):
        raise JsnqInputError(config.data, "no usable training crops")

    model = seeded_model(config, build_regnet, start, init).to(device)
    split = {"rule": SPLIT_RULE, "val_fraction": config.val_fraction, "split_seed": config.split_seed,
             "validation_joints": val_j, "n_train_joints": len(train_j), "n_train_crops": len(train),
             "n_train_pairs": int(len(train.pairs)), "n_validation_crops": len(val)}
    checkpoint = {"format": CHECKPOINT_FORMAT, "config": {"network": net.to_dict(), "training": config.to_dict(),
                                                          "split": split,
                                                          "excluded": [list(e) for e in loaded.excluded]}}

    def batches(epoch: int, gen: torch.Generator):
        for _ in range(config.steps_per_epoch):
            yield sample_batch(train, config.batch_size, gen, config.motion, real_fraction=config.real_fraction,
                               scale=scale).to(device)

    def loss(batch: Batch, gen: torch.Generator) -> tuple[torch.Tensor]:
        outs = _training_passes(model, batch, net, gen)
        return (sum(registration_loss(o, batch, supervised_weight=config.supervised_weight)[0] for o in outs)
                / len(outs),)

    def summarise(epoch: int, losses: list[float], seconds: float) -> RegEpochRecord:
        v1, v2, vn = evaluate_regnet(model, val, scale=scale, ranges=config.motion)
        return RegEpochRecord(epoch=epoch, loss=losses[0], val_rms_pass1_px=v1, val_rms_px=v2, val_real_ncc=vn,
                              seconds=seconds)

    history = fit(config, model, out=out, prev=prev, checkpoint=checkpoint, record=RegEpochRecord,
                  per_epoch=config.steps_per_epoch, batches=batches, loss=loss, summarise=summarise,
                  clip_grad_norm=5.0, hooks=Hooks(on_start, on_batch, on_epoch))
    return RegTrainResult(checkpoint=out, history=history, n_train_crops=len(train),
                          n_train_pairs=int(len(train.pairs)), n_val_crops=len(val))
