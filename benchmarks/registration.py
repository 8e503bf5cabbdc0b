"""The registration engines side by side: classical, deep (the network alone) and hybrid.

(a) **Synthetic motions with known truth.** The accuracy benchmark's conditions (real crops of
    held-out joints, each bone moved by a known similarity, exposure change, noise), plus a
    wide one: common rotation +-15 deg, scale +-10 %, shift +-12 px, relative rotation +-2 deg.
    Labels from the true masks. Reported per engine: bias, SD, max error, the share above
    0.5 px, and ms per pair (median).

(b) **Real visit pairs of the held-out joints, no ground truth needed** (the paper authors'
    protocol). ``J(a, b)`` is measured with the labels of both visits' true masks, and with
    the joint centres of both visits (:attr:`jsnq.jsw.JointSpaceWidth.centre_px` of the true
    masks) as the anatomical anchor of the narrowing. With both visits' labels jsnq registers
    both ways and averages, so ``J(a, b) + J(b, a)`` is 0 by construction; the honest figure
    of inverse consistency is then the *one-way* disagreement: the forward narrowing plus the
    backward one, each from its own registration (RMS, per pair of visits). With
    ``--labels network`` no labels are given, as ``measure`` runs for most users: the
    segmentation network labels both visits and its joint centres are the anchors.

    * antisymmetry: ``J(a, b) + J(b, a)`` over every pair of visits (RMS);
    * path consistency: ``J(a, c) - J(a, b) - J(b, c)`` over every ordered triple (RMS);
    * repeatability: each pair measured 10 times, each crop (with its masks) shifted
      independently by a random integer offset in [-3, 3] px (reflected at the border); the SD
      of the 10, RMS over pairs;
    * mismatch rate: per pair, the share of those 10 that must be dropped, farthest from
      the mean first, before their SD falls under 0.3 mm at 0.175 mm/px (1.71 px).

    Reported over all pairs and over the pairs jsnq flags reliable.

Usage::

    python benchmarks/registration.py                 # full run (~15 min on 2 cores)
    python benchmarks/registration.py --quick         # smoke test
    python benchmarks/registration.py --json out.json
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (PAPER_MISMATCH, PAPER_SD_MM, PAPER_SPACING_MM, Condition, Crop, data_dir,  # noqa: E402
                               add_engine_options, load_crop, machine, manifest, markdown_table,
                               one_crop_per_joint, synthesise, with_engine_options)
from jsnq import MeasureConfig, measure  # noqa: E402
from jsnq.geometry import symmetric_narrowing_px  # noqa: E402
from jsnq.jsw import joint_space_width  # noqa: E402

ENGINES = ("classical", "deep", "hybrid")
CONDITIONS = [
    Condition("noise 0 %", 0.0),
    Condition("noise 2 %", 0.02),
    Condition("noise 5 %", 0.05),
    Condition("wide: rot 15, scale 10 %, shift 12, rel. rot 2", 0.02, max_rotation_deg=15, max_scale=0.10,
              max_shift_px=12, relative_rotation_deg=2.0),
]
MISMATCH_SD_PX = 0.3 / PAPER_SPACING_MM


def model_size() -> dict:
    """Parameters, multiply-accumulates and CPU time of the shipped network (2 threads)."""
    import torch

    from benchmarks.segmentation import conv_macs, ms
    from jsnq.networks import shipped_weights
    from jsnq.register.network import load_regnet, predict_similarities, predict_similarities_batch
    from jsnq._torch import fuse_batchnorm

    torch.set_num_threads(2)
    model, _ = load_regnet(shipped_weights("register"))
    cfg = model.config
    size = cfg.input_size
    params = sum(p.numel() for p in model.parameters())
    macs = conv_macs(model, (1, 4, size, size)) + sum(m.in_features * m.out_features for m in model.modules()
                                                       if isinstance(m, torch.nn.Linear))
    fused = fuse_batchnorm(model)
    fused.config = cfg
    x = torch.zeros(1, 4, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        fwd = ms(lambda: fused(x), 50)
    rng = np.random.default_rng(0)
    a, b = rng.random((256, 256)), rng.random((256, 256))
    lab = np.zeros((256, 256), np.uint8)
    lab[:128], lab[128:] = 1, 2
    one = ms(lambda: predict_similarities(fused, a, b, lab), 30)
    many = ms(lambda: predict_similarities_batch(fused, [(a, b, lab)] * 32), 5) / 32
    return {"params": params, "macs_per_pass": macs, "input_px": size, "passes": cfg.passes_at_inference,
            "file_mb": shipped_weights("register").stat().st_size / 1e6 if hasattr(shipped_weights("register"), "stat")
            else float("nan"), "ms_forward": fwd, "ms_pair": one, "ms_pair_batched32": many}


def centre(crop: Crop) -> tuple[float, float]:
    return joint_space_width(crop.upper, crop.lower).centre_px


def synthetic(crops: list[Crop], engines: tuple[str, ...]) -> list[dict]:
    out = []
    for ci, cond in enumerate(CONDITIONS):
        rng = np.random.default_rng(2000 + ci)
        cases = [(cr, synthesise(cr, cond, rng)) for cr in crops]
        for engine in engines:
            errs, times = [], []
            for cr, case in cases:
                p = centre(cr)
                truth = symmetric_narrowing_px(case.upper, case.lower, p)
                t0 = time.perf_counter()
                # check_labels=False: the engines' time, without the label check (a network
                # segmentation, ~25 ms, the same for every engine; it changes no number).
                m = measure(case.baseline, case.followup, baseline_labels=case.labels, point=p,
                            config=MeasureConfig(engine=engine, check_labels=False))
                times.append(time.perf_counter() - t0)
                errs.append(m.narrowing_px - truth)
            e = np.asarray(errs)
            rec = {"condition": cond.name, "engine": engine, "n": len(e), "bias_px": float(e.mean()),
                   "sd_px": float(e.std(ddof=1)), "max_abs_px": float(np.abs(e).max()),
                   "over_0.5px": float(np.mean(np.abs(e) > 0.5)), "ms_median": 1e3 * float(np.median(times))}
            out.append(rec)
            print(f"{cond.name:48s} {engine:9s} sd {rec['sd_px']:.4f} bias {rec['bias_px']:+.4f} "
                  f"max {rec['max_abs_px']:.3f} ms {rec['ms_median']:.0f}", file=sys.stderr, flush=True)
    return out


def longitudinal(root: Path, max_joints: int, seed: int = 0) -> list[list[Crop]]:
    """Held-out joints with >= 2 visits (all their crops, manifest order), chosen reproducibly."""
    from jsnq.training.data import split_joints

    rows = manifest(root)
    held = set(split_joints(sorted({r["joint_id"] for r in rows}))[1])
    by_joint: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        if r["joint_id"] in held:
            by_joint.setdefault(r["joint_id"], []).append(r)
    ids = sorted(j for j, v in by_joint.items() if len(v) >= 2)
    pick = sorted(np.random.default_rng(seed).permutation(len(ids))[:max_joints])
    return [[load_crop(root, r) for r in by_joint[ids[i]][:4]] for i in pick]


def _shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``a`` moved by (dy, dx) px within the same window, reflected at the border."""
    p = 3
    padded = np.pad(a, p, mode="reflect" if a.dtype != bool else "edge")
    return padded[p - dy:p - dy + a.shape[0], p - dx:p - dx + a.shape[1]]


