"""Whole-hand measurement: per-joint-type accuracy, crop placement, the RA hand-pair, timing.

Tables printed (markdown):

1. **Accuracy per joint type with known synthetic motions.** Crops of MCP, PIP, DIP and IP
   joints cut by jsnq's crop cutter from atlas hands (../shared/data/hand-landmarks, at their
   true landmarks), a follow-up synthesised by moving each bone side by a known similarity
   (:func:`benchmarks.common.synthesise`: common rotation up to +-10 deg, scale +-10 %, shift
   +-10 px, narrowing up to +-1 px, exposure change, 1 % noise), measured as ``measure_hand``
   measures a joint (:func:`jsnq.hand.measure.measure_joint`: network segmentation with its
   check, the classical line as the flagged fallback). The side labels that move the bones
   come from the network's masks where it passes the check, else from the classical line.
   Also per type: how often the network's segmentation passes (JSW > 0 at both visits, split
   line near the crop centre).
2. **Crop placement.** Residual common shift between the two visits' crops after the
   follow-up's box is registered: on the hand phantom against the true bone motions (follow-up
   landmarks perturbed by up to +-1.5 mm), on the hand-pair as the common motion that the
   per-bone registration still finds at the joint centre.
3. **hand-pair, both visit orders** (my annotation, benchmarks/data/hand-pair-joint-annotation.csv,
   gives the Hands): per joint narrowing, SE, reliable, reasons; swapped-order negation.
4. **Timing**: ``measure_hand`` end to end on a two-visit phantom hand and on the hand-pair
   (median of ``--repeats`` runs, joints given; the locator is timed by its own benchmark).

Usage::

    python benchmarks/hand.py             # full (about 30 min on 2 busy cores)
    python benchmarks/hand.py --quick     # fewer atlas hands and cases
    python benchmarks/hand.py --json out.json
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (DATA, RA_IMAGES, Condition, Crop, atlas_landmarks, machine, markdown_table,  # noqa: E402
                               ra_annotation, synthesise)
from jsnq.config import MeasureConfig  # noqa: E402
from jsnq.geometry import symmetric_narrowing_px  # noqa: E402
from jsnq.hand.anatomy import joint_type  # noqa: E402
from jsnq.hand.crops import JointCrops, baseline_box, cut, hand_scale_px_per_mm, joint_crops, joint_zoom  # noqa: E402
from jsnq.hand.landmarks import hand_from_points  # noqa: E402
from jsnq.hand.checks import SplitStatus  # noqa: E402
from jsnq.hand.measure import measure_hand, measure_joint, joint_centre  # noqa: E402
from jsnq.hand.types import JOINT_NAMES  # noqa: E402
from jsnq.io import load_image  # noqa: E402
from jsnq.phantom import make_hand  # noqa: E402
from jsnq.labels import labels_from_line  # noqa: E402
from jsnq.segment.classical import joint_space_line  # noqa: E402
from jsnq.segment.network import segment  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TYPES = ("MCP", "PIP", "DIP", "IP")


def atlas_hands(n: int, seed: int = 0):
    """``n`` atlas images (reproducible choice) with their Hands from the true landmarks."""
    rows = atlas_landmarks()
    pick = np.random.default_rng(seed).choice(len(rows), size=min(n, len(rows)), replace=False)
    for i in sorted(pick):
        image, pts = rows[i]
        im = load_image(DATA / "hand-landmarks" / image)
        yield im, hand_from_points(pts, side="L", shape=im.array.shape, source=image)


def baseline_crop(im, hand, joint):
    """The crop at the true landmark, not re-centred by the network: these are children's
    hands, whose growth plates the network takes for joint spaces (docs/hand.md)."""
    s = hand_scale_px_per_mm(hand)
    box = baseline_box(hand.joints[joint], joint_zoom(hand, joint, scale_px_per_mm=s), scale_px_per_mm=s,
                       source=hand.source, spacing_mm=None)
    return box, cut(im.array, box)


def accuracy(n_hands: int, cases_per_joint: int, rng: np.random.Generator):
    cond = Condition("noise 1 %", 0.01)
    per: dict[str, dict[str, list]] = {t: {"err": [], "se": [], "reliable": [], "seg_ok": [], "fallback_err": [], "jsw_failed_err": [],
                                          "jsw_pos": [], "split_ok": []} for t in TYPES}
    for im, hand in atlas_hands(n_hands):
        for joint in JOINT_NAMES:
            t = joint_type(joint)
            try:
                box, crop = baseline_crop(im, hand, joint)
            except ValueError:
                continue
            img = (crop - crop.min()) / max(float(crop.max() - crop.min()), 1e-6)
            try:
                seg = segment(img)
                ok = seg.jsw is not None and seg.jsw.mean_px > 0
                per[t]["jsw_pos"].append(bool(ok))
                mid = seg.line[64:192]
                split_ok = bool(np.isfinite(mid).any() and abs(np.nanmedian(mid) - 127.5) <= 0.15 * 256)
                per[t]["split_ok"].append(split_ok)
                upper, lower = (seg.upper_mask, seg.lower_mask) if split_ok else (None, None)
            except ValueError:
                per[t]["jsw_pos"].append(False)
                per[t]["split_ok"].append(False)
                upper = lower = None
            if upper is None:  # the sides that move: the classical line
                lab = labels_from_line(joint_space_line(img), img.shape)
                upper, lower = lab == 1, lab == 2
            c = Crop(f"{hand.source}:{joint}", joint, img.astype(np.float64), upper, lower)
            for _ in range(cases_per_joint):
                case = synthesise(c, cond, rng)
                crops = JointCrops(joint, (box, box), (case.baseline.astype(np.float32), case.followup.astype(np.float32)))
                try:
                    m, status = measure_joint(crops, MeasureConfig())
                except ValueError:
                    per[t]["err"].append(float("nan"))
                    continue
                truth = symmetric_narrowing_px(case.upper, case.lower, m.point_px, m.followup_point_px)
                err = m.narrowing_px - truth
                per[t]["seg_ok"].append(status.status is SplitStatus.NETWORK)
                if status.status is SplitStatus.NETWORK:
                    per[t]["err"].append(err)
                elif status.status is SplitStatus.NETWORK_FAILED:
                    per[t]["jsw_failed_err"].append(err)
                else:
                    per[t]["fallback_err"].append(err)
                per[t]["se"].append(m.narrowing_se_px)
                per[t]["reliable"].append(m.reliable)
    rows = []
    for t in TYPES:
        d = per[t]
        e = np.array(d["err"], float)
        e = e[np.isfinite(e)]
        fe = np.array(d["fallback_err"], float)
        je = np.array(d["jsw_failed_err"], float)
        rows.append([t, len(d["jsw_pos"]), f"{np.mean(d['jsw_pos']):.0%}" if d["jsw_pos"] else "-",
                     f"{np.mean(d['split_ok']):.0%}" if d["split_ok"] else "-",
                     f"{np.mean(d['seg_ok']):.0%}" if d["seg_ok"] else "-",
                     len(e), f"{np.mean(e):+.3f}" if e.size else "-", f"{np.std(e):.3f}" if e.size else "-",
                     f"{np.sqrt(np.mean(e ** 2)):.3f}" if e.size else "-",
                     f"{np.median(d['se']):.3f}" if d["se"] else "-",
                     f"{np.sqrt(np.mean(je ** 2)):.3f} ({je.size})" if je.size else "-",
                     f"{np.sqrt(np.mean(fe ** 2)):.3f} ({fe.size})" if fe.size else "-",
                     f"{np.mean(d['reliable']):.0%}" if d["reliable"] else "-"])
    return rows, per


def phantom_residuals(seeds):
    out = {t: [] for t in TYPES}
    for seed in seeds:
        ph = make_hand(seed, n_visits=2)
        rng = np.random.default_rng(seed)
        import dataclasses

        noisy = {n: dataclasses.replace(j, x=j.x + rng.uniform(-6, 6), y=j.y + rng.uniform(-6, 6),
                                        axis_deg=j.axis_deg + rng.uniform(-3, 3))
                 for n, j in ph.hands[1].joints.items()}
        hands = [ph.hands[0], dataclasses.replace(ph.hands[1], joints=noisy)]
        for joint in JOINT_NAMES:
            crops = joint_crops(ph.images, hands, joint, centre_finder=joint_centre)
            b0, b1 = crops.boxes
            up, lo = ph.joint_motions(joint, 1)
            inv = b1.transform().inverse()
            u, l_ = inv.compose(up).compose(b0.transform()), inv.compose(lo).compose(b0.transform())
            c = np.array([127.5, 127.5])
            r = 0.5 * (u.apply(c) + l_.apply(c)) - c
            out[joint_type(joint)].append(float(np.hypot(*r)))
    return out


def hand_pair_hands():
    ims = [load_image(DATA / "hand-pair" / name) for name in RA_IMAGES]
    pts = ra_annotation()
    return ims, [hand_from_points(p, side="L", shape=im.array.shape, source=im.source) for p, im in zip(pts, ims)]


def annotation_rows():
    from jsnq.hand.crops import CropBox

    ims, _ = hand_pair_hands()
    rows = []
    with open(REPO / "benchmarks" / "data" / "hand-pair-crop-annotation.csv") as fh:
        for r in csv.DictReader(line for line in fh if not line.startswith("#")):
            box = CropBox(r["joint"], 0, ims[0].source, (float(r["box_x"]), float(r["box_y"])), float(r["box_angle_deg"]),
                          float(r["box_zoom"]), (256, 256), None, "annotation")
            crop = cut(ims[0].array, box)
            seg = segment(crop)
            line = joint_space_line(crop)
            rows.append([r["joint"], float(r["gap_row"]), f"{np.nanmean(seg.line[127:129]):.1f}",
                         f"{np.nanmean(line[127:129]):.1f}", float(r["gap_width_px"]),
                         f"{seg.jsw.mean_px:.1f}" if seg.jsw is not None else "-"])
    return rows


def repeatability_rows(joints):
    """Each joint's hand-pair crops, both boxes moved by the same (+-3, 0) and (0, +-3) crop
    px, measured again: how much the hybrid narrowing depends on where the crops lie."""
    import dataclasses

    ims, hands = hand_pair_hands()
    hm = measure_hand(ims[0], ims[1], hands=hands, joints=joints)
    rows = []
    for name in joints:
        if name not in hm.crops:
            rows.append([name, "-", "-", "-", "-", hm.errors.get(name, "")[:60]])
            continue
        boxes = hm.crops[name].boxes
        values, reliable, status = [], [], []
        for d in ((0, 0), (3, 0), (-3, 0), (0, 3), (0, -3)):
            moved = []
            for box in boxes:
                c = box.to_image(np.array([127.5 + d[0], 127.5 + d[1]]))
                moved.append(dataclasses.replace(box, centre_xy=(float(c[0]), float(c[1]))))
            crops = JointCrops(name, tuple(moved), tuple(cut(im.array, b) for im, b in zip(ims, moved)))
            m, st = measure_joint(crops, MeasureConfig())
            values.append(m.narrowing_px)
            reliable.append(m.reliable)
            status.append(st.status.value)
        v = np.array(values)
        rows.append([name, f"{v[0]:+.3f}", f"{np.std(v[1:], ddof=1):.3f}", f"{np.max(np.abs(v[1:] - v[0])):.3f}",
                     f"{sum(reliable)}", ", ".join(sorted(set(status)))])
    return rows


def common_shift(m) -> float:
    """The common motion of the two bones at the joint centre (crop px): what the crop
    placement left for the per-bone registration."""
    c = np.asarray(m.point_px, float)
    r = 0.5 * (m.upper_transform.apply(c) + m.lower_transform.apply(c)) - c
    return float(np.hypot(*r))


def fmt(v, spec="+.3f"):
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip", default="", help="comma-separated sections to skip: accuracy,residual,pair,timing")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    out: dict = {"machine": machine(), "load_average": os.getloadavg()}
    print(f"machine: {out['machine']}; load average at start {out['load_average'][0]:.1f}\n")

    if "accuracy" not in skip:
        n_hands, cases = (2, 1) if args.quick else (6, 2)
        rows, per = accuracy(n_hands, cases, np.random.default_rng(0))
        print(f"## Accuracy per joint type: atlas crops ({n_hands} hands, true landmarks), known synthetic motions, "
              "1 % noise (crop px)\n")
        print(markdown_table(["type", "crops", "network JSW > 0", "split line near centre", "check passed",
                              "cases (network)", "mean error", "SD", "RMS", "median SE", "RMS error, network labels with "
                              "JSW failed (cases)", "RMS error, classical fallback (cases)", "reliable"], rows))
        out["accuracy"] = rows

    if "residual" not in skip:
        seeds = (0,) if args.quick else (0, 1, 2)
        res = phantom_residuals(seeds)
        print("\n## Crop placement: residual common shift between the visits' crops (crop px)\n")
        rows = [[f"phantom ({len(seeds)} hands), {t}", len(v), f"{np.median(v):.3f}", f"{np.max(v):.3f}"]
                for t, v in res.items() if v]
        out["residual_phantom"] = {t: v for t, v in res.items()}
        print(markdown_table(["set", "joints", "median", "max"], rows))

    if "pair" not in skip and (DATA / "hand-pair").is_dir():
        ims, hands = hand_pair_hands()
        fwd = measure_hand(ims[0], ims[1], hands=hands)
        bwd = measure_hand(ims[1], ims[0], hands=hands[::-1])
        rows = []
        for name in JOINT_NAMES:
            a, b = fwd.joints.get(name), bwd.joints.get(name)
            rows.append([name, fmt(a.narrowing_px if a else None), fmt(a.narrowing_se_px if a else None, ".3f"),
                         "yes" if a and a.reliable else "no", fmt(-b.narrowing_px if b else None),
                         "yes" if b and b.reliable else "no",
                         fmt((a.narrowing_px + b.narrowing_px) if a and b else None),
                         fmt(common_shift(a) if a else None, ".2f"),
                         str(fwd.segmentation.get(name) or fwd.errors.get(name, ""))[:60],
                         "; ".join(a.reasons)[:90] if a else fwd.errors.get(name, "")[:90]])
        print("\n## hand-pair: both visit orders (crop px; my annotation gives the Hands)\n")
        print(markdown_table(["joint", "narrowing 0→1", "SE", "reliable", "−narrowing 1→0", "reliable",
                              "sum (0 = negates)", "common shift left", "segmentation", "reasons"], rows))
        out["hand_pair"] = rows
        out["hand_pair_dict"] = fwd.to_dict()

    if "annotation" not in skip and (DATA / "hand-pair").is_dir():
        print("\n## hand-pair crops against my annotation (benchmarks/data/hand-pair-crop-annotation.csv)\n")
        rows = annotation_rows()
        print(markdown_table(["joint", "my gap row", "network split row", "classical line row", "my width",
                              "network JSW"], rows))
        out["annotation"] = rows

    if "repeatability" not in skip and (DATA / "hand-pair").is_dir():
        rows = repeatability_rows(("MCP4", "MCP5", "PIP3", "DIP4"))
        print("\n## hand-pair: narrowing under common shifts of both crops by 3 px (crop px)\n")
        print(markdown_table(["joint", "at the placed boxes", "SD over the 4 shifts", "max |change|",
                              "reliable (of 5)", "segmentation"], rows))
        out["repeatability"] = rows

    if "timing" not in skip:
        ph = make_hand(0, n_visits=2)
        t_ph = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            measure_hand(ph.images[0], ph.images[1], spacing_mm=ph.spacing_mm, hands=ph.hands[:2])
            t_ph.append(time.perf_counter() - t0)
        rows = [["phantom hand, 14 joints, 2 visits", f"{np.median(t_ph):.1f}", ", ".join(f"{t:.1f}" for t in t_ph)]]
        if (DATA / "hand-pair").is_dir():
            ims, hands = hand_pair_hands()
            t_hp = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                measure_hand(ims[0], ims[1], hands=hands)
                t_hp.append(time.perf_counter() - t0)
            rows.append(["hand-pair, 14 joints", f"{np.median(t_hp):.1f}", ", ".join(f"{t:.1f}" for t in t_hp)])
        print(f"\n## Timing (s, joints given; load average now {os.getloadavg()[0]:.1f})\n")
        print(markdown_table(["case", "median", "runs"], rows))
        out["timing"] = rows
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
