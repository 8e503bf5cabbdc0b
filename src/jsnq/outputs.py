"""Writing outputs safely: never over an input, never through a symlink, errors in one line.

The commands call these at the edge, before the computation (:func:`check_output`,
:func:`check_output_dir`: fail fast on a bad path) and when writing (:func:`write_atomic`,
:func:`atomic_output`: a temporary file in the same folder, then ``os.replace``, so a crash
leaves either the old file or the new one, never half of one, and an existing symlink at the
output name is refused rather than followed).

Every refusal is a :class:`~jsnq.errors.JsnqInputError`: one line naming the path.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .errors import JsnqInputError, safe_display_name

__all__ = ["atomic_output", "check_output", "check_output_dir", "csv_cell", "csv_text", "finite_or_none",
           "json_ready", "safe_display_name", "scaled", "write_atomic"]

_NEW_FILE_MODE = 0o644  # the mode of a new output file (mkstemp's own 0600 would hide it from others)


def _fspath(path: str | os.PathLike[str] | bytes) -> str:
    return os.fsdecode(path)


def _reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


def _same_file(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def check_output(
    path: str | os.PathLike[str] | bytes,
    *,
    inputs: Iterable[str | os.PathLike[str] | bytes | None] = (),
    folder: str | os.PathLike[str] | bytes | None = None,
) -> Path:
    """Check that ``path`` may be written as an output file, before any work is done.

    Args:
        path: the output file name.
        inputs: the command's input files (``None`` entries are skipped); the output must
            not be any of them, by name, symlink or hard link.
        folder: the output folder ``path`` must lie directly in (e.g. ``--figures DIR``),
            so that a name like ``../x.png`` cannot leave it.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        JsnqInputError: the path is an input; is a symbolic link (jsnq does not write
            through links: ``DIR/x.png -> /elsewhere`` would overwrite ``/elsewhere``); is a
            directory; lies outside ``folder``; its folder is missing or not writable.
    """
    name = _fspath(path)
    for given in inputs:
        if given is not None and _same_file(name, _fspath(given)):
            same = safe_display_name(given)
            raise JsnqInputError(name, f"output would overwrite the input {same}; choose another output name")
    if os.path.islink(name):
        raise JsnqInputError(name, "output is a symbolic link; jsnq does not write through links (remove it "
                                   "or choose another name)")
    if os.path.isdir(name):
        raise JsnqInputError(name, "is a directory, not a file name")
    parent = os.path.dirname(name) or "."
    if folder is not None and os.path.realpath(parent) != os.path.realpath(_fspath(folder)):
        raise JsnqInputError(name, f"output is not inside the output folder {safe_display_name(folder)}")
    if not os.path.isdir(parent):
        raise JsnqInputError(name, "output directory does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise JsnqInputError(name, f"cannot write to the folder {safe_display_name(parent)}: permission denied "
                                   "or read-only file system")
    return Path(name)


def check_output_dir(
    folder: str | os.PathLike[str] | bytes,
    *,
    inputs: Iterable[str | os.PathLike[str] | bytes | None] = (),
    create: bool = True,
) -> Path:
    """Check (and by default create, never its parents) an output folder such as ``--figures``.

    Args:
        folder: the folder.
        inputs: input files; none may be the folder itself.
        create: make the folder when missing (its parent must exist).

    Returns:
        ``folder`` as a :class:`~pathlib.Path`.

    Raises:
        JsnqInputError: exists and is not a directory; its parent is missing; it cannot be
            created or is not writable.
    """
    name = _fspath(folder)
    for given in inputs:
        if given is not None and _same_file(name, _fspath(given)):
            raise JsnqInputError(name, f"output folder is the input {safe_display_name(given)}")
    if not os.path.isdir(name):
        if os.path.lexists(name):
            raise JsnqInputError(name, "exists and is not a directory")
        if not create:
            raise JsnqInputError(name, "output directory does not exist")
        if not os.path.isdir(os.path.dirname(os.path.abspath(name))):
            raise JsnqInputError(name, "parent directory does not exist")
        try:
            os.mkdir(name)
        except OSError as err:
            raise JsnqInputError(name, f"cannot create directory: {_reason(err)}") from None
    if not os.access(name, os.W_OK | os.X_OK):
        raise JsnqInputError(name, "cannot write to the folder: permission denied or read-only file system")
    return Path(name)


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike[str] | bytes,
    *,
    inputs: Iterable[str | os.PathLike[str] | bytes | None] = (),
    folder: str | os.PathLike[str] | bytes | None = None,
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    For writers that want a file name (``fig.savefig(tmp)``, ``PIL.Image.save(tmp)``). The
    temporary name keeps the suffix, so format detection by extension still works. On an
    exception inside the block the temporary file is removed and ``path`` is untouched.

    Args:
        path: the output file; checked with :func:`check_output` first.
        inputs: input files the output must not be.
        folder: the output folder ``path`` must lie in (see :func:`check_output`).

    Yields:
        The temporary :class:`~pathlib.Path` to write to.

    Raises:
        JsnqInputError: the checks of :func:`check_output` fail, or the file cannot be
            created, written or moved into place (disk full, read-only, ...), in one line.
    """
    target = check_output(path, inputs=inputs, folder=folder)
    parent = os.path.dirname(os.fspath(target)) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=parent)
    except OSError as err:
        raise JsnqInputError(target, f"cannot write: {_reason(err)}") from None
    os.close(fd)
    try:
        yield Path(tmp)
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)  # keep an existing file's permissions
        except OSError:
            mode = _NEW_FILE_MODE
        os.chmod(tmp, mode)
        if os.path.islink(target):  # appeared since the check: still never write through it
            raise JsnqInputError(target, "output is a symbolic link; jsnq does not write through links")
        os.replace(tmp, target)  # rename(2): replaces the name itself, follows no link
    except OSError as err:
        _remove(tmp)
        raise JsnqInputError(target, f"cannot write: {_reason(err)}") from None
    except BaseException:
        _remove(tmp)
        raise


