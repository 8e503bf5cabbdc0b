"""Matching joint crops at every visit, cut from whole-hand radiographs.

Each crop shows its joint as the shipped networks know it (the 256 x 256 crops of
``finger-joints``): finger up, the joint's distal bone above, the joint space at the crop
centre, and the distal bone's base about :data:`TARGET_BASE_WIDTH_PX` wide.

* **Scale.** The hand's own scale (pixels per mm of typical anatomy) is the median, over the
  finger segments whose two joints were found, of the landmark distance divided by the
  typical bone length plus joint gap (:mod:`jsnq.hand.anatomy`). Times the typical width of
  the joint's distal bone, it gives that bone's width in the radiograph; the crop's zoom is
  the target width over it. One visit's scale (the baseline's) sets every visit's zoom, so
  all crops of a joint share one pixel spacing: ``crop spacing = image spacing / zoom``.
* **Placement.** The baseline's box is centred on the joint-space centre: half a typical
  joint gap proximal of the landmark (the landmark sits on the distal bone's base), rotated to
  the finger axis. A follow-up's box is not detected on its own: a finger region (twice the
  crop's field of view, half its resolution, a band along the finger) is cut around the
  follow-up's landmark, or where the baseline's joint lands under the similarity between the
  two hands' joints when the follow-up lacks it, and registered to the baseline's region (a
  coarse rotation/shift search, then a similarity fit); the baseline's box carried through
  that registration, then moved by the mean motion of the crop's upper and lower halves (fitted
  in the crop's field at half its resolution), is the follow-up's box. Where the follow-up's own landmark disagrees with
  the box carried by the hands' similarity (axis or position), both are registered and the
  better match kept: a landmark's axis hangs on the next landmark of its finger. Its zoom stays the baseline's (the registered
  scale is recorded: the per-bone registration absorbs a magnification change).

Every box is recorded in the radiograph's coordinates (:class:`CropBox`), so a number read in a
crop traces back to the image. Points are ``(x, y) = (col, row)``, angles in degrees clockwise
from image up (as :class:`~jsnq.hand.types.Joint`), arrays ``[row, col]``.
"""

from __future__ import annotations

import math
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy import ndimage

from ..errors import JsnqInputError
from ..geometry import Similarity, crop_centre
from ..register.classical import RegistrationOptions, fit_similarity, global_search
from ..register.warp import SplineImage, pixel_grid
from .anatomy import LENGTH_MM, SEGMENTS, distal_bone_width_mm, joint_type
from .types import Hand, Joint

__all__ = ["CROP_SIZE", "TARGET_BASE_WIDTH_PX", "TYPICAL_GAP_MM", "CropBox", "JointCrops", "hand_scale_px_per_mm",
           "joint_zoom", "baseline_box", "cut", "recentre", "Resampler", "place_followup", "joint_crops", "hand_similarity",
           "CropOutsideImage"]

#: Side of every crop (px): the networks' input size.
CROP_SIZE = 256
#: Width (px) of the upper bone's base in the networks' training crops: the median over the
#: 1,259 crops of ``finger-joints`` of the widest row of the upper-bone mask (quartiles 162
#: and 184 px). Their joint-space centre lies on row 129.5 (median), the crop centre.
TARGET_BASE_WIDTH_PX = 173.0
#: Typical joint-space width at the joint centre (mm), to step from the landmark (the distal
#: bone's base) to the joint-space centre, and to add to bone lengths between landmarks.
TYPICAL_GAP_MM = {"MCP": 1.6, "IP": 1.1, "PIP": 1.2, "DIP": 0.9}
#: The follow-up region: this many times the crop's field of view, ...
REGION_FACTOR = 2.0
#: ... sampled on this many pixels a side (a quarter of the crop's resolution: the region
#: only captures the motion; the crop-scale fit that follows gives the precision).
REGION_SIDE = 128
#: Half-width of the finger band registered in the region, in units of the bone's width.
REGION_BAND = 0.8
#: Registration of the regions: coarse to fine; a wide search in rotation, no scale search.
_REGION_OPTIONS = RegistrationOptions(bone_levels=((4.0, 2), (2.0, 2), (0.0, 1)), max_iter=40,
                                      search_angles_deg=tuple(float(a) for a in np.arange(-12.0, 12.1, 3.0)),
                                      search_scales=(1.0,), search_factor=2)
