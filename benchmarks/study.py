"""Study throughput on Dask: pairs/s and units/s with 1 and 2 workers, memory per worker, Dask's
overhead against a plain loop over the same units, and an extrapolation to a 1,000-patient trial.

A synthetic crop study (phantom joints moved by known amounts, written as PNGs) is measured
``--repeats`` times in each mode, every time into a fresh folder (nothing skipped):

* ``loop``: ``run_study(workers=0)``, the units one after another in this process, no Dask;
* ``dask N``: ``run_study(workers=N)`` on a LocalCluster of N processes.

Times (medians over the repeats):

* ``work``: from the plan being ready (after the cluster has started) to the last unit stored:
  what scales with the study's size;
* ``startup``: hashing the inputs and starting the cluster (a fixed cost per run);
* ``total``: the whole ``run_study`` call, tables and cluster shutdown included.

Every run is a fresh Python process, so every mode pays the same imports and model loading.
Dask's overhead is ``work(dask 1) / work(loop) - 1``: the same units, the same process count.
``outside units``: the share of ``work x workers`` not spent inside a unit (each record's own
``elapsed_s``): scheduling, transfers, storing and idle tails; it is less sensitive to a busy
machine than the ratio of wall times. Memory per worker: the peak resident set of each worker
process (from its records).

Usage::

    python benchmarks/study.py [--patients 3] [--joints 2] [--visits 4] [--size 256] [--engine auto]
                               [--repeats 3] [--workers 1 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, markdown_table  # noqa: E402
from jsnq.config import MeasureConfig  # noqa: E402
from jsnq.geometry import Similarity, crop_centre  # noqa: E402
from jsnq.io import save_image  # noqa: E402
from jsnq.phantom import apply_bone_motions, make_pair  # noqa: E402
from jsnq.study import run_study  # noqa: E402

#: The trial of issue 15.
TRIAL_PATIENTS, TRIAL_HANDS, TRIAL_VISITS, TRIAL_JOINTS = 1000, 2, 4, 14


def make_study(folder: Path, *, patients: int, joints: int, visits: int, size: int, seed: int = 0) -> Path:
    """A crop study: each (patient, joint) a phantom joint narrowing by 0.2-0.6 px/year over
    yearly visits, with random common shifts of +-1 px and 1 % noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for p in range(patients):
        for q in range(joints):
            pair = make_pair(seed + 100 * p + q, noise=0.0, shape=(size, size))
            c = crop_centre(pair.baseline.shape)
            rng = np.random.default_rng(seed + 100 * p + q)
            rate = rng.uniform(0.2, 0.6)
            for k in range(visits):
                s = rng.uniform(-1, 1, 2)
                img = apply_bone_motions(pair.baseline.astype(np.float64), pair.baseline_labels,
                                         Similarity(1.0, 0.0, s[0], s[1] + rate * k, c),
                                         Similarity(1.0, 0.0, s[0], s[1], c))
                name = f"P{p}_J{q}_{k}.png"
                save_image(folder / name, img + rng.normal(0, 0.01, img.shape))
                rows.append([f"P{p}", "L", f"J{q}", f"{2020 + k}-01-01", name, "0.1"])
    path = folder / "study.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["patient", "side", "joint", "date", "image", "spacing_mm"])
        w.writerows(rows)
    return path


def one_run(manifest: Path, out: Path, workers: int, config: MeasureConfig, threads: int | None) -> dict:
    marks: dict[str, float] = {}

    def progress(e) -> None:
        if e.event == "start":
            marks["start"] = e.elapsed_s
        elif e.event == "unit":
            marks["last"] = e.elapsed_s

    t0 = time.perf_counter()
    result = run_study(manifest, out, config=config, workers=workers, progress=progress, numeric_threads=threads)
    total = time.perf_counter() - t0
    assert not result.failed and not result.skipped, (result.failed, result.skipped)
    rss: dict[int, float] = {}
    pairs = 0
    inside = 0.0
    for u in result.units:
        rec = json.loads((out / "units" / f"{u}.json").read_text())
        rss[rec["pid"]] = max(rss.get(rec["pid"], 0.0), rec.get("max_rss_mb") or 0.0)
        pairs += sum(1 for p in rec["pairs"] if not p.get("error"))
        inside += rec["elapsed_s"]
    work = marks["last"] - marks["start"]
    n = max(1, workers)
    return {"total_s": total, "startup_s": marks["start"], "work_s": work, "inside_s": inside,
            # wall time x workers not spent inside a unit: scheduling, transfers, storing, idle tails
            "outside_share": 1.0 - inside / (work * n), "units": len(result.units), "pairs": pairs,
            "rss_mb": sorted(rss.values())}


