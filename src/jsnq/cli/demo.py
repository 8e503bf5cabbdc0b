"""``jsnq demo``: the main job on synthetic data with a known answer.

By default a synthetic two-visit whole hand (:func:`jsnq.phantom.make_hand`, every joint
narrowed by a known amount) goes through ``jsnq hand`` itself -- the command line, not a shortcut
-- to the per-joint table, a CSV, a JSON and the HTML report; then the measured narrowing of each
joint is printed beside the true one. ``--crop`` measures one synthetic joint pair instead.
"""

from __future__ import annotations

import csv
from pathlib import Path

import typer

from .common import output_dir, plural, pm, reports_input_errors, signed, unsigned

#: The paper's pixel spacing; the joint phantom itself has no physical size.
DEMO_SPACING_MM = 0.175
#: The hand phantom's pixel spacing (its bones are drawn in mm).
HAND_SPACING_MM = 0.2


@reports_input_errors
def demo_cmd(
    out: Path = typer.Option(Path("demo-output"), "--out", metavar="DIR",
                             help="Folder for the demo files (created if missing, not its parents)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic hand (or joint)."),
    crop: bool = typer.Option(False, "--crop", help="Measure one synthetic joint pair instead of a whole hand."),
) -> None:
    """Measure a synthetic two-visit hand with known narrowings through `jsnq hand`; print measured
    against true per joint."""
    output_dir(out)
    if crop:
        _crop_demo(out, seed)
    else:
        _hand_demo(out, seed)


def _hand_demo(out: Path, seed: int) -> None:
    from typer.main import get_command

    from . import app

    visits, truth = _hand_demo_inputs(out, seed)
    args = ["hand", *map(str, visits), "--spacing", str(HAND_SPACING_MM), "--csv", str(out / "hand.csv"),
            "--json", str(out / "hand.json"), "--report", str(out / "report.html")]
    typer.echo("$ jsnq " + " ".join(args))
    code = get_command(app).main(args, prog_name="jsnq", standalone_mode=False)
    if code not in (None, 0, 1):  # 1: some joint not measured, shown in the table below
        raise typer.Exit(code)
    with open(out / "hand.csv", newline="", encoding="utf-8") as fh:
        _print_against_truth({r["joint"]: r for r in csv.DictReader(fh)}, truth)
    typer.echo(f"Report: {out / 'report.html'}")


def _hand_demo_inputs(out: Path, seed: int) -> tuple[list[Path], dict[str, float]]:
    """A synthetic two-visit hand written to ``out`` as 16-bit PNGs, with its true narrowings
    (mm) in ``truth.csv``: the visits' paths and joint -> true narrowing."""
    from ..io import save_image
    from ..outputs import csv_text, write_atomic
    from ..phantom import make_hand

    ph = make_hand(seed, spacing_mm=HAND_SPACING_MM)
    visits = [out / "baseline.png", out / "followup.png"]
    for path, image in zip(visits, ph.images):
        save_image(path, image)
    truth = {j: v[1] for j, v in ph.narrowing_mm.items()}
    write_atomic(out / "truth.csv", csv_text([{"joint": j, "true_narrowing_mm": v,
                                               "true_narrowing_px": v / HAND_SPACING_MM} for j, v in truth.items()],
                                             ["joint", "true_narrowing_mm", "true_narrowing_px"]))
    typer.echo(f"Synthetic hand (seed {seed}): {visits[0]}, {visits[1]} (16-bit PNG, {HAND_SPACING_MM} mm/px; "
               f"the true narrowings in {out / 'truth.csv'})")
    return visits, truth


def _print_against_truth(rows: dict[str, dict], truth: dict[str, float]) -> None:
    """Each joint's measured narrowing (the hand CSV's ``rows``) beside the truth, and the RMS
    error over the reliable ones."""
    typer.echo("\nMeasured against true narrowing (mm):")
    typer.echo(f"{'joint':<6}{'measured':>20}{'true':>9}{'error':>9}  reliable")
    errors = []
    for joint, true in truth.items():
        r = rows.get(joint, {})
        value = float(r["narrowing_mm"]) if r.get("narrowing_mm") else None
        se = float(r["narrowing_se_mm"]) if r.get("narrowing_se_mm") else None
        error = "" if value is None else signed(value - true)
        if value is not None and r.get("reliable") == "true":
            errors.append(value - true)
        typer.echo(f"{joint:<6}{pm(value, se, '').strip():>20}{signed(true):>9}{error:>9}  "
                   f"{'yes' if r.get('reliable') == 'true' else 'no'}")
    if errors:
        rms = (sum(e * e for e in errors) / len(errors)) ** 0.5
        typer.echo(f"RMS error over the {plural(len(errors), 'reliable joint')}: {unsigned(rms)} mm "
                   f"= {unsigned(rms / HAND_SPACING_MM)} px of the radiograph")


def _crop_demo(out: Path, seed: int) -> None:
    from ..io import Image, save_image
    from ..phantom import make_pair
    from ..pipeline import measure
    from ..report import qa_figure

    pair = make_pair(seed, narrowing_px=(0.4, 0.6), noise=0.01)
    save_image(out / "baseline.png", pair.baseline)
    save_image(out / "followup.png", pair.followup)
    m = measure(Image(pair.baseline, None, "synthetic baseline"), Image(pair.followup, None, "synthetic follow-up"),
                spacing_mm=DEMO_SPACING_MM)
    truth = pair.narrowing_px
    lines = [
        f"Synthetic joint pair (seed {seed}, noise 1 %): {out / 'baseline.png'}, {out / 'followup.png'} (16-bit PNG)",
        f"Assumed pixel spacing {DEMO_SPACING_MM} mm/px (the phantom has no physical size).",
        f"  measured narrowing: {pm(m.narrowing_px, m.narrowing_se_px, 'px')} = "
        f"{pm(m.narrowing_mm, m.narrowing_se_mm, 'mm')}",
        f"  true narrowing:     {signed(truth)} px         = {signed(truth * DEMO_SPACING_MM)} mm",
        f"  error: {signed(m.narrowing_px - truth)} px; reliable: {'yes' if m.reliable else 'no'}",
    ]
    typer.echo("\n".join(lines))
    figure = qa_figure(m, out / "qa.png",
                       title=f"jsnq demo: synthetic joint (seed {seed}), true narrowing {signed(truth)} px "
                             f"= {signed(truth * DEMO_SPACING_MM)} mm at an assumed {DEMO_SPACING_MM} mm/px")
    typer.echo(f"QA figure: {figure}")
    typer.echo(f"Try: jsnq measure {out / 'baseline.png'} {out / 'followup.png'} --spacing {DEMO_SPACING_MM}")
