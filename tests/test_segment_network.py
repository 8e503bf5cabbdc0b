"""The UNet++ segmenter: shapes, safe loading of the shipped weights, determinism, phantoms,
real validation crops (skipped without ../shared/data), measure() and the CLI with it."""

from __future__ import annotations

import csv
import functools
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from typer.testing import CliRunner

from jsnq.cli import app
from jsnq.config import MeasureConfig
from jsnq.errors import JsnqInputError
from jsnq.io import load_image, save_image
from jsnq.jsw import joint_space_width
from jsnq.phantom import make_pair
from jsnq.pipeline import SEGMENTERS, measure
from jsnq.labels import labels_from_masks, line_from_labels
from jsnq.segment.network import (NetworkConfig, SegmentationResult, UNetPlusPlus, WeightsUnavailableError,
                                  build_model, load_model, predict_masks, segment, shipped_model, shipped_weights)

runner = CliRunner()

#: Stated accuracy on phantoms (seeds 0-3). The network never saw a phantom; measured with the
#: shipped weights on seeds 0-7: DSC 0.991-0.996 (upper), 0.996-0.998 (lower).
PHANTOM_MIN_DSC = 0.98
#: Stated accuracy on real validation crops (joints never seen in training); the mean on all
#: 187 validation crops is ~0.98 per bone (benchmarks/segmentation.py).
REAL_MIN_DSC = 0.95


def _dsc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


# -- the network -------------------------------------------------------------------------------


@pytest.mark.parametrize("features", [(4, 8), (4, 8, 16), (8, 16, 32, 64, 128)])
def test_output_shape_device_and_dtype_follow_the_input(features):
    net = UNetPlusPlus(features).eval()
    side = 2 ** (len(features) - 1) * 4
    x = torch.randn(2, 1, side, side + 2 ** (len(features) - 1))
    with torch.no_grad():
        y = net(x)
        assert y.shape == (2, 2, *x.shape[-2:]) and y.dtype == torch.float32
        y64 = net.double()(x.double())
    assert y64.dtype == torch.float64


def test_input_size_must_fit_the_poolings():
    with pytest.raises(ValueError, match="multiples of 8"):
        UNetPlusPlus((4, 8, 16, 32))(torch.zeros(1, 1, 20, 24))
    with pytest.raises(ValueError, match="input_size"):
        NetworkConfig(features=(4, 8, 16, 32), input_size=100)


def test_predict_masks_returns_probabilities_at_the_crop_size():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(NetworkConfig(features=(4, 8), input_size=32)).eval()
    img = np.random.default_rng(0).random((50, 70)).astype(np.float32)
    up, lo = predict_masks(img, model)
    assert up.shape == lo.shape == (50, 70) and up.dtype == np.float32
    assert 0.0 <= up.min() and up.max() <= 1.0


# -- the shipped weights ------------------------------------------------------------------------


def test_shipped_weights_exist_are_small_and_load_safely():
    w = shipped_weights()
    assert w.is_file(), "src/jsnq/weights/segment_unetpp.pt is missing"
    with w.open("rb") as fh:
        data = fh.read()
    assert len(data) < 15e6
    ckpt = torch.load(__import__("io").BytesIO(data), weights_only=True)  # no pickled code inside
    assert {"state_dict", "config", "format"} <= set(ckpt) and "optimizer" not in ckpt
    cfg = ckpt["config"]
    assert cfg["network"]["architecture"] == "unetpp"
    assert cfg["split"]["validation_joints"], "the checkpoint records its validation joints"
    model, config, _ = load_model(w)
    assert not model.training and config.input_size == cfg["network"]["input_size"]


def test_shipped_weights_give_the_same_output_twice():
    img = make_pair(0).baseline
    a = predict_masks(img)
    b = predict_masks(img, shipped_model())
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_unsafe_or_missing_weights_are_refused(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="not found"):
        load_model(tmp_path / "none.pt")
    evil = tmp_path / "evil.pt"
    with evil.open("wb") as fh:
        pickle.dump({"state_dict": {}, "config": {}, "code": functools.partial(print, "hi")}, fh)
    with pytest.raises(WeightsUnavailableError, match="cannot load weights"):
        load_model(evil)
    wrong = tmp_path / "wrong.pt"
    torch.save({"format": 1, "config": {"network": NetworkConfig(features=(4, 8), input_size=32).to_dict()},
                "state_dict": {"nonsense": torch.zeros(1)}}, wrong)
    with pytest.raises(WeightsUnavailableError, match="do not match"):
        load_model(wrong)


