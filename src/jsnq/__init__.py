"""jsnq: sub-pixel joint space narrowing (JSN) progression from hand radiographs.

Quick use::

    import jsnq
    m = jsnq.measure("baseline.png", "followup.png", spacing_mm=0.175)
    print(m.narrowing_mm, m.narrowing_se_mm, m.reliable, m.reasons)

The public names are imported lazily, so ``import jsnq`` (and the CLI's ``--help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

_EXPORTS = {
    "measure": "pipeline",
    "measure_many": "pipeline",
    "series": "longitudinal",
    "measure_batch": "batch",
    "MeasureConfig": "config",
    "SeriesResult": "results",
    "Measurement": "results",
    "BoneMotion": "results",
    "Similarity": "geometry",
    "narrowing_px": "geometry",
    "load_image": "io",
    "load_labels": "io",
    "Image": "io",
    "JsnqInputError": "errors",
    "find_joints": "hand.locate",
    "Hand": "hand.types",
    "Joint": "hand.types",
    "run_study": "study",
    "measure_hand": "hand.measure",
    "measure_hand_series": "hand.measure",
    "HandMeasurement": "hand.results",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # pragma: no cover
    from .errors import JsnqInputError
    from .geometry import Similarity, narrowing_px
    from .io import Image, load_image, load_labels
    from .batch import measure_batch
    from .config import MeasureConfig
    from .longitudinal import series
    from .hand.locate import find_joints
    from .hand.measure import measure_hand, measure_hand_series
    from .hand.results import HandMeasurement
    from .hand.types import Hand, Joint
    from .study import run_study
    from .pipeline import measure, measure_many
    from .results import BoneMotion, Measurement, SeriesResult


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'jsnq' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
