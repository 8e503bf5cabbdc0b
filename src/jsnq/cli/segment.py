"""``jsnq segment``: the two bones of a joint crop, and its joint space width."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Optional

import typer

from .common import display, jsw_text, output_file, reports_input_errors, stderr, stdout


IMAGE = typer.Argument(..., metavar="IMAGE", help="Joint crop, finger up (PNG, JPEG, TIFF, DICOM, ...).")
LABELS_OUT = typer.Option(None, "-o", "--output", metavar="LABELS.png",
                          help="Write the labels measure uses: 1 = upper side, 2 = lower side, 0 = inside both bones.")
OVERLAY = typer.Option(None, "--overlay", metavar="OUT.png",
                       help="Write the crop with the bone masks and the midline drawn on it.")
AS_JSON = typer.Option(False, "--json", help="Print the result as JSON on stdout (nothing else).")
SPACING = typer.Option(None, "--spacing", metavar="MM", help="Pixel spacing in mm/px for the JSW in mm (overrides the file's).")


@reports_input_errors
def segment_cmd(image: Path = IMAGE, labels_out: Optional[Path] = LABELS_OUT, overlay: Optional[Path] = OVERLAY,
                as_json: bool = AS_JSON, spacing: Optional[float] = SPACING) -> None:
    """Segment the two bones of a joint crop with the shipped UNet++; report the joint space width."""
    for path in (labels_out, overlay):
        if path is not None:
            output_file(path, inputs=[image])

    from ..io import load_image, save_labels
    from ..quality import jsw_check
    from ..segment.network import segment
    from ..version import __version__

    img = load_image(image, spacing_mm=spacing, crop=True)
    result = segment(img)
    if labels_out is not None:
        save_labels(labels_out, result.labels, inputs=[image])
    if overlay is not None:
        _write_overlay(overlay, img, result, image)
    failure = jsw_check(result.jsw, "crop")
    if as_json:
        typer.echo(json.dumps({"jsnq_version": __version__, "image": display(img.source), "spacing_mm": img.spacing_mm,
                               "shape": list(img.shape), **result.to_dict(), "problem": failure,
                               "labels": None if labels_out is None else display(labels_out),
                               "overlay": None if overlay is None else display(overlay)}, indent=2))
        return
    _print_segmentation(img, result, failure)
    for path, what in ((labels_out, "labels"), (overlay, "overlay")):
        if path is not None:
            stderr().print(f"wrote {what}: {display(path)}", markup=False)


def _write_overlay(path: Path, img: Any, result: Any, image: Path) -> None:
    """The crop with the bone masks and the midline drawn on it, as a PNG (never over ``image``)."""
    from PIL import Image as PILImage

    from ..outputs import write_atomic
    from ..report import segmentation_overlay

    rgb = segmentation_overlay(img.array, result.upper_mask, result.lower_mask, result.line)
    buffer = io.BytesIO()
    PILImage.fromarray(rgb).save(buffer, format="PNG")
    write_atomic(path, buffer.getvalue(), inputs=[image])


def _print_segmentation(img: Any, result: Any, failure: str | None) -> None:
    console = stdout()
    console.print(f"Bones of {display(img.source)}", soft_wrap=True, markup=False, highlight=False)
    d = result.to_dict()
    console.print(f"  upper bone: {d['upper_area_px']} px, lower bone: {d['lower_area_px']} px, "
                  f"overlap: {d['overlap_px']} px", markup=False)
    if result.jsw is None:
        console.print("  JSW: not measurable (the bones share no column)", markup=False)
    else:
        console.print(f"  JSW: {jsw_text(result.jsw)}", markup=False, soft_wrap=True)
        if result.jsw.mean_mm is None:
            console.print("  pixel spacing unknown: pixels only (give --spacing MM for millimetres)", markup=False)
    if failure is not None:
        console.print(f"  FLAG: {failure}", markup=False, soft_wrap=True)
