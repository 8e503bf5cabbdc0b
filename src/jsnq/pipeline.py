"""Orchestration of one pair: baseline + follow-up crops of one joint -> :class:`Measurement`.

:func:`prepare` (load :mod:`jsnq.io`, labels given or from :mod:`jsnq.segment`) -> :func:`fit`
(register :mod:`jsnq.register`, narrowing :mod:`jsnq.jsn`: one :class:`Readings`) ->
:func:`finish` (checks :mod:`jsnq.quality`) -> :class:`~jsnq.results.Measurement`.

No maths lives here, only the order of the steps and the choice of engine and segmenter that
the :class:`~jsnq.config.MeasureConfig` asks for. Series of visits are :mod:`jsnq.longitudinal`,
lists of pairs :mod:`jsnq.batch`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence, Union

import numpy as np

from .config import ENGINES, SEGMENTERS, MeasureConfig, choose, resolve
from .errors import JsnqInputError, WeightsUnavailableError
from .geometry import Similarity, crop_centre, px_to_mm, symmetric_narrowing_px
from .intensity import normalise
from .io import Image, common_spacing, load_image, load_labels
from .jsn import READING_POINT_SD_PX, Narrowing, inverse_consistent_narrowing, narrowing, systematic_se_px
from .jsw import JointSpaceWidth, articular_centre, pair_articular_centre
from .quality import assess, combine_directions, jsw_check, jsw_disagreement, label_check, precision_notes
from .register.classical import Registration, RegistrationOptions, register_bones, register_pair
from .results import BoneMotion, Measurement
from .labels import labels_from_line
from .segment.classical import joint_space_line

__all__ = ["measure", "measure_many", "prepare", "fit", "finish", "Prepared", "Readings", "network_segment",
           "source_of", "reading_point", "ENGINES", "SEGMENTERS", "LABEL_SOURCES"]

ImageLike = Union[str, os.PathLike, np.ndarray, Image]
Point = tuple[float, float]
Inits = tuple[Similarity, Similarity]

#: Where given labels may come from: ``given`` (the caller's: annotations, masks) or
#: ``profile`` (a whole hand's intensity-profile split, :mod:`jsnq.hand.split`).
LABEL_SOURCES = ("given", "profile")


def _shipped_regnet(required: bool):
    """The shipped registration network, or None when ``required`` is False and it cannot load."""
    from .networks import shipped_network

    try:
        return shipped_network("register")
    except WeightsUnavailableError:
        if required:
            raise
        return None


def _register(engine: str, baseline: np.ndarray, followup: np.ndarray, labels: np.ndarray,
              options: RegistrationOptions, inits: Inits | None = None) -> tuple[Registration, str]:
    """Run ``engine`` (``auto`` resolved here) -> (Registration, engine used); ``inits``: the
    network's transforms when already predicted (batched)."""
    inits, used = _network_inits(engine, baseline, followup, labels, inits, options)
    if inits is None:
        return register_bones(baseline, followup, labels, options=options), used
    # The hybrid refines each bone from the network's transform through the classical
    # engine's per-bone levels, skipping its global search.
    return register_bones(baseline, followup, labels, inits=inits, refine=used == "hybrid", options=options), used


def _passes(engine: str, options: RegistrationOptions) -> int | None:
    """The network's cascade passes: the refinement's option for the hybrid, the weights' own
    number (None) for the network alone."""
    return options.network_passes or None if engine != "deep" else None


def _network_inits(engine: str, baseline: np.ndarray, followup: np.ndarray, labels: np.ndarray,
                   inits: Inits | None, options: RegistrationOptions) -> tuple[Inits | None, str]:
    """-> (the network's transforms or None, the engine used) for ``engine`` (``auto`` resolved)."""
    if inits is None and engine != "classical":
        model = _shipped_regnet(required=engine != "auto")
        if model is not None:
            from .register.network import predict_similarities

            inits = predict_similarities(model, baseline, followup, labels, passes=_passes(engine, options))
    if inits is None:
        return None, "classical"
    return inits, "hybrid" if engine == "auto" else engine


def fits_jointly(p: "Prepared", config: MeasureConfig) -> bool:
    """Whether the pair is registered by one inverse-consistent fit (:func:`register_pair`):
    both visits' labels, symmetric, and an engine that refines (not the network alone)."""
    return (p.symmetric and p.followup_labels is not None and config.registration.inverse_consistent
            and config.engine != "deep")


