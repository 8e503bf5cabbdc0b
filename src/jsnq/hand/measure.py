"""Whole-hand radiographs in, every finger joint's narrowing out: :func:`measure_hand`.

Orchestration only: locate the joints (or take the caller's :class:`~jsnq.hand.types.Hand`s),
check that the visits show the same hand, cut matching crops (:mod:`jsnq.hand.crops`), and
measure each joint's crops with :func:`jsnq.measure` (two visits) or :func:`jsnq.series`
(three or more). Each joint is either measured or given a one-line reason; nothing is printed;
``progress(done, total, joint)`` is called after each joint.

Bone split. Every joint's crops are split along the joint space found in their own intensity
profiles (:mod:`jsnq.segment.profile`; the MCP-trained networks miss PIP, DIP, IP and RA
joints): where a crop supports two lines, the pair's fit decides, and an ambiguous choice or a
line outside a joint space flags the joint. The JSW comes from the same profiles; one that
cannot be read is a note, never a number.
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
from ..segment.profile import DISTINCT_PX, ProfileSplit, profile_candidates, profile_line_near, profile_split
from ..version import __version__
from .anatomy import joint_type
from .split import choose_split, nearest_split
from .crops import JointCrops, Resampler, hand_scale_px_per_mm, hand_similarity, joint_crops
from .types import JOINT_NAMES, Hand

__all__ = ["HandMeasurement", "HandSeries", "measure_hand", "measure_hand_series", "measure_joint", "named_crop",
           "segmentation_problem",
           "split_line_problem",
           "joint_centre",
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

#: The validation of each joint type, shown in the report's legend (the figures: docs/hand.md,
#: "Known narrowing rendered into real radiographs", from benchmarks/hand_known.py).
_KNOWN = "validated with known narrowing rendered into real RA and children's radiographs (docs/hand.md)"
VALIDATION = {"MCP": _KNOWN, "PIP": _KNOWN, "DIP": _KNOWN,
              "IP": _KNOWN + "; few joints (a thumb per hand)"}


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


def named_crop(crops: JointCrops, k: int) -> Image:
    """Visit ``k``'s crop as an :class:`~jsnq.io.Image` named after its joint and radiograph (what
    the results and reports show as its source, rather than ``<array>``)."""
    return Image(crops.images[k], None, f"{crops.joint} crop of {crops.boxes[k].source}")


def _with_profile_jsw(m: Any, a: ProfileSplit, b: ProfileSplit) -> Any:
    """The measurement with both visits' profile JSW, a note where one cannot be read, and a
    failure where a split line does not lie in a joint space."""
    notes = [f"no joint space width in the {w} crop (its bone edges were not found)"
             for w, s in (("baseline", a), ("follow-up", b)) if s.jsw is None]
    notes += [f"the {w} crop's joint space width is not positive ({s.jsw.mean_px:.1f} crop px): not a width"
              for w, s in (("baseline", a), ("follow-up", b)) if s.jsw is not None and s.jsw.mean_px <= 0]
    problems = [f"bone split ({w}): {s.problem}" for w, s in (("baseline", a), ("follow-up", b))
                if s.problem is not None]
    return dataclasses.replace(m, jsw_baseline=a.jsw, jsw_followup=b.jsw, reliable=m.reliable and not problems,
                               reasons=(*m.reasons, *problems), notes=(*m.notes, *notes))


def measure_joint(crops: JointCrops, config: MeasureConfig | None = None, i: int = 0, j: int = 1):
    """Measure visits ``i`` -> ``j`` of one joint's crops.

    The bones are split along the joint space found in each visit's crop from its intensity
    profiles, for every joint type; where a crop supports more than one line (a child's growth
    plate beside the joint space), the one the pair supports (:func:`jsnq.hand.split.choose_split`). The
    narrowing is read at the baseline's joint centre carried to the follow-up. A split line that does
    not lie in a joint space makes the result unreliable with the reason; a JSW that cannot be
    read is a note. ``config.segmenter == "network"`` asks for the MCP-trained network instead,
    with its check (:func:`segmentation_problem`); ``"classical"`` for the classical line.

    Returns ``(Measurement, status)``: status ``"profile"``, ``"profile: <why not trusted>"``,
    ``"network"``, ``"network failed: <why>"`` or ``"classical (as configured)"``.
    """
    config = config or MeasureConfig()
    from .. import measure  # the public API (lazily: the pipeline is heavy)

    a, b = named_crop(crops, i), named_crop(crops, j)
    if config.segmenter == "classical":
        return measure(a, b, spacing_mm=crops.spacing_mm, config=config), "classical (as configured)"
    if config.segmenter == "network":
        m = measure(a, b, spacing_mm=crops.spacing_mm, config=config)
        problem = segmentation_problem(m)
        if problem is None:
            return m, "network"
        reason = f"segmentation network failed ({problem})"
        return dataclasses.replace(m, reliable=False, reasons=(*m.reasons, reason)), f"network failed: {problem}"
    choice = choose_split(a, b, profile_candidates(a.array, spacing_mm=crops.spacing_mm),
                          profile_candidates(b.array, spacing_mm=crops.spacing_mm), crops.spacing_mm, config)
    sa, sb, ambiguous = choice.baseline, choice.followup, choice.ambiguous
    m = _with_profile_jsw(choice.measurement, sa, sb)
    if ambiguous is not None:
        m = dataclasses.replace(m, reliable=False, reasons=(*m.reasons, ambiguous))
    why = "; ".join(p for p in (sa.problem, sb.problem, ambiguous) if p)
    return m, "profile" if not why else f"profile: {why}"


def series_joint(crops: JointCrops, dates: Sequence[str] | None, config: MeasureConfig):
    """One joint's :func:`jsnq.series` with the bone split of :func:`measure_joint`: the line
    the first and last visits support best, and in every other visit its nearest candidate;
    every pair read at the visits' joint centres.

    Returns ``(SeriesResult, status)``. Where a visit's split line does not lie in a joint
    space, every visit is flagged with the reason (the trajectory links every visit through
    the others).
    """
    from .. import series  # the public API (lazily: the pipeline is heavy)

    images = [named_crop(crops, k) for k in range(len(crops.images))]
    if config.segmenter in ("classical", "network"):
        s = series(images, dates=dates, spacing_mm=crops.spacing_mm, config=config)
        return s, f"{config.segmenter} (as configured)"
    candidates = [profile_candidates(im.array, spacing_mm=crops.spacing_mm) for im in images]
    choice = choose_split(images[0], images[-1], candidates[0], candidates[-1], crops.spacing_mm, config)
    first = choice.baseline
    splits = [first] + [_same_line(c, im, first, crops.spacing_mm) for c, im in zip(candidates[1:], images[1:])]
    s = series(images, labels=[sp.labels for sp in splits], points=[sp.centre_px for sp in splits], dates=dates,
               spacing_mm=crops.spacing_mm, config=config)
    problems = [f"visit {k}: {sp.problem}" for k, sp in enumerate(splits) if sp.problem is not None]
    if not problems:
        return s, "profile"
    reason = f"bone split ({'; '.join(problems)})"
    t = s.trajectory
    flagged = {k: "; ".join(x for x in (t.flagged_visits.get(k), reason) if x) for k in range(len(images))}
    return dataclasses.replace(s, trajectory=dataclasses.replace(t, flagged_visits=flagged)), f"profile: {reason}"


def _same_line(candidates: Sequence[ProfileSplit], image: Image, first: ProfileSplit,
               spacing_mm: float | None) -> ProfileSplit:
    """A visit's line for the joint line ``first`` of the series' first visit: its own candidate
    nearest it, or, where none lies within :data:`~jsnq.segment.profile.DISTINCT_PX` (the pair
    chose a line off the candidates), its valley nearest ``first``'s row."""
    near = nearest_split(candidates, first)
    if abs(near.centre_px[1] - first.centre_px[1]) <= DISTINCT_PX:
        return near
    return profile_line_near(image.array, first.centre_px[1], spacing_mm=spacing_mm)