def write_atomic(
    path: str | os.PathLike[str] | bytes,
    data: bytes | str,
    *,
    inputs: Iterable[str | os.PathLike[str] | bytes | None] = (),
    folder: str | os.PathLike[str] | bytes | None = None,
) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    Args:
        path: the output file; checked with :func:`check_output`.
        data: ``bytes``, or ``str`` written as UTF-8. Text must be encodable: pass file
            names through :func:`safe_display_name` before putting them in a report.
        inputs: input files the output must not be.
        folder: the output folder ``path`` must lie in.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        JsnqInputError: the checks of :func:`check_output` fail; the text is not encodable
            as UTF-8; the file cannot be written (one line, naming the file).
    """
    if isinstance(data, str):
        try:
            payload = data.encode("utf-8")
        except UnicodeEncodeError as err:
            bad = safe_display_name(data[max(0, err.start - 20): err.end + 20])
            raise JsnqInputError(_fspath(path), f"text to write is not valid UTF-8 near {bad!r}") from None
    else:
        payload = bytes(data)
    with atomic_output(path, inputs=inputs, folder=folder) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())  # on disk before the rename: a crash leaves the old file or the new one
    return Path(_fspath(path))


# -- the one cell formatter and the one JSON sanitiser of every table jsnq writes --------------
def finite_or_none(value: Any) -> float | None:
    """A float, or None for None / NaN / inf (an empty cell, never a made-up number)."""
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def scaled(value: Any, factor: float | None) -> float | None:
    """``value * factor``, or None where either is missing or not finite."""
    v = finite_or_none(value)
    return None if v is None or factor is None else v * factor


def csv_cell(value: Any) -> str:
    """One CSV cell: empty for None and NaN/inf (not measured is never a number), ``true`` /
    ``false`` for booleans, floats exactly (``repr``; ``-0.0`` as ``0.0``), anything else ``str``."""
    if hasattr(value, "dtype") and hasattr(value, "item"):  # a numpy scalar
        value = value.item()
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value + 0.0) if math.isfinite(value) else ""  # -0.0 + 0.0 == 0.0
    return str(value)


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str | tuple[str, str]]) -> str:
    """A CSV with exactly ``columns`` (names, or ``(name, type)`` pairs), one line per row, each
    cell by :func:`csv_cell` (a missing key: an empty cell)."""
    names = [c if isinstance(c, str) else c[0] for c in columns]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(names)
    for r in rows:
        w.writerow([csv_cell(r.get(c)) for c in names])
    return buf.getvalue()


def json_ready(value: Any) -> Any:
    """For standard JSON (``json.dumps(..., allow_nan=False)``), recursively: NaN/inf -> None,
    ``-0.0`` -> ``0.0``, tuples -> lists, numpy scalars and arrays -> Python numbers and lists,
    mapping keys -> str."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy scalar or array
        return json_ready(value.tolist())
    if isinstance(value, float):
        return value + 0.0 if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
