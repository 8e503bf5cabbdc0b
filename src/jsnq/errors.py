"""Errors that jsnq reports to users as one line, without a traceback."""

from __future__ import annotations

import os

__all__ = ["JsnqInputError", "WeightsUnavailableError", "safe_display_name", "one_line", "header_hint"]


def safe_display_name(name: object) -> str:
    """A file name (or any source) as printable, encodable, one-line text.

    File names on Linux are bytes; Python decodes the ones that are not valid UTF-8 with
    surrogate escapes (``b"caf\\xe9.png"`` -> ``"caf\\udce9.png"``), which matplotlib titles,
    HTML reports and UTF-8 streams cannot encode. This restores the original bytes, shows
    those that are not UTF-8 as ``\\xNN`` and escapes control and format characters
    (newlines, terminal escapes, right-to-left overrides), so the result is safe in a figure
    title, an HTML page (after the usual HTML escaping) and a one-line message. Use it for
    display only: open files by their real name.

    Args:
        name: a ``str``, ``bytes`` or ``os.PathLike`` path, or any object (``str()`` is used).

    Returns:
        ``str`` that encodes as UTF-8 and holds no line breaks; equal to ``os.fsdecode(name)``
        for ordinary names.
    """
    if isinstance(name, (bytes, os.PathLike)):
        try:
            name = os.fsdecode(name)
        except TypeError:  # a PathLike whose __fspath__ returns something else
            name = str(name)
    text = name if isinstance(name, str) else str(name)
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # surrogates that are no file-system escapes
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class JsnqInputError(ValueError):
    """Bad input: a missing, corrupt, blank or non-2-D image, mismatched labels, a bad spacing.

    ``str(err)`` is a single line that names the offending file (or array) and the problem,
    e.g. ``"followup.png: image is blank (constant value 0)"``. The name is shown through
    :func:`safe_display_name`, so a file name holding a newline or bytes that are not UTF-8
    still gives one printable line; ``err.source`` keeps the name as given (``str``).
    """

    def __init__(self, source: object, problem: str) -> None:
        if isinstance(source, (bytes, os.PathLike)):
            try:
                source = os.fsdecode(source)
            except TypeError:
                pass
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{safe_display_name(self.source)}: {safe_display_name(problem)}")


class WeightsUnavailableError(ValueError):
    """A network was asked for but its weights cannot be loaded (one-line message)."""


def one_line(err: BaseException) -> str:
    """An error's message on one line (its type's name when it has none)."""
    return " ".join(str(err).split()) or type(err).__name__


def header_hint(header: list[str], required: tuple[str, ...]) -> str:
    """What a CSV header holds instead of the ``required`` columns, with a hint: another
    delimiter (the whole header one column), or other letter case. For a missing-column error."""
    shown = ", ".join(safe_display_name(h) for h in header[:8]) + (", ..." if len(header) > 8 else "")
    text = f"found {'column' if len(header) == 1 else 'columns'} {shown}" if header else "found no header"
    if len(header) == 1:
        for sep, name in ((";", "semicolon"), ("\t", "tab"), ("|", "vertical bar")):
            if sep in header[0]:
                return f"{text}: the file seems {name}-delimited; jsnq reads comma-separated CSV"
    lower = {h.lower() for h in header}
    if any(c in lower and c not in header for c in required):
        return f"{text}: column names are lower case ({', '.join(required)})"
    return text
