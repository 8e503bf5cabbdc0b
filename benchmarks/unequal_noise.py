"""Narrowing bias when the two visits are not equally noisy, with and without ``gain_free``.

The engine models the follow-up as a gain and an offset of the baseline on each side; the
gain is the ratio of the two sides' intensity SDs, which is unbiased only when both visits
carry the same noise. A biased gain leaks into the geometry through the mask's boundary.
``RegistrationOptions(gain_free=True)`` makes the geometric update independent of the gain.

Each case is a held-out real crop moved by known per-bone motions (as in accuracy.py, with
no noise), after which white noise of the stated SD (fraction of the [0, 1] range) is added
to the baseline and to the follow-up separately. Both settings get the same images; the
narrowing is measured one way with the true-mask labels and read at the true joint centre.

Usage::

    python benchmarks/unequal_noise.py            # 24 crops, ~2 min on 2 cores
    python benchmarks/unequal_noise.py --crops 40
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Condition, data_dir, machine, markdown_table, one_crop_per_joint, synthesise  # noqa: E402
from benchmarks.registration import centre  # noqa: E402
from jsnq import MeasureConfig, measure  # noqa: E402
from jsnq.geometry import symmetric_narrowing_px  # noqa: E402
from jsnq.register.classical import RegistrationOptions  # noqa: E402

#: (baseline noise, follow-up noise)
NOISE_PAIRS = ((0.02, 0.0), (0.0, 0.02), (0.02, 0.02), (0.03, 0.01), (0.05, 0.0), (0.0, 0.05), (0.05, 0.05))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=24, help="held-out crops (one per joint)")
    args = ap.parse_args(argv)
    crops = one_crop_per_joint(data_dir(), args.crops, seed=0, validation_only=True)
    rng = np.random.default_rng(5)
    cases = [(c, synthesise(c, Condition("motion only", 0.0), rng)) for c in crops]
    settings = (("default", RegistrationOptions()), ("gain_free", RegistrationOptions(gain_free=True)))
    rows = []
    for nb, nf in NOISE_PAIRS:
        errs: dict[str, list[float]] = {name: [] for name, _ in settings}
        noise_rng = np.random.default_rng(11)
        for crop, case in cases:
            base = case.baseline + noise_rng.normal(0.0, nb, case.baseline.shape)
            fol = case.followup + noise_rng.normal(0.0, nf, case.followup.shape)
            p = centre(crop)
            truth = symmetric_narrowing_px(case.upper, case.lower, p)
            for name, opts in settings:
                m = measure(base, fol, baseline_labels=case.labels, point=p,
                            config=MeasureConfig(engine="classical", check_labels=False, registration=opts))
                errs[name].append(m.narrowing_px - truth)
        row = [f"{100 * nb:.0f} %", f"{100 * nf:.0f} %"]
        for name, _ in settings:
            e = np.asarray(errs[name])
            row += [float(e.mean()), float(e.std(ddof=1))]
        rows.append(row)
    print(f"# Unequal noise: {len(cases)} held-out crops, known per-bone motions, exposure 0.8-1.2\n")
    print(f"Machine: {machine()}\n")
    print(markdown_table(["baseline noise", "follow-up noise", "default bias px", "default SD px",
                          "gain_free bias px", "gain_free SD px"], rows))
    print(f"\n(the standard error of a bias is SD / sqrt({len(cases)}))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
