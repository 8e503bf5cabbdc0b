"""``jsnq demo``: a synthetic joint with a known narrowing, measured, with its QA figure."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import output_dir, pm, reports_input_errors

#: The paper's pixel spacing; the phantom itself has no physical size.
DEMO_SPACING_MM = 0.175


@reports_input_errors
def demo_cmd(
    out: Path = typer.Option(Path("demo-output"), "--out", metavar="DIR",
                             help="Folder for the demo files (created if missing, not its parents)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic joint."),
) -> None:
    """Measure a synthetic joint pair with a known narrowing and write a QA figure."""
    output_dir(out)

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
        f"  true narrowing:     {truth:+.3f} px         = {truth * DEMO_SPACING_MM:+.3f} mm",
        f"  error: {m.narrowing_px - truth:+.3f} px; reliable: {'yes' if m.reliable else 'no'}",
    ]
    typer.echo("\n".join(lines))
    figure = qa_figure(m, out / "qa.png",
                       title=f"jsnq demo: synthetic joint (seed {seed}), true narrowing {truth:+.3f} px "
                             f"= {truth * DEMO_SPACING_MM:+.3f} mm at an assumed {DEMO_SPACING_MM} mm/px")
    typer.echo(f"QA figure: {figure}")
    typer.echo(f"Try: jsnq measure {out / 'baseline.png'} {out / 'followup.png'} --spacing {DEMO_SPACING_MM}")
