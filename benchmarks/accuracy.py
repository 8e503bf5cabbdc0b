"""Narrowing accuracy and speed on real crops with known synthetic per-bone motions.

Each case takes a real MCP crop from ../shared/data/finger-joints, moves its upper and lower
bone sides by known similarities (a common rotation up to +-10 deg, scale up to +-10 %,
shift up to +-10 px, plus a relative narrowing of up to +-1 px and a relative rotation of up
to +-0.5 deg), changes the exposure (gain 0.8-1.2, offset +-0.05) and adds independent white
noise to both images. Every method gets the same cases and the labels from the true masks
(split at the midline of the gap), except the "network labels" and "classical line" rows, where
jsnq segments the baseline itself (the shipped UNet++, or the dynamic-programming line). The
crops come from the joints held out from the network's training. The Cramér-Rao bound is computed per case for the same image, motion and noise.

The truth is read at the joint's articular centre from both visits' true masks, found half-way
between them (:func:`jsnq.jsw.pair_articular_centre`, the true lower-bone motion), where jsnq aims
to read; reported beside: the reading point's distance from it (and, on stderr and in the JSON,
from the baseline's own centre in its rows and columns, the truth before), and the error
against the truth at jsnq's own reading point (the figures before issue 23, when that point was
the crop centre with labels given). The per-bone
baselines (SimpleITK, POC) are read at the true articular centre, which they cannot find
themselves.

Usage::

    python benchmarks/accuracy.py                # full run (~10 min on 2 cores)
    python benchmarks/accuracy.py --quick        # smaller, for a smoke test
    python benchmarks/accuracy.py --json out.json
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.baselines import poc_per_bone, sitk_per_bone  # noqa: E402
from benchmarks.common import (PAPER_SD_MM, PAPER_SPACING_MM, Condition, add_engine_options, data_dir,  # noqa: E402
                               followup_labels, machine, markdown_table, one_crop_per_joint, synthesise,
                               with_engine_options)
from jsnq import MeasureConfig, measure  # noqa: E402
from jsnq.geometry import symmetric_narrowing_px  # noqa: E402
from jsnq.register.bounds import narrowing_crb  # noqa: E402

CONDITIONS = [
    Condition("noise 0 %", 0.0),
    Condition("noise 1 %", 0.01),
    Condition("noise 2 %", 0.02),
    Condition("noise 5 %", 0.05),
    Condition("noise 2 %, small motion, no exposure", 0.02, max_rotation_deg=2, max_scale=0.02,
              max_shift_px=3, exposure=0.0),
]

#: The conditions of issue 14's targets: small common motion (rotation +-2 deg, scale +-2 %,
#: shift +-3 px), narrowing +-1.5 px, relative rotation +-0.5 deg, gain 0.9-1.1, offset +-0.05,
#: noise 1 % unless stated; each row changes one thing. "nonlinear exposure" maps the follow-up's
#: intensity I -> a I^g + b with g = exp(U(-0.25, 0.25)); "wide" is rotation +-15 deg, scale
#: +-10 %, shift +-12 px, relative rotation +-1 deg and g = exp(U(-0.1, 0.1)).
_SMALL = dict(max_rotation_deg=2.0, max_scale=0.02, max_shift_px=3.0, max_narrowing_px=1.5,
              relative_rotation_deg=0.5, exposure=0.1, max_offset=0.05)


def _target(name: str, noise: float = 0.01, **changes) -> Condition:
    return Condition(name, noise, **{**_SMALL, **changes})


TARGET_CONDITIONS = [
    _target("clean", 0.0),
    _target("noise 2 %", 0.02),
    _target("noise 5 %", 0.05),
    _target("rotation +-10 deg", max_rotation_deg=10.0),
    _target("scale +-10 %", max_scale=0.10),
    _target("nonlinear exposure", max_log_gamma=0.25),
    _target("wide motion", max_rotation_deg=15.0, max_scale=0.10, max_shift_px=12.0, relative_rotation_deg=1.0,
            max_log_gamma=0.1),
]
SUITES = {"standard": CONDITIONS, "targets": TARGET_CONDITIONS}


def _jsnq(case, segmenter: str | None) -> tuple[float, float, float, float, tuple[float, float]]:
    """jsnq with the true-mask labels (``segmenter=None``) or its own segmenter: (estimate,
    SE, truth at the anchor jsnq used, truth at the true articular centre, the anchor)."""
    if segmenter is None:
        # check_labels=False: the time is the registration's and the reading point's; the label
        # check changes no number and is timed in benchmarks/segmentation.py.
        m = measure(case.baseline, case.followup, baseline_labels=case.labels,
                    config=MeasureConfig(engine="classical", check_labels=False))
    else:
        m = measure(case.baseline, case.followup,
                    config=MeasureConfig(segmenter=segmenter, engine="classical", symmetric=False))
    return _read(case, m)


def _read(case, m) -> tuple[float, float, float, float, tuple[float, float]]:
    """The estimate, its SE, the truth at jsnq's own reading place and at the true articular
    centre, and jsnq's reading place in the baseline (half-way between its two visits' points,
    the follow-up's brought back by the true lower-bone motion)."""
    own = symmetric_narrowing_px(case.upper, case.lower, m.point_px, m.followup_point_px)
    place = np.asarray(m.point_px, dtype=float)
    if m.followup_point_px is not None:
        place = 0.5 * (place + case.lower.inverse().apply(np.asarray(m.followup_point_px, dtype=float)))
    return m.narrowing_px, m.narrowing_se_px, own, case.truth_at_centre_px, (float(place[0]), float(place[1]))