#: The difference of Gaussians (sigmas, crop px) whose correlation is the texture match.
TEXTURE_DOG = (1.4, 4.0)
#: The refinement in the crop's own field (at half its resolution); it leaves out this many
#: crop px either side of the centre row (the joint space) when it fits the two halves.
FINE_GAP_PX = 8
#: Its registration options, on the half-resolution crops: a blur of 1 of their px (2 crop
#: px), then none.
_FINE_OPTIONS = RegistrationOptions(bone_levels=((1.0, 1), (0.0, 1)), max_iter=30)
#: A region registration whose correlation ends below this is reported, not used.
MIN_REGION_NCC = 0.5
#: A follow-up landmark whose axis differs from the baseline's (carried by the hands'
#: similarity) by more than this, or whose position differs by more than MAX_GUESS_SHIFT of
#: the crop's field of view, is not trusted alone (:func:`joint_crops` also tries the carried
#: box): the region registration searches +-12 deg.
MAX_GUESS_ANGLE_DEG = 9.0
MAX_GUESS_SHIFT = 0.25
#: Fraction of a crop allowed outside the image before the joint is called cut off.
MAX_OUTSIDE_FRACTION = 0.02
#: Margin (px) a cut's window keeps beyond what its spline reads: the cubic spline's
#: prefilter (pole -0.268) carries 0.268^24 ~ 2e-14 of the window's edge that far.
SPLINE_MARGIN_PX = 24


class CropOutsideImage(JsnqInputError):
    """A joint's crop box reaches beyond the radiograph (the hand is cut off there)."""


@dataclass(frozen=True)
class CropBox:
    """Where one crop lies in its radiograph.

    Attributes:
        joint, visit: which joint, which visit (0 = baseline).
        source: the radiograph's file name.
        centre_xy: the crop centre in image pixels ``(x, y)``.
        angle_deg: the crop's "up" in the image, clockwise from image up (the finger axis).
        zoom: crop pixels per image pixel.
        size: ``(rows, cols)`` of the crop.
        spacing_mm: the crop's pixel spacing (image spacing / zoom), or None.
        method: ``"landmark"`` (placed on the located joint) or ``"registered"`` (a
            follow-up carried from the baseline's box by registering the finger regions).
        registration: for a registered box, the region fit: ``ncc``, ``texture_ncc`` (the
            fine texture's correlation, which tells one hand from two), ``scale``,
            ``angle_deg``, the distance ``moved_px`` (image px) from the initial guess and
            where that guess came from (``init``).
    """

    joint: str
    visit: int
    source: str
    centre_xy: tuple[float, float]
    angle_deg: float
    zoom: float
    size: tuple[int, int]
    spacing_mm: float | None
    method: str
    registration: Mapping[str, Any] = field(default_factory=dict)

    def transform(self) -> Similarity:
        """Crop pixels -> image pixels (a :class:`~jsnq.geometry.Similarity` about the crop centre)."""
        qc = crop_centre(self.size)
        return Similarity(1.0 / self.zoom, math.radians(self.angle_deg), self.centre_xy[0] - qc[0],
                          self.centre_xy[1] - qc[1], qc)

    def to_image(self, points: Any) -> np.ndarray:
        """Crop points ``(..., 2)`` as ``(x, y)`` -> image points."""
        return self.transform().apply(np.asarray(points, dtype=float))

    @property
    def corners(self) -> np.ndarray:
        """The crop's corners in the image, ``(4, 2)`` ``(x, y)``: top-left, top-right,
        bottom-right, bottom-left of the crop (pixel-centre convention, outer edges)."""
        h, w = self.size
        return self.to_image([(-0.5, -0.5), (w - 0.5, -0.5), (w - 0.5, h - 0.5), (-0.5, h - 0.5)])

    def to_dict(self) -> dict[str, Any]:
        return {"joint": self.joint, "visit": self.visit, "source": self.source,
                "centre_x": self.centre_xy[0], "centre_y": self.centre_xy[1], "angle_deg": self.angle_deg,
                "zoom": self.zoom, "rows": self.size[0], "cols": self.size[1], "spacing_mm": self.spacing_mm,
                "method": self.method, "corners": [[float(x), float(y)] for x, y in self.corners],
                "registration": dict(self.registration)}


