"""Errors that jsnq reports to users as one line, without a traceback."""

from __future__ import annotations

__all__ = ["JsnqInputError", "WeightsUnavailableError", "one_line"]


class JsnqInputError(ValueError):
    """Bad input: a missing, corrupt, blank or non-2-D image, mismatched labels, a bad spacing.

    ``str(err)`` is a single line that names the offending file (or array) and the problem,
    e.g. ``"followup.png: image is blank (constant value 0)"``.
    """

    def __init__(self, source: object, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class WeightsUnavailableError(ValueError):
    """A network was asked for but its weights cannot be loaded (one-line message)."""


def one_line(err: BaseException) -> str:
    """An error's message on one line (its type's name when it has none)."""
    return " ".join(str(err).split()) or type(err).__name__