def _shifted(crop: Crop, dy: int, dx: int) -> Crop:
    return Crop(crop.joint_id, crop.joint, _shift(crop.image, dy, dx), _shift(crop.upper, dy, dx),
                _shift(crop.lower, dy, dx))


#: ``--labels network``: the real pairs measured as ``measure`` runs without labels (the
#: segmentation network labels both visits and gives the anchors) instead of with the true masks.
NETWORK_LABELS = False


def _j(a: Crop, b: Crop, engine: str):
    """(narrowing, reliable, forward + backward) of the symmetric measurement (both visits'
    labels: jsnq registers both ways and averages)."""
    if NETWORK_LABELS:
        m = measure(a.image, b.image, config=MeasureConfig(engine=engine, check_labels=False))
    else:
        m = measure(a.image, b.image, baseline_labels=a.labels, followup_labels=b.labels,
                    point=centre(a), followup_point=centre(b), config=MeasureConfig(engine=engine))
    return m.narrowing_px, m.reliable, m.narrowing_forward_px + m.narrowing_backward_px


def _mismatch_share(values: np.ndarray) -> float:
    v = list(values)
    dropped = 0
    while len(v) > 2 and np.std(v, ddof=1) >= MISMATCH_SD_PX:
        mean = np.mean(v)
        v.pop(int(np.argmax(np.abs(np.asarray(v) - mean))))
        dropped += 1
    return dropped / len(values)


