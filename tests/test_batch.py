"""jsnq.batch from Python: the batch's files come from the library, not only from the CLI."""

from __future__ import annotations

import csv
import json

import pytest

from jsnq import MeasureConfig
from jsnq.batch import RESULT_COLUMNS, batch_inputs, measure_batch, read_pairs, write_outputs
from jsnq.errors import JsnqInputError
from jsnq.io import save_image, save_labels
from jsnq.phantom import make_pair

#: Fast and deterministic: the classical engine with the phantom's own labels.
CONFIG = MeasureConfig(engine="classical", segmenter="classical")


@pytest.fixture(scope="module")
def pairs_csv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch")
    pair = make_pair(5, narrowing_px=(0.4, 0.6), noise=0.01)
    save_image(folder / "b.png", pair.baseline)
    save_image(folder / "f.png", pair.followup)
    save_labels(folder / "bl.png", pair.baseline_labels)
    (folder / "pairs.csv").write_text("id,baseline,followup,baseline_labels\n"
                                      "ok,b.png,f.png,bl.png\nbad,b.png,none.png,\n")
    return folder / "pairs.csv", float(pair.narrowing_px)


def test_write_outputs_writes_every_file_from_python(pairs_csv, tmp_path):
    pairs, truth = pairs_csv
    rows = read_pairs(pairs)
    out, js, figs, html = tmp_path / "r.csv", tmp_path / "r.json", tmp_path / "figs", tmp_path / "r.html"
    results = write_outputs(measure_batch(pairs, config=CONFIG, rows=rows), out, json_out=js, figures=figs,
                            report=html, inputs=batch_inputs(pairs, rows))
    with out.open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == RESULT_COLUMNS
        written = list(reader)
    assert [r["id"] for r in written] == [r["id"] for r in results] == ["ok", "bad"]
    # 0.1 px: the classical engine on a 1 %-noise phantom with its true labels (test_cli's tolerance)
    assert abs(float(written[0]["narrowing_px"]) - truth) < 0.1
    assert written[1]["narrowing_px"] == "" and "file not found" in written[1]["error"]
    records = json.loads(js.read_text())
    assert records[0]["result"]["narrowing_px"] == pytest.approx(float(written[0]["narrowing_px"]))
    assert records[1]["result"] is None
    assert sorted(p.name for p in figs.iterdir()) == ["ok.png"]
    assert "<html" in html.read_text().lower()


def test_write_outputs_checks_paths_before_measuring(pairs_csv, tmp_path):
    pairs, _ = pairs_csv
    rows = read_pairs(pairs)
    drawn = []

    def outcomes():
        drawn.append(1)
        yield from measure_batch(pairs, config=CONFIG, rows=rows)

    with pytest.raises(JsnqInputError, match="overwrite the input"):
        write_outputs(outcomes(), tmp_path / "r.csv", json_out=pairs, inputs=batch_inputs(pairs, rows))
    assert not drawn and not (tmp_path / "r.csv").exists()
