"""The measurement configuration: everything that decides a number, validated once, recorded always.

A :class:`MeasureConfig` is built at the edge (the CLI, or the caller of the Python API), travels
down the pipeline as one argument, and is written into every result's ``to_dict()`` with the
jsnq version. :meth:`MeasureConfig.from_dict` rebuilds it exactly, so ``jsnq report`` (and a
study's rerun check) measure again with precisely the settings a saved number was measured with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from .quality import ReliabilityThresholds
from .register.classical import RegistrationOptions
from .version import __version__

__all__ = ["ENGINES", "SEGMENTERS", "MeasureConfig", "choose", "resolve"]

#: Registration engines: ``classical`` (global search + per-bone Gauss-Newton), ``deep`` (the
#: network alone, as in the paper), ``hybrid`` (the network's transforms refined by
#: Gauss-Newton), ``auto`` (hybrid when the shipped network loads, else classical).
ENGINES = ("auto", "classical", "deep", "hybrid")
#: Segmenters used when no baseline labels are given: ``network`` (the shipped UNet++),
#: ``classical`` (the joint-space line), ``auto`` (the network when it loads and finds both bones).
SEGMENTERS = ("auto", "network", "classical")


def choose(value: str, allowed: tuple[str, ...], what: str) -> str:
    """``value`` when it is one of ``allowed``, else a ValueError that lists the allowed values."""
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively (JSON's shape)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _tupled(value: Any) -> Any:
    """Lists -> tuples, recursively (the options' shape)."""
    if isinstance(value, (tuple, list)):
        return tuple(_tupled(v) for v in value)
    return value


def _from_fields(cls: type, data: Mapping[str, Any], what: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{what}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})")
    return cls(**{k: _tupled(v) for k, v in data.items()})


@dataclass(frozen=True)
class MeasureConfig:
    """How a pair (or a series, a hand, a study) is measured.

    Attributes:
        engine: one of :data:`ENGINES`.
        segmenter: one of :data:`SEGMENTERS`; used only where no baseline labels are given.
        registration: the classical engine's options (also the hybrid's refinement).
        thresholds: when a measurement is flagged unreliable.
        symmetric: with both visits' labels, register both ways and report the mean (exactly
            antisymmetric under swapping the visits); False: one direction (half the time).
        check_labels: with baseline labels but none for the follow-up, compare them with the
            segmentation network's and flag a gross disagreement (about 25 ms a pair).
        split_masks: label files are paper-style binary split masks (non-zero = upper side)
            instead of label maps (1 = upper side, 2 = lower side, 0 = ignore).

    Raises:
        ValueError: an engine or segmenter name that is not allowed (the message lists them).
    """

    engine: str = "auto"
    segmenter: str = "auto"
    registration: RegistrationOptions = field(default_factory=RegistrationOptions)
    thresholds: ReliabilityThresholds = field(default_factory=ReliabilityThresholds)
    symmetric: bool = True
    check_labels: bool = True
    split_masks: bool = False

    def __post_init__(self) -> None:
        choose(self.engine, ENGINES, "engine")
        choose(self.segmenter, SEGMENTERS, "segmenter")
        if not isinstance(self.registration, RegistrationOptions):
            raise ValueError(f"registration must be a RegistrationOptions, got {type(self.registration).__name__}")
        if not isinstance(self.thresholds, ReliabilityThresholds):
            raise ValueError(f"thresholds must be a ReliabilityThresholds, got {type(self.thresholds).__name__}")

    def replace(self, **changes: Any) -> "MeasureConfig":
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the jsnq version that measured it; :meth:`from_dict` inverts it."""
        return {
            "jsnq_version": __version__,
            "engine": self.engine,
            "segmenter": self.segmenter,
            "symmetric": self.symmetric,
            "check_labels": self.check_labels,
            "split_masks": self.split_masks,
            "registration": {k: _plain(v) for k, v in dataclasses.asdict(self.registration).items()},
            "thresholds": dataclasses.asdict(self.thresholds),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MeasureConfig":
        """The configuration :meth:`to_dict` wrote (the version is informative and ignored).

        Raises:
            ValueError: unknown or invalid settings (one line naming them).
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"a configuration must be a JSON object, got {type(data).__name__}")
        d = {k: v for k, v in data.items() if k != "jsnq_version"}
        registration = d.pop("registration", None) or {}
        thresholds = d.pop("thresholds", None) or {}
        if not isinstance(registration, Mapping) or not isinstance(thresholds, Mapping):
            raise ValueError("configuration: 'registration' and 'thresholds' must be JSON objects")
        try:
            return _from_fields(cls, {**d, "registration": _from_fields(RegistrationOptions, registration,
                                                                            "registration"),
                                      "thresholds": _from_fields(ReliabilityThresholds, thresholds, "thresholds")},
                                "configuration")
        except TypeError as err:
            raise ValueError(f"configuration: {err}") from None

    def digest(self) -> str:
        """A short hash of the settings and the jsnq version: equal digests, equal measurements."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def resolve(config: MeasureConfig | None) -> MeasureConfig:
    """The configuration of a call to the Python API: ``config``, or ``MeasureConfig()`` when None.

    Raises:
        ValueError: ``config`` is not a :class:`MeasureConfig`.
    """
    if config is None:
        return MeasureConfig()
    if not isinstance(config, MeasureConfig):
        raise ValueError(f"config must be a MeasureConfig, got {type(config).__name__}")
    return config
