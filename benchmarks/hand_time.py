"""Time of a two-visit hand end to end (issue 20's target: <= 5 s on 2 cores, the locator included).

``measure_hand(baseline, follow-up, spacing_mm=0.17, workers=w)`` on the RA hand-pair
(../shared/data/hand-pair, all 14 joints, the joints found by the locator) in a warm process
(one untimed run first: the networks' weights loaded, the code paths imported). The workers'
runs alternate (run 1 with each worker count, then run 2, ...) so that a change in the
machine's load falls on all of them alike. Per worker count: the median wall time and its runs,
and the median CPU time of the process (all its threads: ``time.process_time``), which other
processes' load inflates far less than the wall time. The load average (1 min) is printed
before and after.

``--phases`` adds one worker's time per stage, with the public functions that
``measure_hand`` calls: the locator on both visits (:func:`jsnq.hand.locate.find_joints`),
cutting and placing every joint's crops (:func:`jsnq.hand.crops.joint_crops`) and measuring
them (:func:`jsnq.hand.measure.measure_joint`).

Usage::

    python benchmarks/hand_time.py                       # workers 1 and 2, 5 runs each
    python benchmarks/hand_time.py --repeats 3 --workers 2 --phases

To compare two versions in the same minutes, run it alternately with ``PYTHONPATH`` on each
version's ``src`` (a checkout of the older commit: ``git archive <commit> src | tar -x -C DIR``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DATA, RA_IMAGES, machine, markdown_table  # noqa: E402
from jsnq.io import load_image  # noqa: E402

SPACING_MM = 0.17


def timed(fn) -> tuple[object, float, float]:
    """``fn()``, its wall time and the process's CPU time (s)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def phases(images, repeats: int) -> list[list[object]]:
    """One worker's wall and CPU time per stage (medians over ``repeats``)."""
    from jsnq.hand.crops import Resampler, hand_scale_px_per_mm, hand_similarity, joint_crops
    from jsnq.hand.locate import find_joints
    from jsnq.hand.measure import measure_joint

    def locate():
        return [find_joints(im) for im in images]

    def crops(hands):
        arrays = [Resampler(im.array) for im in images]
        scale = hand_scale_px_per_mm(hands[0])
        maps = [None, hand_similarity(hands[0], hands[1])[0]]
        return {n: joint_crops(arrays, hands, n, spacing_mm=SPACING_MM, sources=[im.source for im in images],
                               scale_px_per_mm=scale, hand_maps=maps) for n in hands[0].joints}

    stages: dict[str, list[tuple[float, float]]] = {"locator (both visits)": [], "cut and place the crops": [],
                                                    "measure the joints": []}
    for _ in range(repeats):
        hands, w, c = timed(locate)
        stages["locator (both visits)"].append((w, c))
        cut, w, c = timed(lambda: crops(hands))
        stages["cut and place the crops"].append((w, c))
        _, w, c = timed(lambda: [measure_joint(jc) for jc in cut.values()])
        stages["measure the joints"].append((w, c))
    return [[name, f"{statistics.median(t[0] for t in v):.2f}", f"{statistics.median(t[1] for t in v):.2f}"]
            for name, v in stages.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per worker count")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--phases", action="store_true", help="also time each stage with one worker")
    args = ap.parse_args()
    if not (DATA / "hand-pair").is_dir():
        raise SystemExit(f"needs {DATA / 'hand-pair'} (set JSNQ_DATA)")
    import jsnq
    import torch
    from jsnq.hand.measure import measure_hand

    images = [load_image(DATA / "hand-pair" / name, spacing_mm=SPACING_MM) for name in RA_IMAGES]
    workers = [int(w) for w in args.workers.split(",")]
    load0 = os.getloadavg()[0]
    measure_hand(images[0], images[1], spacing_mm=SPACING_MM, workers=workers[0])  # warm-up, untimed
    runs: dict[int, list[tuple[float, float]]] = {w: [] for w in workers}
    for _ in range(args.repeats):
        for w in workers:
            hm, wall, cpu = timed(lambda: measure_hand(images[0], images[1], spacing_mm=SPACING_MM, workers=w))
            runs[w].append((wall, cpu))
    load1 = os.getloadavg()[0]
    print(f"machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads; jsnq from "
          f"{Path(jsnq.__file__).parent}")
    print(f"load average (1 min): {load0:.1f} before, {load1:.1f} after; {len(hm.joints)} of 14 joints measured\n")
    print("## measure_hand on the RA hand-pair, locator included (s)\n")
    print(markdown_table(["workers", "wall median", "wall runs", "CPU median", "CPU runs"],
                         [[w, f"{statistics.median(t[0] for t in v):.2f}", ", ".join(f"{t[0]:.2f}" for t in v),
                           f"{statistics.median(t[1] for t in v):.2f}", ", ".join(f"{t[1]:.2f}" for t in v)]
                          for w, v in runs.items()]))
    if args.phases:
        print("\n## one worker, per stage (s)\n")
        print(markdown_table(["stage", "wall median", "CPU median"], phases(images, args.repeats)))


if __name__ == "__main__":
    main()
