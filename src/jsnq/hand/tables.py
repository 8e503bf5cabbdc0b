"""The whole-hand result as flat rows: the CLI's table, ``--csv`` and the report's table. Pure.

One pixel unit: every ``*_px`` figure here is in pixels of the **radiograph** (the joint's crop
is resampled by ``crop_zoom`` crop px per radiograph px, so ``crop px / crop_zoom``), and
``spacing_mm`` is the radiograph's. The measurement's own figures, in crop pixels, are kept as
``narrowing_crop_px`` / ``narrowing_se_crop_px`` beside ``crop_zoom``; the reasons quote
radiograph pixels too (:func:`jsnq.reasons.rescale_px`).

No number without meaning: a joint not measured has every value empty (None) and its reason; a
joint space width that is not a width (the masks overlap, or the joint's bone split was not
trusted) is empty, with ``jsw_note`` saying why. ``segmentation`` is the bone split's
:class:`~jsnq.hand.checks.SplitStatus` value, ``segmentation_reason`` why it is not trusted.
``point{k}_x/_y`` is where the narrowing was read at visit ``k`` (the joint line's reading
point), ``box{k}_*`` the crop's box, both in the radiograph's pixels.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from ..outputs import finite_or_none, scaled
from ..reasons import codes, join_reasons, rescale_px, unique, visit_reasons
from .anatomy import joint_type
from .checks import SplitCheck
from .types import JOINT_NAMES

__all__ = ["hand_rows", "series_rows", "jsw_value", "crop_zoom"]


def crop_zoom(crops: Any) -> float | None:
    """Crop px per radiograph px of a joint's crops (the same at every visit), or None."""
    return None if crops is None else float(crops.boxes[0].zoom)


def _joint(result: Any, name: str) -> tuple[Any, Any, float | None, float | None]:
    """A joint's result (or None), crops (or None), crop zoom and radiograph px per crop px."""
    crops = result.crops.get(name)
    zoom = crop_zoom(crops)
    return result.joints.get(name), crops, zoom, None if zoom is None else 1.0 / zoom


def jsw_value(jsw: Any, split: SplitCheck | None) -> tuple[Any, str]:
    """``(jsw, "")`` when a visit's joint space width is a width; ``(None, why)`` when it is not:
    none measured, not positive (the masks overlap), or the joint's bone ``split`` was not
    trusted (:attr:`jsnq.hand.checks.SplitCheck.trusted`; None: a crop study, no split check)."""
    if split is not None and not split.trusted:
        return None, f"JSW not valid: {split}"
    if jsw is None or not math.isfinite(jsw.mean_px):
        return None, "JSW not measured: no network segmentation of this visit"
    if jsw.mean_px <= 0:
        return None, f"JSW not valid: the bone masks overlap (mean {jsw.mean_px:+.2f} px)"
    return jsw, ""


def _jsw_columns(prefix: str, jsw: Any, split: SplitCheck | None, zoom: float | None) -> tuple[dict[str, Any], str]:
    w, note = jsw_value(jsw, split)
    if w is None or zoom is None:
        return {f"{prefix}_px": None, f"{prefix}_mm": None}, rescale_px(note, 1.0 / zoom if zoom else 1.0)
    return {f"{prefix}_px": finite_or_none(w.mean_px / zoom), f"{prefix}_mm": finite_or_none(w.mean_mm)}, ""


def _split_columns(split: SplitCheck, inv: float | None) -> dict[str, str]:
    """The bone split's status and, where not trusted, why (radiograph px)."""
    return {"segmentation": split.status.value, "segmentation_reason": rescale_px(split.reason, inv or 1.0)}


def _box_columns(crops: Any, n_visits: int) -> dict[str, Any]:
    """Each visit's crop box (image px, degrees clockwise from up, crop px per image px)."""
    out: dict[str, Any] = {}
    for k in range(n_visits):
        box = crops.boxes[k] if crops is not None and k < len(crops.boxes) else None
        out[f"box{k}_x"] = box.centre_xy[0] if box else None
        out[f"box{k}_y"] = box.centre_xy[1] if box else None
        out[f"box{k}_angle_deg"] = box.angle_deg if box else None
        out[f"box{k}_size"] = box.size[0] if box else None
    return out


def _point_columns(crops: Any, points: Sequence[Any], n_visits: int) -> dict[str, Any]:
    """Each visit's reading point (the crop point ``points[k]`` where the narrowing is read, or
    None) in the radiograph's pixels: where jsnq places the joint at that visit."""
    out: dict[str, Any] = {}
    for k in range(n_visits):
        p = points[k] if k < len(points) else None
        xy = crops.boxes[k].to_image(p) if crops is not None and p is not None and k < len(crops.boxes) else None
        out[f"point{k}_x"] = finite_or_none(float(xy[0])) if xy is not None else None
        out[f"point{k}_y"] = finite_or_none(float(xy[1])) if xy is not None else None
    return out


def _finish(row: dict[str, Any], reasons: Sequence[str], factor: float | None = None) -> dict[str, Any]:
    """``codes`` and ``reasons`` (each once, px figures times ``factor``) of a row."""
    mine = unique([rescale_px(r, factor or 1.0) for r in reasons])
    row["codes"] = ",".join(codes(mine))
    row["reasons"] = "; ".join(mine)
    return row


