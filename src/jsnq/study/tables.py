"""The study's tidy tables: column definitions and the rows of one unit. Pure: no I/O.

Empty values are ``None`` (CSV: empty cell; Parquet: null), never 0; ``missing`` says why a
value is empty, ``reasons`` why a row is not reliable.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from ..geometry import px_to_mm

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
    ("jsw_baseline_mm", "float"), ("jsw_followup_mm", "float"),
    ("upper_scale", "float"), ("upper_angle_deg", "float"), ("upper_tx_px", "float"), ("upper_ty_px", "float"),
    ("lower_scale", "float"), ("lower_angle_deg", "float"), ("lower_tx_px", "float"), ("lower_ty_px", "float"),
    ("engine", "str"), ("segmenter", "str"), ("reliable", "bool"), ("reasons", "str"), ("error", "str"),
    ("unit", "str"), ("config_hash", "str"),
)

#: ``units.csv``: one row per measured series (a crop unit; a joint of a hand unit), with its rate (:func:`jsnq.study.stats.unit_rate`).
UNIT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("patient", "str"), ("side", "str"), ("joint", "str"), ("unit", "str"), ("status", "str"), ("error", "str"),
    ("n_visits", "int"), ("n_pairs", "int"), ("years", "float"),
    ("rate_px_per_year", "float"), ("rate_se_px_per_year", "float"),
    ("rate_mm_per_year", "float"), ("rate_se_mm_per_year", "float"),
    ("last_narrowing_mm", "float"), ("last_se_mm", "float"),
    ("flagged", "bool"), ("chi2_reduced", "float"), ("report", "str"), ("elapsed_s", "float"), ("config_hash", "str"),
)

#: ``summary.csv``: one row per joint type (:class:`jsnq.study.stats.JointSummary`).
SUMMARY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("joint", "str"), ("n_units", "int"), ("n_failed", "int"), ("n_rated", "int"), ("n_patients", "int"),
    ("rate_mm_per_year", "float"), ("rate_ci_low_mm", "float"), ("rate_ci_high_mm", "float"), ("rate_sd_mm", "float"),
    ("rate_px_per_year", "float"), ("rate_ci_low_px", "float"), ("rate_ci_high_px", "float"), ("rate_sd_px", "float"),
    ("sdc_mm", "float"), ("sdc_px", "float"), ("sdc_rate_mm_per_year", "float"), ("sdc_rate_px_per_year", "float"),
    ("share_flagged", "float"), ("notes", "str"),
)


def finite_or_none(value: Any) -> float | None:
    """A float, or None for None / NaN / inf (an empty cell, never a made-up number)."""
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _join(reasons: Sequence[str]) -> str:
    seen: list[str] = []
    for r in reasons:
        if r and r not in seen:
            seen.append(r)
    return "; ".join(seen)


def _visit_reasons(series: Any, k: int) -> list[str]:
    t = series.trajectory
    out = []
    if k in t.flagged_visits:
        out.append(t.flagged_visits[k])
    for (i, j), m in sorted(series.measurements.items()):
        if k in (i, j) and not m.reliable:
            out.extend(f"pair {i}->{j}: {r}" for r in m.reasons)
    for (i, j), e in sorted(series.errors.items()):
        if k in (i, j):
            out.append(f"pair {i}->{j} failed: {e}")
    return out


def series_rows(identity: Mapping[str, str], unit_id: str, dates: Sequence[str], images: Sequence[str],
                years: Sequence[float], series: Any, config_hash: str,
                boxes: Sequence[Mapping[str, Any] | None] | None = None
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The joint-visit rows and the pair rows of one measured series (a :class:`~jsnq.pipeline.SeriesResult`).

    Args:
        identity: ``patient``, ``side``, ``joint``.
        unit_id: the unit's file-safe id.
        dates, images, years: per visit.
        series: the result; its trajectory gives the cumulative narrowing and SE per visit.
        config_hash: :meth:`jsnq.config.MeasureConfig.digest`.
        boxes: per visit the crop's box as a mapping with the :data:`BOX_COLUMNS` keys, or None
            (crop studies: the image is the crop).

    Returns:
        ``(joint rows, pair rows)`` with the columns of :data:`JOINT_COLUMNS` and :data:`PAIR_COLUMNS`.
    """
    t = series.trajectory
    spacing = series.spacing_mm
    base = {"patient": identity["patient"], "side": identity["side"], "joint": identity["joint"]}
    jsw: dict[int, Any] = {}
    for (i, _), m in sorted(series.measurements.items()):
        if i not in jsw and m.jsw_baseline is not None:
            jsw[i] = m.jsw_baseline
    rows = []
    for k in range(len(dates)):
        reasons = _visit_reasons(series, k)
        missing = []
        if spacing is None:
            missing.append("mm: no pixel spacing (give spacing_mm or --spacing)")
        w = jsw.get(k)
        if w is None:
            missing.append("jsw: no network segmentation of this visit")
        box = None if boxes is None else boxes[k]
        rows.append({
            **base, "visit": k, "date": dates[k], "years": finite_or_none(years[k]), "image": images[k],
            "narrowing_px": finite_or_none(t.narrowing_px[k]), "narrowing_se_px": finite_or_none(t.se_px[k]),
            "narrowing_mm": finite_or_none(px_to_mm(t.narrowing_px[k], spacing)),
            "narrowing_se_mm": finite_or_none(px_to_mm(t.se_px[k], spacing)),
            "jsw_px": None if w is None else finite_or_none(w.mean_px),
            "jsw_mm": None if w is None or spacing is None else finite_or_none(px_to_mm(w.mean_px, spacing)),
            "spacing_mm": spacing, "reliable": not reasons, "reasons": _join(reasons), "missing": _join(missing),
            **{c: None if box is None else box.get(c) for c, _ in BOX_COLUMNS},
            "unit": unit_id, "unit_status": "ok", "config_hash": config_hash,
        })
    pairs = []
    n = len(dates)
    for i, j in ((i, j) for i in range(n) for j in range(n) if i != j):
        row = {**base, "baseline_visit": i, "followup_visit": j, "baseline_date": dates[i], "followup_date": dates[j],
               "unit": unit_id, "config_hash": config_hash}
        m = series.measurements.get((i, j))
        if m is None:
            pairs.append({**row, "reliable": False, "error": series.errors.get((i, j), "not measured"), "reasons": ""})
            continue
        pairs.append({
            **row, "narrowing_px": finite_or_none(m.narrowing_px), "narrowing_se_px": finite_or_none(m.narrowing_se_px),
            "narrowing_mm": finite_or_none(m.narrowing_mm), "narrowing_se_mm": finite_or_none(m.narrowing_se_mm),
            "dy_difference_px": finite_or_none(m.dy_difference_px),
            "label_disagreement_px": finite_or_none(m.label_disagreement_px),
            "jsw_baseline_mm": None if m.jsw_baseline is None else finite_or_none(m.jsw_baseline.mean_mm),
            "jsw_followup_mm": None if m.jsw_followup is None else finite_or_none(m.jsw_followup.mean_mm),
            **{f"{name}_{k}": finite_or_none(getattr(getattr(m, name), k))
               for name in ("upper", "lower") for k in ("scale", "angle_deg", "tx_px", "ty_px")},
            "engine": m.engine, "segmenter": m.segmenter, "reliable": bool(m.reliable), "reasons": _join(m.reasons),
            "error": "",
        })
    return rows, pairs


def failed_rows(identity: Mapping[str, str], unit_id: str, dates: Sequence[str], images: Sequence[str],
                years: Sequence[float], error: str, config_hash: str) -> list[dict[str, Any]]:
    """Joint-visit rows of a unit that could not be measured: every value empty, the error as the reason."""
    return [{"patient": identity["patient"], "side": identity["side"], "joint": identity["joint"], "visit": k,
             "date": dates[k], "years": finite_or_none(years[k]), "image": images[k], "reliable": False,
             "reasons": f"unit failed: {error}", "missing": "every value: the unit failed", "unit": unit_id,
             "unit_status": "failed", "config_hash": config_hash} for k in range(len(dates))]
