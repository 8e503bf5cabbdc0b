"""Can the reliability flag be trusted? Deliberate failures against good cases.

Good cases: real crops of held-out joints moved by known per-bone motions (the accuracy
benchmark's conditions at 0-2 % noise), measured with the labels of both visits' true
masks, and at 1 % noise with the baseline's labels only; a good case is one whose error is
below 0.5 px (all of them, in practice).

Deliberate failures, built from the same crops:

* **different joints**: the follow-up is a crop of another joint;
* **heavy noise**: 25 % white noise on both images;
* **beyond the capture range**: a common rotation of 40-60 deg;
* **shifted labels**: the baseline labels moved 25 px down (the split runs through the lower bone),
  with the follow-up's true labels (the two visits' split lines are compared), and without
  them (the given split line is compared with the segmentation network's);
* **blank follow-up**: a constant image (jsnq refuses it: an error counts as caught).

A failure is *caught* when jsnq raises a one-line error or flags the result unreliable;
a good case is *falsely flagged* when it is flagged (or errors). Reported: recall on each
kind of failure and overall, the false-flag rate on good cases, and precision over the
whole mixed set, plus which reasons fired.

Usage::

    python benchmarks/reliability.py            # ~6 min on 2 cores
    python benchmarks/reliability.py --quick
    python benchmarks/reliability.py --json out.json
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Condition, Crop, data_dir, machine, markdown_table, one_crop_per_joint, synthesise  # noqa: E402
from jsnq import MeasureConfig, measure  # noqa: E402
from jsnq.geometry import Similarity, crop_centre  # noqa: E402
from jsnq.phantom import apply_bone_motions  # noqa: E402
from jsnq.register.warp import warp_to_baseline  # noqa: E402

GOOD = [Condition("good, noise 0 %", 0.0), Condition("good, noise 1 %", 0.01), Condition("good, noise 2 %", 0.02)]


def _followup_labels(case, crop: Crop) -> np.ndarray:
    """The follow-up's labels: the baseline's true labels moved with each bone (nearest)."""
    moved = apply_bone_motions(crop.labels.astype(np.float64), crop.labels, case.upper, case.lower, order=0)
    return np.round(moved).astype(np.uint8)


ONE_LABEL = "labels shifted 25 px, no follow-up labels"


def _run(base, fol, labels, fol_labels, engine: str) -> tuple[bool, tuple[str, ...], float]:
    try:
        m = measure(base, fol, baseline_labels=labels, followup_labels=fol_labels, config=MeasureConfig(engine=engine))
    except ValueError as err:
        return True, (f"error: {' '.join(str(err).split())}",), float("nan")
    return (not m.reliable), m.reasons, m.narrowing_px


def _reason_kind(text: str) -> str:
    text = re.sub(r"[-+]?\d+(\.\d+)?", "#", text)
    return text.split(":")[0][:60] if text.startswith(("upper", "lower", "error")) else text[:48]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=40)
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.quick:
        args.crops = 8
    crops = one_crop_per_joint(data_dir(), args.crops, seed=1, validation_only=True)
    rng = np.random.default_rng(7)
    rows = []  # (kind, is_failure, flagged, reasons, error_px)
    for cond in GOOD:
        for cr in crops:
            case = synthesise(cr, cond, rng)
            flagged, reasons, est = _run(case.baseline, case.followup, case.labels, _followup_labels(case, cr),
                                         args.engine)
            rows.append((cond.name, False, flagged, reasons, est - case.truth_px))
    for cr in crops:  # baseline labels only: the labels are checked against the segmentation network
        case = synthesise(cr, GOOD[1], rng)
        flagged, reasons, est = _run(case.baseline, case.followup, case.labels, None, args.engine)
        rows.append((f"{GOOD[1].name}, no follow-up labels", False, flagged, reasons, est - case.truth_px))
    c = crop_centre(crops[0].image.shape)
    for k, cr in enumerate(crops):
        other = crops[(k + 1) % len(crops)]
        # different joints
        rows.append(("different joints", True,
                     *_run(cr.image, other.image, cr.labels, other.labels, args.engine)[:2], float("nan")))
        # heavy noise
        case = synthesise(cr, Condition("n", 0.0), rng)
        noisy_b = case.baseline + rng.normal(0, 0.25, case.baseline.shape)
        noisy_f = case.followup + rng.normal(0, 0.25, case.followup.shape)
        rows.append(("heavy noise (25 %)", True,
                     *_run(noisy_b, noisy_f, cr.labels, _followup_labels(case, cr), args.engine)[:2], float("nan")))
        # beyond the capture range
        ang = math.radians(rng.uniform(40, 60) * rng.choice([-1, 1]))
        big = Similarity(1.0, ang, 0.0, 0.0, c)
        fol = warp_to_baseline(cr.image, big.inverse(), cval=float(np.median(cr.image)))  # the whole crop turned
        rows.append(("rotation 40-60 deg", True, *_run(cr.image, fol, cr.labels, None, args.engine)[:2], float("nan")))
        # shifted labels
        case = synthesise(cr, Condition("s", 0.01), rng)
        shifted = np.roll(cr.labels, 25, axis=0)
        shifted[:25] = 1
        rows.append(("labels shifted 25 px", True,
                     *_run(case.baseline, case.followup, shifted, _followup_labels(case, cr), args.engine)[:2],
                     float("nan")))
        rows.append((ONE_LABEL, True, *_run(case.baseline, case.followup, shifted, None, args.engine)[:2],
                     float("nan")))
        # blank follow-up
        rows.append(("blank follow-up", True,
                     *_run(cr.image, np.full_like(cr.image, 0.5), cr.labels, None, args.engine)[:2], float("nan")))

    by_kind: dict[str, list] = collections.OrderedDict()
    for r in rows:
        by_kind.setdefault(r[0], []).append(r)
    table, out = [], []
    for kind, rs in by_kind.items():
        failure = rs[0][1]
        rate = float(np.mean([r[2] for r in rs]))
        reasons = collections.Counter(_reason_kind(x) for r in rs for x in r[3])
        top = "; ".join(f"{k} ({v})" for k, v in reasons.most_common(3))
        table.append([kind, "failure" if failure else "good", len(rs),
                      f"{100 * rate:.1f} % {'caught' if failure else 'flagged'}", top])
        out.append({"kind": kind, "failure": failure, "n": len(rs), "flagged_rate": rate,
                    "reasons": dict(reasons)})
    fails = [r for r in rows if r[1]]
    goods = [r for r in rows if not r[1]]
    recall = float(np.mean([r[2] for r in fails]))
    false_flag = float(np.mean([r[2] for r in goods]))
    flagged = [r for r in rows if r[2]]
    precision = float(np.mean([r[1] for r in flagged])) if flagged else float("nan")
    good_err = np.array([r[4] for r in goods], dtype=float)
    print(f"\nMachine: {machine()}; engine {args.engine}; {len(crops)} held-out joints.\n")
    print(markdown_table(["case", "kind", "n", "flag rate", "most frequent reasons"], table))
    print(f"\nrecall on deliberate failures: {recall:.3f} ({sum(r[2] for r in fails)}/{len(fails)}); "
          f"false-flag rate on good cases: {false_flag:.3f} ({sum(r[2] for r in goods)}/{len(goods)}); "
          f"precision: {precision:.3f}; good-case error SD {np.nanstd(good_err):.3f} px, "
          f"max {np.nanmax(np.abs(good_err)):.3f} px")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "engine": args.engine, "recall": recall,
                                         "false_flag_rate": false_flag, "precision": precision, "kinds": out},
                                        indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
