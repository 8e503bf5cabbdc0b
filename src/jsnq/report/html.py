"""One self-contained HTML report: every image embedded, no script or style fetched.

For each pair: the crops with their labels, a flicker and a checkerboard view of the baseline
against the follow-up warped bone by bone, the residual ("loss") maps before and after
registration, the per-bone parameters, the narrowing with its standard error, the JSW of each
visit and the reliability flag with its reasons. For each series: the trajectory plot, the
per-visit table and its consistency checks. A summary table at the top lists every row,
flagged first, and sorts by any column (a few lines of inline JavaScript, no library).

The report is display only: every number comes from a :class:`~jsnq.results.Measurement`
or a :class:`~jsnq.results.SeriesResult`. Images are small JPEGs (PNG for the plots).
"""

from __future__ import annotations

import base64
import io
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from jinja2 import Environment, select_autoescape
from matplotlib import colormaps
from PIL import Image as PILImage

from ..version import __version__
from ..errors import JsnqInputError, safe_display_name
from ..outputs import atomic_output, write_atomic
from .figures import LOWER_COLOUR, RESIDUAL_CMAP, UPPER_COLOUR, checkerboard, grey_limits, residual_limit

if TYPE_CHECKING:  # pragma: no cover
    from ..results import Measurement, SeriesResult

__all__ = ["write_report", "render_report", "trajectory_figure"]

JPEG_QUALITY = 80


def _data_uri(rgb: np.ndarray, fmt: str = "JPEG") -> str:
    buf = io.BytesIO()
    if rgb.ndim == 3 and (rgb == rgb[..., :1]).all():
        rgb = rgb[..., 0]  # grey: one channel, no chroma to store
    img = PILImage.fromarray(rgb)
    if fmt == "JPEG":
        img.save(buf, format="JPEG", quality=JPEG_QUALITY)
        mime = "image/jpeg"
    else:
        img.save(buf, format="PNG", optimize=True)
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _grey(a: np.ndarray, limits: tuple[float, float]) -> np.ndarray:
    g = np.clip((np.nan_to_num(a, nan=limits[0]) - limits[0]) / (limits[1] - limits[0]), 0.0, 1.0)
    return np.repeat(g[..., None], 3, axis=-1)


def _hex(colour: str) -> np.ndarray:
    return np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], float) / 255.0


def _with_labels(image: np.ndarray, labels: np.ndarray | None, limits: tuple[float, float]) -> np.ndarray:
    rgb = _grey(image, limits)
    if labels is not None:
        for value, colour in ((1, UPPER_COLOUR), (2, LOWER_COLOUR)):
            sel = labels == value
            rgb[sel] = 0.72 * rgb[sel] + 0.28 * _hex(colour)
        edge = np.zeros(labels.shape, bool)
        edge[:-1] |= (labels[:-1] == 1) & (labels[1:] == 2)
        edge[1:] |= (labels[1:] == 2) & (labels[:-1] == 1)
        rgb[edge] = (1.0, 0.93, 0.2)
    return np.round(rgb * 255).astype(np.uint8)


def _residual(image: np.ndarray, resid: np.ndarray, lim: float, limits: tuple[float, float]) -> np.ndarray:
    base = 0.35 * _grey(image, limits)
    col = colormaps[RESIDUAL_CMAP]((np.clip(resid, -lim, lim) + lim) / (2 * lim))[..., :3]
    out = np.where(np.isfinite(resid)[..., None], col, base)
    return np.round(out * 255).astype(np.uint8)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:+.{digits}f}" if digits else f"{v:.0f}"
    return str(v)


