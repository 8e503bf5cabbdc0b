"""Many pairs listed in a CSV: read the list, measure every row, one result row each.

A bad row (a missing file, a bad spacing, a failed registration) becomes a row with its one-line
error; the others are measured all the same. A number that could not be measured is written
as an empty cell, never as a number.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .config import MeasureConfig
from .errors import JsnqInputError, header_hint, one_line
from .outputs import csv_cell
from .pipeline import measure_many
from .results import Measurement

__all__ = ["REQUIRED_COLUMNS", "OPTIONAL_COLUMNS", "RESULT_COLUMNS", "read_pairs", "BatchOutcome", "measure_batch",
           "result_row"]

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
