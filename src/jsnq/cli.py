"""The ``jsnq`` command line: a thin typer layer over :func:`jsnq.pipeline.measure`.

It parses arguments, calls the Python API and prints. The measurement stack and
matplotlib are imported inside the commands so that ``jsnq --help`` stays fast.
Bad input (``JsnqInputError`` / ``ValueError`` from the API) ends a command with one
line ``error: <message>`` on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import csv
import functools
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import typer

from .version import __version__
from .errors import JsnqInputError

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from .pipeline import Measurement

EXIT_INPUT_ERROR = 2
EXIT_BATCH_FAILURES = 1
DEMO_SPACING_MM = 0.175  # the paper's pixel spacing; the phantom itself has no physical size

app = typer.Typer(
    name="jsnq",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


# -- plumbing ------------------------------------------------------------------------------


def _one_line(err: BaseException) -> str:
    """The error's message on one line (its type's name when it has none)."""
    return " ".join(str(err).split()) or type(err).__name__


def _reports_input_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the API's input errors into ``error: <message>`` on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ValueError as err:  # JsnqInputError is a ValueError
            typer.echo(f"error: {_one_line(err)}", err=True)
            raise typer.Exit(EXIT_INPUT_ERROR) from None

    return wrapper


def _stdout() -> "Console":
    from rich.console import Console

    return Console(highlight=False)


def _stderr() -> "Console":
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _output_file(path: Path) -> Path:
    """An output file name whose directory exists (jsnq writes only where told)."""
    if not path.parent.is_dir():
        raise JsnqInputError(path, "output directory does not exist")
    if path.is_dir():
        raise JsnqInputError(path, "is a directory, not a file name")
    return path


def _output_dir(path: Path) -> Path:
    """An output directory: created when missing, but never its parents."""
    if path.is_dir():
        return path
    if path.exists():
        raise JsnqInputError(path, "exists and is not a directory")
    if not path.parent.is_dir():
        raise JsnqInputError(path, "parent directory does not exist")
    try:
        path.mkdir()
    except OSError as err:
        raise JsnqInputError(path, f"cannot create directory: {err.strerror or err}") from None
    return path


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise JsnqInputError(path, f"cannot write: {err.strerror or err}") from None


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"jsnq {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    """Sub-pixel joint space narrowing (JSN) between a baseline and a follow-up crop of one joint.

    Crops must show the same joint, finger up, with the same size (and spacing) at both visits.
    Positive narrowing = the joint space narrowed.
    """


# -- printing -----------------------------------------------------------------------------


def _pm(value: float | None, se: float | None, unit: str) -> str:
    return f"{value:+.3f} ± {se:.3f} {unit}"


def _jsw_text(jsw: Any) -> str:
    text = f"mean {jsw.mean_px:.2f} px, min {jsw.min_px:.2f} px"
    if jsw.mean_mm is not None:
        text += f" (mean {jsw.mean_mm:.3f} mm, min {jsw.min_mm:.3f} mm)"
    return text + f" over columns {jsw.columns[0]}-{jsw.columns[1]}"


def _print_summary(console: "Console", m: "Measurement") -> None:
    from rich.markup import escape
    from rich.table import Table

    console.print("[bold]Joint space narrowing[/]")
    console.print(f"  baseline:  {escape(m.baseline_source)}", soft_wrap=True)
    console.print(f"  follow-up: {escape(m.followup_source)}", soft_wrap=True)
    if m.narrowing_mm is not None:
        console.print(f"  narrowing: [bold]{_pm(m.narrowing_mm, m.narrowing_se_mm, 'mm')}[/]"
                      f"  ({_pm(m.narrowing_px, m.narrowing_se_px, 'px')} at {m.spacing_mm:g} mm/px)")
    else:
        console.print(f"  narrowing: [bold]{_pm(m.narrowing_px, m.narrowing_se_px, 'px')}[/]")
        console.print("  pixel spacing unknown: pixels only (give --spacing MM for millimetres)")
    console.print("  ± = standard error; positive = the joint space narrowed")
    console.print(f"  dy difference (dy upper − dy lower): {m.dy_difference_px:+.3f} px")
    console.print(f"  segmenter: {m.segmenter}")
    for visit, jsw in (("baseline", m.jsw_baseline), ("follow-up", m.jsw_followup)):
        if jsw is not None:
            console.print(f"  JSW {visit}: {_jsw_text(jsw)}", soft_wrap=True)

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
            console.print(f"    [red]- {escape(reason)}[/]")


# -- measure ------------------------------------------------------------------------------


_CHECK_LABELS_OPTION = typer.Option(
    True, "--check-labels/--no-check-labels",
    help="With baseline labels but none for the follow-up, compare them with the segmentation network's "
         "(about 25 ms a pair) and flag labels that do not follow the joint space.")


_EDGE_RAMP_OPTION = typer.Option(
    0.0, "--edge-ramp", metavar="PX", min=0.0,
    help="Soft edge weights: pixels near the split line and the bones' overlap enter each bone's fit "
         "gradually over PX pixels (0 = off, the default). About halves how much the narrowing depends on "
         "where the labels split the joint, at some cost in precision; for labels you do not trust.")


_GAIN_FREE_OPTION = typer.Option(
    False, "--gain-free",
    help="Make the geometry independent of the fitted gain, which unequal noise in the two visits biases "
         "(up to ~0.02 px at 2 % noise in one visit only); ~10 % slower.")


def _registration_options(edge_ramp: float, gain_free: bool = False):
    """The engine's options for the CLI's settings (None = the defaults)."""
    if not edge_ramp and not gain_free:
        return None
    from .register.classical import RegistrationOptions

    return RegistrationOptions(edge_ramp_px=edge_ramp, gain_free=gain_free)


@app.command("measure")
@_reports_input_errors
def measure_cmd(
    baseline: Path = typer.Argument(..., metavar="BASELINE", help="Baseline crop (PNG, JPEG, TIFF, DICOM, ...)."),
    followup: Path = typer.Argument(..., metavar="FOLLOWUP", help="Follow-up crop of the same joint, same size."),
    baseline_labels: Optional[Path] = typer.Option(
        None, "--baseline-labels", metavar="FILE",
        help="Label image in the baseline frame: 1 = upper side, 2 = lower side, 0 = ignore. "
             "Default: the joint-space line is found automatically."),
    followup_labels: Optional[Path] = typer.Option(
        None, "--followup-labels", metavar="FILE", help="The same for the follow-up (validated, shown in figures)."),
    split_masks: bool = typer.Option(
        False, "--split-masks", help="Label files are paper-style binary split masks (non-zero = upper side)."),
    spacing: Optional[float] = typer.Option(
        None, "--spacing", metavar="MM", help="Pixel spacing in mm/px (overrides the files'); else pixels only."),
    engine: str = typer.Option(
        "auto", "--engine", metavar="auto|classical|deep|hybrid",
        help="Registration engine: classical (search + Gauss-Newton), deep (the network alone, as in the paper), "
             "hybrid (network, then Gauss-Newton), auto (hybrid when the network's weights load)."),
    segmenter: str = typer.Option(
        "auto", "--segmenter", metavar="auto|network|classical",
        help="Without --baseline-labels: the shipped UNet++ (network), the joint-space line (classical), "
             "or the network when its weights load (auto)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout (nothing else)."),
    figure: Optional[Path] = typer.Option(None, "--figure", metavar="OUT.png", help="Write a QA figure (PNG)."),
    report: Optional[Path] = typer.Option(None, "--report", metavar="OUT.html",
                                          help="Write a self-contained HTML report."),
    check_labels: bool = _CHECK_LABELS_OPTION,
    edge_ramp: float = _EDGE_RAMP_OPTION,
    gain_free: bool = _GAIN_FREE_OPTION,
) -> None:
    """Measure the narrowing between BASELINE and FOLLOWUP crops of one joint."""
    if split_masks and baseline_labels is None and followup_labels is None:
        raise ValueError("--split-masks needs --baseline-labels and/or --followup-labels")
    for path in (figure, report):
        if path is not None:
            _output_file(path)  # fail before the work, not after

    from .pipeline import measure

    m = measure(baseline, followup, baseline_labels=baseline_labels, followup_labels=followup_labels,
                split_masks=split_masks, spacing_mm=spacing, engine=engine, segmenter=segmenter,
                check_labels=check_labels, options=_registration_options(edge_ramp, gain_free))
    if as_json:
        typer.echo(json.dumps(m.to_dict(), indent=2))
    else:
        _print_summary(_stdout(), m)
    if figure is not None:
        from .report import qa_figure

        qa_figure(m, figure)
        _stderr().print(f"wrote {figure}", markup=False)
    if report is not None:
        from .report.html import write_report

        write_report(report, [(f"{Path(m.baseline_source).name} → {Path(m.followup_source).name}", m)])
        _stderr().print(f"wrote {report}", markup=False)


# -- measure-batch ------------------------------------------------------------------------

BATCH_COLUMNS = (
    "id", "baseline", "followup", "narrowing_px", "narrowing_se_px", "narrowing_mm", "narrowing_se_mm",
    "dy_difference_px",
    "upper_scale", "upper_angle_deg", "upper_tx_px", "upper_ty_px",
    "lower_scale", "lower_angle_deg", "lower_tx_px", "lower_ty_px",
    "engine", "segmenter", "jsw_baseline_mean_px", "jsw_followup_mean_px",
    "reliable", "reasons", "error",
)
_BATCH_REQUIRED = ("baseline", "followup")
_BATCH_OPTIONAL = ("baseline_labels", "followup_labels", "spacing_mm", "id")


def _read_pairs(pairs: Path) -> list[dict[str, str]]:
    if not pairs.exists():
        raise JsnqInputError(pairs, "file not found")
    if pairs.is_dir():
        raise JsnqInputError(pairs, "is a directory, not a CSV file")
    try:
        with pairs.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in _BATCH_REQUIRED if c not in header]
            if missing:
                raise JsnqInputError(pairs, f"missing column(s) {', '.join(missing)} "
                                     f"(need {', '.join(_BATCH_REQUIRED)}; optional {', '.join(_BATCH_OPTIONAL)})")
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
                    for row in reader]
    except (UnicodeDecodeError, csv.Error) as err:
        raise JsnqInputError(pairs, f"cannot read CSV: {_one_line(err)}") from None
    rows = [r for r in rows if any(r.values())]  # blank lines
    if not rows:
        raise JsnqInputError(pairs, "no pairs listed")
    return rows


def _resolve(folder: Path, value: str) -> Path | None:
    return (folder / value) if value else None


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "pair"


def _batch_row(row_id: str, row: dict[str, str], m: "Measurement | None", error: str) -> dict[str, Any]:
    out: dict[str, Any] = {c: "" for c in BATCH_COLUMNS}
    out.update(id=row_id, baseline=row.get("baseline", ""), followup=row.get("followup", ""), error=error)
    if m is not None:
        out.update(narrowing_px=m.narrowing_px, narrowing_se_px=m.narrowing_se_px,
                   narrowing_mm=m.narrowing_mm, narrowing_se_mm=m.narrowing_se_mm,
                   dy_difference_px=m.dy_difference_px,
                   reliable="true" if m.reliable else "false", reasons="; ".join(m.reasons),
                   engine=m.engine, segmenter=m.segmenter,
                   jsw_baseline_mean_px=None if m.jsw_baseline is None else m.jsw_baseline.mean_px,
                   jsw_followup_mean_px=None if m.jsw_followup is None else m.jsw_followup.mean_px)
        for side, b in (("upper", m.upper), ("lower", m.lower)):
            out.update({f"{side}_scale": b.scale, f"{side}_angle_deg": b.angle_deg,
                        f"{side}_tx_px": b.tx_px, f"{side}_ty_px": b.ty_px})
    return {k: ("" if v is None else v) for k, v in out.items()}


@app.command("measure-batch")
@_reports_input_errors
def measure_batch_cmd(
    pairs: Path = typer.Argument(
        ..., metavar="PAIRS.csv",
        help="CSV with columns baseline, followup and optional baseline_labels, followup_labels, spacing_mm, id "
             "(relative paths are resolved against the CSV's folder)."),
    out: Path = typer.Option(..., "--out", metavar="RESULTS.csv", help="Results CSV (its folder must exist)."),
    spacing: Optional[float] = typer.Option(
        None, "--spacing", metavar="MM", help="Pixel spacing in mm/px for rows without spacing_mm."),
    split_masks: bool = typer.Option(
        False, "--split-masks", help="Label files are paper-style binary split masks (non-zero = upper side)."),
    figures: Optional[Path] = typer.Option(
        None, "--figures", metavar="DIR", help="Write a QA figure per pair into DIR (created if missing)."),
    json_out: Optional[Path] = typer.Option(
        None, "--json-out", metavar="RESULTS.json", help="Also write the full results as JSON."),
    segmenter: str = typer.Option(
        "auto", "--segmenter", metavar="auto|network|classical",
        help="Segmenter for rows without baseline_labels (see `jsnq measure --help`)."),
    engine: str = typer.Option("auto", "--engine", metavar="auto|classical|deep|hybrid",
                               help="Registration engine (see `jsnq measure --help`)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1,
                                   help="Pairs per batched forward pass of the registration network."),
    report: Optional[Path] = typer.Option(None, "--report", metavar="OUT.html",
                                          help="Write a self-contained HTML report of every measured pair."),
    check_labels: bool = _CHECK_LABELS_OPTION,
    edge_ramp: float = _EDGE_RAMP_OPTION,
    gain_free: bool = _GAIN_FREE_OPTION,
) -> None:
    """Measure many pairs listed in a CSV; bad rows are recorded, not fatal.

    Exit code 0 when every row succeeded, 1 when any failed (the results are written anyway).
    """
    rows = _read_pairs(pairs)
    _output_file(out)
    for path in (json_out, report):
        if path is not None:
            _output_file(path)
    if figures is not None:
        _output_dir(figures)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .pipeline import ENGINES, SEGMENTERS, measure_many

    if segmenter not in SEGMENTERS:
        raise ValueError(f"segmenter must be one of {', '.join(map(repr, SEGMENTERS))}; got {segmenter!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}; got {engine!r}")
    folder = pairs.parent
    jobs: list[dict[str, Any] | ValueError] = []
    for number, row in enumerate(rows, start=1):
        row_spacing = spacing
        if row.get("spacing_mm"):
            try:
                row_spacing = float(row["spacing_mm"])
            except ValueError:
                jobs.append(JsnqInputError(f"{pairs} row {number}", f"invalid spacing_mm {row['spacing_mm']!r}"))
                continue
        if not row.get("baseline") or not row.get("followup"):
            jobs.append(JsnqInputError(f"{pairs} row {number}", "baseline and followup are required"))
            continue
        jobs.append({"baseline": _resolve(folder, row["baseline"]), "followup": _resolve(folder, row["followup"]),
                     "baseline_labels": _resolve(folder, row.get("baseline_labels", "")),
                     "followup_labels": _resolve(folder, row.get("followup_labels", "")),
                     "split_masks": split_masks, "spacing_mm": row_spacing, "check_labels": check_labels})
    valid = [j for j in jobs if isinstance(j, dict)]
    measured: list[tuple[str, Any]] = []
    outcomes = measure_many(valid, engine=engine, segmenter=segmenter, batch_size=batch_size,
                            options=_registration_options(edge_ramp, gain_free))
    results: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    used_names: set[str] = set()
    progress = Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=_stderr())
    with progress:
        for number, (row, job) in enumerate(progress.track(list(zip(rows, jobs)), description="measuring"), start=1):
            row_id = row.get("id") or str(number)
            m, error = None, ""
            try:
                outcome = job if isinstance(job, ValueError) else next(outcomes)
                if isinstance(outcome, Exception):
                    raise outcome
                m = outcome
                if figures is not None:
                    name = _safe_name(row_id)
                    if name in used_names:
                        name = f"{name}_{number}"
                    used_names.add(name)
                    from .report import qa_figure

                    qa_figure(m, figures / f"{name}.png", title=f"{row_id}: {row['baseline']} → {row['followup']}")
            except ValueError as err:
                error = _one_line(err)
            except Exception as err:  # a bug on one row must not lose the whole batch
                error = f"unexpected error ({type(err).__name__}): {_one_line(err)}"
            results.append(_batch_row(row_id, row, m, error))
            records.append({"id": row_id, "row": number, "error": error or None,
                            "result": None if m is None else m.to_dict()})
            if m is not None and report is not None:
                measured.append((row_id, m))

    try:
        with out.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(BATCH_COLUMNS))
            writer.writeheader()
            writer.writerows(results)
    except OSError as err:
        raise JsnqInputError(out, f"cannot write: {err.strerror or err}") from None
    if json_out is not None:
        _write_text(json_out, json.dumps(records, indent=2) + "\n")
    if report is not None:
        from .report.html import write_report

        write_report(report, measured, title=f"jsnq report: {pairs.name}")

    failed = [r for r in results if r["error"]]
    unreliable = [r for r in results if not r["error"] and r["reliable"] == "false"]
    console = _stdout()
    console.print(f"{len(results)} pairs: {len(results) - len(failed)} ok "
                  f"({len(unreliable)} unreliable), {len(failed)} failed", markup=False)
    for r in failed:
        console.print(f"  failed {r['id']}: {r['error']}", markup=False, soft_wrap=True)
    console.print(f"results: {out}", markup=False)
    if failed:
        raise typer.Exit(EXIT_BATCH_FAILURES)


# -- series -----------------------------------------------------------------------------------

SERIES_CSV_COLUMNS = ("visit", "source", "date", "narrowing_px", "se_px", "narrowing_mm", "se_mm", "flag")


@app.command("series")
@_reports_input_errors
def series_cmd(
    visits: list[Path] = typer.Argument(..., metavar="VISIT1 VISIT2 ...",
                                        help="Crops of one joint, in time order (same size)."),
    labels: Optional[list[Path]] = typer.Option(
        None, "--labels", metavar="FILE", help="Label image per visit (repeat once per visit, in order)."),
    dates: Optional[str] = typer.Option(None, "--dates", metavar="D1,D2,...",
                                        help="ISO dates of the visits, comma-separated, in order."),
    spacing: Optional[float] = typer.Option(None, "--spacing", metavar="MM", help="Pixel spacing in mm/px."),
    split_masks: bool = typer.Option(False, "--split-masks", help="Label files are paper-style split masks."),
    engine: str = typer.Option("auto", "--engine", metavar="auto|classical|deep|hybrid"),
    segmenter: str = typer.Option("auto", "--segmenter", metavar="auto|network|classical"),
    json_out: Optional[Path] = typer.Option(None, "--json", metavar="OUT.json", help="Write the results as JSON."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", metavar="OUT.csv", help="Write the trajectory as CSV."),
    plot: Optional[Path] = typer.Option(None, "--plot", metavar="OUT.png", help="Plot the trajectory (PNG)."),
    report: Optional[Path] = typer.Option(None, "--report", metavar="OUT.html", help="Write an HTML report."),
    edge_ramp: float = _EDGE_RAMP_OPTION,
    gain_free: bool = _GAIN_FREE_OPTION,
) -> None:
    """Follow one joint across visits: every pair measured, one consistent trajectory fitted."""
    for path in (json_out, csv_out, plot, report):
        if path is not None:
            _output_file(path)
    date_list = [d.strip() for d in dates.split(",")] if dates else None
    from .pipeline import series

    s = series(visits, labels=labels or None, dates=date_list, split_masks=split_masks, spacing_mm=spacing,
               engine=engine, segmenter=segmenter, options=_registration_options(edge_ramp, gain_free))
    d = s.to_dict()
    console = _stdout()
    unit = "mm" if s.spacing_mm is not None else "px"
    for v in d["visits"]:
        value = v["narrowing_mm"] if unit == "mm" else v["narrowing_px"]
        se = v["se_mm"] if unit == "mm" else v["se_px"]
        console.print(f"visit {v['visit']} {v['date'] or ''} {Path(v['source']).name}: "
                      f"{_pm(value, se, unit)}" + (f"  FLAG: {v['flag']}" if v["flag"] else ""),
                      markup=False, soft_wrap=True)
    console.print(f"path-consistency RMS {d['trajectory']['path_rms_px'] or float('nan'):.3f} px over "
                  f"{len(d['trajectory']['path_residuals_px'])} triples; {len(s.errors)} pair(s) failed",
                  markup=False)
    if json_out is not None:
        _write_text(json_out, json.dumps(d, indent=2) + "\n")
    if csv_out is not None:
        try:
            with csv_out.open("w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(SERIES_CSV_COLUMNS))
                writer.writeheader()
                for v in d["visits"]:
                    writer.writerow({k: ("" if v.get(k) is None else v.get(k)) for k in SERIES_CSV_COLUMNS})
        except OSError as err:
            raise JsnqInputError(csv_out, f"cannot write: {err.strerror or err}") from None
    if plot is not None:
        from .report.html import trajectory_figure

        trajectory_figure(s, plot)
    if report is not None:
        from .report.html import write_report

        write_report(report, series=[(Path(s.sources[0]).parent.name or "series", s)])
    for path in (json_out, csv_out, plot, report):
        if path is not None:
            _stderr().print(f"wrote {path}", markup=False)


# -- report -----------------------------------------------------------------------------------


@app.command("report")
@_reports_input_errors
def report_cmd(
    results: Path = typer.Argument(..., metavar="RESULTS.json",
                                   help="JSON from `measure --json`, `measure-batch --json-out` or `series --json`."),
    out: Path = typer.Option(..., "-o", "--out", metavar="OUT.html", help="The report to write."),
) -> None:
    """Write a self-contained HTML report from saved results (the pairs are measured again from
    their files, with the recorded settings, and checked against the saved numbers)."""
    _output_file(out)
    from .report.html import write_report
    from .report.rebuild import rebuild

    measurements, series_list, notes = rebuild(results)
    write_report(out, measurements, series_list, title=f"jsnq report: {results.name}")
    for note in notes:
        _stderr().print(f"warning: {note}", markup=False, soft_wrap=True)
    _stdout().print(f"wrote {out}", markup=False)


# -- demo -----------------------------------------------------------------------------------


@app.command("demo")
@_reports_input_errors
def demo_cmd(
    out: Path = typer.Option(Path("demo-output"), "--out", metavar="DIR",
                             help="Folder for the demo files (created if missing, not its parents)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic joint."),
) -> None:
    """Measure a synthetic joint pair with a known narrowing and write a QA figure."""
    _output_dir(out)

    from .io import Image, save_image
    from .pipeline import measure
    from .phantom import make_pair
    from .report import qa_figure

    pair = make_pair(seed, narrowing_px=(0.4, 0.6), noise=0.01)
    save_image(out / "baseline.png", pair.baseline)
    save_image(out / "followup.png", pair.followup)
    m = measure(Image(pair.baseline, None, "synthetic baseline"), Image(pair.followup, None, "synthetic follow-up"),
                spacing_mm=DEMO_SPACING_MM)
    truth = pair.narrowing_px
    lines = [
        f"Synthetic joint pair (seed {seed}, noise 1 %): {out / 'baseline.png'}, {out / 'followup.png'} (16-bit PNG)",
        f"Assumed pixel spacing {DEMO_SPACING_MM} mm/px (the phantom has no physical size).",
        f"  measured narrowing: {_pm(m.narrowing_px, m.narrowing_se_px, 'px')} = "
        f"{_pm(m.narrowing_mm, m.narrowing_se_mm, 'mm')}",
        f"  true narrowing:     {truth:+.3f} px         = {truth * DEMO_SPACING_MM:+.3f} mm",
        f"  error: {m.narrowing_px - truth:+.3f} px; reliable: {'yes' if m.reliable else 'no'}",
    ]
    typer.echo("\n".join(lines))
    figure = qa_figure(m, out / "qa.png",
                       title=f"jsnq demo: synthetic joint (seed {seed}), true narrowing {truth:+.3f} px "
                             f"= {truth * DEMO_SPACING_MM:+.3f} mm at an assumed {DEMO_SPACING_MM} mm/px")
    typer.echo(f"QA figure: {figure}")
    typer.echo(f"Try: jsnq measure {out / 'baseline.png'} {out / 'followup.png'} --spacing {DEMO_SPACING_MM}")


# -- segment ---------------------------------------------------------------------------------


@app.command("segment")
@_reports_input_errors
def segment_cmd(
    image: Path = typer.Argument(..., metavar="IMAGE", help="Joint crop, finger up (PNG, JPEG, TIFF, DICOM, ...)."),
    labels_out: Optional[Path] = typer.Option(
        None, "-o", "--output", metavar="LABELS.png",
        help="Write the labels measure uses: 1 = upper side, 2 = lower side, 0 = inside both bones."),
    overlay: Optional[Path] = typer.Option(None, "--overlay", metavar="OUT.png",
                                           help="Write the crop with the bone masks and the midline drawn on it."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout (nothing else)."),
    spacing: Optional[float] = typer.Option(
        None, "--spacing", metavar="MM", help="Pixel spacing in mm/px for the JSW in mm (overrides the file's)."),
) -> None:
    """Segment the two bones of a joint crop with the shipped UNet++; report the joint space width."""
    for path in (labels_out, overlay):
        if path is not None:
            _output_file(path)

    from .io import load_image, save_labels
    from .segment.network import segment

    img = load_image(image, spacing_mm=spacing)
    result = segment(img)
    if labels_out is not None:
        save_labels(labels_out, result.labels)
    if overlay is not None:
        from PIL import Image as PILImage

        from .report import segmentation_overlay

        rgb = segmentation_overlay(img.array, result.upper_mask, result.lower_mask, result.line)
        try:
            PILImage.fromarray(rgb).save(overlay, format="PNG")
        except OSError as err:
            raise JsnqInputError(overlay, f"cannot write: {err.strerror or err}") from None
    if as_json:
        data = {"jsnq_version": __version__, "image": img.source, "spacing_mm": img.spacing_mm,
                "shape": list(img.shape), **result.to_dict(),
                "labels": None if labels_out is None else str(labels_out),
                "overlay": None if overlay is None else str(overlay)}
        typer.echo(json.dumps(data, indent=2))
        return
    console = _stdout()
    console.print(f"[bold]Bones of[/] {img.source}", soft_wrap=True, markup=True, highlight=False)
    d = result.to_dict()
    console.print(f"  upper bone: {d['upper_area_px']} px, lower bone: {d['lower_area_px']} px, "
                  f"overlap: {d['overlap_px']} px", markup=False)
    if result.jsw is None:
        console.print("  JSW: not measurable (the bones share no column)", markup=False)
    else:
        console.print(f"  JSW: {_jsw_text(result.jsw)}", markup=False, soft_wrap=True)
        if result.jsw.mean_mm is None:
            console.print("  pixel spacing unknown: pixels only (give --spacing MM for millimetres)", markup=False)
    for path, what in ((labels_out, "labels"), (overlay, "overlay")):
        if path is not None:
            _stderr().print(f"wrote {what}: {path}", markup=False)


# -- train ------------------------------------------------------------------------------------

train_app = typer.Typer(name="train", no_args_is_help=True, help="Train jsnq's networks.")
app.add_typer(train_app, name="train")


# Options shared by the training commands.
_DATA_OPTION = typer.Option(..., "--data", metavar="DIR",
                            help="Folder with manifest.csv (image, upper_mask, lower_mask[, joint_id]).")
_CKPT_OPTION = typer.Option(..., "--out", metavar="CKPT", help="Checkpoint written after every epoch.")
_VAL_OPTION = typer.Option(0.15, "--val-fraction", help="Fraction of joints held out.")
_DEVICE_OPTION = typer.Option("cpu", "--device", metavar="cpu|cuda")
_THREADS_OPTION = typer.Option(None, "--threads", min=1, help="CPU threads for torch.")
_RESUME_OPTION = typer.Option(None, "--resume", metavar="CKPT", help="Continue an interrupted run from its checkpoint.")


def _training_progress(describe: Callable[[Any], str]) -> tuple[Any, dict[str, Any]]:
    """A rich progress bar on stderr and the on_start/on_batch/on_epoch hooks that drive it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    err = _stderr()
    progress = Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=err)
    state: dict[str, Any] = {}

    def on_start(first: int, total: int, per_epoch: int) -> None:
        state["task"] = progress.add_task("training", total=(total - first) * per_epoch, loss=float("nan"))
        err.print(f"epochs {first + 1}-{total}, {per_epoch} batches each", markup=False)

    def on_batch(epoch: int, batch: int, loss: float) -> None:
        progress.update(state["task"], advance=1, loss=loss, description=f"epoch {epoch + 1}")

    def on_epoch(rec: Any) -> None:
        progress.console.print(describe(rec), markup=False)

    return progress, {"on_start": on_start, "on_batch": on_batch, "on_epoch": on_epoch}


