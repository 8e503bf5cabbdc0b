"""The ``jsnq`` command line: one thin module per command over the Python API.

Each command parses its arguments, builds the :class:`~jsnq.config.MeasureConfig` once
(:func:`jsnq.cli.options.measure_config`), calls the API and prints or writes. The measurement
stack and matplotlib are imported inside the commands, so ``jsnq --help`` stays fast. Bad input
ends a command with one line ``error: <message>`` on stderr and exit code 2, never a traceback
(:func:`jsnq.cli.common.reports_input_errors`).

Commands (module): ``measure`` (measure), ``measure-batch`` (batch), ``series`` (series),
``study`` (study), ``report`` (report), ``segment`` (segment), ``demo`` (demo), ``hand`` (hand),
``train segment|register|locate|export`` (train).
"""

from __future__ import annotations

import typer

from ..version import __version__
from . import batch, demo, hand, measure, report, segment, series, study, train

__all__ = ["app"]

app = typer.Typer(name="jsnq", add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"jsnq {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    """Sub-pixel joint space narrowing (JSN) between visits of a joint.

    Crops must show the same joint, finger up, with the same size (and spacing) at both visits.
    Positive narrowing = the joint space narrowed.
    """


app.command("measure")(measure.measure_cmd)
app.command("measure-batch")(batch.measure_batch_cmd)
app.command("series")(series.series_cmd)
app.command("study")(study.study_cmd)
app.command("report")(report.report_cmd)
app.command("demo")(demo.demo_cmd)
app.command("segment")(segment.segment_cmd)
app.command("hand")(hand.hand_cmd)

train_app = typer.Typer(name="train", no_args_is_help=True, help="Train jsnq's networks.")
train_app.command("segment")(train.train_segment_cmd)
train_app.command("register")(train.train_register_cmd)
train_app.command("locate")(train.train_locate_cmd)
train_app.command("export")(train.train_export_cmd)
app.add_typer(train_app, name="train")
