"""Measuring one unit: what a worker runs. No scheduling here; the only I/O is reading the unit's
images (and, when asked, writing its HTML report).

A *runner* takes ``(unit, config, report_dir)`` (and, for hands, the ``joints`` to measure) and
returns the unit's record: a JSON-ready dict holding its rows for the tables, its trajectories
(for the rates) and its status. Runners exist per unit kind (:data:`RUNNERS`): ``"crop"`` is one
joint's crops over the visits, measured by :func:`jsnq.series`; ``"hand"`` is one hand's
whole-hand radiographs over the visits, measured by
:func:`jsnq.hand.measure.measure_hand_series` (locate the joints, cut matching crops, one series
per joint): its record has a series entry and rows per joint (with the crop boxes), so the
tables and the summary treat each joint of a hand like a crop unit. A runner never raises for a
bad unit: a failure is a record with ``status = "failed"`` and a one-line ``error`` (for a hand,
on every requested joint); a hand whose joint alone could not be measured keeps its other
joints, that joint's entry failed with its reason.

The rerun key (:func:`unit_key`) hashes the unit's identity, every input file's bytes (SHA-256),
the visits' dates and spacing, and the configuration's digest (which includes the jsnq version):
a changed image, label file, date, spacing or option (or a hand study's joint subset) measures the
unit again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ..config import MeasureConfig
from ..errors import one_line as errors_one_line
from ..version import __version__
from .manifest import Unit
from .tables import failed_rows, series_rows

__all__ = ["RECORD_FORMAT", "RUNNERS", "hand_joints", "measure_hand_visits", "file_digest", "input_digests", "unit_key", "run_unit",
           "new_record", "fail_record", "series_entry", "years_of",
           "failure_message", "measure_series"]

#: Version of the unit record's layout (a record of another layout is measured again). 3: whole-hand
#: px figures in radiograph px, invalid JSWs empty.
RECORD_FORMAT = 3
_CHUNK = 1 << 20


def file_digest(path: str) -> str:
    """SHA-256 of a file's bytes, or ``"missing:<reason>"`` when it cannot be read (the unit
    then fails when it runs, and measures again once the file appears)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    except OSError as err:
        return f"missing:{err.strerror or type(err).__name__}"
    return h.hexdigest()


def input_digests(unit: Unit) -> list[dict[str, str | None]]:
    """Per visit, the digests of its image and labels."""
    return [{"image": file_digest(v.image), "labels": None if v.labels is None else file_digest(v.labels)}
            for v in unit.visits]


def unit_key(unit: Unit, digests: list[dict[str, str | None]], config_digest: str,
             joints: Sequence[str] | None = None) -> str:
    """The rerun key: equal keys, equal inputs and settings (see the module doc). Paths are not
    part of it: moving the study's folder does not measure it again. ``joints``: a hand
    study's joint subset (None: all; then the key is what it was before subsets existed)."""
    payload = {"format": RECORD_FORMAT, "unit": unit.identity, "spacing_mm": unit.spacing_mm, "config": config_digest,
               "visits": [{"date": v.date, **d} for v, d in zip(unit.visits, digests)]}
    if joints is not None:
        payload["joints"] = list(joints)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def years_of(dates: list[str]) -> list[float]:
    """Years (365.25 days) since the first date."""
    d = [dt.date.fromisoformat(x) for x in dates]
    return [(x - d[0]).days / 365.25 for x in d]


def failure_message(err: BaseException) -> str:
    """A failure's one-line message; for anything but bad input (a ValueError such as
    JsnqInputError) with its type's name, since that is a bug or a resource problem."""
    text = errors_one_line(err)
    return text if isinstance(err, ValueError) else f"{type(err).__name__}: {text}"


def measure_series(visits: list[str], *, labels: list[str | None] | None, dates: list[str],
                   spacing_mm: float | None, config: MeasureConfig) -> Any:
    """:func:`jsnq.series` of one unit's visits under ``config`` (what a crop unit measures)."""
    from ..longitudinal import series

    return series(visits, labels=labels, dates=dates, spacing_mm=spacing_mm, config=config)


def _write_unit_report(report_dir: str, unit: Unit, result: Any) -> str:
    """The unit's HTML report, written atomically -> its file name."""
    from ..report.html import write_report

    name = f"{unit.id}.html"
    final = Path(report_dir) / name
    tmp = final.with_name(f".{name}.{os.getpid()}.tmp")
    write_report(tmp, series=[(unit.label, result)], title=f"jsnq: {unit.label}")
    os.replace(tmp, final)
    return name