def _jsnq_both(case, labelled: bool) -> tuple[float, float, float, float, tuple[float, float]]:
    """jsnq as a user runs it (the default engine and configuration), with both visits' labels
    from the true masks (``labelled``) or its own network segmentation of both visits."""
    if labelled:
        m = measure(case.baseline, case.followup, baseline_labels=case.labels, followup_labels=_fol_labels(case),
                    config=MeasureConfig(check_labels=False))
    else:
        m = measure(case.baseline, case.followup, config=MeasureConfig(check_labels=False))
    return _read(case, m)


_FOL_LABELS: dict[int, np.ndarray] = {}


def _fol_labels(case) -> np.ndarray:
    """The follow-up's labels, computed once per case (outside the timing: see ``prepare_case``)."""
    key = id(case)
    if key not in _FOL_LABELS:
        _FOL_LABELS[key] = followup_labels(case)
    return _FOL_LABELS[key]


def _pair(fn):
    """A per-bone baseline, read at the crop centre and (given the true masks' articular centre,
    which it cannot find itself) at the articular centre."""
    def run(case):
        up, lo = fn(case.baseline, case.followup, case.labels)
        return (symmetric_narrowing_px(up, lo, case.centre_px), float("nan"), case.truth_px, case.truth_at_centre_px,
                tuple(case.centre_px))
    return run


METHODS = {
    "jsnq, labels given": lambda c: _jsnq_both(c, True),
    "jsnq, network labels": lambda c: _jsnq_both(c, False),
    "jsnq classical": lambda c: _jsnq(c, None),
    "jsnq classical, network labels": lambda c: _jsnq(c, "network"),
    "jsnq classical, classical line": lambda c: _jsnq(c, "classical"),
    "SimpleITK similarity per bone": _pair(sitk_per_bone),
    "phase-only correlation per bone": _pair(poc_per_bone),
    # The plain one-shot partial-image POC (no re-windowing iterations): the speed reference.
    "PIPOC one-shot": _pair(functools.partial(poc_per_bone, iterations=0)),
}


POC = "PIPOC one-shot"
SUITE_METHODS = {
    "standard": ["jsnq classical", "jsnq classical, network labels", "jsnq classical, classical line",
                 "SimpleITK similarity per bone", "phase-only correlation per bone", POC],
    "targets": ["jsnq, labels given", "jsnq, network labels", "SimpleITK similarity per bone", POC],
}


