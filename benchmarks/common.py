"""Shared pieces of the benchmark scripts: data location, real crops, synthetic motions, tables."""

from __future__ import annotations

import csv
import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jsnq.geometry import Similarity, crop_centre, symmetric_narrowing_px
from jsnq.io import load_image
from jsnq.jsw import articular_centre, pair_articular_centre
from jsnq.phantom import apply_bone_motions
from jsnq.labels import labels_from_masks

REPO = Path(__file__).resolve().parents[1]
#: The benchmark data: ``$JSNQ_DATA`` or ../shared/data next to the repository.
DATA = Path(os.environ.get("JSNQ_DATA", REPO.parent / "shared" / "data"))
#: The RA hand-pair's two radiographs (under DATA/hand-pair) and my annotation of their joints.
RA_IMAGES = ("IMAGE007_20110111.png", "IMAGE007_20120221.png")
RA_ANNOTATION = REPO / "benchmarks" / "data" / "hand-pair-joint-annotation.csv"
#: The paper's figures (Wang et al. 2023, private clinical set at 0.175 mm/px).
PAPER_SD_MM = 0.0661
PAPER_SPACING_MM = 0.175
PAPER_MISMATCH = 0.0048


def data_dir(needs: str = "finger-joints/manifest.csv") -> Path:
    """``$JSNQ_DATA`` or ../shared/data next to the repository; SystemExit when ``needs`` is absent there."""
    if not (DATA / needs).exists():
        raise SystemExit(f"benchmark data not found under {DATA} (set JSNQ_DATA)")
    return DATA


def atlas_landmarks() -> list[tuple[str, dict[str, tuple[float, float]]]]:
    """The atlas hands' true landmarks (DATA/hand-landmarks/landmarks.csv): per row, its image
    file and ``{landmark: (x, y)}`` in px of the radiograph."""
    with open(DATA / "hand-landmarks" / "landmarks.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [(r["image"], {k[:-2]: (float(r[k]), float(r[k[:-2] + "_y"])) for k in r if k.endswith("_x")})
            for r in rows]


def ra_annotation() -> list[dict[str, tuple[float, float]]]:
    """My annotation of the RA hand-pair (:data:`RA_ANNOTATION`): per visit ``{joint: (x, y)}``
    in px of the radiograph."""
    pts: list[dict[str, tuple[float, float]]] = [{} for _ in RA_IMAGES]
    with open(RA_ANNOTATION) as fh:
        for r in csv.DictReader(line for line in fh if not line.startswith("#")):
            pts[int(r["visit"])][r["joint"]] = (float(r["x"]), float(r["y"]))
    return pts


@dataclass(frozen=True)
class Crop:
    joint_id: str
    joint: str
    image: np.ndarray  # float64 in [0, 1]
    upper: np.ndarray  # bool bone masks
    lower: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        return labels_from_masks(self.upper, self.lower)


