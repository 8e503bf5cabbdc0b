"""Short seeded runs of the three trainers, whose results must not move when the training code is
restructured.

Trains the segmenter (2 epochs), the joint locator (2 epochs) and the registration network
(3 steps) on tiny synthetic folders, each twice with seed 0, and prints, or writes with --out,
a digest of each run's weights and its per-epoch losses as JSON. The two runs of each trainer
must agree (seeded); with ``--compare OLD.json`` every trainer must also agree with an earlier
file, bit for bit, unless a change of its random draws is intended and said. CPU, 1 thread,
about 15 s.

    python benchmarks/training_runs.py --out before.json
    python benchmarks/training_runs.py --compare before.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from manifests import CROP, write_manifest_folder  # noqa: E402
from test_locate import TINY as TINY_LOCATOR, _synthetic_folder  # noqa: E402

from jsnq.register.network import RegNetConfig  # noqa: E402
from jsnq.segment.network import NetworkConfig  # noqa: E402
from jsnq.training import TrainConfig, train_segmenter  # noqa: E402
from jsnq.training.locate import LocateAugment, LocateTrainConfig, train_locator  # noqa: E402
from jsnq.training.register import RegTrainConfig, train_registration  # noqa: E402


def _digest(path: Path) -> str:
    state = torch.load(path, weights_only=True)["state_dict"]
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def runs(tmp: Path) -> dict[str, list]:
    seg = write_manifest_folder(tmp / "seg")
    (tmp / "loc").mkdir()
    loc = _synthetic_folder(tmp / "loc")
    reg = write_manifest_folder(tmp / "reg", n_joints=4, visits=2)
    trainers = {
        "segment": (train_segmenter, TrainConfig(data=str(seg), epochs=2, batch_size=4, val_fraction=0.3,
                                                 target_size=CROP, network=NetworkConfig(features=(4, 8, 16),
                                                                                         input_size=32))),
        "locate": (train_locator, LocateTrainConfig(data=str(loc), epochs=2, batch_size=2, patches_per_hand=2,
                                                    val_fraction=0.3, val_every=0, network=TINY_LOCATOR,
                                                    augment=LocateAugment())),
        "register": (train_registration, RegTrainConfig(data=str(reg), epochs=1, steps_per_epoch=3, batch_size=4,
                                                        crop_px=64, val_fraction=0.3,
                                                        network=RegNetConfig(input_size=32))),
    }
    out = {}
    for name, (train, config) in trainers.items():
        out[name] = []
        for k in range(2):
            result = train(config, tmp / f"{name}{k}.pt")
            out[name].append({"weights": _digest(tmp / f"{name}{k}.pt"), "losses": [r.loss for r in result.history]})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--compare", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        out = runs(Path(tmp))
    bad = 0
    for name, (a, b) in out.items():
        same = a == b
        bad += not same
        print(f"{name:9s} weights {a['weights']}  seeded (twice the same): {'yes' if same else 'NO'}")
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    if args.compare:
        old = json.loads(args.compare.read_text())
        differ = [n for n in out if old.get(n) != out[n]]
        bad += len(differ)
        print(f"{len(out)} trainers, {len(differ)} differ from {args.compare}" + (f": {', '.join(differ)}" if differ else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
