"""Where should the split between the two bone sides run? Midline of the gap vs a bone surface.

jsnq fits one similarity to each side of a line through the joint space (labels 1 = upper
side, 2 = lower side, 0 = ignored) and reports the narrowing at the crop centre. This script
compares four ways of drawing that line on each baseline crop, each with the engine's gap
band off and on (``RegistrationOptions(gap_exclusion_px=0)`` and ``=3``, the default, which
leaves out of both fits the pixels within 3 px of the other side):

1. **midline** -- ``labels_from_masks(upper, lower)``: every pixel goes to the nearer true
   bone mask, so the split runs halfway across the gap.
2. **upper bone surface** -- the midline labels with the whole joint space given to the lower
   side: in every column that both bone masks reach, the pixels between the upper bone's
   lowest and the lower bone's topmost pixel become 2, so the split runs along the upper
   bone's facing surface (beside the lower bone's head this "gap" reaches down its flank).
3. **lower bone surface** -- the mirror image: the joint space becomes 1 and the split runs
   along the lower bone's facing surface.
4. **classical line (automatic)** -- ``labels_from_line(joint_space_line(image), shape)``,
   found on the baseline image alone (no masks).

Variants 2 and 3 differ from the midline only in the joint space. The literal recipe
"1 on the upper bone mask, 2 everywhere else" would also hand the soft tissue beside the
upper bone's shaft (far from the joint, most of the crop's width) to the lower side, which
measures mislabelled soft tissue rather than where the split sits; ``--literal-surfaces``
adds those two variants for comparison. Pixels inside both masks
(bone overlap on the projection) are 0 in variants 1-3, as ``labels_from_masks`` makes them.

Two kinds of evidence:

(a) **Synthetic truth.** Real crops (one per joint) get a follow-up with known per-bone
    similarities from :func:`benchmarks.common.synthesise` (which calls
    :func:`jsnq.phantom.apply_bone_motions`), at 0 % and 2 % noise with a common motion, and
    with a pure relative translation (no common motion, rotation or exposure change, no
    noise) so that any bias is clean to read. The follow-up is always built from the
    *midline* labels, blending the two bone motions across the midline (``apply_bone_motions``'s
    default band: ``blend_px`` 2 since issue 23, 4 before); only the fit uses each variant's
    labels. The synthetic truth therefore favours midline splits
    somewhat -- a bone-surface split puts the joint space, which moves with a blend of both
    bones, on one side -- which is why (b) matters. Reported: bias, SD, RMSE and max of the
    narrowing error (px) and the slope of error vs true narrowing (``np.polyfit``): a split
    that puts the joint space on one side should show a bias proportional to the narrowing.
    The true narrowings are uniform in +-1 px, so the mean error (bias) hides a proportional
    bias; "fit at +1 px" (the fitted line's error at a true narrowing of 1 px) shows it.

(b) **Real longitudinal pairs, no ground truth.** Joints with >= 3 visits (grouped by
    ``joint_id`` in the manifest; 15 chosen reproducibly, their first 3 crops in manifest
    order, since the visit order is unknown). ``J(a, b)`` = narrowing from visit a to b, each
    direction with the labels of its own baseline crop. Reported, per split:

    * the RMS of the antisymmetry ``J(a,b) + J(b,a)`` over the three pairs of every joint and
      the RMS of the path inconsistency ``J(a,c) - J(a,b) - J(b,c)`` over the joints. These
      are *not* 0 for perfectly consistent transforms: each ``J`` is the vertical
      displacement at its own baseline's crop centre, and between real visits the bones
      rotate relative to each other by up to ~15 deg and the crops are centred independently
      (bone shifts of 10-20 px), so the two directions measure at different material points
      and along differently rotated axes. This floor, of the order of the figures themselves
      on some joints, is common to every split.
    * the same two checks free of that floor, on the transforms: ``J(a,b)`` minus the
      narrowing of the inverted backward transforms ``(upper_ba^-1, lower_ba^-1)`` (every
      ordered pair; also its median absolute value, as a few hard joints dominate the RMS),
      and ``J(a,c)`` minus the narrowing of the composed transforms
      ``(upper_bc o upper_ab, lower_bc o lower_ab)``, both at the same point as ``J``.
    * the median per-bone round trip: the pixels of the bone's true mask in the baseline are
      mapped through that bone's forward and then its backward transform; the mean distance
      from where they started (px), over every ordered pair and both bones.

    The floor-free checks and the round trip are 0 for a perfect method and say nothing
    about a bias common to both directions, but a split that lets the joint space (which
    deforms, and whose content changes between visits) into a fit shows up as scatter here.

Usage::

    python benchmarks/split_line.py               # full run (~5 min on 2 cores)
    python benchmarks/split_line.py --quick       # smaller, for a smoke test (~1.5 min)
    python benchmarks/split_line.py --literal-surfaces   # + "bone mask vs the rest" variants (~5 min)
    python benchmarks/split_line.py --json out.json
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (Condition, Crop, data_dir, load_crop, machine, manifest,  # noqa: E402
                               markdown_table, one_crop_per_joint, synthesise)
from jsnq.geometry import narrowing_px  # noqa: E402
from jsnq.register.classical import Registration, RegistrationOptions, register_bones  # noqa: E402
from jsnq.labels import labels_from_line, labels_from_masks  # noqa: E402
from jsnq.segment.classical import joint_space_line  # noqa: E402

CONDITIONS = [
    Condition("noise 0 %", 0.0),
    Condition("noise 2 %", 0.02),
    Condition("relative translation only, noise 0 %", 0.0, max_rotation_deg=0.0, max_scale=0.0, max_shift_px=0.0,
              exposure=0.0, relative_rotation_deg=0.0),
]
GAP_BANDS_PX = (0.0, 3.0)


# ----------------------------------------------------------------------------------------
# Label variants
# ----------------------------------------------------------------------------------------
def _gap(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """The joint space: in every column that both bone masks reach, the rows strictly between
    the upper bone's lowest pixel and the lower bone's topmost one."""
    n = upper.shape[0]
    rows = np.arange(n)[:, None]
    bottom = np.where(upper, rows, -1).max(axis=0)[None, :]
    top = np.where(lower, rows, n).min(axis=0)[None, :]
    return (bottom >= 0) & (top < n) & (rows > bottom) & (rows < top)


def upper_surface_labels(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Midline labels with the joint space given to the lower side."""
    lab = labels_from_masks(upper, lower)
    lab[_gap(upper, lower)] = 2
    return lab


