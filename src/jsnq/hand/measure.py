"""Whole-hand radiographs in, every finger joint's narrowing out: :func:`measure_hand`.

Orchestration only: locate the joints (or take the caller's :class:`~jsnq.hand.types.Hand`s),
check that the visits show the same hand (:mod:`jsnq.hand.checks`), cut matching crops
(:mod:`jsnq.hand.crops`), measure each joint's crops with :func:`jsnq.measure` (two visits) or
:func:`jsnq.series` (three or more), and collect them in a
:class:`~jsnq.hand.results.HandMeasurement` or :class:`~jsnq.hand.results.HandSeries`. Each
joint is either measured or given a one-line reason; nothing is printed;
``progress(done, total, joint)`` is called after each joint.

Bone split. Every joint's crops are split along the joint space found in their own intensity
profiles (:mod:`jsnq.segment.profile`; the MCP-trained networks miss PIP, DIP, IP and RA
joints), moved to where the two visits' motions part when the pair shows the joint elsewhere
(:mod:`jsnq.hand.split`); a line outside a joint space flags the joint. The JSW comes from the same profiles; one that
cannot be read is a note, never a number.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Sequence, Union

import numpy as np

from ..config import MeasureConfig
from ..errors import JsnqInputError, one_line
from ..io import Image, load_image
from ..segment.profile import DISTINCT_PX, ProfileSplit, profile_candidates, profile_line_near, profile_split
from .anatomy import joint_type
from .checks import (SplitCheck, SplitStatus, check_hands, check_same_hand, check_visits, joint_line_problem,
                     segmentation_problem)
from .crops import JointCrops, Resampler, hand_scale_px_per_mm, hand_similarity, joint_crops
from .results import VALIDATION, HandMeasurement, HandSeries
from .split import choose_split, nearest_split, split_config
from .types import JOINT_NAMES, Hand

__all__ = ["measure_hand", "measure_hand_series", "measure_joint", "series_joint", "named_crop", "joint_centre"]

ImageLike = Union[str, os.PathLike, np.ndarray, Image]
Progress = Callable[[int, int, str], None]


def named_crop(crops: JointCrops, k: int) -> Image:
    """Visit ``k``'s crop as an :class:`~jsnq.io.Image` named after its joint and radiograph (what
    the results and reports show as its source, rather than ``<array>``)."""
    return Image(crops.images[k], None, f"{crops.joint} crop of {crops.boxes[k].source}")


def _with_profile_jsw(m: Any, a: ProfileSplit, b: ProfileSplit, misplaced: str | None = None) -> Any:
    """The measurement with both visits' profile JSW, a note where one cannot be read, and a
    failure where a split line does not lie in a joint space, or (``misplaced``) not in this
    joint's."""
    notes = [f"no joint space width in the {w} crop (its bone edges were not found)"
             for w, s in (("baseline", a), ("follow-up", b)) if s.jsw is None]
    notes += [f"the {w} crop's joint space width is not positive ({s.jsw.mean_px:.1f} crop px): not a width"
              for w, s in (("baseline", a), ("follow-up", b)) if s.jsw is not None and s.jsw.mean_px <= 0]
    problems = [f"bone split ({w}): {s.problem}" for w, s in (("baseline", a), ("follow-up", b))
                if s.problem is not None]
    problems += [f"bone split: {misplaced}"] if misplaced else []
    return dataclasses.replace(m, jsw_baseline=a.jsw, jsw_followup=b.jsw, reliable=m.reliable and not problems,
                               reasons=(*m.reasons, *problems), notes=(*m.notes, *notes))


