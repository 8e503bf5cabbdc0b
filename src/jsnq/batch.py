"""Many pairs listed in a CSV: read the list, measure every row, one result row each, and
write the batch's files (results CSV, JSON, a QA figure per pair, an HTML report).

A bad row (a missing file, a bad spacing, a failed registration) becomes a row with its one-line
error; the others are measured all the same. A number that could not be measured is written
as an empty cell, never as a number.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from .config import MeasureConfig
from .errors import JsnqInputError, header_hint, one_line, safe_display_name
from .outputs import check_output, check_output_dir, csv_cell, write_atomic
from .pipeline import measure_many
from .results import Measurement

__all__ = ["REQUIRED_COLUMNS", "OPTIONAL_COLUMNS", "RESULT_COLUMNS", "read_pairs", "BatchOutcome", "measure_batch",
           "result_row", "batch_inputs", "write_outputs"]

REQUIRED_COLUMNS = ("baseline", "followup")
OPTIONAL_COLUMNS = ("baseline_labels", "followup_labels", "spacing_mm", "id")
#: The columns of the results CSV, in order.
RESULT_COLUMNS = (
    "id", "baseline", "followup", "narrowing_px", "narrowing_se_px", "narrowing_mm", "narrowing_se_mm",
    "dy_difference_px",
    "upper_scale", "upper_angle_deg", "upper_tx_px", "upper_ty_px",
    "lower_scale", "lower_angle_deg", "lower_tx_px", "lower_ty_px",
    "engine", "segmenter", "jsw_baseline_mean_px", "jsw_followup_mean_px",
    "reliable", "reasons", "precise", "notes", "error",
)


def read_pairs(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a pairs CSV (``baseline``, ``followup`` and optional columns), blank rows dropped.

    Raises:
        JsnqInputError: a missing or unreadable file, a missing column, no rows.
    """
    pairs = Path(path)
    if not pairs.exists():
        raise JsnqInputError(pairs, "file not found")
    if pairs.is_dir():
        raise JsnqInputError(pairs, "is a directory, not a CSV file")
    try:
        with pairs.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise JsnqInputError(pairs, f"missing column(s) {', '.join(missing)} "
                                     f"(need {', '.join(REQUIRED_COLUMNS)}; optional {', '.join(OPTIONAL_COLUMNS)}); "
                                     f"{header_hint(header, tuple(REQUIRED_COLUMNS))}")
            rows = [{(k or "").strip(): (v or "").strip() if isinstance(v, str) else "" for k, v in row.items()
                     if k is not None} for row in reader]
    except (UnicodeDecodeError, csv.Error) as err:
        raise JsnqInputError(pairs, f"cannot read CSV: {one_line(err)}") from None
    except OSError as err:
        raise JsnqInputError(pairs, f"cannot read: {err.strerror or err}") from None
    rows = [r for r in rows if any(r.values())]  # blank lines
    if not rows:
        raise JsnqInputError(pairs, "no pairs listed")
    return rows


@dataclass(frozen=True)
class BatchOutcome:
    """One row of a batch: its id, the row as read, and its measurement or its one-line error."""

    number: int
    row_id: str
    row: dict[str, str]
    measurement: Measurement | None
    error: str


def _job(folder: Path, row: dict[str, str], spacing_mm: float | None, source: str) -> dict[str, Any]:
    def resolve(value: str) -> Path | None:
        return (folder / value) if value else None

    if not row.get("baseline") or not row.get("followup"):
        raise JsnqInputError(source, "baseline and followup are required")
    if row.get("spacing_mm"):
        try:
            spacing_mm = float(row["spacing_mm"])
        except ValueError:
            raise JsnqInputError(source, f"invalid spacing_mm {row['spacing_mm']!r}") from None
    return {"baseline": resolve(row["baseline"]), "followup": resolve(row["followup"]),
            "baseline_labels": resolve(row.get("baseline_labels", "")),
            "followup_labels": resolve(row.get("followup_labels", "")), "spacing_mm": spacing_mm}


def measure_batch(path: str | os.PathLike, *, config: MeasureConfig | None = None, spacing_mm: float | None = None,
                  batch_size: int = 16, rows: list[dict[str, str]] | None = None) -> Iterator[BatchOutcome]:
    """Measure every pair listed in a CSV (:func:`read_pairs`), in order, one outcome per row.

    Relative paths resolve against the CSV's folder; ``spacing_mm`` applies to rows without a
    ``spacing_mm`` of their own. The registration network runs on batches of ``batch_size``.
    ``rows``: the CSV's rows when the caller has read them already (:func:`read_pairs`).
    """
    pairs = Path(path)
    rows = read_pairs(pairs) if rows is None else rows
    config = config or MeasureConfig()
    jobs: list[dict[str, Any] | JsnqInputError] = []
    for number, row in enumerate(rows, start=1):
        try:
            jobs.append(_job(pairs.parent, row, spacing_mm, f"{pairs} row {number}"))
        except JsnqInputError as err:
            jobs.append(err)
    outcomes = measure_many([j for j in jobs if isinstance(j, dict)], config=config, batch_size=batch_size)
    for number, (row, job) in enumerate(zip(rows, jobs), start=1):
        outcome = job if isinstance(job, JsnqInputError) else next(outcomes)
        m, error = None, ""
        if isinstance(outcome, ValueError):
            error = one_line(outcome)
        elif isinstance(outcome, Exception):  # a bug on one row must not lose the whole batch
            error = f"unexpected error ({type(outcome).__name__}): {one_line(outcome)}"
        else:
            m = outcome
        yield BatchOutcome(number, row.get("id") or str(number), row, m, error)