def _load(visits: Sequence[ImageLike], spacing_mm: float | None) -> list[Image]:
    """Read the visits; refuse what cannot be measured honestly (one-line JsnqInputError): some
    visits with a pixel spacing and others without, spacings that differ (unless ``spacing_mm``
    decides), or the same image twice."""
    images = [load_image(v, spacing_mm=spacing_mm, name=None) for v in visits]
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
    return images


def _locate(images: Sequence[Image], hands: Sequence[Hand] | None) -> list[Hand]:
    if hands is not None:
        if len(hands) != len(images):
            raise JsnqInputError("hands", f"{len(hands)} hands for {len(images)} visits")
        return list(hands)
    from .locate import find_joints  # lazily: the locator's network loads only when needed
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


def joint_centre(crop: np.ndarray) -> tuple[float, float] | None:
    """The joint-space centre ``(x, y)`` in a crop, from the bone split of
    :func:`jsnq.segment.profile.profile_split`; None when its line does not lie in a joint space."""
    split = profile_split(crop)
    return split.centre_px if split.problem is None else None


def _cut_all(images: Sequence[Image], hands: Sequence[Hand], errors: dict[str, str], spacing: float | None,
             only: Sequence[str] | None = None, workers: int = 1) -> dict[str, JointCrops]:
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
                               hand_maps=maps)
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
        """One flat row per joint (measured or not), in :data:`JOINT_NAMES` order, px in pixels of
        the radiograph: the table of the CLI and the CSV (:func:`jsnq.hand.tables.hand_rows`)."""
        from .tables import hand_rows

        return hand_rows(self)

    def to_dict(self) -> dict[str, Any]:
        return _json_dict(self, pairs=lambda m: m.to_dict())


