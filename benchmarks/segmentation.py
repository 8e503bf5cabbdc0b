"""Bone segmentation on the validation joints: the UNet++ against the true masks, with the
classical joint-space line side by side.

The validation joints are the ones the shipped weights' checkpoint records as held out
(split by joint, so none of their crops was seen in training). Crops whose two true masks
overlap by more than the training's ``max_overlap`` are annotation errors (the "upper" mask
outlines the lower bone) and are left out here too; their number is printed.

Per crop: DSC and IoU per bone; the facing surfaces (the upper bone's lowest and the lower
bone's highest edge per column, over the central 50 % of the joint, as the JSW uses them)
against the true ones, mean absolute distance in px; the joint space width (mean and min)
against the JSW of the true masks; the split line (the midline of the joint space) against
the true midline, for the network and for the classical line. All per joint type (MCP1-5).

Effect on JSN: on real visit pairs of the validation joints (consecutive crops of each joint
folder), ``measure`` with the baseline labels from the network (and from the classical line)
against the labels from the true masks (``labels_from_masks``): RMS difference in px.

The reference's own reproducibility, on the same pairs: the other visit's true masks, carried
into this visit's frame by each bone's registered motion, against this visit's true masks
(facing surfaces, and the narrowing measured with labels from either). Neither a network nor
a second annotator can be shown to agree with the reference more closely than it agrees with
itself, so this is the floor under the two comparisons above. And, per crop of the joints
with >= 3 visits, the network and the crop's own annotation head to head against the median
of the other visits' annotations (carried by reliable registrations only).

Speed: ms per crop with ``torch.set_num_threads(2)``; parameters and multiply-accumulates
(MACs, counted over the convolutions) of our network and of a stand-in for the paper's.

Usage::

    python benchmarks/segmentation.py                  # ~5 min on 2 cores
    python benchmarks/segmentation.py --max-pairs 20   # quicker
    python benchmarks/segmentation.py --weights ckpt.pt --json out.json
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (add_engine_options, data_dir, load_crop, machine, manifest,  # noqa: E402
                               markdown_table, with_engine_options)
from jsnq import MeasureConfig, measure  # noqa: E402
from jsnq.jsw import facing_surfaces, joint_space_width  # noqa: E402
from jsnq.register.warp import warp_to_baseline  # noqa: E402
from jsnq.labels import labels_from_line, labels_from_masks, line_from_labels  # noqa: E402
from jsnq.segment.classical import joint_space_line  # noqa: E402
from jsnq.segment.network import (UNetPlusPlus, fuse_for_inference, load_model, predict_masks, segment,  # noqa: E402
                                  shipped_weights)

JOINTS = ("MCP1", "MCP2", "MCP3", "MCP4", "MCP5")
TARGETS = {"dsc": 0.97, "surface_px": 1.0, "jsn_rms_px": 0.05, "ms": 30.0, "train_min": 40.0}


# -- model size ------------------------------------------------------------------------------------


def conv_macs(model: nn.Module, shape: tuple[int, int, int, int]) -> int:
    """Multiply-accumulates of the (transposed) convolutions for one forward pass of ``shape``."""
    total = 0

    def hook(mod: nn.Module, inp: tuple[torch.Tensor], out: torch.Tensor) -> None:
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1]
        if isinstance(mod, nn.ConvTranspose2d):  # every input pixel scatters a k-window to each output channel
            total += inp[0].numel() * k * mod.out_channels // mod.groups
        else:
            total += out.numel() * k * mod.in_channels // mod.groups

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.inference_mode():
        model.eval()(torch.zeros(shape))
    for h in handles:
        h.remove()
    return total


def paper_standin() -> nn.Module:
    """An ESTIMATE of the paper's segmenter: a 7x7 64-channel stem, then a 5-level UNet++
    with the original UNet++ widths (32-512, Zhou et al. 2018), at 224 x 224."""
    return nn.Sequential(nn.Conv2d(1, 64, 7, padding=3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                         UNetPlusPlus((32, 64, 128, 256, 512), in_channels=64, out_channels=2))


def ms(fn, n: int, warm: int = 3) -> float:
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(ts))


# -- per-crop metrics -------------------------------------------------------------------------------


def _dsc_iou(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    inter = float((pred & true).sum())
    union = float((pred | true).sum())
    return 2 * inter / (pred.sum() + true.sum()), inter / union


def crop_metrics(crop, *, model) -> dict:
    t0 = time.perf_counter()
    res = segment(crop.image, model=model)
    ms = 1000.0 * (time.perf_counter() - t0)
    out: dict = {"joint_id": crop.joint_id, "joint": crop.joint, "ms_segment": ms}
    for name, pred, true in (("upper", res.upper_mask, crop.upper), ("lower", res.lower_mask, crop.lower)):
        out[f"dsc_{name}"], out[f"iou_{name}"] = _dsc_iou(pred, true)
    jsw_true = joint_space_width(crop.upper, crop.lower)
    c0, c1 = jsw_true.columns
    cols = np.arange(c0, c1 + 1)
    yu_t, yl_t, _ = facing_surfaces(crop.upper, crop.lower)
    yu_p, yl_p, _ = facing_surfaces(*res.surface_maps())
    for name, p, t in (("upper", yu_p, yu_t), ("lower", yl_p, yl_t)):
        d = np.abs(p[cols] - t[cols])
        out[f"surface_{name}_px"] = float(np.nanmean(d)) if np.isfinite(d).any() else math.nan
        out[f"surface_{name}_missing"] = int((~np.isfinite(d)).sum())
    out["jsw_true_mean_px"], out["jsw_true_min_px"] = jsw_true.mean_px, jsw_true.min_px
    out["overlap_px"] = int((crop.upper & crop.lower).sum())  # the true masks overlap in projection
    if res.jsw is not None:
        out["jsw_mean_err_px"] = res.jsw.mean_px - jsw_true.mean_px
        out["jsw_min_err_px"] = res.jsw.min_px - jsw_true.min_px
    else:
        out["jsw_mean_err_px"] = out["jsw_min_err_px"] = math.nan
    true_line = line_from_labels(crop.labels)
    t0 = time.perf_counter()
    classical = joint_space_line(crop.image)
    out["ms_classical"] = 1000.0 * (time.perf_counter() - t0)
    out["line_err_network_px"] = float(np.nanmean(np.abs(res.line[cols] - true_line[cols])))
    out["line_err_classical_px"] = float(np.nanmean(np.abs(classical[cols] - true_line[cols])))
    return out, res, classical


def _mean(rows: list[dict], key: str, fn=np.nanmean) -> float:
    vals = np.array([r[key] for r in rows], dtype=float)
    return float(fn(vals)) if np.isfinite(vals).any() else math.nan


def _rms(vals) -> float:
    v = np.asarray(vals, dtype=float)
    v = v[np.isfinite(v)]
    return float(np.sqrt(np.mean(v ** 2))) if v.size else math.nan


# -- main --------------------------------------------------------------------------------------------


def carry_masks(upper: np.ndarray, lower: np.ndarray, m) -> tuple[np.ndarray, np.ndarray]:
    """The follow-up's two bone masks carried into the baseline frame, each by its own bone's
    motion from the measurement ``m`` (bilinear, 0.5 threshold)."""
    return tuple(warp_to_baseline(mask.astype(np.float32), t, order=1, cval=0.0) >= 0.5
                 for mask, t in ((upper, m.upper_transform), (lower, m.lower_transform)))


def surface_gap(upper: np.ndarray, lower: np.ndarray, ref_upper: np.ndarray, ref_lower: np.ndarray,
                cols: np.ndarray) -> tuple[float, float]:
    """Mean |row difference| of the facing surfaces of two mask pairs over ``cols`` (upper, lower),
    the same measure as the network's facing-surface error."""
    p, t = facing_surfaces(upper, lower), facing_surfaces(ref_upper, ref_lower)
    return tuple(float(np.nanmean(np.abs(p[k][cols] - t[k][cols]))) for k in (0, 1))