def lower_surface_labels(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Midline labels with the joint space given to the upper side."""
    lab = labels_from_masks(upper, lower)
    lab[_gap(upper, lower)] = 1
    return lab


def literal_upper_labels(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """1 on the upper bone mask, 2 everywhere else (0 where the masks overlap)."""
    lab = np.where(upper, 1, 2).astype(np.uint8)
    lab[upper & lower] = 0
    return lab


def literal_lower_labels(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """2 on the lower bone mask, 1 everywhere else (0 where the masks overlap)."""
    lab = np.where(lower, 2, 1).astype(np.uint8)
    lab[upper & lower] = 0
    return lab


def line_labels(image: np.ndarray) -> np.ndarray:
    return labels_from_line(joint_space_line(image), image.shape)


#: name -> labels(crop, baseline image). Only the automatic line looks at the image.
VARIANTS: dict[str, Callable[[Crop, np.ndarray], np.ndarray]] = {
    "midline": lambda c, img: labels_from_masks(c.upper, c.lower),
    "upper bone surface": lambda c, img: upper_surface_labels(c.upper, c.lower),
    "lower bone surface": lambda c, img: lower_surface_labels(c.upper, c.lower),
    "classical line (automatic)": lambda c, img: line_labels(img),
}
#: Added by ``--literal-surfaces``: the whole rest of the crop, soft tissue included, on the other side.
LITERAL_VARIANTS: dict[str, Callable[[Crop, np.ndarray], np.ndarray]] = {
    "upper bone mask vs rest": lambda c, img: literal_upper_labels(c.upper, c.lower),
    "lower bone mask vs rest": lambda c, img: literal_lower_labels(c.upper, c.lower),
}


def _register(base: np.ndarray, fol: np.ndarray, labels: np.ndarray, band: float) -> Registration | None:
    try:
        return register_bones(base, fol, labels, options=RegistrationOptions(gap_exclusion_px=band))
    except ValueError as exc:  # e.g. a side left with too few pixels
        print(f"  registration failed: {exc}", file=sys.stderr)
        return None


def _narrowing(reg: Registration | None) -> float:
    return float("nan") if reg is None else narrowing_px(reg.upper.transform, reg.lower.transform)


# ----------------------------------------------------------------------------------------
# (a) synthetic truth
# ----------------------------------------------------------------------------------------
def synthetic(crops: list[Crop]) -> list[dict]:
    out = []
    for ci, cond in enumerate(CONDITIONS):
        rng = np.random.default_rng(2000 + ci)
        cases = [synthesise(cr, cond, rng) for cr in crops]
        errs: dict[tuple[str, float], list[float]] = defaultdict(list)
        truth: dict[tuple[str, float], list[float]] = defaultdict(list)
        times: list[float] = []
        for cr, case in zip(crops, cases):
            for vname, make in VARIANTS.items():
                labels = make(cr, case.baseline)
                for band in GAP_BANDS_PX:
                    t0 = time.perf_counter()
                    est = _narrowing(_register(case.baseline, case.followup, labels, band))
                    times.append(time.perf_counter() - t0)
                    errs[vname, band].append(est - case.truth_px)
                    truth[vname, band].append(case.truth_px)
        for (vname, band), e in errs.items():
            e_all = np.asarray(e)
            t_all = np.asarray(truth[vname, band])
            ok = np.isfinite(e_all)
            e, t = e_all[ok], t_all[ok]
            coef = np.polyfit(t, e, 1)
            rec = {
                "condition": cond.name, "variant": vname, "gap_exclusion_px": band, "n": int(ok.sum()),
                "failed": int((~ok).sum()),
                "bias_px": float(e.mean()), "sd_px": float(e.std(ddof=1)),
                "rmse_px": float(np.sqrt(np.mean(e ** 2))), "max_abs_px": float(np.abs(e).max()),
                "slope_px_per_px": float(coef[0]),
                "fit_at_1px_px": float(np.polyval(coef, 1.0)),
            }
            out.append(rec)
            print(f"{cond.name:38s} {vname:27s} band {band:.0f}  bias {rec['bias_px']:+.4f} sd {rec['sd_px']:.4f} "
                  f"slope {rec['slope_px_per_px']:+.4f}", file=sys.stderr, flush=True)
        print(f"  median registration {1e3 * float(np.median(times)):.0f} ms", file=sys.stderr, flush=True)
    return out


# ----------------------------------------------------------------------------------------
# (b) real longitudinal pairs
# ----------------------------------------------------------------------------------------
def longitudinal_joints(root: Path, n: int, seed: int = 0) -> list[list[Crop]]:
    """``n`` joints with >= 3 visits, chosen reproducibly; their first 3 crops each."""
    by_joint: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in manifest(root):
        by_joint[r["joint_id"]].append(r)
    ids = sorted(j for j, rows in by_joint.items() if len(rows) >= 3)
    pick = np.random.default_rng(seed).choice(len(ids), size=min(n, len(ids)), replace=False)
    return [[load_crop(root, r) for r in by_joint[ids[i]][:3]] for i in sorted(pick)]


def _round_trip(mask: np.ndarray, fwd, bwd) -> float:
    ys, xs = np.nonzero(mask)
    pts = np.stack([xs, ys], axis=1).astype(float)
    back = bwd.apply(fwd.apply(pts))
    return float(np.mean(np.hypot(*(back - pts).T)))


def real_pairs(joints: list[list[Crop]]) -> list[dict]:
    ordered = [(i, j) for i in range(3) for j in range(3) if i != j]
    keys = ("anti", "path", "anti_tf", "path_tf", "trip")
    acc: dict[tuple[str, float], dict[str, list[float]]] = defaultdict(lambda: {k: [] for k in keys})
    failed: dict[tuple[str, float], int] = defaultdict(int)
    nan = float("nan")
    for visits in joints:
        for vname, make in VARIANTS.items():
            labels = [make(c, c.image) for c in visits]
            for band in GAP_BANDS_PX:
                a = acc[vname, band]
                regs = {(i, j): _register(visits[i].image, visits[j].image, labels[i], band) for i, j in ordered}
                failed[vname, band] += sum(r is None for r in regs.values())
                jn = {k: _narrowing(r) for k, r in regs.items()}
                up = {k: None if r is None else r.upper.transform for k, r in regs.items()}
                lo = {k: None if r is None else r.lower.transform for k, r in regs.items()}
                for i, j in ((0, 1), (0, 2), (1, 2)):
                    a["anti"].append(jn[i, j] + jn[j, i])
                a["path"].append(jn[0, 2] - jn[0, 1] - jn[1, 2])
                for i, j in ordered:
                    # Forward estimate minus the inverse of the backward one, both at the centre of i.
                    ok = regs[i, j] is not None and regs[j, i] is not None
                    a["anti_tf"].append(jn[i, j] - narrowing_px(up[j, i].inverse(), lo[j, i].inverse()) if ok else nan)
                    for bone in ("upper", "lower"):
                        a["trip"].append(_round_trip(getattr(visits[i], bone), getattr(regs[i, j], bone).transform,
                                                     getattr(regs[j, i], bone).transform) if ok else nan)
                ok = all(regs[k] is not None for k in ((0, 1), (1, 2), (0, 2)))
                a["path_tf"].append(jn[0, 2] - narrowing_px(up[1, 2].compose(up[0, 1]), lo[1, 2].compose(lo[0, 1]))
                                    if ok else nan)
        print(f"  joint {visits[0].joint_id} done", file=sys.stderr, flush=True)

    def rms(v: list[float]) -> float:
        x = np.asarray(v)
        x = x[np.isfinite(x)]
        return float(np.sqrt(np.mean(x ** 2))) if len(x) else nan

    out = []
    for (vname, band), a in acc.items():
        out.append({
            "variant": vname, "gap_exclusion_px": band, "joints": len(joints), "failed": failed[vname, band],
            "antisymmetry_rms_px": rms(a["anti"]), "path_rms_px": rms(a["path"]),
            "antisymmetry_transform_rms_px": rms(a["anti_tf"]), "path_transform_rms_px": rms(a["path_tf"]),
            "antisymmetry_transform_median_abs_px": float(np.nanmedian(np.abs(a["anti_tf"]))),
            "round_trip_median_px": float(np.nanmedian(a["trip"])),
        })
    return out


# ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=40, help="real crops (one per joint) per synthetic condition")
    ap.add_argument("--joints", type=int, default=15, help="joints with >= 3 visits for the real pairs")
    ap.add_argument("--quick", action="store_true", help="8 crops, 4 joints")
    ap.add_argument("--literal-surfaces", action="store_true",
                    help="also run '1 on the upper mask, 2 elsewhere' and its mirror image")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    if args.quick:
        args.crops, args.joints = 8, 4
    if args.literal_surfaces:
        VARIANTS.update(LITERAL_VARIANTS)

    root = data_dir()
    t0 = time.perf_counter()
    crops = one_crop_per_joint(root, args.crops, seed=0)
    syn = synthetic(crops)
    real = real_pairs(longitudinal_joints(root, args.joints, seed=0))
    elapsed = time.perf_counter() - t0

    print(f"\nMachine: {machine()}; 2 threads; {len(crops)} real crops per synthetic condition, "
          f"{args.joints} joints x 3 visits (6 ordered pairs each) for the real pairs; {elapsed / 60:.1f} min.\n")
    print("(a) Synthetic per-bone motions on real crops (follow-up built from the midline labels); "
          "error = estimated - true narrowing, px; slope = d error / d true narrowing; "
          "fit at +1 px = the fitted error at a true narrowing of +1 px.\n")
    header = ["condition", "split", "gap band px", "n", "bias px", "SD px", "RMSE px", "max px", "slope px/px",
              "fit at +1 px"]
    rows = [[r["condition"], r["variant"], f"{r['gap_exclusion_px']:.0f}",
             f"{r['n']}" + (f" ({r['failed']} failed)" if r["failed"] else ""),
             r["bias_px"], r["sd_px"], r["rmse_px"], r["max_abs_px"], r["slope_px_per_px"], r["fit_at_1px_px"]]
            for r in syn]
    print(markdown_table(header, rows))
    print("\n(b) Real longitudinal pairs (no ground truth): J(a,b) = narrowing from visit a to visit b, px.\n")
    header = ["split", "gap band px", "joints", "RMS J(a,b)+J(b,a) px", "RMS J(a,c)-J(a,b)-J(b,c) px",
              "RMS J(a,b)-J[inv(b->a)] px", "median abs same px", "RMS J(a,c)-J[(b->c)o(a->b)] px",
              "median round trip px"]
    rows = [[r["variant"], f"{r['gap_exclusion_px']:.0f}",
             f"{r['joints']}" + (f" ({r['failed']} failed fits)" if r["failed"] else ""),
             r["antisymmetry_rms_px"], r["path_rms_px"], r["antisymmetry_transform_rms_px"],
             r["antisymmetry_transform_median_abs_px"], r["path_transform_rms_px"], r["round_trip_median_px"]]
            for r in real]
    print(markdown_table(header, rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "synthetic": syn, "real_pairs": real}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
