"""The whole-hand checks: are the visits one hand, and can a joint's bone split be trusted.

* :class:`SplitStatus` / :class:`SplitCheck`: how a joint's bones were split and whether the
  split is trusted, with the reason when it is not (what ``HandMeasurement.segmentation``
  holds, and what the tables and JSON write).
* :func:`segmentation_problem` (:func:`split_line_problem`, :func:`jsw_problem`): why the
  segmentation network's split of a joint is not trusted.
* :func:`check_visits`, :func:`check_hands`, :func:`check_same_hand`: visits that cannot be
  measured as one hand are refused with a one-line :class:`~jsnq.errors.JsnqInputError`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import JsnqInputError
from ..io import Image
from ..labels import line_from_labels
from .anatomy import distal_bone_width_mm
from .crops import TARGET_BASE_WIDTH_PX, JointCrops, hand_similarity
from .types import Hand

__all__ = ["SplitStatus", "SplitCheck", "segmentation_problem", "split_line_problem", "jsw_problem",
           "line_offset_mm", "joint_line_problem", "MAX_LINE_OFFSET_MM", "check_visits", "check_hands", "check_same_hand",
           "SPLIT_TOLERANCE", "MIN_SAME_HAND_NCC", "MIN_SAME_HAND_TEXTURE", "MAX_HAND_LOG_SCALE"]

#: The network's split line must lie within this fraction of the crop's height of its centre.
SPLIT_TOLERANCE = 0.15
#: Two visits whose finger regions correlate below this (median over the joints) are not
#: taken for the same hand.
MIN_SAME_HAND_NCC = 0.75
#: ... nor two whose fine bone texture, registered, correlates below this (median over the
#: joints; :func:`jsnq.hand.crops.place_followup`'s ``texture_ncc``). Bone outlines look alike
#: in every hand, the trabecular texture does not. Calibrated on few real pairs; the phantom's
#: bones are too uniform to test it (docs/hand.md).
MIN_SAME_HAND_TEXTURE = 0.2
#: Two visits whose hand sizes (joint layouts) differ by more than this |log scale| are not
#: taken for the same hand (a change of magnification between visits is a few per cent).
MAX_HAND_LOG_SCALE = 0.15
#: A joint line found further than this (mm of typical anatomy, along the finger) from where the
#: located joint puts it is not taken for that joint's space: beyond the locator's errors
#: (docs/locate.md, at most 5.8 mm) and a joint space's width (1-2 mm).
MAX_LINE_OFFSET_MM = 6.0


class SplitStatus(enum.StrEnum):
    """How a joint's bones were split; the value is what the CSV and JSON write."""

    #: Along the joint space in the crops' intensity profiles, every line in a joint space.
    PROFILE = "profile"
    #: As PROFILE, but a visit's line is not in a joint space.
    PROFILE_FLAGGED = "profile flagged"
    #: By the segmentation network (``segmenter="network"``), its check passed.
    NETWORK = "network"
    #: By the segmentation network, its check failed (:func:`segmentation_problem`).
    NETWORK_FAILED = "network failed"
    #: By the segmentation network as configured, unchecked (a series).
    NETWORK_AS_CONFIGURED = "network (as configured)"
    #: By the classical joint-space line (``segmenter="classical"``), unchecked.
    CLASSICAL = "classical (as configured)"


_NOT_TRUSTED = (SplitStatus.PROFILE_FLAGGED, SplitStatus.NETWORK_FAILED)


@dataclass(frozen=True)
class SplitCheck:
    """A joint's :class:`SplitStatus` and, where the split is not trusted, why (crop px)."""

    status: SplitStatus
    reason: str = ""

    def __post_init__(self) -> None:
        if bool(self.reason) == self.trusted:
            raise ValueError(f"a {self.status.value!r} split {'has no' if self.trusted else 'needs a'} reason")

    @property
    def trusted(self) -> bool:
        """False where the split failed its check: the joint's JSW is then not a width."""
        return self.status not in _NOT_TRUSTED

    def __str__(self) -> str:
        return f"{self.status.value}: {self.reason}" if self.reason else self.status.value


def segmentation_problem(m: Any) -> str | None:
    """Why the network's segmentation behind a :class:`~jsnq.results.Measurement` is not
    trusted, or None: not the network's, no JSW, a JSW <= 0 at either visit, or a split line
    away from the crop centre. (:func:`split_line_problem` is the part that decides whether
    its labels can still be used.)"""
    problem = split_line_problem(m)
    if problem is not None:
        return problem
    return jsw_problem(m.jsw_baseline, "baseline") or jsw_problem(m.jsw_followup, "follow-up")


def jsw_problem(jsw: Any, which: str) -> str | None:
    """Why one crop's JSW from the network's masks is not a width, or None."""
    if jsw is None or not math.isfinite(jsw.mean_px):
        return f"no joint space width in the {which} crop"
    if jsw.mean_px <= 0:
        return f"negative joint space width in the {which} crop ({jsw.mean_px:.1f} px): the masks overlap"
    return None


