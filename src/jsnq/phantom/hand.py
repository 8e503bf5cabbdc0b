"""A synthetic whole-hand radiograph at several visits, with known joint positions and narrowing.

Two halves, kept apart as in :mod:`jsnq.phantom.joint`:

* **sampling** -- :func:`sample_hand_params` turns a random generator into a frozen
  :class:`HandParams` (bone sizes, finger pose, joint gaps, the narrowing of every joint at
  every visit, each visit's global hand motion, the integer seeds of texture and noise);
* **rendering** -- :func:`render_hand` turns it deterministically into one image per visit
  and the ground truth (:class:`HandPhantom`).

Scene (mm, then pixels at ``spacing_mm``): 19 bones -- metacarpals and phalanges of five
fingers -- laid out as a left hand in PA view, fingers up, thumb on the right of the image (a
right hand is the mirror image). Each bone is a smooth signed-distance shape in its own frame
``(u, v)`` (``u`` across, ``v`` along the bone towards the fingertip, ``v = 0`` at the centre
of its base): a half-width that flares from the shaft to the base and the head, a slightly
concave base and a convex head. A bone is drawn as ``inside * (bone_level + texture) + rim``:
a bright cortical rim, and a band-limited random texture attached to the bone (it moves with
it). Soft tissue is a smooth union of capsules around each finger and the palm; the
background is constant; projection is additive, so overlapping bones add up. Each image is
blurred by a Gaussian (``blur_sigma_px``) and gets independent white noise.

Motion from visit 0 to visit ``k``: every bone moves by the visit's global similarity
``G_k`` (rotation, shift, scale about the image centre) after a translation that carries
the narrowing: at each joint ``j`` the distal bone, and every bone beyond it on the finger,
moves towards the proximal bone by ``narrowing_mm[j][k]`` along the distal bone's axis. The
narrowing of joint ``j`` at visit ``k`` is therefore exactly ``narrowing_mm[j][k]`` (mm of
the visit-0 image; ``narrowing_mm[j][0] = 0``). The soft tissue moves with ``G_k``. The
finger pose does not change between visits (only the global motion), a simplification.

Landmarks (:attr:`HandPhantom.hands`): each joint's ``(x, y)`` is the centre of its distal
bone's base (the Digital Hand Atlas convention), in pixels of each visit's image, and
``axis_deg`` the distal bone's axis (clockwise from image up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
from scipy import ndimage

from ..geometry import Similarity
from ..hand.anatomy import BASE_WIDTH_MM, BONES, HEAD_WIDTH_MM, JOINT_BONES, LENGTH_MM, SHAFT_WIDTH_MM
from ..hand.types import JOINT_NAMES, Hand, Joint
from .shapes import plane_waves, smooth_max, smoothstep, wave_bank

__all__ = ["HandParams", "HandPhantom", "sample_hand_params", "render_hand", "make_hand"]

SIDES = ("L", "R")
_EDGE_PX = 1.0

# Layout of a left hand in mm, x to the right (towards the thumb), y up, origin at the wrist:
# each finger's metacarpal base and its bones' axis angles (deg, clockwise from up).
_BASE_MM = {1: (20.0, -4.0), 2: (11.0, 2.0), 3: (1.0, 4.0), 4: (-8.5, 2.0), 5: (-17.0, -1.5)}
_AXES_DEG = {1: (42.0, 32.0, 26.0), 2: (7.0, 6.0, 5.0, 4.0), 3: (0.0, 0.0, 0.0, 0.0),
             4: (-6.0, -8.0, -8.0, -8.0), 5: (-13.0, -18.0, -19.0, -20.0)}
_GAP_MM = {"MCP": 1.6, "IP": 1.1, "PIP": 1.2, "DIP": 0.9}


def _jtype(name: str) -> str:
    return name.rstrip("12345")


@dataclass(frozen=True)
class HandParams:
    """Everything :func:`render_hand` needs (lengths in mm unless stated).

    Attributes:
        side: ``"L"`` or ``"R"``.
        shape: ``(rows, cols)`` of every visit's image.
        spacing_mm: pixel spacing of the images.
        wrist_xy_px: where the layout's origin (the wrist) lies in the visit-0 image, (x, y).
        lengths_mm, base_widths_mm, shaft_widths_mm, head_widths_mm: per bone (see
            :mod:`jsnq.hand.anatomy` for the names).
        axes_deg: per bone, its axis (clockwise from up) in the left-hand layout.
        bases_mm: per finger (1-5), the metacarpal base ``(x, y)`` (x towards the thumb, y up).
        gaps_mm: per joint, the joint space width at its centre at visit 0.
        narrowing_mm: per joint, the cumulative narrowing at each visit (first 0).
        motions: per visit, the global similarity visit 0 -> visit k in pixels, about the
            image centre (first the identity).
        bone_level, cortex_level, soft_tissue_level, background_level: intensities.
        texture_contrast, texture_wavelength_mm: bone texture (band-limited random field).
        blur_sigma_px, noise_sigma: blur, and white noise SD as a fraction of the image's range.
        texture_seed, noise_seed: integer seeds.
    """

    side: str
    shape: tuple[int, int]
    spacing_mm: float
    wrist_xy_px: tuple[float, float]
    lengths_mm: Mapping[str, float]
    base_widths_mm: Mapping[str, float]
    shaft_widths_mm: Mapping[str, float]
    head_widths_mm: Mapping[str, float]
    axes_deg: Mapping[str, float]
    bases_mm: Mapping[int, tuple[float, float]]
    gaps_mm: Mapping[str, float]
    narrowing_mm: Mapping[str, tuple[float, ...]]
    motions: tuple[Similarity, ...]
    bone_level: float = 0.30
    cortex_level: float = 0.22
    soft_tissue_level: float = 0.16
    background_level: float = 0.08
    texture_contrast: float = 0.07
    texture_wavelength_mm: tuple[float, float] = (0.8, 4.0)
    blur_sigma_px: float = 0.6
    noise_sigma: float = 0.01
    texture_seed: int = 0
    noise_seed: int = 0

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"side must be one of 'L', 'R'; got {self.side!r}")
        if not self.motions or len({len(v) for v in self.narrowing_mm.values()} | {len(self.motions)}) != 1:
            raise ValueError("every joint needs one narrowing per visit, as many as the motions")
        if not 0.02 <= self.spacing_mm <= 1.0:
            raise ValueError(f"spacing_mm must be in [0.02, 1], got {self.spacing_mm!r}")
        if any(g <= 0 for g in self.gaps_mm.values()):
            raise ValueError("every joint gap must be positive")
        for j, n in self.narrowing_mm.items():
            if n[0] != 0 or max(n) >= self.gaps_mm[j]:
                raise ValueError(f"{j}: the narrowing must start at 0 and stay below the gap ({self.gaps_mm[j]} mm)")

    @property
    def n_visits(self) -> int:
        return len(self.motions)


@dataclass(frozen=True)
class HandPhantom:
    """Rendered visits and their truth.

    Attributes:
        images: one float32 image ``[row, col]`` per visit.
        hands: per visit, the true :class:`~jsnq.hand.types.Hand` (all 14 joints, score 1).
        joint_centres: per visit, joint -> centre of the joint space ``(x, y)`` px.
        bone_motions: per visit, bone -> the similarity visit 0 -> visit k (pixels).
        narrowing_mm: joint -> cumulative narrowing per visit (mm of the visit-0 image).
        params: what was rendered.
    """

    images: tuple[np.ndarray, ...] = field(repr=False)
    hands: tuple[Hand, ...]
    joint_centres: tuple[Mapping[str, tuple[float, float]], ...] = field(repr=False)
    bone_motions: tuple[Mapping[str, Similarity], ...] = field(repr=False)
    narrowing_mm: Mapping[str, tuple[float, ...]]
    params: HandParams = field(repr=False)

    @property
    def spacing_mm(self) -> float:
        return self.params.spacing_mm

    def joint_motions(self, joint: str, visit: int) -> tuple[Similarity, Similarity]:
        """(upper = distal bone, lower = proximal bone) similarities visit 0 -> ``visit`` (image px)."""
        prox, dist = JOINT_BONES[joint]
        return self.bone_motions[visit][dist], self.bone_motions[visit][prox]


# --------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------
def sample_hand_params(rng: np.random.Generator, *, side: str = "L", n_visits: int = 2, spacing_mm: float = 0.25,
                       size_range: tuple[float, float] = (0.92, 1.08), bone_variation: float = 0.04,
                       pose_deg: float = 4.0, max_rotation_deg: float = 6.0, max_shift_px: float = 15.0,
                       max_log_scale: float = 0.03, narrowing_step_mm: tuple[float, float] = (-0.05, 0.25),
                       noise_sigma: float = 0.01, margin_mm: float = 12.0) -> HandParams:
    """Draw a hand and its visits.

    Args:
        rng: the only source of randomness.
        side: ``"L"`` or ``"R"``.
        n_visits: number of visits (>= 1).
        spacing_mm: pixel spacing of the images.
        size_range: the hand's overall size factor against the typical adult (uniform).
        bone_variation: relative SD of each bone's own length and widths about that size.
        pose_deg: each bone's axis varies by up to this much (uniform) from the typical pose.
        max_rotation_deg, max_shift_px, max_log_scale: the global motion of each later visit
            (uniform in +-these; positioning and magnification change between visits).
        narrowing_step_mm: each joint's narrowing changes from one visit to the next by a
            uniform draw in this range (mm).
        noise_sigma: white noise SD as a fraction of each image's range.
        margin_mm: free border around the hand in the image.
    """
    if side not in SIDES:
        raise ValueError(f"side must be one of 'L', 'R'; got {side!r}")
    if int(n_visits) < 1:
        raise ValueError(f"n_visits must be >= 1, got {n_visits!r}")
    size = float(rng.uniform(*size_range))
    var = lambda: size * float(np.clip(1.0 + bone_variation * rng.standard_normal(), 0.8, 1.2))  # noqa: E731
    names = [b for f in BONES for b in BONES[f]]
    lengths = {b: LENGTH_MM[b] * var() for b in names}
    widths = {}
    for b in names:
        k = var()
        widths[b] = (BASE_WIDTH_MM[b] * k, SHAFT_WIDTH_MM[b] * k, HEAD_WIDTH_MM[b] * k)
    axes = {}
    for f, bones in BONES.items():
        for b, a in zip(bones, _AXES_DEG[f]):
            axes[b] = a + float(rng.uniform(-pose_deg, pose_deg))
    bases = {f: (x * size, y * size) for f, (x, y) in _BASE_MM.items()}
    gaps = {j: _GAP_MM[_jtype(j)] * size * float(rng.uniform(0.85, 1.15)) for j in JOINT_NAMES}
    narrowing = {}
    for j in JOINT_NAMES:
        steps = rng.uniform(*narrowing_step_mm, size=int(n_visits) - 1)
        cum = np.concatenate([[0.0], np.cumsum(steps)])
        cum = np.minimum(cum, 0.6 * gaps[j])  # the joint never closes
        narrowing[j] = tuple(float(v) for v in cum)
    # Image size from the layout's extent (left hand, then mirrored when right).
    pts = _layout_points(lengths, widths, axes, bases, gaps)
    lo, hi = pts.min(axis=0) - margin_mm, pts.max(axis=0) + margin_mm
    lo[1] = min(lo[1], -25.0 * size)  # some wrist below the metacarpals
    cols = int(math.ceil((hi[0] - lo[0]) / spacing_mm))
    rows = int(math.ceil((hi[1] - lo[1]) / spacing_mm))
    wx = -lo[0] / spacing_mm
    wy = hi[1] / spacing_mm  # y up in mm -> rows down
    if side == "R":
        wx = cols - 1 - wx
    centre = ((cols - 1) / 2.0, (rows - 1) / 2.0)
    motions = [Similarity.identity(centre)]
    for _ in range(int(n_visits) - 1):
        motions.append(Similarity(math.exp(rng.uniform(-max_log_scale, max_log_scale)),
                                  math.radians(rng.uniform(-max_rotation_deg, max_rotation_deg)),
                                  float(rng.uniform(-max_shift_px, max_shift_px)),
                                  float(rng.uniform(-max_shift_px, max_shift_px)), centre))
    return HandParams(side=side, shape=(rows, cols), spacing_mm=float(spacing_mm), wrist_xy_px=(float(wx), float(wy)),
                      lengths_mm=lengths, base_widths_mm={b: w[0] for b, w in widths.items()},
                      shaft_widths_mm={b: w[1] for b, w in widths.items()},
                      head_widths_mm={b: w[2] for b, w in widths.items()}, axes_deg=axes, bases_mm=bases,
                      gaps_mm=gaps, narrowing_mm=narrowing, motions=tuple(motions), noise_sigma=float(noise_sigma),
                      texture_seed=int(rng.integers(2**31)), noise_seed=int(rng.integers(2**31)))


def _unit(deg: float) -> np.ndarray:
    """Distal direction (x right, y up) of an axis ``deg`` clockwise from up."""
    a = math.radians(deg)
    return np.array([math.sin(a), math.cos(a)])


def _chain(lengths, heads, axes, bases, gaps):
    """Left-hand layout in mm (x right, y up): bone -> (base centre, axis unit vector, head tip)."""
    out = {}
    for f, bones in BONES.items():
        p = np.array(bases[f], float)
        for k, b in enumerate(bones):
            d = _unit(axes[b])
            if k > 0:
                joint = next(j for j, (pb, db) in JOINT_BONES.items() if db == b)
                p = p + gaps[joint] * d
            tip = p + lengths[b] * d
            out[b] = (p, d, tip)
            p = tip
    return out


def _layout_points(lengths, widths, axes, bases, gaps) -> np.ndarray:
    chain = _chain(lengths, None, axes, bases, gaps)
    pts = []
    for b, (p, d, tip) in chain.items():
        r = 0.5 * widths[b][0] + 6.0
        n = np.array([d[1], -d[0]])
        pts += [p + r * n, p - r * n, tip + r * n + 8 * d, tip - r * n + 8 * d]
    return np.array(pts)


# --------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------
class _Frame:
    """A bone's frame in pixels of the visit-0 image: ``p = origin + u * across + v * along``."""

    def __init__(self, origin: np.ndarray, along: np.ndarray) -> None:
        self.origin, self.along = origin, along
        self.across = np.array([-along[1], along[0]])  # +x for a bone pointing up

    def local(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = x - self.origin[0], y - self.origin[1]
        return dx * self.across[0] + dy * self.across[1], dx * self.along[0] + dy * self.along[1]


def _geometry(p: HandParams):
    """Per bone: (frame in visit-0 pixels, length, base/shaft/head half-widths, base and head
    depths, in px); per joint: landmark, joint-space centre and distal axis (visit 0, px)."""
    s = p.spacing_mm
    heads = None
    chain = _chain(p.lengths_mm, heads, p.axes_deg, p.bases_mm, p.gaps_mm)
    wx, wy = p.wrist_xy_px
    mirror = -1.0 if p.side == "R" else 1.0

    def to_px(q: np.ndarray) -> np.ndarray:
        return np.array([wx + mirror * q[0] / s, wy - q[1] / s])

    bones = {}
    for b, (base, d, tip) in chain.items():
        along = np.array([mirror * d[0], -d[1]])  # image coords (y down)
        origin = to_px(base)
        length = p.lengths_mm[b] / s
        hb, hs, hh = (0.5 * w[b] / s for w in (p.base_widths_mm, p.shaft_widths_mm, p.head_widths_mm))
        bones[b] = (_Frame(origin, along), length, hb, hs, hh, 0.08 * hb, 0.45 * hh)
    joints = {}
    for j, (prox, dist) in JOINT_BONES.items():
        frame = bones[dist][0]
        pf, pl = bones[prox][0], bones[prox][1]
        head_tip = pf.origin + pl * pf.along
        landmark = frame.origin + bones[dist][5] * frame.along  # centre of the (concave) base
        axis = math.degrees(math.atan2(frame.along[0], -frame.along[1]))
        joints[j] = (landmark, 0.5 * (head_tip + landmark), axis, frame.along)
    return bones, joints


def _bone_sdf(u: np.ndarray, v: np.ndarray, length: float, hb: float, hs: float, hh: float, db: float,
              dh: float) -> np.ndarray:
    f = 0.18 * length
    hw = hs + (hb - hs) * np.exp(-np.maximum(v, 0.0) / f) + (hh - hs) * np.exp(-np.maximum(length - v, 0.0) / f)
    d_side = np.abs(u) - hw
    base = db * (1.0 - (u / hb) ** 2)            # concave base: its centre recessed distally by db
    head = length - dh * (u / hh) ** 2           # convex head
    return smooth_max(smooth_max(d_side, base - v, 1.5), v - head, 1.5)


def _bone_motions(p: HandParams, bones, joints, visit: int) -> dict[str, Similarity]:
    """Visit 0 -> ``visit`` similarity of every bone (pixels)."""
    g = p.motions[visit]
    out = {}
    for f, names in BONES.items():
        shift = np.zeros(2)
        for k, b in enumerate(names):
            if k > 0:
                j = next(j for j, (pb, db) in JOINT_BONES.items() if db == b)
                shift = shift - (p.narrowing_mm[j][visit] / p.spacing_mm) * joints[j][3]
            t = Similarity(1.0, 0.0, float(shift[0]), float(shift[1]), g.center)
            out[b] = g.compose(t)
    return out


def _local_affine(m: Similarity, frame: _Frame) -> tuple[np.ndarray, np.ndarray]:
    """``(u, v) = M @ (x, y) + off`` for the bone moved by ``m`` (pixels of the visit)."""
    inv = m.inverse().matrix()
    f = np.stack([frame.across, frame.along])
    return f @ inv[:2, :2], f @ (inv[:2, 2] - frame.origin)


def _soft_tissue(p: HandParams, bones, visit: int) -> np.ndarray:
    """Smooth union of capsules around every phalanx and metacarpal, and the palm; evaluated
    on a grid 4x coarser (the tissue is smooth over millimetres) and interpolated."""
    rows, cols = p.shape
    f = 4
    ys = np.arange(0, rows + f, f, dtype=np.float64)
    xs = np.arange(0, cols + f, f, dtype=np.float64)
    g_inv = p.motions[visit].inverse().matrix()
    qx = g_inv[0, 0] * xs[None, :] + g_inv[0, 1] * ys[:, None] + g_inv[0, 2]
    qy = g_inv[1, 0] * xs[None, :] + g_inv[1, 1] * ys[:, None] + g_inv[1, 2]
    soft = np.zeros(qx.shape)
    edge = 2.5 / p.spacing_mm
    for f_, names in BONES.items():
        r_finger = 0.5 * (bones[names[1]][2] + bones[names[1]][3]) + 2.5 / p.spacing_mm
        for n in names:
            frame, length = bones[n][0], bones[n][1]
            a = frame.origin - 0.5 * r_finger * frame.along
            b = frame.origin + (length + (r_finger if n == names[-1] else 0.5 * r_finger)) * frame.along
            if n == names[-1]:
                b = b - r_finger * frame.along
            ab = b - a
            t = np.clip(((qx - a[0]) * ab[0] + (qy - a[1]) * ab[1]) / float(ab @ ab), 0.0, 1.0)
            dist = np.hypot(qx - a[0] - t * ab[0], qy - a[1] - t * ab[1])
            chord = np.sqrt(np.clip(1.0 - (dist / r_finger) ** 2, 0.0, 1.0) * 0.7 + 0.3)
            soft = np.maximum(soft, smoothstep((r_finger - dist) / edge + 0.5) * chord)
    ends = np.array([bones[BONES[k][0]][0].origin for k in (2, 5)]
                    + [bones[BONES[k][0]][0].origin + bones[BONES[k][0]][1] * bones[BONES[k][0]][0].along
                       for k in (2, 5)])
    cx, cy = ends.mean(axis=0)
    rx = 0.5 * np.ptp(ends[:, 0]) + 8.0 / p.spacing_mm
    ry = 0.5 * np.ptp(ends[:, 1]) + 4.0 / p.spacing_mm
    palm = smoothstep((1.0 - np.hypot((qx - cx) / rx, (qy - cy) / ry)) * 8.0 + 0.5)
    wrist = smoothstep((0.8 * rx - np.abs(qx - cx)) / edge + 0.5) * smoothstep((qy - cy) / edge)
    soft = np.maximum(soft, np.maximum(palm, wrist))
    return ndimage.map_coordinates(soft, np.mgrid[0:rows, 0:cols] / float(f), order=1, mode="nearest")


def _render_visit(p: HandParams, bones, visit: int, motions: Mapping[str, Similarity]) -> np.ndarray:
    rows, cols = p.shape
    img = np.full(p.shape, p.background_level, dtype=np.float64)
    img += p.soft_tissue_level * _soft_tissue(p, bones, visit)
    lam = tuple(w / p.spacing_mm for w in p.texture_wavelength_mm)
    cortex = 0.9 / p.spacing_mm
    for k, (b, (frame, length, hb, hs, hh, db, dh)) in enumerate(bones.items()):
        m = motions[b]
        corners = np.array([frame.origin + s * hb * 1.3 * frame.across + v * frame.along
                            for s in (-1, 1) for v in (-db - 3, length + 3)])
        c = m.apply(corners)
        x0, y0 = np.floor(c.min(axis=0)).astype(int) - 3
        x1, y1 = np.ceil(c.max(axis=0)).astype(int) + 4
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, cols), min(y1, rows)
        if x1 <= x0 or y1 <= y0:
            continue
        xs, ys = np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64)
        mat, off = _local_affine(m, frame)
        u = mat[0, 0] * xs[None, :] + mat[0, 1] * ys[:, None] + off[0]
        v = mat[1, 0] * xs[None, :] + mat[1, 1] * ys[:, None] + off[1]
        d = _bone_sdf(u, v, length, hb, hs, hh, db, dh)
        tex = plane_waves(wave_bank(p.texture_seed, k, 48, lam, anisotropic=True), mat, off, xs, ys)
        inside = smoothstep(0.5 - d / _EDGE_PX)
        deep = smoothstep(0.5 - (d + cortex) / _EDGE_PX)
        img[y0:y1, x0:x1] += inside * (p.bone_level + p.texture_contrast * tex) + p.cortex_level * (inside - deep)
    if p.blur_sigma_px > 0:
        img = ndimage.gaussian_filter(img, p.blur_sigma_px, mode="nearest")
    if p.noise_sigma > 0:
        rng = np.random.default_rng([p.noise_seed, visit])
        img = img + rng.normal(0.0, p.noise_sigma * float(img.max() - img.min()), img.shape)
    return img.astype(np.float32)


