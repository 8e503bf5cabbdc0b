"""What every command shares: one-line errors, consoles, safe output paths, number formatting.

Bad input (``JsnqInputError`` / ``ValueError`` from the API) and failed reads or writes
(``OSError``) end a command with one line ``error: <message>`` on stderr and exit code 2, never
a traceback.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import typer

from ..errors import one_line
from ..errors import safe_display_name as display

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

__all__ = ["EXIT_INPUT_ERROR", "EXIT_PARTIAL", "reports_input_errors", "stdout", "stderr", "output_file",
           "output_dir", "write_text", "pm", "signed", "unsigned", "plural", "jsw_text", "display"]

#: Exit code of a command stopped by bad input.
EXIT_INPUT_ERROR = 2
#: Exit code of a command that wrote its results but could not measure everything asked of it.
EXIT_PARTIAL = 1


def reports_input_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the API's input errors and failed reads or writes into ``error: <message>`` and exit 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ValueError as err:  # JsnqInputError is a ValueError
            message = one_line(err)
        except OSError as err:
            where = err.filename if err.filename is not None else "output"
            message = f"{display(where)}: {err.strerror or one_line(err)}"
        typer.echo(f"error: {display(message)}", err=True)
        raise typer.Exit(EXIT_INPUT_ERROR) from None

    return wrapper


def stdout() -> "Console":
    from rich.console import Console

    return Console(highlight=False)


def stderr() -> "Console":
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def output_file(path: Path, *, inputs: Iterable[Any] = ()) -> Path:
    """An output file name whose directory exists and that is none of ``inputs`` (jsnq writes only
    where told, never over an input)."""
    from ..outputs import check_output

    return check_output(path, inputs=[Path(os.fspath(p)) for p in inputs if p is not None])


def output_dir(path: Path, *, inputs: Iterable[Any] = ()) -> Path:
    """An output directory: created when missing, but never its parents; never a symlink."""
    from ..outputs import check_output_dir

    return check_output_dir(path, inputs=[Path(os.fspath(p)) for p in inputs if p is not None])


def write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically (a crash leaves the old file or the new one, never half of one)."""
    from ..outputs import write_atomic

    write_atomic(path, text)


def signed(value: float | None, digits: int = 3) -> str:
    """``+0.123``; ``""`` for None or NaN; a value that rounds to zero as ``0.000`` (never ``-0.000``)."""
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return ""
    text = f"{value:+.{digits}f}"
    return text[1:] if float(text) == 0 else text


def unsigned(value: float | None, digits: int = 3) -> str:
    """``0.045``; ``""`` for None or NaN (never ``nan``)."""
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return ""
    return f"{value + 0.0:.{digits}f}"


def plural(n: int, noun: str, many: str | None = None) -> str:
    """``1 joint``, ``2 joints`` (``many``: the plural when it is not ``noun + "s"``)."""
    return f"{n} {noun if n == 1 else (many or noun + 's')}"


def pm(value: float | None, se: float | None, unit: str) -> str:
    """``+0.123 ± 0.045 mm``; ``not measured`` where there is no number."""
    if not signed(value) or not unsigned(se):
        return "not measured"
    return f"{signed(value)} ± {unsigned(se)} {unit}"


def jsw_text(jsw: Any) -> str:
    text = f"mean {jsw.mean_px:.2f} px, min {jsw.min_px:.2f} px"
    if jsw.mean_mm is not None:
        text += f" (mean {jsw.mean_mm:.3f} mm, min {jsw.min_mm:.3f} mm)"
    text += f" over columns {jsw.columns[0]}-{jsw.columns[1]}"
    if jsw.min_px < 0:
        text += "; negative = the bone masks overlap on the projection there"
    return text
