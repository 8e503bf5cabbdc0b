"""``jsnq measure-batch``: many pairs listed in a CSV; bad rows are recorded, not fatal."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any, Optional

import typer

from . import options as opt
from .common import EXIT_PARTIAL, display, output_dir, output_file, reports_input_errors, stderr, stdout, write_text


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "pair"


@reports_input_errors
def measure_batch_cmd(
    pairs: Path = typer.Argument(
        ..., metavar="PAIRS.csv",
        help="CSV with columns baseline, followup and optional baseline_labels, followup_labels, spacing_mm, id "
             "(relative paths are resolved against the CSV's folder)."),
    out: Path = typer.Option(..., "--out", metavar="RESULTS.csv", help="Results CSV (its folder must exist)."),
    spacing: Optional[float] = typer.Option(
        None, "--spacing", metavar="MM", help="Pixel spacing in mm/px for rows without spacing_mm."),
    split_masks: bool = opt.SPLIT_MASKS,
    figures: Optional[Path] = typer.Option(
        None, "--figures", metavar="DIR", help="Write a QA figure per pair into DIR (created if missing)."),
    json_out: Optional[Path] = typer.Option(
        None, "--json-out", metavar="RESULTS.json", help="Also write the full results as JSON."),
    segmenter: str = opt.SEGMENTER,
    engine: str = opt.ENGINE,
    batch_size: int = typer.Option(16, "--batch-size", min=1,
                                   help="Pairs per batched forward pass of the registration network."),
    report: Optional[Path] = typer.Option(None, "--report", metavar="OUT.html",
                                          help="Write a self-contained HTML report of every measured pair."),
    check_labels: bool = opt.CHECK_LABELS,
    edge_ramp: float = opt.EDGE_RAMP,
    gain_free: bool = opt.GAIN_FREE,
) -> None:
    """Measure many pairs listed in a CSV; bad rows are recorded, not fatal.

    Exit code 0 when every row succeeded, 1 when any failed (the results are written anyway).
    """
    from ..batch import RESULT_COLUMNS, measure_batch, read_pairs, result_row

    config = opt.measure_config(engine=engine, segmenter=segmenter, split_masks=split_masks,
                                check_labels=check_labels, edge_ramp=edge_ramp, gain_free=gain_free)
    rows = read_pairs(pairs)
    inputs = [pairs] + [pairs.parent / r[c] for r in rows for c in ("baseline", "followup", "baseline_labels",
                                                                     "followup_labels") if r.get(c)]
    output_file(out, inputs=inputs)
    for path in (json_out, report):
        if path is not None:
            output_file(path, inputs=inputs)
    if figures is not None:
        output_dir(figures)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    results: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    measured: list[tuple[str, Any]] = []
    used_names: set[str] = set()
    progress = Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=stderr())
    with progress:
        task = progress.add_task("measuring", total=len(rows))
        for outcome in measure_batch(pairs, config=config, spacing_mm=spacing, batch_size=batch_size,
                                     rows=rows):
            m = outcome.measurement
            if m is not None and figures is not None:
                name = _safe_name(outcome.row_id)
                if name in used_names:
                    name = f"{name}_{outcome.number}"
                used_names.add(name)
                from ..report import qa_figure

                target = output_file(figures / f"{name}.png", inputs=inputs)
                qa_figure(m, target, title=f"{outcome.row_id}: {outcome.row['baseline']} → {outcome.row['followup']}")
            results.append(result_row(outcome))
            records.append({"id": outcome.row_id, "row": outcome.number, "error": outcome.error or None,
                            "result": None if m is None else m.to_dict()})
            if m is not None and report is not None:
                measured.append((outcome.row_id, m))
            progress.advance(task)

    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(RESULT_COLUMNS))
    writer.writeheader()
    writer.writerows(results)
    write_text(out, buffer.getvalue())
    if json_out is not None:
        write_text(json_out, json.dumps(records, indent=2) + "\n")
    if report is not None:
        from ..report.html import write_report

        write_report(report, measured, title=f"jsnq report: {display(pairs.name)}")

    failed = [r for r in results if r["error"]]
    unreliable = [r for r in results if not r["error"] and r["reliable"] == "false"]
    console = stdout()
    console.print(f"{len(results)} pairs: {len(results) - len(failed)} ok "
                  f"({len(unreliable)} unreliable), {len(failed)} failed", markup=False)
    for r in failed:
        console.print(f"  failed {display(r['id'])}: {display(r['error'])}", markup=False, soft_wrap=True)
    console.print(f"results: {display(out)}", markup=False)
    if failed:
        raise typer.Exit(EXIT_PARTIAL)