def _summary(cond: Condition, name: str, errs: list[float], ses: list[float], times: list[float],
             crb_rms: float, own: list[float], dist: list[tuple[float, float]]) -> dict:
    """``errs``: errors against the truth at the true articular centre; ``own``: against the
    truth at the method's own reading point; ``dist``: the reading point minus the true centre."""
    e = np.asarray(errs)
    z = e / np.asarray(ses)
    o = np.asarray(own)
    d = np.asarray(dist, dtype=float).reshape(-1, 2)
    return {
        "condition": cond.name, "method": name, "n": len(e),
        "bias_px": float(e.mean()), "sd_px": float(e.std(ddof=1)), "rmse_px": float(np.sqrt(np.mean(e**2))),
        "over_0.5px": float(np.mean(np.abs(e) > 0.5)), "max_abs_px": float(np.abs(e).max()),
        "crb_px": crb_rms, "ms_median": 1e3 * float(np.median(times)),
        "z_sd": float(np.std(z, ddof=1)) if np.isfinite(z).all() else float("nan"),
        "own_bias_px": float(o.mean()), "own_sd_px": float(o.std(ddof=1)),
        "point_rms_px": float(np.sqrt(np.mean(np.sum(d ** 2, axis=1)))),
        "point_rms_xy_px": [float(v) for v in np.sqrt(np.mean(d ** 2, axis=0))],
        "times_s": [float(t) for t in times],
        "errors_px": [float(v) for v in e], "se_px": [float(v) for v in ses],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", choices=list(SUITES), default="standard",
                    help="standard: the conditions of docs/benchmarks.md's first table; targets: issue 14's "
                         "(small motion, each row changing one thing, with nonlinear exposure and wide motion)")
    ap.add_argument("--crops", type=int, default=40, help="real crops (one per joint) per condition")
    ap.add_argument("--sitk-crops", type=int, default=12, help="cases per condition for SimpleITK (slow)")
    ap.add_argument("--quick", action="store_true", help="8 crops, 3 for SimpleITK")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    ap.add_argument("--methods", nargs="+", choices=list(METHODS), help="run only these methods")
    ap.add_argument("--conditions", nargs="+", help="run only the conditions whose names start with these")
    add_engine_options(ap)
    args = ap.parse_args(argv)
    global measure
    measure = with_engine_options(measure, args)
    if args.quick:
        args.crops, args.sitk_crops = 8, 3
    names = args.methods or SUITE_METHODS[args.suite]
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
    except ImportError:
        names = [n for n in names if not n.startswith("SimpleITK")]

    methods = {k: METHODS[k] for k in names}
    crops = one_crop_per_joint(data_dir(), args.crops, seed=0, validation_only=True)
    rows, out = [], []
    for ci, cond in enumerate(SUITES[args.suite]):
        if args.conditions and not any(cond.name.startswith(c) for c in args.conditions):
            continue
        rng = np.random.default_rng(1000 + ci)
        cases = [synthesise(cr, cond, rng) for cr in crops]
        # The follow-up labels are cached by id(case): ids are unique only among live objects,
        # so the cache must not outlive this condition's cases (a stale entry would hand one
        # case another's labels).
        _FOL_LABELS.clear()
        crb = [narrowing_crb(c.clean, c.labels, c.upper, c.lower, noise_baseline=cond.noise,
                             noise_followup=cond.noise, gain=c.gain) for c in cases]
        crb_rms = math.sqrt(float(np.mean(np.square(crb))))
        res = {name: ([], [], [], [], [], []) for name in methods}
        # Methods interleaved case by case, so that the machine's changing load (shared cores)
        # affects them alike and the ratios of their times are fair.
        for i, case in enumerate(cases):
            _fol_labels(case)
            for name, fn in methods.items():
                if name.startswith("SimpleITK") and i >= args.sitk_crops:
                    continue
                t0 = time.perf_counter()
                est, se, truth_own, truth, point = fn(case)
                dt = time.perf_counter() - t0
                errs, ses, times, own, dist, dist_image = res[name]
                errs.append(est - truth)
                ses.append(se)
                times.append(dt)
                own.append(est - truth_own)
                dist.append(np.subtract(point, case.centre_px))
                dist_image.append(np.subtract(point, case.image_centre_px))
        poc_ms = 1e3 * float(np.median(res[POC][2])) if POC in res else float("nan")
        for name in methods:
            errs, ses, times, own, dist, dist_image = res[name]
            rec = _summary(cond, name, errs, ses, times, crb_rms, own, dist)
            di = np.asarray(dist_image, dtype=float).reshape(-1, 2)
            rec["point_rms_image_xy_px"] = [float(v) for v in np.sqrt(np.mean(di ** 2, axis=0))]
            rec["x_poc"] = rec["ms_median"] / poc_ms
            out.append(rec)
            rows.append([cond.name, name, rec["n"], rec["bias_px"], rec["sd_px"], rec["rmse_px"],
                         f"{100 * rec['over_0.5px']:.1f} %", rec["max_abs_px"], crb_rms, rec["z_sd"],
                         f"{rec['point_rms_px']:.2f} ({rec['point_rms_xy_px'][0]:.2f} / {rec['point_rms_xy_px'][1]:.2f})",
                         f"{rec['own_sd_px']:.3f} / {rec['own_bias_px']:+.3f}",
                         f"{rec['ms_median']:.0f}", f"{rec['x_poc']:.1f}"])
            print(f"{cond.name:40s} {name:34s} sd {rec['sd_px']:.4f} bias {rec['bias_px']:+.4f} "
                  f"max {rec['max_abs_px']:.3f} z {rec['z_sd']:.2f} point {rec['point_rms_px']:.2f} "
                  f"({rec['point_rms_xy_px'][0]:.2f}/{rec['point_rms_xy_px'][1]:.2f}; from the baseline's own "
                  f"{rec['point_rms_image_xy_px'][0]:.2f}/{rec['point_rms_image_xy_px'][1]:.2f}) "
                  f"own sd {rec['own_sd_px']:.4f} ms {rec['ms_median']:.0f} "
                  f"x{rec['x_poc']:.2f}", file=sys.stderr, flush=True)
    if args.suite == "standard":
        paper_px = PAPER_SD_MM / PAPER_SPACING_MM
        rows.append(["paper's clinical set (not these cases)", "Wang et al. 2023 deep registration", "–",
                     float("nan"), paper_px, float("nan"), "0.48 % mismatch", float("nan"), float("nan"),
                     float("nan"), "–", "–", float("nan"), float("nan")])
    header = ["condition", "method", "n", "bias px", "SD px", "RMSE px", "> 0.5 px", "max px", "CRB px",
              "SD of error/SE", "reading point from the true centre, RMS px (x / y)",
              "at its own reading point: SD / bias px", "ms/pair", "× POC"]
    print(f"\nMachine: {machine()}; 2 threads; {len(crops)} real crops per condition, one per held-out joint "
          f"(SimpleITK: first {args.sitk_crops}); methods interleaved case by case.\n")
    print(markdown_table(header, rows))
    # Speed over all conditions: the median time per pair, and its ratio to phase-only
    # correlation's median in the same run.
    if POC in methods:
        poc_all = [t for r in out if r["method"] == POC for t in r["times_s"]]
        print("\n| method | pairs | median ms/pair | × POC (same run) |\n|---|---|---|---|")
        for name in methods:
            ts = [t for r in out if r["method"] == name for t in r["times_s"]]
            print(f"| {name} | {len(ts)} | {1e3 * np.median(ts):.1f} | {np.median(ts) / np.median(poc_all):.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "suite": args.suite, "results": out}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
