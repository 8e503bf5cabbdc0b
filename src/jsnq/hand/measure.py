"""Whole-hand radiographs in, every finger joint's narrowing out: :func:`measure_hand`.

Orchestration only: locate the joints (or take the caller's :class:`~jsnq.hand.types.Hand`s),
check that the visits show the same hand, cut matching crops (:mod:`jsnq.hand.crops`), and
measure each joint's crops with :func:`jsnq.measure` (two visits) or :func:`jsnq.series`
(three or more). Each joint is either measured or given a one-line reason; nothing is printed;
``progress(done, total, joint)`` is called after each joint.

Segmentation check. The shipped networks were trained on MCP crops only. On every joint the
network's reading of the baseline crop is checked: both bones found, a positive joint space
width at both visits, and a split line in the joint space (its median row within
:data:`SPLIT_TOLERANCE` of the crop centre, where the crop cutter put the joint). A joint that
fails is measured again with the classical joint-space line and flagged unreliable with the
reason: a negative JSW is a failed segmentation, never a reported width.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np

from ..config import MeasureConfig
from ..errors import JsnqInputError, one_line
from ..io import Image, load_image
from ..labels import line_from_labels
from ..results import json_safe
from ..version import __version__
from .anatomy import joint_type
from .crops import JointCrops, Resampler, hand_scale_px_per_mm, hand_similarity, joint_crops
from .types import JOINT_NAMES, Hand

__all__ = ["HandMeasurement", "HandSeries", "measure_hand", "measure_hand_series", "measure_joint", "segmentation_problem",
           "split_line_problem",
           "network_centre",
           "VALIDATION", "SPLIT_TOLERANCE", "MIN_SAME_HAND_NCC", "MIN_SAME_HAND_TEXTURE",
           "MAX_HAND_LOG_SCALE"]

ImageLike = Union[str, os.PathLike, np.ndarray, Image]
Progress = Callable[[int, int, str], None]

#: The network's split line must lie within this fraction of the crop's height of its centre.
SPLIT_TOLERANCE = 0.15
#: Two visits whose finger regions correlate below this (median over the joints) are not
#: taken for the same hand.
MIN_SAME_HAND_NCC = 0.75
#: ... nor two whose fine bone texture, registered, correlates below this (median over the
#: joints; :func:`jsnq.hand.crops.place_followup`'s ``texture_ncc``). Bone outlines look alike
#: in every hand, the trabecular texture does not. Calibrated on few real pairs (MCP2, MCP4,
#: PIP3, DIP5, IP1): the RA hand-pair's two visits 13 months apart give a median of 0.34, two
#: different atlas children 0.03, the hand-pair against an atlas child -0.01. On the hand
#: phantom two different hands of the same size give 0.32 (its bones are too uniform), so
#: the phantom does not test this check; see docs/hand.md.
MIN_SAME_HAND_TEXTURE = 0.2
#: Two visits whose hand sizes (joint layouts) differ by more than this |log scale| are not
#: taken for the same hand (a change of magnification between visits is a few per cent).
MAX_HAND_LOG_SCALE = 0.15

#: Validation status of each joint type (what benchmarks/hand.py measured; see docs/hand.md).
VALIDATION = {
    "MCP": ("validated: the networks were trained on MCP crops; on atlas MCP crops moved by known motions the "
            "narrowing errs by 0.016 px RMS where the segmentation check passes, 0.068 px where only the JSW "
            "failed (benchmarks/hand.py)"),
    "PIP": ("partly validated (networks trained on MCP only): on atlas PIP crops moved by known motions 0.015 px "
            "RMS where the check passes (52 % of crops), 0.029 px where only the JSW failed, 9.5 px with the "
            "classical fallback; on the RA hand-pair the network's JSW is negative at every PIP"),
    "DIP": ("partly validated (networks trained on MCP only): on atlas DIP crops moved by known motions 0.014 px "
            "RMS where the check passes (33 % of crops; split line near the centre in 62 %), 0.038 px where only "
            "the JSW failed; on the RA hand-pair the network's JSW is negative at every DIP"),
    "IP": ("partly validated (networks trained on MCP only; 6 atlas crops): 0.012 px RMS where the check passes, "
           "0.022 px where only the JSW failed"),
}


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


def measure_joint(crops: JointCrops, config: MeasureConfig | None = None, i: int = 0, j: int = 1):
    """Measure visits ``i`` -> ``j`` of one joint's crops with the segmentation check.

    Returns ``(Measurement, status)``: status ``"network"`` when the network's segmentation
    passed :func:`segmentation_problem`; ``"network, JSW failed: <why>"`` when only its JSW
    failed (negative or missing: the labels are kept, the result is flagged unreliable with the
    reason); else ``"classical fallback: <why>"`` (measured with the classical joint-space
    line, flagged unreliable with the reason).
    """
    config = config or MeasureConfig()
    from .. import measure  # the public API (lazily: the pipeline is heavy)

    a, b = crops.images[i], crops.images[j]
    if config.segmenter == "classical":
        return measure(a, b, spacing_mm=crops.spacing_mm, config=config), "classical (as configured)"
    m = measure(a, b, spacing_mm=crops.spacing_mm, config=config)
    problem = segmentation_problem(m)
    if problem is None:
        return m, "network"
    if split_line_problem(m) is None:
        # The bones' masks overlap (or give no width), but the split line between them lies in
        # the joint space: the labels are kept for the registration (on atlas crops with known
        # motions these cases err as little as the rest, see docs/hand.md), the JSW is not
        # trusted and the result is flagged.
        reason = f"segmentation network failed ({problem}); the JSW is not valid, the split line was kept"
        return dataclasses.replace(m, reliable=False, reasons=(*m.reasons, reason)), f"network, JSW failed: {problem}"
    m2 = measure(a, b, spacing_mm=crops.spacing_mm, config=config.replace(segmenter="classical"))
    reason = f"segmentation network failed ({problem}); measured with the classical joint-space line"
    return dataclasses.replace(m2, reliable=False, reasons=(*m2.reasons, reason)), f"classical fallback: {problem}"


def series_joint(crops: JointCrops, dates: Sequence[str] | None, config: MeasureConfig):
    """One joint's :func:`jsnq.series` with the segmentation check of :func:`measure_joint`,
    visit by visit: each visit's network labels (those of the pairs it is the baseline of) must
    have their split line near the crop centre and a JSW > 0.

    Returns ``(SeriesResult, status)``. Where a visit's JSW fails, the labels are kept and every
    visit is flagged with the reason (the trajectory links every visit through the others);
    where a visit's split line fails, the series is measured again with the classical
    joint-space line and every visit is flagged.
    """
    from .. import series  # the public API (lazily: the pipeline is heavy)

    images = list(crops.images)
    s = series(images, dates=dates, spacing_mm=crops.spacing_mm, config=config)
    if config.segmenter == "classical":
        return s, "classical (as configured)"
    split, width = [], []
    for k in range(len(images)):
        m = next((m for (i, _), m in sorted(s.measurements.items()) if i == k), None)
        if m is None:
            continue
        problem = split_line_problem(m)
        if problem is not None:
            split.append(f"visit {k}: {problem}")
            continue
        problem = jsw_problem(m.jsw_baseline, f"visit {k}")
        if problem is not None:
            width.append(problem)
    if split:
        s = series(images, dates=dates, spacing_mm=crops.spacing_mm, config=config.replace(segmenter="classical"))
        reason = f"segmentation network failed ({'; '.join(split)}); measured with the classical joint-space line"
        status = f"classical fallback: {'; '.join(split)}"
    elif width:
        reason = f"segmentation network failed ({'; '.join(width)}); the JSW is not valid, the split line was kept"
        status = f"network, JSW failed: {'; '.join(width)}"
    else:
        return s, "network"
    t = s.trajectory
    flagged = {k: "; ".join(x for x in (t.flagged_visits.get(k), reason) if x) for k in range(len(images))}
    return dataclasses.replace(s, trajectory=dataclasses.replace(t, flagged_visits=flagged)), status


def _load(visits: Sequence[ImageLike], spacing_mm: float | None) -> list[Image]:
    images = [load_image(v, spacing_mm=spacing_mm, name=None) for v in visits]
    spacings = {im.spacing_mm for im in images}
    if len(spacings) > 1 and None not in spacings:
        lo, hi = min(spacings), max(spacings)
        if hi - lo > 0.01 * lo:
            raise JsnqInputError(images[-1].source, f"pixel spacings differ between visits ({lo:g} vs {hi:g} mm); "
                                 "pass --spacing or resample the radiographs")
    return images


def _locate(images: Sequence[Image], hands: Sequence[Hand] | None) -> list[Hand]:
    if hands is not None:
        if len(hands) != len(images):
            raise JsnqInputError("hands", f"{len(hands)} hands for {len(images)} visits")
        return list(hands)
    try:
        from .locate import find_joints  # lazily: the locator's network loads only when needed
    except ImportError:
        raise JsnqInputError(images[0].source, "no joint locator in this installation (jsnq.hand.locate); "
                             "give the joints (hands=, or --landmarks on the command line)") from None
    return [find_joints(im, spacing_mm=im.spacing_mm) for im in images]


def _check_hands(images: Sequence[Image], hands: Sequence[Hand]) -> dict[str, Any]:
    """Same side, a similar size, enough joints; one-line JsnqInputError otherwise."""
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


def _same_hand_verdict(crops: Mapping[str, JointCrops], images: Sequence[Image]) -> None:
    """Raise when the finger regions of a follow-up do not look like the baseline's."""
    for k in range(1, len(images)):
        for key, limit, what in (("ncc", MIN_SAME_HAND_NCC, "finger regions"),
                                 ("texture_ncc", MIN_SAME_HAND_TEXTURE, "bone textures")):
            values = [c.boxes[k].registration.get(key, float("nan")) for c in crops.values() if len(c.boxes) > k]
            values = [v for v in values if math.isfinite(v)]
            if len(values) >= 3 and float(np.median(values)) < limit:
                raise JsnqInputError(images[k].source, f"its {what} do not match the baseline's (median correlation "
                                     f"{np.median(values):.2f} < {limit} over {len(values)} joints): two different hands?")


