"""Writing results safely: only where told, never over an input, never through a symlink, atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

from .errors import JsnqInputError

__all__ = ["check_output", "check_output_dir", "write_atomic"]


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.realpath(a) == os.path.realpath(b) or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """An output file name that may be written: its folder exists, it is not a folder, not a
    symlink, and it is none of ``inputs``.

    Raises:
        JsnqInputError: one line naming the path and the problem.
    """
    out = Path(path)
    if not out.parent.is_dir():
        raise JsnqInputError(out, "output directory does not exist")
    if out.is_dir():
        raise JsnqInputError(out, "is a directory, not a file name")
    if out.is_symlink():
        raise JsnqInputError(out, "is a symbolic link; jsnq does not write through links")
    for source in inputs:
        if _same(out, Path(source)):
            raise JsnqInputError(out, f"is an input ({os.fspath(source)}); choose another output name")
    return out


def check_output_dir(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """An output folder: created when missing (never its parents), not a symlink, holding no input.

    Raises:
        JsnqInputError: one line naming the path and the problem.
    """
    out = Path(path)
    if out.is_symlink():
        raise JsnqInputError(out, "is a symbolic link; jsnq does not write through links")
    if not out.is_dir():
        if out.exists():
            raise JsnqInputError(out, "exists and is not a directory")
        if not out.parent.is_dir():
            raise JsnqInputError(out, "parent directory does not exist")
        try:
            out.mkdir()
        except OSError as err:
            raise JsnqInputError(out, f"cannot create directory: {err.strerror or err}") from None
    return out


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``,
    so a crash leaves the old file or the new one, never half of one; a symlink at ``path`` is
    replaced, not followed.

    Raises:
        JsnqInputError: the folder cannot be written (one line).
    """
    out = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as err:
        raise JsnqInputError(out, f"cannot write: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, out)
    except OSError as err:
        raise JsnqInputError(out, f"cannot write: {err.strerror or err}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
