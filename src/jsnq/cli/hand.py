"""``jsnq hand``: whole-hand radiographs in, every finger joint's narrowing out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from . import options as opt
from .common import EXIT_PARTIAL, display, output_file, plural, reports_input_errors, signed, stderr, stdout, unsigned

if TYPE_CHECKING:  # pragma: no cover
    from ..config import MeasureConfig


@reports_input_errors
def hand_cmd(
    visits: list[Path] = typer.Argument(..., metavar="BASELINE FOLLOWUP [VISIT3 ...]",
                                        help="Whole-hand radiographs of one hand, in time order (PA view)."),
    spacing: Optional[float] = opt.SPACING,
    dates: Optional[str] = typer.Option(None, "--dates", metavar="D1,D2,...",
                                        help="ISO dates of the visits, comma-separated, in order."),
    joints: Optional[str] = typer.Option(None, "--joints", metavar="MCP2,MCP3,...",
                                         help="Measure only these joints (default: all 14)."),
    landmarks: Optional[Path] = typer.Option(
        None, "--landmarks", metavar="FILE.csv",
        help="Your own joint positions instead of the locator's: CSV visit,joint,x,y (visit 0 = first image; "
             "x, y = the base of the joint's distal bone, px; TIP1-TIP5 rows give the distal joints' axes)."),
    side: str = typer.Option("L", "--side", metavar="L|R", help="With --landmarks: which hand (PA view)."),
    workers: int = typer.Option(2, "--workers", min=1, help="Joints measured at once (threads)."),
    threads: int = typer.Option(
        1, "--threads", min=1,
        help="torch's CPU threads per joint. 1 (the default) measured 4x faster than 2 on a busy 2-core "
             "machine (docs/hand.md); the results do not depend on it."),
    engine: str = opt.ENGINE,
    segmenter: str = opt.SEGMENTER,
    json_out: Optional[Path] = typer.Option(None, "--json", metavar="OUT.json", help="Write the results as JSON."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", metavar="OUT.csv", help="Write the per-joint table as CSV."),
    report: Optional[Path] = opt.REPORT,
) -> None:
    """Find the finger joints, cut matching crops at every visit, and measure each joint.

    Two visits: one narrowing per joint. Three or more (or --dates): one trajectory per joint.
    Prints one line per joint: the narrowing (mm, else px of the radiograph), its SE, reliable,
    and short reason codes with their legend; the full reasons are in --csv, --json, --report.
    Refused (exit code 2): visits mixing a pixel spacing with none (unless --spacing decides),
    or the same image twice. Exit code 0 when every requested joint was measured, 1 when some
    could not be (their rows give the reason).
    """
    config = opt.measure_config(engine=engine, segmenter=segmenter)
    for path in (json_out, csv_out, report):
        if path is not None:
            output_file(path, inputs=[*visits, landmarks])
    if len(visits) < 2:
        raise ValueError(f"hand: needs at least two visits, got {len(visits)}")
    date_list = [d.strip() for d in dates.split(",")] if dates else None
    only = [j.strip() for j in joints.split(",") if j.strip()] if joints else None
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _run(_HandRun(visits=visits, spacing=spacing, dates=date_list, joints=only, landmarks=landmarks, side=side,
                      workers=workers, config=config, json_out=json_out, csv_out=csv_out, report=report))
    finally:
        torch.set_num_threads(before)  # the process's setting again (the command may run in-process)


@dataclass(frozen=True)
class _HandRun:
    """What one ``jsnq hand`` run was asked for: its inputs, settings and output files (built by :func:`hand_cmd`)."""

    visits: list[Path]
    spacing: Optional[float]
    dates: Optional[list[str]]
    joints: Optional[list[str]]
    landmarks: Optional[Path]
    side: str
    workers: int
    config: "MeasureConfig"
    json_out: Optional[Path]
    csv_out: Optional[Path]
    report: Optional[Path]


def _run(run: _HandRun) -> None:
    from ..hand.results import write_outputs
    from ..io import load_image

    images = [load_image(v, spacing_mm=run.spacing) for v in run.visits]
    result = _measure(run, images, _hands(run, images))
    rows = result.rows()
    _print_table(rows, series=len(images) > 2 or run.dates is not None)
    for path in write_outputs(result, [im.array for im in images], json_out=run.json_out, csv_out=run.csv_out,
                              report=run.report, inputs=[*run.visits, run.landmarks]):
        stderr().print(f"wrote {display(path)}", markup=False)
    failed = [n for n, why in result.errors.items() if why != "not requested"]
    asked = len(result.joints) + len(failed)
    reliable = sum(1 for n, m in result.joints.items() if all(r["reliable"] for r in rows if r["joint"] == n))
    stderr().print(f"{len(result.joints)} of {plural(asked, 'joint')} measured, {reliable} reliable"
                   + (f"; not measured: {', '.join(failed)} (see the reasons)" if failed else ""), markup=False)
    if failed:
        raise typer.Exit(EXIT_PARTIAL)


def _hands(run: _HandRun, images: list) -> list | None:
    """The visits' hands from ``--landmarks``, or None (the locator finds them)."""
    if run.landmarks is None:
        return None
    from ..hand.landmarks import read_landmarks

    if run.side not in ("L", "R"):
        raise ValueError(f"--side must be L or R, got {run.side!r}")
    return read_landmarks(run.landmarks, n_visits=len(images), side=run.side,
                          shapes=[im.array.shape for im in images], sources=[im.source for im in images])