def measure_joint(crops: JointCrops, config: MeasureConfig | None = None, i: int = 0,
                  j: int = 1) -> tuple[Any, SplitCheck]:
    """Measure visits ``i`` -> ``j`` of one joint's crops.

    The bones are split along the joint space found in each visit's crop from its intensity
    profiles, for every joint type, or where the pair's motions part when they show the joint
    elsewhere (a child's growth plate, a landmark mm off: :func:`jsnq.hand.split.choose_split`). The
    narrowing is read at the baseline's joint centre carried to the follow-up. A split line that does
    not lie in a joint space makes the result unreliable with the reason; a JSW that cannot be
    read is a note. ``config.segmenter == "network"`` asks for the MCP-trained network instead,
    with its check (:func:`segmentation_problem`); ``"classical"`` for the classical line.

    Returns ``(Measurement, SplitCheck)``: :class:`~jsnq.hand.checks.SplitStatus` ``PROFILE``,
    ``PROFILE_FLAGGED`` (with why), ``NETWORK``, ``NETWORK_FAILED`` (with why) or ``CLASSICAL``.
    """
    config = config or MeasureConfig()
    from .. import measure  # the public API (lazily: the pipeline is heavy)

    a, b = named_crop(crops, i), named_crop(crops, j)
    if config.segmenter == "classical":
        return measure(a, b, spacing_mm=crops.spacing_mm, config=config), SplitCheck(SplitStatus.CLASSICAL)
    if config.segmenter == "network":
        m = measure(a, b, spacing_mm=crops.spacing_mm, config=config)
        problem = segmentation_problem(m)
        if problem is None:
            return m, SplitCheck(SplitStatus.NETWORK)
        m = dataclasses.replace(m, reliable=False, reasons=(*m.reasons, f"segmentation network failed ({problem})"))
        return m, SplitCheck(SplitStatus.NETWORK_FAILED, problem)
    choice = choose_split(a, b, profile_candidates(a.array, spacing_mm=crops.spacing_mm),
                          profile_candidates(b.array, spacing_mm=crops.spacing_mm), crops.spacing_mm, config)
    sa, sb = choice.baseline, choice.followup
    misplaced = joint_line_problem(crops, sa.centre_px)
    m = _with_profile_jsw(choice.measurement, sa, sb, misplaced)
    why = "; ".join(p for p in (sa.problem, sb.problem, misplaced) if p)
    return m, SplitCheck(SplitStatus.PROFILE_FLAGGED, why) if why else SplitCheck(SplitStatus.PROFILE)


def series_joint(crops: JointCrops, dates: Sequence[str] | None, config: MeasureConfig) -> tuple[Any, SplitCheck]:
    """One joint's :func:`jsnq.series` with the bone split of :func:`measure_joint`: the lines
    the first and last visits support best, and in every other visit its candidate nearest the
    first's;
    every pair read at the visits' joint centres.

    Returns ``(SeriesResult, SplitCheck)``. Where a visit's split line does not lie in a joint
    space, every visit is flagged with the reason (the trajectory links every visit through
    the others).
    """
    from .. import series  # the public API (lazily: the pipeline is heavy)

    images = [named_crop(crops, k) for k in range(len(crops.images))]
    if config.segmenter in ("classical", "network"):
        s = series(images, dates=dates, spacing_mm=crops.spacing_mm, config=config)
        as_configured = SplitStatus.CLASSICAL if config.segmenter == "classical" else SplitStatus.NETWORK_AS_CONFIGURED
        return s, SplitCheck(as_configured)
    candidates = [profile_candidates(im.array, spacing_mm=crops.spacing_mm) for im in images]
    choice = choose_split(images[0], images[-1], candidates[0], candidates[-1], crops.spacing_mm, config)
    first = choice.baseline
    middle = [_same_line(c, im, first, crops.spacing_mm) for c, im in zip(candidates[1:-1], images[1:-1])]
    splits = [first, *middle, choice.followup]  # the last visit's line as the pair found it
    s = series(images, labels=[sp.labels for sp in splits], points=[sp.centre_px for sp in splits], dates=dates,
               spacing_mm=crops.spacing_mm, config=split_config(config), label_source="profile")
    problems = [f"visit {k}: {sp.problem}" for k, sp in enumerate(splits) if sp.problem is not None]
    misplaced = joint_line_problem(crops, first.centre_px)
    problems += [misplaced] if misplaced else []
    if not problems:
        return s, SplitCheck(SplitStatus.PROFILE)
    reason = f"bone split ({'; '.join(problems)})"
    t = s.trajectory
    flagged = {k: "; ".join(x for x in (t.flagged_visits.get(k), reason) if x) for k in range(len(images))}
    s = dataclasses.replace(s, trajectory=dataclasses.replace(t, flagged_visits=flagged))
    return s, SplitCheck(SplitStatus.PROFILE_FLAGGED, reason)


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
    check_visits(images)
    return images


