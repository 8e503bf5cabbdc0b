"""The study's tidy tables: column definitions and the rows of one unit. Pure: no I/O.

Empty values are ``None`` (CSV: empty cell; Parquet: null), never 0; ``missing`` says why a
value is empty, ``reasons`` why a row is not reliable. A joint space width that is not a width
(the masks overlap, or a whole-hand joint's bone split was not trusted) is empty, with
the reason in ``missing`` (joints) or ``jsw_note`` (pairs).

One pixel unit: every ``*_px`` column is in pixels of the study's image -- the radiograph in a
whole-hand study (the joint's crop px divided by ``crop_zoom``), the crop in a crop study -- and
``spacing_mm`` is that image's; reasons quote the same pixels. The bones' motions, which only
mean something in the crop, are named ``*_crop_px``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..geometry import px_to_mm
from ..outputs import finite_or_none, scaled

__all__ = ["BOX_COLUMNS", "JOINT_COLUMNS", "PAIR_COLUMNS", "UNIT_COLUMNS", "SUMMARY_COLUMNS", "series_rows", "failed_rows",
           "finite_or_none"]

#: Where a whole-hand study cut the crop from its radiograph (empty for crop studies): the crop
#: centre in image pixels (x = column, y = row), its "up" clockwise from image up, crop pixels
#: per image pixel, its size, and how the box was placed ("landmark" or "registered").
BOX_COLUMNS: tuple[tuple[str, str], ...] = (
    ("crop_centre_x", "float"), ("crop_centre_y", "float"), ("crop_angle_deg", "float"), ("crop_zoom", "float"),
    ("crop_rows", "int"), ("crop_cols", "int"), ("crop_method", "str"),
)

#: ``joints.csv`` / ``joints.parquet``: one row per patient x side x joint x visit.
#: (name, type) with type one of "str", "int", "float", "bool".
JOINT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("patient", "str"), ("side", "str"), ("joint", "str"), ("visit", "int"), ("date", "str"), ("years", "float"),
    ("image", "str"),
    ("narrowing_px", "float"), ("narrowing_se_px", "float"), ("narrowing_mm", "float"), ("narrowing_se_mm", "float"),
    ("jsw_px", "float"), ("jsw_mm", "float"), ("spacing_mm", "float"),
    ("reliable", "bool"), ("reasons", "str"), ("missing", "str"),
    *BOX_COLUMNS,
    ("unit", "str"), ("unit_status", "str"), ("config_hash", "str"),
)

#: ``pairs.parquet``: one row per ordered pair of visits of a unit (measured or not).
PAIR_COLUMNS: tuple[tuple[str, str], ...] = (
    ("patient", "str"), ("side", "str"), ("joint", "str"), ("baseline_visit", "int"), ("followup_visit", "int"),
    ("baseline_date", "str"), ("followup_date", "str"),
    ("narrowing_px", "float"), ("narrowing_se_px", "float"), ("narrowing_mm", "float"), ("narrowing_se_mm", "float"),
    ("dy_difference_px", "float"), ("label_disagreement_px", "float"),
    ("jsw_baseline_mm", "float"), ("jsw_followup_mm", "float"), ("jsw_note", "str"),
    ("upper_scale", "float"), ("upper_angle_deg", "float"), ("upper_tx_crop_px", "float"), ("upper_ty_crop_px", "float"),
    ("lower_scale", "float"), ("lower_angle_deg", "float"), ("lower_tx_crop_px", "float"), ("lower_ty_crop_px", "float"),
    ("crop_zoom", "float"),
    ("engine", "str"), ("segmenter", "str"), ("reliable", "bool"), ("reasons", "str"), ("error", "str"),
    ("unit", "str"), ("config_hash", "str"),
)

#: ``units.csv``: one row per measured series (a crop unit; a joint of a hand unit), with its rate (:func:`jsnq.study.stats.unit_rate`).
UNIT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("patient", "str"), ("side", "str"), ("joint", "str"), ("unit", "str"), ("status", "str"), ("error", "str"),
    ("n_visits", "int"), ("n_pairs", "int"), ("years", "float"),
    ("rate_px_per_year", "float"), ("rate_se_px_per_year", "float"),
    ("rate_mm_per_year", "float"), ("rate_se_mm_per_year", "float"),
    ("last_narrowing_px", "float"), ("last_se_px", "float"), ("last_narrowing_mm", "float"), ("last_se_mm", "float"),
    ("spacing_mm", "float"), ("flagged", "bool"), ("reasons", "str"), ("chi2_reduced", "float"), ("report", "str"), ("elapsed_s", "float"), ("config_hash", "str"),
)

#: ``summary.csv``: one row per joint type (:class:`jsnq.study.stats.JointSummary`).
SUMMARY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("joint", "str"), ("n_units", "int"), ("n_failed", "int"), ("n_flagged", "int"), ("n_rated", "int"),
    ("n_patients", "int"),
    ("rate_mm_per_year", "float"), ("rate_ci_low_mm", "float"), ("rate_ci_high_mm", "float"), ("rate_sd_mm", "float"),
    ("rate_px_per_year", "float"), ("rate_ci_low_px", "float"), ("rate_ci_high_px", "float"), ("rate_sd_px", "float"),
    ("sdc_mm", "float"), ("sdc_px", "float"), ("sdc_rate_mm_per_year", "float"), ("sdc_rate_px_per_year", "float"),
    ("share_flagged", "float"), ("notes", "str"),
)


def series_rows(identity: Mapping[str, str], unit_id: str, dates: Sequence[str], images: Sequence[str],
                years: Sequence[float], series: Any, config_hash: str,
                boxes: Sequence[Mapping[str, Any] | None] | None = None, *, zoom: float | None = None,
                image_spacing_mm: float | None = None, segmentation: Any = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The joint-visit rows and the pair rows of one measured series (a :class:`~jsnq.results.SeriesResult`).

    Args:
        identity: ``patient``, ``side``, ``joint``.
        unit_id: the unit's file-safe id.
        dates, images, years: per visit.
        series: the result; its trajectory gives the cumulative narrowing and SE per visit.
        config_hash: :meth:`jsnq.config.MeasureConfig.digest`.
        boxes: per visit the crop's box as a mapping with the :data:`BOX_COLUMNS` keys, or None
            (crop studies: the image is the crop).
        zoom: a whole-hand joint's crop px per radiograph px: the series was measured on crops,
            so its px figures (and the px figures of its reasons) are divided by it, and
            ``spacing_mm`` is the radiograph's, ``image_spacing_mm`` (None: a crop study, whose
            image is the crop).
        segmentation: a whole-hand joint's bone split (:class:`~jsnq.hand.checks.SplitCheck`, from
            :func:`jsnq.hand.measure.series_joint`): a JSW is reported only where it is trusted.

    Returns:
        ``(joint rows, pair rows)`` with the columns of :data:`JOINT_COLUMNS` and :data:`PAIR_COLUMNS`.
    """
    inv = 1.0 if zoom is None else 1.0 / zoom
    spacing = series.spacing_mm  # of what was measured (the crop)
    image_spacing = spacing if zoom is None else image_spacing_mm
    base = {"patient": identity["patient"], "side": identity["side"], "joint": identity["joint"]}
    jsw_of = _jsw_reader(segmentation, inv, spacing)
    rows = _visit_rows(base, unit_id, dates, images, years, series, config_hash, boxes, inv, image_spacing, jsw_of)
    return rows, _pair_rows(base, unit_id, dates, series, config_hash, zoom, inv, jsw_of)