@dataclass(frozen=True)
class JointCrops:
    """One joint's crops at every visit, in visit order (the first is the baseline)."""

    joint: str
    boxes: tuple[CropBox, ...]
    images: tuple[np.ndarray, ...] = field(repr=False, compare=False)

    @property
    def spacing_mm(self) -> float | None:
        return self.boxes[0].spacing_mm


# -- scale ------------------------------------------------------------------------------------
def hand_scale_px_per_mm(hand: Hand) -> float:
    """The hand's size in pixels per mm of typical anatomy: the median over the finger segments
    (MCP-PIP, PIP-DIP, MCP1-IP1) found, of the landmark distance over the typical bone length
    plus gap. ``nan`` when no segment was found."""
    ratios = []
    for a, b, bone in SEGMENTS:
        if a in hand.joints and b in hand.joints:
            ja, jb = hand.joints[a], hand.joints[b]
            ratios.append(math.hypot(ja.x - jb.x, ja.y - jb.y) / (LENGTH_MM[bone] + TYPICAL_GAP_MM[joint_type(b)]))
    return float(np.median(ratios)) if ratios else float("nan")


def joint_zoom(hand: Hand, joint: str, *, scale_px_per_mm: float | None = None) -> float:
    """Crop pixels per image pixel for ``joint``: :data:`TARGET_BASE_WIDTH_PX` over the
    distal bone's base width in the image (typical width x the hand's scale)."""
    s = hand_scale_px_per_mm(hand) if scale_px_per_mm is None else scale_px_per_mm
    if not math.isfinite(s) or s <= 0:
        raise JsnqInputError(hand.source, "cannot tell the hand's scale: no two joints of one finger were found")
    return TARGET_BASE_WIDTH_PX / (s * distal_bone_width_mm(joint))


# -- boxes and cutting ----------------------------------------------------------------------
def _unit(angle_deg: float) -> np.ndarray:
    """Distal direction in image coordinates for an axis clockwise from up."""
    a = math.radians(angle_deg)
    return np.array([math.sin(a), -math.cos(a)])


def baseline_box(joint: Joint, zoom: float, *, scale_px_per_mm: float, source: str, spacing_mm: float | None,
                 visit: int = 0, size: int = CROP_SIZE) -> CropBox:
    """The box of a located joint: centred half a typical gap proximal of the landmark."""
    step = 0.5 * TYPICAL_GAP_MM[joint_type(joint.name)] * scale_px_per_mm
    c = np.array([joint.x, joint.y]) - step * _unit(joint.axis_deg)
    return CropBox(joint.name, visit, source, (float(c[0]), float(c[1])), float(joint.axis_deg), float(zoom),
                   (size, size), None if spacing_mm is None else spacing_mm / zoom, "landmark")


def _scaled(box: CropBox, factor: float, side: int | None = None) -> CropBox:
    """The same centre and angle, ``factor`` times the field of view, ``side`` x ``side`` px
    (default: the box's own size)."""
    size = box.size if side is None else (int(side), int(side))
    zoom = box.zoom / factor * size[1] / box.size[1]
    return CropBox(box.joint, box.visit, box.source, box.centre_xy, box.angle_deg, zoom, size,
                   None if box.spacing_mm is None else box.spacing_mm * box.zoom / zoom, box.method, box.registration)


class Resampler:
    """A radiograph ``[row, col]`` ready for many crops: held once as float64. Each cut filters
    only the window of it that the crop reads (:func:`cut`), so no whole-radiograph filter is
    ever computed, and threads cutting different joints share nothing but the array."""

    def __init__(self, image: np.ndarray) -> None:
        self.array = np.asarray(image, dtype=np.float64)
        self.shape = self.array.shape


