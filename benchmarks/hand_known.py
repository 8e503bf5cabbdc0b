"""Known narrowing rendered into real whole-hand radiographs, and null pairs (issue 20).

Each finger is a chain of joints (thumb MCP1, IP1; fingers MCP, PIP, DIP). For every joint J
a narrowing ``d_J`` is drawn uniform in +-``--max-px`` px of the radiograph; everything distal
of J's joint-space line, inside that finger's strip, moves by ``d_J`` along J's axis towards
the proximal bone, summed along the chain, so that at each joint the distal bone moves exactly
``d_J`` relative to the proximal one. The seam follows the joint-space line: at each offset
across the joint, the darkest point of the axial intensity profile (smoothed). The strip's
sides ramp the motion into the soft tissue; a pixel moves with the finger whose chain of
landmarks lies nearest, never with a neighbour's. (Darkest relative to its surroundings: a dark
valley between brighter bone on both sides; the raw minimum is often marrow or soft tissue.) The whole follow-up is then moved rigidly (a few
degrees, a few px) and white noise is added to both visits. ``--null`` renders no narrowing
(a radiograph against itself, moved rigidly, with noise).

Truth: ``d_J`` times the cosine between J's axis and the axis of the crop jsnq cut, compared
with ``narrowing_mm / spacing`` (px of the radiograph). Per joint type: the share measured,
the share trusted (``reliable``), the RMS error over trusted joints, error/SE over them and
the worst trusted error; the RMS error over the flagged ones beside.

Sources: atlas hands held out from the locator's training (``hand-landmarks``, their true
landmarks), and the RA hand-pair's two radiographs (my annotation,
benchmarks/data/hand-pair-joint-annotation.csv).

Usage::

    python benchmarks/hand_known.py                      # 6 atlas hands + RA, 2 draws each
    python benchmarks/hand_known.py --null
    python benchmarks/hand_known.py --atlas 3 --draws 1 --hands locator
    python benchmarks/hand_known.py --json out.json
    python benchmarks/hand_known.py --misplaced          # the split check on misplaced lines
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
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402
from scipy import stats  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DATA, RA_IMAGES, atlas_landmarks, machine, markdown_table, ra_annotation  # noqa: E402
from jsnq.config import MeasureConfig  # noqa: E402
from jsnq.hand.anatomy import distal_bone_width_mm, joint_type  # noqa: E402
from jsnq.hand.crops import TYPICAL_GAP_MM, hand_scale_px_per_mm  # noqa: E402
from jsnq.hand.landmarks import FINGER_CHAINS, hand_from_points  # noqa: E402
from jsnq.hand.measure import measure_hand  # noqa: E402
from jsnq.hand.types import JOINT_NAMES  # noqa: E402
from jsnq.io import load_image  # noqa: E402
from jsnq.segment.classical import min_cost_path  # noqa: E402

#: The locator's held-out atlas hands (docs/locate.md).
HELD_OUT = ("3143", "3150", "3154", "3161", "3171", "3237", "3239", "3269", "3273", "3758", "3773", "3819")
TYPES = ("MCP", "PIP", "DIP", "IP")
SPACING_MM = 0.1  # any spacing: the truth and the reading are both in px of the radiograph


@dataclass(frozen=True)
class Source:
    name: str
    image: np.ndarray          # float [row, col]
    points: dict               # landmark name -> (x, y), px of the radiograph
    #: where the joint space is searched along the joint's axis, mm from the landmark (+ =
    #: distal), beyond the typical gap: the atlas landmarks sit on either side of a child's
    #: wide joint space, up to ~2 mm from it, with growth plates 1.5-3 mm beyond; my RA
    #: annotation sits up to 3 mm distal of the narrow adult joint space at the PIPs and DIPs.
    window_mm: tuple = (-2.5, 2.5)
    #: the valleys considered: as deep as this share of the deepest in the window, reaching
    #: ``wide`` times the seam's reach (the nearest to one typical gap proximal of the landmark
    #: is the joint space; seen on overlays of every seam, docs/hand.md)
    min_share: float = 0.5
    wide: float = 2.5
    #: centre the seam across the finger on the bone seen in the image (:func:`_bone_offset`)
    #: rather than on the landmark: my RA annotation lies up to 0.6 of the bone's half-width
    #: beside the bone's middle (+-8 px), which left a third of the joint beyond the seam; the
    #: atlas landmarks lie on the bone's axis.
    centre_on_bone: bool = False
    #: the seam as a continuous path of deepest valleys (:func:`_seam`)
    path: bool = False


def ra_sources() -> list[Source]:
    pts = ra_annotation()
    return [Source(f"RA visit {k}", load_image(DATA / "hand-pair" / n).array.astype(float), pts[k], (-3.0, 0.3), 1.0, 1.0,
                   centre_on_bone=True, path=True)
            for k, n in enumerate(RA_IMAGES)]


def atlas_sources(n: int) -> list[Source]:
    rows = {image.split(".")[0]: (image, pts) for image, pts in atlas_landmarks()}
    out = []
    for hid in HELD_OUT[:n]:
        image, pts = rows[hid]
        out.append(Source(f"atlas {hid}", load_image(DATA / "hand-landmarks" / image).array.astype(float), pts))
    return out


# -- the renderer ---------------------------------------------------------------------------
def _axis(points: dict, chain: tuple, k: int) -> np.ndarray:
    """Unit distal direction at chain[k] (towards the next landmark)."""
    a = np.asarray(points[chain[k]], float)
    b = np.asarray(points[chain[k + 1]], float)
    return (b - a) / np.linalg.norm(b - a)


def _valley_depth(prof: np.ndarray, k: int) -> np.ndarray:
    """Along the last axis: how far each sample lies below the dimmer of the brightest samples
    within ``k`` before and ``k`` after it."""
    before = ndi.maximum_filter1d(prof, size=k + 1, axis=-1, origin=k // 2)   # max over [t - k, t]
    after = ndi.maximum_filter1d(prof, size=k + 1, axis=-1, origin=-(k // 2))  # max over [t, t + k]
    return np.minimum(before, after) - prof


def _bone_offset(smooth: np.ndarray, p: np.ndarray, u: np.ndarray, half: float, window: tuple[float, float]) -> float:
    """How far (px, across the axis ``u``) the middle of the bone at ``p`` lies from ``p``: the
    mid-point of the steepest rise and the steepest fall of the lateral profile averaged over the
    ``window`` along the axis (the two bones' ends), each searched within 1.8 ``half`` of ``p``
    (the neighbouring fingers beyond). 0 where the two edges are not about a bone's width apart."""
    n = np.array([-u[1], u[0]])
    s = np.arange(-2.0 * half, 2.0 * half + 0.25, 0.5)
    t = np.linspace(window[0], window[1], 25)
    xy = p[None, None, :] + s[:, None, None] * n + t[None, :, None] * u
    prof = ndi.map_coordinates(smooth, [xy[..., 1], xy[..., 0]], order=1, mode="nearest").mean(axis=1)
    grad = np.gradient(ndi.gaussian_filter1d(prof, max(1.0, 0.16 * half)))
    rise = (s >= -1.8 * half) & (s <= 0.6 * half)
    fall = (s >= -0.6 * half) & (s <= 1.8 * half)
    left, right = s[rise][np.argmax(grad[rise])], s[fall][np.argmin(grad[fall])]
    return float(0.5 * (left + right)) if 0.7 * half <= 0.5 * (right - left) <= 1.7 * half else 0.0


def _seam(smooth: np.ndarray, p: np.ndarray, u: np.ndarray, half_width: float, window: tuple[float, float],
          reach: float, expect: float, min_share: float, wide: float, path: bool = False):
    """Axial position t(s) of the darkest point of the profile along ``u`` at each lateral
    offset s in [-half_width, half_width] (1 px steps), searched in ``window`` (px from p), as a
    smooth curve, extended along the joint line to +-2.6 ``half_width`` (the finger's strip).
    Darkest relative to its surroundings: the point whose value lies furthest below the
    dimmer of the profile's maxima within ``wide`` x ``reach`` px on either side (a valley, not merely
    a dark stretch of marrow or soft tissue), within ``reach`` of the valley chosen on the
    central offsets' mean profile. ``path``: instead, the continuous path of deepest valleys across
    the offsets in the whole window (:func:`_valley_path`; for the narrow, oblique joint lines of
    the RA hand, whose valley the mean profile over the offsets washes out)."""
    n = np.array([-u[1], u[0]])
    s = np.arange(-math.floor(half_width), math.floor(half_width) + 1, dtype=float)
    step = 0.25
    k = int(round(reach / step))
    wide = wide * reach  # a child's MCP joint space is wider than ``reach``
    t = np.arange(window[0] - wide, window[1] + wide + step / 2, step)
    xy = p[None, None, :] + s[:, None, None] * n + t[None, :, None] * u
    prof = ndi.map_coordinates(smooth, [xy[..., 1], xy[..., 0]], order=1, mode="nearest")
    inside = (t >= window[0]) & (t <= window[1])
    # the joint space: of the valleys of the central offsets' mean profile (reaching ``wide``)
    # at least ``min_share`` as deep as the deepest, the one nearest ``expect`` (px from p: a child's
    # growth plate lies beyond the epiphysis, a faint line in the marrow is shallow) ...
    core = np.abs(s) <= 0.7 * half_width
    mean = _valley_depth(prof[core].mean(axis=0), int(round(wide / step)))
    peak = (mean == ndi.maximum_filter1d(mean, size=k + 1)) & inside & (mean >= min_share * mean[inside].max())
    centre = t[peak][np.argmin(np.abs(t[peak] - expect))] if peak.any() else t[inside][np.argmax(mean[inside])]
    # ... then, at each offset, the deepest point within ``reach`` of it (with ``min_share`` 1,
    # anywhere in the window)
    depth = ndi.gaussian_filter1d(_valley_depth(prof, int(round(wide / step))), max(1.0, reach / 2), axis=0,
                                  mode="nearest")
    # Beyond the offsets it tracks, the seam goes on along the joint line (its robust slope over
    # the central offsets), out to the strip's edge: held square to the axis instead, it left the
    # joint line where the landmarks' axis is off the finger's (RA DIP3: 13 deg, seen on the
    # motion field in jsnq's crops).
    wide_s = np.arange(-math.ceil(2.6 * half_width), math.ceil(2.6 * half_width) + 1, dtype=float)
    if path:
        ts = ndi.median_filter(t[inside][_valley_path(depth[:, inside])], size=9, mode="nearest")
        slope = stats.theilslopes(ts[core], s[core])[0]
        inner = np.interp(wide_s, s, ts)
        return wide_s, inner + slope * (wide_s - np.clip(wide_s, s[0], s[-1]))
    if min_share < 1.0:
        inside &= np.abs(t - centre) <= reach
    ts = t[inside][np.argmax(depth[:, inside], axis=1)]
    # A joint line is smooth: the per-offset points that lie near a robust straight line through
    # the central 70 % of the offsets, then near a quadratic through those over all offsets (the
    # joint's curve out to the bone's margins), median-filtered and interpolated over the rest.
    slope, icpt, _, _ = stats.theilslopes(ts[core], s[core])
    tol = max(2.0, reach / 2)
    ok = core & (np.abs(ts - (icpt + slope * s)) <= tol)
    if ok.sum() < 5:
        return wide_s, icpt + slope * wide_s
    coef = np.polyfit(s[ok], ts[ok], 2)
    ok = np.abs(ts - np.polyval(coef, s)) <= tol
    smooth_ts = ndi.median_filter(np.interp(s, s[ok], ts[ok]), size=9, mode="nearest")
    lo, hi = s[ok].min(), s[ok].max()
    inner = np.interp(np.clip(wide_s, lo, hi), s, smooth_ts)
    return wide_s, inner + slope * (wide_s - np.clip(wide_s, lo, hi))


def _valley_path(depth: np.ndarray, max_step: int = 3, penalty: float = 0.01) -> np.ndarray:
    """Per offset (row of ``depth``), the index of the continuous path of greatest summed valley
    depth (normalised to the deepest), moving at most ``max_step`` samples from one offset to the
    next at a cost of ``penalty`` per sample: a joint line is continuous across the bone."""
    d = depth / max(float(depth.max()), 1e-12)
    return min_cost_path(-d.T, penalty, max_step)


def _dist_to_polyline(x: np.ndarray, y: np.ndarray, line: np.ndarray) -> np.ndarray:
    d = np.full(x.shape, np.inf)
    for a, b in zip(line[:-1], line[1:]):
        ab = b - a
        t = np.clip(((x - a[0]) * ab[0] + (y - a[1]) * ab[1]) / float(ab @ ab), 0.0, 1.0)
        d = np.minimum(d, np.hypot(x - a[0] - t * ab[0], y - a[1] - t * ab[1]))
    return d


def _finger_owner(points: dict, shape: tuple[int, int]) -> np.ndarray:
    """Per pixel, the finger (1-5) whose chain of landmarks lies nearest (0 where none is
    annotated): the strips of two fingers never overlap, so a bone moves with its own finger only."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    best = np.full(shape, np.inf, np.float32)
    owner = np.zeros(shape, np.int8)
    for finger, chain in FINGER_CHAINS.items():
        pts = [points[c] for c in chain if c in points]
        if len(pts) < 2:
            continue
        d = _dist_to_polyline(xx, yy, np.asarray(pts, float)).astype(np.float32)
        owner[d < best] = finger
        best = np.minimum(best, d)
    return owner


def _chain_joints(src: Source, names) -> list[tuple[int, tuple, int, str]]:
    """``(finger, chain, k, joint)`` for each joint of ``names`` whose chain of landmarks, from
    it to the fingertip, ``src`` has."""
    return [(finger, chain, k, joint) for finger, chain in FINGER_CHAINS.items() for k, joint in enumerate(chain[:-1])
            if joint in names and all(c in src.points for c in chain[k:])]


def _joint_seam(src: Source, smooth: np.ndarray, chain: tuple, k: int, scale: float):
    """Joint ``chain[k]``'s seam (:func:`_seam`): the point ``p`` it is traced about, the joint's
    distal axis ``u``, the bone's half-width and the seam's ``(s, t(s))``."""
    joint = chain[k]
    p = np.asarray(src.points[joint], float)
    u = _axis(src.points, chain, k)
    half = 0.5 * distal_bone_width_mm(joint) * scale
    gap = TYPICAL_GAP_MM[joint_type(joint)] * scale
    window = (-gap + src.window_mm[0] * scale, src.window_mm[1] * scale)
    if src.centre_on_bone:
        p = p + _bone_offset(smooth, p, u, half, window) * np.array([-u[1], u[0]])
    s, ts = _seam(smooth, p, u, half, window, 0.8 * scale, -gap, src.min_share, src.wide, src.path)
    return p, u, half, s, ts


def _seam_points(p: np.ndarray, u: np.ndarray, half: float, s: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """The seam's points ``(x, y)`` over the bone (``|s| <= half``), for ``split_off``."""
    on_bone = np.abs(s) <= half
    return p + s[on_bone, None] * np.array([-u[1], u[0]]) + ts[on_bone, None] * u


def _smoothed(src: Source, scale: float) -> np.ndarray:
    """The radiograph smoothed as the seams are searched in."""
    return ndi.gaussian_filter(src.image, max(1.0, 0.12 * scale))


def render(src: Source, d_px: dict, *, scale: float):
    """The follow-up with narrowing ``d_px[J]`` (px of the radiograph) at each joint J, each
    joint's distal axis (for the truth) and its seam's points ``(x, y)`` (for ``split_off``).

    The content at ``y`` moves by the sum of ``-d_J u_J`` over the joints J whose seam it lies
    distal of, judged where it lies in the baseline; each output pixel ``x`` shows the content
    at the ``y`` with ``y + motion(y) = x`` (a fixed point, a few steps). Judged at ``x`` instead,
    a joint's seam would stay where the joints proximal of it had moved it from, and a distal
    bone's end plate within their summed narrowing of the seam would not move with its bone."""
    img = src.image
    smooth = _smoothed(src, scale)
    rows, cols = img.shape
    axes, seams, strips = {}, {}, []
    margin = 2 + sum(abs(v) for v in d_px.values())  # how far any content moves
    for finger, chain, k, joint in _chain_joints(src, d_px):
        p, u, half, s, ts = _joint_seam(src, smooth, chain, k, scale)
        axes[joint] = u
        seams[joint] = _seam_points(p, u, half, s, ts)
        # the finger's strip, soft tissue included: within 1.8 `half` of the chain from the
        # seam to beyond the tip, ramping to 0 at 2.5 `half`
        tip = np.asarray(src.points[chain[-1]], float)
        line = np.array([p + np.median(ts) * u] + [np.asarray(src.points[c], float) for c in chain[k + 1:]]
                        + [tip + 0.25 * (tip - np.asarray(src.points[chain[-2]], float))])
        lo = np.floor(line.min(axis=0) - 2.5 * half - margin).astype(int).clip(0)
        hi = np.minimum(np.ceil(line.max(axis=0) + 2.5 * half + margin).astype(int), [cols - 1, rows - 1])
        strips.append((finger, d_px[joint], p, u, s, ts, line, half,
                       (slice(lo[1], hi[1] + 1), slice(lo[0], hi[0] + 1))))
    owner = _finger_owner(src.points, img.shape)

    def motion(xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        """(dx, dy) of the content at baseline positions ``(xx, yy)``."""
        out = np.zeros((2, *xx.shape))
        for finger, d, p, u, s, ts, line, half, box in strips:
            x, y = xx[box], yy[box]
            w = np.clip((2.5 * half - _dist_to_polyline(x, y, line)) / (0.7 * half), 0.0, 1.0)
            # distal of the seam: the axial coordinate beyond t(s) at the pixel's lateral offset
            rel_x, rel_y = x - p[0], y - p[1]
            distal = rel_x * u[0] + rel_y * u[1] > np.interp(-rel_x * u[1] + rel_y * u[0], s, ts)
            mine = owner[np.clip(np.rint(y).astype(int), 0, rows - 1), np.clip(np.rint(x).astype(int), 0, cols - 1)]
            w = w * distal * (mine == finger)
            out[0][box] -= d * u[0] * w
            out[1][box] -= d * u[1] * w
        return out

    yy, xx = np.mgrid[0:rows, 0:cols].astype(float)
    src_x, src_y = xx, yy
    for _ in range(3):
        move = motion(src_x, src_y)
        src_x, src_y = xx - move[0], yy - move[1]
    moved = ndi.map_coordinates(img, [src_y, src_x], order=3, mode="nearest")
    return moved, axes, seams


def rigid(img: np.ndarray, angle_deg: float, shift_xy: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """``img`` rotated by ``angle_deg`` (clockwise on screen) about its centre and shifted;
    returns the image and the 2x3 map from input (x, y) to output (x, y)."""
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    c = (np.array(img.shape[::-1], float) - 1) / 2
    t = c + np.asarray(shift_xy, float) - rot @ c
    inv = rot.T
    # scipy works in (row, col): out[o] = in[M o + off]
    m_rc = inv[::-1, ::-1]
    off_rc = (-(inv @ t))[::-1]
    out = ndi.affine_transform(img, m_rc, offset=off_rc, order=3, mode="nearest")
    return out, np.hstack([rot, t[:, None]])


def make_pair(src: Source, rng: np.random.Generator, *, max_px: float, null: bool, noise: float,
              max_angle: float, max_shift: float):
    scale = hand_scale_px_per_mm(hand_from_points(src.points, side="L"))
    d = {j: (0.0 if null else float(rng.uniform(-max_px, max_px))) for j in JOINT_NAMES}
    fol, axes, seams = render(src, d, scale=scale)
    angle = float(rng.uniform(-max_angle, max_angle))
    shift = tuple(rng.uniform(-max_shift, max_shift, 2))
    fol, m = rigid(fol, angle, shift)
    sd = noise * float(np.ptp(src.image))
    base = src.image + rng.normal(0, sd, src.image.shape)
    fol = fol + rng.normal(0, sd, fol.shape)
    fol_pts = {k: tuple(m[:, :2] @ np.asarray(v, float) + m[:, 2]) for k, v in src.points.items()}
    return base, fol, d, axes, fol_pts, seams


def truth_in_crop(d: float, u: np.ndarray, box_angle_deg: float) -> float:
    """The narrowing along the crop's axis: d times the cosine between the joint's axis and
    the box's distal direction."""
    a = math.radians(box_angle_deg)
    return d * float(u @ np.array([math.sin(a), -math.cos(a)]))


def split_offset(labels: np.ndarray, box, seam: np.ndarray) -> float:
    """Median row distance (crop px, + = jsnq's split below the seam) between jsnq's split line
    and the rendered seam, over the seam's central half, in the baseline crop."""
    from jsnq.labels import line_from_labels

    inv = box.transform().inverse()
    q = inv.apply(seam[len(seam) // 4: 3 * len(seam) // 4])
    line = line_from_labels(labels)
    cols = np.clip(np.round(q[:, 0]).astype(int), 0, labels.shape[1] - 1)
    return float(np.nanmedian(line[cols] - q[:, 1]))


def run_case(src: Source, rng, args, config: MeasureConfig):
    base, fol, d, axes, fol_pts, seams = make_pair(src, rng, max_px=args.max_px, null=args.null, noise=args.noise,
                                               max_angle=args.max_angle, max_shift=args.max_shift)
    hands = None
    if args.hands == "truth":
        hands = [hand_from_points(src.points, side="L", shape=base.shape, source="baseline"),
                 hand_from_points(fol_pts, side="L", shape=fol.shape, source="follow-up")]
    t0 = time.perf_counter()
    hm = measure_hand(base.astype(np.float32), fol.astype(np.float32), spacing_mm=SPACING_MM, hands=hands,
                      config=config)
    elapsed = time.perf_counter() - t0
    out = []
    for joint in JOINT_NAMES:
        if joint not in axes:
            continue
        m = hm.joints.get(joint)
        row = {"source": src.name, "joint": joint, "type": joint_type(joint), "d": d[joint], "measured": m is not None}
        if m is not None:
            box = hm.crops[joint].boxes[0]
            truth = truth_in_crop(d[joint], axes[joint], box.angle_deg)
            est = m.narrowing_mm / SPACING_MM
            se = m.narrowing_se_mm / SPACING_MM
            row.update(truth=truth, est=est, se=se, err=est - truth, z=(est - truth) / se if se > 0 else float("nan"),
                       reliable=bool(m.reliable), reasons="; ".join(m.reasons),
                       split_off=split_offset(m.labels, box, seams[joint]))
        else:
            row.update(reliable=False, reasons=hm.errors.get(joint, ""))
        out.append(row)
    return out, elapsed


def summarise(rows: list[dict]) -> list[list]:
    table = []
    for typ in (*TYPES, "all"):
        rs = [r for r in rows if typ == "all" or r["type"] == typ]
        if not rs:
            continue
        meas = [r for r in rs if r["measured"]]
        ok = [r for r in meas if r["reliable"]]
        bad = [r for r in meas if not r["reliable"]]
        e = np.array([r["err"] for r in ok])
        z = np.array([r["z"] for r in ok])
        eb = np.array([r["err"] for r in bad])
        table.append([typ, len(rs), f"{len(meas) / len(rs):.0%}", f"{len(ok) / len(rs):.0%}",
                      f"{np.sqrt(np.mean(e ** 2)):.3f}" if e.size else "-",
                      f"{np.abs(e).max():.3f}" if e.size else "-",
                      f"{np.sqrt(np.mean(z ** 2)):.2f}" if z.size else "-",
                      f"{np.abs(z).max():.2f}" if z.size else "-",
                      f"{np.sqrt(np.mean(eb ** 2)):.3f} ({eb.size})" if eb.size else "-"])
    return table


#: How far (crop px) the rendered seam is moved into either bone for ``--misplaced``.
MISPLACED_PX = (8, 12, 20, 30)


def misplaced(sources: list[Source], rng, noise: float) -> None:
    """Issue 20's check of the split check: in each source's baseline crop (1 % noise, joints
    from the locator), the rendered seam as the split line, then moved +-8..+-30 crop px into
    either bone; a line is caught when :func:`jsnq.segment.profile.split_problem` says it does
    not lie in a joint space (which fails the pair)."""
    from jsnq.hand.crops import joint_crops
    from jsnq.hand.locate import find_joints
    from jsnq.segment.profile import search_columns, split_problem, valley_fraction

    counts: dict = {}
    for src in sources:
        scale = hand_scale_px_per_mm(hand_from_points(src.points, side="L"))
        smooth = _smoothed(src, scale)
        seams = {joint: _seam_points(*_joint_seam(src, smooth, chain, k, scale))
                 for _, chain, k, joint in _chain_joints(src, JOINT_NAMES)}
        base = src.image + rng.normal(0, noise * float(np.ptp(src.image)), src.image.shape)
        hand = find_joints(base.astype(np.float32))
        for joint, seam in seams.items():
            if joint not in hand.joints:
                continue
            try:
                crops = joint_crops([base], [hand], joint)
            except ValueError:
                continue
            crop = crops.images[0]
            q = crops.boxes[0].transform().inverse().apply(seam)
            order = np.argsort(q[:, 0])
            line = np.interp(np.arange(crop.shape[1]), q[order, 0], q[order, 1])
            c0, c1 = search_columns(crop.shape[1])
            for shift in (0, *MISPLACED_PX, *(-k for k in MISPLACED_PX)):
                moved = line + shift
                if moved[c0:c1 + 1].min() < 0 or moved[c0:c1 + 1].max() > crop.shape[0] - 1:
                    continue
                caught = split_problem(valley_fraction(crop, moved)) is not None
                for key in ((joint_type(joint), abs(shift)), ("all", abs(shift))):
                    n, c = counts.get(key, (0, 0))
                    counts[key] = (n + 1, c + caught)
        print(f"  {src.name}: done", file=sys.stderr, flush=True)
    print("\n## the split check on misplaced lines (the rendered seam moved by +-k crop px into either bone)\n")
    head = ["type", "seam itself flagged", *(f"+-{k} px caught" for k in MISPLACED_PX), "all moved caught"]
    table = []
    for typ in (*TYPES, "all"):
        if (typ, 0) not in counts:
            continue
        n0, c0_ = counts[(typ, 0)]
        moved_n = sum(counts.get((typ, k), (0, 0))[0] for k in MISPLACED_PX)
        moved_c = sum(counts.get((typ, k), (0, 0))[1] for k in MISPLACED_PX)
        table.append([typ, f"{c0_}/{n0}", *(f"{counts.get((typ, k), (0, 0))[1]}/{counts.get((typ, k), (0, 0))[0]}"
                                            for k in MISPLACED_PX), f"{moved_c}/{moved_n} ({moved_c / max(1, moved_n):.0%})"])
    print(markdown_table(head, table))


HEADER = ["type", "joints", "measured", "trusted", "RMS error trusted (px)", "worst trusted (px)",
          "error/SE RMS", "max |error/SE|", "RMS error flagged (n)"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--atlas", type=int, default=6, help="held-out atlas hands (at most 12)")
    ap.add_argument("--no-ra", action="store_true", help="leave out the RA hand-pair's radiographs")
    ap.add_argument("--draws", type=int, default=2, help="renders per source")
    ap.add_argument("--null", action="store_true", help="null pairs: no narrowing, rigid motion and noise only")
    ap.add_argument("--max-px", type=float, default=1.5)
    ap.add_argument("--noise", type=float, default=0.01, help="white noise SD, fraction of the image's range")
    ap.add_argument("--max-angle", type=float, default=3.0)
    ap.add_argument("--max-shift", type=float, default=5.0)
    ap.add_argument("--hands", choices=("locator", "truth"), default="locator",
                    help="joints from jsnq's locator (as a user runs it) or the landmarks")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write every joint's row here")
    ap.add_argument("--misplaced", action="store_true",
                    help="instead: does the split check catch the rendered seam moved into a bone?")
    args = ap.parse_args()
    if not (DATA / "hand-landmarks").is_dir():
        sys.exit(f"needs {DATA}/hand-landmarks and hand-pair (set JSNQ_DATA)")
    sources = atlas_sources(args.atlas) + ([] if args.no_ra else ra_sources())
    rng = np.random.default_rng(args.seed)
    if args.misplaced:
        misplaced(sources, rng, args.noise)
        return
    config = MeasureConfig()
    rows, times = [], []
    for src in sources:
        for _ in range(args.draws):
            r, t = run_case(src, rng, args, config)
            rows += r
            times.append(t)
            print(f"  {src.name}: {sum(x['reliable'] for x in r)}/{len(r)} trusted, {t:.1f} s", file=sys.stderr,
                  flush=True)
    what = "null pairs" if args.null else f"known narrowing, uniform +-{args.max_px} px"
    print(f"\n## {what}; joints from the {args.hands}; noise {args.noise:.0%}, rigid +-{args.max_angle} deg, "
          f"+-{args.max_shift} px; {args.draws} draw(s) per source\n")
    print(f"machine: {machine()}; median {np.median(times):.1f} s per hand pair (load {os.getloadavg()[0]:.1f})\n")
    for group, pick in (("RA hand-pair", lambda r: r["source"].startswith("RA")),
                        ("atlas hands", lambda r: r["source"].startswith("atlas"))):
        sub = [r for r in rows if pick(r)]
        if sub:
            print(f"### {group} (errors in px of the radiograph)\n")
            print(markdown_table(HEADER, summarise(sub)))
            print()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