def _pair_view(m: "Measurement", key: str, title: str) -> dict[str, Any]:
    limits = grey_limits(m.baseline)
    warped = m.residuals.warped
    lim = residual_limit(m.residuals.before, m.residuals.after)
    unit = m.units
    nar = m.narrowing_mm if unit == "mm" else m.narrowing_px
    se = m.narrowing_se_mm if unit == "mm" else m.narrowing_se_px
    bones = []
    for name, b in (("upper", m.upper), ("lower", m.lower)):
        bones.append({"name": name, "scale": f"{b.scale:.4f}", "angle": f"{b.angle_deg:+.2f}",
                      "tx": f"{b.tx_px:+.2f}", "ty": f"{b.ty_px:+.2f}", "ncc_before": f"{b.ncc_before:.3f}",
                      "ncc_after": f"{b.ncc_after:.3f}", "iterations": b.iterations,
                      "converged": "yes" if b.converged else "no"})
    jsw = []
    for visit, j in (("baseline", m.jsw_baseline), ("follow-up", m.jsw_followup)):
        if j is not None:
            jsw.append({"visit": visit, "mean_px": f"{j.mean_px:.2f}", "min_px": f"{j.min_px:.2f}",
                        "mean_mm": "–" if j.mean_mm is None else f"{j.mean_mm:.3f}",
                        "min_mm": "–" if j.min_mm is None else f"{j.min_mm:.3f}"})
    return {
        "key": key, "title": safe_display_name(title), "baseline": safe_display_name(m.baseline_source),
        "followup": safe_display_name(m.followup_source),
        "reliable": m.reliable, "reasons": list(m.reasons), "notes": list(m.notes), "engine": m.engine,
        "segmenter": m.segmenter,
        "narrowing": f"{nar:+.3f} ± {se:.3f} {unit}", "narrowing_value": nar, "se_value": se,
        "narrowing_px": f"{m.narrowing_px:+.3f} ± {m.narrowing_se_px:.3f} px", "unit": unit,
        "dy": f"{m.dy_difference_px:+.3f} px", "bones": bones, "jsw": jsw,
        "label_gap": None if m.label_disagreement_px is None else f"{m.label_disagreement_px:.1f} px",
        "img_baseline": _data_uri(_with_labels(m.baseline, m.labels, limits)),
        "img_followup": _data_uri(_with_labels(m.followup, m.followup_labels, limits)),
        "img_warped": _data_uri(_with_labels(warped, None, limits)),
        "img_base_plain": _data_uri(_with_labels(m.baseline, None, limits)),
        "img_checker": _data_uri(_with_labels(checkerboard(m.baseline, warped), None, limits)),
        "img_before": _data_uri(_residual(m.baseline, m.residuals.before, lim, limits)),
        "img_after": _data_uri(_residual(m.baseline, m.residuals.after, lim, limits)),
        "residual_limit": f"{lim:.2f}",
    }


