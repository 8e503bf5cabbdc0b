"""A tiny manifest folder of phantom crops and masks, for the training tests (no real data)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from jsnq.io import save_image
from jsnq.phantom import make_pair

#: Side of the phantom crops, px.
CROP = 64


def write_manifest_folder(folder: Path, n_joints: int = 4, visits: int = 2, *, with_joint_id: bool = True) -> Path:
    """Phantom crops (CROP x CROP) and their 0/255 masks in one folder per joint, plus a manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for j in range(n_joints):
        jdir = folder / f"joint{j}"
        jdir.mkdir(exist_ok=True)
        for v in range(visits):
            pair = make_pair(10 * j + v, shape=(CROP, CROP))
            stem = f"v{v}"
            save_image(jdir / f"{stem}.png", pair.baseline)
            PILImage.fromarray(pair.upper_mask.astype(np.uint8) * 255).save(jdir / f"{stem}_upper.png")
            PILImage.fromarray(pair.lower_mask.astype(np.uint8) * 255).save(jdir / f"{stem}_lower.png")
            row = {"image": f"joint{j}/{stem}.png", "upper_mask": f"joint{j}/{stem}_upper.png",
                   "lower_mask": f"joint{j}/{stem}_lower.png"}
            if with_joint_id:
                row = {"joint_id": f"J{j}", **row}
            rows.append(row)
    write_csv(folder / "manifest.csv", rows)
    return folder


def write_csv(path: Path, rows: list[dict], fields: list[str] | None = None) -> Path:
    """``rows`` as a CSV with a header (default: the first row's keys)."""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
