"""The gaps a new user met (issue 12), one test each, on synthetic joints through the CLI.

Each test fails on the code before its fix: an unmeasured visit written as 0 +- 0, outputs
written over inputs or through symlinks, an 8000 x 8000 crop measured for minutes, a read-only
output folder, non-UTF-8 file names, an unflagged negative JSW, tracebacks from hand-edited
results and silent mismatches, and one visit's spacing applied silently to the other.
"""

from __future__ import annotations

import csv
import errno
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

import jsnq
from jsnq.cli import app
from jsnq.config import MeasureConfig
from jsnq.errors import JsnqInputError
from jsnq.io import Image, save_image, save_labels
from jsnq.jsw import JointSpaceWidth
from jsnq.phantom import make_pair
from jsnq.quality import jsw_check

runner = CliRunner()


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 128-px visits of one phantom joint, its labels, and a 64-px crop of another."""
    folder = tmp_path_factory.mktemp("crops")
    pair = make_pair(5, narrowing_px=(0.4, 0.6), noise=0.01)
    save_image(folder / "v1.png", pair.baseline)
    save_image(folder / "v2.png", pair.followup)
    save_image(folder / "v3.png", make_pair(5, narrowing_px=(0.8, 1.0), noise=0.01).followup)
    save_labels(folder / "labels1.png", pair.baseline_labels)
    save_image(folder / "small.png", make_pair(6, shape=(64, 64)).baseline)
    return folder


def _one_line_error(result, *, code: int = 2) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


# 1. an unmeasured visit is never written as a number --------------------------------------

def test_series_writes_an_unmeasured_visit_empty_and_exits_1(crops, tmp_path):
    out_csv, out_json = tmp_path / "s.csv", tmp_path / "s.json"
    result = runner.invoke(app, ["series", str(crops / "v1.png"), str(crops / "v2.png"), str(crops / "small.png"),
                                 "--engine", "classical", "--segmenter", "classical",
                                 "--csv", str(out_csv), "--json", str(out_json)])
    assert result.exit_code == 1, result.output
    assert "not measured" in result.stdout and "not measured" in result.stderr
    rows = list(csv.DictReader(out_csv.open()))
    assert rows[2]["narrowing_px"] == "" and rows[2]["se_px"] == "" and rows[2]["flag"]
    assert rows[1]["narrowing_px"] != ""  # the measured visit is kept
    visit = json.loads(out_json.read_text())["visits"][2]
    assert visit["narrowing_px"] is None and visit["se_px"] is None and visit["flag"]


def test_trajectory_of_a_visit_not_linked_to_the_first_is_nan():
    from jsnq.trajectory import PairEstimate, fit_trajectory

    # visits 2 and 3 are linked to each other but not to 0 or 1
    t = fit_trajectory(4, [PairEstimate(0, 1, 0.5, 0.1, 0.5, -0.5, True), PairEstimate(2, 3, 0.2, 0.1, 0.2, -0.2, True)])
    assert t.narrowing_px[1] == pytest.approx(0.5)
    assert math.isnan(t.narrowing_px[2]) and math.isnan(t.se_px[3])
    assert "links it to the first" in t.flagged_visits[2]
    assert t.to_dict()["narrowing_px"][2] is None


# 2. outputs never overwrite inputs, nor follow symlinks --------------------------------------

@pytest.mark.parametrize("argv", [
    ["segment", "{d}/v1.png", "-o", "{d}/v1.png"],
    ["measure", "{d}/v1.png", "{d}/v2.png", "--figure", "{d}/v1.png"],
    ["measure", "{d}/v1.png", "{d}/v2.png", "--baseline-labels", "{d}/labels1.png", "--report", "{d}/labels1.png"],
    ["series", "{d}/v1.png", "{d}/v2.png", "--csv", "{d}/v2.png"],
])
def test_an_output_that_is_an_input_is_refused(crops, argv):
    before = {p.name: p.read_bytes() for p in crops.iterdir()}
    line = _one_line_error(runner.invoke(app, [a.format(d=crops) for a in argv]))
    assert "input" in line
    assert {p.name: p.read_bytes() for p in crops.iterdir()} == before


def test_measure_batch_out_over_its_own_csv_is_refused(crops, tmp_path):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"baseline,followup\n{crops / 'v1.png'},{crops / 'v2.png'}\n")
    text = pairs.read_text()
    assert "input" in _one_line_error(runner.invoke(app, ["measure-batch", str(pairs), "--out", str(pairs)]))
    assert pairs.read_text() == text


def test_a_symlink_inside_the_figures_folder_is_not_followed(crops, tmp_path):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"id,baseline,followup\nA,{crops / 'v1.png'},{crops / 'v2.png'}\n")
    figures = tmp_path / "figures"
    figures.mkdir()
    victim = tmp_path / "elsewhere.txt"
    victim.write_text("keep me")
    (figures / "A.png").symlink_to(victim)
    result = runner.invoke(app, ["measure-batch", str(pairs), "--out", str(tmp_path / "r.csv"), "--engine",
                                 "classical", "--segmenter", "classical", "--figures", str(figures)])
    assert victim.read_text() == "keep me"
    assert result.exit_code != 0 and "symbolic link" in result.output


# 3. a documented size limit before any heavy work -------------------------------------------

def test_a_huge_crop_is_refused_in_one_line_before_decoding(crops, tmp_path, monkeypatch):
    from PIL import ImageFile

    big = tmp_path / "big.png"
    PILImage.new("L", (8000, 8000)).save(big)  # a few kB: constant
    small = (crops / "v1.png").read_bytes()

    def no_decoding(self, *args, **kwargs):  # before the limit: minutes, 11 GB, a MemoryError
        raise AssertionError(f"{self.size} decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    for argv in (["measure", str(big), str(crops / "v1.png")], ["segment", str(big)]):
        line = _one_line_error(runner.invoke(app, argv))
        assert "8000" in line and "1024" in line
    assert (crops / "v1.png").read_bytes() == small


# 4. an unwritable output folder is one line --------------------------------------------------

def test_a_read_only_output_folder_is_one_line(crops, tmp_path, monkeypatch):
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)  # as root, chmod cannot make a folder read-only
    line = _one_line_error(runner.invoke(app, ["segment", str(crops / "v1.png"), "-o", str(tmp_path / "l.png")]))
    assert "Read-only" in line and "l.png" in line


# 5. file names that are not UTF-8 ------------------------------------------------------------

def test_non_utf8_file_names_reach_figures_and_reports(crops, tmp_path):
    odd = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9.png")  # a Latin-1 name: surrogate escapes
    Path(odd).write_bytes((crops / "v1.png").read_bytes())
    figure, report = tmp_path / "qa.png", tmp_path / "r.html"
    result = runner.invoke(app, ["measure", odd, str(crops / "v2.png"), "--engine", "classical", "--segmenter",
                                 "classical", "--figure", str(figure), "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert figure.stat().st_size > 1000 and "caf" in report.read_text(encoding="utf-8")


# 6. a negative JSW is explained and, where it means no joint space, noted ----------------------

def _jsw(mean: float, low: float) -> JointSpaceWidth:
    return JointSpaceWidth(mean_px=mean, min_px=low, mean_mm=None, min_mm=None, spacing_mm=None, columns=(10, 20),
                           profile_px=np.array([low, mean]), centre_px=(15.0, 30.0))


def test_a_non_positive_mean_jsw_is_noted_and_a_negative_minimum_explained():
    assert jsw_check(_jsw(3.0, -0.4), "baseline") is None  # overlap in places: ordinary
    reason = jsw_check(_jsw(-2.5, -6.0), "follow-up")
    assert reason is not None and "follow-up" in reason and "-2.50" in reason
    from jsnq.cli.common import jsw_text

    assert "overlap" in jsw_text(_jsw(3.0, -0.4)) and "overlap" not in jsw_text(_jsw(3.0, 0.4))


def test_real_crops_whose_masks_overlap_are_noted_not_flagged(shared_data):
    # 00007_L_2: the network's masks of both visits overlap (mean JSW -2.5 / -3.4 px), as
    # the true masks of about a quarter of the crops do: a note, not a failed check
    folder = shared_data / "finger-joints"
    rows = [r for r in csv.DictReader((folder / "manifest.csv").open()) if r["joint_id"] == "00007_L_2"]
    m = jsnq.measure(folder / rows[0]["image"], folder / rows[1]["image"])
    assert m.jsw_baseline.mean_px < 0
    assert any("no joint space" in r for r in m.notes) and not any("no joint space" in r for r in m.reasons)


# 7. saved results: one-line errors, and a mismatch is an error --------------------------------

def _measured_json(crops: Path, tmp_path: Path, *extra: str) -> Path:
    result = runner.invoke(app, ["measure", str(crops / "v1.png"), str(crops / "v2.png"), "--engine", "classical",
                                 "--segmenter", "classical", "--json", *extra])
    assert result.exit_code == 0, result.output
    path = tmp_path / "r.json"
    path.write_text(result.stdout)
    return path


@pytest.mark.parametrize("edit", [
    lambda d: d.pop("config"),
    lambda d: d.update(config={"engine": "warp-drive"}),
    lambda d: d.update(config="auto"),
    lambda d: d.update(baseline=17),
    lambda d: d.update(inputs=[1, 2]),
    lambda d: d["config"].update(registration={"no_such_option": 1}),
])
def test_report_on_hand_edited_results_is_one_line(crops, tmp_path, edit):
    path = _measured_json(crops, tmp_path)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    _one_line_error(runner.invoke(app, ["report", str(path), "-o", str(tmp_path / "r.html")]))
    assert not (tmp_path / "r.html").exists()


def test_report_refuses_a_mismatch_unless_asked(crops, tmp_path):
    path = _measured_json(crops, tmp_path)
    data = json.loads(path.read_text())
    data["narrowing_px"] += 0.01
    path.write_text(json.dumps(data))
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", str(path), "-o", str(out)])
    assert result.exit_code == 1 and "differs from the saved" in result.stderr and not out.exists()
    result = runner.invoke(app, ["report", str(path), "-o", str(out), "--allow-mismatch"])
    assert result.exit_code == 0 and out.exists() and "warning" in result.stderr


def test_report_reproduces_non_default_options_exactly(crops, tmp_path):
    path = _measured_json(crops, tmp_path, "--edge-ramp", "10", "--gain-free", "--baseline-labels",
                          str(crops / "labels1.png"), "--no-check-labels")
    saved = json.loads(path.read_text())
    assert saved["config"]["registration"]["edge_ramp_px"] == 10 and saved["config"]["registration"]["gain_free"]
    assert saved["config"]["check_labels"] is False
    default = jsnq.measure(crops / "v1.png", crops / "v2.png", baseline_labels=crops / "labels1.png",
                           config=MeasureConfig(engine="classical", check_labels=False))
    assert abs(default.narrowing_px - saved["narrowing_px"]) > 1e-6  # the options matter for this pair
    result = runner.invoke(app, ["report", str(path), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert "differs" not in result.output


# 8. one visit with a spacing and one without ----------------------------------------------------

def test_one_visit_with_a_spacing_and_one_without_is_refused(crops):
    a = jsnq.load_image(crops / "v1.png")
    b = jsnq.load_image(crops / "v2.png")
    with pytest.raises(JsnqInputError, match="no pixel spacing"):
        jsnq.measure(Image(a.array, 0.1, "dicom.dcm"), Image(b.array, None, "png.png"),
                     config=MeasureConfig(engine="classical", segmenter="classical"))
    m = jsnq.measure(Image(a.array, 0.1, "dicom.dcm"), Image(b.array, None, "png.png"), spacing_mm=0.1,
                     config=MeasureConfig(engine="classical", segmenter="classical"))
    assert m.spacing_mm == 0.1  # an explicit spacing decides for both
