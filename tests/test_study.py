"""jsnq study: the manifest, the rates (pure maths), and whole studies of a few synthetic
patients on a LocalCluster of 2 workers: equal to serial jsnq.series, unchanged by a killed
worker, resumable after kill -9 of the client, a bad image recorded and the rest kept, a changed
option or image measured again. Whole-hand studies of phantom hands (the shipped locator finds
their joints) equal serial measure_hand_series; a real hand-pair study when ../shared/data is there."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from jsnq import series
from jsnq.config import MeasureConfig
from jsnq.errors import JsnqInputError
from jsnq.geometry import Similarity, crop_centre
from jsnq.io import load_image, save_image
from jsnq.phantom import apply_bone_motions, make_pair
from jsnq.quality import ReliabilityThresholds
from jsnq.study import read_manifest, run_study, summarise, unit_rate
from jsnq.study.stats import SDC_Z, Rate, UnitOutcome
from jsnq.study.store import Store, atomic_write_text
from jsnq.study.units import unit_key
from jsnq.trajectory import PairEstimate, fit_trajectory

pq = pytest.importorskip("pyarrow.parquet")
distributed = pytest.importorskip("distributed")

#: Fast and deterministic: no network, the classical engine and segmenter.
CONFIG = MeasureConfig(engine="classical", segmenter="classical")
DATES = ("2020-01-01", "2021-01-01", "2022-07-01")
SPACING = 0.1
PATIENTS = ("P0", "P1", "P2")
JOINTS = ("MCP2", "MCP3")


# -- the manifest ---------------------------------------------------------------------------------


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_manifest_groups_units_and_orders_visits_by_date(tmp_path):
    m = read_manifest(_write_csv(tmp_path / "s.csv", ["patient", "side", "joint", "date", "image"], [
        ["7", "left", "MCP2", "2021-03-01", "b.png"],
        ["7", "L", "MCP2", "2020-01-01", "sub/a.png"],
        ["7", "R", "MCP2", "2020-01-01", "/abs/c.png"],
        ["8", "", "MCP3", "2020-01-01", "d.png"],
    ]))
    assert m.kind == "crop" and [(u.patient, u.side, u.joint) for u in m.units] == [
        ("7", "L", "MCP2"), ("7", "R", "MCP2"), ("8", "", "MCP3")]
    u = m.units[0]
    assert [v.date for v in u.visits] == ["2020-01-01", "2021-03-01"]  # by date, not by row
    assert u.visits[0].image == str(tmp_path / "sub" / "a.png") and u.visits[0].image_as_given == "sub/a.png"
    assert m.units[1].visits[0].image == "/abs/c.png"
    assert len({x.id for x in m.units}) == 3 and all("/" not in x.id for x in m.units)


@pytest.mark.parametrize("header, row, message", [
    (["patient", "date"], ["1", "2020-01-01"], r"s\.csv: missing column\(s\) image"),
    (["patient", "joint", "date", "image"], ["1", "MCP2", "2020-13-01", "a.png"], r"s\.csv line 2: bad date '2020-13-01'"),
    (["patient", "side", "joint", "date", "image"], ["1", "X", "MCP2", "2020-01-01", "a.png"], r"line 2: bad side 'X'"),
    (["patient", "joint", "date", "image"], ["1", "", "2020-01-01", "a.png"], r"line 2: empty joint"),
    (["patient", "joint", "date", "image"], ["", "MCP2", "2020-01-01", "a.png"], r"line 2: empty patient"),
    (["patient", "joint", "date", "image", "spacing_mm"], ["1", "MCP2", "2020-01-01", "a.png", "-1"],
     r"line 2: absurd pixel spacing"),
])
def test_manifest_errors_are_one_line_naming_file_and_line(tmp_path, header, row, message):
    with pytest.raises(JsnqInputError, match=message) as err:
        read_manifest(_write_csv(tmp_path / "s.csv", header, [row]))
    assert "\n" not in str(err.value)


def test_manifest_refuses_a_repeated_image_and_mixed_spacings(tmp_path):
    h = ["patient", "joint", "date", "image", "spacing_mm"]
    with pytest.raises(JsnqInputError, match=r"line 3: image 'a.png' repeats line 2"):
        read_manifest(_write_csv(tmp_path / "s.csv", h, [["1", "J", "2020-01-01", "a.png", ""],
                                                          ["1", "J", "2021-01-01", "a.png", ""]]))
    with pytest.raises(JsnqInputError, match=r"different pixel spacings \(0.1-0.2 mm\)"):
        read_manifest(_write_csv(tmp_path / "s.csv", h, [["1", "J", "2020-01-01", "a.png", "0.1"],
                                                          ["1", "J", "2021-01-01", "b.png", "0.2"]]))
    with pytest.raises(JsnqInputError, match="given for some visits"):
        read_manifest(_write_csv(tmp_path / "s.csv", h, [["1", "J", "2020-01-01", "a.png", "0.1"],
                                                          ["1", "J", "2021-01-01", "b.png", ""]]))
    # --spacing fills the empty cells, so the unit is consistent
    m = read_manifest(tmp_path / "s.csv", default_spacing_mm=0.1)
    assert m.units[0].spacing_mm == 0.1


# -- the rates (pure) -----------------------------------------------------------------------------


def _pairs(x, se):
    return [PairEstimate(i, j, float(x[j] - x[i]), se, float(x[j] - x[i]), -float(x[j] - x[i]), True)
            for i in range(len(x)) for j in range(i + 1, len(x))]


def test_unit_rate_recovers_an_exact_linear_progression():
    years = [0.0, 1.0, 2.5, 4.0]
    x = 0.3 * np.array(years)
    r = unit_rate([(p.i, p.j, p.value_px, p.se_px) for p in _pairs(x, 0.05)], years, spacing_mm=0.2)
    assert r.px_per_year == pytest.approx(0.3, abs=1e-12) and r.mm_per_year == pytest.approx(0.06, abs=1e-12)
    assert r.se_mm_per_year == pytest.approx(0.2 * r.se_px_per_year, rel=1e-12)


def test_unit_rate_is_the_gls_slope_of_the_trajectory_under_its_covariance():
    """The pairwise WLS slope (what unit_rate computes) equals the GLS slope fitted to the
    trajectory with its full covariance (A^T W A)^-1 c, and so does its SE: the identity the
    module doc relies on, checked on noisy, unequal-SE pairs of 4 visits."""
    rng = np.random.default_rng(3)
    years = np.array([0.0, 0.7, 1.9, 3.2])
    pairs = []
    for i in range(4):
        for j in range(i + 1, 4):
            se = float(rng.uniform(0.03, 0.2))
            v = 0.4 * (years[j] - years[i]) + float(rng.normal(0, se * 2))
            pairs.append(PairEstimate(i, j, v, se, v, -v, True))
    t = fit_trajectory(4, pairs)
    a = np.zeros((len(pairs), 3))
    for r, p in enumerate(pairs):
        if p.j:
            a[r, p.j - 1] += 1
        if p.i:
            a[r, p.i - 1] -= 1
    w = np.diag([1 / p.se_px**2 for p in pairs])
    c = max(1.0, t.chi2_reduced)
    cov = np.linalg.inv(a.T @ w @ a) * c
    ci = np.linalg.inv(cov)
    tt, xx = years[1:], t.narrowing_px[1:]
    b = float(tt @ ci @ xx / (tt @ ci @ tt))
    se_b = float(math.sqrt(1 / (tt @ ci @ tt)))
    r = unit_rate([(p.i, p.j, p.value_px, p.se_px) for p in pairs], years, chi2_reduced=t.chi2_reduced)
    assert t.chi2_reduced > 1  # the inflation is exercised
    assert r.px_per_year == pytest.approx(b, rel=1e-9) and r.se_px_per_year == pytest.approx(se_b, rel=1e-9)
    assert math.isnan(r.mm_per_year)  # no spacing: empty, not 0


def test_unit_rate_without_time_between_visits_is_empty():
    r = unit_rate([(0, 1, 0.2, 0.05)], [0.0, 0.0])
    assert all(math.isnan(v) for v in (r.px_per_year, r.se_px_per_year, r.mm_per_year))


def _outcome(joint, patient, rate_px, se_px=0.1, last_se=0.05, flagged=False, spacing=1.0):
    mm = rate_px * spacing if spacing else math.nan
    return UnitOutcome(joint, patient, True, Rate(rate_px, se_px, mm, se_px * spacing if spacing else math.nan),
                       last_se, last_se * spacing if spacing else math.nan, flagged, spacing_mm=spacing)


def test_summary_averages_a_patients_hands_then_takes_a_t_interval():
    """Patients' rates 1, 2, 3 (P0's from its two hands, 0.5 and 1.5): mean 2, SD 1,
    half-width t(0.975, 2) / sqrt(3), where for 2 degrees of freedom the quantile has the closed
    form t_p = (2p - 1) / sqrt(2 p (1 - p)). P4's unit is flagged: counted apart, left out of
    the rate and the SDC (its rate of 100 would move the mean to 22)."""
    s, = summarise([_outcome("MCP2", "P0", 0.5, last_se=0.03), _outcome("MCP2", "P0", 1.5, last_se=0.04),
                    _outcome("MCP2", "P1", 2.0), _outcome("MCP2", "P2", 3.0),
                    _outcome("MCP2", "P4", 100.0, last_se=9.0, flagged=True),
                    UnitOutcome("MCP2", "P3", False, None, math.nan, math.nan, True)])
    half = 0.95 / math.sqrt(2 * 0.975 * 0.025) / math.sqrt(3)
    assert (s.n_units, s.n_failed, s.n_flagged, s.n_rated, s.n_patients) == (6, 1, 1, 4, 3)
    assert s.rate_px_per_year == pytest.approx(2.0) and s.rate_sd_px == pytest.approx(1.0)
    assert (s.rate_ci_low_px, s.rate_ci_high_px) == pytest.approx((2 - half, 2 + half), rel=1e-12)
    assert s.sdc_px == pytest.approx(SDC_Z * math.sqrt((0.03**2 + 0.04**2 + 0.05**2 + 0.05**2) / 4), rel=1e-12)
    assert s.share_flagged == pytest.approx(1 / 5)  # of the measured units
    assert "1 flagged unit left out of the rates" in s.notes


def test_summary_leaves_mm_empty_unless_every_unit_has_a_spacing():
    s, = summarise([_outcome("PIP2", "P0", 1.0), _outcome("PIP2", "P1", 2.0, spacing=None)])
    assert math.isnan(s.rate_mm_per_year) and math.isnan(s.sdc_mm) and "pixel spacing" in s.notes
    assert math.isnan(s.rate_px_per_year)  # one unit's pixel size unknown: px of unknown sizes are not averaged
    same, = summarise([_outcome("PIP2", "P0", 1.0, spacing=None), _outcome("PIP2", "P1", 2.0, spacing=None)])
    assert same.rate_px_per_year == pytest.approx(1.5) and math.isnan(same.rate_mm_per_year)
    one, = summarise([_outcome("DIP", "P0", 1.0)])
    assert math.isnan(one.rate_ci_low_px) and "confidence interval empty: one patient" in one.notes


def test_summary_pools_mm_not_px_of_different_sizes():
    """Issue 21, defect 5: two patients whose pixels differ in size (0.1 and 0.2 mm) -- a whole
    hand's joints differ like this through their crops' zooms -- are pooled in mm; their px
    rates are not averaged (the px columns stay empty, with a note)."""
    s, = summarise([_outcome("MCP3", "P0", 2.0, spacing=0.1), _outcome("MCP3", "P1", 1.0, spacing=0.2)])
    assert s.rate_mm_per_year == pytest.approx(0.2) and s.sdc_mm == pytest.approx(SDC_Z * math.sqrt(
        ((0.05 * 0.1) ** 2 + (0.05 * 0.2) ** 2) / 2))
    assert math.isnan(s.rate_px_per_year) and math.isnan(s.sdc_px) and "pixels differ in size" in s.notes


# -- the store ------------------------------------------------------------------------------------


def test_atomic_writes_leave_no_partial_file_and_a_broken_record_is_measured_again(tmp_path):
    store = Store(tmp_path)
    (store.units / ".x.json.123.tmp").write_text("half")  # what a killed run leaves
    store = Store(tmp_path)
    assert not list(store.units.glob(".*.tmp"))
    atomic_write_text(store.path("u"), "{not json")  # e.g. written by something else, truncated
    assert store.load("u") is None


# -- whole studies on a LocalCluster ---------------------------------------------------------------


def _make_study(folder: Path) -> Path:
    """3 patients x 2 joints x 3 visits of 96 px phantom crops: patient p's joints narrow at
    0.3 (p + 1) px/year, plus random common shifts and 0.5 % noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    years = (0.0, 1.0, 2.5)
    for p, patient in enumerate(PATIENTS):
        for q, joint in enumerate(JOINTS):
            pair = make_pair(10 * p + q, noise=0.0, shape=(96, 96))
            c = crop_centre(pair.baseline.shape)
            rng = np.random.default_rng(100 * p + q)
            for k, date in enumerate(DATES):
                n = 0.3 * (p + 1) * years[k]
                s = rng.uniform(-1, 1, 2)
                img = apply_bone_motions(pair.baseline.astype(np.float64), pair.baseline_labels,
                                         Similarity(1.0, 0.0, s[0], s[1] + n, c), Similarity(1.0, 0.0, s[0], s[1], c))
                name = f"crops/{patient}_{joint}_{k}.png"
                (folder / "crops").mkdir(exist_ok=True)
                save_image(folder / name, img + rng.normal(0, 0.005, img.shape))
                rows.append([patient, "L", joint, date, name, str(SPACING)])
    # rows shuffled: the study orders visits by date itself
    order = np.random.default_rng(0).permutation(len(rows))
    return _write_csv(folder / "study.csv", ["patient", "side", "joint", "date", "image", "spacing_mm"],
                      [rows[i] for i in order])


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return _make_study(tmp_path_factory.mktemp("study") / "trial")


