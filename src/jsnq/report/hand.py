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
COLOURS = {"reliable": (27, 160, 70), "flagged": (235, 140, 20), "failed": (210, 40, 40)}
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
    """The radiograph of ``visit`` (downsampled to ``width`` px) with every joint's crop box and
    name drawn in its status colour: an RGB uint8 array and, per box, its polygon in the
    overview's pixels (``name``, ``status``, ``coords``)."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    a = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(a, (0.5, 99.5))
    grey = np.clip((a - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    f = width / a.shape[1]
    pil = PILImage.fromarray((grey * 255).astype(np.uint8)).convert("RGB")
    pil = pil.resize((width, max(1, int(round(a.shape[0] * f)))), PILImage.BILINEAR)
    draw = ImageDraw.Draw(pil)
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
        areas.append({"name": name, "status": status, "coords": ",".join(f"{v:.0f}" for p in poly for v in p)})
    return np.asarray(pil), areas


def _png_uri(rgb: np.ndarray) -> str:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


_OVERVIEW = """<h2>Hand overview</h2>
<p class="note">Each joint's crop box at each visit: <span class="ok">green reliable</span>, <span style="color:#eb8c14;font-weight:600">orange flagged</span>, <span class="bad">red not measured</span>. Click a box (or a name below) for the joint's details.</p>
<div class="imgs">{% for v in visits %}<figure><img style="width:{{ v.width }}px" src="{{ v.img }}" usemap="#hand-map-{{ v.k }}" alt="visit {{ v.k }}"><figcaption>visit {{ v.k }}: {{ v.source }}</figcaption>
<map name="hand-map-{{ v.k }}">{% for a in v.areas %}<area shape="poly" coords="{{ a.coords }}" href="#{{ keys.get(a.name, 'joint-table') }}" alt="{{ a.name }}" title="{{ a.name }}: {{ a.status }}">{% endfor %}</map></figure>{% endfor %}</div>
<table id="joint-table"><tr><th>joint</th><th>narrowing</th><th>SE</th><th>unit</th><th>status</th><th>validation</th><th>segmentation / reason</th></tr>
{% for r in rows %}<tr><td>{% if r.key %}<a href="#{{ r.key }}">{{ r.joint }}</a>{% else %}{{ r.joint }}{% endif %}</td><td>{{ r.value }}</td><td>{{ r.se }}</td><td>{{ r.unit }}</td><td class="{{ 'ok' if r.status == 'reliable' else 'bad' }}">{{ r.status }}</td><td class="note">{{ r.validation }}</td><td>{{ r.why }}</td></tr>
{% endfor %}</table>
"""


def render_hand_report(images: Sequence[np.ndarray], result: Any, *, title: str = "jsnq hand report") -> str:
    """The report of a :class:`~jsnq.hand.measure.HandMeasurement` (or ``HandSeries``) as HTML.

    Args:
        images: the visits' radiographs ``[row, col]`` (for the overview), in the result's order.
        result: what :func:`jsnq.measure_hand` (or ``measure_hand_series``) returned.
    """
    from jinja2 import Environment, select_autoescape

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
    rows = []
    for name in JOINT_NAMES:
        m = result.joints.get(name)
        status = _status(result, name)
        value = se = unit = ""
        if m is not None and hasattr(m, "narrowing_px"):
            mm = m.narrowing_mm is not None
            value = f"{(m.narrowing_mm if mm else m.narrowing_px):+.3f}"
            se = f"{(m.narrowing_se_mm if mm else m.narrowing_se_px):.3f}"
            unit = "mm" if mm else "px (crop)"
            why = "; ".join(m.reasons) or result.segmentation.get(name, "")
        elif m is not None:
            factor = m.spacing_mm or 1.0
            value = f"{m.trajectory.narrowing_px[-1] * factor:+.3f}"
            se = f"{m.trajectory.se_px[-1] * factor:.3f}"
            unit = "mm" if m.spacing_mm else "px (crop)"
            why = "; ".join(m.trajectory.flagged_visits.values())
        else:
            why = result.errors.get(name, "")
        rows.append({"joint": name, "key": keys.get(name), "value": value, "se": se, "unit": unit, "status": status,
                     "validation": result.validation.get(name, ""), "why": why})
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    overview = env.from_string(_OVERVIEW).render(visits=visits, rows=rows, keys=keys)
    body = render_report([(n, result.joints[n]) for n in pairs], [(n, result.joints[n]) for n in series], title=title)
    marker = "<h2>Summary</h2>"
    if marker not in body:  # pragma: no cover - the page layout changed
        raise RuntimeError("the report template has no summary heading to put the overview before")
    return body.replace(marker, overview + marker, 1)


def write_hand_report(path: str | os.PathLike, images: Sequence[np.ndarray], result: Any, *,
                      title: str = "jsnq hand report", inputs: Sequence[Any] = ()) -> Path:
    """Write :func:`render_hand_report` to ``path`` atomically, never over one of ``inputs``.

    Raises:
        JsnqInputError: the folder does not exist, ``path`` is an input, or it cannot be written.
    """
    return write_atomic(path, render_hand_report(images, result, title=safe_display_name(title)), inputs=inputs)