def network_centre(crop: np.ndarray) -> tuple[float, float] | None:
    """The joint-space centre ``(x, y)`` in a crop: from the segmentation network's bone masks
    when it finds both bones with a positive joint space width, else the classical joint-space
    line's median row over the central half of the columns (at the centre column)."""
    from ..segment.classical import joint_space_line
    from ..segment.network import segment

    try:
        seg = segment(crop)
        if seg.jsw is not None and seg.jsw.mean_px > 0:
            return seg.jsw.centre_px
    except ValueError:  # no bone found, or the weights do not load
        pass
    line = joint_space_line(crop)
    cols = crop.shape[1]
    mid = line[cols // 4: 3 * cols // 4]
    if not np.isfinite(mid).any():
        return None
    return ((cols - 1) / 2.0, float(np.nanmedian(mid)))


def _cut_all(images: Sequence[Image], hands: Sequence[Hand], errors: dict[str, str], spacing: float | None,
             recentre: bool = True, only: Sequence[str] | None = None, workers: int = 1) -> dict[str, JointCrops]:
    arrays = [Resampler(im.array) for im in images]  # each radiograph's spline prepared once
    sources = [im.source for im in images]
    scale = hand_scale_px_per_mm(hands[0])
    maps = [None] + [hand_similarity(hands[0], h)[0] for h in hands[1:]]
    names = []
    for name in JOINT_NAMES:
        if only is not None and name not in only:
            errors[name] = "not requested"
        elif name not in hands[0].joints:
            errors[name] = f"not found in the baseline ({hands[0].missing.get(name, 'not located')})"
        else:
            names.append(name)

    def one(name: str) -> JointCrops | str:
        try:
            return joint_crops(arrays, hands, name, spacing_mm=spacing, sources=sources, scale_px_per_mm=scale,
                               hand_maps=maps, centre_finder=network_centre if recentre else None)
        except ValueError as err:
            return one_line(err)

    if workers > 1 and len(names) > 1:  # joints placed at once, in threads, as they are measured
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=int(workers)) as pool:
            done = dict(zip(names, pool.map(one, names)))
    else:
        done = {name: one(name) for name in names}
    crops: dict[str, JointCrops] = {}
    for name in names:
        if isinstance(done[name], str):
            errors[name] = done[name]
        else:
            crops[name] = done[name]
    return crops