def _measure(run: _HandRun, images: list, hands: list | None):
    """The hand measured (two visits) or followed (a series), with a progress bar on stderr."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..hand.measure import measure_hand, measure_hand_series

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=stderr(), transient=True)
    task: list = []

    def progress(done: int, total: int, joint: str) -> None:
        if not task:  # started at the first joint: an input error before it prints its one line alone
            bar.start()
            task.append(bar.add_task("joints", total=total))
        bar.update(task[0], completed=done, total=total, description=f"joints (last: {joint})")

    try:
        if len(images) == 2 and run.dates is None:
            return measure_hand(images[0], images[1], config=run.config, progress=progress, joints=run.joints,
                                hands=hands, workers=run.workers)
        return measure_hand_series(images, dates=run.dates, config=run.config, progress=progress,
                                   joints=run.joints, hands=hands)
    finally:
        if task:
            bar.stop()


def _print_table(rows: list[dict], *, series: bool) -> None:
    """One line per joint (per joint and visit for a series) within 100 columns: the value, its
    SE and unit, reliable or not, and short reason codes with their legend below (the full
    reasons are in --csv, --json and --report)."""
    from rich import box
    from rich.table import Table

    from ..reasons import legend

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    cols = ["joint", "visit"] if series else ["joint"]
    for c in (*cols, "narrowing", "SE", "unit", "reliable", "codes"):
        table.add_column(c, no_wrap=True, justify="right" if c in ("narrowing", "SE", "visit") else "left")
    used: list[str] = []
    for r in rows:
        mm = r.get("narrowing_mm") is not None
        value = r["narrowing_mm"] if mm else r["narrowing_px"]
        se = r["narrowing_se_mm"] if mm else r["narrowing_se_px"]
        text, se_text = signed(value), unsigned(se)
        cells = [r["joint"]] + ([str(r["visit"]) if r["visit"] is not None else ""] if series else [])
        used.extend(c for c in r["codes"].split(",") if c)
        table.add_row(*cells, text, se_text, ("mm" if mm else "px") if text else "", "yes" if r["reliable"] else "no",
                      r["codes"])
    console = stdout()
    console.print(table)
    lines = legend(used)
    if lines:
        console.print("codes: " + "\n       ".join(lines), markup=False)
    console.print("px: pixels of the radiograph; full reasons: --csv, --json or --report", markup=False)
