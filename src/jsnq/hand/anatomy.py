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

__all__ = ["BONES", "JOINT_BONES", "SEGMENTS", "BASE_WIDTH_MM", "HEAD_WIDTH_MM", "SHAFT_WIDTH_MM",
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

#: Bone lengths (mm).
LENGTH_MM = {"MC1": 46.0, "PP1": 31.5, "DP1": 23.0,
             "MC2": 68.0, "PP2": 40.0, "MP2": 22.5, "DP2": 17.0,
             "MC3": 65.0, "PP3": 44.5, "MP3": 26.5, "DP3": 18.5,
             "MC4": 58.0, "PP4": 41.5, "MP4": 25.0, "DP4": 18.0,
             "MC5": 53.0, "PP5": 33.0, "MP5": 18.0, "DP5": 16.0}
#: Full width of each bone at its base (proximal end), shaft and head (distal end), mm.
BASE_WIDTH_MM = {"MC1": 15.0, "PP1": 16.0, "DP1": 13.0,
                 "MC2": 14.0, "PP2": 15.0, "MP2": 12.0, "DP2": 9.5,
                 "MC3": 14.0, "PP3": 15.5, "MP3": 12.5, "DP3": 10.0,
                 "MC4": 12.0, "PP4": 14.0, "MP4": 11.5, "DP4": 9.5,
                 "MC5": 12.0, "PP5": 12.5, "MP5": 10.0, "DP5": 8.5}
SHAFT_WIDTH_MM = {"MC1": 10.0, "PP1": 10.0, "DP1": 7.0,
                  "MC2": 8.5, "PP2": 9.5, "MP2": 8.0, "DP2": 5.0,
                  "MC3": 8.5, "PP3": 10.0, "MP3": 8.5, "DP3": 5.5,
                  "MC4": 7.5, "PP4": 9.0, "MP4": 8.0, "DP4": 5.0,
                  "MC5": 7.5, "PP5": 8.0, "MP5": 7.0, "DP5": 4.5}
HEAD_WIDTH_MM = {"MC1": 14.0, "PP1": 13.0, "DP1": 9.0,
                 "MC2": 13.5, "PP2": 12.0, "MP2": 10.0, "DP2": 6.5,
                 "MC3": 14.0, "PP3": 12.5, "MP3": 10.5, "DP3": 7.0,
                 "MC4": 12.5, "PP4": 11.5, "MP4": 10.0, "DP4": 6.5,
                 "MC5": 11.5, "PP5": 10.5, "MP5": 8.5, "DP5": 6.0}

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