def split_line_problem(m: Any) -> str | None:
    """Why the network's split line (its labels) cannot be used, or None: the network did not
    segment both bones, or its split line's median row (central half of the columns) lies more
    than :data:`SPLIT_TOLERANCE` of the crop's height from the centre, where the joint is."""
    if m.segmenter != "network":
        return "the network did not find both bones"
    line = line_from_labels(m.labels)
    rows, cols = m.labels.shape
    mid = line[cols // 4: 3 * cols // 4]
    if not np.isfinite(mid).any():
        return "no split line across the crop's centre"
    row = float(np.nanmedian(mid))
    if abs(row - (rows - 1) / 2.0) > SPLIT_TOLERANCE * rows:
        return f"split line at row {row:.0f}, not in the joint space near the crop centre (row {(rows - 1) / 2:.0f})"
    return None


def line_offset_mm(crops: JointCrops, centre_px: tuple[float, float]) -> float:
    """How far (mm of typical anatomy, + distal) the baseline crop's split centre ``centre_px``
    lies along the finger from the joint-space centre the located joint implies (the crop's
    centre before :func:`~jsnq.hand.crops.recentre` moved it). A crop px is
    ``distal_bone_width_mm / TARGET_BASE_WIDTH_PX`` mm of typical anatomy (the crop's zoom)."""
    box = crops.boxes[0]
    moved = box.registration.get("recentred_crop_px", (0.0, 0.0))
    expected_row = (box.size[0] - 1) / 2.0 - float(moved[1])
    return (expected_row - float(centre_px[1])) * distal_bone_width_mm(crops.joint) / TARGET_BASE_WIDTH_PX


def joint_line_problem(crops: JointCrops, centre_px: tuple[float, float]) -> str | None:
    """Why the baseline's split line is not taken for the joint's space: it lies more than
    :data:`MAX_LINE_OFFSET_MM` from the located joint (:func:`line_offset_mm`); else None."""
    off = line_offset_mm(crops, centre_px)
    if abs(off) > MAX_LINE_OFFSET_MM:
        side = "distal" if off > 0 else "proximal"
        return (f"the joint line found lies {abs(off):.1f} mm {side} of the located joint (more than "
                f"{MAX_LINE_OFFSET_MM:g} mm): not this joint's space")
    return None


def check_visits(images: Sequence[Image]) -> None:
    """Refuse visits that cannot be measured honestly: some with a pixel spacing and others
    without, spacings that differ, or the same image twice."""
    known = [im for im in images if im.spacing_mm is not None]
    if known and len(known) < len(images):
        without = next(im for im in images if im.spacing_mm is None)
        raise JsnqInputError(without.source, f"has no pixel spacing but {known[0].source} has {known[0].spacing_mm:g} "
                             "mm; give the spacing (spacing_mm / --spacing) to use one for every visit")
    if known:
        lo, hi = min(im.spacing_mm for im in known), max(im.spacing_mm for im in known)
        if hi - lo > 0.01 * lo:
            raise JsnqInputError(images[-1].source, f"pixel spacings differ between visits ({lo:g} vs {hi:g} mm); "
                                 "pass --spacing or resample the radiographs")
    for k, im in enumerate(images):
        for j in range(k):
            if im.array.shape == images[j].array.shape and np.array_equal(im.array, images[j].array):
                raise JsnqInputError(im.source, f"visit {k} is the same image as visit {j} ({images[j].source}): "
                                     "two visits of a hand must be two radiographs")


def check_hands(images: Sequence[Image], hands: Sequence[Hand]) -> dict[str, Any]:
    """Same side, a similar size, enough joints (one-line JsnqInputError otherwise); returns
    the check's record: the side and, per follow-up, the similarity of its joint layout."""
    base = hands[0]
    if len(base.joints) < 2:
        raise JsnqInputError(images[0].source, f"no hand found: only {len(base.joints)} finger joint(s) located")
    out: dict[str, Any] = {"side": base.side, "visits": []}
    for k in range(1, len(hands)):
        h = hands[k]
        if h.side != base.side:
            raise JsnqInputError(images[k].source, f"this is a {_side(h.side)} hand but the baseline "
                                 f"({images[0].source}) is a {_side(base.side)} hand: the visits must show the same hand")
        if len(h.joints) < 2:
            raise JsnqInputError(images[k].source, f"no hand found: only {len(h.joints)} finger joint(s) located")
        sim, rms, n = hand_similarity(base, h)
        if abs(math.log(sim.scale)) > MAX_HAND_LOG_SCALE:
            raise JsnqInputError(images[k].source, f"the hand is {sim.scale:.2f} times the baseline's size: "
                                 "not the same hand at the same spacing")
        out["visits"].append({"visit": k, "scale": sim.scale, "angle_deg": sim.angle_deg,
                              "shift_px": [sim.tx, sim.ty], "rms_px": rms, "joints": n})
    return out


def _side(s: str) -> str:
    return {"L": "left", "R": "right"}.get(s, repr(s))


def check_same_hand(crops: Mapping[str, JointCrops], images: Sequence[Image]) -> None:
    """Raise when the finger regions of a follow-up do not look like the baseline's."""
    for k in range(1, len(images)):
        for key, limit, what in (("ncc", MIN_SAME_HAND_NCC, "finger regions"),
                                 ("texture_ncc", MIN_SAME_HAND_TEXTURE, "bone textures")):
            values = [c.boxes[k].registration.get(key, float("nan")) for c in crops.values() if len(c.boxes) > k]
            values = [v for v in values if math.isfinite(v)]
            if len(values) >= 3 and float(np.median(values)) < limit:
                raise JsnqInputError(images[k].source, f"its {what} do not match the baseline's (median correlation "
                                     f"{np.median(values):.2f} < {limit} over {len(values)} joints): two different hands?")
