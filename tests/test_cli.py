"""The ``jsnq`` command line, in process (typer's CliRunner), on synthetic joints.

typer >= 0.29 vendors click's runner without ``mix_stderr``: ``result.stdout`` and
``result.stderr`` are always separate, ``result.output`` is both interleaved.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from jsnq.batch import RESULT_COLUMNS as BATCH_COLUMNS
from jsnq.cli import app
from jsnq.config import MeasureConfig
from jsnq.io import save_image, save_labels
from jsnq.phantom import make_pair
from manifests import write_csv

# The phantom has 1 % noise; the classical engine's narrowing SD on such pairs is ~0.02 px
# (its SE is ~0.006 px), so 0.1 px is ~5 SD: generous, yet far below the ~0.5 px signal.
TOLERANCE_PX = 0.1

runner = CliRunner()


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """baseline.png, followup.png (16-bit), labels (0/1/2) and split masks (0/255); truth px."""
    folder = tmp_path_factory.mktemp("pair")
    pair = make_pair(3, narrowing_px=(0.4, 0.6), noise=0.01)
    save_image(folder / "baseline.png", pair.baseline)
    save_image(folder / "followup.png", pair.followup)
    save_labels(folder / "baseline_labels.png", pair.baseline_labels)
    save_labels(folder / "followup_labels.png", pair.followup_labels)
    for name, labels in (("baseline_split.png", pair.baseline_labels), ("followup_split.png", pair.followup_labels)):
        PILImage.fromarray(np.where(labels == 1, 255, 0).astype(np.uint8)).save(folder / name)
    return folder, float(pair.narrowing_px)


def _ok(result) -> None:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"


def _json(result) -> dict:
    _ok(result)
    return json.loads(result.stdout)


# -- measure ------------------------------------------------------------------------------


def test_measure_prints_narrowing_in_pixels_only_without_spacing(pair_dir):
    folder, truth = pair_dir
    result = runner.invoke(app, ["measure", str(folder / "baseline.png"), str(folder / "followup.png")])
    _ok(result)
    assert "narrowing" in result.stdout
    assert "pixels only" in result.stdout
    assert " px" in result.stdout and " mm" not in result.stdout
    assert "reliable" in result.stdout


def test_measure_json_matches_truth(pair_dir):
    folder, truth = pair_dir
    data = _json(runner.invoke(app, ["measure", str(folder / "baseline.png"), str(folder / "followup.png"), "--json",
                                     "--segmenter", "classical"]))
    assert abs(data["narrowing_px"] - truth) < TOLERANCE_PX
    assert data["narrowing_mm"] is None and data["narrowing_se_mm"] is None
    assert data["units"] == "px"
    assert data["reliable"] is True
    assert data["segmenter"] == "classical"


def test_measure_spacing_gives_mm(pair_dir):
    folder, _ = pair_dir
    result = runner.invoke(app, ["measure", str(folder / "baseline.png"), str(folder / "followup.png"),
                                 "--spacing", "0.2", "--json"])
    data = _json(result)
    assert data["spacing_mm"] == 0.2
    assert data["narrowing_mm"] == pytest.approx(0.2 * data["narrowing_px"], rel=1e-12)
    assert data["narrowing_se_mm"] == pytest.approx(0.2 * data["narrowing_se_px"], rel=1e-12)

    text = runner.invoke(app, ["measure", str(folder / "baseline.png"), str(folder / "followup.png"),
                               "--spacing", "0.2"])
    _ok(text)
    assert " mm" in text.stdout and "pixels only" not in text.stdout


def test_measure_figure_writes_png_and_keeps_json_clean(pair_dir, tmp_path):
    folder, _ = pair_dir
    figure = tmp_path / "qa.png"
    result = runner.invoke(app, ["measure", str(folder / "baseline.png"), str(folder / "followup.png"),
                                 "--json", "--figure", str(figure)])
    _json(result)  # stdout is only the JSON
    assert figure.stat().st_size > 10_000
    assert figure.read_bytes()[:4] == b"\x89PNG"
    with PILImage.open(figure) as im:
        assert im.width > 1000 and im.height > 600


def test_measure_figure_directory_must_exist(pair_dir, tmp_path):
    folder, _ = pair_dir
    result = runner.invoke(app, ["measure", str(folder / "baseline.png"), str(folder / "followup.png"),
                                 "--figure", str(tmp_path / "missing" / "qa.png")])
    assert result.exit_code == 2
    assert "output directory does not exist" in result.stderr
    assert not (tmp_path / "missing").exists()


def test_measure_with_label_files(pair_dir):
    folder, truth = pair_dir
    data = _json(runner.invoke(app, [
        "measure", str(folder / "baseline.png"), str(folder / "followup.png"),
        "--baseline-labels", str(folder / "baseline_labels.png"),
        "--followup-labels", str(folder / "followup_labels.png"), "--json"]))
    assert data["segmenter"] == "given"
    assert abs(data["narrowing_px"] - truth) < TOLERANCE_PX


def test_measure_engine_options_reach_the_engine(pair_dir, tmp_path):
    folder, truth = pair_dir
    args = ["measure", str(folder / "baseline.png"), str(folder / "followup.png"),
            "--baseline-labels", str(folder / "baseline_labels.png"), "--json"]
    plain = _json(runner.invoke(app, args))
    ramped = _json(runner.invoke(app, [*args, "--edge-ramp", "10"]))
    # Other weights give another estimate (the fits differ by ~0.01 px on this phantom),
    # still within the tolerance of the truth.
    assert abs(ramped["narrowing_px"] - plain["narrowing_px"]) > 1e-4, (ramped["narrowing_px"], plain["narrowing_px"])
    assert abs(ramped["narrowing_px"] - truth) < TOLERANCE_PX
    assert runner.invoke(app, [*args, "--edge-ramp", "-1"]).exit_code == 2
    free = _json(runner.invoke(app, [*args, "--gain-free"]))
    assert abs(free["narrowing_px"] - plain["narrowing_px"]) > 1e-6
    assert abs(free["narrowing_px"] - truth) < TOLERANCE_PX
    # measure-batch passes it on too: its row equals the single measurement.
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("baseline,followup,baseline_labels\n"
                        f"{folder / 'baseline.png'},{folder / 'followup.png'},{folder / 'baseline_labels.png'}\n")
    out = tmp_path / "out.csv"
    _ok(runner.invoke(app, ["measure-batch", str(csv_path), "--out", str(out), "--edge-ramp", "10"]))
    with out.open() as fh:
        row = next(csv.DictReader(fh))
    assert float(row["narrowing_px"]) == pytest.approx(ramped["narrowing_px"], abs=1e-9)
    # And so does series.
    pairs = {}
    for name, extra in (("plain", []), ("ramped", ["--edge-ramp", "10"])):
        out_json = tmp_path / f"series_{name}.json"
        _ok(runner.invoke(app, ["series", str(folder / "baseline.png"), str(folder / "followup.png"),
                                "--labels", str(folder / "baseline_labels.png"),
                                "--labels", str(folder / "followup_labels.png"), "--json", str(out_json), *extra]))
        pairs[name] = [p["narrowing_px"] for p in json.loads(out_json.read_text())["pairs"]]
    assert max(abs(a - b) for a, b in zip(pairs["plain"], pairs["ramped"])) > 1e-4


def test_measure_with_split_masks(pair_dir):
    folder, truth = pair_dir
    data = _json(runner.invoke(app, [
        "measure", str(folder / "baseline.png"), str(folder / "followup.png"),
        "--baseline-labels", str(folder / "baseline_split.png"),
        "--followup-labels", str(folder / "followup_split.png"), "--split-masks", "--json"]))
    assert data["segmenter"] == "given"
    assert abs(data["narrowing_px"] - truth) < TOLERANCE_PX


def test_split_masks_without_flag_is_a_one_line_error(pair_dir):
    folder, _ = pair_dir
    result = runner.invoke(app, ["measure", str(folder / "baseline.png"), str(folder / "followup.png"),
                                 "--baseline-labels", str(folder / "baseline_split.png")])
    _assert_one_line_error(result, "split_mask")


def test_split_masks_flag_needs_label_files(pair_dir):
    folder, _ = pair_dir
    result = runner.invoke(app, ["measure", str(folder / "baseline.png"), str(folder / "followup.png"),
                                 "--split-masks"])
    _assert_one_line_error(result, "--split-masks")


# -- bad inputs ----------------------------------------------------------------------------


def _assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0]
    assert result.stdout == ""


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    (folder / "corrupt.png").write_bytes(b"\x89PNG" + rng.bytes(2000))
    PILImage.fromarray(np.full((64, 64), 1000, np.uint16)).save(folder / "blank.png")
    colour = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    PILImage.fromarray(colour, mode="RGB").save(folder / "colour.png")
    small = make_pair(1, shape=(128, 128), noise=0.01)
    save_image(folder / "small.png", small.followup)
    save_labels(folder / "small_labels.png", small.baseline_labels)
    return folder


@pytest.mark.parametrize("case", [
    "missing", "corrupt", "blank", "colour", "labels_shape", "labels_no_lower", "absurd_spacing",
    "followup_size", "bad_engine",
])
def test_bad_input_is_one_line_exit_2(case, pair_dir, bad_inputs, tmp_path):
    folder, _ = pair_dir
    base, fol = str(folder / "baseline.png"), str(folder / "followup.png")
    if case == "missing":
        args, needles = [str(bad_inputs / "nope.png"), fol], ["nope.png", "file not found"]
    elif case == "corrupt":
        args, needles = [str(bad_inputs / "corrupt.png"), fol], ["corrupt.png", "cannot read image"]
    elif case == "blank":
        args, needles = [base, str(bad_inputs / "blank.png")], ["blank.png", "blank"]
    elif case == "colour":
        args, needles = [str(bad_inputs / "colour.png"), fol], ["colour.png", "colour"]
    elif case == "labels_shape":
        args = [base, fol, "--baseline-labels", str(bad_inputs / "small_labels.png")]
        needles = ["small_labels.png", "128x128", "256x256"]
    elif case == "labels_no_lower":
        upper_only = tmp_path / "upper_only.png"
        save_labels(upper_only, np.ones((256, 256), np.uint8))
        args, needles = [base, fol, "--baseline-labels", str(upper_only)], ["upper_only.png", "lower"]
    elif case == "absurd_spacing":
        args, needles = [base, fol, "--spacing", "50"], ["absurd pixel spacing 50"]
    elif case == "followup_size":
        args, needles = [base, str(bad_inputs / "small.png")], ["small.png", "same size"]
    else:
        args, needles = [base, fol, "--engine", "quantum"], ["engine", "quantum"]
    _assert_one_line_error(runner.invoke(app, ["measure", *args]), *needles)


# -- measure-batch -------------------------------------------------------------------------


def _write_pairs(path: Path, rows: list[dict[str, str]]) -> Path:
    return write_csv(path, rows, sorted({k for r in rows for k in r}))


def test_measure_batch_records_bad_rows_and_keeps_going(pair_dir, tmp_path):
    folder, truth = pair_dir
    # relative paths resolve against the CSV's folder; absolute ones are kept
    pairs = _write_pairs(folder / "pairs_batch_test.csv", [
        {"id": "a", "baseline": "baseline.png", "followup": "followup.png"},
        {"id": "b", "baseline": "baseline.png", "followup": "missing_followup.png"},
        {"id": "c", "baseline": str(folder / "baseline.png"), "followup": "followup.png",
         "baseline_labels": "baseline_labels.png", "spacing_mm": "0.2"},
    ])
    out, json_out, figures = tmp_path / "results.csv", tmp_path / "results.json", tmp_path / "figs"
    result = runner.invoke(app, ["measure-batch", str(pairs), "--out", str(out), "--json-out", str(json_out),
                                 "--figures", str(figures)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "2 ok" in result.stdout and "1 failed" in result.stdout

    with out.open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == BATCH_COLUMNS
        rows = {r["id"]: r for r in reader}
    assert list(rows) == ["a", "b", "c"]
    assert "missing_followup.png" in rows["b"]["error"] and "file not found" in rows["b"]["error"]
    assert rows["b"]["narrowing_px"] == ""
    for key in ("a", "c"):
        assert rows[key]["error"] == ""
        assert abs(float(rows[key]["narrowing_px"]) - truth) < TOLERANCE_PX
        assert rows[key]["reliable"] == "true"
        assert rows[key]["precise"] == "true" and rows[key]["notes"] == ""  # SE well under 0.25 px
    assert rows["b"]["precise"] == "" and rows["b"]["notes"] == ""  # not measured: empty, not "true"
    assert rows["a"]["narrowing_mm"] == ""
    assert float(rows["c"]["narrowing_mm"]) == pytest.approx(0.2 * float(rows["c"]["narrowing_px"]))

    records = json.loads(json_out.read_text())
    assert [r["id"] for r in records] == ["a", "b", "c"]
    assert records[1]["result"] is None and "file not found" in records[1]["error"]
    assert records[0]["result"]["narrowing_px"] == pytest.approx(float(rows["a"]["narrowing_px"]))
    assert sorted(p.name for p in figures.iterdir()) == ["a.png", "c.png"]


def test_measure_batch_all_ok_exits_0(pair_dir, tmp_path):
    folder, _ = pair_dir
    pairs = _write_pairs(tmp_path / "pairs.csv", [
        {"baseline": str(folder / "baseline.png"), "followup": str(folder / "followup.png")}])
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["measure-batch", str(pairs), "--out", str(out), "--spacing", "0.1"])
    _ok(result)
    with out.open(newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["id"] == "1"
    assert float(row["narrowing_mm"]) == pytest.approx(0.1 * float(row["narrowing_px"]))


def test_measure_batch_out_directory_must_exist(pair_dir, tmp_path):
    folder, _ = pair_dir
    pairs = _write_pairs(tmp_path / "pairs.csv", [{"baseline": "b.png", "followup": "f.png"}])
    result = runner.invoke(app, ["measure-batch", str(pairs), "--out", str(tmp_path / "nowhere" / "out.csv")])
    _assert_one_line_error(result, "output directory does not exist")


def test_measure_batch_bad_csv(tmp_path):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("before,after\nx.png,y.png\n")
    result = runner.invoke(app, ["measure-batch", str(pairs), "--out", str(tmp_path / "out.csv")])
    _assert_one_line_error(result, "missing column", "baseline")
    result = runner.invoke(app, ["measure-batch", str(tmp_path / "none.csv"), "--out", str(tmp_path / "out.csv")])
    _assert_one_line_error(result, "none.csv", "file not found")


# -- demo, help, version -------------------------------------------------------------------


def test_demo_runs_jsnq_hand_on_a_synthetic_hand_and_prints_measured_against_true(tmp_path):
    """`make demo`'s command: a synthetic two-visit hand through `jsnq hand`, to its table, CSV,
    JSON and report; then per joint the measured narrowing beside the true one (from truth.csv)."""
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out)])
    _ok(result)
    assert "$ jsnq hand " in result.stdout and "Measured against true narrowing (mm):" in result.stdout
    truth = {r["joint"]: float(r["true_narrowing_mm"]) for r in csv.DictReader(open(out / "truth.csv"))}
    assert len(truth) == 14
    for joint, true in truth.items():
        line = next(x for x in result.stdout.splitlines() if x.startswith(f"{joint} ") and "±" in x)
        assert f"{true:+.3f}" in line
    for name in ("baseline.png", "followup.png", "hand.csv", "hand.json", "report.html"):
        assert (out / name).stat().st_size > 1000


def test_demo_crop_writes_images_and_figure(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--crop", "--out", str(out), "--seed", "1"])
    _ok(result)
    assert "0.175 mm/px" in result.stdout and "true narrowing" in result.stdout
    for name in ("baseline.png", "followup.png", "qa.png"):
        assert (out / name).stat().st_size > 1000
    with PILImage.open(out / "baseline.png") as im:
        assert im.mode.startswith("I;16")


def test_help_and_version():
    result = runner.invoke(app, ["--help"])
    _ok(result)
    for command in ("measure", "measure-batch", "demo"):
        assert command in result.stdout
    result = runner.invoke(app, ["--version"])
    _ok(result)
    assert result.stdout.startswith("jsnq ")


def test_cli_import_stays_light():
    # `jsnq --help` must not pay for the numerical stack: heavy imports happen inside commands.
    code = ("import sys, jsnq.cli; heavy = {'matplotlib', 'scipy', 'numpy'} & set(sys.modules); "
            "assert not heavy, f'imported at start-up: {heavy}'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_measure_summary_shows_notes_apart_from_the_flag():
    """The readable summary: a reliable pair with a precision note says 'reliable: yes' and
    prints the note on its own line, not as a reason."""
    import dataclasses
    import io

    from rich.console import Console

    from jsnq import measure
    from jsnq.cli.measure import print_summary
    from jsnq.phantom import make_pair

    pair = make_pair(0, noise=0.01)
    m = measure(pair.baseline, pair.followup, baseline_labels=pair.baseline_labels,
                config=MeasureConfig(engine="classical"))
    noted = dataclasses.replace(m, notes=("imprecise: standard error 0.300 px > 0.25 px (test)",))
    buffer = io.StringIO()
    print_summary(Console(file=buffer, width=200, highlight=False), noted)
    text = buffer.getvalue()
    assert "reliable: yes" in text and "note: imprecise: standard error 0.300 px > 0.25 px (test)" in text
