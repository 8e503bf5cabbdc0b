"""Whole-hand and study outputs a trial can trust (issue 21): refusals, units, invalid values, counts.

One test per defect of the issue's "Why" (numbered as there), each failing without its fix, and
the two-patient whole-hand study built from ``../shared/data/hand-pair`` (patient A: the two
visits; patient B: the visits rotated, shifted and re-noised), run by ``jsnq study`` and by
Python, whose tables are checked for the rules below. Everything is written to pytest's temporary
folders, never into the repository.
"""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from jsnq.cli import app
from jsnq.errors import JsnqInputError
from jsnq.io import save_image
from jsnq.phantom import make_hand

runner = CliRunner()
PAIR = ("IMAGE007_20110111.png", "IMAGE007_20120221.png")
DATES = ("2011-01-11", "2012-02-21")
SPACING = 0.17
#: Joints for the real-data studies: MCP2 (not found on this hand: a failure), MCP3 (its JSW
#: negative: the masks overlap), MCP4 (reliable), DIP5 (JSW negative).
TRIAL_JOINTS = "MCP2,MCP3,MCP4,DIP5"


def _write_csv(path: Path, header, rows, delimiter=",") -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def phantom_pair(tmp_path_factory):
    """Two visits of the hand phantom as PNG files (no spacing in the files)."""
    folder = tmp_path_factory.mktemp("phantom")
    ph = make_hand(5, spacing_mm=0.25)
    for k in range(2):
        save_image(folder / f"v{k}.png", ph.images[k])
    return folder, ph


def _dicom_copy(png: Path, out: Path, spacing: float) -> Path:
    """``png`` as an uncompressed 16-bit DICOM with PixelSpacing (test_io's writer; no network)."""
    from PIL import Image as PILImage
    from test_io import write_dicom

    a = np.asarray(PILImage.open(png)).astype(np.uint16)
    return write_dicom(out, a, PixelSpacing=[f"{spacing:g}", f"{spacing:g}"])


def _moved_copy(src: Path, out: Path, seed: int) -> Path:
    """``src`` rotated by 2 degrees, shifted by a few px and re-noised (1 % of its range)."""
    from PIL import Image as PILImage

    save_image(out, _moved_array(np.asarray(PILImage.open(src), dtype=np.float64), seed))
    return out


def _moved_array(a: np.ndarray, seed: int) -> np.ndarray:
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    t = np.deg2rad(2.0)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    centre = (np.array(a.shape) - 1) / 2.0
    shift = np.array([4.0, -3.0])
    moved = ndimage.affine_transform(a, rot, offset=centre - rot @ centre + shift, order=3, mode="nearest")
    moved += rng.normal(0.0, 0.01 * (a.max() - a.min()), a.shape)
    return moved


def build_trial(shared: Path, folder: Path, *, cut_off: bool = False) -> Path:
    """The two-patient whole-hand study of the hand-pair: A, the two real visits; B, each visit
    rotated, shifted and re-noised. With ``cut_off`` a third patient C whose follow-up is cut off
    above row 620 (its DIPs and PIPs are outside the image: those joints cannot be measured).
    Returns its manifest (no spacing column: --spacing gives it)."""
    from PIL import Image as PILImage

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, (name, date) in enumerate(zip(PAIR, DATES)):
        a = folder / f"A_{k}.png"
        shutil.copyfile(shared / "hand-pair" / name, a)
        _moved_copy(a, folder / f"B_{k}.png", seed=k)
        rows += [["A", "L", date, a.name], ["B", "L", date, f"B_{k}.png"]]
        if cut_off:
            c = np.asarray(PILImage.open(a), dtype=np.float64)
            save_image(folder / f"C_{k}.png", _moved_array(c, seed=10 + k) if k == 0 else c[620:])
            rows.append(["C", "L", date, f"C_{k}.png"])
    return _write_csv(folder / "trial.csv", ["patient", "side", "date", "image"], rows)