def _anchors(point: Point | None, followup_point: Point | None, lower: Similarity, shape: tuple[int, ...],
             backward_lower: Similarity | None = None) -> tuple[Point, Point]:
    """Both visits' anchors for reading the narrowing both ways at one anatomical place.

    A missing one is the other carried by the lower bone's motion (baseline -> follow-up
    ``lower``, or back by ``backward_lower``, the follow-up -> baseline fit of two separate
    fits, when given); with neither, each visit's crop centre (the narrowing is then read
    half-way between them). Reading the two directions at two crop centres would average two
    places that lie the crops' offset apart.
    """
    if point is None and followup_point is None:
        centre = crop_centre(shape)
        return centre, centre
    if followup_point is None:
        q = lower.apply(np.asarray(point, dtype=float))
        return (float(point[0]), float(point[1])), (float(q[0]), float(q[1]))
    if point is None:
        back = lower.inverse() if backward_lower is None else backward_lower
        q = back.apply(np.asarray(followup_point, dtype=float))
        return (float(q[0]), float(q[1])), (float(followup_point[0]), float(followup_point[1]))
    return point, followup_point


def _digest(image: np.ndarray, labels: np.ndarray) -> bytes:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes() + np.ascontiguousarray(labels).tobytes()).digest()


def swapped_order(p: "Prepared") -> bool:
    """True when the canonical order of the pair is (follow-up, baseline): the visits are always
    fitted in the order of their contents' digests, so that swapping them gives exactly the
    negated narrowing (the fit's result, not merely to its convergence tolerance)."""
    return _digest(p.baseline, p.labels) > _digest(p.followup, p.followup_labels)


def network_segment(image: Image, required: bool):
    """The network's segmentation of ``image``, or None when ``required`` is False and it fails."""
    from .segment.network import segment

    try:
        return segment(image)
    except (WeightsUnavailableError, JsnqInputError, ValueError):
        if required:
            raise
        return None


def measure(baseline: ImageLike, followup: ImageLike, *, baseline_labels: ImageLike | None = None,
            followup_labels: ImageLike | None = None, spacing_mm: float | None = None,
            point: Point | None = None, followup_point: Point | None = None,
            config: MeasureConfig | None = None) -> Measurement:
    """Measure joint space narrowing between a baseline and a follow-up crop of one joint.

    Both crops must show the same joint in canonical orientation (finger up), have the same
    size and, when known, the same pixel spacing: jsnq refuses crops of different sizes
    rather than guessing how they correspond (crop both visits with the same box).

    Args:
        baseline, followup: paths or 2-D arrays [row, col] (or :class:`~jsnq.io.Image`).
        baseline_labels: label image in the baseline frame, 1 = upper bone side, 2 = lower
            bone side, 0 = ignore; or with ``config.split_masks`` a binary mask, non-zero =
            upper side. When None, the joint-space line is found automatically
            (``config.segmenter``).
        followup_labels: the same for the follow-up. With ``config.symmetric`` the follow-up
            is also registered back onto the baseline with them. When None and the network
            segmented the baseline, the network's labels of the follow-up are used.
        spacing_mm: pixel spacing; overrides the files' spacing. Without any, results are
            in pixels and the mm fields are None. When only one visit's file carries a spacing,
            the pair is refused (give ``spacing_mm`` to decide).
        point, followup_point: the joint's anatomical anchor ``(x, y)`` in each crop, where
            the narrowing is evaluated (:func:`~jsnq.geometry.symmetric_narrowing_px`). With
            relative bone rotation the narrowing varies along the joint, so the anchor must
            move with the bones, not with the crop window. Default: each visit's articular
            centre from the network's bone masks (:func:`reading_point`, with or without
            given labels; the narrowing is read half-way between the two); measured one way
            with given labels, the baseline's, carried to the follow-up by the lower bone's
            fit. The crop centre when the network cannot run or the segmenter is ``classical``.
        config: how to measure (:class:`~jsnq.config.MeasureConfig`: engine, segmenter,
            registration options, thresholds, symmetric, check_labels, split_masks); recorded
            in the result. Default: ``MeasureConfig()``.

    Raises:
        JsnqInputError: bad input (one line naming the file and the problem).
        ValueError: ``config`` is not a :class:`~jsnq.config.MeasureConfig`.
    """
    config = resolve(config)
    prepared = prepare(baseline, followup, config, baseline_labels=baseline_labels, followup_labels=followup_labels,
                       spacing_mm=spacing_mm, point=point, followup_point=followup_point)
    return finish(prepared, config, fit(prepared, config))


