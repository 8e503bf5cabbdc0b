"""Options shared by several commands, defined once, and the one place that turns them into a
:class:`~jsnq.config.MeasureConfig`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:  # pragma: no cover
    from ..config import MeasureConfig

SPACING = typer.Option(None, "--spacing", metavar="MM", help="Pixel spacing in mm/px (overrides the files'); "
                                                              "else pixels only.")
ENGINE = typer.Option(
    "auto", "--engine", metavar="auto|classical|deep|hybrid",
    help="Registration engine: classical (search + Gauss-Newton), deep (the network alone, as in the paper), "
         "hybrid (network, then Gauss-Newton), auto (hybrid when the network's weights load).")
SEGMENTER = typer.Option(
    "auto", "--segmenter", metavar="auto|network|classical",
    help="Without labels: the shipped UNet++ (network), the joint-space line (classical), "
         "or the network when its weights load (auto).")
SPLIT_MASKS = typer.Option(False, "--split-masks",
                           help="Label files are paper-style binary split masks (non-zero = upper side).")
CHECK_LABELS = typer.Option(
    True, "--check-labels/--no-check-labels",
    help="With baseline labels but none for the follow-up, compare them with the segmentation network's "
         "(about 25 ms a pair) and flag labels that do not follow the joint space.")
EDGE_RAMP = typer.Option(
    0.0, "--edge-ramp", metavar="PX", min=0.0,
    help="Soft edge weights: pixels near the split line and the bones' overlap enter each bone's fit "
         "gradually over PX pixels (0 = off, the default). About halves how much the narrowing depends on "
         "where the labels split the joint, at some cost in precision; for labels you do not trust.")
GAIN_FREE = typer.Option(
    False, "--gain-free",
    help="Make the geometry independent of the fitted gain, which unequal noise in the two visits biases "
         "(see docs/benchmarks.md, 'Unequal noise'); slower.")
REPORT = typer.Option(None, "--report", metavar="OUT.html", help="Write a self-contained HTML report.")
ALLOW_MISMATCH = typer.Option(False, "--allow-mismatch",
                              help="Write the report even when a number measured again differs from the saved one.")


def measure_config(*, engine: str = "auto", segmenter: str = "auto", split_masks: bool = False,
                   check_labels: bool = True, edge_ramp: float = 0.0, gain_free: bool = False) -> "MeasureConfig":
    """The configuration the command-line settings ask for, validated (a ValueError lists the allowed values)."""
    from ..config import MeasureConfig
    from ..register.classical import RegistrationOptions

    return MeasureConfig(engine=engine, segmenter=segmenter, split_masks=split_masks, check_labels=check_labels,
                         registration=RegistrationOptions(edge_ramp_px=edge_ramp, gain_free=gain_free))


__all__ = ["SPACING", "ENGINE", "SEGMENTER", "SPLIT_MASKS", "CHECK_LABELS", "EDGE_RAMP", "GAIN_FREE", "REPORT",
           "ALLOW_MISMATCH", "measure_config"]
