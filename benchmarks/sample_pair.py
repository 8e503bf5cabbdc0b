"""The paper's own sample pair: jsnq and SimpleITK side by side with the published output.

../shared/data/sample-pair holds the authors' example (one MCP joint, two visits, 127x127
crops, paper-style split masks). Their published output for it (fixed image as reference,
0.175 mm/px) is quoted below as a second opinion, not ground truth.

Usage::

    python benchmarks/sample_pair.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import data_dir, markdown_table  # noqa: E402
from jsnq import MeasureConfig, measure  # noqa: E402
from jsnq.geometry import narrowing_px  # noqa: E402
from jsnq.io import load_image, load_labels  # noqa: E402

SPACING_MM = 0.175
#: Published by the authors for this pair (their sample/sample-result.png): dz, dθ, dx, dy per bone,
#: dx and dy in pixels of the 127 px crop, and their JSN in mm.
PUBLISHED = {"upper": (1.00003, 0.00472, -2.10354, 0.81261), "lower": (1.00643, -0.00827, -1.63036, 0.92483),
             "jsn_mm": -0.01964, "mse_before": 0.01076, "mse_after": 0.00139}


def main() -> int:
    d = data_dir() / "sample-pair"
    rows = []
    t0 = time.perf_counter()
    m = measure(d / "fixed.png", d / "moving.png", baseline_labels=d / "fixed_split.png",
                spacing_mm=SPACING_MM, config=MeasureConfig(split_masks=True))
    ms = 1e3 * (time.perf_counter() - t0)
    for name, b in (("upper", m.upper), ("lower", m.lower)):
        rows.append([f"jsnq classical, {name}", b.scale, f"{b.angle_deg:+.2f} deg", b.tx_px, b.ty_px])
    try:
        from benchmarks.baselines import sitk_per_bone

        fixed = load_image(d / "fixed.png").array / 255.0
        moving = load_image(d / "moving.png").array / 255.0
        labels = load_labels(d / "fixed_split.png", shape=fixed.shape, split_mask=True)
        up, lo = sitk_per_bone(fixed, moving, labels)
        for name, s in (("upper", up), ("lower", lo)):
            rows.append([f"SimpleITK, {name}", s.scale, f"{s.angle_deg:+.2f} deg", s.tx, s.ty])
        sitk_jsn = narrowing_px(up, lo)
    except ImportError:
        sitk_jsn = float("nan")
    for name in ("upper", "lower"):
        dz, dth, dx, dy = PUBLISHED[name]
        rows.append([f"published (paper), {name}", dz, f"{dth:+.5f} (unit not stated)", dx, dy])
    print(markdown_table(["method, bone", "scale", "angle", "tx px", "ty px"], rows))
    print()
    print(markdown_table(
        ["method", "JSN mm", "JSN px", "dy difference px", "note"],
        [["jsnq classical", m.narrowing_mm, m.narrowing_px, m.dy_difference_px,
          f"SE {m.narrowing_se_mm:.3f} mm, reliable {m.reliable}, {ms:.0f} ms"],
         ["SimpleITK similarity per bone", sitk_jsn * SPACING_MM, sitk_jsn, float("nan"), "same split mask"],
         ["published (paper)", PUBLISHED["jsn_mm"], PUBLISHED["jsn_mm"] / SPACING_MM,
          PUBLISHED["upper"][3] - PUBLISHED["lower"][3], "their dy_upper - dy_lower"]]))
    print(f"\njsnq residual (z-scored MSE) before -> after: upper {m.upper.mse_before:.3f} -> {m.upper.mse_after:.3f}, "
          f"lower {m.lower.mse_before:.3f} -> {m.lower.mse_after:.3f}; "
          f"published intensity MSE {PUBLISHED['mse_before']} -> {PUBLISHED['mse_after']} (other units)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