def _predict_batch(ready: Sequence["Prepared"], config: MeasureConfig) -> dict[tuple[int, int], Inits]:
    """The registration network's transforms for a batch of prepared pairs, run as one batch:
    ``(id(pair), 0)`` -> forward, ``(id(pair), 1)`` -> backward; empty when the engine is
    classical or the network does not load (``auto``)."""
    model = None if config.engine == "classical" or not ready else _shipped_regnet(required=config.engine != "auto")
    if model is None:
        return {}
    from .register.network import predict_similarities_batch

    todo = []
    for p in ready:
        # One inverse-consistent fit needs the network in its canonical order only.
        joint = fits_jointly(p, config)
        if not (joint and swapped_order(p)):
            todo.append(((id(p), 0), (p.baseline, p.followup, p.labels)))
        if p.symmetric and p.followup_labels is not None and (not joint or swapped_order(p)):
            todo.append(((id(p), 1), (p.followup, p.baseline, p.followup_labels)))
    passes = _passes(config.engine, config.registration)
    return dict(zip([key for key, _ in todo], predict_similarities_batch(model, [t for _, t in todo], passes=passes)))


def measure_many(jobs: Sequence[Mapping[str, Any]], *, config: MeasureConfig | None = None,
                 batch_size: int = 16) -> Iterator[Measurement | Exception]:
    """:func:`measure` for many pairs, with the registration network run on batches.

    Args:
        jobs: one mapping per pair with the data arguments of :func:`measure`
            (``baseline``, ``followup`` and optionally ``baseline_labels``, ``followup_labels``,
            ``spacing_mm``, ``point``, ``followup_point``).
        config: how to measure every pair (:class:`~jsnq.config.MeasureConfig`; default
            ``MeasureConfig()``).
        batch_size: pairs per batched forward pass of the registration network.

    Yields:
        per job, in order, its :class:`Measurement` or the exception that stopped it (a
        ``ValueError`` such as :class:`~jsnq.errors.JsnqInputError` for bad input): one bad
        pair does not stop the others.
    """
    config = resolve(config)
    step = max(1, batch_size)
    for start in range(0, len(jobs), step):
        chunk: list[Prepared | Exception] = []
        for job in jobs[start:start + step]:
            try:
                chunk.append(prepare(config=config, **job))
            except Exception as err:  # reported per pair; the batch goes on
                chunk.append(err)
        inits = _predict_batch([p for p in chunk if isinstance(p, Prepared)], config)
        for p in chunk:
            if isinstance(p, Exception):
                yield p
                continue
            try:
                readings = fit(p, config, inits=inits.get((id(p), 0)), backward_inits=inits.get((id(p), 1)))
                result: Measurement | Exception = finish(p, config, readings)
            except Exception as err:  # reported per pair; the batch goes on
                result = err
            yield result


@dataclass
class Prepared:
    """A pair loaded, checked and labelled, ready to register (:func:`prepare`).

    Attributes:
        baseline, followup: each visit's normalised intensities [row, col] (what is registered).
        baseline_source, followup_source: where each visit came from (a path or a name).
        spacing_mm: the pair's pixel spacing, or None.
        labels, followup_labels: each visit's labels (1 = upper side, 2 = lower side); the
            follow-up's None when not given and not segmented.
        segmenter: where the baseline labels came from: ``given``, ``network`` or ``classical``.
        baseline_segmentation, followup_segmentation: the network's segmentation of each visit
            (bone masks, JSW), or None.
        point, followup_point: where the narrowing is read in each visit, or None.
        inputs: the label and spacing inputs as recorded in the result.
        symmetric: measure both ways when both visits' labels are known.
        label_reference: the network's labels of the baseline, to check given ones.
        point_source: ``given``, ``network`` or ``crop centre`` (:data:`~jsnq.jsn.READING_POINT_SD_PX`).
        fit_cache: see :func:`prepare`.
        point_masks: each visit's network bone masks ``(upper, lower)`` (or None) when the
            reading point is found from them: once the lower bone is fitted, the pair's centre
            is found in one frame (:func:`_network_anchors`).
    """

    baseline: np.ndarray
    followup: np.ndarray
    baseline_source: str
    followup_source: str
    spacing_mm: float | None
    labels: np.ndarray
    followup_labels: np.ndarray | None
    segmenter: str
    baseline_segmentation: Any = None
    followup_segmentation: Any = None
    point: Point | None = None
    followup_point: Point | None = None
    inputs: dict = field(default_factory=dict)
    symmetric: bool = True
    label_reference: np.ndarray | None = None
    point_source: str = "crop centre"
    fit_cache: dict | None = field(default=None, repr=False)
    point_masks: tuple[Any, Any] | None = field(default=None, repr=False)


