"""One joint across visits: every pair measured, one trajectory fitted (:func:`series`).

Each pair of visits is measured as :func:`jsnq.measure` measures it (one inverse-consistent fit
with both visits' labels), read at the first visit's reading point carried to each visit, and
recorded both ways ``(i, j)`` and ``(j, i)``; the pairs are fitted by one weighted
least-squares trajectory (:func:`jsnq.trajectory.fit_trajectory`). Two one-way fits (no
follow-up labels) are combined by :func:`jsnq.quality.combine_directions`.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .config import MeasureConfig, resolve
from .errors import JsnqInputError, one_line
from .io import Image, load_image
from .pipeline import ImageLike, finish, fit, prepare, source_of
from .quality import combine_directions
from .results import Measurement, SeriesResult
from .trajectory import PairEstimate, fit_trajectory

__all__ = ["series", "pair_estimates", "SERIES_CSV_COLUMNS", "write_series_outputs"]


def _check_dates(dates: Sequence[str], n: int) -> tuple[str, ...]:
    if len(dates) != n:
        raise JsnqInputError("series", f"{len(dates)} dates for {n} visits")
    try:
        parsed = [datetime.date.fromisoformat(str(d)) for d in dates]
    except ValueError as err:
        raise JsnqInputError("series", f"bad date: {err} (use YYYY-MM-DD)") from None
    if any(b < a for a, b in zip(parsed, parsed[1:])):
        raise JsnqInputError("series", "dates must be in time order, like the visits")
    return tuple(map(str, dates))


def pair_estimates(n_visits: int, measurements: dict[tuple[int, int], Measurement]) -> list[PairEstimate]:
    """Combine the two directions of every pair of visits ``i < j`` that was measured at least one way.

    Both ways measured: :func:`~jsnq.quality.combine_directions`, reliable when both directions
    are and they agree. One way only: that direction (negated when it is ``(j, i)``), unreliable.
    """
    pairs = []
    for i in range(n_visits):
        for j in range(i + 1, n_visits):
            f, b = measurements.get((i, j)), measurements.get((j, i))
            if f is not None and b is not None and f.narrowing_px == -b.narrowing_px:
                # one inverse-consistent fit read both ways: the pair's own narrowing and SE
                pairs.append(PairEstimate(i, j, f.narrowing_px, f.narrowing_se_px, f.narrowing_px, b.narrowing_px,
                                          f.reliable and b.reliable))
            elif f is not None and b is not None:
                both = combine_directions(f.narrowing_px, b.narrowing_px, f.narrowing_se_px, b.narrowing_se_px)
                pairs.append(PairEstimate(i, j, both.narrowing_px, both.se_px, f.narrowing_px, b.narrowing_px,
                                          f.reliable and b.reliable and both.reason is None))
            elif f is not None or b is not None:
                one = f if f is not None else b
                value = f.narrowing_px if f is not None else -b.narrowing_px
                pairs.append(PairEstimate(i, j, value, one.narrowing_se_px, value, -value, False))
    return pairs


def series(visits: Sequence[ImageLike], *, labels: Sequence[ImageLike | None] | None = None,
           dates: Sequence[str] | None = None, spacing_mm: float | None = None,
           points: Sequence[tuple[float, float] | None] | None = None,
           config: MeasureConfig | None = None, label_source: str = "given") -> SeriesResult:
    """Follow one joint across visits: measure every ordered pair, fit one trajectory.

    Args:
        visits: the crops of one joint, in time order (paths, arrays or Images), same size.
        labels: per visit, its label image (1 = upper side, 2 = lower side) or None; a
            visit's labels are used when it is the baseline of a pair.
        dates: per visit an ISO date (``YYYY-MM-DD``), increasing; optional.
        spacing_mm: as for :func:`jsnq.measure`.
        points: per visit, the joint's anatomical anchor ``(x, y)`` (see :func:`jsnq.measure`).
            Default: the place where :func:`jsnq.measure` reads the pair (first, second visit)
            (half-way between the two visits' articular centres from the network's bone masks,
            also when labels are given; the crop centre when the network cannot run), carried
            to each later visit by the lower bone's fit of the pair (first, that visit), so
            that every pair is read at the same anatomical place and the pairs add up.
        config: how to measure (:class:`~jsnq.config.MeasureConfig`; default
            ``MeasureConfig()``). ``symmetric`` does not apply: every pair is measured both ways
            anyway.
        label_source: where ``labels`` came from (:data:`jsnq.pipeline.LABEL_SOURCES`):
            ``given`` (yours) or ``profile`` (a whole hand's split); sets the SE's floor.

    Returns:
        A :class:`~jsnq.results.SeriesResult`; pairs that fail are recorded in ``errors`` and
        left out of the fit. A visit left without any pair to the first visit has NaN narrowing
        and SE and is flagged.

    Raises:
        JsnqInputError: fewer than two visits, a bad visit image, dates out of order, or
            no pair could be measured.
    """
    config = resolve(config)
    if len(visits) < 2:
        raise JsnqInputError("series", f"needs at least two visits, got {len(visits)}")
    if labels is not None and len(labels) != len(visits):
        raise JsnqInputError("series", f"{len(labels)} label images for {len(visits)} visits")
    checked_dates = None if dates is None else _check_dates(dates, len(visits))
    images = [load_image(v, spacing_mm=spacing_mm, name=None, crop=True) for v in visits]
    lab = list(labels) if labels is not None else [None] * len(images)
    if points is not None and len(points) != len(images):
        raise JsnqInputError("series", f"{len(points)} anchor points for {len(images)} visits")
    measurements, errors = _measure_pairs(images, lab, points, config.replace(symmetric=True), label_source)
    pairs = pair_estimates(len(images), measurements)
    if not pairs:
        first = next(iter(errors.values()), "no pair measured")
        raise JsnqInputError("series", f"no pair of visits could be measured ({first})")
    spacing = next((m.spacing_mm for m in measurements.values() if m.spacing_mm is not None), None)
    return SeriesResult(sources=tuple(im.source for im in images), dates=checked_dates, spacing_mm=spacing,
                        trajectory=fit_trajectory(len(images), pairs), measurements=measurements, errors=errors,
                        inputs={"visits": [im.source for im in images], "labels": [source_of(x) for x in lab],
                                "dates": None if dates is None else list(checked_dates),
                                "spacing_mm": spacing_mm, "points": None if points is None else
                                [None if p is None else list(p) for p in points]},
                        config=config)


def _measure_pairs(images: Sequence[Image], labels: Sequence[ImageLike | None],
                   points: Sequence[tuple[float, float] | None] | None, config: MeasureConfig,
                   label_source: str = "given") -> tuple[dict[tuple[int, int], Measurement], dict[tuple[int, int], str]]:
    """Every ordered pair of visits ``(a, b)`` measured -> (measurements, one-line errors).

    One anatomical place for every pair: the pair (0, 1) is measured as jsnq.measure measures
    it (each visit's point, or given ones, read half-way between them); that half-way place,
    in the first visit, is carried to every later visit k by the lower bone's fit of the pair
    (0, k), and every other pair (i, j) is read at visits i's and j's carried points. One
    inverse-consistent fit per unordered pair (its reverse reuses the fit): J(j, i) = -J(i, j)
    exactly, and a two-visit series gives exactly the pair's narrowing.
    """
    cache: dict = {}
    fits: dict = {}
    anchors = list(points) if points is not None else [None] * len(images)
    measurements: dict[tuple[int, int], Measurement] = {}
    errors: dict[tuple[int, int], str] = {}
    source = None
    n = len(images)
    order = [(0, k) for k in range(1, n)] + [(i, j) for i in range(1, n) for j in range(i + 1, n)]
    for i, j in order:
        first = points is None and (i, j) == (0, 1)
        for a, b in ((i, j), (j, i)):
            try:
                prepared = prepare(images[a], images[b], config, baseline_labels=labels[a], followup_labels=labels[b],
                                   segment_cache=cache, point=None if first else anchors[a],
                                   followup_point=None if first else anchors[b], fit_cache=fits,
                                   label_source=label_source)
                if points is None and not first and source is not None:
                    prepared.point_source = source  # a place carried from the first pair's
                m = measurements[a, b] = finish(prepared, config, fit(prepared, config))
            except ValueError as err:
                errors[a, b] = one_line(err)
                continue
            if points is not None:
                continue
            if (a, b) == (0, 1):
                source = m.point_source
                q = np.asarray(m.point_px, dtype=float)
                if m.followup_point_px is not None:
                    q = 0.5 * (q + m.lower_transform.inverse().apply(np.asarray(m.followup_point_px, dtype=float)))
                anchors[0] = (float(q[0]), float(q[1]))
                carried = m.lower_transform.apply(q)
                anchors[1] = (float(carried[0]), float(carried[1]))
            elif a == 0 and m.followup_point_px is not None:
                anchors[b] = (float(m.followup_point_px[0]), float(m.followup_point_px[1]))
    return measurements, errors


#: The columns of a series' trajectory CSV, in order.
SERIES_CSV_COLUMNS = ("visit", "source", "date", "narrowing_px", "se_px", "narrowing_mm", "se_mm", "flag")


def write_series_outputs(s: SeriesResult, *, json_out: str | os.PathLike | None = None,
                         csv_out: str | os.PathLike | None = None, plot: str | os.PathLike | None = None,
                         report: str | os.PathLike | None = None, inputs: Iterable[str | os.PathLike] = ()
                         ) -> list[Path]:
    """Write a series' files, each atomically and never over one of ``inputs``: the full result
    as JSON, the trajectory as CSV (:data:`SERIES_CSV_COLUMNS`; empty cells where not measured),
    its plot (PNG) and an HTML report. Returns the paths written, in that order."""
    from .outputs import write_atomic

    inputs = list(inputs)
    d = s.to_dict()
    if json_out is not None:
        write_atomic(json_out, json.dumps(d, indent=2) + "\n", inputs=inputs)
    if csv_out is not None:
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=list(SERIES_CSV_COLUMNS))
        writer.writeheader()
        for v in d["visits"]:
            writer.writerow({k: ("" if v.get(k) is None else v.get(k)) for k in SERIES_CSV_COLUMNS})
        write_atomic(csv_out, buffer.getvalue(), inputs=inputs)
    if plot is not None:
        from .report.html import trajectory_figure

        trajectory_figure(s, plot)
    if report is not None:
        from .report.html import write_report

        write_report(report, series=[(Path(s.sources[0]).parent.name or "series", s)])
    return [Path(os.fspath(p)) for p in (json_out, csv_out, plot, report) if p is not None]
