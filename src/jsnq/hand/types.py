"""The whole hand as jsnq sees it: which hand, and where each finger joint is.

Conventions (as everywhere in jsnq): points are ``(x, y) = (col, row)`` in pixels of the
radiograph they were found in; angles in degrees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["JOINT_NAMES", "MCP_JOINTS", "Joint", "Hand"]

#: The finger joints jsnq locates and measures, thumb first. 1 = thumb ... 5 = little finger.
#: The thumb has MCP1 and IP1; fingers 2-5 have MCP, PIP and DIP.
MCP_JOINTS = ("MCP1", "MCP2", "MCP3", "MCP4", "MCP5")
JOINT_NAMES = (*MCP_JOINTS, "IP1", "PIP2", "PIP3", "PIP4", "PIP5", "DIP2", "DIP3", "DIP4", "DIP5")


@dataclass(frozen=True)
class Joint:
    """One located finger joint.

    Attributes:
        name: one of :data:`JOINT_NAMES`.
        x, y: the landmark in pixels of the input radiograph, in the convention of the
            Digital Hand Atlas landmarks: the base (proximal end) of the joint's distal bone, on
            the finger's axis, a few pixels distal of the joint-space centre.
        axis_deg: direction of the finger's axis at the joint, pointing distally (towards the
            fingertip), in degrees clockwise from image "up" (``-y``); 0 = finger straight up.
        score: the locator's confidence in [0, 1].
    """

    name: str
    x: float
    y: float
    axis_deg: float
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "x": self.x, "y": self.y, "axis_deg": self.axis_deg, "score": self.score}


@dataclass(frozen=True)
class Hand:
    """The finger joints found in one radiograph.

    Attributes:
        side: ``"L"`` or ``"R"`` (the patient's hand, PA view).
        joints: joint name -> :class:`Joint`, only for the joints found.
        missing: joint name -> one-line reason, for each joint of :data:`JOINT_NAMES` not found
            (never guessed).
        shape: ``(rows, cols)`` of the radiograph.
        spacing_mm: the radiograph's pixel spacing, or None when unknown.
        source: the radiograph's file name (or ``"<array>"``).
    """

    side: str
    joints: Mapping[str, Joint]
    missing: Mapping[str, str] = field(default_factory=dict)
    shape: tuple[int, int] = (0, 0)
    spacing_mm: float | None = None
    source: str = "<array>"

    def to_dict(self) -> dict[str, Any]:
        return {"side": self.side, "source": self.source, "shape": list(self.shape), "spacing_mm": self.spacing_mm,
                "joints": {k: j.to_dict() for k, j in self.joints.items()}, "missing": dict(self.missing)}
