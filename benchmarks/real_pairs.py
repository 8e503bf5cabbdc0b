"""Real visit pairs measured as a user would: how many are usable, how honest is the SE?

Held-out joints of the shipped networks' split (``jsnq.training.data.split_joints``, the same
61 validation joints as every benchmark here; those with >= 2 visits, all their visits) are
measured pair by pair through :func:`jsnq.measure_many` with the default configuration, in
two ways:

* **true**: both visits' labels from their true masks (what a user with annotations gets);
  jsnq finds the reading point itself, as without labels;
* **none**: no labels and no anchors (what most users get: the segmentation network labels
  both visits and gives the anchors).

Every *ordered* pair ``(a, b)`` is measured (both orders: the antisymmetry and the flag are
measured, not assumed). Reported per labelling:

* the reliable share and the commonest reasons, the share with a precision note (a large
  SE: not a failure, see docs/method.md), the median SE and its parts (the fit's
  covariance, the systematic floor, the forward/backward term), the median
  forward/backward gap ``|J_fwd + J_bwd|``;
* path consistency: over every ordered triple ``J(a, c) - J(a, b) - J(b, c)`` (RMS), over
  triples whose three pairs are reliable and over all; and each path residual divided by
  its three pairs' SEs combined, ``sqrt(se_ab^2 + se_bc^2 + se_ac^2)`` (RMS, 1 when the SEs
  describe the pair-specific errors exactly, < 1 when they are larger).

Then the error sources, one at a time. Each joint's visits are perturbed ``--repeats`` times,
each visit once per copy (as a trial crops and labels each visit once), and every unordered
pair is measured on each copy. Reported: the SD of a pair's narrowing over the copies (RMS
over pairs) and the SD of a triple's path residual over the copies (RMS over triples). An
error tied to one visit moves the pairs but cancels in the path residuals; a pair-specific
one shows in both.

* **crop shifts**: each crop (and its masks) moved by a random integer offset in
  [-3, 3] px (reflected at the border); also the paper's mismatch rate (estimates dropped
  before the SD is under 0.3 mm at 0.175 mm/px);
* **label perturbation** (true labels only): each visit's two bone masks grown or shrunk by
  a random 0-2 px (RMS 1.4 px, about one annotation's own error at the facing surfaces, see
  docs/benchmarks.md, Segmentation), independently;
* **label source**: the narrowing without labels minus the one with true labels, per pair;
* **synthetic error over SE**: real crops (one per held-out joint) moved by known per-bone
  motions (the accuracy benchmark's generator), with both visits' true labels or none; the
  SD of error / SE per noise level (0.8-1.2 when the SE is honest on them).

Usage::

    python benchmarks/real_pairs.py                     # all held-out joints (~25 min on 2 busy cores)
    python benchmarks/real_pairs.py --joints 20         # the issue's 20 joints (~10 min)
    python benchmarks/real_pairs.py --quick             # smoke test
    python benchmarks/real_pairs.py --json out.json     # also the figures and every pair's record
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import argparse  # noqa: E402
import collections  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (Condition, Crop, add_engine_options, data_dir, engine_options, machine,  # noqa: E402
                               markdown_table, one_crop_per_joint, synthesise)
from benchmarks.registration import _mismatch_share, _shifted, longitudinal  # noqa: E402
from jsnq import MeasureConfig, measure_many  # noqa: E402
from jsnq.geometry import symmetric_narrowing_px  # noqa: E402
from jsnq.jsn import systematic_se_px  # noqa: E402
from jsnq.jsw import pair_articular_centre  # noqa: E402
from jsnq.phantom import apply_bone_motions  # noqa: E402

MODES = ("true", "none")
SYNTHETIC = [Condition("noise 0 %", 0.0), Condition("noise 2 %", 0.02), Condition("noise 5 %", 0.05)]
#: Gate of the paper's mismatch rate: SD of repeated estimates under 0.3 mm at 0.175 mm/px.
MISMATCH_SD_PX = 0.3 / 0.175


def rms(v) -> float:
    v = [x for x in v if math.isfinite(x)]
    return float(np.sqrt(np.mean(np.square(v)))) if v else float("nan")


def median(v) -> float:
    v = [x for x in v if math.isfinite(x)]
    return float(np.median(v)) if v else float("nan")


def finite_mean(v) -> float:
    v = [x for x in v if math.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def reason_kind(text: str) -> str:
    """A reason without its numbers, short enough to count."""
    text = re.sub(r"[-+]?\d+(\.\d+)?", "#", text)
    return text.split(":")[0] if text.startswith(("upper", "lower", "error")) else text[:56]


#: Registration options for every measurement (``--edge-ramp``, ``--gain-free``, ``--gap-exclusion``);
#: None = the shipped defaults.
OPTIONS = None


def measure_all(jobs: list[dict]):
    """:func:`jsnq.measure_many` with the defaults, or with :data:`OPTIONS` when given."""
    return measure_many(jobs, config=MeasureConfig() if OPTIONS is None else MeasureConfig(registration=OPTIONS))


def job(a: Crop, b: Crop, mode: str) -> dict:
    """One pair as a user measures it: jsnq finds the reading point itself (the articular
    centre of the network's masks, with or without labels)."""
    if mode == "none":
        return {"baseline": a.image, "followup": b.image}
    return {"baseline": a.image, "followup": b.image, "baseline_labels": a.labels, "followup_labels": b.labels}


def true_centre(a: Crop, b: Crop, lower) -> tuple[float, float]:
    """The pair's articular centre in ``a`` from both visits' true masks, found half-way between
    them along the fitted lower-bone motion ``lower`` (:func:`jsnq.jsw.pair_articular_centre`)."""
    return pair_articular_centre((a.upper, a.lower), (b.upper, b.lower), lower)[0]


def _gap_in_se() -> bool:
    """Does the symmetric rule add half the forward/backward gap to the SE (before issue 14)?"""
    from jsnq.quality import combine_directions

    return combine_directions(0.1, 0.1, 0.05, 0.05).se_px > 0.05 + 1e-12


GAP_IN_SE = _gap_in_se()


def se_parts(m) -> dict[str, float]:
    """The SE's parts: ``m.se_parts`` when the result carries them, else derived from the
    symmetric rule (``quality.combine_directions``): ``se^2 = fit^2 + floor^2`` (+ ``(gap / 2)^2``
    before issue 14), ``fit`` the RMS of the two directions' propagated covariances."""
    parts = getattr(m, "se_parts", None)
    if parts:
        return {k: float(v) for k, v in parts.items()}
    floor = systematic_se_px(m.segmenter, m.engine)
    gap = 0.0 if m.narrowing_forward_px is None else m.narrowing_forward_px + m.narrowing_backward_px
    half = abs(0.5 * gap) if GAP_IN_SE else 0.0
    one = max(m.narrowing_se_px ** 2 - half ** 2, 0.0)
    return {"fit_px": math.sqrt(max(one - floor ** 2, 0.0)), "systematic_px": floor, "directions_px": half}


def record(m, **where) -> dict:
    """A pair's record; ``where`` may carry ``crops``, the pair's two visits, to place jsnq's reading
    point against their true masks' articular centre."""
    if isinstance(m, Exception):
        where.pop("crops", None)
        return {**where, "error": " ".join(str(m).split()), "reliable": False, "narrowing_px": float("nan"),
                "se_px": float("nan"), "reasons": ["error"], "notes": [], "gap_px": float("nan")}
    gap = float("nan") if m.narrowing_forward_px is None else m.narrowing_forward_px + m.narrowing_backward_px
    crops = where.pop("crops", None)
    point = {}
    if crops is not None:
        # jsnq's reading place (half-way between its two points) against the pair's articular
        # centre from both visits' true masks, with the same fitted lower bone
        back = m.lower_transform.inverse()
        p, q = np.asarray(m.point_px, dtype=float), m.followup_point_px
        place = p if q is None else 0.5 * (p + back.apply(np.asarray(q, dtype=float)))
        offset = place - np.asarray(true_centre(*crops, m.lower_transform))
        point = {"point_px": list(m.point_px), "point_source": m.point_source, "point_offset_px": offset.tolist(),
                 "rotation_deg": m.upper.angle_deg - m.lower.angle_deg}
    return {**where, **point, "narrowing_px": m.narrowing_px, "se_px": m.narrowing_se_px, "reliable": m.reliable,
            "reasons": list(m.reasons), "notes": list(getattr(m, "notes", ())), "gap_px": gap,
            "forward_px": m.narrowing_forward_px, "backward_px": m.narrowing_backward_px,
            "engine": m.engine, "segmenter": m.segmenter, "se_parts": se_parts(m)}


def measure_pairs(joints: list[list[Crop]], mode: str) -> list[dict]:
    jobs, where = [], []
    for ji, crops in enumerate(joints):
        for a, b in itertools.permutations(range(len(crops)), 2):
            jobs.append(job(crops[a], crops[b], mode))
            where.append({"joint": crops[0].joint_id, "j": ji, "a": a, "b": b, "crops": (crops[a], crops[b])})
    return [record(m, **w) for m, w in zip(measure_all(jobs), where)]


#: The SE gate before issue 14 (``ReliabilityThresholds(max_se_px=0.25)``), for comparison.
OLD_SE_GATE_PX = 0.25


def path_stats(pairs: list[dict], ok=lambda p: p["reliable"]) -> dict:
    by = {(p["j"], p["a"], p["b"]): p for p in pairs}
    res, res_rel, z, z_rel = [], [], [], []
    for (j, a, b), p in by.items():
        for c in {k[2] for k in by if k[0] == j and k[1] == b and k[2] not in (a, b)}:
            ac, bc = by.get((j, a, c)), by.get((j, b, c))
            if ac is None or bc is None:
                continue
            three = (p, bc, ac)
            r = ac["narrowing_px"] - p["narrowing_px"] - bc["narrowing_px"]
            if not math.isfinite(r):
                continue
            zz = r / math.sqrt(sum(q["se_px"] ** 2 for q in three))
            res.append(r)
            z.append(zz)
            if all(ok(q) for q in three):
                res_rel.append(r)
                z_rel.append(zz)
    return {"triples": len(res), "reliable_triples": len(res_rel), "path_rms_px": rms(res),
            "path_rms_reliable_px": rms(res_rel), "path_over_se_rms": rms(z), "path_over_se_rms_reliable": rms(z_rel)}


def summarise(pairs: list[dict]) -> dict:
    n = len(pairs)
    reasons = collections.Counter(reason_kind(r) for p in pairs for r in p["reasons"])
    notes = collections.Counter(reason_kind(r) for p in pairs for r in p["notes"])
    ok = [p for p in pairs if "error" not in p]
    anti = {}
    for p in ok:
        q = next((q for q in ok if q["j"] == p["j"] and q["a"] == p["b"] and q["b"] == p["a"]), None)
        if q is not None:
            anti[p["j"], min(p["a"], p["b"]), max(p["a"], p["b"])] = p["narrowing_px"] + q["narrowing_px"]
    rel = [p for p in ok if p["reliable"]]
    return {
        "pairs": n, "reliable": len(rel), "reliable_share": len(rel) / n if n else float("nan"),
        "noted_share": sum(bool(p["notes"]) for p in pairs) / n if n else float("nan"),
        "errors": n - len(ok), "reasons": reasons.most_common(), "notes": notes.most_common(),
        "se_median_px": median(p["se_px"] for p in ok), "se_median_reliable_px": median(p["se_px"] for p in rel),
        "se_fit_median_px": median(p["se_parts"].get("fit_px", float("nan")) for p in ok),
        "se_directions_median_px": median(p["se_parts"].get("directions_px", float("nan")) for p in ok),
        "se_systematic_px": median(p["se_parts"].get("systematic_px", float("nan")) for p in ok),
        "gap_median_abs_px": median(abs(p["gap_px"]) for p in ok),
        "gap_median_abs_reliable_px": median(abs(p["gap_px"]) for p in rel),
        "antisymmetry_rms_px": rms(list(anti.values())),
        # the gap against the two directions' SEs: ~1 when they describe it, as independent errors
        "gap_over_se_rms": rms(p["gap_px"] / (math.sqrt(2.0) * math.hypot(p["se_parts"]["fit_px"],
                                                                          p["se_parts"]["systematic_px"]))
                               for p in ok),
        **path_stats(pairs),
        **point_stats(ok),
        "old_gate": {"reliable_share": sum(gated(p) for p in ok) / n if n else float("nan"),
                     **path_stats(pairs, gated)},
    }


def point_stats(pairs: list[dict]) -> dict:
    """The reading place against the two visits' true articular centres' (RMS, and per axis)."""
    d = np.asarray([p["point_offset_px"] for p in pairs if "point_offset_px" in p], dtype=float).reshape(-1, 2)
    if not len(d):
        return {}
    return {"point_rms_px": float(np.sqrt(np.mean(np.sum(d ** 2, axis=1)))),
            "point_rms_xy_px": [float(v) for v in np.sqrt(np.mean(d ** 2, axis=0))],
            "point_sources": dict(collections.Counter(p.get("point_source") for p in pairs))}


def gated(p: dict) -> bool:
    """Reliable under the former rule: no failed check and an SE of at most 0.25 px."""
    return bool(p["reliable"]) and p["se_px"] <= OLD_SE_GATE_PX


def _perturb_mask(mask: np.ndarray, k: int) -> np.ndarray:
    if k == 0:
        return mask
    op = ndimage.binary_dilation if k > 0 else ndimage.binary_erosion
    return op(mask, iterations=abs(k))


def _perturbed(crop: Crop, rng: np.random.Generator) -> Crop:
    ku, kl = rng.integers(-2, 3, 2)
    return Crop(crop.joint_id, crop.joint, crop.image, _perturb_mask(crop.upper, int(ku)),
                _perturb_mask(crop.lower, int(kl)))


def repeats(joints: list[list[Crop]], mode: str, n: int, kind: str) -> list[dict]:
    """``n`` perturbed copies of every joint's visits: each visit's crop shifted
    (``kind="shift"``) or its masks perturbed (``"labels"``) once per copy, as a visit is
    cropped and labelled once in a trial; every unordered pair measured on each copy.

    Returns per joint and copy ``{(a, b): narrowing}`` (``J(b, a) = -J(a, b)``, exact for the
    symmetric measurement, is not measured again).
    """
    jobs, where = [], []
    for ji, crops in enumerate(joints):
        rng = np.random.default_rng(zlib.crc32(f"{kind}:{crops[0].joint_id}".encode()))
        for r in range(n):
            if kind == "shift":
                moves = [rng.integers(-3, 4, 2) for _ in crops]
                copy = [_shifted(c, *d) for c, d in zip(crops, moves)]
            else:
                moves = [(0, 0) for _ in crops]
                copy = [_perturbed(c, rng) for c in crops]
            for a, b in itertools.combinations(range(len(crops)), 2):
                jobs.append(job(copy[a], copy[b], mode))
                where.append((ji, r, a, b, moves[a]))
    out: dict[tuple[int, int], dict] = collections.defaultdict(dict)
    points: dict[tuple[int, int], dict] = collections.defaultdict(dict)
    for m, (ji, r, a, b, (dy, dx)) in zip(measure_all(jobs), where):
        out[ji, r][a, b] = float("nan") if isinstance(m, Exception) else m.narrowing_px
        # the reading point in the baseline's unshifted crop (the anatomy's frame)
        points[ji, r][a, b] = ([float("nan")] * 2 if isinstance(m, Exception)
                               else [m.point_px[0] - float(dx), m.point_px[1] - float(dy)])
    return [{"j": ji, "copy": r, "values": {f"{a},{b}": v for (a, b), v in vals.items()},
             "points": {f"{a},{b}": v for (a, b), v in points[ji, r].items()}}
            for (ji, r), vals in sorted(out.items())]


def repeat_summary(reps: list[dict], pairs: list[dict]) -> dict:
    """Per pair: the SD of its narrowing over the copies; per ordered triple: the SD of its
    path residual over the copies. A perturbation tied to one visit moves a pair's narrowing
    but cancels in the path residuals; a pair-specific one shows in both."""
    reliable = {(p["j"], p["a"], p["b"]): p["reliable"] for p in pairs}
    by_joint: dict[int, list[dict[tuple[int, int], float]]] = collections.defaultdict(list)
    for rec in reps:
        by_joint[rec["j"]].append({tuple(map(int, k.split(","))): v for k, v in rec["values"].items()})
    sd, sd_rel, mism, psd, psd_rel, failed = [], [], [], [], [], 0
    point_sd = []
    by_pair: dict[tuple[int, str], list] = collections.defaultdict(list)
    for rec in reps:
        for k, v in rec.get("points", {}).items():
            by_pair[rec["j"], k].append(v)
    for v in by_pair.values():
        v = np.asarray(v, dtype=float)
        v = v[np.isfinite(v).all(axis=1)]
        if len(v) >= 2:
            point_sd.append(v.std(axis=0, ddof=1))

    def j_(vals, a, b):
        return vals[a, b] if (a, b) in vals else -vals[b, a]

    for ji, copies in by_joint.items():
        keys = sorted(copies[0])
        visits = sorted({v for k in keys for v in k})
        for a, b in keys:
            v = np.asarray([c[a, b] for c in copies])
            failed += int(np.sum(~np.isfinite(v)))
            v = v[np.isfinite(v)]
            if len(v) < 2:
                continue
            sd.append(float(v.std(ddof=1)))
            mism.append(_mismatch_share(v) if len(v) > 2 else 0.0)
            if reliable.get((ji, a, b)) and reliable.get((ji, b, a)):
                sd_rel.append(sd[-1])
        for a, b, c in itertools.combinations(visits, 3):
            r = np.asarray([j_(x, a, c) - j_(x, a, b) - j_(x, b, c) for x in copies])
            r = r[np.isfinite(r)]
            if len(r) < 2:
                continue
            psd.append(float(r.std(ddof=1)))
            if all(reliable.get((ji, p, q)) for p, q in ((a, b), (b, c), (a, c))):
                psd_rel.append(psd[-1])
    return {"pairs": len(sd), "sd_rms_px": rms(sd), "sd_rms_reliable_px": rms(sd_rel),
            "path_sd_rms_px": rms(psd), "path_sd_rms_reliable_px": rms(psd_rel), "triples": len(psd),
            "mismatch_rate": finite_mean(mism), "failed": failed,
            # the reading point's SD over the copies (x, y), RMS over pairs
            "point_sd_rms_xy_px": ([float(v) for v in np.sqrt(np.mean(np.square(point_sd), axis=0))]
                                   if point_sd else [float("nan")] * 2)}


#: The relative motion added to a follow-up's bones by the "motion" source (px of narrowing).
ADDED_NARROWING_PX = 0.5


def added_motion(joints: list[list[Crop]], mode: str) -> dict:
    """Every unordered pair measured again with ``ADDED_NARROWING_PX`` of narrowing added to the
    follow-up (its upper bone moved down and its lower bone up by half each, along the crop's y,
    by :func:`jsnq.phantom.apply_bone_motions` with its true labels): the narrowing should grow
    by exactly that. Returns the RMS of (growth - added) over pairs, and over pairs reliable
    both times."""
    from jsnq.geometry import Similarity, crop_centre

    jobs, moved, where = [], [], []
    for ji, crops in enumerate(joints):
        for a, b in itertools.combinations(range(len(crops)), 2):
            fol = crops[b]
            c = crop_centre(fol.image.shape)
            h = 0.5 * ADDED_NARROWING_PX
            img = apply_bone_motions(fol.image, fol.labels, Similarity(1.0, 0.0, 0.0, h, c),
                                     Similarity(1.0, 0.0, 0.0, -h, c))
            jobs.append(job(crops[a], fol, mode))
            moved.append(job(crops[a], Crop(fol.joint_id, fol.joint, img, fol.upper, fol.lower), mode))
            where.append((ji, a, b))
    err, err_rel = [], []
    for m0, m1 in zip(measure_all(jobs), measure_all(moved)):
        if isinstance(m0, Exception) or isinstance(m1, Exception):
            continue
        e = m1.narrowing_px - m0.narrowing_px - ADDED_NARROWING_PX
        err.append(e)
        if m0.reliable and m1.reliable:
            err_rel.append(e)
    return {"pairs": len(err), "rms_px": rms(err), "rms_reliable_px": rms(err_rel), "reliable_pairs": len(err_rel)}


def _followup_labels(case, crop: Crop) -> np.ndarray:
    moved = apply_bone_motions(crop.labels.astype(np.float64), crop.labels, case.upper, case.lower, order=0)
    return np.round(moved).astype(np.uint8)


def synthetic(crops: list[Crop], mode: str) -> list[dict]:
    out = []
    for ci, cond in enumerate(SYNTHETIC):
        rng = np.random.default_rng(3000 + ci)
        cases = [(cr, synthesise(cr, cond, rng)) for cr in crops]
        jobs = []
        for cr, case in cases:
            if mode == "none":
                jobs.append({"baseline": case.baseline, "followup": case.followup})
            else:
                jobs.append({"baseline": case.baseline, "followup": case.followup, "baseline_labels": case.labels,
                             "followup_labels": _followup_labels(case, cr)})
        err, z, se, rel, own = [], [], [], [], []
        for (cr, case), m in zip(cases, measure_all(jobs)):
            if isinstance(m, Exception):
                continue
            # the truth at the true masks' articular centre; beside it, at jsnq's own reading point
            e = m.narrowing_px - case.truth_at_centre_px
            own.append(m.narrowing_px - symmetric_narrowing_px(case.upper, case.lower, m.point_px, m.followup_point_px))
            err.append(e)
            se.append(m.narrowing_se_px)
            z.append(e / m.narrowing_se_px)
            rel.append(m.reliable)
        out.append({"condition": cond.name, "mode": mode, "n": len(err), "bias_px": float(np.mean(err)),
                    "sd_px": float(np.std(err, ddof=1)), "se_median_px": median(se),
                    "z_sd": float(np.std(z, ddof=1)), "z_rms": rms(z), "reliable_share": float(np.mean(rel)),
                    "own_point_sd_px": float(np.std(own, ddof=1))})
        print(json.dumps(out[-1]), file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--joints", type=int, default=61, help="held-out joints to draw (those with >= 2 visits are used; "
                                                           "default all)")
    ap.add_argument("--repeats", type=int, default=3, help="perturbed copies of each joint for the error sources")
    ap.add_argument("--crops", type=int, default=40, help="crops per synthetic condition")
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--sources", nargs="*", choices=("shift", "labels", "synthetic", "motion"),
                    default=["shift", "labels", "synthetic"], help="which error sources to measure (default all)")
    ap.add_argument("--quick", action="store_true", help="4 joints, 2 repeats, 8 crops")
    ap.add_argument("--json", type=Path, help="also write the figures and every pair's record here")
    add_engine_options(ap)
    args = ap.parse_args(argv)
    global OPTIONS
    OPTIONS = engine_options(args)
    if args.quick:
        args.joints, args.repeats, args.crops = 4, 2, 8
    root = data_dir()
    joints = longitudinal(root, args.joints)
    t0 = time.perf_counter()
    result: dict = {"machine": machine(), "joints": len(joints), "modes": {}}
    for mode in args.modes:
        pairs = measure_pairs(joints, mode)
        rec: dict = {"summary": summarise(pairs), "pairs": pairs}
        print(json.dumps({"mode": mode, **{k: v for k, v in rec["summary"].items() if k not in ("reasons", "notes")}}),
              file=sys.stderr, flush=True)
        for kind in [k for k in ("shift", "labels") if k in args.sources and (mode == "true" or k == "shift")]:
            reps = repeats(joints, mode, args.repeats, kind)
            rec[kind] = {**repeat_summary(reps, pairs), "copies": reps}
            print(json.dumps({"mode": mode, "kind": kind, **{k: v for k, v in rec[kind].items() if k != "copies"}}),
                  file=sys.stderr, flush=True)
        if "motion" in args.sources:
            rec["motion"] = added_motion(joints, mode)
            print(json.dumps({"mode": mode, "kind": "motion", **rec["motion"]}), file=sys.stderr, flush=True)
        if "synthetic" in args.sources:
            rec["synthetic"] = synthetic(one_crop_per_joint(root, args.crops, seed=0, validation_only=True), mode)
        result["modes"][mode] = rec
    if {"true", "none"} <= set(result["modes"]):
        t = {(p["j"], p["a"], p["b"]): p for p in result["modes"]["true"]["pairs"]}
        diff, diff_rel, moved = [], [], []
        for p in result["modes"]["none"]["pairs"]:
            q = t[p["j"], p["a"], p["b"]]
            d = p["narrowing_px"] - q["narrowing_px"]
            diff.append(d)
            if p["reliable"] and q["reliable"]:
                diff_rel.append(d)
            if "point_px" in p and "point_px" in q:
                moved.append(np.subtract(p["point_px"], q["point_px"]))
        result["label_source"] = {"rms_px": rms(diff), "rms_reliable_px": rms(diff_rel),
                                  "reliable_pairs": len(diff_rel),
                                  "point_rms_xy_px": [float(v) for v in np.sqrt(np.mean(np.square(moved), axis=0))]
                                  if moved else [float("nan")] * 2}
    result["seconds"] = time.perf_counter() - t0

    print(f"\nMachine: {machine()}; {len(joints)} held-out joints with >= 2 visits; "
          f"{time.perf_counter() - t0:.0f} s.\n")
    rows = []
    for mode, rec in result["modes"].items():
        s = rec["summary"]
        rows.append([mode, s["pairs"], f"{100 * s['reliable_share']:.1f} %", f"{100 * s['noted_share']:.1f} %",
                     s["se_median_px"], f"{s['se_fit_median_px']:.3f} / {s['se_systematic_px']:.3f} / "
                     f"{s['se_directions_median_px']:.3f}", s["gap_median_abs_px"],
                     f"{s['path_rms_reliable_px']:.3f} ({s['reliable_triples']})",
                     f"{s['path_over_se_rms_reliable']:.2f}", f"{s['path_rms_px']:.3f} ({s['triples']})",
                     f"{s['path_over_se_rms']:.2f}", s["antisymmetry_rms_px"], f"{s['gap_over_se_rms']:.2f}"])
    for mode, rec in result["modes"].items():
        g = rec["summary"]["old_gate"]
        rows.append([f"{mode}: reliable and SE ≤ 0.25 px (the former gate)", "", f"{100 * g['reliable_share']:.1f} %", "", "", "",
                     "", f"{g['path_rms_reliable_px']:.3f} ({g['reliable_triples']})",
                     f"{g['path_over_se_rms_reliable']:.2f}", "", "", "", ""])
    print("(a) ordered real visit pairs, measured with measure_many's defaults\n")
    print(markdown_table(["labels", "pairs", "reliable", "with a note", "median SE px", "median SE parts: fit / floor / "
                          "directions px", "median fwd+bwd gap px", "path RMS, reliable triples px",
                          "path/SE RMS, reliable", "path RMS, all triples px", "path/SE RMS, all",
                          "antisymmetry RMS px", "gap / (sqrt 2 SE one way) RMS"], rows))
    for mode, rec in result["modes"].items():
        s = rec["summary"]
        print(f"\nreasons ({mode} labels; pairs with each kind): "
              + "; ".join(f"{k} ({v})" for k, v in s["reasons"][:6]))
        if s["notes"]:
            print(f"notes ({mode} labels): " + "; ".join(f"{k} ({v})" for k, v in s["notes"][:3]))
        if "point_rms_px" in s:
            print(f"reading place ({mode} labels) from the true masks' articular centres' (half-way): RMS {s['point_rms_px']:.2f} px "
                  f"(x {s['point_rms_xy_px'][0]:.2f}, y {s['point_rms_xy_px'][1]:.2f}); sources {s['point_sources']}")
        if "motion" in rec:
            r = rec["motion"]
            print(f"{ADDED_NARROWING_PX} px added to the follow-up ({mode} labels), read back: RMS error "
                  f"{r['rms_px']:.3f} px over {r['pairs']} pairs, {r['rms_reliable_px']:.3f} px over "
                  f"{r['reliable_pairs']} reliable both times")
    if {"shift", "labels"} & set(args.sources):
        print(f"\n(b) error sources, {args.repeats} perturbed copies of each joint's visits (all / reliable)\n")
        rows = []
        for mode, rec in result["modes"].items():
            for kind, what in (("shift", "crop shifts +-3 px"), ("labels", "masks grown/shrunk 0-2 px")):
                if kind in rec:
                    r = rec[kind]
                    rows.append([mode, what, r["pairs"], f"{r['sd_rms_px']:.3f} / {r['sd_rms_reliable_px']:.3f}",
                                 f"{r['path_sd_rms_px']:.3f} / {r['path_sd_rms_reliable_px']:.3f}",
                                 f"{100 * r['mismatch_rate']:.2f} %", r["failed"],
                                 "{:.2f} / {:.2f}".format(*r["point_sd_rms_xy_px"])])
        print(markdown_table(["labels", "perturbation (each visit once per copy)", "pairs",
                              "pair SD RMS px", "path residual SD RMS px (triples)",
                              "mismatch rate (0.3 mm gate)", "failed", "reading point SD RMS px (x / y)"], rows))
        if "label_source" in result:
            ls = result["label_source"]
            print(f"\nlabel source (no labels minus true labels, per ordered pair): RMS {ls['rms_px']:.3f} px; "
                  f"{ls['rms_reliable_px']:.3f} px over the {ls['reliable_pairs']} pairs reliable both ways; "
                  "the reading point moves by {:.2f} / {:.2f} px RMS (x / y)".format(*ls["point_rms_xy_px"]))
    if "synthetic" in args.sources:
        print(f"\n(c) synthetic error over SE ({args.crops} held-out crops per condition)\n")
        print(markdown_table(["labels", "condition", "n", "bias px", "error SD px", "median SE px", "SD of error/SE",
                              "reliable", "error SD at jsnq's own reading point px"],
                             [[r["mode"], r["condition"], r["n"], r["bias_px"], r["sd_px"], r["se_median_px"],
                               r["z_sd"], f"{100 * r['reliable_share']:.0f} %", r.get("own_point_sd_px", float("nan"))]
                              for rec in result["modes"].values() for r in rec.get("synthetic", [])]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