# -- defect 1: one visit with a spacing, one without ----------------------------------------------


def test_defect1_mixed_spacing_is_refused_by_hand_study_and_the_api(tmp_path, phantom_pair):
    from jsnq.hand.measure import measure_hand
    from jsnq.study import run_study

    folder, ph = phantom_pair
    dcm = _dicom_copy(folder / "v0.png", tmp_path / "v0.dcm", 0.25)
    png = folder / "v1.png"
    r = runner.invoke(app, ["hand", str(dcm), str(png)])
    assert r.exit_code == 2 and r.output.startswith("error: ") and "no pixel spacing" in r.output
    assert r.output.count("\n") == 1, r.output
    with pytest.raises(JsnqInputError, match="no pixel spacing"):
        measure_hand(dcm, png, hands=ph.hands)
    manifest = _write_csv(tmp_path / "s.csv", ["patient", "date", "image"],
                          [["P", "2020-01-01", str(dcm)], ["P", "2021-01-01", str(png)]])
    with pytest.raises(JsnqInputError, match=r"s\.csv line 3: .*no pixel spacing"):
        run_study(manifest, tmp_path / "out", workers=0)
    r = runner.invoke(app, ["study", str(manifest), "--out", str(tmp_path / "out2"), "--workers", "0"])
    assert r.exit_code == 2 and "no pixel spacing" in r.output and r.output.count("\n") == 1
    # --spacing decides: then both are measured at it (refusal is only for the undecided case)
    assert measure_hand(dcm, png, hands=ph.hands, spacing_mm=0.25, joints=["MCP3"]).spacing_mm == 0.25


# -- defect 2: the same image twice ------------------------------------------------------------


def test_defect2_the_same_image_twice_is_refused(tmp_path, phantom_pair):
    from jsnq.hand.measure import measure_hand
    from jsnq.study import run_study

    folder, ph = phantom_pair
    v0 = folder / "v0.png"
    r = runner.invoke(app, ["hand", str(v0), str(v0), "--spacing", "0.25"])
    assert r.exit_code == 2 and "same image as visit 0" in r.output and r.output.count("\n") == 1
    with pytest.raises(JsnqInputError, match="same image"):
        measure_hand(ph.images[0], ph.images[0].copy(), hands=[ph.hands[0]] * 2)
    copy = tmp_path / "copy.png"
    shutil.copyfile(v0, copy)
    manifest = _write_csv(tmp_path / "s.csv", ["patient", "date", "image"],
                          [["P", "2020-01-01", str(v0)], ["P", "2021-01-01", str(copy)]])
    with pytest.raises(JsnqInputError, match="line 3: .*same bytes as line 2"):
        run_study(manifest, tmp_path / "out", workers=0)


# -- defect 4: one truth about failures -----------------------------------------------------------


def test_defect4_a_joint_not_measured_is_counted_the_same_everywhere(tmp_path, phantom_pair, monkeypatch):
    """A hand unit measured but for one joint (PIP3, made to fail here): the printed summary, the
    exit code (1), units.csv, study.json, summary.csv and the report all count it, on a first run
    and on a rerun that skips the unit."""
    import dataclasses

    from jsnq.study import units

    folder, _ = phantom_pair
    real = units.measure_hand_visits

    def one_joint_lost(*args, **kwargs):
        r = real(*args, **kwargs)
        kept = {n: v for n, v in r.joints.items() if n != "PIP3"}
        return dataclasses.replace(r, joints=kept, errors={**r.errors, "PIP3": "not found in the baseline (test)"})

    monkeypatch.setattr(units, "measure_hand_visits", one_joint_lost)
    manifest = _write_csv(tmp_path / "s.csv", ["patient", "side", "date", "image"],
                          [["P", "L", "2020-01-01", str(folder / "v0.png")],
                           ["P", "L", "2021-01-01", str(folder / "v1.png")]])
    out = tmp_path / "out"
    for attempt in range(2):  # the rerun skips the unit, and still counts its lost joint
        r = runner.invoke(app, ["study", str(manifest), "--out", str(out), "--workers", "0", "--spacing", "0.25",
                                "--joints", "MCP3,PIP3", "--report"])
        assert r.exit_code == 1, r.output
        assert "1 of 2 joint series could not be measured" in r.output
        assert "not measured: patient P L PIP3: not found in the baseline (test)" in r.output
        units_csv = _read_csv(out / "units.csv")
        assert [u["joint"] for u in units_csv if u["status"] != "ok"] == ["PIP3"]
        info = json.loads((out / "study.json").read_text())
        assert info["n_not_measured"] == 1 and [f["joint"] for f in info["not_measured"]] == ["PIP3"]
        assert {s["joint"]: s["n_failed"] for s in _read_csv(out / "summary.csv")} == {"MCP3": "0", "PIP3": "1"}
        assert "2 units · 1 not measured" in (out / "report.html").read_text()