def _cached_segmenter(cache: dict | None):
    """:func:`network_segment` with each visit segmented once (``id(image array) -> result``;
    load_image(Image) makes a new Image around the same array)."""
    cache = {} if cache is None else cache

    def segment(image: Image, required: bool):
        key = id(image.array)
        if key not in cache:
            cache[key] = network_segment(image, required)
        return cache[key]

    return segment


def _load_pair(baseline: ImageLike, followup: ImageLike, spacing_mm: float | None) -> tuple[Image, Image, float | None]:
    """Both visits loaded, of one size, with the pair's spacing."""
    base = load_image(baseline, spacing_mm=spacing_mm, name=None, crop=True)
    fol = load_image(followup, spacing_mm=spacing_mm, name=None, crop=True)
    if base.array.shape != fol.array.shape:
        raise JsnqInputError(fol.source, f"follow-up is {fol.array.shape[0]}x{fol.array.shape[1]} but the baseline is "
                             f"{base.array.shape[0]}x{base.array.shape[1]}; crop both visits to the same size")
    return base, fol, common_spacing(base, fol, spacing_mm=spacing_mm)


def _label_baseline(base: Image, fol: Image, baseline_labels: ImageLike | None, config: MeasureConfig, segment,
                    label_source: str = "given"):
    """-> (the baseline's labels, where they came from, the network's segmentation of each
    visit or None): given labels (from ``label_source``), else the network's
    (``config.segmenter``), else the classical joint-space line."""
    if baseline_labels is not None:
        return (load_labels(baseline_labels, shape=base.array.shape, split_mask=config.split_masks), label_source,
                None, None)
    seg_base = segment(base, config.segmenter == "network") if config.segmenter != "classical" else None
    if seg_base is None:
        return labels_from_line(joint_space_line(base.array), base.array.shape), "classical", None, None
    return seg_base.labels, "network", seg_base, segment(fol, False)


def prepare(baseline: ImageLike, followup: ImageLike, config: MeasureConfig, *,
            baseline_labels: ImageLike | None = None, followup_labels: ImageLike | None = None,
            spacing_mm: float | None = None, point: Point | None = None, followup_point: Point | None = None,
            segment_cache: dict | None = None, fit_cache: dict | None = None,
            label_source: str = "given") -> Prepared:
    """Load, check and label a pair (the first step of :func:`measure`).

    ``label_source`` (one of :data:`LABEL_SOURCES`): where given labels came from, recorded as
    the result's ``segmenter`` and setting the SE's floor (:data:`~jsnq.jsn.SYSTEMATIC_SE_PX`).
    ``segment_cache`` (``id(image array) -> result``) lets a series segment each visit once;
    ``fit_cache`` (a dict kept by the caller) lets it fit each unordered pair once: the one
    inverse-consistent fit is made in the pair's canonical order, so its reverse reuses it.
    """
    choose(label_source, LABEL_SOURCES, "label source")
    segment = _cached_segmenter(segment_cache)
    base, fol, spacing = _load_pair(baseline, followup, spacing_mm)
    labels, used_segmenter, seg_base, seg_fol = _label_baseline(base, fol, baseline_labels, config, segment,
                                                                label_source)
    fol_labels = (load_labels(followup_labels, shape=base.array.shape, split_mask=config.split_masks)
                  if followup_labels is not None else None)
    if fol_labels is None and seg_fol is not None:
        fol_labels = seg_fol.labels
    reference = None
    if config.check_labels and baseline_labels is not None and fol_labels is None and config.segmenter != "classical":
        checked = segment(base, False)
        reference = checked.labels if checked is not None else None
    p = Prepared(baseline=normalise(base.array), followup=normalise(fol.array), baseline_source=base.source,
                 followup_source=fol.source, spacing_mm=spacing, labels=labels, followup_labels=fol_labels,
                 segmenter=used_segmenter, baseline_segmentation=seg_base, followup_segmentation=seg_fol,
                 point=point, followup_point=followup_point,
                 inputs={"baseline_labels": source_of(baseline_labels), "followup_labels": source_of(followup_labels),
                         "spacing_mm": spacing_mm},
                 symmetric=config.symmetric, label_reference=reference,
                 point_source="given" if point is not None or followup_point is not None else "crop centre",
                 fit_cache=fit_cache)
    if point is None and followup_point is None and config.segmenter != "classical":
        # The reading point: the joint's articular centre from the network's bone masks, also
        # when labels are given (split labels do not carry the bones' extent), of both visits
        # when the pair is measured both ways. Each visit's own centre is the fallback; once
        # the lower bone is fitted, the pair's centre is found from both visits' masks in one
        # frame half-way between them (_network_anchors): symmetric in the visits, so swapping
        # them negates the narrowing exactly.
        seg_b = seg_base if seg_base is not None else segment(base, False)
        both_ways = seg_fol is not None or (p.symmetric and p.followup_labels is not None)
        seg_f = (seg_fol if seg_fol is not None else segment(fol, False)) if both_ways else None
        p.point = reading_point(seg_b)
        if both_ways:
            p.followup_point = reading_point(seg_f)
        if p.point is not None or p.followup_point is not None:
            p.point_source = "network"
            p.point_masks = tuple(None if seg is None else (seg.upper_mask, seg.lower_mask) for seg in (seg_b, seg_f))
    return p