@pytest.fixture(scope="module")
def cluster():
    """One LocalCluster (2 worker processes, 1 thread each) shared by the tests that connect by
    address (as a real cluster would be used); the default path starts its own."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=50) as c:
        yield (c,)


def _table(path: Path) -> dict:
    """joints.parquet keyed by (patient, joint, visit)."""
    t = pq.read_table(path).to_pylist()
    return {(r["patient"], r["joint"], r["visit"]): r for r in t}


@pytest.fixture(scope="module")
def reference(study, tmp_path_factory):
    """The study on the default LocalCluster (workers=2)."""
    out = tmp_path_factory.mktemp("ref") / "out"
    events = []
    result = run_study(study, out, config=CONFIG, workers=2, progress=events.append, report=True)
    return out, result, events


def test_the_table_equals_serial_series_exactly(study, reference):
    out, result, events = reference
    assert len(result.computed) == 6 and not result.skipped and not result.failed
    table = _table(out / "joints.parquet")
    pairs = {(r["patient"], r["joint"], r["baseline_visit"], r["followup_visit"]): r
             for r in pq.read_table(out / "pairs.parquet").to_pylist()}
    with open(out / "joints.csv", newline="") as fh:
        csv_rows = {(r["patient"], r["joint"], int(r["visit"])): r for r in csv.DictReader(fh)}
    assert len(table) == len(csv_rows) == 18 and len(pairs) == 36
    folder = study.parent
    for patient in PATIENTS:
        for joint in JOINTS:
            paths = [folder / f"crops/{patient}_{joint}_{k}.png" for k in range(3)]
            s = series(paths, dates=list(DATES), spacing_mm=SPACING, config=CONFIG)
            for k in range(3):
                row = table[patient, joint, k]
                # exact: the same computation, numbers carried without loss (parquet float64, CSV repr)
                assert row["narrowing_px"] == float(s.trajectory.narrowing_px[k])
                assert row["narrowing_se_px"] == float(s.trajectory.se_px[k])
                assert row["narrowing_mm"] == float(s.trajectory.narrowing_px[k]) * SPACING
                assert row["narrowing_se_mm"] == float(s.trajectory.se_px[k]) * SPACING
                assert float(csv_rows[patient, joint, k]["narrowing_px"]) == row["narrowing_px"]
                assert row["date"] == DATES[k] and row["config_hash"] == CONFIG.digest()
                assert row["jsw_mm"] is None and "jsw" in row["missing"]  # classical: no JSW, empty not 0
                assert row["reliable"] == (k not in s.trajectory.flagged_visits and all(
                    m.reliable for (i, j), m in s.measurements.items() if k in (i, j)))
            for (i, j), m in s.measurements.items():
                assert pairs[patient, joint, i, j]["narrowing_px"] == m.narrowing_px
    # the rates: every patient's joints progress at 0.3 (p + 1) px/year in truth; the synthetic
    # follow-ups recover 80-90 % of it on 96 px crops (the classical engine's known small-crop
    # shrinkage is not this test's business), so check order and sign only
    with open(out / "units.csv", newline="") as fh:
        units = list(csv.DictReader(fh))
    rates = {(u["patient"], u["joint"]): float(u["rate_px_per_year"]) for u in units}
    for joint in JOINTS:
        assert 0 < rates["P0", joint] < rates["P1", joint] < rates["P2", joint]
    with open(out / "summary.csv", newline="") as fh:
        summary = {r["joint"]: r for r in csv.DictReader(fh)}
    assert set(summary) == set(JOINTS) and all(r["n_patients"] == "3" for r in summary.values())
    # progress: start, one event per unit, finish
    assert [e.event for e in events] == ["start"] + ["unit"] * 6 + ["finish"] and events[-2].done == 6
    html = (out / "report.html").read_text()
    assert all(f'href="reports/{u}.html"' in html for u in result.units)
    assert all((out / "reports" / f"{u}.html").is_file() for u in result.units)


def _same_numbers(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        for col in ("narrowing_px", "narrowing_se_px", "reliable", "reasons"):
            assert a[k][col] == b[k][col], (k, col)


def test_a_worker_killed_mid_run_changes_nothing(study, reference, cluster, tmp_path):
    """SIGKILL one worker process while it runs a unit: the scheduler reruns its units on the
    other worker (and the restarted one); the table is the reference's exactly."""
    from distributed import default_client

    killed = []

    def kill_busy_worker(event):
        if event.event == "unit" and not killed:
            client = default_client()  # the study's own client
            busy = [w for w, tasks in client.processing().items() if tasks]
            if busy:
                pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed.append((busy[0], pid))

    result = run_study(study, tmp_path / "out", config=CONFIG, scheduler=cluster[0].scheduler_address,
                       progress=kill_busy_worker)
    assert killed, "no worker was busy when the first unit finished: nothing was tested"
    assert len(result.computed) == 6, result.computed
    assert not result.failed, [json.loads((tmp_path / "out" / "units" / f"{u}.json").read_text())["error"]
                               for u in result.failed]
    _same_numbers(_table(tmp_path / "out" / "joints.parquet"), _table(reference[0] / "joints.parquet"))


