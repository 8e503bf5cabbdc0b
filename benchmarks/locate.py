"""Accuracy and speed of the finger-joint locator (:func:`jsnq.hand.locate.find_joints`).

1. The held-out Digital Hand Atlas hands (the validation hands stored in the weights' split;
   never seen in training), as given (left hands) and mirrored (right hands): radial error in
   mm by the wrist-width convention (carpal01-carpal05 = 50 mm, Payer et al.), % within 2 and
   4 mm (all joints; MCP, PIP and IP; DIP), name swaps (a prediction closer to another joint's
   truth than to its own), % missing, side accuracy.
2. The adult RA hand-pair against both annotations of its 14 joints at both visits
   (``benchmarks/data/hand_pair_joints.csv``, the locate helper's, and
   ``hand-pair-joint-annotation.csv``, the distal bones' bases): error in pixels and whether
   within 20 px; then where ``jsnq hand`` places each joint (its reading point on the joint
   line, ``point<k>_x/_y``) against the first, with each unreliable joint's reason codes.
3. Time per hand: median over repeated runs of ``find_joints`` on an array already in memory,
   and on the file path (reading and decoding the JPEG included).

Usage::

    PYTHONPATH=src python benchmarks/locate.py [--weights FILE] [--repeats 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from jsnq.errors import JsnqInputError
from jsnq.hand.locate import find_joints
from jsnq.networks import shipped_weights
from jsnq.hand.network import fuse_for_inference, load_locator
from jsnq.hand.types import JOINT_NAMES
from jsnq.io import load_image
from jsnq.training.locate import read_landmarks

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import data_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GROUPS = {"all": JOINT_NAMES, "MCP/PIP/IP": tuple(n for n in JOINT_NAMES if not n.startswith("DIP")),
          "DIP": tuple(n for n in JOINT_NAMES if n.startswith("DIP"))}
HAND_PAIR_TOLERANCE_PX = 20.0


def atlas(model, val_ids: list[str], folder: Path, *, mirror: bool) -> dict:
    paths, pts, wrist = read_landmarks(folder, JOINT_NAMES)
    keep = [i for i, p in enumerate(paths) if p.stem in set(val_ids)]
    errs = {n: [] for n in JOINT_NAMES}
    swaps, missing, side_ok, no_hand = [], 0, 0, 0
    for i in keep:
        a = load_image(paths[i]).array
        truth = pts[i].copy()
        if mirror:
            a = np.ascontiguousarray(a[:, ::-1])
            truth[:, 0] = a.shape[1] - 1 - truth[:, 0]
        mm_px = 50.0 / float(np.linalg.norm(wrist[i, 0] - wrist[i, 1]))
        try:
            hand = find_joints(a, model=model)
        except JsnqInputError:
            no_hand += 1
            missing += len(JOINT_NAMES)
            continue
        side_ok += hand.side == ("R" if mirror else "L")
        for k, n in enumerate(JOINT_NAMES):
            if n not in hand.joints:
                missing += 1
                continue
            j = hand.joints[n]
            d = np.hypot(truth[:, 0] - j.x, truth[:, 1] - j.y)
            errs[n].append(d[k] * mm_px)
            if int(np.argmin(d)) != k:
                swaps.append(f"{paths[i].stem}:{n}->{JOINT_NAMES[int(np.argmin(d))]}")
    return {"errs": errs, "swaps": swaps, "missing": missing, "total": len(keep) * len(JOINT_NAMES),
            "side_ok": side_ok, "hands": len(keep), "no_hand": no_hand}


def print_atlas(title: str, r: dict) -> None:
    print(f"\n{title}: {r['hands']} held-out hands")
    print(f"  {'joints':<11} {'n':>4} {'mean mm':>8} {'median':>7} {'max':>6} {'<=2 mm':>7} {'<=4 mm':>7}")
    for g, names in GROUPS.items():
        e = np.concatenate([r["errs"][n] for n in names if r["errs"][n]] or [np.zeros(0)])
        if not len(e):
            print(f"  {g:<11} {0:>4}")
            continue
        print(f"  {g:<11} {len(e):>4} {e.mean():>8.2f} {np.median(e):>7.2f} {e.max():>6.2f} "
              f"{100 * (e <= 2).mean():>6.1f}% {100 * (e <= 4).mean():>6.1f}%")
    print(f"  name swaps: {len(r['swaps'])} {' '.join(r['swaps'])}")
    print(f"  missing: {r['missing']} of {r['total']} ({100 * r['missing'] / max(1, r['total']):.1f} %); "
          f"'no hand found': {r['no_hand']}")
    print(f"  side right: {r['side_ok']} of {r['hands']}")


def _annotation_rows() -> tuple[list[dict], list[dict]]:
    """Both annotations of the hand-pair as ``image, joint, x, y`` rows: the locate helper's
    (``hand_pair_joints.csv``: PIP/DIP/IP1 moved 8 px proximally, the atlas's convention there)
    and the measure helper's (``hand-pair-joint-annotation.csv``: the distal bone's base)."""
    data = REPO / "benchmarks" / "data"
    mine = list(csv.DictReader((data / "hand_pair_joints.csv").open()))
    images = sorted({r["image"] for r in mine})
    lines = [ln for ln in (data / "hand-pair-joint-annotation.csv").open() if not ln.lstrip().startswith("#")]
    base = [{"image": images[int(r["visit"])], "joint": r["joint"], "x": r["x"], "y": r["y"]}
            for r in csv.DictReader(lines) if r["joint"] in JOINT_NAMES]
    return mine, base


def hand_pair(model, folder: Path) -> None:
    mine, base = _annotation_rows()
    images = sorted({r["image"] for r in mine})
    hands = {img: find_joints(folder / img, model=model) for img in images}
    located = {img: {n: (j.x, j.y) for n, j in h.joints.items()} for img, h in hands.items()}
    for title, rows in (("the locate helper's annotation, hand_pair_joints.csv", mine),
                        ("the distal bones' bases, hand-pair-joint-annotation.csv", base)):
        _hand_pair_table(located, rows, f"located; {title}")
    for img, h in hands.items():
        print(f"  {img}: side {h.side}, found {len(h.joints)} of 14, missing {dict(h.missing) or '-'}")
    # where `jsnq hand` places each joint: the reading point on the joint line (point<k>_x/_y)
    from jsnq.hand.measure import measure_hand

    result = measure_hand(*(folder / img for img in images), hands=[hands[img] for img in images])
    placed = {img: {} for img in images}
    flags = {}
    for r in result.rows():
        flags[r["joint"]] = "" if r["reliable"] else (r["codes"] or "not measured")
        for k, img in enumerate(images):
            if r.get(f"point{k}_x") is not None:
                placed[img][r["joint"]] = (r[f"point{k}_x"], r[f"point{k}_y"])
    _hand_pair_table(placed, mine, "placed by jsnq hand (the reading point); the locate helper's annotation", flags)


def _hand_pair_table(found: dict, rows: list[dict], title: str, flags: dict | None = None) -> None:
    """Distances of ``found[image][joint] = (x, y)`` from the annotation ``rows``; ``flags``:
    joint -> why it is not reliable (printed beside)."""
    print(f"\nhand-pair (adult RA left hand, two visits; {title}; tolerance {HAND_PAIR_TOLERANCE_PX:g} px)")
    images = sorted({r["image"] for r in rows})
    truth = {img: {r["joint"]: (float(r["x"]), float(r["y"])) for r in rows if r["image"] == img} for img in images}
    print(f"  {'joint':<6}" + "".join(f" {img[9:17]:>18}" for img in images))
    ok_all = 0
    for n in JOINT_NAMES:
        cells = []
        for img in images:
            if n not in found[img]:
                cells.append(f"{'missing':>18}")
                continue
            x, y = found[img][n]
            e = math.hypot(x - truth[img][n][0], y - truth[img][n][1])
            ok = e <= HAND_PAIR_TOLERANCE_PX
            ok_all += ok
            cells.append(f"{e:>9.1f} px {'ok' if ok else 'FAR':>4} ")
        note = f"  {flags[n]}" if flags and flags.get(n) else ""
        print(f"  {n:<6}" + "".join(f" {c}" for c in cells) + note)
    print(f"  within {HAND_PAIR_TOLERANCE_PX:g} px and named right: {ok_all} of {14 * len(images)}")


def timing(model, path: Path, repeats: int) -> None:
    a = load_image(path).array
    find_joints(a, model=model)
    t_arr, t_path = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        find_joints(a, model=model)
        t_arr.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        find_joints(path, model=model)
        t_path.append(time.perf_counter() - t0)
    print(f"\ntime per hand ({path.name}, {a.shape[1]}x{a.shape[0]} px; {repeats} runs; {platform.machine()} "
          f"{platform.processor() or ''} {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads):")
    print(f"  array in memory: median {statistics.median(t_arr) * 1000:.0f} ms (min {min(t_arr) * 1000:.0f})")
    print(f"  from the file:   median {statistics.median(t_path) * 1000:.0f} ms (min {min(t_path) * 1000:.0f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="locator checkpoint (default: the shipped weights)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", default="", help="comma-separated sections to skip: atlas,pair,timing")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = data_dir("hand-landmarks/landmarks.csv")
    model, _, ckpt = load_locator(args.weights or shipped_weights("locate"))
    model = fuse_for_inference(model)
    val_ids = list(ckpt["config"]["split"]["validation_hands"])
    folder = root / "hand-landmarks"
    print(f"weights: {args.weights or 'shipped'}; held-out hands: {' '.join(val_ids)}")
    skip = set(filter(None, args.skip.split(",")))
    if "atlas" not in skip:
        print_atlas("atlas, as given (left hands)", atlas(model, val_ids, folder, mirror=False))
        print_atlas("atlas, mirrored (right hands)", atlas(model, val_ids, folder, mirror=True))
    if "pair" not in skip:
        hand_pair(model, root / "hand-pair")
    if "timing" not in skip:
        timing(model, folder / f"{val_ids[0]}.jpg", args.repeats)


if __name__ == "__main__":
    main()
