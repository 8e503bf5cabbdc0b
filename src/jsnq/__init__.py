"""jsnq: sub-pixel joint space narrowing (JSN) progression from hand radiographs."""

__version__ = "0.1.0"