@train_app.command("segment")
@_reports_input_errors
def train_segment_cmd(
    data: Path = _DATA_OPTION,
    out: Path = _CKPT_OPTION,
    epochs: int = typer.Option(30, "--epochs", min=1, help="Epochs (with --resume: the run's total)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    size: int = typer.Option(128, "--size", metavar="S", help="Network input side in px (multiple of 8)."),
    target_size: int = typer.Option(256, "--target-size", metavar="T",
                                    help="Side the masks are compared at (the crop size for 256-px crops)."),
    lr: float = typer.Option(3e-3, "--lr", help="Peak learning rate (AdamW, warm-up then cosine)."),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation, shuffling and augmentation."),
    val_fraction: float = _VAL_OPTION,
    device: str = _DEVICE_OPTION,
    threads: Optional[int] = _THREADS_OPTION,
    resume: Optional[Path] = _RESUME_OPTION,
) -> None:
    """Train the bone segmenter (UNet++) on a manifest folder; split by joint, seeded, resumable."""
    _output_file(out)
    import time

    import torch
    from .segment.network import NetworkConfig
    from .training import TrainConfig, train_segmenter

    if threads is not None:
        torch.set_num_threads(threads)
    config = TrainConfig(data=str(data), epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                         val_fraction=val_fraction, target_size=target_size, device=device,
                         network=NetworkConfig(input_size=size))
    progress, hooks = _training_progress(lambda rec: (
        f"epoch {rec.epoch}: loss {rec.loss:.4f}, validation DSC upper {rec.val_dsc_upper:.4f} "
        f"lower {rec.val_dsc_lower:.4f} ({rec.seconds:.0f} s)"))
    t0 = time.perf_counter()
    with progress:
        result = train_segmenter(config, out, resume=resume, **hooks)
    console = _stdout()
    console.print(f"trained on {result.n_train} crops, validated on {result.n_val} "
                  f"({len(result.excluded)} excluded) in {time.perf_counter() - t0:.0f} s", markup=False)
    for path, reason in result.excluded:
        console.print(f"  excluded {path}: {reason}", markup=False, soft_wrap=True)
    if result.history:
        last = result.history[-1]
        console.print(f"final validation DSC: upper {last.val_dsc_upper:.4f}, lower {last.val_dsc_lower:.4f}",
                      markup=False)
    console.print(f"checkpoint: {out}", markup=False)


@train_app.command("register")
@_reports_input_errors
def train_register_cmd(
    data: Path = _DATA_OPTION,
    out: Path = _CKPT_OPTION,
    epochs: int = typer.Option(20, "--epochs", min=1, help="Epochs (with --resume: the run's total)."),
    steps: int = typer.Option(200, "--steps", min=1, help="Optimisation steps per epoch."),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    real_fraction: float = typer.Option(0.5, "--real-fraction",
                                        help="Share of each batch that are real visit pairs (unsupervised)."),
    supervised_weight: float = typer.Option(1.0, "--supervised-weight",
                                            help="Weight of the supervised term on synthetic pairs (0: unsupervised only)."),
    size: int = typer.Option(128, "--size", metavar="S", help="Network input side in px (multiple of 32)."),
    crop_px: int = typer.Option(256, "--crop-px", help="Side of the crops in the data, px."),
    lr: float = typer.Option(2e-3, "--lr", help="Peak learning rate (AdamW, warm-up then cosine)."),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation and of every random draw."),
    val_fraction: float = _VAL_OPTION,
    device: str = _DEVICE_OPTION,
    threads: Optional[int] = _THREADS_OPTION,
    resume: Optional[Path] = _RESUME_OPTION,
    init: Optional[Path] = typer.Option(
        None, "--init", metavar="CKPT", help="Start from this checkpoint's weights (fine-tune; new optimizer)."),
    warmup: float = typer.Option(0.03, "--warmup", help="Share of the steps spent warming the learning rate up."),
    relative_rotation: float = typer.Option(
        12.0, "--relative-rotation", metavar="DEG", help="Synthetic rotation of one bone relative to the other, +-deg."),
    narrowing: float = typer.Option(4.0, "--narrowing", metavar="PX", help="Synthetic narrowing, +-px."),
) -> None:
    """Train the registration network on real visit pairs and synthetic per-bone motions; split by joint."""
    _output_file(out)
    import time

    import torch

    from .register.network import RegNetConfig
    from .training.register import MotionRanges, RegTrainConfig, train_registration

    if threads is not None:
        torch.set_num_threads(threads)
    config = RegTrainConfig(data=str(data), epochs=epochs, steps_per_epoch=steps, batch_size=batch_size,
                            real_fraction=real_fraction, supervised_weight=supervised_weight, lr=lr, seed=seed,
                            val_fraction=val_fraction, crop_px=crop_px, device=device, warmup_fraction=warmup,
                            motion=MotionRanges(relative_rotation_deg=relative_rotation, narrowing_px=narrowing),
                            network=RegNetConfig(input_size=size))
    progress, hooks = _training_progress(lambda rec: (
        f"epoch {rec.epoch}: loss {rec.loss:.4f}, validation narrowing RMS {rec.val_rms_pass1_px:.3f} px "
        f"(pass 1) {rec.val_rms_px:.3f} px (final), real-pair NCC {rec.val_real_ncc:.4f} ({rec.seconds:.0f} s)"))
    t0 = time.perf_counter()
    with progress:
        result = train_registration(config, out, resume=resume, init=init, **hooks)
    console = _stdout()
    console.print(f"trained on {result.n_train_crops} crops ({result.n_train_pairs} visit pairs), validated on "
                  f"{result.n_val_crops} in {time.perf_counter() - t0:.0f} s", markup=False)
    console.print(f"checkpoint: {out}", markup=False)


@train_app.command("export")
@_reports_input_errors
def train_export_cmd(
    checkpoint: Path = typer.Argument(..., metavar="CKPT", help="Training checkpoint."),
    out: Path = typer.Argument(..., metavar="WEIGHTS.pt", help="Slim weights file (no optimizer state)."),
    note: Optional[str] = typer.Option(None, "--note", help="Provenance note stored in the file (e.g. the command)."),
    inference_passes: Optional[int] = typer.Option(
        None, "--inference-passes", min=0,
        help="Registration network: cascade passes at inference (later ones reuse the fine network; 0 = as trained)."),
) -> None:
    """Write a slim copy of a checkpoint for shipping (e.g. into src/jsnq/weights/)."""
    _output_file(out)
    from .training import export_weights

    export_weights(checkpoint, out, extra={"note": note} if note else None, inference_passes=inference_passes)
    _stdout().print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)", markup=False)