def manifest(root: Path) -> list[dict[str, str]]:
    with open(root / "finger-joints" / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def load_crop(root: Path, row: dict[str, str]) -> Crop:
    fj = root / "finger-joints"
    img = load_image(fj / row["image"]).array / 255.0
    up = load_image(fj / row["upper_mask"]).array > 0
    lo = load_image(fj / row["lower_mask"]).array > 0
    return Crop(row["joint_id"], row["joint"], img.astype(np.float64), up, lo)


def one_crop_per_joint(root: Path, n: int, seed: int = 0, *, validation_only: bool = False) -> list[Crop]:
    """``n`` crops of ``n`` different joints, chosen reproducibly.

    With ``validation_only``, only joints held out from the shipped segmentation network's
    training (the split rule of :func:`jsnq.training.data.split_joints`).
    """
    rows = manifest(root)
    if validation_only:
        from jsnq.training.data import split_joints

        held_out = set(split_joints(sorted({r["joint_id"] for r in rows}))[1])
        rows = [r for r in rows if r["joint_id"] in held_out]
    first: dict[str, dict[str, str]] = {}
    for r in rows:
        first.setdefault(r["joint_id"], r)
    ids = sorted(first)
    pick = np.random.default_rng(seed).choice(len(ids), size=min(n, len(ids)), replace=False)
    return [load_crop(root, first[ids[i]]) for i in sorted(pick)]


@dataclass(frozen=True)
class Condition:
    name: str
    noise: float  # SD of white noise, fraction of the [0, 1] range, added to both images
    max_rotation_deg: float = 10.0
    max_scale: float = 0.10  # |log scale|
    max_shift_px: float = 10.0
    exposure: float = 0.2  # gain in 1 +- exposure, offset in +- exposure / 4 (or +- max_offset)
    relative_rotation_deg: float = 0.5
    max_narrowing_px: float = 1.0
    #: offset range (fraction of the [0, 1] range); None = exposure / 4
    max_offset: float | None = None
    #: nonlinear exposure: the follow-up's intensity I -> gain * I**g + offset with
    #: g = exp(U(-max_log_gamma, max_log_gamma)); 0 = linear (no draw, so older seeds are unchanged)
    max_log_gamma: float = 0.0


@dataclass(frozen=True)
class Case:
    baseline: np.ndarray
    followup: np.ndarray
    clean: np.ndarray
    labels: np.ndarray
    upper: Similarity
    lower: Similarity
    gain: float
    truth_px: float
    #: the joint's articular centre (x, y) in the baseline from both visits' true masks, found
    #: half-way between them (jsnq.jsw.pair_articular_centre with the true lower-bone motion)
    centre_px: tuple[float, float] | None = None
    #: the baseline's own articular centre, in its rows and columns (jsnq.jsw.articular_centre;
    #: the truth before the pair's centre)
    image_centre_px: tuple[float, float] | None = None

    @property
    def truth_at_centre_px(self) -> float:
        """The true narrowing read at the articular centre of the true masks."""
        return symmetric_narrowing_px(self.upper, self.lower, self.centre_px)


def synthesise(crop: Crop, cond: Condition, rng: np.random.Generator) -> Case:
    """A follow-up of a real crop with known per-bone motions, exposure change and noise."""
    c = crop_centre(crop.image.shape)
    common = Similarity(math.exp(rng.uniform(-cond.max_scale, cond.max_scale)),
                        math.radians(rng.uniform(-cond.max_rotation_deg, cond.max_rotation_deg)),
                        rng.uniform(-cond.max_shift_px, cond.max_shift_px),
                        rng.uniform(-cond.max_shift_px, cond.max_shift_px), c)
    n = rng.uniform(-cond.max_narrowing_px, cond.max_narrowing_px)
    d = math.radians(rng.uniform(-cond.relative_rotation_deg, cond.relative_rotation_deg))
    up_rel = Similarity(1.0, d / 2, 0.0, n / 2, c)
    lo_rel = Similarity(1.0, -d / 2, 0.0, -n / 2, c)
    upper, lower = common.compose(up_rel), common.compose(lo_rel)
    labels = crop.labels
    fol = apply_bone_motions(crop.image, labels, upper, lower)
    gain = 1.0 + rng.uniform(-cond.exposure, cond.exposure)
    off = cond.exposure / 4 if cond.max_offset is None else cond.max_offset
    offset = rng.uniform(-off, off)
    if cond.max_log_gamma > 0:
        g = math.exp(rng.uniform(-cond.max_log_gamma, cond.max_log_gamma))
        fol = np.clip(fol, 0.0, None) ** g
    fol = gain * fol + offset
    base = crop.image + rng.normal(0.0, cond.noise, crop.image.shape)
    fol = fol + rng.normal(0.0, cond.noise, fol.shape)
    return Case(base, fol, crop.image, labels, upper, lower, gain, symmetric_narrowing_px(upper, lower),
                pair_articular_centre((crop.upper, crop.lower), followup_masks(crop, upper, lower), lower)[0],
                articular_centre(crop.upper, crop.lower))


def followup_masks(crop: Crop, upper: Similarity, lower: Similarity) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic follow-up's true bone masks: the crop's moved as its image is
    (:func:`jsnq.phantom.apply_bone_motions`, bilinear, at the 0.5 level)."""
    return tuple(apply_bone_motions(m.astype(np.float64), crop.labels, upper, lower, order=1) >= 0.5
                 for m in (crop.upper, crop.lower))


def followup_labels(case: Case) -> np.ndarray:
    """The follow-up's labels of a synthetic case: the baseline's carried by the bones' motions
    (nearest label), as a segmentation of the follow-up would give them."""
    moved = apply_bone_motions(case.labels.astype(float), case.labels, case.upper, case.lower, order=0)
    return np.rint(moved).astype(np.uint8)


def add_engine_options(ap) -> None:
    """``--edge-ramp PX``, ``--gain-free`` and ``--gap-exclusion PX``: run jsnq with those
    :class:`jsnq.register.classical.RegistrationOptions` (default: none of them, the shipped options)."""
    ap.add_argument("--edge-ramp", type=float, default=0.0, metavar="PX",
                    help="soft edge weights of the bone fits (RegistrationOptions.edge_ramp_px; default 0 = off)")
    ap.add_argument("--gain-free", action="store_true",
                    help="the geometry independent of the fitted gain (RegistrationOptions.gain_free)")
    ap.add_argument("--gap-exclusion", type=float, default=None, metavar="PX",
                    help="the gap band left out of each side's fit (RegistrationOptions.gap_exclusion_px; "
                         "default: the shipped value)")


def engine_options(args):
    """The :class:`jsnq.register.classical.RegistrationOptions` that :func:`add_engine_options`'s
    arguments ask for, or None when they ask for the shipped defaults."""
    if args.edge_ramp <= 0 and not args.gain_free and args.gap_exclusion is None:
        return None
    from jsnq.register.classical import RegistrationOptions

    extra = {} if args.gap_exclusion is None else {"gap_exclusion_px": args.gap_exclusion}
    return RegistrationOptions(edge_ramp_px=args.edge_ramp, gain_free=args.gain_free, **extra)


def with_engine_options(measure_fn, args):
    """``measure_fn`` with its ``config``'s registration options replaced by those of
    :func:`add_engine_options`'s arguments (unchanged when they ask for the shipped defaults)."""
    options = engine_options(args)
    if options is None:
        return measure_fn
    from jsnq import MeasureConfig

    def measure(*pos, config=None, **kwargs):
        return measure_fn(*pos, config=(config or MeasureConfig()).replace(registration=options), **kwargs)

    return measure


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    def fmt(v: object) -> str:
        if isinstance(v, float):
            if math.isnan(v):
                return "–"
            return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)
