"""``jsnq series``: one joint across visits, one consistent trajectory."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from . import options as opt
from .common import EXIT_PARTIAL, display, output_file, plural, pm, reports_input_errors, stderr, stdout, unsigned

VISITS = typer.Argument(..., metavar="VISIT1 VISIT2 ...", help="Crops of one joint, in time order (same size).")
LABELS = typer.Option(None, "--labels", metavar="FILE", help="Label image per visit (repeat once per visit, in order).")
DATES = typer.Option(None, "--dates", metavar="D1,D2,...", help="ISO dates of the visits, comma-separated, in order.")
JSON_OUT = typer.Option(None, "--json", metavar="OUT.json", help="Write the results as JSON.")
CSV_OUT = typer.Option(None, "--csv", metavar="OUT.csv", help="Write the trajectory as CSV.")
PLOT = typer.Option(None, "--plot", metavar="OUT.png", help="Plot the trajectory (PNG).")


@reports_input_errors
def series_cmd(visits: list[Path] = VISITS, labels: Optional[list[Path]] = LABELS, dates: Optional[str] = DATES,
               spacing: Optional[float] = opt.SPACING, split_masks: bool = opt.SPLIT_MASKS, engine: str = opt.ENGINE,
               segmenter: str = opt.SEGMENTER, json_out: Optional[Path] = JSON_OUT, csv_out: Optional[Path] = CSV_OUT,
               plot: Optional[Path] = PLOT, report: Optional[Path] = opt.REPORT, edge_ramp: float = opt.EDGE_RAMP,
               gain_free: bool = opt.GAIN_FREE) -> None:
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
    from ..longitudinal import series, write_series_outputs

    s = series(visits, labels=labels or None, dates=[d.strip() for d in dates.split(",")] if dates else None,
               spacing_mm=spacing, config=config)
    _print_series(s)
    for path in write_series_outputs(s, json_out=json_out, csv_out=csv_out, plot=plot, report=report, inputs=inputs):
        stderr().print(f"wrote {display(path)}", markup=False)
    unmeasured = [v["visit"] for v in s.to_dict()["visits"] if v["narrowing_px"] is None]
    if unmeasured:
        stderr().print(f"not measured: visit(s) {', '.join(map(str, unmeasured))} (see the flags)", markup=False)
        raise typer.Exit(EXIT_PARTIAL)


def _print_series(s: Any) -> None:
    """Each visit's cumulative narrowing (mm when the spacing is known) and the path consistency."""
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
