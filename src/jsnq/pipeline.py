"""Orchestration of one pair: baseline + follow-up crops of one joint -> :class:`Measurement`.

load (:mod:`jsnq.io`) -> labels (given, :mod:`jsnq.segment`) -> register (:mod:`jsnq.register`)
-> narrowing (:mod:`jsnq.jsn`) -> checks (:mod:`jsnq.quality`) -> :class:`~jsnq.results.Measurement`.

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

from .config import ENGINES, SEGMENTERS, MeasureConfig, resolve
from .errors import JsnqInputError, WeightsUnavailableError
from .geometry import Similarity, crop_centre, px_to_mm, symmetric_narrowing_px
from .intensity import normalise
from .io import Image, common_spacing, load_image, load_labels
from .jsn import READING_POINT_SD_PX, inverse_consistent_narrowing, narrowing, systematic_se_px
from .jsw import JointSpaceWidth, articular_centre
from .quality import (ReliabilityThresholds, assess, combine_directions, jsw_check, jsw_disagreement, label_check,
                      precision_notes)
from .register.classical import RegistrationOptions, register_bones, register_pair
from .results import BoneMotion, Measurement
from .labels import labels_from_line
from .segment.classical import joint_space_line

__all__ = ["measure", "measure_many", "prepare", "finish", "Prepared", "network_segment", "source_of", "reading_point",
           "ENGINES", "SEGMENTERS"]

ImageLike = Union[str, os.PathLike, np.ndarray, Image]


def _shipped_regnet(required: bool):
    """The shipped registration network, or None when ``required`` is False and it cannot load."""
    from .register.network import shipped_regnet

    try:
        return shipped_regnet()
    except WeightsUnavailableError:
        if required:
            raise
        return None


def _register(engine: str, b: np.ndarray, f: np.ndarray, labels: np.ndarray, options: RegistrationOptions,
              inits: tuple[Similarity, Similarity] | None = None):
    """Run ``engine`` (``auto`` resolved here) -> (Registration, engine used); ``inits``: the
    network's transforms when already predicted (batched)."""
    if inits is None and engine != "classical":
        model = _shipped_regnet(required=engine != "auto")
        if model is not None:
            from .register.network import predict_similarities

            inits = predict_similarities(model, b, f, labels, passes=_passes(engine, options))
    if inits is None:
        return register_bones(b, f, labels, options=options), "classical"
    # The hybrid refines each bone from the network's transform through the classical
    # engine's per-bone levels (sigma 2 px, then full resolution), skipping its global search:
    # from the network's ~2 deg / ~2 px the coarse level converges in fewer iterations than
    # full resolution alone.
    used = "hybrid" if engine == "auto" else engine
    return register_bones(b, f, labels, inits=inits, refine=used == "hybrid", options=options), used


def _passes(engine: str, options: RegistrationOptions) -> int | None:
    """The network's cascade passes: the refinement's option for the hybrid, the weights' own
    number (None) for the network alone."""
    return options.network_passes or None if engine != "deep" else None


def _network_inits(engine: str, b: np.ndarray, f: np.ndarray, labels: np.ndarray,
                   inits: tuple[Similarity, Similarity] | None, options: RegistrationOptions):
    """-> (the network's transforms or None, the engine used) for ``engine`` (``auto`` resolved)."""
    if inits is None and engine != "classical":
        model = _shipped_regnet(required=engine != "auto")
        if model is not None:
            from .register.network import predict_similarities

            inits = predict_similarities(model, b, f, labels, passes=_passes(engine, options))
    if inits is None:
        return None, "classical"
    return inits, "hybrid" if engine == "auto" else engine


def fits_jointly(p: "Prepared", config: MeasureConfig) -> bool:
    """Whether the pair is registered by one inverse-consistent fit (:func:`register_pair`):
    both visits' labels, symmetric, and an engine that refines (not the network alone)."""
    return (p.symmetric and p.fol_labels is not None and config.registration.inverse_consistent
            and config.engine != "deep")