def _resampler(image: np.ndarray | Resampler) -> Resampler:
    return image if isinstance(image, Resampler) else Resampler(image)


def _antialias_sigma(zoom: float) -> float:
    """The Gaussian prefilter (image px) of a crop coarser than the image (``zoom`` < 1),
    rounded to 1/4 px; 0 otherwise."""
    return round(2.0 * math.sqrt(1.0 / zoom ** 2 - 1.0)) / 4.0 if zoom < 1.0 else 0.0


def _window_sample(array: np.ndarray, pts: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    """Cubic-spline values of ``array`` (blurred by ``sigma``) at the ``(N, 2)`` points ``(x, y)``,
    computed on the window of ``array`` around the ``valid`` points only. The window reaches
    :data:`SPLINE_MARGIN_PX` beyond the blur's support, so within it the blur and the spline's
    prefilter equal those of the whole radiograph (to ~1e-14 of the intensities); the values at
    invalid points are meaningless."""
    if not valid.any():
        return np.zeros(len(pts))
    h, w = array.shape
    m = SPLINE_MARGIN_PX + (int(4.0 * sigma + 0.5) if sigma > 0 else 0)
    x, y = pts[valid, 0], pts[valid, 1]
    x0, x1 = max(0, int(math.floor(x.min())) - m), min(w, int(math.ceil(x.max())) + m + 1)
    y0, y1 = max(0, int(math.floor(y.min())) - m), min(h, int(math.ceil(y.max())) + m + 1)
    window = array[y0:y1, x0:x1]
    if sigma > 0:
        window = ndimage.gaussian_filter(window, sigma)
    vals, _ = SplineImage(window).sample(pts - np.array([x0, y0], dtype=float))
    return vals


def _resample(image: np.ndarray | Resampler, box: CropBox) -> np.ndarray:
    """``image`` resampled into ``box``: float64 ``[row, col]``, NaN where the box lies outside."""
    r = _resampler(image)
    pts = box.transform().apply(pixel_grid(box.size))
    h, w = r.shape
    valid = (pts[:, 0] >= -0.5) & (pts[:, 0] <= w - 0.5) & (pts[:, 1] >= -0.5) & (pts[:, 1] <= h - 0.5)
    vals = _window_sample(r.array, pts, valid, _antialias_sigma(box.zoom))
    return np.where(valid, vals, np.nan).reshape(box.size)


def _filled(raw: np.ndarray, box: CropBox, allow_outside: bool) -> np.ndarray:
    """A :func:`_resample` result as :func:`cut` returns it: the outside filled with the nearest
    edge value (or refused), float32."""
    bad = np.isnan(raw)
    if not bad.any():
        return raw.astype(np.float32)
    if bad.mean() > MAX_OUTSIDE_FRACTION and not allow_outside:
        raise CropOutsideImage(box.source, f"{box.joint}: {100 * bad.mean():.0f} % of its crop lies outside the "
                               "image (the hand is cut off at the image edge there)")
    if bad.all():
        return np.zeros(box.size, np.float32)
    idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
    return raw[tuple(idx)].astype(np.float32)


def cut(image: np.ndarray | Resampler, box: CropBox, *, allow_outside: bool = False) -> np.ndarray:
    """Resample ``image`` [row, col] (or a :class:`Resampler` of it) into ``box`` (cubic
    spline; a Gaussian prefilter when the crop is coarser than the image). float32
    ``[row, col]`` of ``box.size``.

    Raises:
        CropOutsideImage: more than :data:`MAX_OUTSIDE_FRACTION` of the box lies outside the
            image (unless ``allow_outside``, which fills it with the nearest edge value).
    """
    return _filled(_resample(image, box), box, allow_outside)


# -- hands against each other ----------------------------------------------------------------
def hand_similarity(a: Hand, b: Hand) -> tuple[Similarity, float, int]:
    """Least-squares similarity mapping ``a``'s joints onto ``b``'s (joints in both), its RMS
    residual (px of ``b``) and the number of joints used. Needs two common joints."""
    common = [j for j in a.joints if j in b.joints]
    if len(common) < 2:
        raise JsnqInputError(b.source, f"only {len(common)} joint(s) found at both visits; cannot relate the visits")
    p = np.array([(a.joints[j].x, a.joints[j].y) for j in common])
    q = np.array([(b.joints[j].x, b.joints[j].y) for j in common])
    pc, qc = p.mean(axis=0), q.mean(axis=0)
    pz, qz = (p - pc) @ np.array([1, 1j]), (q - qc) @ np.array([1, 1j])
    k = complex((np.conj(pz) @ qz) / (np.conj(pz) @ pz))  # q ~ k p (complex = scaled rotation)
    s = Similarity(abs(k), math.atan2(k.imag, k.real), float(qc[0] - pc[0]), float(qc[1] - pc[1]),
                   (float(pc[0]), float(pc[1])))
    rms = float(np.sqrt(np.mean(np.sum((s.apply(p) - q) ** 2, axis=1))))
    return s, rms, len(common)


# -- the follow-up's box -------------------------------------------------------------------------
def _band(size: tuple[int, int], half_width_px: float) -> np.ndarray:
    cx = crop_centre(size)[0]
    cols = np.arange(size[1])
    return np.broadcast_to(np.abs(cols - cx) <= half_width_px, size).copy()


def _texture_ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Correlation of the fine texture (difference of Gaussians, :data:`TEXTURE_DOG`) of the
    baseline crop ``a`` and the follow-up's crop ``b`` at its registered box (NaN where it lies
    outside the image) inside ``mask``. Bone outlines look alike in every hand (they are left
    out); the trabecular texture is the hand's own, so this tells one hand at two visits (high)
    from two hands (near 0)."""
    a = np.asarray(a, dtype=np.float32)
    w = np.asarray(b, dtype=np.float32)
    # away from the bones' outlines (the strongest fifth of the smoothed gradient), which
    # every hand shares
    g = ndimage.gaussian_gradient_magnitude(a, 2.0)
    ok = mask & np.isfinite(w)
    ok &= g < np.percentile(g[ok], 80) if ok.any() else ok
    if ok.sum() < 100:
        return float("nan")
    w = np.where(np.isfinite(w), w, 0.0)
    da = ndimage.gaussian_filter(a, TEXTURE_DOG[0]) - ndimage.gaussian_filter(a, TEXTURE_DOG[1])
    db = ndimage.gaussian_filter(w, TEXTURE_DOG[0]) - ndimage.gaussian_filter(w, TEXTURE_DOG[1])
    x, y = da[ok] - da[ok].mean(), db[ok] - db[ok].mean()
    return float((x @ y) / (np.sqrt((x @ x) * (y @ y)) + 1e-12))


def _halved(crop: np.ndarray) -> np.ndarray:
    """A crop at half its resolution (the mean of each 2 x 2 block), z-scored: pixel ``k`` of the
    result is crop pixel ``2k + 0.5``, so the two crops' centres correspond."""
    h, w = (crop.shape[0] // 2) * 2, (crop.shape[1] // 2) * 2
    half = np.asarray(crop, dtype=np.float64)[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return (half - half.mean()) / (half.std() + 1e-12)


def _box_through(base_box: CropBox, carried: Similarity, visit: int, source: str,
                 spacing_mm: float | None) -> CropBox:
    """The baseline's box carried into the follow-up image by ``carried`` (baseline image ->
    follow-up image), at the baseline's zoom."""
    qc = crop_centre(base_box.size)
    centre = carried.apply(base_box.to_image(qc))
    up = carried.apply(base_box.to_image([qc[0], qc[1] - 10.0])) - centre
    angle = math.degrees(math.atan2(up[0], -up[1]))
    return CropBox(base_box.joint, visit, source, (float(centre[0]), float(centre[1])), float(angle), base_box.zoom,
                   base_box.size, None if spacing_mm is None else spacing_mm / base_box.zoom, "registered")


def place_followup(base_image: np.ndarray | Resampler, base_box: CropBox, fol_image: np.ndarray | Resampler, *,
                   guess_xy: tuple[float, float], guess_angle_deg: float, visit: int, source: str,
                   spacing_mm: float | None, init: str = "landmark", base_crop: np.ndarray | None = None) -> CropBox:
    """The follow-up's box: the baseline's box carried by registering the finger regions.

    Args:
        base_image, fol_image: the two radiographs [row, col].
        base_box: the baseline's box of this joint.
        guess_xy, guess_angle_deg: where the follow-up's crop centre and axis probably are
            (its own landmark, or the baseline's carried by the hands' similarity).
        init: how the guess was made (recorded).
        base_crop: ``cut(base_image, base_box)`` when the caller has it already.

    Raises:
        CropOutsideImage: the region or the crop reaches beyond the follow-up image.
        JsnqInputError: the regions do not register (correlation below :data:`MIN_REGION_NCC`).
    """
    return _place(base_image, base_box, fol_image, guess_xy=guess_xy, guess_angle_deg=guess_angle_deg, visit=visit,
                  source=source, spacing_mm=spacing_mm, init=init, base_crop=base_crop)[0]


def _place(base_image: np.ndarray | Resampler, base_box: CropBox, fol_image: np.ndarray | Resampler, *,
           guess_xy: tuple[float, float], guess_angle_deg: float, visit: int, source: str, spacing_mm: float | None,
           init: str, base_crop: np.ndarray | None) -> tuple[CropBox, np.ndarray]:
    """:func:`place_followup`'s box, and the follow-up resampled into it (:func:`_resample`)."""
    base_image, fol_image = _resampler(base_image), _resampler(fol_image)
    region_b = _scaled(base_box, REGION_FACTOR, REGION_SIDE)
    guess = CropBox(base_box.joint, visit, source, (float(guess_xy[0]), float(guess_xy[1])), float(guess_angle_deg),
                    region_b.zoom, region_b.size, None, "guess")
    a = cut(base_image, region_b, allow_outside=True)
    b = cut(fol_image, guess, allow_outside=True)
    a = (a - a.mean()) / (a.std() + 1e-12)
    b = (b - b.mean()) / (b.std() + 1e-12)
    band = _band(a.shape, REGION_BAND * TARGET_BASE_WIDTH_PX * region_b.zoom / base_box.zoom)
    coarse = global_search(a * band, b * band, options=_REGION_OPTIONS)
    fit = fit_similarity(a, b, band, init=coarse, options=_REGION_OPTIONS)
    if not fit.ncc_after >= MIN_REGION_NCC:
        raise JsnqInputError(source, f"{base_box.joint}: the follow-up's finger region does not match the "
                             f"baseline's (correlation {fit.ncc_after:.2f} < {MIN_REGION_NCC}); is it the same hand?")
    # region_b(r) is a baseline image point; guess(T(r)) the same anatomy in the follow-up.
    carried = guess.transform().compose(fit.transform).compose(region_b.transform().inverse())
    # Then at the crop's own field, at half its resolution (the fit only has to leave the
    # per-bone registration a small common motion; for white noise, halving the resolution
    # leaves the shift's precision in crop px as it was, at a quarter of the pixels): the
    # part above the crop centre (the distal bone) and the part below (the proximal bone)
    # fitted apart, and the box moved by the mean of their displacements at the centre, so
    # that what the crops leave for the per-bone registration is their relative motion, not a
    # common shift (flexion, the motion of the finger region far from the joint).
    fine_b = cut(base_image, base_box, allow_outside=True) if base_crop is None else base_crop
    first = _box_through(base_box, carried, visit, source, spacing_mm)
    zb, zf = _halved(fine_b), _halved(cut(fol_image, first, allow_outside=True))
    band = _band(zb.shape, REGION_BAND * TARGET_BASE_WIDTH_PX / 2)
    qh = np.array(crop_centre(zb.shape))
    rows = np.arange(zb.shape[0])[:, None]
    halves = []
    for part in (rows < qh[1] - FINE_GAP_PX / 2, rows > qh[1] + FINE_GAP_PX / 2):
        try:
            f = fit_similarity(zb, zf, band & part, options=_FINE_OPTIONS)
        except ValueError:
            break
        if not (f.ncc_after >= MIN_REGION_NCC and abs(math.log(f.transform.scale)) < 0.1):
            break
        halves.append(f.transform)
    qc = crop_centre(base_box.size)
    if len(halves) == 2:
        shift = (halves[0].apply(qh) + halves[1].apply(qh)) - 2 * qh  # 2 crop px a half-resolution px
        angle = 0.5 * (halves[0].angle + halves[1].angle)
        corr = Similarity(1.0, angle, float(shift[0]), float(shift[1]), qc)
        carried = first.transform().compose(corr).compose(base_box.transform().inverse())
    centre = carried.apply(base_box.to_image(qc))
    up = carried.apply(base_box.to_image([qc[0], qc[1] - 10.0])) - centre
    angle = math.degrees(math.atan2(up[0], -up[1]))
    moved = float(math.hypot(centre[0] - guess_xy[0], centre[1] - guess_xy[1]))
    box = CropBox(base_box.joint, visit, source, (float(centre[0]), float(centre[1])), float(angle), base_box.zoom,
                  base_box.size, None if spacing_mm is None else spacing_mm / base_box.zoom, "registered")
    crop = _resample(fol_image, box)
    texture = _texture_ncc(fine_b, crop, _band(fine_b.shape, REGION_BAND * TARGET_BASE_WIDTH_PX))
    reg = {"ncc": float(fit.ncc_after), "texture_ncc": texture, "scale": float(fit.transform.scale),
           "angle_deg": float(fit.transform.angle_deg), "moved_px": moved, "init": init,
           "refined_at_crop_scale": len(halves) == 2}
    return dataclasses.replace(box, registration=reg), crop


def recentre(box: CropBox, point_xy: tuple[float, float], *, max_shift: float = 0.15) -> CropBox:
    """``box`` moved so that the crop point ``point_xy`` (e.g. the joint centre found in the
    crop) becomes its centre; unchanged when that is more than ``max_shift`` of the crop's
    size away (a finding that far off is not trusted)."""
    qc = np.array(crop_centre(box.size))
    d = np.asarray(point_xy, dtype=float) - qc
    if not np.all(np.isfinite(d)) or np.any(np.abs(d) > max_shift * np.array(box.size[::-1])):
        return box
    c = box.to_image(qc + d)
    return CropBox(box.joint, box.visit, box.source, (float(c[0]), float(c[1])), box.angle_deg, box.zoom, box.size,
                   box.spacing_mm, box.method, {**box.registration, "recentred_crop_px": [float(d[0]), float(d[1])]})


def joint_crops(images: Sequence[np.ndarray | Resampler], hands: Sequence[Hand], joint: str, *,
                spacing_mm: float | None = None, sources: Sequence[str] | None = None,
                scale_px_per_mm: float | None = None,
                hand_maps: Sequence[Similarity | None] | None = None,
                centre_finder: Callable[[np.ndarray], tuple[float, float] | None] | None = None) -> JointCrops:
    """Crops of ``joint`` at every visit; the first visit is the baseline.

    Args:
        images: each visit's radiograph ``[row, col]``.
        hands: each visit's located joints; the joint must be found at the baseline.
        spacing_mm: the radiographs' common pixel spacing, or None.
        sources: file names per visit (recorded).
        scale_px_per_mm: the baseline hand's scale (default :func:`hand_scale_px_per_mm`).
        hand_maps: per visit, the similarity baseline joints -> that visit's joints
            (:func:`hand_similarity`); used where a follow-up lacks the joint.
        centre_finder: ``finder(crop) -> (x, y)`` of the joint-space centre in a crop, or
            None when it cannot tell; the baseline's box is re-centred there once
            (:func:`recentre`), so that a landmark off by a millimetre still gives a crop
            with the joint space at its centre, as the networks expect.

    Raises:
        JsnqInputError: the joint cannot be cropped at some visit (cut off, not found, no match).
    """
    sources = list(sources) if sources is not None else [h.source for h in hands]
    images = [_resampler(im) for im in images]
    base = hands[0]
    if joint not in base.joints:
        raise JsnqInputError(sources[0], f"{joint}: not found in the baseline")
    s = hand_scale_px_per_mm(base) if scale_px_per_mm is None else scale_px_per_mm
    zoom = joint_zoom(base, joint, scale_px_per_mm=s)
    box0 = baseline_box(base.joints[joint], zoom, scale_px_per_mm=s, source=sources[0], spacing_mm=spacing_mm)
    first = cut(images[0], box0)
    shift = np.zeros(2)
    if centre_finder is not None:
        found = centre_finder(first)
        if found is not None:
            moved = recentre(box0, found)
            if moved is not box0:
                shift = np.asarray(found, dtype=float) - np.array(crop_centre(box0.size))
                box0 = moved
                first = cut(images[0], box0)
    crops = [first]
    boxes = [box0]
    for k in range(1, len(images)):
        guesses = _followup_guesses(box0, hands[k].joints.get(joint), hands, k, hand_maps, zoom, s, shift,
                                    sources[k], spacing_mm)
        if not guesses:
            raise JsnqInputError(sources[k], f"{joint}: not found at visit {k}")
        best, failure = None, None
        for guess, angle, init in guesses:
            try:
                placed = _place(images[0], box0, images[k], guess_xy=guess, guess_angle_deg=angle, visit=k,
                                source=sources[k], spacing_mm=spacing_mm, init=init, base_crop=first)
            except JsnqInputError as err:  # no match, or a fit that strayed off the image
                failure = failure or err
                continue
            if best is None or placed[0].registration["ncc"] > best[0].registration["ncc"]:
                best = placed
        if best is None:
            raise failure
        boxes.append(best[0])
        crops.append(_filled(best[1], best[0], allow_outside=False))
    return JointCrops(joint, tuple(boxes), tuple(crops))


def _angle_diff_deg(a: float, b: float) -> float:
    return (a - b + 180.0) % 360.0 - 180.0


def _followup_guesses(box0: CropBox, own: Joint | None, hands: Sequence[Hand], k: int,
                      hand_maps: Sequence[Similarity | None] | None, zoom: float, scale: float,
                      shift: np.ndarray, source: str, spacing_mm: float | None
                      ) -> list[tuple[tuple[float, float], float, str]]:
    """Where visit ``k``'s box of the joint may lie: ``[(centre xy, axis deg, how)]``, tried in
    turn by :func:`joint_crops`, which keeps the best-matching registration.

    The follow-up's own landmark comes first. Its axis is the direction to the next landmark of
    the finger, often a fingertip, which the locator may miss or find on another finger from
    one radiograph to the next (the axis then jumps by tens of degrees), and the region
    registration searches only +-12 degrees about the guess. So when the own landmark's axis
    or position disagrees with the baseline's box carried by the similarity between the two
    hands' joints (all joints together: robust to one bad landmark) by more than
    :data:`MAX_GUESS_ANGLE_DEG` or :data:`MAX_GUESS_SHIFT` of the crop's field, that carried box
    is tried too."""
    m = hand_maps[k] if hand_maps is not None else None
    if m is None:
        try:
            m = hand_similarity(hands[0], hands[k])[0]
        except JsnqInputError:
            m = None
    carried = None
    if m is not None:
        carried = (tuple(float(v) for v in m.apply(np.array(box0.centre_xy))), box0.angle_deg + m.angle_deg,
                   "hand similarity")
    if own is None:
        return [carried] if carried is not None else []
    # the follow-up's own landmark, stepped to the joint centre like the baseline's (moved as
    # the baseline's box was re-centred, in crop coordinates)
    gbox = baseline_box(own, zoom, scale_px_per_mm=scale, source=source, spacing_mm=spacing_mm)
    guess = tuple(float(v) for v in gbox.to_image(np.array(crop_centre(gbox.size)) + shift))
    out = [(guess, own.axis_deg, "landmark")]
    if carried is not None:
        field_px = box0.size[1] / box0.zoom
        far = math.hypot(guess[0] - carried[0][0], guess[1] - carried[0][1]) > MAX_GUESS_SHIFT * field_px
        if far or abs(_angle_diff_deg(own.axis_deg, carried[1])) > MAX_GUESS_ANGLE_DEG:
            out.append(carried)
    return out
