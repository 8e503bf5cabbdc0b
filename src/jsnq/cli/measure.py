"""``jsnq measure``: one pair of crops of one joint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from . import options as opt
from .common import display, jsw_text, output_file, pm, reports_input_errors, stderr, stdout

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from ..results import Measurement


def print_summary(console: "Console", m: "Measurement") -> None:
    """The readable summary of one measurement."""
    from rich.markup import escape
    from rich.table import Table

    console.print("[bold]Joint space narrowing[/]")
    console.print(f"  baseline:  {escape(display(m.baseline_source))}", soft_wrap=True)
    console.print(f"  follow-up: {escape(display(m.followup_source))}", soft_wrap=True)
    if m.narrowing_mm is not None:
        console.print(f"  narrowing: [bold]{pm(m.narrowing_mm, m.narrowing_se_mm, 'mm')}[/]"
                      f"  ({pm(m.narrowing_px, m.narrowing_se_px, 'px')} at {m.spacing_mm:g} mm/px)")
    else:
        console.print(f"  narrowing: [bold]{pm(m.narrowing_px, m.narrowing_se_px, 'px')}[/]")
        console.print("  pixel spacing unknown: pixels only (give --spacing MM for millimetres)")
    console.print("  ± = standard error; positive = the joint space narrowed")
    console.print(f"  dy difference (dy upper − dy lower): {m.dy_difference_px:+.3f} px")
    console.print(f"  segmenter: {m.segmenter}")
    for visit, jsw in (("baseline", m.jsw_baseline), ("follow-up", m.jsw_followup)):
        if jsw is not None:
            console.print(f"  JSW {visit}: {jsw_text(jsw)}", soft_wrap=True)

    table = Table(title=None, show_edge=False, pad_edge=False)
    table.add_column("bone")
    for name in ("scale", "angle (deg)", "tx (px)", "ty (px)", "NCC before→after", "converged"):
        table.add_column(name, justify="right")
    for name, b in (("upper", m.upper), ("lower", m.lower)):
        table.add_row(name, f"{b.scale:.4f}", f"{b.angle_deg:+.2f}", f"{b.tx_px:+.2f}", f"{b.ty_px:+.2f}",
                      f"{b.ncc_before:.3f}→{b.ncc_after:.3f}",
                      ("yes" if b.converged else "NO") + (" (at bound)" if b.at_bound else ""))
    console.print(table)
    if m.reliable:
        console.print("  reliable: [green]yes[/]")
    else:
        console.print("  reliable: [bold red]NO[/]")
        for reason in m.reasons:
            console.print(f"    [red]- {escape(display(reason))}[/]")
    for note in m.notes:  # precision, not failure: the number stands with its SE
        console.print(f"  note: [yellow]{escape(display(note))}[/]")


BASELINE = typer.Argument(..., metavar="BASELINE", help="Baseline crop (PNG, JPEG, TIFF, DICOM, ...).")
FOLLOWUP = typer.Argument(..., metavar="FOLLOWUP", help="Follow-up crop of the same joint, same size.")
BASELINE_LABELS = typer.Option(None, "--baseline-labels", metavar="FILE",
                               help="Label image in the baseline frame: 1 = upper side, 2 = lower side, 0 = ignore. "
                                    "Default: the segmenter (--segmenter) finds it.")
FOLLOWUP_LABELS = typer.Option(None, "--followup-labels", metavar="FILE",
                               help="The same for the follow-up (validated, shown in figures).")
AS_JSON = typer.Option(False, "--json", help="Print the result as JSON on stdout (nothing else).")
FIGURE = typer.Option(None, "--figure", metavar="OUT.png", help="Write a QA figure (PNG).")


@reports_input_errors
def measure_cmd(baseline: Path = BASELINE, followup: Path = FOLLOWUP, baseline_labels: Optional[Path] = BASELINE_LABELS,
                followup_labels: Optional[Path] = FOLLOWUP_LABELS, split_masks: bool = opt.SPLIT_MASKS,
                spacing: Optional[float] = opt.SPACING, engine: str = opt.ENGINE, segmenter: str = opt.SEGMENTER,
                as_json: bool = AS_JSON, figure: Optional[Path] = FIGURE, report: Optional[Path] = opt.REPORT,
                check_labels: bool = opt.CHECK_LABELS, edge_ramp: float = opt.EDGE_RAMP,
                gain_free: bool = opt.GAIN_FREE) -> None:
    """Measure the narrowing between BASELINE and FOLLOWUP crops of one joint."""
    if split_masks and baseline_labels is None and followup_labels is None:
        raise ValueError("--split-masks needs --baseline-labels and/or --followup-labels")
    config = opt.measure_config(engine=engine, segmenter=segmenter, split_masks=split_masks,
                                check_labels=check_labels, edge_ramp=edge_ramp, gain_free=gain_free)
    inputs = (baseline, followup, baseline_labels, followup_labels)
    for path in (figure, report):
        if path is not None:
            output_file(path, inputs=inputs)  # fail before the work, not after

    from ..pipeline import measure

    m = measure(baseline, followup, baseline_labels=baseline_labels, followup_labels=followup_labels,
                spacing_mm=spacing, config=config)
    if as_json:
        typer.echo(json.dumps(m.to_dict(), indent=2))
    else:
        print_summary(stdout(), m)
    if figure is not None:
        from ..report import qa_figure

        qa_figure(m, figure)
        stderr().print(f"wrote {display(figure)}", markup=False)
    if report is not None:
        from ..report.html import write_report

        write_report(report, [(f"{Path(m.baseline_source).name} → {Path(m.followup_source).name}", m)])
        stderr().print(f"wrote {display(report)}", markup=False)