# -- segmentation results ------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _phantom(seed: int):
    pair = make_pair(seed)
    return pair, segment(pair.baseline)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_phantom_joints_are_segmented(seed):
    pair, res = _phantom(seed)
    du, dl = _dsc(res.upper_mask, pair.upper_mask), _dsc(res.lower_mask, pair.lower_mask)
    print(f"phantom {seed}: DSC upper {du:.4f} lower {dl:.4f}")
    assert du >= PHANTOM_MIN_DSC and dl >= PHANTOM_MIN_DSC


def test_result_is_consistent():
    pair, res = _phantom(0)
    assert isinstance(res, SegmentationResult)
    assert res.upper_mask.dtype == bool and res.upper_mask.shape == pair.baseline.shape
    assert np.array_equal(res.labels, labels_from_masks(res.upper_mask, res.lower_mask))
    np.testing.assert_array_equal(res.line, line_from_labels(res.labels))
    assert set(np.unique(res.labels)) <= {0, 1, 2}
    assert res.jsw is not None and res.jsw.mean_mm is None
    # On phantoms the network puts the upper bone's facing edge 0.8-2 px lower than the
    # phantom's (the real annotations draw the phalanx base's lip lower): mean JSW within 2 px
    # of the true masks' (measured on seeds 0-7: -1.6 to -0.03 px).
    assert abs(res.jsw.mean_px - joint_space_width(pair.upper_mask, pair.lower_mask).mean_px) < 2.0
    d = res.to_dict()
    assert d["upper_area_px"] > 1000 and d["jsw"]["mean_px"] == pytest.approx(res.jsw.mean_px)
    assert segment(pair.baseline, spacing_mm=0.2).jsw.mean_mm == pytest.approx(0.2 * res.jsw.mean_px)


def test_blank_looking_input_is_a_clear_error():
    flat = np.zeros((64, 64), np.float32)
    flat[0, 0] = 1.0
    with pytest.raises(JsnqInputError, match="found no"):
        segment(flat)