def render_hand(params: HandParams) -> HandPhantom:
    """Render every visit of ``params`` (deterministic) with its truth."""
    if not isinstance(params, HandParams):
        raise ValueError(f"params must be a HandParams, got {type(params).__name__}")
    p = params
    bones, joints = _geometry(p)
    images, hands, centres, all_motions = [], [], [], []
    for k in range(p.n_visits):
        motions = _bone_motions(p, bones, joints, k)
        images.append(_render_visit(p, bones, k, motions))
        found, cen = {}, {}
        for j in JOINT_NAMES:
            landmark, centre, axis, _ = joints[j]
            up, lo = motions[JOINT_BONES[j][1]], motions[JOINT_BONES[j][0]]
            x, y = up.apply(landmark)
            found[j] = Joint(j, float(x), float(y), float(axis + p.motions[k].angle_deg), 1.0)
            # the joint-space centre moves half-way between the two bones
            cen[j] = tuple(float(c) for c in 0.5 * (up.apply(centre) + lo.apply(centre)))
        hands.append(Hand(side=p.side, joints=found, missing={}, shape=p.shape, spacing_mm=p.spacing_mm,
                          source=f"<phantom visit {k}>"))
        centres.append(cen)
        all_motions.append(motions)
    return HandPhantom(images=tuple(images), hands=tuple(hands), joint_centres=tuple(centres),
                       bone_motions=tuple(all_motions), narrowing_mm=dict(p.narrowing_mm), params=p)


def make_hand(seed: int = 0, **sample_kwargs) -> HandPhantom:
    """``render_hand(sample_hand_params(np.random.default_rng(seed), **sample_kwargs))``."""
    return render_hand(sample_hand_params(np.random.default_rng(seed), **sample_kwargs))