def _jsw_reader(segmentation: Any, inv: float, spacing: float | None):
    """``(measurement or None, "jsw_baseline" | "jsw_followup") -> (JSW in radiograph px, in mm,
    the note why there is none)``: a JSW only where the segmentation status allows one."""
    from ..hand.tables import jsw_value
    from ..reasons import rescale_px

    def jsw_of(m: Any, which: str) -> tuple[float | None, float | None, str]:
        w, note = jsw_value(None if m is None else getattr(m, which), segmentation)
        if w is None:
            return None, None, rescale_px(note, inv)
        return scaled(w.mean_px, inv), scaled(w.mean_px, spacing), ""

    return jsw_of


def _visit_rows(base: Mapping[str, Any], unit_id: str, dates: Sequence[str], images: Sequence[str],
                years: Sequence[float], series: Any, config_hash: str,
                boxes: Sequence[Mapping[str, Any] | None] | None, inv: float, image_spacing: float | None,
                jsw_of) -> list[dict[str, Any]]:
    """The joint-visit rows of :func:`series_rows`: the cumulative narrowing at every visit."""
    from ..reasons import join_reasons, rescale_px, visit_reasons

    t = series.trajectory
    spacing = series.spacing_mm
    lead: dict[int, Any] = {}
    for (i, _), m in sorted(series.measurements.items(), reverse=True):
        lead[i] = m  # visit -> the measurement of the first pair it is the baseline of
    rows = []
    for k in range(len(dates)):
        reasons = join_reasons([rescale_px(r, inv) for r in visit_reasons(series, k)])
        missing = []
        if spacing is None:
            missing.append("mm: no pixel spacing (give spacing_mm or --spacing)")
        jsw_px, jsw_mm, note = jsw_of(lead.get(k), "jsw_baseline")
        if note:
            missing.append(f"jsw: {note}")
        box = None if boxes is None else boxes[k]
        rows.append({
            **base, "visit": k, "date": dates[k], "years": finite_or_none(years[k]), "image": images[k],
            "narrowing_px": scaled(t.narrowing_px[k], inv), "narrowing_se_px": scaled(t.se_px[k], inv),
            "narrowing_mm": finite_or_none(px_to_mm(t.narrowing_px[k], spacing)),
            "narrowing_se_mm": finite_or_none(px_to_mm(t.se_px[k], spacing)),
            "jsw_px": jsw_px, "jsw_mm": jsw_mm, "spacing_mm": image_spacing, "reliable": not reasons,
            "reasons": reasons, "missing": join_reasons(missing),
            **{c: None if box is None else box.get(c) for c, _ in BOX_COLUMNS},
            "unit": unit_id, "unit_status": "ok", "config_hash": config_hash,
        })
    return rows