@pytest.fixture(scope="module")
def validation_crops(shared_data: Path) -> list[dict]:
    folder = shared_data / "finger-joints"
    val = set(load_model(shipped_weights())[2]["config"]["split"]["validation_joints"])
    with (folder / "manifest.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["joint_id"] in val]
    by_joint: dict[str, dict] = {}
    for r in rows:
        by_joint.setdefault(r["joint"], r)  # one crop per joint type
    return [{k: (folder / v if k in ("image", "upper_mask", "lower_mask") else v) for k, v in r.items()}
            for r in by_joint.values()]


def test_real_validation_crops(validation_crops):
    assert len(validation_crops) == 5  # MCP1-5
    for r in validation_crops:
        res = segment(load_image(r["image"]))
        truth = [np.asarray(PILImage.open(r[k])) > 127 for k in ("upper_mask", "lower_mask")]
        du, dl = _dsc(res.upper_mask, truth[0]), _dsc(res.lower_mask, truth[1])
        print(f"{r['joint_id']} ({r['joint']}): DSC upper {du:.4f} lower {dl:.4f}")
        assert du >= REAL_MIN_DSC and dl >= REAL_MIN_DSC, r["image"]


# -- measure() and the CLI ---------------------------------------------------------------------------


def test_measure_with_the_network_reports_jsw_for_both_visits():
    assert SEGMENTERS == ("auto", "network", "classical")
    pair = make_pair(2, narrowing_px=(0.4, 0.6))
    m = measure(pair.baseline, pair.followup, spacing_mm=0.2, config=MeasureConfig(segmenter="network"))
    assert m.segmenter == "network"
    assert m.jsw_baseline is not None and m.jsw_followup is not None
    assert m.jsw_baseline.mean_mm == pytest.approx(0.2 * m.jsw_baseline.mean_px)
    assert m.followup_labels is not None  # the network's, for the figures
    d = m.to_dict()
    assert d["jsw_baseline"]["mean_px"] == pytest.approx(m.jsw_baseline.mean_px)
    assert abs(m.narrowing_px - pair.narrowing_px) < 0.1
    # the JSW change agrees with the narrowing: no disagreement flag
    assert not any("JSW change" in r for r in m.reasons)
    classical = measure(pair.baseline, pair.followup, config=MeasureConfig(segmenter="classical"))
    assert classical.segmenter == "classical" and classical.jsw_baseline is None
    assert classical.to_dict()["jsw_baseline"] is None


def test_jsw_disagreement_flag():
    from jsnq.jsw import JointSpaceWidth
    from jsnq.quality import jsw_disagreement

    def w(px: float) -> JointSpaceWidth:
        return JointSpaceWidth(px, px, None, None, None, (0, 1), np.array([px]))

    assert jsw_disagreement(w(6.0), w(5.5), 0.4, 0.01) is None
    assert jsw_disagreement(w(6.0), w(3.0), 0.4, 0.01) is None  # 2.6 px off: within 3 SD of the JSW's error
    reason = jsw_disagreement(w(8.0), w(2.0), 0.4, 0.01)
    assert reason is not None and "JSW change +6.00 px" in reason
    assert jsw_disagreement(None, w(2.0), 0.4, 0.01) is None
    assert jsw_disagreement(w(6.0), w(6.6), 0.0, 0.01, scale=1.1) is None  # magnification, not widening


def test_cli_segment_writes_labels_overlay_and_json(tmp_path):
    pair = make_pair(1)
    save_image(tmp_path / "crop.png", pair.baseline)
    result = runner.invoke(app, ["segment", str(tmp_path / "crop.png"), "-o", str(tmp_path / "labels.png"),
                                 "--overlay", str(tmp_path / "overlay.png"), "--json", "--spacing", "0.175"])
    assert result.exit_code == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["jsw"]["mean_mm"] == pytest.approx(0.175 * data["jsw"]["mean_px"])
    labels = np.asarray(PILImage.open(tmp_path / "labels.png"))
    assert labels.shape == pair.baseline.shape and set(np.unique(labels)) <= {0, 1, 2}
    with PILImage.open(tmp_path / "overlay.png") as im:
        assert im.mode == "RGB" and im.size == (256, 256)
    text = runner.invoke(app, ["segment", str(tmp_path / "crop.png")])
    assert text.exit_code == 0 and "JSW: mean" in text.stdout and "pixels only" in text.stdout


def test_cli_segment_bad_input_is_one_line(tmp_path):
    result = runner.invoke(app, ["segment", str(tmp_path / "none.png")])
    assert result.exit_code == 2 and result.stderr.strip().count("\n") == 0
    assert "file not found" in result.stderr


def test_cli_measure_segmenter_option(tmp_path):
    pair = make_pair(3, narrowing_px=(0.4, 0.6))
    save_image(tmp_path / "a.png", pair.baseline)
    save_image(tmp_path / "b.png", pair.followup)
    for seg in ("network", "classical"):
        result = runner.invoke(app, ["measure", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--json",
                                     "--segmenter", seg])
        assert result.exit_code == 0, result.stdout + result.stderr
        assert json.loads(result.stdout)["segmenter"] == seg
    bad = runner.invoke(app, ["measure", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--segmenter", "magic"])
    assert bad.exit_code == 2 and "'auto', 'network', 'classical'" in bad.stderr


def test_auto_falls_back_to_the_classical_line_without_weights(monkeypatch):
    import jsnq.segment.network as network

    def unavailable():
        raise WeightsUnavailableError("segment_unetpp.pt: weights file not found")

    monkeypatch.setattr(network, "_shipped", unavailable)
    pair = make_pair(1)
    m = measure(pair.baseline, pair.followup)
    assert m.segmenter == "classical" and m.jsw_baseline is None
    with pytest.raises(WeightsUnavailableError, match="not found"):
        measure(pair.baseline, pair.followup, config=MeasureConfig(segmenter="network"))
