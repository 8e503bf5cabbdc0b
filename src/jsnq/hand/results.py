"""The whole-hand result types and their JSON: :class:`HandMeasurement` (two visits) and
:class:`HandSeries` (two or more, with dates). Their flat rows (the CSV and the CLI's table) are
:mod:`jsnq.hand.tables`'s."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..config import MeasureConfig
from ..results import json_safe
from ..version import __version__
from .anatomy import joint_type
from .checks import SplitCheck
from .crops import JointCrops
from .tables import hand_rows, series_rows
from .types import JOINT_NAMES, Hand

__all__ = ["HandResult", "HandMeasurement", "HandSeries", "hand_json", "write_outputs", "VALIDATION"]

#: The validation of each joint type, shown in the report's legend (the figures: docs/hand.md,
#: "Known narrowing rendered into real radiographs", from benchmarks/hand_known.py).
_KNOWN = "validated with known narrowing rendered into real RA and children's radiographs (docs/hand.md)"
VALIDATION = {"MCP": _KNOWN, "PIP": _KNOWN, "DIP": _KNOWN,
              "IP": _KNOWN + "; few joints (a thumb per hand)"}


@dataclass(frozen=True)
class HandResult:
    """What a hand's result holds, at two visits or more.

    Attributes:
        joints: joint name -> its :class:`~jsnq.results.Measurement` (two visits) or
            :class:`~jsnq.results.SeriesResult` (three or more), in the crop's pixels
            (``narrowing_mm`` uses the crop's spacing = image spacing / zoom).
        errors: joint name -> one-line reason, for every joint of :data:`JOINT_NAMES` not
            measured (not located, cut off at the image edge, no match, failed).
        hands: each visit's :class:`~jsnq.hand.types.Hand`.
        crops: joint name -> :class:`~jsnq.hand.crops.JointCrops` (boxes in image coordinates).
        segmentation: measured joint name -> its bone split's :class:`~jsnq.hand.checks.SplitCheck`
            (status, and the reason where the split is not trusted).
        validation: joint name -> its joint type's validation status (:data:`VALIDATION`).
        same_hand: the check that both visits show one hand (side, similarity of the layouts).
        sources: the radiographs' names; spacing_mm their pixel spacing (or None).
        config: the configuration measured with.
    """

    joints: Mapping[str, Any]
    errors: Mapping[str, str]
    hands: tuple[Hand, ...]
    crops: Mapping[str, JointCrops] = field(repr=False)
    segmentation: Mapping[str, SplitCheck]
    validation: Mapping[str, str]
    same_hand: Mapping[str, Any]
    sources: tuple[str, ...]
    spacing_mm: float | None
    config: MeasureConfig = field(repr=False)


@dataclass(frozen=True)
class HandMeasurement(HandResult):
    """Every finger joint of one hand between two visits (fields as :class:`HandResult`; ``joints``
    maps a joint name to its :class:`~jsnq.results.Measurement`)."""

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per joint (measured or not), in :data:`JOINT_NAMES` order, px in pixels of
        the radiograph: the table of the CLI and the CSV (:func:`jsnq.hand.tables.hand_rows`)."""
        return hand_rows(self)

    def to_dict(self) -> dict[str, Any]:
        return hand_json(self, "hand", pairs=lambda m: m.to_dict())


@dataclass(frozen=True)
class HandSeries(HandResult):
    """Every finger joint of one hand across three or more visits: one
    :class:`~jsnq.results.SeriesResult` per joint (fields as :class:`HandResult`, and the dates)."""

    dates: tuple[str, ...] | None = None

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per joint and visit (cumulative narrowing from the first visit, px of the
        radiograph), in :data:`JOINT_NAMES` order; a joint not measured has one row with its reason
        (:func:`jsnq.hand.tables.series_rows`)."""
        return series_rows(self)

    def to_dict(self) -> dict[str, Any]:
        d = hand_json(self, "hand-series", pairs=lambda s: s.to_dict())
        d["dates"] = None if self.dates is None else list(self.dates)
        return d


def hand_json(result: HandResult, kind: str, pairs: Callable[[Any], Any]) -> dict[str, Any]:
    """The JSON of a hand's result. Per joint: its table rows (radiograph px, as the CSV), crop
    boxes and, measured, its bone split's status and reason and the full result (``pairs`` of
    it) in crop px beside its ``crop_zoom``; the joint types' validation once."""
    joints = {}
    rows = result.rows()
    for name in JOINT_NAMES:
        entry: dict[str, Any] = {"type": joint_type(name), "rows": [r for r in rows if r["joint"] == name]}
        if name in result.crops:
            entry["crop_zoom"] = result.crops[name].boxes[0].zoom
            entry["boxes"] = [b.to_dict() for b in result.crops[name].boxes]
        if name in result.joints:
            check = result.segmentation[name]
            entry["segmentation"] = check.status.value
            entry["segmentation_reason"] = check.reason  # crop px, as the result
            entry["result_units"] = "pixels of the joint's crop (crop px = radiograph px x crop_zoom)"
            entry["result"] = pairs(result.joints[name])
        else:
            entry["error"] = result.errors.get(name)
        joints[name] = entry
    return json_safe({"jsnq_version": __version__, "kind": kind,
                      "sources": list(result.sources), "spacing_mm": result.spacing_mm, "side": result.hands[0].side,
                      "same_hand": dict(result.same_hand), "hands": [h.to_dict() for h in result.hands],
                      "units": "px: pixels of the radiograph; spacing_mm: the radiograph's",
                      "validation": dict(VALIDATION), "joints": joints, "config": result.config.to_dict()})


def write_outputs(result: HandResult, images: Sequence[np.ndarray], *, json_out: str | os.PathLike | None = None,
                  csv_out: str | os.PathLike | None = None, report: str | os.PathLike | None = None,
                  inputs: Sequence[Any] = ()) -> list[Path]:
    """Write a hand result's files: the JSON (``result.to_dict()``), the per-joint CSV (its
    rows) and the HTML report over ``images`` (the visits' arrays). Every path is checked
    first, then each file written atomically, never over one of ``inputs`` nor through a
    symlink. Returns the paths written, in that order."""
    from ..outputs import check_output, csv_text, json_ready, write_atomic

    inputs = [Path(os.fspath(p)) for p in inputs if p is not None]
    for path in (json_out, csv_out, report):
        if path is not None:
            check_output(path, inputs=inputs)
    written = []
    if json_out is not None:
        write_atomic(json_out, json.dumps(json_ready(result.to_dict()), indent=2, allow_nan=False) + "\n")
        written.append(Path(json_out))
    if csv_out is not None:
        rows = result.rows()
        write_atomic(csv_out, csv_text(rows, list(rows[0])))
        written.append(Path(csv_out))
    if report is not None:
        from ..report.hand import write_hand_report

        write_hand_report(report, images, result, inputs=inputs)
        written.append(Path(report))
    return written
