"""The whole-hand finger-joint locator: geometry helpers, the shipped weights, real hands,
"no hand found", and the training loop end to end on a tiny synthetic landmarks folder."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from jsnq.errors import JsnqInputError
from jsnq.hand.locate import WEIGHTS_FILE, find_joints
from jsnq.networks import shipped_weights
from jsnq.hand.network import (COARSE_LANDMARKS, LocatorConfig, apply_affine, build_locator, fit_affine,
                               gaussian_heatmaps, heatmap_peaks, invert_affine, load_locator, warp)
from jsnq.hand.types import JOINT_NAMES
from jsnq.training import export_weights
from jsnq.training.locate import (WRIST, LocateAugment, LocateTrainConfig, read_landmarks,
                                  train_locator)
from manifests import write_csv

REPO = Path(__file__).resolve().parents[1]


# -- pure geometry ----------------------------------------------------------------------------


@pytest.mark.parametrize("x, y", [(10.0, 12.0), (20.3, 7.71), (30.49, 29.5)])
def test_heatmap_peak_recovers_subpixel_gaussian(x: float, y: float) -> None:
    # A sampled Gaussian (sigma 1.5 px, the coarse targets') is fitted exactly by the
    # log-parabola: recovery to 1e-6 px, far below any error that matters (0.1 px).
    hm = gaussian_heatmaps(torch.tensor([[[x, y]]]), torch.tensor([[True]]), 32, 1.5)
    pts, val = heatmap_peaks(hm)
    assert pts[0, 0].tolist() == pytest.approx([x, y], abs=1e-6)
    assert 0.8 < float(val[0, 0]) <= 1.0


def test_gaussian_target_is_zero_outside_or_invalid() -> None:
    hm = gaussian_heatmaps(torch.tensor([[[40.0, 5.0], [5.0, 5.0]]]), torch.tensor([[True, False]]), 32, 1.5)
    assert float(hm.abs().max()) == 0.0


def test_warp_moves_points_as_the_inverse_affine() -> None:
    # A blob drawn at p in the source must appear at A^-1 p in the view, for rotation, scale,
    # shift and mirror together; bilinear sampling blurs it, so 0.1 px is the tolerance.
    src_pt = torch.tensor([[[70.3, 41.8]]], dtype=torch.float64)
    img = gaussian_heatmaps(src_pt, torch.tensor([[True]]), 128, 4.0)[:, :1]
    A = fit_affine(torch.tensor([1.3]), torch.tensor([math.radians(25.0)]), torch.tensor([[60.0, 50.0]]), 96,
                   flip=torch.tensor([True]))
    view = warp(img, A, 96)
    found, _ = heatmap_peaks(view)
    expect = apply_affine(invert_affine(A), src_pt)
    assert found[0, 0].tolist() == pytest.approx(expect[0, 0].tolist(), abs=0.1)


# -- weights --------------------------------------------------------------------------------


def test_shipped_weights_load_safely_and_are_small() -> None:
    path = Path(str(shipped_weights("locate")))
    assert path.name == Path(WEIGHTS_FILE).name
    assert path.stat().st_size < 15e6
    ckpt = torch.load(path, map_location="cpu", weights_only=True)  # plain tensors, numbers, strings only
    assert {"format", "config", "state_dict"} <= set(ckpt) and "optimizer" not in ckpt
    cfg = LocatorConfig.from_dict(ckpt["config"]["network"])
    assert cfg.coarse_landmarks == COARSE_LANDMARKS
    model, _, _ = load_locator(shipped_weights("locate"))
    assert not model.training


# -- "no hand found" -----------------------------------------------------------------------------


def test_blank_image_is_no_hand() -> None:
    with pytest.raises(JsnqInputError, match="no hand found"):
        find_joints(np.zeros((600, 400), np.float32))


def test_synthetic_non_hand_is_no_hand() -> None:
    # smooth random texture with a few bright discs: bone-like blobs, but no hand's layout
    rng = np.random.default_rng(0)
    from scipy import ndimage as ndi

    img = ndi.gaussian_filter(rng.normal(size=(900, 700)), 12)
    yy, xx = np.mgrid[:900, :700]
    for cx, cy, r in rng.uniform([50, 50, 20], [650, 850, 70], size=(12, 3)):
        img += 3 * img.std() * ((xx - cx) ** 2 + (yy - cy) ** 2 < r**2)
    with pytest.raises(JsnqInputError, match="no hand found"):
        find_joints(img.astype(np.float32))


def test_joint_crop_is_no_hand(shared_data: Path) -> None:
    crops = sorted((shared_data / "finger-joints").glob("*/*.jpg"))
    crops = [c for c in crops if "_" not in c.stem][:3]  # images only, not masks
    assert crops
    for crop in crops:
        with pytest.raises(JsnqInputError, match="no hand found"):
            find_joints(crop)


# -- real hands -----------------------------------------------------------------------------


def _held_out(shared_data: Path, k: int) -> tuple[list[Path], np.ndarray, np.ndarray]:
    _, _, ckpt = load_locator(shipped_weights("locate"))
    val = ckpt["config"]["split"]["validation_hands"][:k]  # never seen in training
    paths, pts, wrist = read_landmarks(shared_data / "hand-landmarks", JOINT_NAMES)
    idx = [i for i, p in enumerate(paths) if p.stem in val]
    return [paths[i] for i in idx], pts[idx], wrist[idx]


@pytest.mark.parametrize("mirror", [False, True], ids=["left", "right-mirrored"])
def test_held_out_atlas_hands(shared_data: Path, mirror: bool) -> None:
    # Tolerance 4 mm per joint (the target: >= 99 % of MCP/PIP/IP within 4 mm; the
    # benchmark's mean is ~1 mm, so 4 mm still flags a joint named after its neighbour,
    # which lies >= 15 mm away); at most one joint missing per hand; side always right.
    from jsnq.io import load_image

    paths, pts, wrist = _held_out(shared_data, 2)
    for path, truth, w in zip(paths, pts, wrist):
        a = load_image(path).array
        truth = truth.copy()
        if mirror:
            a = np.ascontiguousarray(a[:, ::-1])
            truth[:, 0] = a.shape[1] - 1 - truth[:, 0]
        mm_px = 50.0 / float(np.linalg.norm(w[0] - w[1]))  # wrist-width convention
        hand = find_joints(a)
        assert hand.side == ("R" if mirror else "L")
        assert len(hand.missing) <= 1, hand.missing
        assert set(hand.joints) | set(hand.missing) == set(JOINT_NAMES)
        for k, name in enumerate(JOINT_NAMES):
            if name in hand.joints:
                j = hand.joints[name]
                err = math.hypot(j.x - truth[k, 0], j.y - truth[k, 1]) * mm_px
                assert err < 4.0, f"{path.stem} {name}: {err:.1f} mm"
                assert 0.0 <= j.score <= 1.0
                assert abs(j.axis_deg) < 60  # fingers roughly up in the atlas (thumb ~20-45 deg)


def test_small_hand_in_a_large_image(shared_data: Path) -> None:
    # The hand at half its usual size in the frame (a radiograph with much empty film): the
    # re-framing on the hand brings it back to the trained scale. Tolerance 4 mm as above.
    from jsnq.io import load_image

    paths, pts, wrist = _held_out(shared_data, 1)
    a = load_image(paths[0]).array
    big = np.full((2 * a.shape[0], 2 * a.shape[1]), float(np.median(a[:50, :50])), np.float32)
    big[300:300 + a.shape[0], 500:500 + a.shape[1]] = a
    mm_px = 50.0 / float(np.linalg.norm(wrist[0][0] - wrist[0][1]))
    hand = find_joints(big)
    assert hand.side == "L" and len(hand.missing) <= 1, hand.missing
    for k, name in enumerate(JOINT_NAMES):
        if name in hand.joints:
            j = hand.joints[name]
            assert math.hypot(j.x - 500 - pts[0][k, 0], j.y - 300 - pts[0][k, 1]) * mm_px < 4.0, name


def test_hand_pair_both_visits(shared_data: Path) -> None:
    # An adult RA hand (the networks were trained on children). Measured (docs/locate.md): 22
    # of 28 joints within the 20 px of my annotation (benchmarks/data/hand_pair_joints.csv,
    # itself good to ~5 px), the worst at 32 px. Every joint is found: MCP2 at the first visit
    # and MCP3 at the second (coarse and fine estimates ~20 frame px apart) were missing until
    # the fine network looked again around its own first answer. So this test asserts: side
    # right, none missing, every joint named right and within 35 px (~3.5 mm here), which
    # still excludes a neighbouring joint (>= 150 px away).
    rows = list(csv.DictReader((REPO / "benchmarks" / "data" / "hand_pair_joints.csv").open()))
    for img in sorted({r["image"] for r in rows}):
        hand = find_joints(shared_data / "hand-pair" / img)
        assert hand.side == "L"
        assert not hand.missing, hand.missing
        truth = {r["joint"]: (float(r["x"]), float(r["y"])) for r in rows if r["image"] == img}
        for name, j in hand.joints.items():
            d = {n: math.hypot(j.x - t[0], j.y - t[1]) for n, t in truth.items()}
            assert min(d, key=d.get) == name and d[name] < 35.0, (img, name, d[name])


def test_find_joints_accepts_path_array_and_image(shared_data: Path) -> None:
    from jsnq.io import load_image

    path = shared_data / "hand-pair" / "IMAGE007_20110111.png"
    img = load_image(path, spacing_mm=0.1)
    a, b = find_joints(path), find_joints(img)
    assert a.source == str(path) and b.spacing_mm == 0.1 and a.shape == img.shape
    assert a.joints["MCP3"].x == pytest.approx(b.joints["MCP3"].x)


# -- training, end to end on a tiny synthetic folder --------------------------------------------


def _synthetic_folder(root: Path, n: int = 4) -> Path:
    """Hands of bright blobs at fixed, jittered landmark positions (the net need not learn)."""
    from PIL import Image

    rng = np.random.default_rng(1)
    names = [*COARSE_LANDMARKS, *WRIST]
    base = {nm: rng.uniform([20, 20], [100, 140]) for nm in names}
    rows = []
    for i in range(n):
        img = rng.normal(60, 5, size=(160, 120))
        yy, xx = np.mgrid[:160, :120]
        row = {"image": f"h{i}.png"}
        for nm in names:
            x, y = base[nm] + rng.normal(0, 2, 2)
            img += 120 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8.0)
            row[f"{nm}_x"], row[f"{nm}_y"] = f"{x:.2f}", f"{y:.2f}"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / row["image"])
        rows.append(row)
    write_csv(root / "landmarks.csv", rows)
    return root


TINY = LocatorConfig(coarse_size=32, coarse_features=(4, 8), fine_frame=64, fine_size=16, fine_features=(4, 8))


def test_training_smoke_is_seeded_and_resumable(tmp_path: Path) -> None:
    data = _synthetic_folder(tmp_path)
    cfg = LocateTrainConfig(data=str(data), epochs=2, batch_size=2, patches_per_hand=2, val_fraction=0.3,
                            val_every=0, network=TINY, augment=LocateAugment())
    seen = []
    full = train_locator(cfg, tmp_path / "full.pt", on_start=lambda *a: seen.append(("start", a)),
                         on_batch=lambda *a: seen.append(("batch", a)), on_epoch=lambda r: seen.append(("epoch", r)))
    assert full.n_train + full.n_val == 4 and full.n_val >= 1
    assert seen[0] == ("start", (0, 2, math.ceil(full.n_train / 2)))
    assert [s[1].epoch for s in seen if s[0] == "epoch"] == [1, 2]
    assert all(np.isfinite(r.loss) for r in full.history)

    # one epoch, then resume for the second: the same weights as the straight run, bit for bit
    half = train_locator(LocateTrainConfig(**{**cfg.__dict__, "epochs": 1}), tmp_path / "half.pt")
    assert len(half.history) == 1
    resumed = train_locator(cfg, tmp_path / "resumed.pt", resume=tmp_path / "half.pt")
    a = torch.load(tmp_path / "full.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "resumed.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r.epoch for r in resumed.history] == [1, 2]

    # export: no optimizer, loads with weights_only, provenance kept
    out = export_weights(tmp_path / "full.pt", tmp_path / "ship.pt", extra={"command": "test"})
    ck = torch.load(out, weights_only=True)
    assert "optimizer" not in ck and ck["config"]["provenance"]["command"] == "test"
    model, net, _ = load_locator(out)
    assert net == TINY


def test_training_rejects_a_bad_folder(tmp_path: Path) -> None:
    with pytest.raises(JsnqInputError, match="landmarks file not found"):
        train_locator(LocateTrainConfig(data=str(tmp_path), network=TINY), tmp_path / "x.pt")


def test_untrained_model_finds_no_hand() -> None:
    # Random weights give flat heatmaps (the head starts near zero): nothing is guessed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_locator(LocatorConfig()).eval()
    rng = np.random.default_rng(0)
    with pytest.raises(JsnqInputError, match="no hand found"):
        find_joints(rng.uniform(size=(300, 200)).astype(np.float32), model=model)


def test_train_locate_command_reports_a_bad_folder_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from jsnq.cli import app

    result = CliRunner().invoke(app, ["train", "locate", "--data", str(tmp_path), "--out", str(tmp_path / "x.pt")])
    assert result.exit_code == 2 and result.stderr.strip().startswith("error: ") and "landmarks file not found" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_train_export_command_ships_a_locator_checkpoint(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from jsnq.cli import app

    data = _synthetic_folder(tmp_path)
    cfg = LocateTrainConfig(data=str(data), epochs=1, batch_size=2, patches_per_hand=2, val_fraction=0.3,
                            val_every=0, network=TINY, augment=LocateAugment())
    train_locator(cfg, tmp_path / "run.pt")
    result = CliRunner().invoke(app, ["train", "export", str(tmp_path / "run.pt"), str(tmp_path / "ship.pt"),
                                      "--note", "cli"])
    assert result.exit_code == 0, result.output
    ck = torch.load(tmp_path / "ship.pt", weights_only=True)
    assert "optimizer" not in ck and "cli" in ck["config"]["provenance"]["note"]
    assert load_locator(tmp_path / "ship.pt")[1] == TINY


def test_a_fingertip_on_the_neighbouring_tip_does_not_turn_the_joint_axis(shared_data: Path, monkeypatch) -> None:
    """In a null pair of the RA hand-pair (the radiograph against itself, moved 2.3 deg), the
    networks put TIP4 on TIP3 (1 px apart): DIP4's axis, the direction to TIP4, turned 41 deg and
    the follow-up's crop placement could fail. Two landmarks on one spot: the weaker is dropped
    (DIP4 then takes its axis from PIP4). Here an atlas hand's true landmarks stand in for the
    networks' estimate, with TIP4 moved onto TIP3."""
    import jsnq.hand.locate as loc

    paths, pts, _ = read_landmarks(shared_data / "hand-landmarks", COARSE_LANDMARKS)
    xy = pts[0].copy()
    names = tuple(COARSE_LANDMARKS)
    xy[names.index("TIP4")] = xy[names.index("TIP3")] + 1.0
    k = len(names)
    score = np.full(k, 0.9)
    score[names.index("TIP4")] = 0.5
    est = loc.LandmarkEstimate(names=names, xy=xy, coarse_xy=xy, coarse_score=score,
                               fine_score=np.where([n.startswith("TIP") for n in names], np.nan, 0.9),
                               disagreement_px=np.zeros(k), frame_px=2000.0)
    monkeypatch.setattr(loc, "locate_landmarks", lambda *a, **kw: est)
    hand = find_joints(np.random.default_rng(0).random((2300, 1600)).astype(np.float32), model=object())
    dip, pip = hand.joints["DIP4"], xy[names.index("PIP4")]
    expected = math.degrees(math.atan2(dip.x - pip[0], -(dip.y - pip[1])))
    assert abs(dip.axis_deg - expected) < 1e-6
    assert "DIP3" in hand.joints and set(hand.joints) == set(JOINT_NAMES)