def series_entry(joint: str, result: Any, report: str | None = None, zoom: float | None = None,
                 image_spacing_mm: float | None = None) -> dict[str, Any]:
    """What the summary needs of one measured series: its trajectory's pair estimates and fit, in
    pixels of the study's image (a whole-hand joint's crop px divided by its ``zoom``) with that
    image's spacing (``image_spacing_mm``, the radiograph's, when ``zoom`` is given)."""
    t = result.trajectory
    inv = 1.0 if zoom is None else 1.0 / zoom
    return {"joint": joint, "status": "ok", "error": None, "report": report,
            "spacing_mm": result.spacing_mm if zoom is None else image_spacing_mm,
            "trajectory": {"pairs": [[p.i, p.j, p.value_px * inv, p.se_px * inv] for p in t.pairs],
                           "chi2_reduced": None if t.chi2_reduced != t.chi2_reduced else t.chi2_reduced,
                           "flagged_visits": {str(k): v for k, v in t.flagged_visits.items()}}}


def _run_crop(unit: Unit, config: MeasureConfig, report_dir: str | None,
              joints: Sequence[str] | None = None) -> dict[str, Any]:
    """One joint's crops over the visits -> the series' rows and its entry (``joints`` is a hand
    study's option; a crop unit is its one joint)."""
    dates = [v.date for v in unit.visits]
    images = [v.image_as_given for v in unit.visits]
    labels = [v.labels for v in unit.visits]
    result = measure_series([v.image for v in unit.visits], labels=labels if any(labels) else None, dates=dates,
                            spacing_mm=unit.spacing_mm, config=config)
    rows, pairs = series_rows(unit.identity, unit.id, dates, images, years_of(dates), result, config.digest())
    out: dict[str, Any] = {"rows": rows, "pairs": pairs, "report": None}
    if report_dir is not None:
        try:
            out["report"] = _write_unit_report(report_dir, unit, result)
        except Exception as err:  # the numbers stand without their report
            out["report_error"] = failure_message(err)
    out["series"] = [series_entry(unit.joint, result, out["report"])]
    return out


