"""``jsnq report``: the HTML report of saved results, measured again exactly as they were."""

from __future__ import annotations

from pathlib import Path

import typer

from . import options as opt
from .common import EXIT_PARTIAL, display, output_file, reports_input_errors, stderr, stdout


@reports_input_errors
def report_cmd(
    results: Path = typer.Argument(..., metavar="RESULTS.json",
                                   help="JSON from `measure --json`, `measure-batch --json-out` or `series --json`."),
    out: Path = typer.Option(..., "-o", "--out", metavar="OUT.html", help="The report to write."),
    allow_mismatch: bool = opt.ALLOW_MISMATCH,
) -> None:
    """Write a self-contained HTML report from saved results.

    The pairs are measured again from their files with the recorded configuration and checked
    against the saved numbers: a number that comes out differently is an error (exit 1, no
    report) unless --allow-mismatch is given.
    """
    output_file(out, inputs=[results])
    from ..report.html import write_report
    from ..report.rebuild import rebuild

    rebuilt = rebuild(results)
    err = stderr()
    for note in rebuilt.notes:
        err.print(f"note: {display(note)}", markup=False, soft_wrap=True)
    for mismatch in rebuilt.mismatches:
        err.print(f"{'warning' if allow_mismatch else 'error'}: {display(mismatch)}", markup=False, soft_wrap=True)
    if rebuilt.mismatches and not allow_mismatch:
        err.print("the saved results differ from a new measurement of the same files with the same settings; "
                  "no report written (--allow-mismatch writes it anyway)", markup=False)
        raise typer.Exit(EXIT_PARTIAL)
    write_report(out, rebuilt.measurements, rebuilt.series, title=f"jsnq report: {display(results.name)}")
    stdout().print(f"wrote {display(out)}", markup=False)
