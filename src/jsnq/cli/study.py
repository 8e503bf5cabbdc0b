"""``jsnq study``: a cohort of patients and visits on Dask, one tidy table out."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import options as opt
from .common import EXIT_PARTIAL, display, output_dir, plural, reports_input_errors, signed, stderr, stdout


@reports_input_errors
def study_cmd(
    manifest: Path = typer.Argument(..., metavar="STUDY.csv",
                                    help="One row per image: patient, date, image; optional side, joint (the "
                                         "images are crops of that joint), spacing_mm, labels. Relative paths "
                                         "resolve against the CSV's folder."),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="The study's folder (created; a rerun resumes it)."),
    workers: Optional[int] = typer.Option(None, "--workers", metavar="N", min=0,
                                          help="Worker processes of the local Dask cluster (default: one per core; "
                                               "0: one unit after another in this process, without Dask)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", metavar="ADDRESS",
                                            help="Run on an existing Dask cluster (e.g. tcp://host:8786); its "
                                                 "workers must see the images at the manifest's paths."),
    spacing: Optional[float] = typer.Option(None, "--spacing", metavar="MM",
                                            help="Pixel spacing in mm/px for rows without spacing_mm."),
    report: bool = typer.Option(False, "--report", help="Write DIR/report.html and a report per unit."),
    joints: Optional[str] = typer.Option(None, "--joints", metavar="MCP2,MCP3,...",
                                         help="Whole-hand studies: measure only these joints of each hand "
                                              "(default: all 14)."),
    split_masks: bool = opt.SPLIT_MASKS,
    engine: str = opt.ENGINE,
    segmenter: str = opt.SEGMENTER,
    edge_ramp: float = opt.EDGE_RAMP,
    gain_free: bool = opt.GAIN_FREE,
) -> None:
    """Measure a study: every (patient, side, joint) series on Dask, resumable, one tidy table out.

    Without a joint column each image is a whole-hand radiograph: one task per (patient, side)
    locates the finger joints, cuts matching crops at every visit and measures each joint's series.

    Writes DIR/joints.csv and .parquet (a row per patient, side, joint and visit), pairs.parquet,
    units.csv, summary.csv (per joint: progression rate with its 95 % CI, smallest detectable
    change, share flagged) and study.json. A rerun skips the units already measured with the same
    image bytes and settings. Exit code 0 when every joint series was measured, 1 when some could
    not be (their rows are written empty, with the error as the reason). Refused with exit code 2:
    a bad manifest, a duplicate (patient, side, date), two visits with the same image bytes, or a
    unit whose images mix a pixel spacing with none (unless spacing_mm / --spacing decides).
    """
    if workers is not None and scheduler is not None:
        raise ValueError("give --workers (a local cluster) or --scheduler (an existing one), not both")
    config = opt.measure_config(engine=engine, segmenter=segmenter, split_masks=split_masks, edge_ramp=edge_ramp,
                                gain_free=gain_free)
    only = [j.strip() for j in joints.split(",") if j.strip()] if joints else None
    output_dir(out, inputs=[manifest])
    from ..study import run_study
    from ..study.progress import rich_progress

    with rich_progress(stderr()) as progress:
        result = run_study(manifest, out, config=config, workers=workers, scheduler=scheduler, spacing_mm=spacing,
                           report=report, progress=progress, joints=only)
    console = stdout()
    for s in result.summary:
        console.print(summary_line(s), markup=False, soft_wrap=True)
    err = stderr()
    n_series = sum(x.n_units for x in result.summary)
    err.print(f"{plural(len(result.computed), 'unit')} measured, {len(result.skipped)} skipped (already done); "
              f"{len(result.not_measured)} of {plural(n_series, 'joint series', 'joint series')} could not be "
              f"measured; wrote {display(result.out_dir)}/joints.csv and the other tables", markup=False,
              soft_wrap=True)
    for f in result.not_measured:
        err.print(f"not measured: patient {display(f['patient'])} {f['side'] or ''} {f['joint']}: "
                  f"{display(f['error'])}".replace("  ", " "), markup=False, soft_wrap=True)
    if result.not_measured:
        raise typer.Exit(EXIT_PARTIAL)


def summary_line(s) -> str:
    """One joint's summary for the terminal: trusted patients, the rate with its CI (mm when known),
    the flagged and failed units; never ``nan``."""
    unit = "mm" if s.rate_mm_per_year == s.rate_mm_per_year else "px"
    rate = getattr(s, f"rate_{unit}_per_year")
    lo, hi = getattr(s, f"rate_ci_low_{unit}"), getattr(s, f"rate_ci_high_{unit}")
    digits = 4 if unit == "mm" else 3
    if rate == rate:
        text = f"{signed(rate, digits)} {unit}/year"
        text += (f" (95 % CI {signed(lo, digits)} to {signed(hi, digits)})" if lo == lo and hi == hi
                 else " (no CI: one patient)")
    else:
        text = "no trusted rate"
    parts = [f"{display(s.joint)}: {plural(s.n_patients, 'patient')} with a trusted rate, {text}" if s.n_patients
             else f"{display(s.joint)}: {text}"]
    if s.n_flagged:
        parts.append(f"{plural(s.n_flagged, 'flagged unit')} left out")
    if s.n_failed:
        parts.append(f"{s.n_failed} not measured")
    return "; ".join(parts)