def hand_joints(joints: Sequence[str] | None = None) -> tuple[str, ...]:
    """The joints a hand unit measures: ``joints`` (validated, in :data:`~jsnq.hand.types.JOINT_NAMES`
    order) or all of them.

    Raises:
        ValueError: an unknown joint name (the message lists the known ones).
    """
    from ..hand.types import JOINT_NAMES

    if joints is None:
        return tuple(JOINT_NAMES)
    unknown = [j for j in joints if j not in JOINT_NAMES]
    if unknown or not joints:
        raise ValueError(f"unknown joint(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"known: {', '.join(JOINT_NAMES)}")
    return tuple(j for j in JOINT_NAMES if j in joints)


def measure_hand_visits(visits: list[str], *, dates: list[str], spacing_mm: float | None, config: MeasureConfig,
                        joints: Sequence[str] | None = None) -> Any:
    """:func:`jsnq.hand.measure.measure_hand_series` of one hand unit's visits under ``config``
    (what a hand unit measures; the joints located by :func:`jsnq.hand.locate.find_joints`)."""
    from ..hand.measure import measure_hand_series

    return measure_hand_series(visits, dates=dates, spacing_mm=spacing_mm, config=config,
                               joints=None if joints is None else list(joints))


def box_columns(box: Any) -> dict[str, Any]:
    """A :class:`~jsnq.hand.crops.CropBox` as the :data:`~jsnq.study.tables.BOX_COLUMNS` of a row."""
    return {"crop_centre_x": float(box.centre_xy[0]), "crop_centre_y": float(box.centre_xy[1]),
            "crop_angle_deg": float(box.angle_deg), "crop_zoom": float(box.zoom), "crop_rows": int(box.size[0]),
            "crop_cols": int(box.size[1]), "crop_method": box.method}


def _write_hand_report(report_dir: str, unit: Unit, result: Any) -> str:
    """The hand unit's HTML report (every joint, its crops and boxes), written atomically -> its file name."""
    from ..io import load_image
    from ..report.hand import write_hand_report

    name = f"{unit.id}.html"
    arrays = [load_image(v.image, spacing_mm=unit.spacing_mm).array for v in unit.visits]  # the overview's images
    write_hand_report(Path(report_dir) / name, arrays, result, title=f"jsnq: {unit.label}")
    return name


def _run_hand(unit: Unit, config: MeasureConfig, report_dir: str | None,
              joints: Sequence[str] | None = None) -> dict[str, Any]:
    """One hand's whole-hand radiographs over the visits -> per joint its rows (with the crop
    boxes) and its series entry.

    One :func:`measure_hand_visits` call (visits in date order, the unit's spacing); a joint it
    could not measure (not located, cut off, its series failed) gets a failed entry with its
    one-line reason and rows with every value empty. The side is the manifest's, else the
    located hand's; where both are known and differ, every row says so in its reasons. A
    failure of the whole hand (an unreadable image, no hand found, two different hands) raises,
    and :func:`run_unit` records it on every requested joint."""
    names = hand_joints(joints)
    dates = [v.date for v in unit.visits]
    images = [v.image_as_given for v in unit.visits]
    years = years_of(dates)
    result = measure_hand_visits([v.image for v in unit.visits], dates=dates, spacing_mm=unit.spacing_mm,
                                 config=config, joints=None if joints is None else names)
    located = result.hands[0].side
    side = unit.side or located
    note = (f"the manifest says side {unit.side} but the located hand is {located}"
            if unit.side and located and located != unit.side else None)
    out: dict[str, Any] = {"side": side, "located_side": located, "rows": [], "pairs": [], "report": None,
                           "series": [], "same_hand": result.same_hand}
    if report_dir is not None:
        try:
            out["report"] = _write_hand_report(report_dir, unit, result)
        except Exception as err:  # the numbers stand without their report
            out["report_error"] = failure_message(err)
    digest = config.digest()
    for name in names:
        identity = {**unit.identity, "side": side, "joint": name}
        s = result.joints.get(name)
        crops = result.crops.get(name)
        if s is None:
            error = result.errors.get(name) or "not measured"
            rows = failed_rows(identity, unit.id, dates, images, years, error, digest)
            for r in rows:
                r.update(reasons=f"joint failed: {error}", missing="every value: the joint was not measured")
            out["series"].append({"joint": name, "status": "failed", "error": error, "spacing_mm": None,
                                  "report": out["report"], "trajectory": None})
        else:
            boxes = [box_columns(b) for b in crops.boxes]
            zoom = float(crops.boxes[0].zoom)
            rows, pairs = series_rows(identity, unit.id, dates, images, years, s, digest, boxes=boxes, zoom=zoom,
                                      image_spacing_mm=result.spacing_mm, segmentation=result.segmentation.get(name))
            out["pairs"].extend(pairs)
            out["series"].append(series_entry(name, s, out["report"], zoom=zoom, image_spacing_mm=result.spacing_mm))
        if crops is not None and s is None:  # cut but its series failed: the boxes still say where
            for r, b in zip(rows, crops.boxes):
                r.update(box_columns(b))
        if note:
            for r in rows:
                r["reliable"] = False
                r["reasons"] = f"{r['reasons']}; {note}" if r["reasons"] else note
        out["rows"].extend(rows)
    return out


#: unit kind -> runner ``(unit, config, report_dir, joints=None) -> record fields``.
RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {
    "crop": _run_crop,
    "hand": _run_hand,
}


def _max_rss_mb() -> float | None:
    """This process's peak resident memory so far (MB), where the OS reports it."""
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 1024 ** 2 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux
    except (ImportError, OSError):  # pragma: no cover - Windows
        return None


def new_record(unit: Unit, config: MeasureConfig, digests: list[dict[str, str | None]],
               joints: Sequence[str] | None = None) -> dict[str, Any]:
    """A record's identity fields (what every record has, ok or failed); ``joints``: a hand
    study's joint subset (None: all)."""
    return {
        "format": RECORD_FORMAT, "jsnq_version": __version__, "unit": unit.identity, "id": unit.id,
        "key": unit_key(unit, digests, config.digest(), joints), "config_hash": config.digest(),
        "config": config.to_dict(), "joint_subset": None if joints is None else list(joints),
        "visits": [{"date": v.date, "image": v.image_as_given, **{f"{k}_sha256": d[k] for k in d}}
                   for v, d in zip(unit.visits, digests)],
    }


def fail_record(record: dict[str, Any], unit: Unit, error: str) -> dict[str, Any]:
    """``record`` marked failed with the one-line ``error``, every value empty: one series entry
    (and its rows) for a crop unit, one per requested joint for a hand unit."""
    dates = [v.date for v in unit.visits]
    names = [unit.joint] if unit.kind != "hand" else list(hand_joints(record.get("joint_subset")))
    series, rows = [], []
    for name in names:
        series.append({"joint": name, "status": "failed", "error": error, "spacing_mm": unit.spacing_mm,
                       "report": None, "trajectory": None})
        rows.extend(failed_rows({**unit.identity, "joint": name}, unit.id, dates,
                                [v.image_as_given for v in unit.visits], years_of(dates), error, record["config_hash"]))
    record.update(status="failed", error=error, pairs=[], report=None, series=series, rows=rows)
    return record


def run_unit(unit: Unit, config: MeasureConfig, key: str, *, report_dir: str | None = None,
             joints: Sequence[str] | None = None) -> dict[str, Any]:
    """Measure one unit -> its record (never raises for a bad unit; see the module doc).

    Args:
        unit: what to measure; its images are read here.
        config: how.
        key: the client's :func:`unit_key`; the record stores the key of the bytes actually read,
            so a file changed between the client's hash and this read is measured again next time.
        report_dir: write the unit's HTML report there (an existing folder), or None.
        joints: a hand unit's joints to measure (None: all 14); ignored for crop units.
    """
    start = time.perf_counter()
    record = new_record(unit, config, input_digests(unit), joints)
    record.update(requested_key=key, host=os.uname().nodename, pid=os.getpid())
    try:
        record.update(RUNNERS[unit.kind](unit, config, report_dir, joints=joints))
        record["status"], record["error"] = "ok", None
    except Exception as err:  # recorded; the study goes on
        fail_record(record, unit, failure_message(err))
    record["elapsed_s"] = time.perf_counter() - start
    record["max_rss_mb"] = _max_rss_mb()
    return record