def _network_anchors(p: Prepared, lower: Similarity, *, reverse: bool = False) -> tuple[Point, Point] | None:
    """Both visits' reading points, one anatomical place found in one frame from both visits'
    network masks (:func:`jsnq.jsw.pair_articular_centre`) with the lower bone's fit ``lower``
    (baseline -> follow-up; with ``reverse``, follow-up -> baseline, and the points are returned
    in that order), or None when the point did not come from the network's masks."""
    if p.point_masks is None:
        return None
    masks = p.point_masks[::-1] if reverse else p.point_masks
    try:
        return pair_articular_centre(masks[0], masks[1], lower)
    except ValueError:
        return None


def reading_point(seg: Any) -> Point | None:
    """Where the narrowing is read in a visit segmented by the network: the articular centre
    of its bone masks (:func:`jsnq.jsw.articular_centre`), or None when it has none (or the
    network did not run, ``seg=None``). The other visit's is this point carried by the lower
    bone's fit, so that both visits (and every pair of a series) read the narrowing at one
    anatomical place."""
    if seg is None:
        return None
    try:
        return articular_centre(seg.upper_mask, seg.lower_mask)
    except ValueError:
        return None


def source_of(value: Any) -> str | None:
    """A label input as recorded in the results: its path, "<array>", or None."""
    if value is None:
        return None
    if isinstance(value, Image):
        return value.source
    if isinstance(value, np.ndarray):
        return "<array>"
    return os.fsdecode(value)


@dataclass(frozen=True)
class Readings:
    """What a fitting strategy read off a pair (:func:`fit`), baseline -> follow-up.

    Attributes:
        registration: both bones' fits baseline -> follow-up (their diagnostics, for the checks).
        engine: the engine used (``auto`` resolved).
        narrowing: the narrowing reported and its SE, read at ``narrowing.point`` in the baseline.
        followup_point: where it was read in the follow-up (None: carried by the fit).
        forward_px, backward_px: each direction's own narrowing when the pair was measured both
            ways, else None.
        directions_reason: the reason code when the two directions disagree grossly, else None.
    """

    registration: Registration
    engine: str
    narrowing: Narrowing
    followup_point: Point | None
    forward_px: float | None = None
    backward_px: float | None = None
    directions_reason: str | None = None