def hand_rows(result: Any) -> list[dict[str, Any]]:
    """One row per joint of a two-visit :class:`~jsnq.hand.results.HandMeasurement`, measured
    or not, in :data:`~jsnq.hand.types.JOINT_NAMES` order (see the module doc for the units)."""
    out = []
    n = len(result.sources)
    for name in JOINT_NAMES:
        m, crops, zoom, inv = _joint(result, name)
        row: dict[str, Any] = {"joint": name, "type": joint_type(name)}
        if m is None:
            row.update(narrowing_px=None, narrowing_se_px=None, narrowing_mm=None, narrowing_se_mm=None,
                       spacing_mm=result.spacing_mm, jsw_baseline_px=None, jsw_baseline_mm=None,
                       jsw_followup_px=None, jsw_followup_mm=None, jsw_note="", reliable=False,
                       segmentation="", segmentation_reason="", narrowing_crop_px=None, narrowing_se_crop_px=None,
                       crop_zoom=zoom)
            _finish(row, [result.errors.get(name, "not measured")])
        else:
            split = result.segmentation[name]
            jb, note_b = _jsw_columns("jsw_baseline", m.jsw_baseline, split, zoom)
            jf, note_f = _jsw_columns("jsw_followup", m.jsw_followup, split, zoom)
            row.update(narrowing_px=scaled(m.narrowing_px, inv), narrowing_se_px=scaled(m.narrowing_se_px, inv),
                       narrowing_mm=finite_or_none(m.narrowing_mm), narrowing_se_mm=finite_or_none(m.narrowing_se_mm),
                       spacing_mm=result.spacing_mm, **jb, **jf, jsw_note=join_reasons([note_b, note_f]),
                       reliable=bool(m.reliable), **_split_columns(split, inv),
                       narrowing_crop_px=finite_or_none(m.narrowing_px),
                       narrowing_se_crop_px=finite_or_none(m.narrowing_se_px), crop_zoom=zoom)
            _finish(row, list(m.reasons), inv)
        points = [] if m is None else [m.point_px, m.followup_point_px]
        row.update(_point_columns(crops, points, n))
        row.update(_box_columns(crops, n))
        out.append(row)
    return out


def series_rows(result: Any) -> list[dict[str, Any]]:
    """One row per joint and visit of a :class:`~jsnq.hand.results.HandSeries` (cumulative
    narrowing from the first visit, radiograph px); a joint not measured has one row with its
    reason."""
    out = []
    n = len(result.sources)
    for name in JOINT_NAMES:
        s, crops, zoom, inv = _joint(result, name)
        base = {"joint": name, "type": joint_type(name)}
        boxes = _box_columns(crops, n)
        if s is None:
            boxes = {**_point_columns(crops, [], n), **boxes}
            row = {**base, "visit": None, "date": None, "narrowing_px": None, "narrowing_se_px": None,
                   "narrowing_mm": None, "narrowing_se_mm": None, "spacing_mm": result.spacing_mm, "jsw_px": None,
                   "jsw_mm": None, "jsw_note": "", "reliable": False, "segmentation": "",
                   "segmentation_reason": "", "narrowing_crop_px": None, "narrowing_se_crop_px": None, "crop_zoom": zoom}
            out.append({**_finish(row, [result.errors.get(name, "not measured")]), **boxes})
            continue
        t = s.trajectory
        split = result.segmentation[name]
        first = {i: m for (i, _), m in sorted(s.measurements.items(), reverse=True)}  # visit -> a pair it leads
        unreliable = [f"{p.i}->{p.j}" for p in t.pairs if not p.reliable]
        lead0 = s.measurements.get((0, 1))
        points = [None if lead0 is None else lead0.point_px] + [
            None if (0, k) not in s.measurements else s.measurements[(0, k)].followup_point_px for k in range(1, n)]
        boxes = {**_point_columns(crops, points, n), **boxes}
        for k in range(n):
            own = visit_reasons(s, k)
            if not own and unreliable:  # the trajectory links every visit through the others
                own = [f"the trajectory uses unreliable pairs of other visits ({', '.join(unreliable)})"]
            lead = first.get(k)
            jsw, note = _jsw_columns("jsw", None if lead is None else lead.jsw_baseline, split, zoom)
            value, se = finite_or_none(t.narrowing_px[k]), finite_or_none(t.se_px[k])
            row = {**base, "visit": k, "date": None if result.dates is None else result.dates[k],
                   "narrowing_px": scaled(value, inv), "narrowing_se_px": scaled(se, inv),
                   "narrowing_mm": scaled(value, s.spacing_mm), "narrowing_se_mm": scaled(se, s.spacing_mm),
                   "spacing_mm": result.spacing_mm, **jsw, "jsw_note": note, "reliable": not own,
                   **_split_columns(split, inv), "narrowing_crop_px": value,
                   "narrowing_se_crop_px": se, "crop_zoom": zoom}
            out.append({**_finish(row, own, inv), **boxes})
    return out