def fresh_run(manifest: Path, out: Path, workers: int, args: argparse.Namespace) -> dict:
    """:func:`one_run` in a new Python process, so every mode pays the same imports and model
    loading (the loop would otherwise keep its loaded networks from one repeat to the next)."""
    cmd = [sys.executable, __file__, "--one", str(manifest), str(out), str(workers), "--engine", args.engine,
           "--segmenter", args.segmenter] + (["--threads", str(args.threads)] if args.threads else [])
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=3)
    ap.add_argument("--joints", type=int, default=2)
    ap.add_argument("--visits", type=int, default=4)
    ap.add_argument("--size", type=int, default=256, help="crop side (px)")
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--segmenter", default="auto")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--machines", type=int, nargs="+", default=[1, 4, 16], help="for the extrapolation")
    ap.add_argument("--cores", type=int, default=32, help="cores per machine, for the extrapolation")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch/OpenMP threads per unit in every mode (default: Dask's cores // workers, and the "
                         "loop's own default)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--one", nargs=3, metavar=("MANIFEST", "OUT", "WORKERS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    config = MeasureConfig(engine=args.engine, segmenter=args.segmenter)
    if args.one:
        print(json.dumps(one_run(Path(args.one[0]), Path(args.one[1]), int(args.one[2]), config, args.threads)))
        return 0
    load0 = os.getloadavg()
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        manifest = make_study(Path(tmp) / "study", patients=args.patients, joints=args.joints, visits=args.visits,
                              size=args.size)
        modes = [("loop", 0)] + [(f"dask {w}", w) for w in args.workers]
        for rep in range(args.repeats):
            for name, w in modes:  # interleaved, so a slow spell of the machine hits every mode
                r = fresh_run(manifest, Path(tmp) / f"out-{name.replace(' ', '')}-{rep}", w, args)
                runs.setdefault(name, []).append(r)
                print(f"  {name:7s} rep {rep}: work {r['work_s']:.1f} s, startup {r['startup_s']:.1f} s, "
                      f"total {r['total_s']:.1f} s, outside units {100 * r['outside_share']:.1f} %", file=sys.stderr)
    load1 = os.getloadavg()
    med = {name: {k: statistics.median(r[k] for r in rs) for k in ("total_s", "startup_s", "work_s", "outside_share")}
           for name, rs in runs.items()}
    units, pairs = runs["loop"][0]["units"], runs["loop"][0]["pairs"]
    rows = []
    for name in runs:
        m = med[name]
        rss = max(max(r["rss_mb"]) for r in runs[name])
        rows.append([name, m["work_s"], m["startup_s"], m["total_s"], units / m["work_s"], pairs / m["work_s"],
                     100 * m["outside_share"], rss])
    print(f"\nMachine: {machine()}; load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end")
    print(f"Study: {args.patients} patients x {args.joints} joints, {args.visits} visits of {args.size} px crops "
          f"= {units} units, {pairs} ordered pairs; engine {args.engine}, segmenter {args.segmenter}; "
          f"numeric threads per unit {args.threads or 'default'}; median of {args.repeats} runs\n")
    print(markdown_table(["mode", "work (s)", "startup (s)", "total (s)", "units/s", "pairs/s",
                          "outside units (%)", "peak RSS / worker (MB)"], rows))
    out: dict = {"machine": machine(), "load": [load0[0], load1[0]], "args": vars(args) | {"json": None},
                 "median": med, "runs": runs, "units": units, "pairs": pairs}
    if "dask 1" in med:
        overhead = med["dask 1"]["work_s"] / med["loop"]["work_s"] - 1
        overhead_total = med["dask 1"]["total_s"] / med["loop"]["total_s"] - 1
        out["overhead"], out["overhead_total"] = overhead, overhead_total
        print(f"\nDask's overhead (1 worker against the loop): {100 * overhead:+.1f} % of the work time, "
              f"{100 * overhead_total:+.1f} % of the total (startup and shutdown included)")
    if "dask 1" in med:
        # One worker process with one numeric thread stands for one core; the trial scales by
        # adding such workers (units are independent: nothing is shared but the file system).
        per_core = units / med["dask 1"]["work_s"]
        trial_units = TRIAL_PATIENTS * TRIAL_HANDS * TRIAL_JOINTS
        print(f"\nExtrapolation: {trial_units} units ({TRIAL_PATIENTS} patients x {TRIAL_HANDS} hands x "
              f"{TRIAL_JOINTS} joints, {TRIAL_VISITS} visits each = {trial_units * 12} ordered pairs) at "
              f"{per_core:.3f} units/s per worker (dask 1 here), one worker per core, linear in workers, "
              f"plus one cluster startup:")
        ext = []
        for n in args.machines:
            hours = (trial_units / (per_core * args.cores * n) + med["dask 1"]["startup_s"]) / 3600
            ext.append([n, args.cores, n * args.cores, hours])
        print(markdown_table(["machines", "cores each", "workers", "hours"], ext))
        out["extrapolation"] = {"per_core_units_per_s": per_core, "rows": ext}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
