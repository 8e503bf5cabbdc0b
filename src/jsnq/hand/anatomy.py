"""Typical adult hand anatomy: which bones meet at each finger joint, their lengths and widths.

Used in two places: the synthetic hand phantom (:mod:`jsnq.phantom.hand`) draws its bones
around these values, and the crop cutter (:mod:`jsnq.hand.crops`) reads the hand's own scale
from its joint positions (the phalanx lengths) and, with the widths below, the width of each
joint's bones in pixels of the radiograph, which sets each crop's resampling factor.

The values are rounded textbook means for adults (mm, PA projection); real hands differ by
about 10 %, and the relative widths within a hand by less. Only ratios matter to the crop
cutter: the hand's scale cancels.
"""

from __future__ import annotations

from .types import JOINT_NAMES

__all__ = ["BONES", "JOINT_BONES", "SEGMENTS", "BONE_MM", "BASE_WIDTH_MM", "HEAD_WIDTH_MM", "SHAFT_WIDTH_MM",
           "LENGTH_MM", "joint_type", "finger_of", "distal_bone_width_mm", "JOINT_TYPES"]

#: The joint types; the networks were trained on MCP crops only.
JOINT_TYPES = ("MCP", "PIP", "DIP", "IP")

#: Bones, per finger from the wrist outwards. ``MC`` metacarpal, ``PP`` proximal, ``MP`` middle,
#: ``DP`` distal phalanx; the thumb has no middle phalanx.
BONES = {1: ("MC1", "PP1", "DP1"), **{f: (f"MC{f}", f"PP{f}", f"MP{f}", f"DP{f}") for f in (2, 3, 4, 5)}}

#: joint -> (proximal bone, distal bone). The distal bone is the *upper* bone of a canonical crop.
JOINT_BONES = {"MCP1": ("MC1", "PP1"), "IP1": ("PP1", "DP1"),
               **{f"MCP{f}": (f"MC{f}", f"PP{f}") for f in (2, 3, 4, 5)},
               **{f"PIP{f}": (f"PP{f}", f"MP{f}") for f in (2, 3, 4, 5)},
               **{f"DIP{f}": (f"MP{f}", f"DP{f}") for f in (2, 3, 4, 5)}}

#: Per bone, in mm: its length, and its full width at the base (proximal end), shaft and head
#: (distal end).
BONE_MM = {
    #      length base shaft  head
    "MC1": (46.0, 15.0, 10.0, 14.0),
    "PP1": (31.5, 16.0, 10.0, 13.0),
    "DP1": (23.0, 13.0,  7.0,  9.0),
    "MC2": (68.0, 14.0,  8.5, 13.5),
    "PP2": (40.0, 15.0,  9.5, 12.0),
    "MP2": (22.5, 12.0,  8.0, 10.0),
    "DP2": (17.0,  9.5,  5.0,  6.5),
    "MC3": (65.0, 14.0,  8.5, 14.0),
    "PP3": (44.5, 15.5, 10.0, 12.5),
    "MP3": (26.5, 12.5,  8.5, 10.5),
    "DP3": (18.5, 10.0,  5.5,  7.0),
    "MC4": (58.0, 12.0,  7.5, 12.5),
    "PP4": (41.5, 14.0,  9.0, 11.5),
    "MP4": (25.0, 11.5,  8.0, 10.0),
    "DP4": (18.0,  9.5,  5.0,  6.5),
    "MC5": (53.0, 12.0,  7.5, 11.5),
    "PP5": (33.0, 12.5,  8.0, 10.5),
    "MP5": (18.0, 10.0,  7.0,  8.5),
    "DP5": (16.0,  8.5,  4.5,  6.0),
}
LENGTH_MM = {b: d[0] for b, d in BONE_MM.items()}
BASE_WIDTH_MM = {b: d[1] for b, d in BONE_MM.items()}
SHAFT_WIDTH_MM = {b: d[2] for b, d in BONE_MM.items()}
HEAD_WIDTH_MM = {b: d[3] for b, d in BONE_MM.items()}

#: Segments between two joints of one finger whose lengths are bone lengths:
#: (proximal joint, distal joint, the bone between them).
SEGMENTS = (("MCP1", "IP1", "PP1"),
            *((f"MCP{f}", f"PIP{f}", f"PP{f}") for f in (2, 3, 4, 5)),
            *((f"PIP{f}", f"DIP{f}", f"MP{f}") for f in (2, 3, 4, 5)))


def joint_type(name: str) -> str:
    """``"MCP"``, ``"PIP"``, ``"DIP"`` or ``"IP"`` for a name of :data:`JOINT_NAMES`."""
    if name not in JOINT_NAMES:
        raise ValueError(f"unknown joint {name!r}; known: {', '.join(JOINT_NAMES)}")
    return name.rstrip("12345")


def finger_of(name: str) -> int:
    """1 (thumb) ... 5 (little finger)."""
    joint_type(name)
    return int(name[-1])


def distal_bone_width_mm(name: str) -> float:
    """Typical width (mm) of the base of the joint's distal bone: the upper bone of its crop."""
    return BASE_WIDTH_MM[JOINT_BONES[name][1]]