@dataclass(frozen=True)
class HandResult:
    """What a hand's result holds, at two visits or more.

    Attributes:
        joints: joint name -> its :class:`~jsnq.results.Measurement` (two visits) or
            :class:`~jsnq.results.SeriesResult` (three or more), in the crop's pixels
            (``narrowing_mm`` uses the crop's spacing = image spacing / zoom).
        errors: joint name -> one-line reason, for every joint of :data:`JOINT_NAMES` not
            measured (not located, cut off at the image edge, no match, failed).
        hands: each visit's :class:`~jsnq.hand.types.Hand`.
        crops: joint name -> :class:`~jsnq.hand.crops.JointCrops` (boxes in image coordinates).
        segmentation: joint name -> ``"network"`` or the reason for the classical fallback.
        validation: joint name -> its joint type's validation status (:data:`VALIDATION`).
        same_hand: the check that both visits show one hand (side, similarity of the layouts).
        sources: the radiographs' names; spacing_mm their pixel spacing (or None).
        config: the configuration measured with.
    """

    joints: Mapping[str, Any]
    errors: Mapping[str, str]
    hands: tuple[Hand, ...]
    crops: Mapping[str, JointCrops] = field(repr=False)
    segmentation: Mapping[str, str]
    validation: Mapping[str, str]
    same_hand: Mapping[str, Any]
    sources: tuple[str, ...]
    spacing_mm: float | None
    config: MeasureConfig = field(repr=False)