def result_row(outcome: BatchOutcome) -> dict[str, Any]:
    """The results-CSV row of an outcome (:data:`RESULT_COLUMNS`; empty where not measured)."""
    m, row = outcome.measurement, outcome.row
    out: dict[str, Any] = {c: "" for c in RESULT_COLUMNS}
    out.update(id=outcome.row_id, baseline=row.get("baseline", ""), followup=row.get("followup", ""),
               error=outcome.error)
    if m is not None:
        out.update(narrowing_px=m.narrowing_px, narrowing_se_px=m.narrowing_se_px,
                   narrowing_mm=m.narrowing_mm, narrowing_se_mm=m.narrowing_se_mm,
                   dy_difference_px=m.dy_difference_px,
                   reliable="true" if m.reliable else "false", reasons="; ".join(m.reasons),
                   precise="true" if m.precise else "false", notes="; ".join(m.notes),
                   engine=m.engine, segmenter=m.segmenter,
                   jsw_baseline_mean_px=None if m.jsw_baseline is None else m.jsw_baseline.mean_px,
                   jsw_followup_mean_px=None if m.jsw_followup is None else m.jsw_followup.mean_px)
        for side, b in (("upper", m.upper), ("lower", m.lower)):
            out.update({f"{side}_scale": b.scale, f"{side}_angle_deg": b.angle_deg,
                        f"{side}_tx_px": b.tx_px, f"{side}_ty_px": b.ty_px})
    return {k: csv_cell(v) for k, v in out.items()}



def batch_inputs(path: str | os.PathLike, rows: list[dict[str, str]]) -> list[Path]:
    """The pairs CSV and every file its rows name (resolved as :func:`measure_batch` does): the
    files no output may overwrite."""
    pairs = Path(path)
    return [pairs] + [pairs.parent / r[c] for r in rows
                      for c in ("baseline", "followup", "baseline_labels", "followup_labels") if r.get(c)]


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "pair"


def write_outputs(outcomes: Iterable[BatchOutcome], out: str | os.PathLike, *,
                  json_out: str | os.PathLike | None = None, figures: str | os.PathLike | None = None,
                  report: str | os.PathLike | None = None, title: str = "jsnq report",
                  inputs: Iterable[str | os.PathLike] = ()) -> list[dict[str, Any]]:
    """Write a batch's files from its outcomes (e.g. :func:`measure_batch`'s, consumed here).

    Every output path is checked before the first outcome is drawn, so a bad path fails before
    any measuring. Each file is written atomically, never over one of ``inputs`` (see
    :func:`batch_inputs`) nor through a symlink.

    Args:
        outcomes: the batch's outcomes, in order.
        out: the results CSV (:data:`RESULT_COLUMNS`; empty cells where not measured).
        json_out: also the full results as JSON, a record ``{id, row, error, result}`` per row.
        figures: a folder (created, never its parents) for a QA figure ``<id>.png`` per measured pair.
        report: a self-contained HTML report of every measured pair, titled ``title``.
        inputs: files no output may be.

    Returns:
        The results CSV's rows (:func:`result_row`), in order.
    """
    inputs = list(inputs)
    check_output(out, inputs=inputs)
    for path in (json_out, report):
        if path is not None:
            check_output(path, inputs=inputs)
    if figures is not None:
        check_output_dir(figures, inputs=inputs)
    rows: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    measured: list[tuple[str, Measurement]] = []
    used: set[str] = set()
    for outcome in outcomes:
        m = outcome.measurement
        if m is not None and figures is not None:
            _write_figure(outcome, Path(figures), used, inputs)
        if m is not None and report is not None:
            measured.append((outcome.row_id, m))
        rows.append(result_row(outcome))
        records.append({"id": outcome.row_id, "row": outcome.number, "error": outcome.error or None,
                        "result": None if m is None else m.to_dict()})
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(RESULT_COLUMNS))
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out, buffer.getvalue(), inputs=inputs)
    if json_out is not None:
        write_atomic(json_out, json.dumps(records, indent=2) + "\n", inputs=inputs)
    if report is not None:
        from .report.html import write_report

        write_report(report, measured, title=safe_display_name(title))
    return rows


def _write_figure(outcome: BatchOutcome, folder: Path, used: set[str], inputs: list) -> None:
    """The QA figure of one measured row as ``folder/<id>.png`` (``<id>_<row>.png`` for a repeated id)."""
    from .report import qa_figure

    name = _safe_name(outcome.row_id)
    if name in used:
        name = f"{name}_{outcome.number}"
    used.add(name)
    target = check_output(folder / f"{name}.png", inputs=inputs, folder=folder)
    qa_figure(outcome.measurement, target,
              title=f"{outcome.row_id}: {outcome.row['baseline']} → {outcome.row['followup']}")