def print_reference_reproducibility(jsn: list[dict]) -> None:
    """How well the true masks agree with themselves: each pair's other visit's annotation,
    carried into this visit's frame by each bone's motion, against this visit's annotation.
    Neither a network nor a second annotator can be shown to agree with the reference better
    than the reference agrees with itself."""
    rel = [p for p in jsn if p["reliable_true"]]
    print("\n## The reference's own reproducibility (the same pairs)\n")
    print("The other visit's true masks (and the network's masks of the other visit), carried into this "
          "visit's frame by each bone's registered motion, against this visit's; and the narrowing measured "
          "with labels from the carried annotation against labels from this visit's annotation.\n")
    rows = []
    for name, g in (("all", jsn), ("reliable", rel)):
        if not g:
            continue
        rows.append([f"{name} ({len(g)})", _mean(g, "surface_network_upper_px"), _mean(g, "surface_ref_upper_px"),
                     _mean(g, "surface_ref_upper_px") / math.sqrt(2), _mean(g, "surface_net_upper_px"),
                     _mean(g, "surface_network_lower_px"), _mean(g, "surface_ref_lower_px"),
                     _mean(g, "surface_ref_lower_px") / math.sqrt(2), _mean(g, "surface_net_lower_px"),
                     _rms([p["network"] - p["true"] for p in g]), _rms([p["other_annotation"] - p["true"] for p in g])])
    print(markdown_table(
        ["pairs", "upper: network vs ref", "upper: ref vs ref", "  ref / sqrt 2", "upper: network vs network",
         "lower: network vs ref", "lower: ref vs ref", "  ref / sqrt 2", "lower: network vs network",
         "JSN: network vs ref labels", "JSN: ref vs ref labels"], rows))
    print("\n(facing surfaces: mean |row difference| over the central columns, px; 'ref / sqrt 2' is the error "
          "of one annotation if the two visits' annotations err independently; JSN: RMS difference of the "
          "narrowing measured one way with the baseline's labels, px; reliable: with true labels. Measured both "
          "ways the carried annotation is no second opinion: both visits' annotations enter either way)")


