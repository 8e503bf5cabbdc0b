"""``jsnq measure-batch``: many pairs listed in a CSV; bad rows are recorded, not fatal."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import typer

from . import options as opt
from .common import EXIT_PARTIAL, display, reports_input_errors, stderr, stdout

PAIRS = typer.Argument(..., metavar="PAIRS.csv",
                       help="CSV with columns baseline, followup and optional baseline_labels, followup_labels, "
                            "spacing_mm, id (relative paths are resolved against the CSV's folder).")
OUT = typer.Option(..., "--out", metavar="RESULTS.csv", help="Results CSV (its folder must exist).")
SPACING = typer.Option(None, "--spacing", metavar="MM", help="Pixel spacing in mm/px for rows without spacing_mm.")
FIGURES = typer.Option(None, "--figures", metavar="DIR", help="Write a QA figure per pair into DIR (created if missing).")
JSON_OUT = typer.Option(None, "--json-out", metavar="RESULTS.json", help="Also write the full results as JSON.")
BATCH_SIZE = typer.Option(16, "--batch-size", min=1, help="Pairs per batched forward pass of the registration network.")
REPORT = typer.Option(None, "--report", metavar="OUT.html", help="Write a self-contained HTML report of every measured pair.")


@reports_input_errors
def measure_batch_cmd(pairs: Path = PAIRS, out: Path = OUT, spacing: Optional[float] = SPACING,
                      split_masks: bool = opt.SPLIT_MASKS, figures: Optional[Path] = FIGURES,
                      json_out: Optional[Path] = JSON_OUT, segmenter: str = opt.SEGMENTER, engine: str = opt.ENGINE,
                      batch_size: int = BATCH_SIZE, report: Optional[Path] = REPORT,
                      check_labels: bool = opt.CHECK_LABELS, edge_ramp: float = opt.EDGE_RAMP,
                      gain_free: bool = opt.GAIN_FREE) -> None:
    """Measure many pairs listed in a CSV; bad rows are recorded, not fatal.

    Exit code 0 when every row succeeded, 1 when any failed (the results are written anyway).
    """
    from ..batch import batch_inputs, measure_batch, read_pairs, write_outputs

    config = opt.measure_config(engine=engine, segmenter=segmenter, split_masks=split_masks,
                                check_labels=check_labels, edge_ramp=edge_ramp, gain_free=gain_free)
    rows = read_pairs(pairs)
    outcomes = measure_batch(pairs, config=config, spacing_mm=spacing, batch_size=batch_size, rows=rows)
    results = write_outputs(_with_progress(outcomes, len(rows)), out, json_out=json_out, figures=figures,
                            report=report, title=f"jsnq report: {display(pairs.name)}", inputs=batch_inputs(pairs, rows))
    if _print_summary(results, out):
        raise typer.Exit(EXIT_PARTIAL)


def _with_progress(items: Iterable[Any], total: int) -> Iterator[Any]:
    """``items``, with a progress bar on stderr from the first item on (so that an error found
    before, such as a bad output path, prints alone)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn(), console=stderr())
    with bar:
        task = bar.add_task("measuring", total=total)
        for item in items:
            yield item
            bar.advance(task)


def _print_summary(results: list[dict[str, Any]], out: Path) -> int:
    """Print the counts and every failed row; return the number failed."""
    failed = [r for r in results if r["error"]]
    unreliable = [r for r in results if not r["error"] and r["reliable"] == "false"]
    console = stdout()
    console.print(f"{len(results)} pairs: {len(results) - len(failed)} ok "
                  f"({len(unreliable)} unreliable), {len(failed)} failed", markup=False)
    for r in failed:
        console.print(f"  failed {display(r['id'])}: {display(r['error'])}", markup=False, soft_wrap=True)
    console.print(f"results: {display(out)}", markup=False)
    return len(failed)
