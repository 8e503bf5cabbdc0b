"""Training the segmenter: the split, the augmentation, the loss, the command end to end on a
tiny synthetic folder (seconds), resume, export, and bad data folders."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from typer.testing import CliRunner

from jsnq.cli import app
from jsnq.errors import JsnqInputError
from jsnq.segment.network import load_model
from jsnq.training import (AugmentRanges, TrainConfig, apply_augmentation, read_manifest, sample_augmentation,
                           split_joints, train_segmenter)
from jsnq.training.augment import AugmentParams
from jsnq.training.photometric import PhotometricParams, PhotometricRanges, apply_photometric, sample_photometric
from jsnq.training.loop import lr_at, read_checkpoint
from jsnq.training.segment import segmentation_loss
from manifests import CROP, write_manifest_folder
from jsnq.segment.network import NetworkConfig

runner = CliRunner()


TINY_ARGS = ["--epochs", "1", "--batch-size", "4", "--size", "32", "--target-size", str(CROP),
             "--val-fraction", "0.3", "--threads", "2"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_manifest_folder(tmp_path_factory.mktemp("tiny") / "data")


# -- the command, end to end ------------------------------------------------------------------


def test_train_command_end_to_end_resume_and_export(tiny, tmp_path):
    ckpt = tmp_path / "seg.pt"
    result = runner.invoke(app, ["train", "segment", "--data", str(tiny), "--out", str(ckpt), *TINY_ARGS])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "final validation DSC" in result.stdout
    c = torch.load(ckpt, weights_only=True)  # safe loading works
    assert c["epoch"] == 1 and len(c["history"]) == 1 and "optimizer" in c
    cfg = c["config"]
    assert cfg["network"]["input_size"] == 32 and cfg["training"]["seed"] == 0
    val = set(cfg["split"]["validation_joints"])
    assert val and val < {"J0", "J1", "J2", "J3"}

    # resume to 2 epochs: continues from epoch 1, keeps the history
    result = runner.invoke(app, ["train", "segment", "--data", str(tiny), "--out", str(ckpt), *TINY_ARGS,
                                 "--epochs", "2", "--resume", str(ckpt)])
    assert result.exit_code == 0, result.stdout + result.stderr
    c2 = read_checkpoint(ckpt)
    assert c2["epoch"] == 2 and [h["epoch"] for h in c2["history"]] == [1, 2]

    weights = tmp_path / "slim.pt"
    result = runner.invoke(app, ["train", "export", str(ckpt), str(weights), "--note", "test"])
    assert result.exit_code == 0, result.stdout + result.stderr
    model, config, slim = load_model(weights)
    assert "optimizer" not in slim and slim["config"]["provenance"] == {"note": "test"}
    assert config.input_size == 32 and not model.training


def test_training_is_seeded(tiny, tmp_path):
    """Same seed, same weights (bit-identical on one machine); another seed differs."""
    def run(seed: int, name: str) -> dict:
        cfg = TrainConfig(data=str(tiny), epochs=1, batch_size=4, seed=seed, val_fraction=0.3, target_size=CROP,
                          network=NetworkConfig(features=(4, 8, 16), input_size=32))
        train_segmenter(cfg, tmp_path / name)
        return read_checkpoint(tmp_path / name)["state_dict"]

    a, b, c = run(0, "a.pt"), run(0, "b.pt"), run(1, "c.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_resume_continues_exactly(tiny, tmp_path):
    """Two epochs in one go equal one epoch, then a resumed second one (per-epoch seeding,
    optimizer state and the step-based learning rate all come back)."""
    cfg = TrainConfig(data=str(tiny), epochs=2, batch_size=4, val_fraction=0.3, target_size=CROP,
                      network=NetworkConfig(features=(4, 8, 16), input_size=32))
    train_segmenter(cfg, tmp_path / "straight.pt")
    train_segmenter(replace(cfg, epochs=1), tmp_path / "half.pt")
    train_segmenter(cfg, tmp_path / "resumed.pt", resume=tmp_path / "half.pt")
    a, b = read_checkpoint(tmp_path / "straight.pt"), read_checkpoint(tmp_path / "resumed.pt")
    assert a["epoch"] == b["epoch"] == 2
    assert all(torch.allclose(a["state_dict"][k].float(), b["state_dict"][k].float(), atol=1e-6)
               for k in a["state_dict"])


def test_joint_defaults_to_the_image_folder(tmp_path):
    folder = write_manifest_folder(tmp_path / "nojid", n_joints=2, with_joint_id=False)
    rows = read_manifest(folder)
    assert {r.joint_id for r in rows} == {"joint0", "joint1"}


# -- the split -------------------------------------------------------------------------------


def test_split_by_joint_is_disjoint_deterministic_and_near_the_fraction():
    joints = [f"{i:05d}_L_2" for i in range(1000)]
    train, val = split_joints(joints * 3, val_fraction=0.15, split_seed=0)  # repeated visits
    assert not set(train) & set(val) and set(train) | set(val) == set(joints)
    assert 0.12 < len(val) / 1000 < 0.18
    assert split_joints(joints, val_fraction=0.15, split_seed=0) == (train, val)
    assert split_joints(joints, val_fraction=0.15, split_seed=1)[1] != val


# -- augmentation ------------------------------------------------------------------------------


def _batch(n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    img = torch.rand(n, 1, 32, 32, generator=g)
    masks = torch.zeros(n, 2, 64, 64)
    masks[:, 0, 5:30, 10:40] = 1.0
    masks[:, 1, 34:60, 8:50] = 1.0
    return img, masks


def _identity(n: int) -> AugmentParams:
    z, o = torch.zeros(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64)
    photometric = PhotometricParams(gamma=o, contrast=o, brightness=z, noise_std=z,
                                    noise_seed=torch.zeros(n, dtype=torch.int64))
    return AugmentParams(angle_rad=z, scale=o, shift_x=z, shift_y=z, flip=torch.zeros(n, dtype=torch.bool),
                         photometric=photometric)


def test_identity_parameters_change_nothing():
    img, masks = _batch()
    out_img, out_masks = apply_augmentation(img, masks, _identity(3))
    assert torch.allclose(out_img, img, atol=1e-5) and torch.allclose(out_masks, masks, atol=1e-5)


def test_flip_mirrors_left_right_and_keeps_upper_upper():
    img, masks = _batch()
    p = _identity(3)
    p = AugmentParams(**{**p.__dict__, "flip": torch.ones(3, dtype=torch.bool)})
    out_img, out_masks = apply_augmentation(img, masks, p)
    assert torch.allclose(out_img, img.flip(-1), atol=1e-5)
    assert torch.allclose(out_masks, masks.flip(-1), atol=1e-5)  # channel 0 is still the upper bone


def test_augmentation_replays_exactly_and_stays_in_range():
    img, masks = _batch(8)
    params = sample_augmentation(8, torch.Generator().manual_seed(3), AugmentRanges())
    a = apply_augmentation(img, masks, params)
    b = apply_augmentation(img, masks, params)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == img.shape and a[1].shape == masks.shape
    assert float(a[1].min()) >= 0.0 and float(a[1].max()) <= 1.0
    again = sample_augmentation(8, torch.Generator().manual_seed(3), AugmentRanges())
    assert torch.equal(again.angle_rad, params.angle_rad) and torch.equal(again.photometric.noise_seed, params.photometric.noise_seed)


def test_photometric_sampler_replays_and_its_identity_changes_nothing():
    """The one photometric sampler: the same generator state draws the same params, applying
    them twice gives the same batch, identity params leave an image in [0, 1] as it is, and a
    window maps its ends to 0 and 1."""
    x = torch.rand(3, 1, 16, 16)
    r = PhotometricRanges(gamma_log=0.3, contrast=(0.8, 1.2), brightness=0.1, noise_std=(0.0, 0.05),
                          window_low=(-0.1, 0.2), window_high=(0.8, 1.1), blur_sigma=(0.0, 1.5))
    p = sample_photometric(3, torch.Generator().manual_seed(1), r)
    q = sample_photometric(3, torch.Generator().manual_seed(1), r)
    assert all(torch.equal(getattr(p, f), getattr(q, f)) for f in p.__dataclass_fields__)
    assert torch.equal(apply_photometric(x, p), apply_photometric(x, q))
    one, zero = torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    identity = PhotometricParams(gamma=one, contrast=one, brightness=zero, noise_std=zero,
                                 noise_seed=torch.zeros(3, dtype=torch.int64))
    assert torch.allclose(apply_photometric(x, identity), x, atol=1e-6)
    window = PhotometricParams(**{**identity.__dict__, "window_low": 0.2 * one, "window_high": 0.6 * one})
    v = apply_photometric(torch.tensor([0.2, 0.4, 0.6]).view(3, 1, 1, 1).expand(3, 1, 4, 4), window)
    assert torch.allclose(v[:, 0, 0, 0], torch.tensor([0.0, 0.5, 1.0]), atol=1e-6)


def test_rotation_moves_the_masks_with_the_image():
    """A 90-degree turn of a square crop is a transpose-and-flip: image and masks alike."""
    img, masks = _batch(1)
    p = AugmentParams(**{**_identity(1).__dict__, "angle_rad": torch.tensor([np.pi / 2], dtype=torch.float64)})
    out_img, out_masks = apply_augmentation(img, masks, p)
    expect_img = torch.rot90(img, k=-1, dims=(-2, -1))  # clockwise as displayed
    expect_masks = torch.rot90(masks, k=-1, dims=(-2, -1))
    assert torch.allclose(out_img, expect_img, atol=1e-4) and torch.allclose(out_masks, expect_masks, atol=1e-4)


def test_gap_squeeze_narrows_the_joint_space_by_its_fraction():
    """The masks' gap (8 rows at the 64-px mask size) loses half its width, the bones keep their
    height (moved, not compressed), and the image moves with the masks."""
    from jsnq.training.augment import gap_rows

    img, masks = _batch(1)
    masks = torch.zeros(1, 2, 64, 64)
    masks[:, 0, 6:30, 8:56], masks[:, 1, 38:60, 8:56] = 1.0, 1.0
    p = AugmentParams(**{**_identity(1).__dict__, "gap_squeeze": torch.tensor([0.5], dtype=torch.float64)})
    _, out = apply_augmentation(img, masks, p)
    _, w0 = gap_rows(masks)
    _, w1 = gap_rows(out)
    assert float(w0 * 32) == pytest.approx(8.0) and float(w1 * 32) == pytest.approx(4.0, abs=0.5)
    heights = (out[0, :, :, 32] >= 0.5).sum(-1)
    assert heights.tolist() == pytest.approx([24, 22], abs=1)  # the bones' own heights are kept


def test_degrade_blurs_and_quantises_the_image_not_the_masks():
    img, masks = _batch(2)
    p = AugmentParams(**{**_identity(2).__dict__, "degrade": torch.tensor([1.0, 2.0], dtype=torch.float64),
                         "levels": torch.tensor([0.0, 4.0], dtype=torch.float64)})
    out_img, out_masks = apply_augmentation(img, masks, p)
    assert torch.allclose(out_img[0], img[0], atol=1e-6)                  # factor 1: untouched
    assert float(out_img[1].std()) < 0.8 * float(img[1].std())           # down and up: smoother
    assert torch.allclose(out_masks, masks, atol=1e-5)


def test_optional_transforms_off_draw_what_the_defaults_drew():
    """A config without the optional transforms draws exactly the numbers it drew before they
    existed (so old runs replay); the hand-crop preset draws them after."""
    from jsnq.training.augment import HAND_CROPS

    plain = sample_augmentation(6, torch.Generator().manual_seed(4), AugmentRanges())
    assert plain.aspect is None and plain.gap_squeeze is None and plain.degrade is None
    hand = sample_augmentation(6, torch.Generator().manual_seed(4), HAND_CROPS)
    assert torch.equal(hand.angle_rad, plain.angle_rad) and torch.equal(hand.photometric.noise_seed, plain.photometric.noise_seed)
    assert bool((hand.aspect != 1).all()) and float(hand.degrade.max()) <= 2.5


def test_train_segment_fine_tunes_with_the_hand_crop_preset(tiny, tmp_path):
    first = tmp_path / "first.pt"
    assert runner.invoke(app, ["train", "segment", "--data", str(tiny), "--out", str(first), *TINY_ARGS]).exit_code == 0
    tuned = tmp_path / "tuned.pt"
    result = runner.invoke(app, ["train", "segment", "--data", str(tiny), "--out", str(tuned), "--init", str(first),
                                 "--hand-crops", *TINY_ARGS])
    assert result.exit_code == 0, result.stdout + result.stderr
    c0, c1 = torch.load(first, weights_only=True), torch.load(tuned, weights_only=True)
    training = c1["config"]["training"]
    assert training["init"] == str(first) and training["augment"]["gap_squeeze"] == [0.0, 0.75]
    assert any(not torch.equal(c1["state_dict"][k], c0["state_dict"][k]) for k in c1["state_dict"])
    other = runner.invoke(app, ["train", "segment", "--data", str(tiny), "--out", str(tmp_path / "x.pt"),
                                "--init", str(first), *[a if a != "32" else "64" for a in TINY_ARGS]])
    assert other.exit_code == 2 and "network options differ" in other.stderr, other.stderr


def test_bad_ranges_are_refused():
    with pytest.raises(ValueError, match="scale"):
        AugmentRanges(scale=(1.2, 0.8))
    with pytest.raises(ValueError, match="flip_probability"):
        AugmentRanges(flip_probability=2.0)


# -- loss and schedule -----------------------------------------------------------------------


def test_loss_is_small_for_confident_right_answers_and_large_for_wrong_ones():
    _, masks = _batch(2)
    good = (masks * 2 - 1) * 20.0
    assert float(segmentation_loss(good, masks)) < 0.01
    assert float(segmentation_loss(-good, masks)) > 1.0
    small = torch.nn.functional.interpolate(good, size=(32, 32), mode="area")  # resized to the masks first
    assert float(segmentation_loss(small, masks)) < 0.2


def test_learning_rate_warms_up_then_decays():
    lrs = [lr_at(s, 100, lr=1e-3, warmup_fraction=0.1) for s in range(100)]
    assert lrs[0] < lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] < 0.05e-3


# -- bad data folders -----------------------------------------------------------------------------


def _one_line_error(args: list[str], *needles: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_wrong_manifest_is_one_line_error(tiny, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.csv").write_text("image,mask\na.png,a_mask.png\n")
    _one_line_error(["train", "segment", "--data", str(bad), "--out", str(tmp_path / "x.pt")],
                    "manifest.csv", "missing column(s) upper_mask, lower_mask")
    with pytest.raises(JsnqInputError, match="manifest not found"):
        read_manifest(tmp_path)


def test_missing_mask_file_is_one_line_error(tmp_path):
    folder = write_manifest_folder(tmp_path / "d", n_joints=2, visits=1)
    (folder / "joint1" / "v0_lower.png").unlink()
    _one_line_error(["train", "segment", "--data", str(folder), "--out", str(tmp_path / "x.pt")],
                    "v0_lower.png", "lower mask file not found", "line 3")


def test_mask_of_another_size_is_one_line_error(tmp_path):
    folder = write_manifest_folder(tmp_path / "d", n_joints=2, visits=1)
    small = np.zeros((CROP // 2, CROP), np.uint8)
    small[:10] = 255
    PILImage.fromarray(small).save(folder / "joint0" / "v0_upper.png")
    _one_line_error(["train", "segment", "--data", str(folder), "--out", str(tmp_path / "x.pt"), *TINY_ARGS],
                    "v0_upper.png", f"mask is {CROP // 2}x{CROP} but its image v0.png is {CROP}x{CROP}")


def test_empty_mask_is_one_line_error(tmp_path):
    folder = write_manifest_folder(tmp_path / "d", n_joints=2, visits=1)
    PILImage.fromarray(np.zeros((CROP, CROP), np.uint8)).save(folder / "joint1" / "v0_upper.png")
    _one_line_error(["train", "segment", "--data", str(folder), "--out", str(tmp_path / "x.pt"), *TINY_ARGS],
                    "v0_upper.png", "upper mask is empty")


def test_bad_resume_checkpoint_is_one_line_error(tiny, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    _one_line_error(["train", "segment", "--data", str(tiny), "--out", str(tmp_path / "x.pt"), *TINY_ARGS,
                     "--resume", str(junk)], "junk.pt", "cannot read checkpoint")