def _fit_jointly(p: Prepared, config: MeasureConfig, inits: Inits | None, backward_inits: Inits | None) -> Readings:
    """One inverse-consistent fit of the pair (:func:`fits_jointly`), in its canonical order
    (:func:`swapped_order`), read both ways off the same transforms."""
    swap = swapped_order(p)
    visits = [(p.baseline, p.labels, p.point), (p.followup, p.followup_labels, p.followup_point)]
    (first, first_labels, first_point), (second, second_labels, second_point) = visits[::-1] if swap else visits
    options = config.registration
    key = (_digest(first, first_labels), _digest(second, second_labels), config.digest())
    if p.fit_cache is not None and key in p.fit_cache:
        pair, engine = p.fit_cache[key]
    else:
        first_inits, engine = _network_inits(config.engine, first, second, first_labels,
                                             backward_inits if swap else inits, options)
        pair = register_pair(first, second, first_labels, second_labels, inits=first_inits, options=options)
        if p.fit_cache is not None:
            p.fit_cache[key] = pair, engine
    found = _network_anchors(p, pair.forward.lower.transform, reverse=swap)
    first_point, second_point = found if found is not None else _anchors(
        first_point, second_point, pair.forward.lower.transform, first.shape)
    # Both readings and the one fit's SE: the mean of the two directions' errors, with their
    # correlation measured from the paired scores (in the canonical order, so the same both ways).
    joint = inverse_consistent_narrowing(
        (pair.forward.upper.transform, pair.forward.lower.transform),
        (pair.backward.upper.transform, pair.backward.lower.transform),
        (pair.forward.upper.covariance, pair.forward.lower.covariance),
        (pair.backward.upper.covariance, pair.backward.lower.covariance),
        pair.cross_covariance, point=first_point, followup_point=second_point,
        systematic_px=systematic_se_px(p.segmenter, engine), point_sd_px=READING_POINT_SD_PX[p.point_source])
    registrations, readings = (pair.forward, pair.backward), (joint.forward, joint.backward)
    one_way = (symmetric_narrowing_px(*pair.one_way_forward, first_point, second_point),
               symmetric_narrowing_px(*pair.one_way_backward, second_point, first_point))
    if swap:
        registrations, readings, one_way = registrations[::-1], readings[::-1], one_way[::-1]
        first_point, second_point = second_point, first_point
    forward, backward = readings
    # One fit: the narrowing is read both ways off the same transforms (exactly inverse), so
    # the result is antisymmetric and the SE needs no share of a disagreement between two
    # fits. The one-way steps still flag a gross direction dependence.
    both = combine_directions(*one_way, forward.se_px, backward.se_px)
    nar = dataclasses.replace(forward, narrowing_px=0.5 * (forward.narrowing_px - backward.narrowing_px),
                              se_px=joint.se_px)
    return Readings(registrations[0], engine, nar, second_point, *one_way, both.reason)


def _fit_per_bone(p: Prepared, config: MeasureConfig, inits: Inits | None, backward_inits: Inits | None) -> Readings:
    """Per-bone fits baseline -> follow-up, and back with the follow-up's labels when the pair is
    measured both ways (two separate fits, combined by :func:`~jsnq.quality.combine_directions`)."""
    options = config.registration
    reg, engine = _register(config.engine, p.baseline, p.followup, p.labels, options, inits)
    back = None
    if p.symmetric and p.followup_labels is not None:
        back, _ = _register(engine, p.followup, p.baseline, p.followup_labels, options, backward_inits)
    floor = systematic_se_px(p.segmenter, engine)
    place = READING_POINT_SD_PX[p.point_source]
    found = _network_anchors(p, reg.lower.transform)
    if back is None:
        point, followup_point = found if found is not None else (p.point, p.followup_point)
        nar = narrowing(reg.upper.transform, reg.lower.transform, reg.upper.covariance, reg.lower.covariance,
                        point=point, followup_point=followup_point, systematic_px=floor, point_sd_px=place)
        return Readings(reg, engine, nar, followup_point)
    # both directions read at one anatomical place: with the network's masks, the pair's centre
    # found with each direction's lower-bone fit, averaged (so that swapping the visits swaps them)
    found_back = _network_anchors(p, back.lower.transform, reverse=True)
    if found is not None and found_back is not None:
        point, followup_point = ((0.5 * (u[0] + v[0]), 0.5 * (u[1] + v[1]))
                                 for u, v in ((found[0], found_back[1]), (found[1], found_back[0])))
    else:
        point, followup_point = _anchors(p.point, p.followup_point, reg.lower.transform, p.baseline.shape,
                                         back.lower.transform)
    forward = narrowing(reg.upper.transform, reg.lower.transform, reg.upper.covariance, reg.lower.covariance,
                        point=point, followup_point=followup_point, systematic_px=floor, point_sd_px=place)
    backward = narrowing(back.upper.transform, back.lower.transform, back.upper.covariance, back.lower.covariance,
                         point=followup_point, followup_point=point, systematic_px=floor, point_sd_px=place)
    both = combine_directions(forward.narrowing_px, backward.narrowing_px, forward.se_px, backward.se_px)
    nar = dataclasses.replace(forward, narrowing_px=both.narrowing_px, se_px=both.se_px)
    return Readings(reg, engine, nar, followup_point, forward.narrowing_px, backward.narrowing_px, both.reason)