@dataclass(frozen=True)
class HandMeasurement(HandResult):
    """Every finger joint of one hand between two visits (fields as :class:`HandResult`; ``joints``
    maps a joint name to its :class:`~jsnq.results.Measurement`)."""

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per joint (measured or not), in :data:`JOINT_NAMES` order: the table of
        the CLI and the CSV."""
        out = []
        for name in JOINT_NAMES:
            row: dict[str, Any] = {"joint": name, "type": joint_type(name)}
            m = self.joints.get(name)
            crops = self.crops.get(name)
            zoom = crops.boxes[0].zoom if crops is not None else float("nan")
            if m is not None:
                row.update(narrowing_px=m.narrowing_px, narrowing_se_px=m.narrowing_se_px,
                           narrowing_image_px=m.narrowing_px / zoom, narrowing_mm=m.narrowing_mm,
                           narrowing_se_mm=m.narrowing_se_mm, reliable=m.reliable,
                           reasons="; ".join(m.reasons), segmentation=self.segmentation.get(name, ""))
            else:
                row.update(narrowing_px=float("nan"), narrowing_se_px=float("nan"), narrowing_image_px=float("nan"),
                           narrowing_mm=None, narrowing_se_mm=None, reliable=False,
                           reasons=self.errors.get(name, ""), segmentation="")
            row["validation"] = VALIDATION[joint_type(name)]
            row.update(_box_columns(crops, len(self.sources)))
            out.append(row)
        return out

    def to_dict(self) -> dict[str, Any]:
        return _json_dict(self, pairs=lambda m: m.to_dict())


def _box_columns(crops: JointCrops | None, n_visits: int) -> dict[str, Any]:
    """Each visit's crop box as flat columns (image px, degrees clockwise from up, crop px per image px)."""
    out: dict[str, Any] = {}
    for k in range(n_visits):
        box = crops.boxes[k] if crops is not None and k < len(crops.boxes) else None
        out[f"box{k}_x"] = box.centre_xy[0] if box else None
        out[f"box{k}_y"] = box.centre_xy[1] if box else None
        out[f"box{k}_angle_deg"] = box.angle_deg if box else None
        out[f"box{k}_zoom"] = box.zoom if box else None
        out[f"box{k}_size"] = box.size[0] if box else None
    return out


