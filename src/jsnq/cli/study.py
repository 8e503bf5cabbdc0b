"""``jsnq study``: a cohort of patients and visits on Dask, one tidy table out."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import options as opt
from .common import EXIT_PARTIAL, display, output_dir, reports_input_errors, stderr, stdout


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
    image bytes and settings. Exit code 0 when every unit was measured, 1 when some failed (their
    rows are written empty, with the error as the reason).
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
        if s.rate_mm_per_year == s.rate_mm_per_year:
            rate = f"{s.rate_mm_per_year:+.4f} mm/year (95 % CI {s.rate_ci_low_mm:+.4f} to {s.rate_ci_high_mm:+.4f})"
        else:
            rate = f"{s.rate_px_per_year:+.3f} px/year (95 % CI {s.rate_ci_low_px:+.3f} to {s.rate_ci_high_px:+.3f})"
        console.print(f"{display(s.joint)}: {s.n_patients} patients, {rate}, {100 * s.share_flagged:.0f} % flagged"
                      + (f", {s.n_failed} failed" if s.n_failed else ""), markup=False, soft_wrap=True)
    err = stderr()
    err.print(f"{len(result.computed)} unit(s) measured, {len(result.skipped)} skipped (already done), "
              f"{len(result.failed)} failed; wrote {display(result.out_dir)}/joints.csv and the other tables",
              markup=False)
    if result.failed:
        raise typer.Exit(EXIT_PARTIAL)
