"""Longitudinal series (trajectory fit, consistency flags), the HTML report and its rebuild
from saved results, and the report in a real headless browser."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from jsnq import MeasureConfig, series
from jsnq.cli import app
from jsnq.geometry import Similarity, crop_centre
from jsnq.io import save_image, save_labels
from jsnq.phantom import apply_bone_motions, make_pair
from jsnq.trajectory import PairEstimate, fit_trajectory

runner = CliRunner()


# -- the trajectory fit (pure maths) --------------------------------------------------------------


def _pairs_from(x: np.ndarray, se: float = 0.05, noise: np.ndarray | None = None) -> list[PairEstimate]:
    out, k = [], 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            e = 0.0 if noise is None else float(noise[k])
            k += 1
            v = float(x[j] - x[i]) + e
            out.append(PairEstimate(i, j, v, se, v, -v, True))
    return out


def test_combining_directions_keeps_the_rms_se_and_checks_the_gap():
    """combine_directions: the mean of the two directions, exactly antisymmetric; the SE is the
    RMS of the two SEs whatever the gap (the SEs already describe the gap); a gap beyond
    max(0.3 px, 4 sqrt(2) se_one) is a failed check."""
    from jsnq.quality import combine_directions

    d = combine_directions(0.50, -0.30, 0.03, 0.04)
    assert d.narrowing_px == pytest.approx(0.40) and d.gap_px == pytest.approx(0.20)
    assert d.se_px == pytest.approx(math.sqrt((0.03 ** 2 + 0.04 ** 2) / 2), rel=1e-12)
    assert d.reason is None and d.tolerance_px == pytest.approx(0.3)
    swapped = combine_directions(-0.30, 0.50, 0.04, 0.03)
    assert swapped.narrowing_px == -d.narrowing_px and swapped.se_px == d.se_px
    wide = combine_directions(0.50, -0.10, 0.03, 0.04)  # gap 0.4 px: the same SE, now a failure
    assert wide.se_px == d.se_px and wide.reason is not None and "disagree" in wide.reason
    loose = combine_directions(0.50, -0.10, 0.2, 0.2)  # tolerance 4 sqrt(2) 0.2 = 1.13 px
    assert loose.reason is None and loose.tolerance_px == pytest.approx(4 * math.sqrt(2) * 0.2)


def test_consistent_pairs_give_the_exact_trajectory():
    x = np.array([0.0, 0.3, 0.5, 1.1])
    t = fit_trajectory(4, _pairs_from(x))
    np.testing.assert_allclose(t.narrowing_px, x, atol=1e-12)
    assert t.path_rms_px == pytest.approx(0.0, abs=1e-12) and not t.flagged_visits
    assert t.se_px[0] == 0.0 and np.all(t.se_px[1:] > 0)


def test_standard_errors_follow_least_squares():
    """With equal SEs s and all pairs of N visits, every x_k (k >= 1) has variance
    2 s^2 / N (the complete graph's Laplacian): 0.05 * sqrt(2/4) for N = 4."""
    t = fit_trajectory(4, _pairs_from(np.zeros(4), se=0.05))
    np.testing.assert_allclose(t.se_px[1:], 0.05 * math.sqrt(2 / 4), rtol=1e-9)


def test_an_inconsistent_visit_is_flagged():
    """Visit 2's pairs are off by about +-1 px each, in different directions (a mismatch
    such as a wrong joint or a failed registration): flagged, the others are not, and the
    path residuals show it. (An error common to all of a visit's pairs would be consistent,
    indistinguishable from a real change, and is not what this check is for.)"""
    x = np.array([0.0, 0.2, 0.4, 0.6, 0.8])
    bumps = iter([1.0, -0.8, 0.9, -1.1])
    pairs = []
    for p in _pairs_from(x):
        bump = next(bumps) if 2 in (p.i, p.j) else 0.0
        pairs.append(PairEstimate(p.i, p.j, p.value_px + bump, p.se_px, p.forward_px, p.backward_px, True))
    t = fit_trajectory(5, pairs)
    assert set(t.flagged_visits) == {2}
    assert t.path_rms_px > 0.5


def test_bad_input_to_the_fit():
    with pytest.raises(ValueError, match="at least two"):
        fit_trajectory(1, [])
    with pytest.raises(ValueError, match="no pair"):
        fit_trajectory(3, [])


# -- series on synthetic visits -------------------------------------------------------------------

TRUE = (0.0, 0.4, 0.9)  # cumulative narrowing (px) of three visits


@pytest.fixture(scope="module")
def visits(tmp_path_factory) -> tuple[Path, list[Path], list[Path]]:
    """Three visits of one phantom joint: visit k moves the upper bone by TRUE[k] towards the
    lower one (plus a common shift), written as 16-bit PNGs with their labels."""
    folder = tmp_path_factory.mktemp("series")
    pair = make_pair(4, noise=0.0)
    c = crop_centre(pair.baseline.shape)
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for k, n in enumerate(TRUE):
        shift = rng.uniform(-2, 2, 2)
        up = Similarity(1.0, 0.0, shift[0], shift[1] + n, c)
        lo = Similarity(1.0, 0.0, shift[0], shift[1], c)
        img = apply_bone_motions(pair.baseline.astype(np.float64), pair.baseline_labels, up, lo)
        img = img + rng.normal(0, 0.005, img.shape)
        p = folder / f"visit{k}.png"
        save_image(p, img)
        paths.append(p)
        # labels of each visit: the baseline's moved with the lower bone (good enough for a 1 px gap change)
        lab = folder / f"visit{k}_labels.png"
        moved = np.roll(pair.baseline_labels, (int(round(shift[1])), int(round(shift[0]))), axis=(0, 1))
        save_labels(lab, moved)
        labels.append(lab)
    return folder, paths, labels


def test_series_recovers_a_known_trajectory(visits):
    """Cumulative narrowing of each visit within 0.1 px of the truth (the classical engine
    with given labels; noise 0.5 %), and consistent: path RMS <= 0.1 px."""
    _, paths, labels = visits
    s = series(paths, labels=labels, dates=["2020-01-01", "2021-01-01", "2022-07-01"],
               config=MeasureConfig(engine="classical"))
    np.testing.assert_allclose(s.trajectory.narrowing_px, TRUE, atol=0.1)
    assert s.trajectory.path_rms_px <= 0.1
    assert len(s.measurements) == 6 and not s.errors
    assert s.years == pytest.approx([0.0, 1.0, 2.5], abs=0.01)
    d = json.loads(json.dumps(s.to_dict()))
    assert d["kind"] == "series" and len(d["visits"]) == 3 and d["config"]["engine"] == "classical"


def test_series_files_are_written_by_the_library(visits, tmp_path):
    """Python users get the files the command writes: JSON, trajectory CSV, plot, report."""
    from jsnq.longitudinal import SERIES_CSV_COLUMNS, write_series_outputs

    _, paths, labels = visits
    s = series(paths, labels=labels, config=MeasureConfig(engine="classical"))
    out = {k: tmp_path / f"s.{k}" for k in ("json", "csv", "png", "html")}
    written = write_series_outputs(s, json_out=out["json"], csv_out=out["csv"], plot=out["png"], report=out["html"],
                                   inputs=paths)
    assert written == [out["json"], out["csv"], out["png"], out["html"]]
    assert json.loads(out["json"].read_text()) == json.loads(json.dumps(s.to_dict()))
    rows = out["csv"].read_text().splitlines()
    assert rows[0] == ",".join(SERIES_CSV_COLUMNS) and len(rows) == 1 + len(paths)
    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "<html" in out["html"].read_text().lower()


def test_series_cli_writes_json_csv_plot_and_report(visits, tmp_path):
    _, paths, labels = visits
    args = ["series", *map(str, paths)]
    for lab in labels:
        args += ["--labels", str(lab)]
    args += ["--dates", "2020-01-01,2021-01-01,2022-07-01", "--spacing", "0.175", "--engine", "classical",
             "--json", str(tmp_path / "s.json"), "--csv", str(tmp_path / "s.csv"), "--plot", str(tmp_path / "s.png"),
             "--report", str(tmp_path / "s.html")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "visit 2" in result.stdout and "mm" in result.stdout
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert rows[0].startswith("visit,source,date") and len(rows) == 4
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "s.html").read_text()
    assert "cumulative narrowing" in text and "data:image/png;base64," in text


def test_series_bad_input_is_one_line(tmp_path, visits):
    _, paths, _ = visits
    r = runner.invoke(app, ["series", str(paths[0])])
    assert r.exit_code == 2 and "at least two visits" in r.stderr and "Traceback" not in r.stderr
    r = runner.invoke(app, ["series", str(paths[0]), str(paths[1]), "--dates", "2021-01-01,2020-01-01"])
    assert r.exit_code == 2 and "time order" in r.stderr


# -- the report ----------------------------------------------------------------------------------


def _report_from_phantoms(folder: Path, n: int = 3) -> Path:
    """measure-batch over n phantom pairs (one deliberately bad: a blank follow-up), with --report."""
    rows = ["id,baseline,followup,baseline_labels"]
    for k in range(n):
        pair = make_pair(k, noise=0.01)
        save_image(folder / f"b{k}.png", pair.baseline)
        save_image(folder / f"f{k}.png", pair.followup)
        save_labels(folder / f"l{k}.png", pair.baseline_labels)
        rows.append(f"joint{k},b{k}.png,f{k}.png,l{k}.png")
    # a pair from two different joints: must come out flagged
    rows.append("mixed,b0.png,f1.png,l0.png")
    (folder / "pairs.csv").write_text("\n".join(rows) + "\n")
    out = folder / "report.html"
    result = runner.invoke(app, ["measure-batch", str(folder / "pairs.csv"), "--out", str(folder / "res.csv"),
                                 "--json-out", str(folder / "res.json"), "--report", str(out),
                                 "--engine", "classical"])
    assert result.exit_code in (0, 1), result.stdout + result.stderr
    return out


def test_report_is_self_contained_and_complete(tmp_path):
    out = _report_from_phantoms(tmp_path)
    text = out.read_text()
    assert out.stat().st_size < 5e6
    # nothing fetched: no http(s) URL in any src/href, only data: images and in-page anchors
    assert not re.search(r'(src|href)="(?!data:|#)', text)
    assert "http://" not in text.replace("http-equiv", "") and "https://" not in text
    for k in range(3):
        assert f"joint{k}" in text
    assert text.count("data:image/jpeg;base64,") >= 3 * 7
    assert "residual before registration" in text and "checkerboard" in text and "flicker" in text


def test_report_shows_precision_notes_apart_from_the_flag():
    """A pair with a precision note stays 'reliable' in the summary; the note has its own column
    and is listed under the pair, not among the (red) reasons."""
    import dataclasses

    from jsnq import measure
    from jsnq.report.html import render_report

    pair = make_pair(0, noise=0.01)
    m = measure(pair.baseline, pair.followup, baseline_labels=pair.baseline_labels,
                config=MeasureConfig(engine="classical", segmenter="classical"))
    note = "imprecise: standard error 0.300 px > 0.25 px (test note)"
    text = render_report([("noted", dataclasses.replace(m, notes=(note,)))])
    row = re.search(r'<tr data-flagged="0">.*?</tr>', text, re.S).group(0)
    shown = note.replace(">", "&gt;")  # escaped as text
    assert ">reliable<" in row and f'<td class="note">{shown}</td>' in row
    assert f'<li class="note">{shown}</li>' in text and f'<li class="bad">{shown}</li>' not in text


def test_report_command_rebuilds_saved_results(tmp_path):
    _report_from_phantoms(tmp_path)
    out = tmp_path / "again.html"
    result = runner.invoke(app, ["report", str(tmp_path / "res.json"), "-o", str(out)])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "differs" not in result.stderr  # the same numbers as saved
    assert "joint1" in out.read_text()


def test_report_command_bad_input(tmp_path):
    (tmp_path / "x.json").write_text("{\"hello\": 1}")
    r = runner.invoke(app, ["report", str(tmp_path / "x.json"), "-o", str(tmp_path / "r.html")])
    assert r.exit_code == 2 and "not jsnq results" in r.stderr


# -- in a real browser ----------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_report_in_headless_chromium(tmp_path):
    """Open a phantom report in Debian's Chromium (driven by playwright, never `playwright
    install`): the key numbers are there, no console error, no network request, every image
    decoded, the summary sorts, and a screenshot is not blank."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); `make test` installs it as root")
    out = _report_from_phantoms(tmp_path)
    saved = json.loads((tmp_path / "res.json").read_text())
    errors, requests = [], []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("request", lambda req: requests.append(req.url) if not req.url.startswith(("data:", "file:")) else None)
        page.goto(out.as_uri())
        page.wait_for_load_state("load")
        body = page.inner_text("body")
        for rec in saved:
            if rec["result"] is not None:
                assert f"{rec['result']['narrowing_px']:+.3f}" in body, rec["id"]
        # flagged rows first in the summary
        flags = page.eval_on_selector_all("#summary tbody tr", "rows => rows.map(r => r.dataset.flagged)")
        assert flags == sorted(flags, reverse=True) and "1" in flags
        # every image decoded
        sizes = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
        assert sizes and all(ok and w > 0 for ok, w in sizes)
        # sorting by the narrowing column puts values in order
        page.click("#summary th:nth-child(3)")
        vals = page.eval_on_selector_all("#summary tbody td:nth-child(3)",
                                         "tds => tds.map(t => parseFloat(t.dataset.value))")
        assert vals == sorted(vals) or vals == sorted(vals, reverse=True)
        shot = page.screenshot(path=str(tmp_path / "shot.png"), full_page=False)
        browser.close()
    assert not errors, errors
    assert not requests, requests
    from PIL import Image as PILImage
    import io

    arr = np.asarray(PILImage.open(io.BytesIO(shot)).convert("L"), dtype=float)
    assert arr.std() > 10.0  # not blank


# -- one reading place per joint ---------------------------------------------------------------


def test_two_visit_series_gives_exactly_the_pairs_narrowing():
    """A series of two visits measures its one pair as jsnq.measure does (one inverse-consistent
    fit, read half-way between the two visits' articular centres): the same
    narrowing and SE, and the trajectory's last visit is that narrowing (to float round-off of
    the least-squares solve, 1e-12 px)."""
    from jsnq import measure

    pair = make_pair(1, narrowing_px=(0.4, 0.6), noise=0.01)
    m = measure(pair.baseline, pair.followup)
    s = series([pair.baseline, pair.followup])
    assert s.measurements[0, 1].narrowing_px == m.narrowing_px
    assert s.measurements[0, 1].narrowing_se_px == m.narrowing_se_px
    assert s.measurements[1, 0].narrowing_px == -m.narrowing_px
    assert s.measurements[0, 1].point_px == m.point_px and m.point_source == "network"
    assert s.trajectory.narrowing_px[1] == pytest.approx(m.narrowing_px, abs=1e-12)
    assert s.trajectory.se_px[1] == pytest.approx(m.narrowing_se_px, abs=1e-12)


def test_series_reads_every_pair_at_the_first_visits_point():
    """Three visits: every pair is read at the place where the pair (0, 1) is read (in the first
    visit) carried to each visit by the lower bone's fit of the pair (first, that visit): the
    pair (1, 2) at exactly the points carried there, and each reverse pair is the exact negation."""
    pair = make_pair(3, narrowing_px=(0.4, 0.6), noise=0.01)
    c = crop_centre(pair.baseline.shape)
    third = apply_bone_motions(pair.followup, pair.followup_labels, Similarity(1.0, 0.0, 0.0, 0.3, c),
                               Similarity(1.0, 0.0, 0.0, -0.2, c))
    s = series([pair.baseline, pair.followup, third])
    m = s.measurements
    q = m[0, 2].point_px  # the pair (0, 1)'s place, half-way between its two visits' points
    lower = m[0, 1].lower_transform
    half = 0.5 * (np.asarray(m[0, 1].point_px) + lower.inverse().apply(np.asarray(m[0, 1].followup_point_px)))
    assert q == pytest.approx(tuple(half), abs=1e-12)
    assert m[1, 2].point_px == pytest.approx(tuple(lower.apply(np.asarray(q))), abs=1e-12)
    assert m[1, 2].followup_point_px == m[0, 2].followup_point_px
    assert all(m[i, j].narrowing_px == -m[j, i].narrowing_px for i, j in ((0, 1), (0, 2), (1, 2)))
    assert {x.point_source for x in m.values()} == {"network"}