def real_pairs(joints: list[list[Crop]], engines: tuple[str, ...], repeats: int) -> list[dict]:
    out = []
    for engine in engines:
        anti, anti_rel, path, path_rel, rep, rep_rel, mism = [], [], [], [], [], [], []
        oneway, oneway_rel, times = [], [], []
        for crops in joints:
            n = len(crops)
            j, rel = {}, {}
            for a, b in itertools.permutations(range(n), 2):
                t0 = time.perf_counter()
                j[a, b], rel[a, b], gap = _j(crops[a], crops[b], engine)
                times.append(time.perf_counter() - t0)
                if a < b:
                    oneway.append(gap)
                    if rel[a, b]:
                        oneway_rel.append(gap)
            for a, b in itertools.combinations(range(n), 2):
                anti.append(j[a, b] + j[b, a])
                if rel[a, b] and rel[b, a]:
                    anti_rel.append(anti[-1])
            for a, b, c in itertools.permutations(range(n), 3):
                path.append(j[a, c] - j[a, b] - j[b, c])
                if rel[a, c] and rel[a, b] and rel[b, c]:
                    path_rel.append(path[-1])
            # crc32, not hash(): str hashes change from run to run (PYTHONHASHSEED)
            rng = np.random.default_rng(zlib.crc32(crops[0].joint_id.encode()))
            for a, b in itertools.combinations(range(n), 2):
                vals = []
                for _ in range(repeats):
                    sa, sb = rng.integers(-3, 4, 2), rng.integers(-3, 4, 2)
                    vals.append(_j(_shifted(crops[a], *sa), _shifted(crops[b], *sb), engine)[0])
                v = np.asarray(vals)
                rep.append(float(v.std(ddof=1)))
                mism.append(_mismatch_share(v))
                if rel[a, b]:
                    rep_rel.append(rep[-1])

        def rms(v: list[float]) -> float:
            return float(np.sqrt(np.mean(np.square(v)))) if v else float("nan")

        rec = {"engine": engine, "joints": len(joints), "pairs": len(anti), "reliable_pairs": len(anti_rel),
               "antisymmetry_rms_px": rms(anti), "antisymmetry_rms_reliable_px": rms(anti_rel),
               "one_way_disagreement_rms_px": rms(oneway), "one_way_disagreement_rms_reliable_px": rms(oneway_rel),
               "ms_median_symmetric": 1e3 * float(np.median(times)),
               "path_rms_px": rms(path), "path_rms_reliable_px": rms(path_rel), "triples": len(path),
               "repeatability_sd_rms_px": rms(rep), "repeatability_sd_rms_reliable_px": rms(rep_rel),
               "repeatability_sd_median_px": float(np.median(rep)) if rep else float("nan"),
               "mismatch_rate": float(np.mean(mism)) if mism else float("nan")}
        out.append(rec)
        print(json.dumps(rec), file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=40, help="crops (one per held-out joint) per synthetic condition")
    ap.add_argument("--joints", type=int, default=20, help="held-out joints with >= 2 visits for (b)")
    ap.add_argument("--repeats", type=int, default=10, help="shifted re-measurements per real pair")
    ap.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--quick", action="store_true", help="8 crops, 4 joints, 4 repeats")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    ap.add_argument("--labels", choices=("true", "network"), default="true",
                    help="(b): labels and anchors from the true masks, or none given (the network's)")
    add_engine_options(ap)
    args = ap.parse_args(argv)
    global measure, NETWORK_LABELS
    measure = with_engine_options(measure, args)
    NETWORK_LABELS = args.labels == "network"
    if args.quick:
        args.crops, args.joints, args.repeats = 8, 4, 4
    engines = tuple(args.engines)
    root = data_dir()
    size = model_size() if "deep" in engines or "hybrid" in engines else None
    syn = [] if args.skip_synthetic else synthetic(one_crop_per_joint(root, args.crops, seed=0, validation_only=True),
                                                     engines)
    real = [] if args.skip_real else real_pairs(longitudinal(root, args.joints), engines, args.repeats)
    print(f"\nMachine: {machine()}; 2 threads.\n")
    if size:
        print(markdown_table(
            ["network", "parameters", "input px", "MMACs per pass", "passes", "ms per forward", "ms per pair",
             "ms per pair, batches of 32"],
            [["jsnq ResNet (shipped)", f"{size['params'] / 1e6:.2f} M", size["input_px"],
              f"{size['macs_per_pass'] / 1e6:.0f}", size["passes"], f"{size['ms_forward']:.1f}",
              f"{size['ms_pair']:.1f}", f"{size['ms_pair_batched32']:.1f}"],
             ["Wang et al. 2023", "~47 M", 224, "–", 1, "–", "–", "–"]]))
        print()
    if syn:
        print(f"(a) synthetic motions on {args.crops} held-out real crops, true-mask labels\n")
        print(markdown_table(["condition", "engine", "n", "bias px", "SD px", "max px", "> 0.5 px", "ms/pair"],
                             [[r["condition"], r["engine"], r["n"], r["bias_px"], r["sd_px"], r["max_abs_px"],
                               f"{100 * r['over_0.5px']:.1f} %", f"{r['ms_median']:.0f}"] for r in syn]
                             + [["paper's clinical set", "Wang et al. 2023", "–", float("nan"),
                                 PAPER_SD_MM / PAPER_SPACING_MM, float("nan"), "0.48 % mismatch", "–"]]))
    if real:
        print("\n(b) real visit pairs of held-out joints (all pairs / pairs flagged reliable), labels: "
              f"{'the network (none given)' if NETWORK_LABELS else 'true masks'}\n")
        print(markdown_table(
            ["engine", "joints", "pairs (reliable)", "antisymmetry RMS px", "one-way fwd+bwd RMS px", "path RMS px",
             "repeatability SD px", "mismatch rate", "ms/pair (both ways)"],
            [[r["engine"], r["joints"], f"{r['pairs']} ({r['reliable_pairs']})",
              f"{r['antisymmetry_rms_px']:.3f} / {r['antisymmetry_rms_reliable_px']:.3f}",
              f"{r['one_way_disagreement_rms_px']:.3f} / {r['one_way_disagreement_rms_reliable_px']:.3f}",
              f"{r['path_rms_px']:.3f} / {r['path_rms_reliable_px']:.3f}",
              f"{r['repeatability_sd_rms_px']:.3f} / {r['repeatability_sd_rms_reliable_px']:.3f}",
              f"{100 * r['mismatch_rate']:.2f} %", f"{r['ms_median_symmetric']:.0f}"] for r in real]
            + [["paper (its clinical set)", "–", "–", "–", "–", "–", "–", f"{100 * PAPER_MISMATCH:.2f} %", "–"]]))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "model": size, "synthetic": syn, "real": real},
                                        indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
