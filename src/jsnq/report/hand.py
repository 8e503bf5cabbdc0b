"""The whole-hand report: an overview of the hand at each visit, every joint's box and name
coloured by reliability and linked to that joint's detail section.

The overview is drawn on a downsampled copy of each radiograph (PIL), and each box is also an
``<area>`` of an HTML image map, so a click on a joint jumps to its section of the report
(the per-joint sections are those of :func:`jsnq.report.html.render_report`).
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..hand.types import JOINT_NAMES
from ..outputs import safe_display_name, write_atomic

__all__ = ["COLOURS", "overview_image", "render_hand_report", "write_hand_report"]

#: Box colours: reliable, measured but flagged, not measured.
COLOURS = {"reliable": (27, 160, 70), "flagged": (196, 106, 0), "failed": (198, 40, 40)}
OVERVIEW_WIDTH = 620


def _status(result: Any, name: str) -> str:
    m = result.joints.get(name)
    if m is None:
        return "failed"
    reliable = getattr(m, "reliable", None)
    if reliable is None:  # a SeriesResult: reliable when no visit is flagged and every pair is reliable
        t = m.trajectory
        reliable = not t.flagged_visits and all(p.reliable for p in t.pairs)
    return "reliable" if reliable else "flagged"


def overview_image(image: np.ndarray, result: Any, visit: int, *, width: int = OVERVIEW_WIDTH
                   ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The radiograph of ``visit`` (downsampled to ``width`` px) with every joint's crop box,
    name and reading point (a cross where the narrowing was read, ``point<k>_x/_y``) drawn in its
    status colour: an RGB uint8 array and, per box, its polygon in the overview's pixels
    (``name``, ``status``, ``coords``)."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    a = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(a, (0.5, 99.5))
    grey = np.clip((a - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    f = width / a.shape[1]
    pil = PILImage.fromarray((grey * 255).astype(np.uint8)).convert("RGB")
    pil = pil.resize((width, max(1, int(round(a.shape[0] * f)))), PILImage.BILINEAR)
    draw = ImageDraw.Draw(pil)
    points: dict[str, tuple[float, float]] = {}
    for r in result.rows():
        x, y = r.get(f"point{visit}_x"), r.get(f"point{visit}_y")
        if x is not None and y is not None:
            points.setdefault(r["joint"], (float(x) * f, float(y) * f))
    areas = []
    for name in JOINT_NAMES:
        crops = result.crops.get(name)
        if crops is None or visit >= len(crops.boxes):
            continue
        status = _status(result, name)
        colour = COLOURS[status]
        poly = [(float(x) * f, float(y) * f) for x, y in crops.boxes[visit].corners]
        draw.polygon(poly, outline=colour, width=2)
        x0 = min(p[0] for p in poly)
        y0 = min(p[1] for p in poly)
        draw.text((x0 + 2, y0 - 11), name, fill=colour)
        if name in points:
            px, py = points[name]
            draw.line([(px - 4, py), (px + 4, py)], fill=colour, width=1)
            draw.line([(px, py - 4), (px, py + 4)], fill=colour, width=1)
        areas.append({"name": name, "status": status, "coords": ",".join(f"{v:.0f}" for p in poly for v in p)})
    return np.asarray(pil), areas


def _png_uri(rgb: np.ndarray) -> str:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


_OVERVIEW = """<h2>Hand overview</h2>
<p class="note">Each joint's crop box at each visit, and a cross where its narrowing was read: <span class="ok">green reliable</span>, <span class="warn">orange flagged</span>, <span class="bad">red not measured</span>. Click a box (or a name below) for the joint's details.</p>
<div class="imgs">{% for v in visits %}<figure><img style="width:{{ v.width }}px" src="{{ v.img }}" usemap="#hand-map-{{ v.k }}" alt="visit {{ v.k }}"><figcaption>visit {{ v.k }}: {{ v.source }}</figcaption>
<map name="hand-map-{{ v.k }}">{% for a in v.areas %}<area shape="poly" coords="{{ a.coords }}" href="#{{ keys.get(a.name, 'summary') }}" alt="{{ a.name }}" title="{{ a.name }}: {{ a.status }}">{% endfor %}</map></figure>{% endfor %}</div>
<h2>Summary</h2>
<p class="note">{{ counts }}. Narrowing {{ what }}; px are pixels of the radiograph{% if spacing %}, whose spacing is {{ spacing }} mm{% endif %}. A joint space width that is not a width is left empty.</p>
<table id="summary"><thead><tr><th data-type="text">joint</th><th data-type="num">narrowing</th><th data-type="num">SE</th><th data-type="text">unit</th><th data-type="num">JSW, last visit (mm)</th><th data-type="text">status</th><th data-type="text">codes</th><th data-type="text">reasons</th></tr></thead><tbody>
{% for r in rows %}<tr><td>{% if r.key %}<a href="#{{ r.key }}">{{ r.joint }}</a>{% else %}{{ r.joint }}{% endif %}</td><td data-value="{{ r.sort }}">{{ r.value }}</td><td data-value="{{ r.se }}">{{ r.se }}</td><td>{{ r.unit }}</td><td data-value="{{ r.jsw }}">{{ r.jsw }}</td><td class="{{ r.cls }}">{{ r.status }}</td><td>{{ r.codes }}</td><td>{{ r.why }}</td></tr>
{% endfor %}</tbody></table>
{% if legend %}<p class="note"><b>Codes.</b> {% for line in legend %}{{ line }}{% if not loop.last %} · {% endif %}{% endfor %}</p>{% endif %}
<p class="note"><b>Validation of each joint type.</b> {% for t, text in validation %}<b>{{ t }}</b>: {{ text }}. {% endfor %}The detail sections below are each joint's crop, in pixels of the crop (crop px = radiograph px &times; the zoom named in its title).</p>
"""

_STATUS_CLASS = {"reliable": "ok", "flagged": "warn", "failed": "bad"}


def _table(result: Any, keys: dict[str, str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The summary table's rows (the last visit's row of each joint, from ``result.rows()``: the
    CLI's and the CSV's numbers) and the reason codes used."""
    last: dict[str, dict[str, Any]] = {}
    for r in result.rows():
        last[r["joint"]] = r
    rows, used = [], []
    for name in JOINT_NAMES:
        r = last[name]
        status = _status(result, name)
        mm = r.get("narrowing_mm") is not None
        value = r["narrowing_mm"] if mm else r["narrowing_px"]
        se = r["narrowing_se_mm"] if mm else r["narrowing_se_px"]
        jsw = r.get("jsw_followup_mm", r.get("jsw_mm"))
        used.extend(c for c in r["codes"].split(",") if c)
        rows.append({"joint": name, "key": keys.get(name), "value": _signed(value), "sort": "" if value is None else
                     f"{value:.6f}", "se": "" if se is None else f"{se:.3f}", "unit": ("mm" if mm else "px") if
                     value is not None else "", "jsw": "" if jsw is None else f"{jsw:.2f}", "status": "not measured" if status == "failed" else status,
                     "cls": _STATUS_CLASS[status], "codes": r["codes"], "why": r["reasons"] or r.get("jsw_note", "")})
    return rows, used