def _locate(images: Sequence[Image], hands: Sequence[Hand] | None) -> list[Hand]:
    if hands is not None:
        if len(hands) != len(images):
            raise JsnqInputError("hands", f"{len(hands)} hands for {len(images)} visits")
        return list(hands)
    from .locate import find_joints  # lazily: the locator's network loads only when needed
    return [find_joints(im, spacing_mm=im.spacing_mm) for im in images]


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
    return _each_joint(names, lambda name: joint_crops(arrays, hands, name, spacing_mm=spacing, sources=sources,
                                                       scale_px_per_mm=scale, hand_maps=maps), errors, workers)


def _each_joint(names: Sequence[str], job: Callable[[str], Any], errors: dict[str, str], workers: int = 1,
                progress: Progress | None = None) -> dict[str, Any]:
    """``job(name)`` for every joint, in ``workers`` threads (numpy, scipy and torch release the
    GIL in their heavy loops), ``progress`` after each: name -> its result, in the order of
    ``names`` whatever order they finished in; a ValueError is the joint's one-line error."""
    def one(name: str) -> Any:
        try:
            return job(name)
        except ValueError as err:
            return _Failed(one_line(err))

    done: dict[str, Any] = {}
    if workers > 1 and len(names) > 1:
        from concurrent.futures import ThreadPoolExecutor, as_completed

        with ThreadPoolExecutor(max_workers=int(workers)) as pool:
            futures = {pool.submit(one, name): name for name in names}
            for k, fut in enumerate(as_completed(futures)):
                done[futures[fut]] = fut.result()
                if progress is not None:
                    progress(k + 1, len(names), futures[fut])
    else:
        for k, name in enumerate(names):
            done[name] = one(name)
            if progress is not None:
                progress(k + 1, len(names), name)
    out = {}
    for name in names:
        if isinstance(done[name], _Failed):
            errors[name] = done[name].reason
        else:
            out[name] = done[name]
    return out


@dataclasses.dataclass(frozen=True)
class _Failed:
    reason: str


def _joint_list(joints: Sequence[str] | None) -> tuple[str, ...] | None:
    if joints is None:
        return None
    unknown = [j for j in joints if j not in JOINT_NAMES]
    if unknown:
        raise ValueError(f"unknown joint(s) {', '.join(map(repr, unknown))}; known: {', '.join(JOINT_NAMES)}")
    return tuple(joints)


def _prepare(visits: Sequence[ImageLike], spacing_mm: float | None, hands: Sequence[Hand] | None,
             joints: Sequence[str] | None = None, workers: int = 1) -> dict[str, Any]:
    """Load, locate, check and cut: the fields of a :class:`~jsnq.hand.results.HandResult` but
    its joints, their statuses and the config (``errors`` holds every joint not cut)."""
    only = _joint_list(joints)
    images = _load(visits, spacing_mm)
    found = _locate(images, hands)
    same = check_hands(images, found)
    spacing = next((im.spacing_mm for im in images if im.spacing_mm is not None), None)
    errors: dict[str, str] = {}
    crops = _cut_all(images, found, errors, spacing, only=only, workers=workers)
    check_same_hand(crops, images)
    return dict(errors=errors, hands=tuple(found), crops=crops,
                validation={n: VALIDATION[joint_type(n)] for n in JOINT_NAMES}, same_hand=same,
                sources=tuple(im.source for im in images), spacing_mm=spacing)


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
        workers: joints measured at once, in threads; the results do not depend on it.

    Raises:
        JsnqInputError: a bad image, no hand found, or visits that are not the same hand
            (left against right, another size, finger regions that do not match).
    """
    config = config or MeasureConfig()
    common = _prepare([baseline, followup], spacing_mm, hands, joints, workers)
    crops = common["crops"]
    done = _each_joint(list(crops), lambda name: measure_joint(crops[name], config), common["errors"], workers,
                       progress)
    return HandMeasurement(joints={n: m for n, (m, _) in done.items()},
                           segmentation={n: status for n, (_, status) in done.items()}, config=config, **common)


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
    common = _prepare(list(visits), spacing_mm, hands, joints)
    crops = common["crops"]
    done = _each_joint(list(crops), lambda name: series_joint(crops[name], dates, config), common["errors"],
                       progress=progress)
    return HandSeries(joints={n: s for n, (s, _) in done.items()},
                      segmentation={n: status for n, (_, status) in done.items()}, config=config,
                      dates=None if dates is None else tuple(map(str, dates)), **common)