def consensus_comparison(by_joint: dict[str, list], results: dict) -> list[dict]:
    """Network and annotation head to head against an independent reference, per crop of the
    joints with >= 3 visits: the median (the mean of two) of the facing surfaces of the joint's
    *other* visits' true masks, each carried into this crop's frame by its bones' motions,
    using only the pairs flagged reliable (little posture change) and crops with >= 2 of them.
    The network's surfaces and this crop's own annotation are each compared with it."""
    out = []
    for crops in by_joint.values():
        if len(crops) < 3:
            continue
        for a in crops:
            c0, c1 = joint_space_width(a.upper, a.lower).columns
            cols = np.arange(c0, c1 + 1)
            others = []
            for b in crops:
                if b is a:
                    continue
                m = measure(a.image, b.image, baseline_labels=a.labels, followup_labels=b.labels,
                            config=MeasureConfig(segmenter="classical"))
                if m.reliable:
                    others.append(facing_surfaces(*carry_masks(b.upper, b.lower, m)))
            if len(others) < 2:
                continue
            own = facing_surfaces(a.upper, a.lower)
            net = facing_surfaces(*results[id(a)][0].surface_maps())
            rec = {"overlap": bool((a.upper & a.lower).any()), "others": len(others)}
            for k, name in ((0, "upper"), (1, "lower")):
                stack = np.stack([o[k][cols] for o in others])
                ref = np.nanmedian(stack, axis=0) if len(others) > 2 else np.nanmean(stack, axis=0)
                rec[f"network_{name}_px"] = float(np.nanmean(np.abs(net[k][cols] - ref)))
                rec[f"annotation_{name}_px"] = float(np.nanmean(np.abs(own[k][cols] - ref)))
            out.append(rec)
    return out