def _json_dict(result: Any, pairs: Callable[[Any], Any]) -> dict[str, Any]:
    """Per joint: its table rows (radiograph px, as the CSV), crop boxes and, measured, the full
    result in crop px beside its ``crop_zoom``; the joint types' validation once."""
    joints = {}
    rows = result.rows()
    for name in JOINT_NAMES:
        entry: dict[str, Any] = {"type": joint_type(name), "rows": [r for r in rows if r["joint"] == name]}
        if name in result.crops:
            entry["crop_zoom"] = result.crops[name].boxes[0].zoom
            entry["boxes"] = [b.to_dict() for b in result.crops[name].boxes]
        if name in result.joints:
            entry["segmentation"] = result.segmentation.get(name)
            entry["result_units"] = "pixels of the joint's crop (crop px = radiograph px x crop_zoom)"
            entry["result"] = pairs(result.joints[name])
        else:
            entry["error"] = result.errors.get(name)
        joints[name] = entry
    return json_safe({"jsnq_version": __version__, "kind": "hand" if isinstance(result, HandMeasurement) else "hand-series",
                 "sources": list(result.sources), "spacing_mm": result.spacing_mm, "side": result.hands[0].side,
                 "same_hand": dict(result.same_hand), "hands": [h.to_dict() for h in result.hands],
                 "units": "px: pixels of the radiograph; spacing_mm: the radiograph's",
                 "validation": dict(VALIDATION), "joints": joints, "config": result.config.to_dict()})


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
        """One flat row per joint and visit (cumulative narrowing from the first visit, px of the
        radiograph), in :data:`JOINT_NAMES` order; a joint not measured has one row with its reason
        (:func:`jsnq.hand.tables.series_rows`)."""
        from .tables import series_rows

        return series_rows(self)

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