def _trajectory_fig(s: "SeriesResult"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t = s.trajectory
    x = s.years if s.years is not None else np.arange(len(s.sources), dtype=float)
    factor = s.spacing_mm if s.spacing_mm is not None else 1.0
    unit = "mm" if s.spacing_mm is not None else "px"
    fig = Figure(figsize=(5.2, 3.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    y, e = t.narrowing_px * factor, t.se_px * factor
    ax.errorbar(x, y, yerr=e, fmt="o-", color="#1f4e79", ecolor="#1f4e79", capsize=4, lw=1.5)
    for k in t.flagged_visits:
        ax.plot(x[k], y[k], "o", ms=12, mfc="none", mec="#c62828", mew=2)
    ax.axhline(0.0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("years since the first visit" if s.years is not None else "visit")
    ax.set_ylabel(f"cumulative narrowing ({unit})")
    ax.grid(alpha=0.3)
    return fig


def _trajectory_png(s: "SeriesResult") -> str:
    buf = io.BytesIO()
    _trajectory_fig(s).savefig(buf, format="png", dpi=100)
    return f"data:image/png;base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def trajectory_figure(s: "SeriesResult", path: str | os.PathLike) -> Path:
    """Plot the cumulative narrowing (mm when the spacing is known) against time (years when
    the dates are known, else the visit number), with +-1 SE error bars; flagged visits
    ringed in red. Writes a PNG at ``path`` (its folder must exist)."""
    out = Path(os.fspath(path))
    if not out.parent.is_dir():
        raise JsnqInputError(out, "output directory does not exist")
    with atomic_output(out) as tmp:
        _trajectory_fig(s).savefig(tmp, format="png", dpi=120)
    return out


def _series_view(s: "SeriesResult", key: str, title: str) -> dict[str, Any]:
    t = s.trajectory
    unit = "mm" if s.spacing_mm is not None else "px"
    factor = s.spacing_mm if s.spacing_mm is not None else 1.0
    visits = [{"k": k, "source": safe_display_name(src), "date": "–" if s.dates is None else s.dates[k],
               "value": f"{t.narrowing_px[k] * factor:+.3f} ± {t.se_px[k] * factor:.3f} {unit}",
               "flag": t.flagged_visits.get(k, "")} for k, src in enumerate(s.sources)]
    pairs = [{"i": p.i, "j": p.j, "value": f"{p.value_px:+.3f} ± {p.se_px:.3f}",
              "fwd": f"{p.forward_px:+.3f}", "bwd": f"{p.backward_px:+.3f}",
              "disagreement": f"{p.disagreement_px:+.3f}", "residual": f"{r:+.3f}",
              "reliable": "yes" if p.reliable else "no"} for p, r in zip(t.pairs, t.residuals_px)]
    detail_keys = sorted({(k, k + 1) for k in range(len(s.sources) - 1)} | {(0, len(s.sources) - 1)})
    details = [_pair_view(s.measurements[ij], f"{key}-{ij[0]}-{ij[1]}", f"{title}: visit {ij[0]} → visit {ij[1]}")
               for ij in detail_keys if ij in s.measurements]
    last = t.narrowing_px[-1] * factor
    reliable = not t.flagged_visits and all(p.reliable for p in t.pairs)
    reasons = list(dict.fromkeys([*t.flagged_visits.values(),  # each once (a reason may flag every visit)
                                  *(f"pair {p.i}→{p.j} flagged unreliable" for p in t.pairs if not p.reliable)]))
    return {"key": key, "title": title, "unit": unit, "visits": visits, "pairs": pairs, "details": details,
            "plot": _trajectory_png(s), "path_rms": _fmt(t.path_rms_px), "chi2": _fmt(t.chi2_reduced, 2),
            "errors": [f"{i}→{j}: {e}" for (i, j), e in sorted(s.errors.items())],
            "reliable": reliable, "reasons": reasons, "last_value": last,
            "last": f"{last:+.3f} ± {t.se_px[-1] * factor:.3f} {unit}"}


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{{ title }}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;color:#1d2430;max-width:1300px}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:1.8em;border-bottom:2px solid #d0d7e2}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em} th,td{border:1px solid #d0d7e2;padding:.25em .55em;text-align:left}
th{background:#eef2f7} #summary th{cursor:pointer;user-select:none} #summary th:after{content:" \\2195";color:#9aa5b4}
.bad{color:#c62828;font-weight:600} .ok{color:#1b7f3b;font-weight:600}
.imgs{display:flex;flex-wrap:wrap;gap:10px} figure{margin:0;text-align:center;font-size:.85em}
figure img{width:230px;height:auto;image-rendering:pixelated;border:1px solid #ccd}
.note{color:#5b6677;font-size:.88em} .section{margin-bottom:2em} ul.reasons{margin:.3em 0}
</style></head><body>
<h1>{{ title }}</h1>
<p class="note">jsnq {{ version }} · {{ n_rows }} {{ 'result' if n_rows == 1 else 'results' }} · narrowing: positive = the joint space narrowed · every image is embedded; this file needs no network.</p>
<h2>Summary</h2>
<table id="summary"><thead><tr><th data-type="text">item</th><th data-type="text">kind</th><th data-type="num">narrowing</th><th data-type="num">SE</th><th data-type="text">unit</th><th data-type="text">flag</th><th data-type="text">reasons</th><th data-type="text">notes</th></tr></thead><tbody>
{% for r in summary %}<tr data-flagged="{{ 0 if r.reliable else 1 }}"><td><a href="#{{ r.key }}">{{ r.title }}</a></td><td>{{ r.kind }}</td><td data-value="{{ r.value }}">{{ '%+.3f'|format(r.value) }}</td><td data-value="{{ r.se }}">{{ '%.3f'|format(r.se) }}</td><td>{{ r.unit }}</td><td class="{{ 'ok' if r.reliable else 'bad' }}">{{ 'reliable' if r.reliable else 'check' }}</td><td>{{ r.reasons|join('; ') }}</td><td class="note">{{ r.notes|join('; ') }}</td></tr>
{% endfor %}</tbody></table>
{% macro pair(p) %}
<div class="section" id="{{ p.key }}"><h3>{{ p.title }}</h3>
<p><b>Narrowing {{ p.narrowing }}</b> ({{ p.narrowing_px }}; paper's dy<sub>upper</sub> − dy<sub>lower</sub> {{ p.dy }}) · engine {{ p.engine }} · labels {{ p.segmenter }}{% if p.label_gap %} (split lines checked: {{ p.label_gap }} apart){% endif %} ·
<span class="{{ 'ok' if p.reliable else 'bad' }}">{{ 'reliable' if p.reliable else 'flagged: check before use' }}</span></p>
{% if p.reasons %}<ul class="reasons">{% for r in p.reasons %}<li class="bad">{{ r }}</li>{% endfor %}</ul>{% endif %}
{% if p.notes %}<ul class="reasons">{% for r in p.notes %}<li class="note">{{ r }}</li>{% endfor %}</ul>{% endif %}
<p class="note">{{ p.baseline }} → {{ p.followup }}</p>
<div class="imgs">
<figure><img alt="baseline with labels" src="{{ p.img_baseline }}"><figcaption>baseline: upper side orange, lower side blue</figcaption></figure>
<figure><img alt="follow-up" src="{{ p.img_followup }}"><figcaption>follow-up</figcaption></figure>
<figure><img class="flicker" alt="flicker baseline / warped follow-up" src="{{ p.img_base_plain }}" data-b="{{ p.img_warped }}"><figcaption>flicker: baseline / warped follow-up<br><label><input type="checkbox" class="flick" checked> flicker</label></figcaption></figure>
<figure><img alt="checkerboard" src="{{ p.img_checker }}"><figcaption>checkerboard: baseline / warped follow-up</figcaption></figure>
<figure><img alt="residual before" src="{{ p.img_before }}"><figcaption>residual before registration</figcaption></figure>
<figure><img alt="residual after" src="{{ p.img_after }}"><figcaption>residual after (± {{ p.residual_limit }} SD)</figcaption></figure>
</div>
<table><tr><th>bone</th><th>scale</th><th>angle °</th><th>tx px</th><th>ty px</th><th>NCC before</th><th>NCC after</th><th>iterations</th><th>converged</th></tr>
{% for b in p.bones %}<tr><td>{{ b.name }}</td><td>{{ b.scale }}</td><td>{{ b.angle }}</td><td>{{ b.tx }}</td><td>{{ b.ty }}</td><td>{{ b.ncc_before }}</td><td>{{ b.ncc_after }}</td><td>{{ b.iterations }}</td><td>{{ b.converged }}</td></tr>{% endfor %}</table>
{% if p.jsw %}<table><tr><th>JSW</th><th>mean px</th><th>min px</th><th>mean mm</th><th>min mm</th></tr>
{% for j in p.jsw %}<tr><td>{{ j.visit }}</td><td>{{ j.mean_px }}</td><td>{{ j.min_px }}</td><td>{{ j.mean_mm }}</td><td>{{ j.min_mm }}</td></tr>{% endfor %}</table>{% endif %}
</div>
{% endmacro %}
{% for s in series %}
<h2 id="{{ s.key }}">{{ s.title }}: cumulative narrowing {{ s.last }}</h2>
{% if s.reasons %}<ul class="reasons">{% for r in s.reasons %}<li class="bad">{{ r }}</li>{% endfor %}</ul>{% endif %}
<div class="imgs"><figure><img style="width:520px" alt="trajectory" src="{{ s.plot }}"><figcaption>narrowing relative to the first visit, ± 1 SE</figcaption></figure></div>
<table><tr><th>visit</th><th>date</th><th>source</th><th>cumulative narrowing</th><th>flag</th></tr>
{% for v in s.visits %}<tr><td>{{ v.k }}</td><td>{{ v.date }}</td><td>{{ v.source }}</td><td>{{ v.value }}</td><td class="bad">{{ v.flag }}</td></tr>{% endfor %}</table>
<p>Path-consistency RMS {{ s.path_rms }} px · reduced χ² {{ s.chi2 }}</p>
<table><tr><th>pair</th><th>combined px</th><th>forward px</th><th>backward px</th><th>fwd + bwd px</th><th>fit residual px</th><th>reliable</th></tr>
{% for p in s.pairs %}<tr><td>{{ p.i }} → {{ p.j }}</td><td>{{ p.value }}</td><td>{{ p.fwd }}</td><td>{{ p.bwd }}</td><td>{{ p.disagreement }}</td><td>{{ p.residual }}</td><td>{{ p.reliable }}</td></tr>{% endfor %}</table>
{% for e in s.errors %}<p class="bad">{{ e }}</p>{% endfor %}
{% for p in s.details %}{{ pair(p) }}{% endfor %}
{% endfor %}
{% if pairs %}<h2>Pairs</h2>{% for p in pairs %}{{ pair(p) }}{% endfor %}{% endif %}
<script>
(function(){
  var t=document.getElementById('summary'), body=t.tBodies[0];
  function sortBy(col, num, dir){
    var rows=Array.prototype.slice.call(body.rows);
    rows.sort(function(a,b){
      var x=a.cells[col], y=b.cells[col];
      var u=num?parseFloat(x.getAttribute('data-value')):x.textContent, v=num?parseFloat(y.getAttribute('data-value')):y.textContent;
      return (u<v?-1:u>v?1:0)*dir;});
    rows.forEach(function(r){body.appendChild(r);});
  }
  var dirs={};
  Array.prototype.forEach.call(t.tHead.rows[0].cells,function(th,i){
    th.addEventListener('click',function(){dirs[i]=-(dirs[i]||-1);sortBy(i, th.getAttribute('data-type')==='num', dirs[i]);});});
  var flicks=document.querySelectorAll('img.flicker'), on=true;
  Array.prototype.forEach.call(flicks,function(img){img.flickA=img.getAttribute('src');});  // each image stored once
  setInterval(function(){on=!on;Array.prototype.forEach.call(flicks,function(img){
    var box=img.parentNode.querySelector('input.flick');
    img.src=(box&&box.checked&&!on)?img.getAttribute('data-b'):img.flickA;});},600);
})();
</script>
</body></html>
"""


def render_report(measurements: Sequence[tuple[str, "Measurement"]] = (),
                  series: Sequence[tuple[str, "SeriesResult"]] = (), *, title: str = "jsnq report") -> str:
    """The report as an HTML string.

    Args:
        measurements: ``(name, Measurement)`` pairs.
        series: ``(name, SeriesResult)`` series.
        title: the page title.
    """
    pair_views = [_pair_view(m, f"pair-{k}", name) for k, (name, m) in enumerate(measurements)]
    series_views = [_series_view(s, f"series-{k}", name) for k, (name, s) in enumerate(series)]
    summary = ([{"key": s["key"], "title": s["title"], "kind": "series", "value": s["last_value"],
                 "se": float(sv.trajectory.se_px[-1] * (sv.spacing_mm or 1.0)), "unit": s["unit"],
                 "reliable": s["reliable"], "reasons": s["reasons"], "notes": []}
                for s, (_, sv) in zip(series_views, series)]
               + [{"key": p["key"], "title": p["title"], "kind": "pair", "value": p["narrowing_value"],
                   "se": p["se_value"], "unit": p["unit"], "reliable": p["reliable"], "reasons": p["reasons"],
                   "notes": p["notes"]}
                  for p in pair_views])
    summary.sort(key=lambda r: r["reliable"])  # flagged first (stable: input order within each group)
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    return env.from_string(_TEMPLATE).render(title=title, version=__version__, summary=summary, pairs=pair_views,
                                             series=series_views, n_rows=len(summary))


def write_report(path: str | os.PathLike, measurements: Sequence[tuple[str, "Measurement"]] = (),
                 series: Sequence[tuple[str, "SeriesResult"]] = (), *, title: str = "jsnq report") -> Path:
    """Write :func:`render_report` to ``path`` (its folder must exist).

    Raises:
        JsnqInputError: the folder does not exist or the file cannot be written.
    """
    out = Path(os.fspath(path))
    if not out.parent.is_dir():
        raise JsnqInputError(out, "output directory does not exist")
    write_atomic(out, render_report(measurements, series, title=safe_display_name(title)))
    return out