# -- defect 6: a duplicate (patient, side, date) ---------------------------------------------------


def test_defect6_a_duplicate_patient_side_date_is_refused(tmp_path, phantom_pair):
    from jsnq.study import run_study

    folder, _ = phantom_pair
    manifest = _write_csv(tmp_path / "s.csv", ["patient", "side", "date", "image"],
                          [["P", "L", "2020-01-01", str(folder / "v0.png")],
                           ["P", "L", "2020-01-01", str(folder / "v1.png")]])
    with pytest.raises(JsnqInputError, match="line 3: date 2020-01-01 repeats line 2 of the same patient and side"):
        run_study(manifest, tmp_path / "out", workers=0)
    r = runner.invoke(app, ["study", str(manifest), "--out", str(tmp_path / "o"), "--workers", "0", "--spacing", "0.2"])
    assert r.exit_code == 2 and r.output.startswith("error: ") and "nan" not in r.output


# -- defect 8: malformed manifests say what was found ------------------------------------------


@pytest.mark.parametrize("header, delimiter, found", [
    (["patient", "date", "image"], ";", "semicolon"),
    (["Patient", "Date", "Image"], ",", "Patient, Date, Image"),
])
def test_defect8_a_malformed_manifest_says_what_was_found(tmp_path, header, delimiter, found):
    from jsnq.study.manifest import read_manifest

    path = _write_csv(tmp_path / "s.csv", header, [["P", "2020-01-01", "a.png"]], delimiter=delimiter)
    with pytest.raises(JsnqInputError, match="missing column") as err:
        read_manifest(path)
    assert found in str(err.value) and "\n" not in str(err.value)


# -- defects 3, 5, 7 on the phantom: rows in radiograph px, invalid JSW empty ---------------------


def test_defect5_hand_rows_are_in_radiograph_px_with_the_radiographs_spacing(phantom_pair):
    """The phantom's known narrowing (mm of the radiograph, spacing 0.25) is recovered in
    radiograph px: narrowing_px x 0.25 = narrowing_mm, for every joint whatever its crop's zoom
    (1.8-3.5 crop px per radiograph px), within 0.03 mm (the phantom tests' tolerance)."""
    from jsnq.hand.measure import measure_hand

    folder, ph = phantom_pair
    result = measure_hand(folder / "v0.png", folder / "v1.png", hands=ph.hands, spacing_mm=0.25,
                          joints=["MCP3", "PIP4", "DIP2"])
    rows = {r["joint"]: r for r in result.rows()}
    zooms = set()
    for name in ("MCP3", "PIP4", "DIP2"):
        r = rows[name]
        zooms.add(round(r["crop_zoom"], 3))
        assert r["spacing_mm"] == 0.25
        assert r["narrowing_px"] * 0.25 == pytest.approx(r["narrowing_mm"], rel=1e-9)
        assert r["narrowing_crop_px"] == pytest.approx(r["narrowing_px"] * r["crop_zoom"], rel=1e-12)
        assert r["narrowing_px"] * 0.25 == pytest.approx(ph.narrowing_mm[name][1], abs=0.03)
    assert len(zooms) > 1  # the joints' crops differ in zoom; their rows do not


