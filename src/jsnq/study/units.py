"""Measuring one unit: what a worker runs. No scheduling here; the only I/O is reading the unit's
images (and, when asked, writing its HTML report).

A *runner* takes ``(unit, config, report_dir)`` and returns the unit's record: a JSON-ready dict
holding its rows for the tables, its trajectory (for the rates) and its status. Runners exist
per unit kind (:data:`RUNNERS`): ``"crop"`` is one joint's crops over the visits, measured by
:func:`jsnq.series`; ``"hand"`` is whole hands over the visits, measured by the whole-hand
pipeline (:mod:`jsnq.hand`, issue 13) once it exists. A runner never raises for a bad unit: a
failure is a record with ``status = "failed"`` and a one-line ``error``.

The rerun key (:func:`unit_key`) hashes the unit's identity, every input file's bytes (SHA-256),
the visits' dates and spacing, and the configuration's digest (which includes the jsnq version):
a changed image, label file, date, spacing or option measures the unit again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from ..config import MeasureConfig
from ..errors import one_line as errors_one_line
from ..version import __version__
from .manifest import Unit
from .tables import failed_rows, series_rows

__all__ = ["RECORD_FORMAT", "RUNNERS", "HAND_MISSING", "file_digest", "input_digests", "unit_key", "run_unit",
           "new_record", "fail_record", "series_entry", "hand_available", "hand_missing", "years_of",
           "failure_message", "measure_series"]

#: Version of the unit record's layout (a record of another layout is measured again).
RECORD_FORMAT = 2
#: The whole-hand capability a study without a ``joint`` column needs (issue 13).
HAND_MODULE = "jsnq.hand.measure"
HAND_MISSING = (f"whole-hand studies need {HAND_MODULE} (issue 13: find the joints, cut matching crops), which this "
                "jsnq does not have yet; give crops with a 'joint' column instead")
#: Whether :func:`_run_hand` measures hands (it does once issue 13's pipeline is merged and wired).
HAND_RUNNER_WIRED = False
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


def unit_key(unit: Unit, digests: list[dict[str, str | None]], config_digest: str) -> str:
    """The rerun key: equal keys, equal inputs and settings (see the module doc). Paths are not
    part of it: moving the study's folder does not measure it again."""
    payload = {"format": RECORD_FORMAT, "unit": unit.identity, "spacing_mm": unit.spacing_mm, "config": config_digest,
               "visits": [{"date": v.date, **d} for v, d in zip(unit.visits, digests)]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def years_of(dates: list[str]) -> list[float]:
    """Years (365.25 days) since the first date."""
    d = [dt.date.fromisoformat(x) for x in dates]
    return [(x - d[0]).days / 365.25 for x in d]


def hand_missing() -> str | None:
    """Why this jsnq cannot run whole-hand units (one line naming the missing capability), or None."""
    try:
        present = importlib.util.find_spec(HAND_MODULE) is not None
    except ModuleNotFoundError:
        present = False
    if not present:
        return HAND_MISSING
    if not HAND_RUNNER_WIRED:
        return (f"whole-hand studies need the study's hand runner, which is not wired to {HAND_MODULE} in this "
                "jsnq yet (issue 15); give crops with a 'joint' column instead")
    return None


def hand_available() -> bool:
    """Whether this jsnq can run whole-hand units (see :func:`hand_missing`)."""
    return hand_missing() is None


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


def series_entry(joint: str, result: Any, report: str | None = None) -> dict[str, Any]:
    """What the summary needs of one measured series: its trajectory's pair estimates and fit."""
    t = result.trajectory
    return {"joint": joint, "status": "ok", "error": None, "spacing_mm": result.spacing_mm, "report": report,
            "trajectory": {"pairs": [[p.i, p.j, p.value_px, p.se_px] for p in t.pairs],
                           "chi2_reduced": None if t.chi2_reduced != t.chi2_reduced else t.chi2_reduced,
                           "flagged_visits": {str(k): v for k, v in t.flagged_visits.items()}}}


def _run_crop(unit: Unit, config: MeasureConfig, report_dir: str | None) -> dict[str, Any]:
    """One joint's crops over the visits -> the series' rows and its entry."""
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


def _run_hand(unit: Unit, config: MeasureConfig, report_dir: str | None) -> dict[str, Any]:
    """Whole hands over the visits (issue 13): not wired yet, so it fails the unit with
    :func:`hand_missing`'s reason; :func:`jsnq.study.run_study` refuses such a study before it starts.

    The plan once :func:`jsnq.hand.measure.measure_hand_series` is merged: one call over the
    visits, then per joint :func:`~jsnq.study.tables.series_rows` with that joint's crop boxes
    and one :func:`series_entry` (a joint that could not be measured: a failed entry with its
    reason); the side from the located hand where the manifest gives none."""
    raise ValueError(hand_missing() or "the hand runner is not built")


#: unit kind -> runner ``(unit, config, report_dir) -> record fields``.
RUNNERS: dict[str, Callable[[Unit, MeasureConfig, str | None], dict[str, Any]]] = {
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


def new_record(unit: Unit, config: MeasureConfig, digests: list[dict[str, str | None]]) -> dict[str, Any]:
    """A record's identity fields (what every record has, ok or failed)."""
    return {
        "format": RECORD_FORMAT, "jsnq_version": __version__, "unit": unit.identity, "id": unit.id,
        "key": unit_key(unit, digests, config.digest()), "config_hash": config.digest(), "config": config.to_dict(),
        "visits": [{"date": v.date, "image": v.image_as_given, **{f"{k}_sha256": d[k] for k in d}}
                   for v, d in zip(unit.visits, digests)],
    }


def fail_record(record: dict[str, Any], unit: Unit, error: str) -> dict[str, Any]:
    """``record`` marked failed with the one-line ``error``, every value empty."""
    dates = [v.date for v in unit.visits]
    record.update(status="failed", error=error, pairs=[], report=None,
                  series=[{"joint": unit.joint, "status": "failed", "error": error, "spacing_mm": unit.spacing_mm,
                           "report": None, "trajectory": None}],
                  rows=failed_rows(unit.identity, unit.id, dates, [v.image_as_given for v in unit.visits],
                                   years_of(dates), error, record["config_hash"]))
    return record


def run_unit(unit: Unit, config: MeasureConfig, key: str, *, report_dir: str | None = None) -> dict[str, Any]:
    """Measure one unit -> its record (never raises for a bad unit; see the module doc).

    Args:
        unit: what to measure; its images are read here.
        config: how.
        key: the client's :func:`unit_key`; the record stores the key of the bytes actually read,
            so a file changed between the client's hash and this read is measured again next time.
        report_dir: write the unit's HTML report there (an existing folder), or None.
    """
    start = time.perf_counter()
    record = new_record(unit, config, input_digests(unit))
    record.update(requested_key=key, host=os.uname().nodename, pid=os.getpid())
    try:
        record.update(RUNNERS[unit.kind](unit, config, report_dir))
        record["status"], record["error"] = "ok", None
    except Exception as err:  # recorded; the study goes on
        fail_record(record, unit, failure_message(err))
    record["elapsed_s"] = time.perf_counter() - start
    record["max_rss_mb"] = _max_rss_mb()
    return record
