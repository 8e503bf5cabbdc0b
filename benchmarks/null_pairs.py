"""Null pairs: a whole-hand radiograph against itself, moved rigidly, with white noise.

Truth: no narrowing anywhere. Each pair is the radiograph (with its own noise) against the
same radiograph rotated by a few degrees about its centre and shifted by a few px
(:func:`null_pair`: ``scipy.ndimage.affine_transform``, cubic spline), with new noise, run
through the whole of :func:`jsnq.measure_hand` (locator, placement, segmentation check,
registration). Printed per joint type: the share of joints measured, the share trusted
(``reliable``), |narrowing / SE| (max and RMS over measured joints, truth 0), the largest
|narrowing| (crop px), the reasons for joints not measured, and the time per pair.

Sources: the adult RA hand-pair's two visits (joints from the locator), and atlas hands
(``hand-landmarks``, children; joints from their landmarks, carried into the moved image by
the same rigid motion, or from the locator with ``--atlas-joints locator``).

The generator is importable (``from benchmarks.null_pairs import null_pair, rigid_motion``)
so that other benchmarks can build the same pairs.

Usage::

    python benchmarks/null_pairs.py                   # RA visits + 6 atlas hands, 1 pair each
    python benchmarks/null_pairs.py --atlas 8 --pairs 2 --json out.json
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
from scipy import ndimage  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, markdown_table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("JSNQ_DATA", REPO.parent / "shared" / "data"))
TYPES = ("MCP", "PIP", "DIP", "IP")
#: Noise SD as a fraction of the radiograph's intensity range (0.5-99.5 percentiles).
NOISE = 0.01


def rigid_motion(shape: tuple[int, int], angle_deg: float, shift_px: tuple[float, float]):
    """The rigid motion about the image centre as ``(matrix, offset)`` for
    :func:`scipy.ndimage.affine_transform` (output ``[row, col]`` -> input ``[row, col]``), and
    the forward map of points ``(x, y)`` of the input to the moved image."""
    c = (np.asarray(shape, dtype=float) - 1) / 2.0
    a = math.radians(angle_deg)
    # forward, in (row, col): p' = R (p - c) + c + t; the image is rotated clockwise on screen
    # for a positive angle (x right, y down)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    t = np.array([shift_px[1], shift_px[0]], dtype=float)  # (dy, dx)
    inv = rot.T
    offset = c - inv @ (c + t)

    def forward(xy):
        p = np.asarray(xy, dtype=float)[..., ::-1]  # (row, col)
        q = (p - c) @ rot.T + c + t
        return q[..., ::-1]

    return inv, offset, forward


def add_noise(image: np.ndarray, rng: np.random.Generator, noise: float = NOISE) -> np.ndarray:
    """``image`` (float64) plus white Gaussian noise of SD ``noise`` x its 0.5-99.5 % range."""
    a = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(a[::4, ::4], (0.5, 99.5))
    return a + rng.normal(0.0, noise * float(hi - lo), a.shape)


def null_pair(image: np.ndarray, rng: np.random.Generator, angle_deg: float = 2.0,
              shift_px: tuple[float, float] = (3.0, -2.0), noise: float = NOISE) -> np.ndarray:
    """The moved image of a null pair: ``image`` rotated by ``angle_deg`` about its centre and
    shifted by ``shift_px`` (x, y), cubic spline (order 3, edges continued), plus white noise
    of SD ``noise`` x the intensity range. Add noise to the baseline too (:func:`add_noise`)."""
    a = np.asarray(image, dtype=np.float64)
    inv, offset, _ = rigid_motion(a.shape, angle_deg, shift_px)
    moved = ndimage.affine_transform(a, inv, offset=offset, order=3, mode="nearest")
    return add_noise(moved, rng, noise)


def draw_motion(rng: np.random.Generator, max_angle: float = 3.0, max_shift: float = 5.0):
    """A few degrees (|angle| >= 1) and a few px."""
    angle = float(rng.uniform(1.0, max_angle)) * float(rng.choice([-1.0, 1.0]))
    shift = tuple(float(v) for v in rng.uniform(-max_shift, max_shift, 2))
    return angle, shift


def atlas_sources(n: int, seed: int = 0):
    """``n`` atlas images (reproducible choice: the locator's held-out hands first) with their
    landmark points."""
    from jsnq.io import load_image

    with open(DATA / "hand-landmarks" / "landmarks.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    held = ("3143", "3150", "3154", "3161", "3171", "3237", "3239", "3269", "3273", "3758", "3773", "3819")
    order = [i for i, r in enumerate(rows) if Path(r["image"]).stem in held]
    rest = [i for i in range(len(rows)) if i not in order]
    order += list(np.random.default_rng(seed).permutation(rest))
    for i in order[:n]:
        r = rows[i]
        names = {k[:-2] for k in r if k.endswith("_x") and r[k]}
        pts = {k: (float(r[k + "_x"]), float(r[k + "_y"])) for k in names}
        yield r["image"], load_image(DATA / "hand-landmarks" / r["image"]).array, pts


def run_pair(name: str, image: np.ndarray, rng: np.random.Generator, *, points=None, side: str = "L",
             workers: int = 2, max_angle: float = 3.0, max_shift: float = 5.0) -> dict:
    """One null pair through :func:`jsnq.measure_hand`; per-joint rows."""
    from jsnq.errors import JsnqInputError
    from jsnq.hand.landmarks import hand_from_points
    from jsnq.hand.measure import measure_hand
    from jsnq.hand.types import JOINT_NAMES

    angle, shift = draw_motion(rng, max_angle, max_shift)
    a = add_noise(image, rng)
    b = null_pair(image, rng, angle, shift)
    hands = None
    if points is not None:
        _, _, fwd = rigid_motion(image.shape, angle, shift)
        moved = {k: tuple(fwd(np.array(p))) for k, p in points.items()}
        hands = [hand_from_points(points, side=side, shape=image.shape, source=f"{name} (baseline)"),
                 hand_from_points(moved, side=side, shape=image.shape, source=f"{name} (moved)")]
    t0 = time.perf_counter()
    try:
        hm = measure_hand(a, b, hands=hands, workers=workers)
    except JsnqInputError as err:
        return {"source": name, "angle_deg": angle, "shift_px": shift, "failed": str(err), "joints": [],
                "seconds": time.perf_counter() - t0}
    dt = time.perf_counter() - t0
    rows = []
    for j in JOINT_NAMES:
        m = hm.joints.get(j)
        row = {"joint": j, "type": j.rstrip("12345"), "measured": m is not None}
        if m is not None:
            row.update(narrowing_px=m.narrowing_px, se_px=m.narrowing_se_px, z=m.narrowing_px / m.narrowing_se_px,
                       reliable=bool(m.reliable), reasons=list(m.reasons), segmentation=str(hm.segmentation[j]))
        else:
            row.update(error=hm.errors.get(j, "?"))
        rows.append(row)
    return {"source": name, "angle_deg": angle, "shift_px": shift, "seconds": dt, "joints": rows}


def summarise(pairs: list[dict]) -> list[list[str]]:
    table = []
    for t in (*TYPES, "all"):
        rows = [r for p in pairs for r in p["joints"] if t == "all" or r["type"] == t]
        n_fail = sum(14 if t == "all" else (5 if t == "MCP" else 1 if t == "IP" else 4) for p in pairs if "failed" in p)
        n = len(rows) + n_fail
        meas = [r for r in rows if r["measured"]]
        z = np.array([abs(r["z"]) for r in meas]) if meas else np.zeros(0)
        nar = np.array([abs(r["narrowing_px"]) for r in meas]) if meas else np.zeros(0)
        trusted = sum(r["reliable"] for r in meas)
        zt = np.array([abs(r["z"]) for r in meas if r["reliable"]])
        table.append([t, str(n), f"{100 * len(meas) / max(n, 1):.0f}%", f"{100 * trusted / max(n, 1):.0f}%",
                      f"{z.max():.2f}" if len(z) else "-", f"{math.sqrt(np.mean(z ** 2)):.2f}" if len(z) else "-",
                      f"{zt.max():.2f}" if len(zt) else "-", f"{nar.max():.3f}" if len(nar) else "-"])
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atlas", type=int, default=6, help="atlas hands (default 6)")
    ap.add_argument("--pairs", type=int, default=1, help="null pairs per radiograph")
    ap.add_argument("--atlas-joints", choices=("landmarks", "locator"), default="landmarks")
    ap.add_argument("--no-ra", action="store_true", help="skip the RA hand-pair")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the per-joint rows here")
    ap.add_argument("--from-json", default=None, help="only print the tables of a saved --json run")
    args = ap.parse_args()
    header = ["type", "joints", "measured", "trusted", "max abs(err/SE)", "RMS err/SE", "max abs(err/SE), trusted",
              "max abs(err) crop px"]
    if args.from_json:
        print_tables(json.loads(Path(args.from_json).read_text()), header, args.workers)
        return
    import torch

    from jsnq.io import load_image

    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    sources = []
    if not args.no_ra and (DATA / "hand-pair").is_dir():
        for f in sorted((DATA / "hand-pair").glob("IMAGE*.png")):
            sources.append((f.name, load_image(f).array, None, "RA"))
    if args.atlas and (DATA / "hand-landmarks").is_dir():
        for name, arr, pts in atlas_sources(args.atlas, args.seed):
            sources.append((name, arr, pts if args.atlas_joints == "landmarks" else None, "atlas"))
    pairs = []
    for name, arr, pts, group in sources:
        for _ in range(args.pairs):
            p = run_pair(name, arr, rng, points=pts, workers=args.workers)
            p["group"] = group
            pairs.append(p)
            bad = {r["joint"]: r.get("error") for r in p["joints"] if not r["measured"]}
            zs = " ".join(f"{r['joint']}:{r['z']:+.1f}{'' if r['reliable'] else '*'}"
                          for r in p["joints"] if r["measured"])
            print(f"{name}: {p['angle_deg']:+.1f} deg, shift ({p['shift_px'][0]:+.1f}, {p['shift_px'][1]:+.1f}) px, "
                  f"{p['seconds']:.1f} s; {p.get('failed') or ''}\n  z (narrowing/SE, * = not trusted): {zs}"
                  + "".join(f"\n  {j}: not measured: {e}" for j, e in bad.items()), flush=True)
    print(f"\n{machine()}")
    print_tables(pairs, header, args.workers)
    if args.json:
        Path(args.json).write_text(json.dumps(pairs, indent=1, default=float))


def print_tables(pairs: list[dict], header: list[str], workers: int) -> None:
    for group in ("RA", "atlas", None):
        sel = [p for p in pairs if group is None or p["group"] == group]
        if not sel:
            continue
        secs = [p["seconds"] for p in sel]
        print(f"\n### {group or 'all'}: {len(sel)} null pairs, measure_hand median {np.median(secs):.1f} s "
              f"(min {min(secs):.1f}) per pair, {workers} workers, 1 torch thread\n")
        print(markdown_table(header, summarise(sel)))


if __name__ == "__main__":
    main()