def fit(p: Prepared, config: MeasureConfig, *, inits: Inits | None = None,
        backward_inits: Inits | None = None) -> Readings:
    """Register a prepared pair and read the narrowing off it (the second step of :func:`measure`):
    one inverse-consistent fit when :func:`fits_jointly`, else per-bone fits.

    ``inits``, ``backward_inits``: the network's transforms of each direction when already
    predicted (batched, :func:`measure_many`).
    """
    strategy = _fit_jointly if fits_jointly(p, config) else _fit_per_bone
    try:
        return strategy(p, config, inits, backward_inits)
    except ValueError as err:
        if isinstance(err, (JsnqInputError, WeightsUnavailableError)):
            raise
        raise JsnqInputError(p.baseline_source, f"registration failed: {err}") from None


def finish(p: Prepared, config: MeasureConfig, readings: Readings) -> Measurement:
    """Check what was read off a prepared pair and report it (the last step of :func:`measure`)."""
    reg, nar, spacing = readings.registration, readings.narrowing, p.spacing_mm
    _, reasons = assess({"upper": reg.upper, "lower": reg.lower}, nar.narrowing_px, nar.se_px,
                               config.thresholds)
    label_gap, label_reason = label_check(p.labels, p.followup_labels, p.label_reference, reg.upper.transform,
                                          reg.lower.transform, thresholds=config.thresholds)
    seg_b, seg_f = p.baseline_segmentation, p.followup_segmentation
    jsw_b = _with_spacing(seg_b.jsw if seg_b is not None else None, spacing)
    jsw_f = _with_spacing(seg_f.jsw if seg_f is not None else None, spacing)
    overlap = tuple(r for r in (jsw_check(jsw_b, "baseline"), jsw_check(jsw_f, "follow-up")) if r is not None)
    mean_scale = math.sqrt(reg.upper.transform.scale * reg.lower.transform.scale)
    extra = (readings.directions_reason, label_reason,
             jsw_disagreement(jsw_b, jsw_f, nar.narrowing_px, nar.se_px, scale=mean_scale))
    reasons = (*reasons, *(r for r in extra if r is not None))
    return Measurement(
        narrowing_px=nar.narrowing_px, narrowing_mm=px_to_mm(nar.narrowing_px, spacing),
        narrowing_se_px=nar.se_px, narrowing_se_mm=px_to_mm(nar.se_px, spacing),
        dy_difference_px=nar.dy_difference_px, spacing_mm=spacing,
        upper=BoneMotion.from_fit(reg.upper), lower=BoneMotion.from_fit(reg.lower),
        reliable=not reasons, reasons=reasons, engine=readings.engine, segmenter=p.segmenter,
        baseline_source=p.baseline_source, followup_source=p.followup_source,
        jsw_baseline=jsw_b, jsw_followup=jsw_f,
        point_px=nar.point, followup_point_px=readings.followup_point, point_source=p.point_source,
        narrowing_forward_px=readings.forward_px, narrowing_backward_px=readings.backward_px,
        label_disagreement_px=label_gap, inputs=p.inputs,
        upper_transform=reg.upper.transform, lower_transform=reg.lower.transform,
        baseline=p.baseline.astype(np.float32), followup=p.followup.astype(np.float32),
        labels=p.labels, followup_labels=p.followup_labels,
        config=config, notes=(*precision_notes(nar.se_px, config.thresholds), *overlap),
    )


def _with_spacing(jsw: JointSpaceWidth | None, spacing_mm: float | None) -> JointSpaceWidth | None:
    """The JSW in mm too, when the pair's spacing is known and the JSW was measured without it."""
    if jsw is None or spacing_mm is None or jsw.spacing_mm is not None:
        return jsw
    return dataclasses.replace(jsw, spacing_mm=spacing_mm, mean_mm=px_to_mm(jsw.mean_px, spacing_mm),
                               min_mm=px_to_mm(jsw.min_px, spacing_mm))