def _signed(v: float | None) -> str:
    if v is None:
        return ""
    text = f"{v:+.3f}"
    return text[1:] if float(text) == 0 else text


def render_hand_report(images: Sequence[np.ndarray], result: Any, *, title: str = "jsnq hand report") -> str:
    """The report of a :class:`~jsnq.hand.results.HandMeasurement` (or ``HandSeries``) as HTML.

    Args:
        images: the visits' radiographs ``[row, col]`` (for the overview), in the result's order.
        result: what :func:`jsnq.measure_hand` (or ``measure_hand_series``) returned.
    """
    from jinja2 import Environment, select_autoescape

    from ..hand.anatomy import joint_type
    from ..hand.results import VALIDATION
    from ..reasons import legend
    from .html import render_report

    measured = [n for n in JOINT_NAMES if n in result.joints]
    pairs = [] if hasattr(next(iter(result.joints.values()), None), "trajectory") else measured
    series = [n for n in measured if n not in pairs]
    keys = {n: f"pair-{k}" for k, n in enumerate(pairs)}
    keys.update({n: f"series-{k}" for k, n in enumerate(series)})
    visits = []
    for k, img in enumerate(images):
        rgb, areas = overview_image(img, result, k)
        visits.append({"k": k, "img": _png_uri(rgb), "areas": areas, "width": rgb.shape[1],
                       "source": safe_display_name(result.sources[k]) if k < len(result.sources) else ""})
    rows, used = _table(result, keys)
    n_failed = sum(r["status"] == "not measured" for r in rows)
    n_reliable = sum(r["status"] == "reliable" for r in rows)
    counts = (f"{len(rows) - n_failed} of {len(rows)} joints measured, {n_reliable} reliable, "
              f"{len(rows) - n_failed - n_reliable} flagged, {n_failed} not measured")
    types = sorted({joint_type(n) for n in JOINT_NAMES}, key=["MCP", "IP", "PIP", "DIP"].index)
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    overview = env.from_string(_OVERVIEW).render(
        visits=visits, rows=rows, keys=keys, counts=counts, legend=legend(used),
        what="from the first to the last visit" if series else "from baseline to follow-up",
        spacing=None if result.spacing_mm is None else f"{result.spacing_mm:g}",
        validation=[(t, VALIDATION[t]) for t in types])

    def titled(name: str) -> str:
        return f"{name} (crop px: zoom {result.crops[name].boxes[0].zoom:.2f} crop px per radiograph px)"

    body = render_report([(titled(n), result.joints[n]) for n in pairs],
                         [(titled(n), result.joints[n]) for n in series], title=title)
    body = body.replace("</style>", ".warn{color:#c46a00;font-weight:600}</style>", 1)
    start = body.find("<h2>Summary</h2>")
    end = body.find("</tbody></table>", start)
    if start < 0 or end < 0:  # pragma: no cover - the page layout changed
        raise RuntimeError("the report template has no summary table to replace with the hand's")
    return body[:start] + overview + body[end + len("</tbody></table>"):]


def write_hand_report(path: str | os.PathLike, images: Sequence[np.ndarray], result: Any, *,
                      title: str = "jsnq hand report", inputs: Sequence[Any] = ()) -> Path:
    """Write :func:`render_hand_report` to ``path`` atomically, never over one of ``inputs``.

    Raises:
        JsnqInputError: the folder does not exist, ``path`` is an input, or it cannot be written.
    """
    return write_atomic(path, render_hand_report(images, result, title=safe_display_name(title)), inputs=inputs)