def test_kill_9_of_a_local_cluster_client_prints_no_leaked_semaphores(study, tmp_path):
    """Issue 21: a client that started its own LocalCluster is SIGKILLed after its first unit; its
    workers' queues' semaphores are removed by multiprocessing's resource tracker, which must not
    print "leaked semaphore objects" (it did: 12 of them with 2 workers)."""
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import os, signal
        from jsnq.config import MeasureConfig
        from jsnq.study import run_study
        def die(e):
            if e.event == "unit":
                os.kill(os.getpid(), signal.SIGKILL)
        if __name__ == "__main__":
            run_study({str(study)!r}, {str(out)!r}, config=MeasureConfig(engine="classical", segmenter="classical"),
                      workers=2, progress=die)
    """)
    (tmp_path / "client.py").write_text(script)
    proc = subprocess.run([sys.executable, str(tmp_path / "client.py")], env={**os.environ}, timeout=180,
                          capture_output=True, text=True)  # read until the workers and the tracker are gone
    assert proc.returncode == -signal.SIGKILL
    assert len(list((out / "units").glob("*.json"))) >= 1  # the kill came after a finished unit
    assert "leaked" not in proc.stderr, proc.stderr[-2000:]


def test_a_rerun_after_kill_9_of_the_client_computes_only_the_missing_units(study, reference, cluster, tmp_path):
    """The client is SIGKILLed right after its second unit was stored (others in flight): the
    rerun measures exactly the units without a record, and the table is the reference's."""
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import os, signal
        from jsnq.config import MeasureConfig
        from jsnq.study import run_study
        def die(e):
            if e.event == "unit" and e.done == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        if __name__ == "__main__":
            run_study({str(study)!r}, {str(out)!r}, config=MeasureConfig(engine="classical", segmenter="classical"),
                      scheduler={cluster[0].scheduler_address!r}, progress=die)
    """)
    (tmp_path / "client.py").write_text(script)
    proc = subprocess.run([sys.executable, str(tmp_path / "client.py")], env={**os.environ}, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    stored = sorted(p.stem for p in (out / "units").glob("*.json"))
    assert len(stored) == 2 and not (out / "joints.csv").exists()
    result = run_study(study, out, config=CONFIG, scheduler=cluster[0].scheduler_address)
    assert sorted(result.skipped) == stored
    assert sorted(result.computed) == sorted(set(result.units) - set(stored))
    _same_numbers(_table(out / "joints.parquet"), _table(reference[0] / "joints.parquet"))


def test_ctrl_c_keeps_the_finished_units(study, reference, cluster, tmp_path):
    def interrupt(e):
        if e.event == "unit":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(study, tmp_path / "out", config=CONFIG, scheduler=cluster[0].scheduler_address, progress=interrupt)
    assert len(list((tmp_path / "out" / "units").glob("*.json"))) == 1
    result = run_study(study, tmp_path / "out", config=CONFIG, scheduler=cluster[0].scheduler_address)
    assert len(result.skipped) == 1 and len(result.computed) == 5


def test_a_bad_image_is_recorded_and_the_rest_kept(study, reference, cluster, tmp_path):
    copy = tmp_path / "trial"
    shutil.copytree(study.parent, copy)
    (copy / "crops/P1_MCP3_1.png").write_bytes(b"this is not a PNG")
    out = tmp_path / "out"
    result = run_study(copy / "study.csv", out, config=CONFIG, scheduler=cluster[0].scheduler_address)
    assert len(result.failed) == 1 and len(result.computed) == 6
    table, ref = _table(out / "joints.parquet"), _table(reference[0] / "joints.parquet")
    for k, row in table.items():
        if k[:2] == ("P1", "MCP3"):
            assert row["unit_status"] == "failed" and row["narrowing_px"] is None and row["narrowing_mm"] is None
            assert row["reliable"] is False and "P1_MCP3_1.png" in row["reasons"] and "\n" not in row["reasons"]
        else:
            assert row["narrowing_px"] == ref[k]["narrowing_px"]
    with open(out / "units.csv", newline="") as fh:
        failed = [u for u in csv.DictReader(fh) if u["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["rate_px_per_year"] == "" and "P1_MCP3_1.png" in failed[0]["error"]
    with open(out / "summary.csv", newline="") as fh:
        mcp3 = next(r for r in csv.DictReader(fh) if r["joint"] == "MCP3")
    assert mcp3["n_failed"] == "1" and mcp3["n_rated"] == "2"
    assert json.loads((out / "study.json").read_text())["failed"] == list(result.failed)


def test_a_single_visit_unit_fails_with_its_reason_and_the_rest_is_measured(study, tmp_path):
    """A patient seen once (a drop-out) cannot have a narrowing: recorded as failed, the others kept
    (in this process, workers=0: the record logic does not depend on Dask)."""
    rows = list(csv.reader(open(study, newline="")))
    one = [r for r in rows[1:] if r[0] == "P0" and r[2] == "MCP2"][0]
    manifest = _write_csv(tmp_path / "s.csv", rows[0], [[*one[:2], "PIP3", *one[3:]]] + [
        r for r in rows[1:] if r[0] == "P1" and r[2] == "MCP2"])
    for r in rows[1:]:
        (tmp_path / "crops").mkdir(exist_ok=True)
        shutil.copy(study.parent / r[4], tmp_path / r[4])
    result = run_study(manifest, tmp_path / "out", config=CONFIG, workers=0)
    assert len(result.failed) == 1 and result.failed[0].startswith("P0_L_PIP3")
    with open(tmp_path / "out" / "units.csv", newline="") as fh:
        units = {u["joint"]: u for u in csv.DictReader(fh)}
    assert "at least two visits" in units["PIP3"]["error"] and units["MCP2"]["status"] == "ok"
    with open(tmp_path / "out" / "summary.csv", newline="") as fh:
        pip3 = next(r for r in csv.DictReader(fh) if r["joint"] == "PIP3")
    assert pip3["n_failed"] == "1" and pip3["rate_px_per_year"] == "" and pip3["sdc_px"] == ""


def test_a_changed_option_or_image_measures_again(study, reference, cluster, tmp_path):
    copy = tmp_path / "trial"
    shutil.copytree(study.parent, copy)
    out = tmp_path / "out"
    shutil.copytree(reference[0], out)  # the finished study, moved: paths are not part of the key
    address = cluster[0].scheduler_address
    again = run_study(copy / "study.csv", out, config=CONFIG, scheduler=address)
    assert not again.computed and len(again.skipped) == 6
    _same_numbers(_table(out / "joints.parquet"), _table(reference[0] / "joints.parquet"))
    # one image's bytes change (same name): that unit only
    img = copy / "crops/P2_MCP2_2.png"
    a = load_image(img).array
    save_image(img, a + np.random.default_rng(1).normal(0, 1e-3 * float(a.max() - a.min()), a.shape))
    changed = run_study(copy / "study.csv", out, config=CONFIG, scheduler=address)
    assert len(changed.computed) == 1 and changed.computed[0].startswith("P2_L_MCP2")
    # an option changes: every unit, under the new configuration's hash
    strict = CONFIG.replace(thresholds=ReliabilityThresholds(max_se_px=1e-6))
    redo = run_study(copy / "study.csv", out, config=strict, scheduler=address)
    assert len(redo.computed) == 6 and not redo.skipped
    rows = _table(out / "joints.parquet").values()
    assert {r["config_hash"] for r in rows} == {strict.digest()} != {CONFIG.digest()}
    assert not any(r["reliable"] for r in rows)  # every pair now fails the SE threshold


def test_local_cluster_sets_the_numeric_threads_and_keeps_glibc_malloc():
    """Each task runs with the numeric threads asked for (here 1, where the default on this
    machine's cores would differ unless it has a single core), and the workers do not get Dask's
    MALLOC_TRIM_THRESHOLD_ (it slowed units by a third)."""
    import torch

    from jsnq.study.schedule import available_cores, open_session, run_tasks

    got = {}
    with open_session(workers=1, numeric_threads=1) as s:
        env = next(iter(s.client.run(lambda: {k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_",
                                                                             "OMP_NUM_THREADS")}).values()))
        run_tasks(s, torch.get_num_threads, [("threads", ())], on_done=lambda n, r, e: got.update({n: (r, e)}))
    assert got["threads"] == (1, None) and env == {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "1"}
    with pytest.raises(ValueError, match="not both"):
        with open_session(workers=1, scheduler="tcp://127.0.0.1:1"):
            pass
    assert available_cores() >= 1


# -- the command line -----------------------------------------------------------------------------


def test_cli_study_writes_the_tables_and_resumes(study, reference, tmp_path):
    from typer.testing import CliRunner

    from jsnq.cli import app

    runner = CliRunner()
    out = tmp_path / "out"
    args = ["study", str(study), "--out", str(out), "--workers", "0", "--engine", "classical",
            "--segmenter", "classical"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "MCP2: 3 patients with a trusted rate" in r.output and "6 units measured, 0 skipped" in r.output
    _same_numbers(_table(out / "joints.parquet"), _table(reference[0] / "joints.parquet"))
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "0 units measured, 6 skipped" in again.output


def test_cli_study_errors_are_one_line(tmp_path):
    from typer.testing import CliRunner

    from jsnq.cli import app

    runner = CliRunner()
    hands = _write_csv(tmp_path / "hands.csv", ["patient", "side", "date", "image"], [["1", "L", "2020-01-01", "a.png"]])
    r = runner.invoke(app, ["study", str(hands), "--out", str(tmp_path / "o"), "--workers", "0", "--joints", "MCP2"])
    assert r.exit_code == 1 and "1 of 1 joint series could not be measured" in r.output  # a hand study runs; its unit (a.png missing) fails
    r = runner.invoke(app, ["study", str(hands), "--out", str(tmp_path / "o"), "--workers", "0", "--joints", "MCP9"])
    assert r.exit_code == 2 and "unknown joint(s) 'MCP9'" in r.output and r.output.count("\n") == 1
    both = runner.invoke(app, ["study", str(hands), "--out", str(tmp_path / "o"), "--workers", "2",
                               "--scheduler", "tcp://127.0.0.1:1"])
    assert both.exit_code == 2 and "not both" in both.output and both.output.count("\n") == 1
    bad = _write_csv(tmp_path / "bad.csv", ["patient", "joint", "date", "image"], [["1", "J", "yesterday", "a.png"]])
    r = runner.invoke(app, ["study", str(bad), "--out", str(tmp_path / "o2"), "--workers", "0"])
    assert r.exit_code == 2 and f"error: {bad} line 2: bad date 'yesterday'" in r.output


# -- whole-hand studies ---------------------------------------------------------------------------

#: Two joints (of different types) keep the hand studies fast; the study measures all 14 by default.
HAND_JOINTS = ("MCP2", "PIP3")
HAND_DATES = ("2020-01-01", "2021-01-01", "2022-07-01")
#: patient -> (phantom seed, its side, the side written in the manifest, visits)
HAND_PATIENTS = {"H0": (20, "L", "L", 3), "H1": (21, "R", "", 2)}
HAND_SPACING = 0.25


def _make_hand_study(folder: Path) -> Path:
    """2 phantom patients' whole-hand radiographs (a left hand at 3 visits, a right one at 2
    with its side left empty for the study to detect); the manifest has no joint column."""
    from jsnq.phantom import make_hand

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for patient, (seed, side, given, n) in HAND_PATIENTS.items():
        ph = make_hand(seed, side=side, n_visits=n, spacing_mm=HAND_SPACING)
        for k in range(n):
            save_image(folder / f"{patient}_{k}.png", ph.images[k])
            rows.append([patient, given, HAND_DATES[k], f"{patient}_{k}.png"])
    return _write_csv(folder / "hands.csv", ["patient", "side", "date", "image"], rows[::-1])


@pytest.fixture(scope="module")
def hand_study(tmp_path_factory) -> Path:
    return _make_hand_study(tmp_path_factory.mktemp("hands") / "trial")


@pytest.fixture(scope="module")
def hand_reference(hand_study, tmp_path_factory):
    """The hand study on the default LocalCluster (workers=2), default configuration, with reports."""
    out = tmp_path_factory.mktemp("handref") / "out"
    result = run_study(hand_study, out, workers=2, spacing_mm=HAND_SPACING, joints=HAND_JOINTS, report=True)
    return out, result


def _serial_hand(folder: Path, patient: str):
    """measure_hand_series of one patient's visits in this process, with the workers' one numeric thread."""
    import torch

    from jsnq.hand.measure import measure_hand_series

    n = HAND_PATIENTS[patient][3]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return measure_hand_series([folder / f"{patient}_{k}.png" for k in range(n)], dates=list(HAND_DATES[:n]),
                                   spacing_mm=HAND_SPACING, config=MeasureConfig(), joints=HAND_JOINTS)
    finally:
        torch.set_num_threads(threads)


def test_a_hand_study_equals_serial_measure_hand_series_with_the_crop_boxes(hand_study, hand_reference):
    out, result = hand_reference
    assert len(result.computed) == 2 and not result.failed
    table = {(r["patient"], r["joint"], r["visit"]): r for r in pq.read_table(out / "joints.parquet").to_pylist()}
    assert len(table) == len(HAND_JOINTS) * (3 + 2)  # patient x side x joint x visit
    pairs = {(r["patient"], r["joint"], r["baseline_visit"], r["followup_visit"]): r
             for r in pq.read_table(out / "pairs.parquet").to_pylist()}
    for patient, (_, side, _, n) in HAND_PATIENTS.items():
        hs = _serial_hand(hand_study.parent, patient)
        assert hs.hands[0].side == side
        for joint in HAND_JOINTS:
            s, boxes = hs.joints[joint], hs.crops[joint].boxes
            for k in range(n):
                row = table[patient, joint, k]
                assert row["side"] == side  # H1's from the located hand
                # px of the radiograph (the crop's px / its zoom), and the radiograph's spacing
                zoom = boxes[k].zoom
                assert row["narrowing_px"] == pytest.approx(float(s.trajectory.narrowing_px[k]) / zoom, rel=1e-12)
                assert row["narrowing_se_px"] == pytest.approx(float(s.trajectory.se_px[k]) / zoom, rel=1e-12)
                assert row["narrowing_mm"] == float(s.trajectory.narrowing_px[k]) * s.spacing_mm
                assert row["spacing_mm"] == HAND_SPACING and s.spacing_mm == pytest.approx(HAND_SPACING / zoom)
                assert (row["crop_centre_x"], row["crop_centre_y"]) == tuple(map(float, boxes[k].centre_xy))
                assert row["crop_angle_deg"] == boxes[k].angle_deg and row["crop_zoom"] == boxes[k].zoom
                assert (row["crop_rows"], row["crop_cols"]) == tuple(boxes[k].size)
                assert row["crop_method"] == ("landmark" if k == 0 else "registered")
                assert row["unit_status"] == "ok" and row["date"] == HAND_DATES[k]
            for (i, j), m in s.measurements.items():
                assert pairs[patient, joint, i, j]["narrowing_px"] == pytest.approx(m.narrowing_px / boxes[0].zoom,
                                                                                   rel=1e-12)
    with open(out / "units.csv", newline="") as fh:
        units = list(csv.DictReader(fh))
    assert sorted((u["patient"], u["side"], u["joint"]) for u in units) == [
        ("H0", "L", "MCP2"), ("H0", "L", "PIP3"), ("H1", "R", "MCP2"), ("H1", "R", "PIP3")]
    assert all(u["status"] == "ok" and u["rate_px_per_year"] for u in units)
    with open(out / "summary.csv", newline="") as fh:
        summary = {r["joint"]: r for r in csv.DictReader(fh)}
    assert set(summary) == set(HAND_JOINTS) and all(r["n_patients"] == "2" and r["n_failed"] == "0"
                                                    for r in summary.values())
    html = (out / "report.html").read_text()
    assert all(f'href="reports/{u}.html"' in html and (out / "reports" / f"{u}.html").is_file() for u in result.units)


def test_a_hand_study_rerun_computes_nothing_and_a_new_subset_measures_again(hand_study, hand_reference, cluster,
                                                                             tmp_path):
    out = tmp_path / "out"
    shutil.copytree(hand_reference[0], out)
    again = run_study(hand_study, out, scheduler=cluster[0].scheduler_address, spacing_mm=HAND_SPACING,
                      joints=HAND_JOINTS[::-1], report=True)  # the same subset, in another order
    assert not again.computed and len(again.skipped) == 2
    _same_numbers(_table(out / "joints.parquet"), _table(hand_reference[0] / "joints.parquet"))
    u = read_manifest(hand_study, default_spacing_mm=HAND_SPACING).units[0]
    assert unit_key(u, [], "c", ("MCP2",)) != unit_key(u, [], "c", HAND_JOINTS) != unit_key(u, [], "c")


def test_a_bad_hand_image_fails_every_joint_of_that_hand_and_keeps_the_others(hand_study, tmp_path):
    """H0's second radiograph is not an image: its hand fails on each requested joint (rows empty,
    never 0, the one-line reason); H1 is measured (in this process, workers=0)."""
    copy = tmp_path / "trial"
    shutil.copytree(hand_study.parent, copy)
    (copy / "H0_1.png").write_bytes(b"not a PNG")
    out = tmp_path / "out"
    result = run_study(copy / "hands.csv", out, workers=0, spacing_mm=HAND_SPACING, joints=("MCP2",))
    assert len(result.failed) == 1 and result.failed[0].startswith("H0_L")
    rows = pq.read_table(out / "joints.parquet").to_pylist()
    bad = [r for r in rows if r["patient"] == "H0"]
    assert len(bad) == 3 and all(r["joint"] == "MCP2" and r["unit_status"] == "failed" for r in bad)
    assert all(r["narrowing_px"] is None and r["crop_centre_x"] is None and "H0_1.png" in r["reasons"]
               and "\n" not in r["reasons"] for r in bad)
    assert all(r["unit_status"] == "ok" and r["side"] == "R" for r in rows if r["patient"] == "H1")
    with open(out / "summary.csv", newline="") as fh:
        summary = list(csv.DictReader(fh))
    assert [(r["joint"], r["n_failed"], r["n_rated"]) for r in summary] == [("MCP2", "1", "1")]
    with pytest.raises(ValueError, match="crop study"):
        run_study(_make_study(tmp_path / "crops"),
                  tmp_path / "o2", workers=0, joints=("MCP2",))


def test_hand_pair_study_end_to_end_with_the_locator(shared_data, tmp_path):
    """The real RA hand-pair (two visits 13 months apart) as a one-patient study, joints found by
    the shipped locator: MCP4 and MCP5 measured, with boxes, in px (no spacing given)."""
    d = shared_data / "hand-pair"
    manifest = _write_csv(tmp_path / "pair.csv", ["patient", "date", "image"], [
        ["IMAGE007", "2011-01-11", str(d / "IMAGE007_20110111.png")],
        ["IMAGE007", "2012-02-21", str(d / "IMAGE007_20120221.png")]])
    result = run_study(manifest, tmp_path / "out", workers=0, joints=("MCP4", "MCP5"))
    assert not result.failed
    rows = pq.read_table(tmp_path / "out" / "joints.parquet").to_pylist()
    assert [(r["joint"], r["visit"]) for r in rows] == [("MCP4", 0), ("MCP4", 1), ("MCP5", 0), ("MCP5", 1)]
    for r in rows:
        assert r["side"] == "L" and r["crop_zoom"] > 0 and r["narrowing_mm"] is None and "spacing" in r["missing"]
        assert math.isfinite(r["narrowing_px"]) and (r["visit"] == 0) == (r["narrowing_px"] == 0.0)


def test_the_store_never_writes_through_a_symlink(tmp_path):
    """Issue 22 item 5 / 21: the study's files go through jsnq.outputs' one atomic writer, which
    refuses a symbolic link at the output name (it used to replace the link silently)."""
    from jsnq.errors import JsnqInputError

    store = Store(tmp_path / "s")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (store.root / "units.csv").symlink_to(victim)
    with pytest.raises(JsnqInputError, match="symbolic link"):
        store.write_table("units.csv", [{"a": 1}], [("a", "int")])
    assert victim.read_text() == "keep" and (store.root / "units.csv").is_symlink()
    (store.units / "u.json").symlink_to(victim)
    with pytest.raises(JsnqInputError, match="symbolic link"):
        store.save({"id": "u"})
    assert not list(store.units.glob(".*.tmp"))