def test_defect3_a_jsw_that_is_not_valid_is_empty_with_its_reason():
    """A JSW from overlapping masks (negative) or from a joint whose network segmentation was not
    trusted is no width: empty, with the note; a positive one of a trusted joint is kept."""
    from jsnq.hand.checks import SplitCheck, SplitStatus
    from jsnq.hand.tables import jsw_value
    from jsnq.jsw import JointSpaceWidth

    def w(mean):
        return JointSpaceWidth(mean, mean - 1, mean * 0.1, (mean - 1) * 0.1, 0.1, (0, 9), np.zeros(10))

    trusted = SplitCheck(SplitStatus.NETWORK)
    assert jsw_value(w(-4.7), trusted)[0] is None and "overlap" in jsw_value(w(-4.7), trusted)[1]
    failed = SplitCheck(SplitStatus.NETWORK_FAILED, "negative joint space width in the follow-up crop")
    value, note = jsw_value(w(5.0), failed)
    assert value is None and note == "JSW not valid: network failed: negative joint space width in the follow-up crop"
    flagged = SplitCheck(SplitStatus.PROFILE_FLAGGED, "no joint space found")
    assert jsw_value(w(5.0), flagged) == (None, "JSW not valid: profile flagged: no joint space found")
    for split in (trusted, SplitCheck(SplitStatus.PROFILE), SplitCheck(SplitStatus.CLASSICAL), None):
        value, note = jsw_value(w(5.0), split)
        assert value.mean_px == 5.0 and note == ""


def test_a_split_status_has_a_reason_exactly_when_not_trusted():
    """The status is an enum whose value the tables write; a flagged split without its reason,
    or a trusted one with one, is refused."""
    from jsnq.hand.checks import SplitCheck, SplitStatus

    assert [s.trusted for s in map(SplitCheck, (SplitStatus.PROFILE, SplitStatus.NETWORK, SplitStatus.CLASSICAL,
                                                 SplitStatus.NETWORK_AS_CONFIGURED))] == [True] * 4
    assert str(SplitCheck(SplitStatus.NETWORK_FAILED, "why")) == "network failed: why"
    assert str(SplitCheck(SplitStatus.PROFILE)) == "profile"
    with pytest.raises(ValueError, match="needs a reason"):
        SplitCheck(SplitStatus.PROFILE_FLAGGED)
    with pytest.raises(ValueError, match="has no reason"):
        SplitCheck(SplitStatus.PROFILE, "why")


def test_reasons_quote_radiograph_px():
    from jsnq.reasons import codes, rescale_px

    text = "implausible narrowing +6.22 px (|JSN| > 6.0 px); correlation 0.41; 21 frame px apart"
    assert rescale_px(text, 0.5) == "implausible narrowing +3.11 px (|JSN| > 3.00 px); correlation 0.41; 21 frame px apart"
    assert codes(["segmentation network failed (negative joint space width in the baseline crop (-5.5 px): the "
                  "masks overlap); the JSW is not valid, the split line was kept",
                  "joint posture changed: bones rotated +5.5 deg relative to each other (> 5.0 deg); the narrowing "
                  "depends on the evaluation point"]) == ["JSW", "POSTURE"]


# -- the cli table and text -----------------------------------------------------------------------