def _anchors(point: tuple[float, float] | None, followup_point: tuple[float, float] | None, lower: Similarity,
             shape: tuple[int, ...], backward_lower: Similarity | None = None
             ) -> tuple[tuple[float, float], tuple[float, float]]:
    """Both visits' anchors for reading the narrowing both ways at one anatomical place.

    A missing one is the other carried by the lower bone's motion (baseline -> follow-up
    ``lower``, or back by ``backward_lower``, the follow-up -> baseline fit of two separate
    fits, when given); with neither, each visit's crop centre (the narrowing is then read
    half-way between them). Reading the backward direction at the follow-up's crop centre while the
    forward one is read at the baseline's would average two places that lie the crops' offset
    apart: with a 1 deg relative rotation and a 12 px shift that costs ~0.05 px.
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
    return _digest(p.b, p.labels) > _digest(p.f, p.fol_labels)


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
            point: tuple[float, float] | None = None, followup_point: tuple[float, float] | None = None,
            config: MeasureConfig | None = None, split_masks: bool | None = None, engine: str | None = None,
            segmenter: str | None = None, options: RegistrationOptions | None = None,
            thresholds: ReliabilityThresholds | None = None, symmetric: bool | None = None,
            check_labels: bool | None = None) -> Measurement:
    """Measure joint space narrowing between a baseline and a follow-up crop of one joint.

    Both crops must show the same joint in canonical orientation (finger up), have the same
    size and, when known, the same pixel spacing: jsnq refuses crops of different sizes
    rather than guessing how they correspond (crop both visits with the same box).

    Args:
        baseline, followup: paths or 2-D arrays [row, col] (or :class:`~jsnq.io.Image`).
        baseline_labels: label image in the baseline frame, 1 = upper bone side, 2 = lower
            bone side, 0 = ignore; or with ``split_masks`` a binary mask, non-zero = upper side.
            When None, the joint-space line is found automatically (``segmenter``).
        followup_labels: the same for the follow-up. With ``symmetric`` the follow-up is also
            registered back onto the baseline with them. When None and the network segmented
            the baseline, the network's labels of the follow-up are used.
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
            fit. The crop centre when the network cannot run or ``segmenter="classical"``.
        config: how to measure (:class:`~jsnq.config.MeasureConfig`: engine, segmenter,
            registration options, thresholds, symmetric, check_labels, split_masks); recorded
            in the result. Default: ``MeasureConfig()``.
        split_masks, engine, segmenter, options, thresholds, symmetric, check_labels: the
            same settings one by one, as the API has always taken them (``options`` is
            ``config.registration``); give either these or ``config``.

    Raises:
        JsnqInputError: bad input (one line naming the file and the problem).
    """
    config = resolve(config, split_masks=split_masks, engine=engine, segmenter=segmenter, options=options,
                     thresholds=thresholds, symmetric=symmetric, check_labels=check_labels)
    prepared = prepare(baseline, followup, config, baseline_labels=baseline_labels, followup_labels=followup_labels,
                       spacing_mm=spacing_mm, point=point, followup_point=followup_point)
    return finish(prepared, config)


def measure_many(jobs: Sequence[Mapping[str, Any]], *, config: MeasureConfig | None = None, batch_size: int = 16,
                 engine: str | None = None, segmenter: str | None = None, options: RegistrationOptions | None = None,
                 thresholds: ReliabilityThresholds | None = None) -> Iterator[Measurement | Exception]:
    """:func:`measure` for many pairs, with the registration network run on batches.

    Args:
        jobs: one mapping per pair with the data arguments of :func:`measure`
            (``baseline``, ``followup`` and optionally ``baseline_labels``, ``followup_labels``,
            ``spacing_mm``, ``point``, ``followup_point``).
        config: how to measure every pair (or the settings one by one, as for :func:`measure`).
        batch_size: pairs per batched forward pass of the registration network.

    Yields:
        per job, in order, its :class:`Measurement` or the exception that stopped it (a
        ``ValueError`` such as :class:`~jsnq.errors.JsnqInputError` for bad input): one bad
        pair does not stop the others.
    """
    config = resolve(config, engine=engine, segmenter=segmenter, options=options, thresholds=thresholds)
    step = max(1, batch_size)
    for start in range(0, len(jobs), step):
        chunk: list[Prepared | Exception] = []
        for job in jobs[start:start + step]:
            try:
                chunk.append(prepare(config=config, **job))
            except Exception as err:  # reported per pair; the batch goes on
                chunk.append(err)
        ok = [p for p in chunk if isinstance(p, Prepared)]
        inits: dict[tuple[int, int], tuple[Similarity, Similarity]] = {}
        model = None if config.engine == "classical" or not ok else _shipped_regnet(required=config.engine != "auto")
        if model is not None:
            from .register.network import predict_similarities_batch

            todo = []
            for p in ok:
                # One inverse-consistent fit needs the network in its canonical order only.
                joint = fits_jointly(p, config)
                if not (joint and swapped_order(p)):
                    todo.append(((id(p), 0), (p.b, p.f, p.labels)))
                if p.symmetric and p.fol_labels is not None and (not joint or swapped_order(p)):
                    todo.append(((id(p), 1), (p.f, p.b, p.fol_labels)))
            passes = _passes(config.engine, config.registration)
            for (key, _), init in zip(todo, predict_similarities_batch(model, [t for _, t in todo], passes=passes)):
                inits[key] = init
        for p in chunk:
            if isinstance(p, Exception):
                yield p
                continue
            try:
                result: Measurement | Exception = finish(p, config, inits=inits.get((id(p), 0)),
                                                         backward_inits=inits.get((id(p), 1)))
            except Exception as err:  # reported per pair; the batch goes on
                result = err
            yield result


@dataclass
class Prepared:
    """A pair loaded, checked and labelled, ready to register (:func:`prepare`)."""

    base: Image
    fol: Image
    spacing: float | None
    labels: np.ndarray
    fol_labels: np.ndarray | None
    segmenter: str
    seg_base: Any
    seg_fol: Any
    b: np.ndarray
    f: np.ndarray
    point: tuple[float, float] | None = None
    followup_point: tuple[float, float] | None = None
    inputs: dict = field(default_factory=dict)
    symmetric: bool = True
    label_reference: np.ndarray | None = None  # the network's labels of the baseline, to check given ones
    point_source: str = "crop centre"  # "given", "network" or "crop centre" (READING_POINT_SD_PX)
    fit_cache: dict | None = field(default=None, repr=False)  # see prepare()


def prepare(baseline: ImageLike, followup: ImageLike, config: MeasureConfig, *,
            baseline_labels: ImageLike | None = None, followup_labels: ImageLike | None = None,
            spacing_mm: float | None = None, point: tuple[float, float] | None = None,
            followup_point: tuple[float, float] | None = None, segment_cache: dict | None = None,
            fit_cache: dict | None = None) -> Prepared:
    """Load, check and label a pair (the first half of :func:`measure`).

    ``segment_cache`` (``id(image array) -> result``) lets a series segment each visit once;
    ``fit_cache`` (a dict kept by the caller) lets it fit each unordered pair once: the one
    inverse-consistent fit is made in the pair's canonical order, so its reverse reuses it.
    """
    segmenter = config.segmenter

    cache = {} if segment_cache is None else segment_cache  # each visit segmented once

    def seg(img: Image, required: bool):
        key = id(img.array)  # load_image(Image) makes a new Image around the same array
        if key not in cache:
            cache[key] = network_segment(img, required)
        return cache[key]

    base = load_image(baseline, spacing_mm=spacing_mm, name=None, crop=True)
    fol = load_image(followup, spacing_mm=spacing_mm, name=None, crop=True)
    if base.array.shape != fol.array.shape:
        raise JsnqInputError(fol.source, f"follow-up is {fol.array.shape[0]}x{fol.array.shape[1]} but the baseline is "
                             f"{base.array.shape[0]}x{base.array.shape[1]}; crop both visits to the same size")
    spacing = common_spacing(base, fol, spacing_mm=spacing_mm)
    shape = base.array.shape
    seg_base = seg_fol = None
    if baseline_labels is not None:
        labels = load_labels(baseline_labels, shape=shape, split_mask=config.split_masks)
        used_segmenter = "given"
    else:
        if segmenter != "classical":
            seg_base = seg(base, segmenter == "network")
        if seg_base is not None:
            labels = seg_base.labels
            used_segmenter = "network"
            seg_fol = seg(fol, False)
        else:
            labels = labels_from_line(joint_space_line(base.array), shape)
            used_segmenter = "classical"
    fol_labels = (load_labels(followup_labels, shape=shape, split_mask=config.split_masks)
                  if followup_labels is not None else None)
    if fol_labels is None and seg_fol is not None:
        fol_labels = seg_fol.labels
    reference = None
    if config.check_labels and baseline_labels is not None and fol_labels is None and segmenter != "classical":
        checked = seg(base, False)
        reference = checked.labels if checked is not None else None
    inputs = {"baseline_labels": source_of(baseline_labels), "followup_labels": source_of(followup_labels),
              "spacing_mm": spacing_mm}
    p = Prepared(base, fol, spacing, labels, fol_labels, used_segmenter, seg_base, seg_fol, normalise(base.array),
                 normalise(fol.array), point, followup_point, inputs, config.symmetric, reference,
                 "given" if point is not None or followup_point is not None else "crop centre", fit_cache)
    if point is None and followup_point is None and segmenter != "classical":
        # The reading point: the joint's articular centre from the network's bone masks, also
        # when labels are given (split labels do not carry the bones' extent), of both visits
        # when the pair is measured both ways (read half-way between them: symmetric in the
        # visits, so swapping them negates the narrowing exactly, and under a posture change
        # the two visits' centres, which move along the joint, weigh equally); else the
        # baseline's, carried to the follow-up by the lower bone's fit.
        p.point = reading_point(seg_base if seg_base is not None else seg(base, False))
        if seg_fol is not None or (p.symmetric and p.fol_labels is not None):
            p.followup_point = reading_point(seg_fol if seg_fol is not None else seg(fol, False))
        if p.point is not None or p.followup_point is not None:
            p.point_source = "network"
    return p


def reading_point(seg: Any) -> tuple[float, float] | None:
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


def _fit_jointly(p: "Prepared", config: MeasureConfig, inits: tuple[Similarity, Similarity] | None,
                 backward_inits: tuple[Similarity, Similarity] | None):
    """One inverse-consistent fit of the pair (:func:`fits_jointly`), in its canonical order.

    Returns ``(forward registration, engine used, narrowing, systematic floor, forward and
    backward one-way narrowing, the follow-up's anchor, the directions' reason or None)``.
    """
    b, f, labels, fol_labels, options = p.b, p.f, p.labels, p.fol_labels, config.registration
    swap = swapped_order(p)
    if swap:
        cb, cf, cl, cfl, cpt, cfpt, cinits = f, b, fol_labels, labels, p.followup_point, p.point, backward_inits
    else:
        cb, cf, cl, cfl, cpt, cfpt, cinits = b, f, labels, fol_labels, p.point, p.followup_point, inits
    key = (_digest(cb, cl), _digest(cf, cfl), config.digest())
    if p.fit_cache is not None and key in p.fit_cache:
        pair, used_engine = p.fit_cache[key]
    else:
        cinits, used_engine = _network_inits(config.engine, cb, cf, cl, cinits, options)
        pair = register_pair(cb, cf, cl, cfl, inits=cinits, options=options)
        if p.fit_cache is not None:
            p.fit_cache[key] = pair, used_engine
    cpt, cfpt = _anchors(cpt, cfpt, pair.forward.lower.transform, b.shape)
    floor = systematic_se_px(p.segmenter, used_engine)
    regs = (pair.forward, pair.backward)
    # Both readings and the one fit's SE: the mean of the two directions' errors, with their
    # correlation measured from the paired scores (in the canonical order, so the same both ways).
    joint = inverse_consistent_narrowing(
        (pair.forward.upper.transform, pair.forward.lower.transform),
        (pair.backward.upper.transform, pair.backward.lower.transform),
        (pair.forward.upper.covariance, pair.forward.lower.covariance),
        (pair.backward.upper.covariance, pair.backward.lower.covariance),
        pair.cross_covariance, point=cpt, followup_point=cfpt, systematic_px=floor,
        point_sd_px=READING_POINT_SD_PX[p.point_source])
    nars = [joint.forward, joint.backward]
    ones = [symmetric_narrowing_px(*pair.one_way_forward, cpt, cfpt),
            symmetric_narrowing_px(*pair.one_way_backward, cfpt, cpt)]
    if swap:
        regs, nars, ones = regs[::-1], nars[::-1], ones[::-1]
        cpt, cfpt = cfpt, cpt
    followup_point = cfpt
    reg = regs[0]
    forward, backward = ones
    # One fit: the narrowing is read both ways off the same transforms (exactly inverse),
    # so the result is antisymmetric and the SE needs no share of a disagreement between
    # two fits. The one-way steps still flag a gross direction dependence.
    both = combine_directions(forward, backward, nars[0].se_px, nars[1].se_px)
    nar = dataclasses.replace(nars[0], narrowing_px=0.5 * (nars[0].narrowing_px - nars[1].narrowing_px),
                              se_px=joint.se_px)
    return reg, used_engine, nar, floor, forward, backward, followup_point, both.reason


def finish(p: Prepared, config: MeasureConfig, *, inits: tuple[Similarity, Similarity] | None = None,
           backward_inits: tuple[Similarity, Similarity] | None = None) -> Measurement:
    """Register a prepared pair, read the narrowing off and check it (the second half of :func:`measure`)."""
    base, fol, spacing, labels, used_segmenter = p.base, p.fol, p.spacing, p.labels, p.segmenter
    seg_base, seg_fol, fol_labels, b, f = p.seg_base, p.seg_fol, p.fol_labels, p.b, p.f
    options = config.registration
    floor = None
    forward = backward = None
    followup_point = p.followup_point
    extra: list[str] = []
    try:
        if fits_jointly(p, config):
            reg, used_engine, nar, floor, forward, backward, followup_point, reason = _fit_jointly(
                p, config, inits, backward_inits)
            extra.append(reason)
        else:
            reg, used_engine = _register(config.engine, b, f, labels, options, inits)
            back = None
            if p.symmetric and fol_labels is not None:
                back, _ = _register(used_engine, f, b, fol_labels, options, backward_inits)
    except ValueError as err:
        if isinstance(err, (JsnqInputError, WeightsUnavailableError)):
            raise
        raise JsnqInputError(base.source, f"registration failed: {err}") from None
    if floor is None:
        floor = systematic_se_px(used_segmenter, used_engine)
        point = p.point
        if back is not None:  # both directions read at one anatomical place
            point, followup_point = _anchors(p.point, p.followup_point, reg.lower.transform, b.shape,
                                             back.lower.transform)
        place = READING_POINT_SD_PX[p.point_source]
        nar = narrowing(reg.upper.transform, reg.lower.transform, reg.upper.covariance, reg.lower.covariance,
                        point=point, followup_point=followup_point, systematic_px=floor, point_sd_px=place)
        if back is not None:
            nb = narrowing(back.upper.transform, back.lower.transform, back.upper.covariance, back.lower.covariance,
                           point=followup_point, followup_point=point, systematic_px=floor, point_sd_px=place)
            forward, backward = nar.narrowing_px, nb.narrowing_px
            both = combine_directions(forward, backward, nar.se_px, nb.se_px)
            nar = dataclasses.replace(nar, narrowing_px=both.narrowing_px, se_px=both.se_px)
            extra.append(both.reason)
    reliable, reasons = assess({"upper": reg.upper, "lower": reg.lower}, nar.narrowing_px, nar.se_px,
                               config.thresholds)
    label_gap, label_reason = label_check(labels, fol_labels, p.label_reference, reg.upper.transform,
                                          reg.lower.transform, thresholds=config.thresholds)
    extra.append(label_reason)
    jsw_b = _with_spacing(seg_base.jsw if seg_base is not None else None, spacing)
    jsw_f = _with_spacing(seg_fol.jsw if seg_fol is not None else None, spacing)
    overlap = tuple(r for r in (jsw_check(jsw_b, "baseline"), jsw_check(jsw_f, "follow-up")) if r is not None)
    mean_scale = math.sqrt(reg.upper.transform.scale * reg.lower.transform.scale)
    extra.append(jsw_disagreement(jsw_b, jsw_f, nar.narrowing_px, nar.se_px, scale=mean_scale))
    reasons = (*reasons, *(r for r in extra if r is not None))
    return Measurement(
        narrowing_px=nar.narrowing_px,
        narrowing_mm=px_to_mm(nar.narrowing_px, spacing),
        narrowing_se_px=nar.se_px,
        narrowing_se_mm=px_to_mm(nar.se_px, spacing),
        dy_difference_px=nar.dy_difference_px,
        spacing_mm=spacing,
        upper=BoneMotion.from_fit(reg.upper),
        lower=BoneMotion.from_fit(reg.lower),
        reliable=not reasons,
        reasons=reasons,
        engine=used_engine,
        segmenter=used_segmenter,
        baseline_source=base.source,
        followup_source=fol.source,
        jsw_baseline=jsw_b,
        jsw_followup=jsw_f,
        point_px=nar.point,
        followup_point_px=followup_point,
        narrowing_forward_px=forward,
        narrowing_backward_px=backward,
        label_disagreement_px=label_gap,
        inputs=p.inputs,
        upper_transform=reg.upper.transform,
        lower_transform=reg.lower.transform,
        baseline=b.astype(np.float32),
        followup=f.astype(np.float32),
        labels=labels,
        followup_labels=fol_labels,
        config=config,
        notes=(*precision_notes(nar.se_px, config.thresholds), *overlap),
        point_source=p.point_source,
    )


def _with_spacing(jsw: JointSpaceWidth | None, spacing_mm: float | None) -> JointSpaceWidth | None:
    """The JSW in mm too, when the pair's spacing is known and the JSW was measured without it."""
    if jsw is None or spacing_mm is None or jsw.spacing_mm is not None:
        return jsw
    return dataclasses.replace(jsw, spacing_mm=spacing_mm, mean_mm=px_to_mm(jsw.mean_px, spacing_mm),
                               min_mm=px_to_mm(jsw.min_px, spacing_mm))
