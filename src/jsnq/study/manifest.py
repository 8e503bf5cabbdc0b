"""STUDY.csv: read, validate, group into units.

A study manifest is a CSV with one row per image:

* ``patient`` (required): the patient's identifier (any text).
* ``side`` (optional): ``L`` or ``R`` (also ``left`` / ``right``, any case). Absent or empty:
  unknown (whole-hand studies detect it; a crop study groups the rows with an empty side).
* ``date`` (required): the visit's date, ``YYYY-MM-DD``.
* ``image`` (required): the radiograph; a relative path resolves against the CSV's folder.
* ``joint`` (optional): the study comes as crops: each image is a crop of this joint (e.g.
  ``MCP2``), finger up, the same size at every visit of that joint.
* ``spacing_mm`` (optional): pixel spacing in mm; empty: ``default_spacing_mm`` (``--spacing``),
  else the file's own (DICOM), else unknown (results in px only).
* ``labels`` (optional, crops only): the crop's label image (1 = upper bone side, 2 = lower).

Other columns are ignored. A *unit* is what one task measures: with ``joint``, one
(patient, side, joint) over its visits (a :func:`jsnq.series`); without, one (patient, side)
hand over its visits. Visits are ordered by date (ties keep the file's order).

Every problem is a :class:`~jsnq.errors.JsnqInputError` whose one-line message names the file
and line, e.g. ``study.csv line 7: bad date '2021-13-01' (use YYYY-MM-DD)``. Files are not
opened here: a missing or corrupt image is the unit's failure, recorded when it runs, so one
bad file does not stop a study.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import JsnqInputError, header_hint
from ..io import validate_spacing

__all__ = ["Visit", "Unit", "Manifest", "read_manifest", "REQUIRED_COLUMNS", "OPTIONAL_COLUMNS", "SIDES"]

REQUIRED_COLUMNS = ("patient", "date", "image")
OPTIONAL_COLUMNS = ("side", "joint", "spacing_mm", "labels")
#: Accepted spellings of a side (case-insensitive) -> the canonical letter.
SIDES = {"l": "L", "left": "L", "r": "R", "right": "R"}
#: Two spacings of one unit's visits differing by more than this fraction are refused.
SPACING_TOLERANCE = 0.01


@dataclass(frozen=True)
class Visit:
    """One image of a unit.

    Attributes:
        date: ISO date ``YYYY-MM-DD``.
        image: absolute path of the image.
        image_as_given: the path as written in the CSV (what tables show).
        labels: absolute path of the crop's label image, or None.
        line: the CSV line it came from (the header is line 1).
    """

    date: str
    image: str
    image_as_given: str
    labels: str | None
    line: int


@dataclass(frozen=True)
class Unit:
    """What one task measures.

    Attributes:
        kind: ``"crop"`` (one joint's crops over the visits) or ``"hand"`` (whole hands).
        patient, side: identity; ``side`` is ``"L"``, ``"R"`` or ``""`` (unknown).
        joint: the joint's name for crops, ``""`` for hands.
        visits: in time order.
        spacing_mm: the visits' common pixel spacing (mm), or None (the files' own, or unknown).
    """

    kind: str
    patient: str
    side: str
    joint: str
    visits: tuple[Visit, ...]
    spacing_mm: float | None

    @property
    def identity(self) -> dict[str, str]:
        return {"kind": self.kind, "patient": self.patient, "side": self.side, "joint": self.joint}

    @property
    def id(self) -> str:
        """A file-name-safe, unique name: readable parts plus a short hash of the identity
        (so ``a/b`` and ``a_b`` do not collide)."""
        parts = [p for p in (self.patient, self.side, self.joint) if p]
        slug = re.sub(r"[^A-Za-z0-9.-]+", "_", "_".join(parts)).strip("._")[:60] or "unit"
        h = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()[:8]
        return f"{slug}-{h}"

    @property
    def label(self) -> str:
        """For people: ``patient 7 L MCP2``."""
        return " ".join(p for p in (f"patient {self.patient}", self.side, self.joint) if p)


@dataclass(frozen=True)
class Manifest:
    """A validated study: its units, in the order of their first row."""

    path: str
    kind: str
    units: tuple[Unit, ...]

    @property
    def n_images(self) -> int:
        return sum(len(u.visits) for u in self.units)


def _where(path: Path, line: int) -> str:
    return f"{path} line {line}"


def _date(value: str, where: str) -> str:
    try:
        return dt.date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise JsnqInputError(where, f"bad date {value!r} (use YYYY-MM-DD)") from None


def _side(value: str, where: str) -> str:
    v = value.strip()
    if not v:
        return ""
    try:
        return SIDES[v.lower()]
    except KeyError:
        raise JsnqInputError(where, f"bad side {value!r} (use L or R, or leave it empty)") from None


def _resolve(value: str, folder: Path) -> str:
    p = Path(os.path.expanduser(value.strip()))
    return str(p if p.is_absolute() else (folder / p))


def read_manifest(path: str | os.PathLike, *, default_spacing_mm: float | None = None) -> Manifest:
    """Read and validate STUDY.csv, group its rows into units (see the module doc).

    Args:
        path: the CSV.
        default_spacing_mm: pixel spacing (mm) for rows without ``spacing_mm``.

    Returns:
        The :class:`Manifest`; ``kind`` is ``"crop"`` when there is a ``joint`` column, else ``"hand"``.

    Raises:
        JsnqInputError: the file cannot be read, a required column is missing, a row has an
            empty or invalid value, a unit lists the same image twice, has two images of one
            date (patient, side and date repeat) or mixes spacings.
    """
    p = Path(os.fspath(path))
    default = validate_spacing(default_spacing_mm, "--spacing")
    header, rows = _read_rows(p)
    kind = "crop" if "joint" in header else "hand"
    if kind == "hand" and "labels" in header:
        raise JsnqInputError(p, "a 'labels' column needs a 'joint' column (labels belong to crops)")
    groups: dict[tuple[str, str, str], list[tuple[Visit, float | None, int]]] = {}
    for n, (line, row) in enumerate(rows):
        where = _where(p, line)
        if None in row:  # more fields than the header
            raise JsnqInputError(where, f"{len(header) + len(row[None])} fields but the header has {len(header)}")
        key, visit, spacing = _row(row, kind, p.parent, where, line, default)
        groups.setdefault(key, []).append((visit, spacing, n))
    units = []
    for (patient, side, joint), members in groups.items():
        members.sort(key=lambda m: (m[0].date, m[2]))
        _check_unit(p, kind, members)
        units.append(Unit(kind=kind, patient=patient, side=side, joint=joint,
                          visits=tuple(v for v, _, _ in members), spacing_mm=members[0][1]))
    return Manifest(path=str(p), kind=kind, units=tuple(units))


def _read_rows(p: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """The manifest's stripped header and its rows with their line numbers, the required columns checked."""
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = [(reader.line_num, r) for r in reader]
    except FileNotFoundError:
        raise JsnqInputError(p, "study manifest not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise JsnqInputError(p, f"cannot read the study manifest: {err}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise JsnqInputError(p, f"missing column(s) {', '.join(missing)} (a study needs {', '.join(REQUIRED_COLUMNS)}; "
                             f"optional: {', '.join(OPTIONAL_COLUMNS)}); {header_hint(header, REQUIRED_COLUMNS)}")
    if not rows:
        raise JsnqInputError(p, "the study manifest has no rows")
    return header, rows


def _row(row: dict, kind: str, folder: Path, where: str, line: int, default: float | None
         ) -> tuple[tuple[str, str, str], Visit, float | None]:
    """One row -> ((patient, side, joint), its visit, its spacing), every value checked."""
    get = lambda c: (row.get(c) or "").strip()  # noqa: E731
    patient = get("patient")
    if not patient:
        raise JsnqInputError(where, "empty patient")
    if not get("image"):
        raise JsnqInputError(where, "empty image")
    if not get("date"):
        raise JsnqInputError(where, "empty date")
    joint = get("joint") if kind == "crop" else ""
    if kind == "crop" and not joint:
        raise JsnqInputError(where, "empty joint (every row of a crop study names its joint)")
    spacing = validate_spacing(get("spacing_mm"), where) if get("spacing_mm") else default
    visit = Visit(date=_date(get("date"), where), image=_resolve(get("image"), folder), image_as_given=get("image"),
                  labels=_resolve(get("labels"), folder) if get("labels") else None, line=line)
    return (patient, _side(get("side"), where), joint), visit, spacing


def _check_unit(p: Path, kind: str, members: list[tuple[Visit, float | None, int]]) -> None:
    """Refuse a unit (its visits in date order) that lists an image twice, has two images of
    one date, or mixes spacings."""
    seen: dict[str, int] = {}
    for v, _, _ in members:
        if v.image in seen:
            raise JsnqInputError(_where(p, v.line), f"image {v.image_as_given!r} repeats line {seen[v.image]} "
                                 "of the same patient, side and joint")
        seen[v.image] = v.line
    dates: dict[str, int] = {}
    for v, _, _ in members:
        if v.date in dates:
            what = "patient, side and joint" if kind == "crop" else "patient and side"
            raise JsnqInputError(_where(p, v.line), f"date {v.date} repeats line {dates[v.date]} of the same {what}: "
                                 "one image per visit (a duplicate row, or a missing side?)")
        dates[v.date] = v.line
    spacings = {s for _, s, _ in members}
    if len(spacings) > 1:
        given = sorted(s for s in spacings if s is not None)
        line = next(v.line for v, s, _ in members if s != members[0][1])
        if None in spacings:
            raise JsnqInputError(_where(p, line), "spacing_mm is given for some visits of this patient, side and "
                                 "joint but not others; give it for all (or none)")
        if given[-1] - given[0] > SPACING_TOLERANCE * given[0]:
            raise JsnqInputError(_where(p, line), f"the visits of this patient, side and joint have different "
                                 f"pixel spacings ({given[0]:g}-{given[-1]:g} mm); resample to a common spacing")
