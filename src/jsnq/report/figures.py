"""The QA figure of one measurement: images, labels, warps, residuals and the numbers.

Uses ``matplotlib.figure.Figure`` with the Agg canvas directly: no pyplot, no global
backend, safe in threads and on headless machines. Only display code lives here; every
number shown comes from the :class:`~jsnq.results.Measurement`.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import offset_copy

from ..errors import JsnqInputError, safe_display_name
from ..outputs import atomic_output

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

    from ..results import BoneMotion, Measurement

__all__ = ["qa_figure", "overlay_labels", "segmentation_overlay", "checkerboard", "grey_limits", "residual_limit",
           "LOWER_COLOUR", "UPPER_COLOUR", "RESIDUAL_CMAP"]

UPPER_COLOUR = "#ff9f1c"  # orange: upper side of the joint (proximal phalanx)
LOWER_COLOUR = "#2ec4f0"  # blue: lower side (metacarpal head)
SPLIT_COLOUR = "#ffee32"  # the boundary between the sides
POINT_COLOUR = "#ff2d95"  # the reading point (articular centre)
RESIDUAL_CMAP = "RdBu_r"
OK_COLOUR = "#1b7f3b"
BAD_COLOUR = "#c62828"
FIGSIZE_IN = (14.0, 8.0)
DPI = 110
MAX_REASON_LINES = 8


def grey_limits(image: np.ndarray) -> tuple[float, float]:
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [0.5, 99.5])
    return (float(lo), float(hi)) if hi > lo else (float(lo), float(lo) + 1.0)


def segmentation_overlay(image: np.ndarray, upper_mask: np.ndarray, lower_mask: np.ndarray,
                         line: np.ndarray) -> np.ndarray:
    """8-bit RGB ``[row, col, 3]``: the crop in grey (0.5-99.5 percentile limits), the upper
    bone tinted red, the lower blue, and the midline (a row per column, NaN = none) yellow."""
    a = np.asarray(image, dtype=np.float64)
    lo, hi = grey_limits(a)
    g = np.clip((a - lo) / (hi - lo), 0.0, 1.0)
    rgb = np.stack([g, g, g], axis=-1)
    for mask, colour in ((upper_mask, (1.0, 0.25, 0.25)), (lower_mask, (0.3, 0.45, 1.0))):
        rgb[mask] = 0.6 * rgb[mask] + 0.4 * np.asarray(colour)
    cols = np.flatnonzero(np.isfinite(line))
    rows = np.clip(np.round(line[cols]).astype(int), 0, a.shape[0] - 1)
    rgb[rows, cols] = (1.0, 0.9, 0.1)
    return np.round(rgb * 255.0).astype(np.uint8)


def _show(ax: "Axes", image: np.ndarray, limits: tuple[float, float], title: str) -> None:
    ax.imshow(image, cmap="gray", vmin=limits[0], vmax=limits[1], interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_split(ax: "Axes", labels: np.ndarray) -> None:
    """The boundary between label 1 (upper side) and label 2 (lower side)."""
    side = np.where(labels == 1, 1.0, np.where(labels == 2, -1.0, np.nan))
    if np.any(side > 0) and np.any(side < 0):
        ax.contour(side, levels=[0.0], colors=[SPLIT_COLOUR], linewidths=1.3)


def overlay_labels(ax: "Axes", image: np.ndarray, labels: np.ndarray | None, *,
                   limits: tuple[float, float] | None = None, alpha: float = 0.28,
                   title: str = "", legend: bool = False) -> None:
    """Show ``image`` in grey with ``labels`` tinted (1 = upper side, 2 = lower side).

    The boundary between the two sides is drawn as a line. ``labels=None`` shows the image
    only. ``limits`` are the grey display limits (default: 0.5-99.5 percentiles).
    """
    _show(ax, image, limits or grey_limits(image), title)
    if labels is None:
        return
    tint = np.zeros(labels.shape + (4,), np.float32)
    for value, colour in ((1, UPPER_COLOUR), (2, LOWER_COLOUR)):
        tint[labels == value] = (*to_rgba(colour)[:3], alpha)
    ax.imshow(tint, interpolation="nearest")
    _draw_split(ax, labels)
    if legend:
        handles = [Patch(color=UPPER_COLOUR, label="upper side"),
                   Patch(color=LOWER_COLOUR, label="lower side"),
                   Line2D([], [], color=SPLIT_COLOUR, lw=1.5, label="split")]
        ax.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.75,
                  handlelength=1.2, borderpad=0.4, labelspacing=0.25)


def checkerboard(a: np.ndarray, b: np.ndarray, tiles: int = 8) -> np.ndarray:
    """Alternate square tiles of ``a`` and ``b`` (``a`` where ``b`` is NaN)."""
    rows, cols = a.shape
    tile = max(4, min(rows, cols) // tiles)
    rr, cc = np.indices(a.shape)
    use_b = ((rr // tile + cc // tile) % 2 == 1) & np.isfinite(b)
    return np.where(use_b, b, a)


def residual_limit(*maps: np.ndarray) -> float:
    values = np.concatenate([np.abs(m[np.isfinite(m)]).ravel() for m in maps])
    if values.size == 0:
        return 1.0
    lim = float(np.percentile(values, 99.0))
    return lim if np.isfinite(lim) and lim > 0 else 1.0


def _g(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}g}"


def _pm(value: float, se: float, unit: str, decimals: int) -> str:
    return f"{value:+.{decimals}f} ± {se:.{decimals}f} {unit}"


def _bone_table(upper: "BoneMotion", lower: "BoneMotion") -> str:
    def row(name: str, fmt) -> str:
        return f"{name:<18}{fmt(upper):>16}{fmt(lower):>16}"

    lines = [
        f"{'':<18}{'upper bone':>16}{'lower bone':>16}",
        row("scale", lambda b: f"{b.scale:.4f}"),
        row("angle (deg)", lambda b: f"{b.angle_deg:+.2f}"),
        row("tx (px)", lambda b: f"{b.tx_px:+.2f}"),
        row("ty (px)", lambda b: f"{b.ty_px:+.2f}"),
        row("NCC before→after", lambda b: f"{b.ncc_before:.3f}→{b.ncc_after:.3f}"),
        row("MSE before→after", lambda b: f"{_g(b.mse_before)}→{_g(b.mse_after)}"),
        row("converged", lambda b: ("yes" if b.converged else "NO") + (", at bound" if b.at_bound else "")),
    ]
    return "\n".join(lines)


_LINE = 1.3  # line height / font size
_FOOTER_PT = 14.0


def _number_blocks(m: "Measurement", wrap_chars: int) -> list[tuple[str, float, float, dict]]:
    """The text panel as ``(text, font size, gap after in pt, text kwargs)`` blocks, top-down."""
    blocks: list[tuple[str, float, float, dict]] = []

    def add(text: str, size: float = 9.5, gap: float = 4.0, **kw) -> None:
        blocks.append((text, size, gap, kw))

    if m.narrowing_mm is not None and m.narrowing_se_mm is not None:
        add("Joint space narrowing: " + _pm(m.narrowing_mm, m.narrowing_se_mm, "mm", 3), 15, 2, weight="bold")
        add(f"= {_pm(m.narrowing_px, m.narrowing_se_px, 'px', 3)} at {m.spacing_mm:g} mm/px", 10.5)
    else:
        add("Joint space narrowing: " + _pm(m.narrowing_px, m.narrowing_se_px, "px", 3), 15, 2, weight="bold")
        add("pixel spacing unknown: pixels only", 10.5)
    add("± = standard error; positive = the joint space narrowed", color="0.3")
    add(f"dy difference (dy upper − dy lower, the paper's JSN): {m.dy_difference_px:+.3f} px", gap=8)
    add(_bone_table(m.upper, m.lower), gap=8, family="monospace")
    if m.reliable:
        add("Reliable: all checks passed", 12, weight="bold", color=OK_COLOUR)
    else:
        add("UNRELIABLE", 12, weight="bold", color=BAD_COLOUR)
        lines: list[str] = []
        for reason in m.reasons:
            lines += textwrap.wrap(reason, width=wrap_chars, initial_indent="• ", subsequent_indent="  ")
        if len(lines) > MAX_REASON_LINES:
            lines = lines[: MAX_REASON_LINES - 1] + [f"  … ({len(m.reasons)} reasons in all)"]
        add("\n".join(lines), color=BAD_COLOUR)
    return blocks


def _blocks_height(blocks: list[tuple[str, float, float, dict]]) -> float:
    return sum(size * _LINE * (text.count("\n") + 1) + gap for text, size, gap, _ in blocks)


def _numbers_panel(ax: "Axes", m: "Measurement") -> None:
    """The numbers, shrunk to fit the panel (call once every other artist is in place)."""
    ax.axis("off")
    fig = ax.figure
    fig.get_layout_engine().execute(fig)  # the panel's final size; texts below stay out of the layout
    box = ax.get_window_extent()
    width_pt, height_pt = box.width * 72 / fig.dpi, box.height * 72 / fig.dpi - _FOOTER_PT
    scale = 1.0
    for _ in range(3):  # smaller text fits more characters per line: re-wrap, re-measure
        blocks = _number_blocks(m, max(30, int(width_pt / (0.55 * 9.5 * scale))))
        scale = min(1.0, height_pt / _blocks_height(blocks))
    y_pt = 0.0
    for text, size, gap, kw in blocks:
        where = offset_copy(ax.transAxes, fig=fig, y=-y_pt, units="points")
        ax.text(0.0, 1.0, text, transform=where, fontsize=size * scale, va="top", ha="left",
                in_layout=False, **kw)
        y_pt += (size * _LINE * (text.count("\n") + 1) + gap) * scale
    labels = "given labels" if m.segmenter == "given" else f"{m.segmenter} joint-space line"
    ax.text(0.0, 0.0, f"engine {m.engine} · sides from {labels} · residuals in units of each side's SD",
            transform=ax.transAxes, fontsize=8, color="0.4", va="bottom", ha="left", in_layout=False)


def qa_figure(m: "Measurement", path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Write the quality-assurance figure of a measurement as a PNG at ``path``.

    Panels: baseline with the labels (upper side orange, lower side blue, split line),
    follow-up (with its labels when given), follow-up warped into the baseline frame (each
    side by its own bone), a baseline/warped checkerboard, the residual maps before and
    after registration (shared symmetric limits, blank outside the labels) and the numbers.

    Args:
        m: the measurement.
        path: the PNG to write; its directory must exist (it is not created).
        title: figure title; default ``"<baseline> → <follow-up>"``.

    Returns:
        ``Path(path)``.

    Raises:
        JsnqInputError: the output directory does not exist or the file cannot be written.
    """
    out = Path(os.fspath(path))
    if not out.parent.is_dir():
        raise JsnqInputError(out, "output directory does not exist")
    if out.is_dir():
        raise JsnqInputError(out, "is a directory, not a file name")

    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    # columns: 2 image panels | room for the residuals' colour bar | 2 image panels (or the numbers)
    grid = fig.add_gridspec(2, 5, width_ratios=(1, 1, 0.2, 1, 1))
    limits = grey_limits(m.baseline)

    def panel(row: int, col: int) -> "Axes":
        ax = fig.add_subplot(grid[row, col])
        ax.set_facecolor("black")  # pixels without a value (NaN) show black, not white
        return ax

    base_ax, fol_ax = panel(0, 0), panel(0, 1)
    overlay_labels(base_ax, m.baseline, m.labels, limits=limits,
                   title="Baseline with sides", legend=True)
    overlay_labels(fol_ax, m.followup, m.followup_labels, limits=limits,
                   title="Follow-up" + (" with its sides" if m.followup_labels is not None else ""))
    # where the narrowing is read: each visit's reading point (the articular centre)
    for ax, point in ((base_ax, m.point_px), (fol_ax, m.followup_point_px)):
        if point is not None:
            ax.plot([point[0]], [point[1]], marker="+", color=POINT_COLOUR, markersize=11, markeredgewidth=1.6)
    ax = panel(0, 3)
    _show(ax, m.residuals.warped, limits, "Follow-up warped to baseline\n(each side by its own bone)")
    _draw_split(ax, m.labels)
    _show(panel(0, 4), checkerboard(m.baseline, m.residuals.warped), limits,
          "Checkerboard: baseline /\nwarped follow-up")

    lim = residual_limit(m.residuals.before, m.residuals.after)
    cmap = colormaps[RESIDUAL_CMAP].with_extremes(bad=(0, 0, 0, 0))
    image = None
    for col, maps, when, attr in ((0, m.residuals.before, "before", "mse_before"),
                                  (1, m.residuals.after, "after", "mse_after")):
        ax = panel(1, col)
        _show(ax, m.baseline, limits, f"Residual {when} registration\n"
              f"MSE upper {_g(getattr(m.upper, attr))} · lower {_g(getattr(m.lower, attr))}")
        ax.images[0].set_alpha(0.35)  # faint anatomy under the residual, seen where it is blank
        image = ax.imshow(maps, cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest")
    # an inset of the last residual panel: exactly as tall as the image (a grid cell is taller)
    bar = fig.colorbar(image, cax=ax.inset_axes((1.04, 0.0, 0.05, 1.0)))
    bar.set_label("follow-up − baseline (SD units)", fontsize=9)
    bar.ax.tick_params(labelsize=8)

    if title is None:
        title = f"{Path(m.baseline_source).name} → {Path(m.followup_source).name}"
    fig.suptitle(safe_display_name(title), fontsize=13, weight="bold")
    _numbers_panel(fig.add_subplot(grid[1, 3:]), m)

    with atomic_output(out) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return out
