"""Measure saved results again from their files, for ``jsnq report RESULTS.json``.

A results file records what was measured (``inputs``: the label files, the spacing given) and
how (``config``: the :class:`~jsnq.config.MeasureConfig`). Rebuilding re-runs exactly that
measurement, which is deterministic, and checks every number against the saved one, so the
report shows exactly what was saved, or says where it differs (after an upgrade of jsnq or of
the weights, or a changed input file).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..config import MeasureConfig
from ..errors import JsnqInputError, one_line

__all__ = ["rebuild", "Rebuilt", "AGREEMENT_PX"]

#: Saved and recomputed narrowings further apart than this are reported (float round-off
#: between runs is ~1e-12 px; anything larger means the inputs or jsnq changed).
AGREEMENT_PX = 1e-6


@dataclass
class Rebuilt:
    """What a results file measures again to.

    Attributes:
        measurements: ``(title, Measurement)`` per pair.
        series: ``(title, SeriesResult)`` per series.
        mismatches: one line per number that came out differently from the saved one.
        notes: one line per saved row that was not measured in the first place.
    """

    measurements: list = field(default_factory=list)
    series: list = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _path(value: Any, folder: Path, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise JsnqInputError(what, f"expected a file name, got {value!r}")
    if value == "<array>":
        raise JsnqInputError(what, "was measured from an in-memory array; only results of files can be rebuilt")
    p = Path(value)
    if not p.is_absolute() and not p.exists() and (folder / p).exists():
        p = folder / p
    return os.fspath(p)


def _config(saved: Mapping[str, Any], what: str) -> MeasureConfig:
    recorded = saved.get("config")
    if recorded is None:
        raise JsnqInputError(what, "no measurement configuration recorded (made by an older jsnq?); measure it again")
    try:
        return MeasureConfig.from_dict(recorded)
    except ValueError as err:
        raise JsnqInputError(what, f"bad configuration: {one_line(err)}") from None


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise JsnqInputError(what, f"expected a JSON object, got {type(value).__name__}")
    return value


def _remeasure(saved: Mapping[str, Any], folder: Path, what: str):
    from ..pipeline import measure

    saved = _mapping(saved, what)
    inputs = _mapping(saved.get("inputs") or {}, f"{what} inputs")
    return measure(_path(saved.get("baseline"), folder, f"{what} baseline"),
                   _path(saved.get("followup"), folder, f"{what} follow-up"),
                   baseline_labels=_path(inputs.get("baseline_labels"), folder, f"{what} baseline labels"),
                   followup_labels=_path(inputs.get("followup_labels"), folder, f"{what} follow-up labels"),
                   spacing_mm=inputs.get("spacing_mm"), config=_config(saved, what))


def _check(out: list[str], name: str, saved: Any, now: float) -> None:
    if saved is None and not math.isfinite(now):
        return  # not measured then, not measured now
    if not isinstance(saved, (int, float)) or not math.isfinite(now) or abs(saved - now) > AGREEMENT_PX:
        out.append(f"{name}: recomputed narrowing {now:+.6f} px differs from the saved {saved} px")


def _rebuild_series(data: Mapping[str, Any], folder: Path, what: str, result: Rebuilt) -> None:
    from ..longitudinal import series

    inp = _mapping(data.get("inputs") or {}, f"{what} inputs")
    visits = inp.get("visits")
    if not isinstance(visits, list) or not visits:
        raise JsnqInputError(what, "series results without their inputs (made by an older jsnq?)")
    labels = inp.get("labels") or []
    if not isinstance(labels, list):
        raise JsnqInputError(what, "inputs.labels must be a list")
    points = inp.get("points")
    s = series([_path(v, folder, f"{what} visit") for v in visits],
               labels=None if not any(labels) else [_path(x, folder, f"{what} labels") for x in labels],
               dates=inp.get("dates"), spacing_mm=inp.get("spacing_mm"),
               points=None if points is None else [None if p is None else tuple(p) for p in points],
               config=_config(data, what))
    saved_visits = data.get("visits") or []
    if not isinstance(saved_visits, list):
        raise JsnqInputError(what, "visits must be a list")
    for k, v in enumerate(saved_visits[:len(s.sources)]):
        _check(result.mismatches, f"visit {k}", _mapping(v, f"{what} visit {k}").get("narrowing_px"),
               float(s.trajectory.narrowing_px[k]))
    result.series.append((Path(visits[0]).parent.name or "series", s))


def rebuild(results: str | os.PathLike) -> Rebuilt:
    """Measure a results file (of ``measure --json``, ``measure-batch --json-out`` or ``series --json``) again.

    Raises:
        JsnqInputError: a missing or unreadable file, not jsnq results, or results that cannot be
            measured again (one line naming the file and the problem).
    """
    path = Path(results)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JsnqInputError(path, "results file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise JsnqInputError(path, f"cannot read results JSON: {one_line(err)[:200]}") from None
    folder, what = path.parent, os.fspath(path)
    result = Rebuilt()
    try:
        if isinstance(data, dict) and data.get("kind") == "series":
            _rebuild_series(data, folder, what, result)
        elif isinstance(data, dict) and "narrowing_px" in data:
            m = _remeasure(data, folder, what)
            _check(result.mismatches, Path(m.baseline_source).name, data.get("narrowing_px"), m.narrowing_px)
            result.measurements.append((f"{Path(m.baseline_source).name} → {Path(m.followup_source).name}", m))
        elif isinstance(data, list) and data and all(isinstance(r, dict) and "result" in r for r in data):
            for r in data:
                row = f"row {r.get('id')}"
                if r.get("result") is None:
                    result.notes.append(f"{row}: not measured ({r.get('error')})")
                    continue
                try:
                    m = _remeasure(r["result"], folder, f"{what} {row}")
                except ValueError as err:  # one bad row is reported; the others are kept
                    result.notes.append(f"{row}: {one_line(err)}")
                    continue
                _check(result.mismatches, row, _mapping(r["result"], row).get("narrowing_px"), m.narrowing_px)
                result.measurements.append((str(r.get("id")), m))
        else:
            raise JsnqInputError(path, "not jsnq results (expected the JSON of measure, measure-batch or series)")
    except (KeyError, TypeError, AttributeError, IndexError) as err:
        raise JsnqInputError(path, f"malformed results ({type(err).__name__}: {one_line(err)})") from None
    return result