def test_hand_table_fits_100_columns_with_codes_and_a_legend(tmp_path, phantom_pair, monkeypatch):
    folder, ph = phantom_pair
    monkeypatch.setenv("COLUMNS", "100")
    r = runner.invoke(app, ["hand", str(folder / "v0.png"), str(folder / "v1.png"), "--spacing", "0.25",
                            "--joints", "MCP3,DIP2", "--csv", str(tmp_path / "h.csv")])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert all(len(line) <= 100 for line in lines)
    body = [line for line in lines if re.match(r"\s*(MCP|PIP|DIP|IP)\d", line)]
    assert len(body) == 14  # one line per joint (not requested ones too, with their code)
    assert "NOTREQ" in r.stdout and "codes:" in r.stdout and "-0.000" not in r.stdout and "nan" not in r.stdout
    rows = _read_csv(tmp_path / "h.csv")
    assert {r["codes"] for r in rows if r["joint"] not in ("MCP3", "DIP2")} == {"NOTREQ"}
    assert all(r["narrowing_px"] == "" for r in rows if r["joint"] not in ("MCP3", "DIP2"))


def test_text_has_no_nan_no_negative_zero_and_plural_forms():
    from jsnq.cli.common import plural, pm, signed
    from jsnq.cli.study import summary_line
    from jsnq.study.stats import summarise

    assert signed(-0.0001) == "0.000" and signed(-0.0) == "0.000" and signed(float("nan")) == ""
    assert pm(float("nan"), 0.1, "mm") == "not measured" and plural(1, "patient") == "1 patient"
    s, = summarise([_failed("MCP2", "P0")])
    line = summary_line(s)
    assert "nan" not in line and "1 not measured" in line and "no trusted rate" in line


def _failed(joint, patient):
    from jsnq.study.stats import UnitOutcome

    return UnitOutcome(joint, patient, False, None, math.nan, math.nan, True)


# -- real data: the two-patient whole-hand study (issue 21, "Must show") -----------------------------


def _check_tables(out: Path) -> dict:
    """The rules every table of a whole-hand study must pass; returns the counts."""
    joints = pq.read_table(out / "joints.parquet").to_pylist()
    pairs = pq.read_table(out / "pairs.parquet").to_pylist()
    units = _read_csv(out / "units.csv")
    summary = _read_csv(out / "summary.csv")
    info = json.loads((out / "study.json").read_text())
    with open(out / "joints.csv", newline="") as fh:
        text = fh.read()
    assert "nan" not in text.lower().replace("nanmedian", "") and "-0.0," not in text
    for r in joints:
        # not measured or not valid: empty with its reason
        if r["jsw_mm"] is not None:
            assert r["jsw_mm"] > 0 and r["jsw_px"] > 0
        else:
            assert "jsw" in (r["missing"] or "") or r["unit_status"] != "ok"
        if r["narrowing_px"] is None:
            assert r["reasons"]
        else:
            # one pixel unit: radiograph px x the radiograph's spacing = mm
            assert r["spacing_mm"] == SPACING
            assert r["narrowing_px"] * SPACING == pytest.approx(r["narrowing_mm"], rel=1e-9)
        if not r["reliable"]:
            assert r["reasons"], r  # every flag with its reason
    for p in pairs:
        for c in ("jsw_baseline_mm", "jsw_followup_mm"):
            assert p.get(c) is None or p[c] > 0
        if p["narrowing_px"] is not None:
            assert p["narrowing_px"] * SPACING == pytest.approx(p["narrowing_mm"], rel=1e-9)
    for u in units:
        if u["status"] == "ok" and u["rate_px_per_year"]:
            assert float(u["spacing_mm"]) == SPACING
            assert float(u["rate_px_per_year"]) * SPACING == pytest.approx(float(u["rate_mm_per_year"]), rel=1e-9)
        if u["flagged"] == "true" and u["status"] == "ok":
            assert u["reasons"]
    failed = [u for u in units if u["status"] != "ok"]
    assert sum(int(s["n_failed"]) for s in summary) == len(failed) == info["n_not_measured"]
    assert sum(int(s["n_flagged"]) for s in summary) == sum(u["flagged"] == "true" and u["status"] == "ok"
                                                            for u in units)
    for s in summary:
        for lo, hi in (("rate_ci_low_mm", "rate_ci_high_mm"), ("rate_ci_low_px", "rate_ci_high_px")):
            assert (s[lo] == "") == (s[hi] == "")
            if int(s["n_patients"]) < 2:
                assert s[lo] == ""  # an undefined CI is empty
    return {"failed": len(failed), "units": len(units)}