def _json_dict(result: Any, pairs: Callable[[Any], Any]) -> dict[str, Any]:
    joints = {}
    for name in JOINT_NAMES:
        entry: dict[str, Any] = {"type": joint_type(name), "validation": VALIDATION[joint_type(name)]}
        if name in result.crops:
            entry["boxes"] = [b.to_dict() for b in result.crops[name].boxes]
        if name in result.joints:
            entry["segmentation"] = result.segmentation.get(name)
            entry["result"] = pairs(result.joints[name])
        else:
            entry["error"] = result.errors.get(name)
        joints[name] = entry
    return json_safe({"jsnq_version": __version__, "kind": "hand" if isinstance(result, HandMeasurement) else "hand-series",
                 "sources": list(result.sources), "spacing_mm": result.spacing_mm, "side": result.hands[0].side,
                 "same_hand": dict(result.same_hand), "hands": [h.to_dict() for h in result.hands],
                 "joints": joints, "config": result.config.to_dict()})


def _joint_list(joints: Sequence[str] | None) -> tuple[str, ...] | None:
    if joints is None:
        return None
    unknown = [j for j in joints if j not in JOINT_NAMES]
    if unknown:
        raise ValueError(f"unknown joint(s) {', '.join(map(repr, unknown))}; known: {', '.join(JOINT_NAMES)}")
    return tuple(joints)


def _prepare(visits: Sequence[ImageLike], spacing_mm: float | None, hands: Sequence[Hand] | None,
             joints: Sequence[str] | None = None, workers: int = 1):
    only = _joint_list(joints)
    images = _load(visits, spacing_mm)
    found = _locate(images, hands)
    same = _check_hands(images, found)
    spacing = next((im.spacing_mm for im in images if im.spacing_mm is not None), None)
    errors: dict[str, str] = {}
    crops = _cut_all(images, found, errors, spacing, only=only, workers=workers)
    _same_hand_verdict(crops, images)
    return images, found, same, spacing, errors, crops


def measure_hand(baseline: ImageLike, followup: ImageLike, *, spacing_mm: float | None = None,
                 config: MeasureConfig | None = None, hands: Sequence[Hand] | None = None,
                 progress: Progress | None = None, joints: Sequence[str] | None = None,
                 workers: int = 1) -> HandMeasurement:
    """Measure every finger joint of one hand between two whole-hand radiographs.

    Args:
        baseline, followup: paths, 2-D arrays ``[row, col]`` or :class:`~jsnq.io.Image` s of the
            same hand (PA view), at the same pixel spacing.
        spacing_mm: pixel spacing of both (overrides the files'); without any, mm are None.
        config: how each joint is measured (:class:`~jsnq.config.MeasureConfig`).
        hands: the two visits' :class:`~jsnq.hand.types.Hand` s; default: found by
            :func:`jsnq.hand.locate.find_joints`.
        progress: called as ``progress(done, total, joint)`` after each joint.
        joints: measure only these (names of :data:`JOINT_NAMES`); the others are reported
            ``"not requested"``. Default: all.
        workers: joints measured at once, in threads (numpy, scipy and torch release the GIL
            in their heavy loops); the results do not depend on it.

    Raises:
        JsnqInputError: a bad image, no hand found, or visits that are not the same hand
            (left against right, another size, finger regions that do not match).
    """
    config = config or MeasureConfig()
    images, found, same, spacing, errors, crops = _prepare([baseline, followup], spacing_mm, hands, joints, workers)
    joints: dict[str, Any] = {}
    segmentation: dict[str, str] = {}
    names = list(crops)
    def one(name: str):
        try:
            return measure_joint(crops[name], config)
        except ValueError as err:
            return one_line(err)

    if workers > 1 and len(names) > 1:
        from concurrent.futures import ThreadPoolExecutor, as_completed

        with ThreadPoolExecutor(max_workers=int(workers)) as pool:
            futures = {pool.submit(one, name): name for name in names}
            results = {}
            for k, fut in enumerate(as_completed(futures)):
                results[futures[fut]] = fut.result()
                if progress is not None:
                    progress(k + 1, len(names), futures[fut])
    else:
        results = {}
        for k, name in enumerate(names):
            results[name] = one(name)
            if progress is not None:
                progress(k + 1, len(names), name)
    for name in names:  # in JOINT_NAMES order, whatever order they finished in
        if isinstance(results[name], str):
            errors[name] = results[name]
        else:
            joints[name], segmentation[name] = results[name]
    return HandMeasurement(joints=joints, errors=errors, hands=tuple(found), crops=crops, segmentation=segmentation,
                           validation={n: VALIDATION[joint_type(n)] for n in JOINT_NAMES}, same_hand=same,
                           sources=tuple(im.source for im in images), spacing_mm=spacing, config=config)