def _pair_rows(base: Mapping[str, Any], unit_id: str, dates: Sequence[str], series: Any, config_hash: str,
               zoom: float | None, inv: float, jsw_of) -> list[dict[str, Any]]:
    """The pair rows of :func:`series_rows`: every ordered pair of visits, measured or not."""
    from ..reasons import join_reasons, rescale_px

    pairs = []
    n = len(dates)
    for i, j in ((i, j) for i in range(n) for j in range(n) if i != j):
        row = {**base, "baseline_visit": i, "followup_visit": j, "baseline_date": dates[i], "followup_date": dates[j],
               "crop_zoom": zoom, "unit": unit_id, "config_hash": config_hash}
        m = series.measurements.get((i, j))
        if m is None:
            pairs.append({**row, "reliable": False, "reasons": "",
                          "error": rescale_px(series.errors.get((i, j), "not measured"), inv)})
            continue
        jb, jf = jsw_of(m, "jsw_baseline"), jsw_of(m, "jsw_followup")
        pairs.append({
            **row, "narrowing_px": scaled(m.narrowing_px, inv), "narrowing_se_px": scaled(m.narrowing_se_px, inv),
            "narrowing_mm": finite_or_none(m.narrowing_mm), "narrowing_se_mm": finite_or_none(m.narrowing_se_mm),
            "dy_difference_px": scaled(m.dy_difference_px, inv),
            "label_disagreement_px": scaled(m.label_disagreement_px, inv),
            "jsw_baseline_mm": jb[1], "jsw_followup_mm": jf[1], "jsw_note": join_reasons([jb[2], jf[2]]),
            **{f"{name}_{k}": finite_or_none(getattr(getattr(m, name), k))
               for name in ("upper", "lower") for k in ("scale", "angle_deg")},
            **{f"{name}_{k}_crop_px": finite_or_none(getattr(getattr(m, name), f"{k}_px"))
               for name in ("upper", "lower") for k in ("tx", "ty")},
            "engine": m.engine, "segmenter": m.segmenter, "reliable": bool(m.reliable),
            "reasons": join_reasons([rescale_px(r, inv) for r in m.reasons]), "error": "",
        })
    return pairs


def failed_rows(identity: Mapping[str, str], unit_id: str, dates: Sequence[str], images: Sequence[str],
                years: Sequence[float], error: str, config_hash: str) -> list[dict[str, Any]]:
    """Joint-visit rows of a unit that could not be measured: every value empty, the error as the reason."""
    return [{"patient": identity["patient"], "side": identity["side"], "joint": identity["joint"], "visit": k,
             "date": dates[k], "years": finite_or_none(years[k]), "image": images[k], "reliable": False,
             "reasons": f"unit failed: {error}", "missing": "every value: the unit failed", "unit": unit_id,
             "unit_status": "failed", "config_hash": config_hash} for k in range(len(dates))]