def test_must_show_two_patient_whole_hand_study(shared_data, tmp_path):
    """A: the RA hand-pair's two visits; B: both visits rotated 2 degrees, shifted and re-noised;
    C: a moved copy of the first visit and the second cut off above its PIPs.
    Through `jsnq study` (2 Dask workers, with the reports) and by Python: every table passes the
    rules, the counts agree (printed line, exit code, units.csv, study.json, summary.csv, the
    report) and the two runs' tables are equal."""
    from jsnq.study import run_study

    manifest = build_trial(shared_data, tmp_path / "trial", cut_off=True)
    out = tmp_path / "cli"
    r = runner.invoke(app, ["study", str(manifest), "--out", str(out), "--workers", "2", "--spacing", str(SPACING),
                            "--joints", TRIAL_JOINTS, "--report"])
    counts = _check_tables(out)
    assert counts["failed"] >= 1  # patient C's DIP5 is cut off at the follow-up
    assert r.exit_code == 1, r.output  # ... so not everything was measured: exit 1
    assert f"{counts['failed']} of {counts['units']} joint series could not be measured" in r.output
    assert "nan" not in r.output and "-0.000" not in r.output and not r.output.startswith("\n")
    html = (out / "report.html").read_text()
    assert f"{counts['units']} units · {counts['failed']} not measured" in html
    for unit in json.loads((out / "study.json").read_text())["failed"]:
        page = (out / "reports" / f"{unit}.html").read_text()
        assert "&lt;array&gt;" not in page and "<array>" not in page
    py = run_study(manifest, tmp_path / "py", workers=0, spacing_mm=SPACING, joints=TRIAL_JOINTS.split(","))
    assert len(py.not_measured) == counts["failed"]
    _check_tables(tmp_path / "py")
    a = pq.read_table(out / "joints.parquet").to_pylist()
    b = pq.read_table(tmp_path / "py" / "joints.parquet").to_pylist()
    # The same numbers: the Dask workers run torch on 1 thread each, this process on its own count,
    # so sums are ordered differently (1e-9 px seen); far below any SE (> 0.01 px).
    assert [(x["patient"], x["joint"], x["visit"]) for x in a] == [(x["patient"], x["joint"], x["visit"]) for x in b]
    for x, y in zip(a, b):
        assert (x["narrowing_px"] is None) == (y["narrowing_px"] is None)
        if x["narrowing_px"] is not None:
            assert x["narrowing_px"] == pytest.approx(y["narrowing_px"], abs=1e-6)


def test_defect1_on_the_hand_pair_as_dicom_and_png(shared_data, tmp_path):
    """The issue's case: visit 1 as DICOM with PixelSpacing 0.17, visit 2 as PNG without."""
    dcm = _dicom_copy(shared_data / "hand-pair" / PAIR[0], tmp_path / "v1.dcm", SPACING)
    r = runner.invoke(app, ["hand", str(dcm), str(shared_data / "hand-pair" / PAIR[1])])
    assert r.exit_code == 2 and "no pixel spacing" in r.output and r.output.count("\n") == 1


# -- defect 7: reports a reader can use --------------------------------------------------------------


