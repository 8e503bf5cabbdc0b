"""Measure saved results again from their files, for ``jsnq report RESULTS.json``.

A results file records what was measured and how (``inputs``: label files, spacing,
segmenter; ``engine``). Rebuilding re-runs the same measurement, which is deterministic, and
checks every number against the saved one, so the report shows exactly what was saved (or
says where it differs, e.g. after an upgrade of jsnq or of the weights).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..errors import JsnqInputError

__all__ = ["rebuild", "AGREEMENT_PX"]

#: Saved and recomputed narrowings further apart than this are reported (float round-off
#: between runs is ~1e-12 px; anything larger means the inputs or jsnq changed).
AGREEMENT_PX = 1e-6


def _path(value: str | None, folder: Path, what: str) -> str | None:
    if value is None:
        return None
    if value == "<array>":
        raise JsnqInputError(what, "was measured from an in-memory array; only results of files can be rebuilt")
    p = Path(value)
    if not p.is_absolute() and not p.exists() and (folder / p).exists():
        p = folder / p
    return os.fspath(p)


def _remeasure(saved: dict[str, Any], folder: Path, name: str):
    from ..pipeline import measure

    inputs = saved.get("inputs") or {}
    m = measure(_path(saved["baseline"], folder, name), _path(saved["followup"], folder, name),
                baseline_labels=_path(inputs.get("baseline_labels"), folder, name),
                followup_labels=_path(inputs.get("followup_labels"), folder, name),
                split_masks=bool(inputs.get("split_masks", False)), spacing_mm=inputs.get("spacing_mm"),
                engine=saved.get("engine", "auto"), segmenter=inputs.get("segmenter", "auto"),
                check_labels=bool(inputs.get("check_labels", True)))
    return m


def _check(note: list[str], name: str, saved: float | None, now: float) -> None:
    if saved is None or not math.isfinite(now) or abs(saved - now) > AGREEMENT_PX:
        note.append(f"{name}: recomputed narrowing {now:+.4f} px differs from the saved {saved} px")


def rebuild(results: str | os.PathLike):
    """``(measurements, series, notes)`` from a results file.

    Raises:
        JsnqInputError: missing or unreadable file, or not jsnq results.
    """
    path = Path(results)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JsnqInputError(path, "results file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise JsnqInputError(path, f"cannot read results JSON: {' '.join(str(err).split())[:200]}") from None
    folder = path.parent
    notes: list[str] = []
    measurements, series_list = [], []
    if isinstance(data, dict) and data.get("kind") == "series":
        from ..pipeline import series

        inp = data.get("inputs") or {}
        if not inp.get("visits"):
            raise JsnqInputError(path, "series results without their inputs (made by an older jsnq?)")
        s = series([_path(v, folder, "visit") for v in inp["visits"]],
                   labels=None if not any(inp.get("labels") or []) else
                   [_path(x, folder, "labels") for x in inp["labels"]],
                   dates=inp.get("dates"), split_masks=bool(inp.get("split_masks")), spacing_mm=inp.get("spacing_mm"),
                   engine=inp.get("engine", "auto"), segmenter=inp.get("segmenter", "auto"))
        for k, v in enumerate(data.get("visits", [])):
            _check(notes, f"visit {k}", v.get("narrowing_px"), float(s.trajectory.narrowing_px[k]))
        series_list.append((Path(inp["visits"][0]).parent.name or "series", s))
    elif isinstance(data, dict) and "narrowing_px" in data:
        m = _remeasure(data, folder, str(path))
        _check(notes, Path(data["baseline"]).name, data.get("narrowing_px"), m.narrowing_px)
        measurements.append((f"{Path(m.baseline_source).name} → {Path(m.followup_source).name}", m))
    elif isinstance(data, list) and all(isinstance(r, dict) and "result" in r for r in data):
        for r in data:
            if r.get("result") is None:
                notes.append(f"row {r.get('id')}: not measured ({r.get('error')})")
                continue
            try:
                m = _remeasure(r["result"], folder, f"row {r.get('id')}")
            except ValueError as err:
                notes.append(f"row {r.get('id')}: {' '.join(str(err).split())}")
                continue
            _check(notes, f"row {r.get('id')}", r["result"].get("narrowing_px"), m.narrowing_px)
            measurements.append((str(r.get("id")), m))
    else:
        raise JsnqInputError(path, "not jsnq results (expected the JSON of measure, measure-batch or series)")
    return measurements, series_list, notes
