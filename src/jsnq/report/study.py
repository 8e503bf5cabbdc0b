"""The study's HTML report: one self-contained page.

Per joint type the distribution of the units' progression rates (each unit a dot with its
95 % error bar, the joint's mean and CI as a band), the summary table, and every unit in one
table: failed units first, then flagged ones, each linked to its own report where one exists.
Display only: every number comes from the study's ``units.csv`` and ``summary.csv`` rows.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any, Mapping, Sequence

import numpy as np
from jinja2 import Environment, select_autoescape

from ..version import __version__

__all__ = ["render_study_report", "rates_figure_png", "MAX_FIGURE_PX", "FLAGGED"]

#: The rates chart's largest width (px): it fits a 1,400 px window beside the page's margins.
MAX_FIGURE_PX = 1300
#: The colour of a flagged unit, in the chart and the table.
FLAGGED = "#c46a00"


def _finite(v: Any) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def rates_figure_png(units: Sequence[Mapping[str, Any]], summary: Sequence[Mapping[str, Any]]) -> str | None:
    """A PNG data URI: per joint, each unit's rate (mm/year where every unit has a spacing, else
    px/year) with its 95 % error bar; the joint's mean and CI as a band. None without rates."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    use_mm = all(_finite(u.get("rate_mm_per_year")) for u in units if _finite(u.get("rate_px_per_year")))
    key, unit = ("mm_per_year", "mm/year") if use_mm else ("px_per_year", "px/year")
    joints = [s["joint"] for s in summary]
    if not any(_finite(u.get(f"rate_{key}")) for u in units):
        return None
    # at most MAX_FIGURE_PX wide (14 joints fit a 1,400 px page); the page scales it down further
    fig = Figure(figsize=(min(MAX_FIGURE_PX / 110, max(4.0, 0.85 * len(joints) + 1.5)), 3.6), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    rng = np.random.default_rng(0)  # jitter only: display, not data
    for x, s in enumerate(summary):
        sfx = "mm" if use_mm else "px"
        lo, hi = s.get(f"rate_ci_low_{sfx}"), s.get(f"rate_ci_high_{sfx}")
        if _finite(lo) and _finite(hi):
            ax.fill_between([x - 0.35, x + 0.35], lo, hi, color="#9ecae1", alpha=0.6, lw=0)
        if _finite(s.get(f"rate_{key}")):
            ax.plot([x - 0.35, x + 0.35], [s[f"rate_{key}"]] * 2, color="#08519c", lw=2)
        mine = [u for u in units if u.get("joint") == s["joint"] and _finite(u.get(f"rate_{key}"))]
        for u in mine:
            xx = x + rng.uniform(-0.25, 0.25)
            se = u.get(f"rate_se_{key}")
            colour = FLAGGED if u.get("flagged") else "#333333"
            ax.errorbar([xx], [u[f"rate_{key}"]], yerr=[1.96 * se] if _finite(se) else None, fmt="o", ms=3,
                        color=colour, elinewidth=0.6, alpha=0.8)
    ax.axhline(0.0, color="#888888", lw=0.8)
    ax.set_xticks(range(len(joints)))
    ax.set_xticklabels(joints)
    ax.set_ylabel(f"narrowing rate ({unit})")
    ax.set_title("units (orange: flagged, left out of the mean); joint mean and 95 % CI of the trusted units",
                 fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{digits}f}"
    return str(v)


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:0.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f0f0f0} td.t{text-align:left}
tr.failed td{background:#fde0dd} tr.flagged td{background:#fff3cd} tr.flagged td.s{color:#c46a00;font-weight:600}
tr.failed td.s{color:#c62828;font-weight:600} img{max-width:100%;height:auto}
.note{color:#555;font-size:12px}
</style></head><body>
<h1>{{ title }}</h1>
<p class="note">jsnq {{ version }} · {{ counts }}. A unit is one joint series (a row of units.csv); flagged units (orange) are left out of the rates, units not measured (red) too.</p>
<h2>Progression rate per joint</h2>
{% if figure %}<img src="{{ figure }}" alt="per-unit rates per joint">{% else %}<p>No unit has a rate.</p>{% endif %}
<table><tr><th>joint</th><th>units</th><th>not measured</th><th>flagged</th><th>patients</th><th>rate (mm/year)</th><th>95 % CI</th>
<th>rate (px/year)</th><th>95 % CI</th><th>SDC (mm)</th><th>SDC (px)</th><th class="t">notes</th></tr>
{% for s in summary %}<tr><td class="t">{{ s.joint }}</td><td>{{ s.n_units }}</td><td>{{ s.n_failed }}</td><td>{{ s.n_flagged }}</td>
<td>{{ s.n_patients }}</td><td>{{ s.rate_mm }}</td><td>{{ s.ci_mm }}</td><td>{{ s.rate_px }}</td><td>{{ s.ci_px }}</td>
<td>{{ s.sdc_mm }}</td><td>{{ s.sdc_px }}</td><td class="t">{{ s.notes }}</td></tr>
{% endfor %}</table>
<p class="note">Rate: per unit the GLS slope of its trajectory; per joint the mean over patients of the trusted units' rates, with a t-interval (empty with one patient).
SDC = 1.96 &times; RMS of the trusted units' last-visit SEs. px: pixels of the radiograph (whole hands) or of the crop (crop studies). See docs/study.md.</p>
<h2>Units (not measured, then flagged, first)</h2>
<table><tr><th class="t">unit</th><th class="t">patient</th><th class="t">side</th><th class="t">joint</th><th>visits</th>
<th>years</th><th>rate (mm/year)</th><th>SE</th><th>rate (px/year)</th><th>SE</th><th class="t">status</th><th class="t">reasons</th></tr>
{% for u in units %}<tr class="{{ u.cls }}"><td class="t">{% if u.report %}<a href="{{ u.report }}">{{ u.unit }}</a>{% else %}{{ u.unit }}{% endif %}</td>
<td class="t">{{ u.patient }}</td><td class="t">{{ u.side }}</td><td class="t">{{ u.joint }}</td><td>{{ u.n_visits }}</td>
<td>{{ u.years }}</td><td>{{ u.rate_mm }}</td><td>{{ u.se_mm }}</td><td>{{ u.rate_px }}</td><td>{{ u.se_px }}</td>
<td class="t s">{{ u.status }}</td><td class="t">{{ u.reasons }}</td></tr>
{% endfor %}</table>
</body></html>
"""


def render_study_report(units: Sequence[Mapping[str, Any]], summary: Sequence[Mapping[str, Any]], *,
                        title: str = "jsnq study") -> str:
    """The study's report as an HTML string.

    Args:
        units: ``units.csv`` rows (dicts with its columns; ``report`` a relative link or empty).
        summary: ``summary.csv`` rows.
        title: the page title.
    """
    def ci(s: Mapping[str, Any], sfx: str) -> str:
        lo, hi = s.get(f"rate_ci_low_{sfx}"), s.get(f"rate_ci_high_{sfx}")
        return f"{_fmt(lo)} to {_fmt(hi)}" if _finite(lo) and _finite(hi) else ""

    order = sorted(units, key=lambda u: (u.get("status") == "ok", not u.get("flagged")))
    unit_views = [{
        "unit": u["unit"], "patient": u.get("patient"), "side": u.get("side"), "joint": u.get("joint"),
        "n_visits": u.get("n_visits"), "years": _fmt(u.get("years"), 2), "report": u.get("report") or None,
        "rate_mm": _fmt(u.get("rate_mm_per_year")), "se_mm": _fmt(u.get("rate_se_mm_per_year")),
        "rate_px": _fmt(u.get("rate_px_per_year")), "se_px": _fmt(u.get("rate_se_px_per_year")),
        "status": "not measured" if u.get("status") != "ok" else ("flagged" if u.get("flagged") else "trusted"),
        "reasons": u.get("error") if u.get("status") != "ok" else (u.get("reasons") or ""),
        "cls": "failed" if u.get("status") != "ok" else ("flagged" if u.get("flagged") else ""),
    } for u in order]
    summary_views = [{
        "joint": s["joint"], "n_units": s["n_units"], "n_failed": s["n_failed"], "n_patients": s["n_patients"],
        "rate_mm": _fmt(s.get("rate_mm_per_year")), "ci_mm": ci(s, "mm"), "rate_px": _fmt(s.get("rate_px_per_year")),
        "ci_px": ci(s, "px"), "sdc_mm": _fmt(s.get("sdc_mm")), "sdc_px": _fmt(s.get("sdc_px")),
        "n_flagged": s.get("n_flagged", ""),
        "notes": s.get("notes", ""),
    } for s in summary]
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    return env.from_string(_TEMPLATE).render(
        title=title, version=__version__, figure=rates_figure_png(units, summary), summary=summary_views,
        units=unit_views, counts=_counts(units))


def _counts(units: Sequence[Mapping[str, Any]]) -> str:
    """``28 units · 1 not measured · 20 flagged`` (as the terminal's and study.json's counts)."""
    n = len(units)
    failed = sum(u.get("status") != "ok" for u in units)
    flagged = sum(bool(u.get("flagged")) and u.get("status") == "ok" for u in units)
    return f"{n} {'unit' if n == 1 else 'units'} · {failed} not measured · {flagged} flagged"