def test_defect7_hand_report_each_reason_once_every_flag_with_its_reason_and_file_names(phantom_pair):
    """A series flagged on both visits with one reason (as the segmentation check does) shows it
    once in the joint's list; a joint flagged only through an unreliable pair shows that pair's
    reason; flagged is orange in the table as in the legend; the crops are named, not <array>."""
    import dataclasses

    from jsnq.hand.measure import measure_hand_series
    from jsnq.report.hand import render_hand_report

    folder, ph = phantom_pair
    hs = measure_hand_series([folder / "v0.png", folder / "v1.png"], dates=list(DATES), spacing_mm=0.25,
                             hands=ph.hands, joints=["MCP3", "PIP4"])
    twice = "segmentation network failed (test): the JSW is not valid, the split line was kept"
    s = hs.joints["MCP3"]
    s = dataclasses.replace(s, trajectory=dataclasses.replace(s.trajectory, flagged_visits={0: twice, 1: twice}))
    p = hs.joints["PIP4"]
    bad = {ij: dataclasses.replace(m, reliable=False, reasons=("implausible narrowing +6.54 px (|JSN| > 6.0 px)",))
           for ij, m in p.measurements.items()}
    t = dataclasses.replace(p.trajectory, pairs=tuple(dataclasses.replace(x, reliable=False)
                                                      for x in p.trajectory.pairs))
    p = dataclasses.replace(p, measurements=bad, trajectory=t)
    hs = dataclasses.replace(hs, joints={**hs.joints, "MCP3": s, "PIP4": p})
    html = render_hand_report(ph.images, hs)
    assert html.count(f'<li class="bad">{twice}</li>') == 1
    table = html[html.index('<table id="summary">'):]
    table = table[:table.index("</table>")]
    rows = {m.group(1): m.group(0) for m in re.finditer(r'<tr><td><a href="#[^"]+">(\w+)</a>.*?</tr>', table)}
    assert 'class="warn">flagged' in rows["MCP3"] and twice in rows["MCP3"]
    assert 'class="warn">flagged' in rows["PIP4"] and "implausible narrowing" in rows["PIP4"]
    assert "pairs 0-&gt;1, 1-&gt;0: implausible narrowing" in rows["PIP4"]  # once for both pairs, in radiograph px
    assert "+6.54 px" not in rows["PIP4"]  # 6.54 crop px, quoted in radiograph px like the row
    assert '<span class="warn">orange flagged</span>' in html and ".warn{color:#c46a00" in html
    assert "&lt;array&gt;" not in html and "MCP3 crop of " in html


def test_defect7_the_study_chart_fits_1400_px_with_14_joints():
    import base64
    import io

    from PIL import Image as PILImage

    from jsnq.report.study import MAX_FIGURE_PX, render_study_report
    from jsnq.hand.types import JOINT_NAMES

    units = [{"unit": f"u{j}{p}", "patient": p, "side": "L", "joint": j, "status": "ok", "flagged": p == "B",
              "rate_px_per_year": 1.0, "rate_se_px_per_year": 0.1, "rate_mm_per_year": 0.17,
              "rate_se_mm_per_year": 0.017, "reasons": "implausible" if p == "B" else ""}
             for j in JOINT_NAMES for p in ("A", "B")]
    summary = [{"joint": j, "n_units": 2, "n_failed": 0, "n_flagged": 1, "n_patients": 1, "rate_mm_per_year": 0.17,
                "rate_px_per_year": 1.0, "notes": ""} for j in JOINT_NAMES]
    html = render_study_report(units, summary)
    uri = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    width = PILImage.open(io.BytesIO(base64.b64decode(uri))).size[0]
    assert width <= MAX_FIGURE_PX <= 1400 - 2 * 24  # the page's margins
    assert "img{max-width:100%" in html
    assert "28 units · 0 not measured · 14 flagged" in html and "tr.flagged td.s{color:#c46a00" in html


def test_defect8_a_semicolon_pairs_csv_says_what_was_found(tmp_path):
    """The same hint for `measure-batch`'s pairs CSV (one reader of CSV headers' problems)."""
    from jsnq.batch import read_pairs

    path = _write_csv(tmp_path / "p.csv", ["baseline", "followup"], [["a.png", "b.png"]], delimiter=";")
    with pytest.raises(JsnqInputError, match="semicolon-delimited"):
        read_pairs(path)
