"""Fixed cases whose numbers must not move when the code is restructured.

Measures a fixed set of pairs and series (phantoms; real crops of ../shared/data/finger-joints
when present) with several configurations and prints, or writes with --out, every narrowing, SE,
flag and reason as JSON. Run before and after a refactor and compare the two files
(``--compare OLD.json``): a restructuring must leave them bit-identical.

    python benchmarks/fixed_cases.py --out before.json
    python benchmarks/fixed_cases.py --compare before.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


import jsnq
from jsnq.config import MeasureConfig
from jsnq.phantom import make_pair
from jsnq.register.classical import RegistrationOptions

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "finger-joints"


def _summary(m) -> dict:
    return {"narrowing_px": m.narrowing_px, "se_px": m.narrowing_se_px, "forward": m.narrowing_forward_px,
            "backward": m.narrowing_backward_px, "reliable": m.reliable, "reasons": list(m.reasons),
            "engine": m.engine, "segmenter": m.segmenter,
            "upper": [m.upper.scale, m.upper.angle_deg, m.upper.tx_px, m.upper.ty_px],
            "lower": [m.lower.scale, m.lower.angle_deg, m.lower.tx_px, m.lower.ty_px]}


def _measure(*args, **kwargs) -> dict:
    try:
        return _summary(jsnq.measure(*args, **kwargs))
    except ValueError as err:
        return {"error": str(err)}


def cases() -> dict:
    out: dict = {}
    option_sets = {"default": RegistrationOptions(),
                   "ramp_gainfree": RegistrationOptions(edge_ramp_px=10, gain_free=True)}
    for seed in range(3):
        p = make_pair(seed, narrowing_px=(0.4, 0.6), noise=0.01)
        for name, options in option_sets.items():
            for engine in ("classical", "hybrid"):
                out[f"phantom{seed}/{engine}/{name}/given"] = _measure(
                    p.baseline, p.followup, baseline_labels=p.baseline_labels, followup_labels=p.followup_labels,
                    config=MeasureConfig(engine=engine, registration=options))
        out[f"phantom{seed}/auto/network"] = _measure(p.baseline, p.followup)
        out[f"phantom{seed}/auto/classical-seg"] = _measure(p.baseline, p.followup,
                                                            config=MeasureConfig(segmenter="classical"))
        out[f"phantom{seed}/oneway"] = _measure(p.baseline, p.followup, baseline_labels=p.baseline_labels,
                                                config=MeasureConfig(symmetric=False))
    if DATA.is_dir():
        import csv

        rows = list(csv.DictReader((DATA / "manifest.csv").open()))
        by_joint: dict = {}
        for r in rows:
            by_joint.setdefault(r["joint_id"], []).append(r)
        joints = [j for j in sorted(by_joint) if len(by_joint[j]) >= 3][:4]
        for j in joints:
            vis = by_joint[j][:3]
            a, b = vis[0], vis[1]
            out[f"real/{j}/auto"] = _measure(DATA / a["image"], DATA / b["image"])
            from jsnq.labels import labels_from_masks
            from jsnq.io import load_image

            def lab(r):
                up = load_image(DATA / r["upper_mask"]).array > 127
                lo = load_image(DATA / r["lower_mask"]).array > 127
                return labels_from_masks(up, lo)

            out[f"real/{j}/given"] = _measure(DATA / a["image"], DATA / b["image"], baseline_labels=lab(a),
                                              followup_labels=lab(b))
            s = jsnq.series([DATA / v["image"] for v in vis])
            out[f"real/{j}/series"] = {"narrowing": s.trajectory.narrowing_px.tolist(),
                                       "se": s.trajectory.se_px.tolist(),
                                       "pairs": {f"{i}-{k}": _summary(m) for (i, k), m in s.measurements.items()},
                                       "flags": {str(k): v for k, v in s.trajectory.flagged_visits.items()}}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--compare", type=Path)
    args = ap.parse_args(argv)
    result = json.loads(json.dumps(cases()))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    if args.compare:
        old = json.loads(args.compare.read_text())
        diffs = [k for k in sorted(set(old) | set(result)) if old.get(k) != result.get(k)]
        print(f"{len(result)} cases, {len(diffs)} differ from {args.compare}")
        for k in diffs:
            print(f"  {k}:\n    before {old.get(k)}\n    after  {result.get(k)}")
        return 1 if diffs else 0
    if not args.out:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