@dataclass(frozen=True)
class HandSeries(HandResult):
    """Every finger joint of one hand across three or more visits: one
    :class:`~jsnq.results.SeriesResult` per joint (fields as :class:`HandResult`, and the dates)."""

    dates: tuple[str, ...] | None = None

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per joint and visit (cumulative narrowing from the first visit), in
        :data:`JOINT_NAMES` order; a joint not measured has one row with its reason."""
        out = []
        for name in JOINT_NAMES:
            s = self.joints.get(name)
            boxes = _box_columns(self.crops.get(name), len(self.sources))
            base = {"joint": name, "type": joint_type(name), "validation": VALIDATION[joint_type(name)]}
            if s is None:
                out.append({**base, "visit": None, "date": None, "narrowing_px": float("nan"),
                            "se_px": float("nan"), "narrowing_mm": None, "se_mm": None, "reliable": False,
                            "reasons": self.errors.get(name, ""), **boxes})
                continue
            t = s.trajectory
            pairs_ok = all(p.reliable for p in t.pairs)
            for k in range(len(self.sources)):
                flag = t.flagged_visits.get(k)
                out.append({**base, "visit": k, "date": None if self.dates is None else self.dates[k],
                            "narrowing_px": float(t.narrowing_px[k]), "se_px": float(t.se_px[k]),
                            "narrowing_mm": None if s.spacing_mm is None else float(t.narrowing_px[k]) * s.spacing_mm,
                            "se_mm": None if s.spacing_mm is None else float(t.se_px[k]) * s.spacing_mm,
                            "reliable": pairs_ok and flag is None,
                            "reasons": flag or ("" if pairs_ok else "a pair of visits was flagged unreliable"),
                            **boxes})
        return out

    def to_dict(self) -> dict[str, Any]:
        d = _json_dict(self, pairs=lambda s: s.to_dict())
        d["dates"] = None if self.dates is None else list(self.dates)
        return d


def measure_hand_series(visits: Sequence[ImageLike], *, dates: Sequence[str] | None = None,
                        spacing_mm: float | None = None, config: MeasureConfig | None = None,
                        hands: Sequence[Hand] | None = None, progress: Progress | None = None,
                        joints: Sequence[str] | None = None) -> HandSeries:
    """:func:`measure_hand` for 2 or more visits in time order: one series per joint.

    Every visit's crop of a joint is placed by registering its finger region to the first
    visit's; :func:`jsnq.series` then measures every ordered pair and fits one trajectory, with
    the segmentation check of :func:`measure_joint` (:func:`series_joint`).
    """
    config = config or MeasureConfig()
    if len(visits) < 2:
        raise JsnqInputError("visits", f"needs at least two visits, got {len(visits)}")
    images, found, same, spacing, errors, crops = _prepare(list(visits), spacing_mm, hands, joints)
    joints: dict[str, Any] = {}
    segmentation: dict[str, str] = {}
    names = list(crops)
    for k, name in enumerate(names):
        c = crops[name]
        try:
            joints[name], segmentation[name] = series_joint(c, dates, config)
        except ValueError as err:
            errors[name] = one_line(err)
        if progress is not None:
            progress(k + 1, len(names), name)
    return HandSeries(joints=joints, errors=errors, hands=tuple(found), crops=crops, segmentation=segmentation,
                      validation={n: VALIDATION[joint_type(n)] for n in JOINT_NAMES}, same_hand=same,
                      sources=tuple(im.source for im in images), spacing_mm=spacing, config=config,
                      dates=None if dates is None else tuple(map(str, dates)))
