"""``jsnq series``: one joint across visits, one consistent trajectory."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Optional

import typer

from . import options as opt
from .common import (EXIT_PARTIAL, display, output_file, plural, pm, reports_input_errors, stderr, stdout, unsigned,
                     write_text)

#: The columns of ``series --csv``, in order.
SERIES_CSV_COLUMNS = ("visit", "source", "date", "narrowing_px", "se_px", "narrowing_mm", "se_mm", "flag")


@reports_input_errors
def series_cmd(
    visits: list[Path] = typer.Argument(..., metavar="VISIT1 VISIT2 ...",
                                        help="Crops of one joint, in time order (same size)."),
    labels: Optional[list[Path]] = typer.Option(
        None, "--labels", metavar="FILE", help="Label image per visit (repeat once per visit, in order)."),
    dates: Optional[str] = typer.Option(None, "--dates", metavar="D1,D2,...",
                                        help="ISO dates of the visits, comma-separated, in order."),
    spacing: Optional[float] = opt.SPACING,
    split_masks: bool = opt.SPLIT_MASKS,
    engine: str = opt.ENGINE,
    segmenter: str = opt.SEGMENTER,
    json_out: Optional[Path] = typer.Option(None, "--json", metavar="OUT.json", help="Write the results as JSON."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", metavar="OUT.csv", help="Write the trajectory as CSV."),
    plot: Optional[Path] = typer.Option(None, "--plot", metavar="OUT.png", help="Plot the trajectory (PNG)."),
    report: Optional[Path] = opt.REPORT,
    edge_ramp: float = opt.EDGE_RAMP,
    gain_free: bool = opt.GAIN_FREE,
) -> None:
    """Follow one joint across visits: every pair measured, one consistent trajectory fitted.

    Exit code 0 when every visit was measured, 1 when a visit could not be (its row is written
    empty, with the reason in the flag column).
    """
    config = opt.measure_config(engine=engine, segmenter=segmenter, split_masks=split_masks,
                                edge_ramp=edge_ramp, gain_free=gain_free)
    inputs = [*visits, *(labels or [])]
    for path in (json_out, csv_out, plot, report):
        if path is not None:
            output_file(path, inputs=inputs)
    date_list = [d.strip() for d in dates.split(",")] if dates else None
    from ..longitudinal import series

    s = series(visits, labels=labels or None, dates=date_list, spacing_mm=spacing, config=config)
    d = s.to_dict()
    console = stdout()
    unit = "mm" if s.spacing_mm is not None else "px"
    for v in d["visits"]:
        value = v["narrowing_mm"] if unit == "mm" else v["narrowing_px"]
        se = v["se_mm"] if unit == "mm" else v["se_px"]
        console.print(f"visit {v['visit']} {v['date'] or ''} {display(Path(v['source']).name)}: "
                      f"{pm(value, se, unit)}" + (f"  FLAG: {display(v['flag'])}" if v["flag"] else ""),
                      markup=False, soft_wrap=True)
    triples = len(d["trajectory"]["path_residuals_px"])
    rms = d["trajectory"]["path_rms_px"]
    console.print((f"path-consistency RMS {unsigned(rms)} px over {plural(triples, 'triple')}" if triples else
                   "no path consistency to check (fewer than three visits)")
                  + f"; {plural(len(s.errors), 'pair')} failed", markup=False)
    if json_out is not None:
        write_text(json_out, json.dumps(d, indent=2) + "\n")
    if csv_out is not None:
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=list(SERIES_CSV_COLUMNS))
        writer.writeheader()
        for v in d["visits"]:
            writer.writerow({k: ("" if v.get(k) is None else v.get(k)) for k in SERIES_CSV_COLUMNS})
        write_text(csv_out, buffer.getvalue())
    if plot is not None:
        from ..report.html import trajectory_figure

        trajectory_figure(s, plot)
    if report is not None:
        from ..report.html import write_report

        write_report(report, series=[(Path(s.sources[0]).parent.name or "series", s)])
    for path in (json_out, csv_out, plot, report):
        if path is not None:
            stderr().print(f"wrote {display(path)}", markup=False)
    unmeasured = [v["visit"] for v in d["visits"] if v["narrowing_px"] is None]
    if unmeasured:
        stderr().print(f"not measured: visit(s) {', '.join(map(str, unmeasured))} (see the flags)", markup=False)
        raise typer.Exit(EXIT_PARTIAL)
