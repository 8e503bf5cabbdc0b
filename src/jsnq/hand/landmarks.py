"""A :class:`~jsnq.hand.types.Hand` from named landmark points (an annotation, the atlas's CSV).

The finger axis at each joint is the direction from its landmark to the next landmark
distally on the same finger (the next joint, or the fingertip ``TIP<f>`` when given); a distal
joint without a tip takes the axis of the segment below it.
"""

from __future__ import annotations

import math
from typing import Mapping

from .types import JOINT_NAMES, Hand, Joint

__all__ = ["FINGER_CHAINS", "hand_from_points", "mirror_hand", "read_landmarks"]

#: Landmarks of each finger from the wrist outwards (the hand-landmarks names).
FINGER_CHAINS = {1: ("MCP1", "IP1", "TIP1"), **{f: (f"MCP{f}", f"PIP{f}", f"DIP{f}", f"TIP{f}") for f in (2, 3, 4, 5)}}


def _axis_deg(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Direction a -> b, clockwise from image up (degrees)."""
    return math.degrees(math.atan2(b[0] - a[0], -(b[1] - a[1])))


def hand_from_points(points: Mapping[str, tuple[float, float]], *, side: str, shape: tuple[int, int] = (0, 0),
                     spacing_mm: float | None = None, source: str = "<annotation>", score: float = 1.0) -> Hand:
    """Joints of :data:`JOINT_NAMES` found in ``points`` (name -> ``(x, y)`` px), with their axes.

    Raises:
        ValueError: ``side`` is not ``"L"`` or ``"R"``.
    """
    if side not in ("L", "R"):
        raise ValueError(f"side must be one of 'L', 'R'; got {side!r}")
    joints = {}
    for chain in FINGER_CHAINS.values():
        present = [n for n in chain if n in points]
        for k, name in enumerate(present):
            if name not in JOINT_NAMES:
                continue
            p = tuple(map(float, points[name]))
            if k + 1 < len(present):
                axis = _axis_deg(p, tuple(map(float, points[present[k + 1]])))
            elif k > 0:
                axis = _axis_deg(tuple(map(float, points[present[k - 1]])), p)
            else:
                continue  # a lone joint on its finger: no axis, not guessed
            joints[name] = Joint(name, p[0], p[1], axis, float(score))
    missing = {n: "not in the annotation" for n in JOINT_NAMES if n not in joints}
    return Hand(side=side, joints=joints, missing=missing, shape=tuple(shape), spacing_mm=spacing_mm, source=source)


def mirror_hand(hand: Hand, width: int) -> Hand:
    """The hand mirrored left-right in an image ``width`` pixels wide (L <-> R)."""
    joints = {n: Joint(n, width - 1 - j.x, j.y, -j.axis_deg, j.score) for n, j in hand.joints.items()}
    return Hand(side="R" if hand.side == "L" else "L", joints=joints, missing=dict(hand.missing), shape=hand.shape,
                spacing_mm=hand.spacing_mm, source=hand.source)


def read_landmarks(path, *, n_visits: int, side: str, shapes=None, sources=None) -> list[Hand]:
    """Hands from a CSV of ``visit,joint,x,y`` rows (visit 0 = the first image; ``#`` lines are
    comments; ``TIP1``-``TIP5`` rows only give the distal joints' axes).

    Raises:
        JsnqInputError: unreadable file, bad rows, or a visit without any joint.
    """
    import csv
    import os

    from ..errors import JsnqInputError

    name = os.fspath(path)
    pts: list[dict[str, tuple[float, float]]] = [{} for _ in range(n_visits)]
    try:
        with open(name, newline="") as fh:
            rows = list(csv.DictReader(line for line in fh if not line.lstrip().startswith("#")))
    except OSError as err:
        raise JsnqInputError(name, f"cannot read landmarks: {err.strerror or err}") from None
    for k, r in enumerate(rows, start=1):
        try:
            v, joint, x, y = int(r["visit"]), r["joint"].strip(), float(r["x"]), float(r["y"])
        except (KeyError, TypeError, ValueError):
            raise JsnqInputError(name, f"row {k}: expected columns visit,joint,x,y with numbers") from None
        if not 0 <= v < n_visits:
            raise JsnqInputError(name, f"row {k}: visit {v} but there are {n_visits} images")
        pts[v][joint] = (x, y)
    hands = []
    for v, p in enumerate(pts):
        hand = hand_from_points(p, side=side, shape=(shapes[v] if shapes else (0, 0)),
                                source=sources[v] if sources else f"visit {v}")
        if not hand.joints:
            raise JsnqInputError(name, f"no finger joint given for visit {v}")
        hands.append(hand)
    return hands
