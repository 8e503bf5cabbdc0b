"""The study's folder: every file written atomically, one record per finished unit.

Layout of ``DIR``::

    units/<unit id>.json     one record per finished unit (ok or failed), written as it arrives
    reports/<unit id>.html   per-unit reports (with --report)
    joints.csv, joints.parquet, pairs.parquet, units.csv, summary.csv, study.json, report.html

Atomic: a file is written to a temporary name in the same folder, flushed to disk and renamed
over the final name (``os.replace``), so a reader (or a rerun after ``kill -9``) sees the old
file or the new one, never half of one. A killed run leaves at most stray ``.*.tmp`` files,
which the next run removes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import JsnqInputError
from ..outputs import csv_text, json_ready, write_atomic

__all__ = ["Store", "atomic_write_bytes", "atomic_write_text", "csv_text", "parquet_bytes", "json_ready"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically through :func:`jsnq.outputs.write_atomic` (temporary
    file, fsync, ``os.replace``; a symbolic link at ``path`` is refused, never written through)."""
    return write_atomic(path, data)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return write_atomic(path, text)


def parquet_bytes(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> bytes:
    """A Parquet file with exactly ``columns`` and types (nulls for missing values)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    schema = pa.schema([(c, types[t]) for c, t in columns])
    table = pa.Table.from_pylist([{c: r.get(c) for c, _ in columns} for r in rows], schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


class Store:
    """The unit records of one study folder."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(os.fspath(root))
        self.units = self.root / "units"
        self.reports = self.root / "reports"
        try:
            self.root.mkdir(exist_ok=True)  # its parent must exist: a mistyped path is not created
            self.units.mkdir(exist_ok=True)
        except OSError as err:
            raise JsnqInputError(self.root, f"cannot create the study folder: {err.strerror or err}") from None
        for stray in self.units.glob(".*.tmp"):  # left by a killed run
            stray.unlink(missing_ok=True)

    def path(self, unit_id: str) -> Path:
        return self.units / f"{unit_id}.json"

    def load(self, unit_id: str) -> dict[str, Any] | None:
        """The unit's record, or None when there is none (or it cannot be read: measured again)."""
        try:
            return json.loads(self.path(unit_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def save(self, record: Mapping[str, Any]) -> Path:
        return atomic_write_text(self.path(str(record["id"])),
                                 json.dumps(json_ready(record), allow_nan=False, separators=(",", ":")))

    def write_table(self, name: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> Path:
        """``name`` ending .csv or .parquet, written atomically."""
        if name.endswith(".csv"):
            return atomic_write_text(self.root / name, csv_text(rows, columns))
        if name.endswith(".parquet"):
            return atomic_write_bytes(self.root / name, parquet_bytes(rows, columns))
        raise ValueError(f"unknown table format: {name!r} (use .csv or .parquet)")
