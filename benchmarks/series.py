"""Series on real joints: held-out joints with 3-4 visits, every pair measured, one trajectory.

Each joint's crops (manifest order: the visit dates are not in the data, and the
consistency checks do not depend on the order) go through :func:`jsnq.series` with the
labels of their true masks and, as each visit's anchor, the joint centre of its true masks.
Reported over joints: the RMS of the path residuals
``d_ij + d_jk - d_ik`` (each ``d`` the two directions of a pair combined), the RMS of the
pairs' forward/backward disagreement ``J(i, j) + J(j, i)``, the reduced chi-square of the
trajectory fit, the RMS of each path residual divided by its three pairs' combined SE
(near 1 when the SEs are honest), and the visits flagged as inconsistent. Also over the joints whose pairs
are all flagged reliable.

Usage::

    python benchmarks/series.py [--joints 20] [--engine auto] [--json out.json] [--report out.html]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import data_dir, machine  # noqa: E402
from benchmarks.registration import centre, longitudinal  # noqa: E402
from jsnq import MeasureConfig, series  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--joints", type=int, default=40, help="held-out joints to draw (those with >= 3 visits are used)")
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--report", type=Path, help="also write one HTML report of the first 10 joints' series here "
                                                "and print its size (target: < 5 MB)")
    args = ap.parse_args(argv)
    joints = [j for j in longitudinal(data_dir(), args.joints, seed=1) if len(j) >= 3]
    path_all, path_rel, path_z, path_z_rel, disagree, chi2, flagged, per_joint = [], [], [], [], [], [], 0, []
    t0 = time.perf_counter()
    kept = []
    for crops in joints:
        s = series([c.image for c in crops], labels=[c.labels for c in crops],
                   points=[centre(c) for c in crops], config=MeasureConfig(engine=args.engine))
        if len(kept) < 10:
            kept.append((crops[0].joint_id, s))
        t = s.trajectory
        res = list(t.path_residuals_px.values())
        path_all += res
        # Each residual against its own uncertainty: the three pairs' SEs combined.
        pe = {(p.i, p.j): p for p in t.pairs}
        for (i, j, k), r in t.path_residuals_px.items():
            three = (pe[i, j], pe[j, k], pe[i, k])
            z = r / float(np.sqrt(sum(p.se_px ** 2 for p in three)))
            path_z.append(z)
            if all(p.reliable for p in three):
                path_z_rel.append(z)
        if all(p.reliable for p in t.pairs):
            path_rel += res
        disagree += [p.disagreement_px for p in t.pairs]
        chi2.append(t.chi2_reduced)
        flagged += len(t.flagged_visits)
        per_joint.append({"joint": crops[0].joint_id, "visits": len(crops), "path_rms_px": t.path_rms_px,
                          "narrowing_px": [float(v) for v in t.narrowing_px], "flagged": list(t.flagged_visits),
                          "all_reliable": all(p.reliable for p in t.pairs)})

    def rms(v):
        return float(np.sqrt(np.mean(np.square(v)))) if v else float("nan")

    rec = {"engine": args.engine, "joints": len(joints), "triples": len(path_all),
           "path_rms_px": rms(path_all), "path_rms_reliable_px": rms(path_rel),
           "path_residual_over_se_rms": rms(path_z), "path_residual_over_se_rms_reliable_triples": rms(path_z_rel),
           "reliable_triples": len(path_z_rel),
           "reliable_joints": sum(j["all_reliable"] for j in per_joint),
           "pair_disagreement_rms_px": rms(disagree), "chi2_reduced_median": float(np.nanmedian(chi2)),
           "flagged_visits": flagged, "seconds": time.perf_counter() - t0}
    if args.report:
        from jsnq.report.html import write_report

        write_report(args.report, series=kept, title="jsnq series benchmark")
        rec["report_joints"] = len(kept)
        rec["report_visits"] = sum(len(s.sources) for _, s in kept)
        rec["report_mb"] = args.report.stat().st_size / 1e6
    print(f"Machine: {machine()}")
    print(json.dumps(rec, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "summary": rec, "joints": per_joint}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