def print_consensus(rows: list[dict]) -> None:
    if not rows:
        return
    print("\nAgainst the other visits' annotations (joints with >= 3 visits; median of the other visits' true "
          "masks carried by reliable registrations): the network and this crop's own annotation, mean |row "
          "difference| of the facing surfaces over the central columns, px\n")
    table = []
    for name, g in (("all", rows), ("true masks disjoint", [r for r in rows if not r["overlap"]]),
                    ("true masks overlap", [r for r in rows if r["overlap"]])):
        if g:
            table.append([f"{name} ({len(g)} crops)", _mean(g, "network_upper_px"), _mean(g, "annotation_upper_px"),
                          _mean(g, "network_lower_px"), _mean(g, "annotation_lower_px")])
    print(markdown_table(["crops", "upper: network", "upper: annotation", "lower: network", "lower: annotation"],
                         table))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, default=None, help="checkpoint (default: the shipped weights)")
    ap.add_argument("--max-pairs", type=int, default=None, help="limit the JSN pairs")
    ap.add_argument("--json", type=Path, default=None, help="write the raw numbers here")
    add_engine_options(ap)
    args = ap.parse_args(argv)
    global measure
    measure = with_engine_options(measure, args)
    torch.set_num_threads(2)

    root = data_dir()
    raw_model, config, ckpt = load_model(args.weights if args.weights is not None else shipped_weights())
    model = fuse_for_inference(raw_model)  # what segment() runs for the shipped weights
    val = set(ckpt["config"]["split"]["validation_joints"])
    max_overlap = float(ckpt["config"]["training"].get("max_overlap", 0.8))
    rows = [r for r in manifest(root) if r["joint_id"] in val]
    crops, excluded = [], 0
    for r in rows:
        c = load_crop(root, r)
        if (c.upper & c.lower).sum() > max_overlap * min(c.upper.sum(), c.lower.sum()):
            excluded += 1
            continue
        crops.append(c)
    print(f"# Bone segmentation on {len(crops)} validation crops of {len({c.joint_id for c in crops})} joints "
          f"({excluded} crops with erroneous masks left out)\n")
    print(f"machine: {machine()}, torch threads {torch.get_num_threads()}\n")

    per_crop, results, metrics = [], {}, {}
    for c in crops:
        m, res, classical = crop_metrics(c, model=model)
        per_crop.append(m)
        metrics[id(c)] = m
        results[id(c)] = (res, classical)

    # -- accuracy per joint type -------------------------------------------------------------
    header = ["joint", "crops", "DSC upper", "DSC lower", "IoU upper", "IoU lower", "surface upper (px)",
              "surface lower (px)", "JSW mean err (px)", "JSW mean |err| (px)", "JSW min |err| (px)",
              "midline err network (px)", "midline err classical (px)"]
    table = []
    groups = [(j, [m for m in per_crop if m["joint"] == j]) for j in JOINTS] + [("all", per_crop)]
    for name, g in groups:
        if not g:
            continue
        table.append([name, len(g), _mean(g, "dsc_upper"), _mean(g, "dsc_lower"), _mean(g, "iou_upper"),
                      _mean(g, "iou_lower"), _mean(g, "surface_upper_px"), _mean(g, "surface_lower_px"),
                      _mean(g, "jsw_mean_err_px"), float(np.nanmean(np.abs([m["jsw_mean_err_px"] for m in g]))),
                      float(np.nanmean(np.abs([m["jsw_min_err_px"] for m in g]))),
                      _mean(g, "line_err_network_px"), _mean(g, "line_err_classical_px")])
    print("## Accuracy per joint type (means over crops)\n")
    print(markdown_table(header, table))
    dsc_u, dsc_l = _mean(per_crop, "dsc_upper"), _mean(per_crop, "dsc_lower")
    worst = sorted(per_crop, key=lambda m: min(m["dsc_upper"], m["dsc_lower"]))[:5]
    print("\nworst crops (min DSC): " + ", ".join(
        f"{m['joint_id']} {min(m['dsc_upper'], m['dsc_lower']):.3f}" for m in worst))
    for label, g in (("true masks disjoint", [m for m in per_crop if m["overlap_px"] == 0]),
                     ("true masks overlap", [m for m in per_crop if m["overlap_px"] > 0])):
        if g:
            print(f"facing-surface error, {label} ({len(g)} crops): upper {_mean(g, 'surface_upper_px'):.2f} px, "
                  f"lower {_mean(g, 'surface_lower_px'):.2f} px; DSC {_mean(g, 'dsc_upper'):.3f} / "
                  f"{_mean(g, 'dsc_lower'):.3f}")
    print(f"JSW mean error SD {np.nanstd([m['jsw_mean_err_px'] for m in per_crop]):.3f} px, "
          f"RMS {_rms([m['jsw_mean_err_px'] for m in per_crop]):.3f} px; true mean JSW "
          f"{_mean(per_crop, 'jsw_true_mean_px'):.2f} px (negative where the masks overlap: "
          f"{sum(m['jsw_true_mean_px'] < 0 for m in per_crop)} crops)")

    # -- effect on JSN -----------------------------------------------------------------------
    by_joint: dict[str, list] = defaultdict(list)
    for c in crops:
        by_joint[c.joint_id].append(c)
    pairs = [(v[i], v[i + 1]) for v in by_joint.values() for i in range(len(v) - 1)]
    if args.max_pairs is not None:
        pairs = pairs[:args.max_pairs]
    jsn, consensus = [], []
    for a, b in pairs:
        res_a, classical_a = results[id(a)]
        res_b, _ = results[id(b)]
        kw = {"segmenter": "classical"}
        m_true = measure(a.image, b.image, baseline_labels=a.labels, **kw)
        m_net = measure(a.image, b.image, baseline_labels=res_a.labels, **kw)
        m_cls = measure(a.image, b.image, baseline_labels=labels_from_line(classical_a, a.image.shape), **kw)
        # As `measure` runs without labels: both visits' labels, both directions averaged, each
        # visit's network joint centre as the anchor.
        anchors = {} if res_a.jsw is None or res_b.jsw is None else {
            "point": res_a.jsw.centre_px, "followup_point": res_b.jsw.centre_px}
        s_true = measure(a.image, b.image, baseline_labels=a.labels, followup_labels=b.labels, **anchors, **kw)
        s_net = measure(a.image, b.image, baseline_labels=res_a.labels, followup_labels=res_b.labels, **anchors, **kw)
        jsw_change_true = joint_space_width(a.upper, a.lower).mean_px - joint_space_width(b.upper, b.lower).mean_px
        jsw_change_net = (res_a.jsw.mean_px - res_b.jsw.mean_px) if res_a.jsw and res_b.jsw else math.nan
        # The reference's own reproducibility: the other visit's annotation (and the network's
        # masks of the other visit), carried into this visit's frame by each bone's motion.
        up_b, lo_b = carry_masks(b.upper, b.lower, m_true)
        c0, c1 = joint_space_width(a.upper, a.lower).columns
        cols = np.arange(c0, c1 + 1)
        ref_gap = surface_gap(up_b, lo_b, a.upper, a.lower, cols)
        net_gap = surface_gap(*carry_masks(res_b.upper_mask, res_b.lower_mask, m_true), res_a.upper_mask,
                              res_a.lower_mask, cols)
        m_other = measure(a.image, b.image, baseline_labels=labels_from_masks(up_b, lo_b), **kw)
        jsn.append({"joint": a.joint, "joint_id": a.joint_id, "true": m_true.narrowing_px,
                    "surface_network_upper_px": metrics[id(a)]["surface_upper_px"],
                    "surface_network_lower_px": metrics[id(a)]["surface_lower_px"], "network": m_net.narrowing_px,
                    "other_annotation": m_other.narrowing_px,
                    "surface_ref_upper_px": ref_gap[0], "surface_ref_lower_px": ref_gap[1],
                    "surface_net_upper_px": net_gap[0], "surface_net_lower_px": net_gap[1],
                    "classical": m_cls.narrowing_px, "reliable_true": m_true.reliable,
                    "sym_true": s_true.narrowing_px, "sym_network": s_net.narrowing_px,
                    "sym_reliable_true": s_true.reliable,
                    "se_true": m_true.narrowing_se_px,
                    "jsw_change_true": jsw_change_true, "jsw_change_network": jsw_change_net})
    header = ["joint", "pairs", "RMS network - true (px)", "max |network - true| (px)",
              "RMS classical - true (px)", "max |classical - true| (px)"]
    table = []
    for name in (*JOINTS, "all"):
        g = [p for p in jsn if name in ("all", p["joint"])]
        if not g:
            continue
        dn = [p["network"] - p["true"] for p in g]
        dc = [p["classical"] - p["true"] for p in g]
        table.append([name, len(g), _rms(dn), float(np.max(np.abs(dn))), _rms(dc), float(np.max(np.abs(dc)))])
    print(f"\n## Effect on JSN: {len(jsn)} real visit pairs of validation joints, labels from the network "
          "(or the classical line) vs labels from the true masks\n")
    print(markdown_table(header, table))
    rel = [p for p in jsn if p["reliable_true"]]
    if rel:
        print(f"\nreliable pairs only (true labels; {len(rel)}): RMS network - true "
              f"{_rms([p['network'] - p['true'] for p in rel]):.3f} px, classical - true "
              f"{_rms([p['classical'] - p['true'] for p in rel]):.3f} px")
    if jsn:
        sym = [p["sym_network"] - p["sym_true"] for p in jsn]
        sym_rel = [p["sym_network"] - p["sym_true"] for p in jsn if p["sym_reliable_true"]]
        print(f"symmetric (both visits' labels, network anchors): RMS network - true {_rms(sym):.3f} px, "
              f"{_rms(sym_rel):.3f} px on the {len(sym_rel)} pairs reliable with true labels")
        print_reference_reproducibility(jsn)
        consensus = consensus_comparison(by_joint, results)
        print_consensus(consensus)
        d_true = np.array([p["jsw_change_true"] - p["true"] for p in jsn])
        d_net = np.array([p["jsw_change_network"] - p["true"] for p in jsn])
        print(f"JSW change - registration narrowing (true labels): true masks RMS {_rms(d_true):.3f} px, "
              f"network masks RMS {_rms(d_net):.3f} px (max |.| {np.nanmax(np.abs(d_net)):.2f} px)")

    # -- speed and size --------------------------------------------------------------------------
    img = crops[0].image
    s = config.input_size
    ms_predict = ms(lambda: predict_masks(img, model), 30)
    ms_segment = ms(lambda: segment(img, model=model), 30)
    ms_classical = ms(lambda: joint_space_line(img), 10)
    ours_params = sum(p.numel() for p in raw_model.parameters())
    ours_macs = conv_macs(raw_model, (1, 1, s, s))
    paper = paper_standin()
    paper_params = sum(p.numel() for p in paper.parameters())
    paper_macs = conv_macs(paper, (1, 1, 224, 224))
    x224 = torch.zeros(1, 1, 224, 224)
    paper_ms = ms(lambda: paper.eval()(x224), 3, warm=1)
    hist = ckpt.get("history", [])
    train_min = sum(h["seconds"] for h in hist) / 60.0 if hist else math.nan
    print("\n## Speed and size (one 256x256 crop, 2 threads)\n")
    print(markdown_table(
        ["model", "input", "parameters", "GMACs", "ms per crop"],
        [[f"jsnq UNet++ {tuple(config.features)}", f"{s}x{s}", f"{ours_params / 1e6:.2f} M", ours_macs / 1e9,
          f"{ms_predict:.1f} (probabilities), {ms_segment:.1f} (segment: + masks, labels, line, JSW)"],
         ["paper's UNet++ (estimate: 7x7 64-ch stem + UNet++ 32-512, 5 levels)", "224x224",
          f"{paper_params / 1e6:.2f} M", paper_macs / 1e9, f"{paper_ms:.0f} (forward only)"],
         ["classical joint-space line", "256x256", "–", "–", f"{ms_classical:.1f}"]]))
    print(f"\ntraining: {len(hist)} epochs, {train_min:.1f} min (sum of epoch times in the checkpoint)")

    # -- targets ---------------------------------------------------------------------------------
    jsn_rms = _rms([p["network"] - p["true"] for p in jsn]) if jsn else math.nan
    surf = max(_mean(per_crop, "surface_upper_px"), _mean(per_crop, "surface_lower_px"))
    print("\n## Targets\n")
    print(markdown_table(["metric", "target", "measured", "met"], [
        ["DSC upper", f">= {TARGETS['dsc']}", dsc_u, dsc_u >= TARGETS["dsc"]],
        ["DSC lower", f">= {TARGETS['dsc']}", dsc_l, dsc_l >= TARGETS["dsc"]],
        ["facing-surface error (px, worse bone)", f"<= {TARGETS['surface_px']}", surf, surf <= TARGETS["surface_px"]],
        ["JSN RMS network vs true labels (px)", f"<= {TARGETS['jsn_rms_px']}", jsn_rms,
         jsn_rms <= TARGETS["jsn_rms_px"]],
        ["ms per crop (segment)", f"<= {TARGETS['ms']}", ms_segment, ms_segment <= TARGETS["ms"]],
        ["training (min)", f"<= {TARGETS['train_min']}", train_min, train_min <= TARGETS["train_min"]],
    ]))
    if args.json is not None:
        args.json.write_text(json.dumps({"crops": per_crop, "jsn": jsn, "consensus": consensus, "excluded": excluded,
                                         "ms_predict": ms_predict, "ms_segment": ms_segment,
                                         "ms_classical": ms_classical, "params": ours_params, "macs": ours_macs,
                                         "paper_params": paper_params, "paper_macs": paper_macs,
                                         "paper_ms": paper_ms, "train_min": train_min}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
