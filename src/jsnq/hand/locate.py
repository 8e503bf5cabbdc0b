"""Find the 14 finger joints of a whole-hand PA radiograph (:func:`find_joints`).

Method (the networks: :mod:`jsnq.hand.network`):

1. **Normalise.** Intensities are mapped by their 0.5 / 99.5 percentiles to 0 / 1; the
   radiograph is viewed through a square *frame* (side ``E`` px of the input, zero padding
   outside the image) resized to ``fine_frame`` px (1024). At first the frame is the whole
   image (``E`` = its long side).
2. **Coarse.** The frame resized to 256 px goes through the coarse network: 19 heatmaps
   (14 joints, 5 fingertips) at 64 px, each peak refined to sub-pixel. Then the frame is
   re-fitted to the hand: its side set so that the joints' RMS radius is 0.219 of it and its
   centre 0.134 of it proximal of their centroid (the atlas's medians), and the coarse pass is
   repeated there (unless side and centre change by less than 8 %). The networks thus always see a hand of the size they were trained on,
   whatever the detector's size and spacing (0.05-0.3 mm/px) and however much of the forearm
   or empty film the radiograph shows.
3. **Fine.** For each of the 14 joints, a 64 px patch of the 1024-px frame
   centred on the coarse estimate goes through the fine network; the peak of the joint's own
   channel is the answer (sub-pixel). The score is the geometric mean of both peaks.
4. **Check.** A joint is *missing* (never guessed) when a peak is weak, the two passes
   disagree, or it breaks the hand's geometry: along each finger the landmarks must advance
   distally with plausible bone lengths, and across the hand the MCPs, PIPs and DIPs must come
   in finger order. Too few joints, or a configuration that fails, means there is no hand.
5. **Side and axes.** The network names joints anatomically (trained on left hands and their
   mirror images), so the side follows from the geometry: for a left hand seen PA with the
   fingers up, the little finger lies to the image's left of the index finger. Each joint's
   axis is the direction of its distal bone (to the next landmark of the finger), or of its
   proximal bone when the next one is missing.

Conventions: points ``(x, y) = (col, row)`` in pixels of the input radiograph, pixel-centre
coordinates; angles in degrees, clockwise from image up.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import JsnqInputError
from ..networks import SHIPPED, inference_threads, shipped_network
from ..io import Image, load_image
from .network import JointLocator, LocatorConfig, heatmap_peaks
from .types import JOINT_NAMES, Hand, Joint

__all__ = ["find_joints", "locate_landmarks", "intensity_window", "LandmarkEstimate",
           "FINGERS", "WEIGHTS_FILE", "MIN_SCORE", "MIN_JOINTS"]

ImageLike = Union[str, os.PathLike, np.ndarray, Image]

#: The shipped weights, inside the ``jsnq`` package.
WEIGHTS_FILE = SHIPPED["locate"]
#: Landmarks of each finger, proximal to distal (thumb first).
FINGERS = (("MCP1", "IP1", "TIP1"), ("MCP2", "PIP2", "DIP2", "TIP2"), ("MCP3", "PIP3", "DIP3", "TIP3"),
           ("MCP4", "PIP4", "DIP4", "TIP4"), ("MCP5", "PIP5", "DIP5", "TIP5"))
#: A joint is found when its score (geometric mean of the coarse and the fine peak) reaches this.
MIN_SCORE = 0.3
#: Fewer joints found than this: no hand.
MIN_JOINTS = 8
#: Largest distance between the coarse and the fine estimate, in frame pixels (1024 a side).
MAX_DISAGREEMENT_PX = 16.0
#: A joint whose fine estimate lies 1-2 x MAX_DISAGREEMENT_PX from a coarse one peaking at
#: least this high is looked at again (:func:`locate_landmarks`), and the second look kept
#: when it lies within RELOOK_AGREEMENT_PX frame px of the first and peaks higher.
RELOOK_MIN_COARSE = 0.5
RELOOK_AGREEMENT_PX = 6.0
#: Two landmarks closer than this (fraction of the frame; the shortest bone is ~0.03) are one.
MIN_LANDMARK_DISTANCE = 0.02
#: Coarse peak a joint needs to help place the hand's frame (lower than :data:`MIN_SCORE`: a
#: hand far smaller than in training still gives weak but well-placed peaks).
FRAME_MIN_SCORE = 0.1
#: The 14 joints' RMS distance from their centroid, as a fraction of the frame's side, in the
#: training radiographs (the atlas: median 0.219, 0.19-0.26): the hand's normalised size.
HAND_RMS_FRACTION = 0.219
#: Relative change of the frame's side and centre below which the first pass is kept (the
#: training's own scale and shift augmentation is wider: 0.7-1.25, +-12 %).
REFRAME_TOLERANCE = 0.08
#: How far the frame's centre lies proximal of the joints' centroid in the atlas, in frames.
HAND_CENTRE_OFFSET = 0.134


@dataclass(frozen=True)
class LandmarkEstimate:
    """The networks' raw reading of one radiograph (before the geometric checks).

    Attributes:
        names: landmark names (:data:`~jsnq.hand.network.COARSE_LANDMARKS`).
        xy: ``(K, 2)`` float64, (x, y) in pixels of the input image (fine where refined).
        coarse_xy: ``(K, 2)`` the coarse estimates alone, same pixels.
        coarse_score, fine_score: ``(K,)`` heatmap peaks (fine: NaN for the fingertips and
            for joints not refined).
        disagreement_px: ``(K,)`` distance between coarse and fine estimate in frame pixels.
        frame_px: the frame's side ``E`` in input pixels (the hand's scale).
    """

    names: tuple[str, ...]
    xy: np.ndarray
    coarse_xy: np.ndarray
    coarse_score: np.ndarray
    fine_score: np.ndarray
    disagreement_px: np.ndarray
    frame_px: float


def _config(model: JointLocator) -> LocatorConfig:
    cfg = getattr(model, "config", None)
    if not isinstance(cfg, LocatorConfig):
        raise ValueError("model must be a JointLocator (with its LocatorConfig as .config)")
    return cfg


def _frame(norm: torch.Tensor, centre: tuple[float, float], side: float, size: int
           ) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """The square region of side ``side`` px centred on ``centre`` (x, y), zero outside the
    image, resized to ``size`` px (antialiased): ``(1, 1, size, size)``."""
    h, w = norm.shape[-2:]
    x0 = int(math.floor(centre[0] - side / 2 + 0.5))
    y0 = int(math.floor(centre[1] - side / 2 + 0.5))
    n = int(round(side))
    pad = (max(0, -x0), max(0, x0 + n - w), max(0, -y0), max(0, y0 + n - h))
    crop = norm[..., max(0, y0):min(h, y0 + n), max(0, x0):min(w, x0 + n)]
    crop = F.pad(crop, pad)
    return F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True), (x0, y0, n)


def intensity_window(array: np.ndarray, percentiles: tuple[float, float]) -> tuple[float, float]:
    """The intensities mapped to 0 and 1: the ``percentiles`` of ``array`` (2-D), estimated on a
    regular subsample of at most ~250,000 pixels (the same in training and inference)."""
    h, w = array.shape
    step = max(1, int(math.sqrt(h * w / 250_000.0)))
    lo, hi = (float(v) for v in np.percentile(array[::step, ::step], percentiles))
    return lo, hi


def _hand_frame(cxy: torch.Tensor, cval: torch.Tensor, names: tuple[str, ...]
                ) -> tuple[tuple[float, float], float] | None:
    """Where the hand's frame should be, from a first coarse pass (frame pixels): the centre
    that puts the joints' centroid where it lies in an atlas radiograph, and the joints' RMS
    radius; None when fewer than :data:`MIN_JOINTS` joints reach :data:`FRAME_MIN_SCORE` or the
    fingers give no axis."""
    idx = [names.index(n) for n in JOINT_NAMES]
    ok = [i for i in idx if float(cval[i]) >= FRAME_MIN_SCORE]
    if len(ok) < MIN_JOINTS:
        return None
    p = cxy[ok].numpy()
    c = p.mean(0)
    r = float(np.sqrt(((p - c) ** 2).sum(1).mean()))
    dirs = []
    for k in range(2, 6):
        a, b = names.index(f"MCP{k}"), names.index(f"PIP{k}")
        if a in ok and b in ok:
            d = (cxy[b] - cxy[a]).numpy()
            dirs.append(d / max(np.linalg.norm(d), 1e-9))
    if len(dirs) < 2 or r <= 0:
        return None
    u = np.median(np.asarray(dirs), 0)
    u /= max(np.linalg.norm(u), 1e-9)
    centre = c - HAND_CENTRE_OFFSET * (r / HAND_RMS_FRACTION) * u
    return (float(centre[0]), float(centre[1])), r


def locate_landmarks(array: np.ndarray, model: JointLocator, *, normalise_scale: bool = True) -> LandmarkEstimate:
    """Run both networks on a radiograph (no checks; see :func:`find_joints`).

    Args:
        array: 2-D radiograph ``[row, col]``, bone bright.
        model: a :class:`~jsnq.hand.network.JointLocator` (its device and dtype are used).
        normalise_scale: after a first coarse pass on the whole image, re-frame the image on
            the hand (its size and place as in the atlas radiographs the networks were trained
            on) and run both networks there.

    Returns:
        The :class:`LandmarkEstimate`.

    The networks run on at most :data:`jsnq.networks.INFERENCE_THREADS` torch threads
    (:func:`jsnq.networks.inference_threads`): on two busy cores, two threads took five times
    the wall time of one (docs/hand.md, "Time of a two-visit hand").
    """
    cfg = _config(model)
    p = next(model.parameters())
    a = np.asarray(array, dtype=np.float32)
    h, w = a.shape
    lo, hi = intensity_window(a, cfg.percentiles)
    norm = torch.from_numpy((a - lo) / (hi - lo if hi > lo else 1.0))[None, None].to(p.device, p.dtype)
    names = cfg.coarse_landmarks
    centre, side = ((w - 1) / 2.0, (h - 1) / 2.0), float(max(h, w))
    with torch.inference_mode(), inference_threads():
        for attempt in range(2):
            frame, (x0, y0, n) = _frame(norm, centre, side, cfg.fine_frame)
            f = cfg.fine_frame / n  # frame px per input px
            coarse_in = F.interpolate(frame, size=(cfg.coarse_size,) * 2, mode="bilinear", align_corners=False,
                                      antialias=True)
            hm = model.coarse(coarse_in.contiguous(memory_format=torch.channels_last))
            pts, cval = heatmap_peaks(hm)
            pts, cval = pts[0], cval[0].clamp(0, 1)
            k = cfg.fine_frame / cfg.coarse_out
            cxy = (pts + 0.5) * k - 0.5  # frame px
            if attempt == 1 or not normalise_scale:
                break
            frame_view = _hand_frame(cxy, cval, names)
            if frame_view is None:
                break
            (cx, cy), r = frame_view
            side = r / f / HAND_RMS_FRACTION
            centre = (x0 + (cx + 0.5) / f - 0.5, y0 + (cy + 0.5) / f - 0.5)
            moved = math.hypot(centre[0] - (x0 + (n - 1) / 2), centre[1] - (y0 + (n - 1) / 2)) / n
            if abs(side / n - 1.0) < REFRAME_TOLERANCE and moved < REFRAME_TOLERANCE:
                break  # the hand already has the trained size and place: the first pass stands
        fine_idx = [names.index(j) for j in cfg.fine_landmarks]
        fxy = cxy.clone()
        fval = torch.full((len(names),), float("nan"), dtype=torch.float64)
        dis = torch.zeros(len(names), dtype=torch.float64)
        refined, pval = _fine_pass(model, frame, cxy[fine_idx], list(range(len(fine_idx))))
        for m, i in enumerate(fine_idx):
            fxy[i] = refined[m]
            fval[i] = pval[m]
            dis[i] = torch.linalg.norm(refined[m] - cxy[i])
        # A fine estimate somewhat far from a confident coarse one was made on a patch centred
        # off the joint (the coarse network reads a blurred or eroded adult joint less well):
        # the fine network looks again, centred on its own first answer. The second answer
        # stands when it agrees with the first and its peak is the stronger (a joint seen
        # centred, as in training); its disagreement is then that of the two fine passes.
        far = [m for m in range(len(fine_idx))
               if MAX_DISAGREEMENT_PX < float(dis[fine_idx[m]]) <= 2 * MAX_DISAGREEMENT_PX
               and float(cval[fine_idx[m]]) >= RELOOK_MIN_COARSE]
        if far:
            again, again_val = _fine_pass(model, frame, refined[far], far)
            for k, m in enumerate(far):
                i, moved = fine_idx[m], float(torch.linalg.norm(again[k] - refined[m]))
                if moved <= RELOOK_AGREEMENT_PX and float(again_val[k]) > float(pval[m]):
                    fxy[i], fval[i], dis[i] = again[k], again_val[k], moved

    def to_input(p: torch.Tensor) -> np.ndarray:
        return np.stack([x0 + (p[:, 0].numpy() + 0.5) / f - 0.5, y0 + (p[:, 1].numpy() + 0.5) / f - 0.5], 1)

    return LandmarkEstimate(names=tuple(names), xy=to_input(fxy), coarse_xy=to_input(cxy),
                            coarse_score=cval.numpy(), fine_score=fval.numpy(), disagreement_px=dis.numpy(),
                            frame_px=float(n))


def _fine_pass(model: JointLocator, frame: torch.Tensor, centres: torch.Tensor, channels: list[int]
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The fine network on a patch of the 1024-px ``frame`` around each centre (frame px);
    the peak of each patch's own channel: ``(points (N, 2) frame px, peaks (N,))``."""
    cfg = _config(model)
    s = cfg.fine_size
    ix = torch.round(centres).long().clamp(-s // 2, cfg.fine_frame + s // 2)
    padded = F.pad(frame, (s, s, s, s))
    patches = torch.stack([padded[0, :, y - s // 2 + s:y + s // 2 + s, x - s // 2 + s:x + s // 2 + s]
                           for x, y in ix.tolist()])
    fh = model.fine(patches.contiguous(memory_format=torch.channels_last))
    own = fh[torch.arange(len(channels)), torch.as_tensor(channels)][:, None]
    ppts, pval = heatmap_peaks(own)
    origin = ix.double() - s // 2
    return origin + (ppts[:, 0] + 0.5) * cfg.fine_stride - 0.5, pval[:, 0].clamp(0, 1)


def _angle_deg(v: np.ndarray) -> float:
    """Direction (x, y) as degrees clockwise from image up, in (-180, 180]."""
    return float(math.degrees(math.atan2(v[0], -v[1])))


def _check_geometry(pts: dict[str, np.ndarray], frame_px: float, scores: dict[str, float] | None = None
                    ) -> tuple[dict[str, str], str | None, str]:
    """Geometric plausibility of the named landmarks.

    Returns:
        ``(landmark -> reason for each landmark rejected, reason there is no hand or None, side)``.
    """
    rejected: dict[str, str] = {}
    # two names on one spot (a fingertip found on the neighbouring finger's tip): the weaker goes
    names = sorted(pts, key=lambda n: -(scores or {}).get(n, 0.0))
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if b not in rejected and a not in rejected and \
                    np.linalg.norm(pts[a] - pts[b]) < MIN_LANDMARK_DISTANCE * frame_px:
                rejected[b] = f"implausible position ({b} lies on {a})"
    pts = {n: p for n, p in pts.items() if n not in rejected}
    # the hand's distal direction: the median over fingers of the proximal phalanx's direction
    # (MCP to the next joint; fingertips are the least reliable landmarks, so they do not vote)
    dirs = []
    for chain in FINGERS:
        if chain[0] in pts and chain[1] in pts:
            d = pts[chain[1]] - pts[chain[0]]
            dirs.append(d / max(np.linalg.norm(d), 1e-9))
    if len(dirs) < 2:
        return rejected, "fewer than two fingers with two joints", "L"
    u = np.median(np.asarray(dirs), 0)
    if np.linalg.norm(u) < 0.5:
        return rejected, "the fingers do not point one way", "L"
    u /= np.linalg.norm(u)
    # along each finger: every step distal, bone lengths plausible
    for chain in FINGERS:
        prev = None
        for n in chain:
            if n not in pts:
                continue
            if prev is not None:
                d = pts[n] - pts[prev]
                length = np.linalg.norm(d) / frame_px
                if float(d @ u) <= 0.3 * np.linalg.norm(d) or not 0.02 <= length <= 0.4:
                    rejected[n] = f"implausible position ({n} is not distal of {prev} along the finger)"
                    continue
            prev = n
    keep = {n: p for n, p in pts.items() if n not in rejected}
    # across the hand: the side from the MCPs of fingers 2-5 (and the other rows)
    lateral = np.array([u[1], -u[0]])  # u turned 90 degrees anticlockwise as displayed (y down)
    votes = []
    for row in (("MCP2", "MCP3", "MCP4", "MCP5"), ("PIP2", "PIP3", "PIP4", "PIP5"), ("DIP2", "DIP3", "DIP4", "DIP5")):
        c = [float(keep[n] @ lateral) for n in row if n in keep]
        if len(c) >= 3:
            steps = np.diff(c)
            votes.append(np.sign(steps))
    if not votes:
        return rejected, "no row of three finger joints across the hand", "L"
    allv = np.concatenate(votes)
    # anticlockwise lateral: for a left hand, fingers up (u = up), lateral points to image left,
    # where the little finger is, so positions grow from index to little.
    side = "L" if allv.sum() > 0 else "R"
    want = 1.0 if side == "L" else -1.0
    if (allv == want).mean() < 0.75:
        return rejected, "the fingers are not in order across the hand", side
    # (the fingertips too: a tip found on the neighbouring finger would give its joint a wrong axis)
    for row in (("MCP2", "MCP3", "MCP4", "MCP5"), ("PIP2", "PIP3", "PIP4", "PIP5"), ("DIP2", "DIP3", "DIP4", "DIP5"),
                ("TIP2", "TIP3", "TIP4", "TIP5")):
        found = [n for n in row if n in keep]
        for a, b in zip(found, found[1:]):
            if float((keep[b] - keep[a]) @ lateral) * want <= 0:
                for n in (a, b):
                    rejected.setdefault(n, f"implausible position ({a} and {b} out of finger order)")
    thumb = keep.get("MCP1")
    if thumb is not None and "MCP2" in keep and "MCP5" in keep:
        if float((thumb - keep["MCP2"]) @ lateral) * want >= 0:
            rejected.setdefault("MCP1", "implausible position (MCP1 is not on the thumb side)")
    return rejected, None, side


def find_joints(image: ImageLike, *, spacing_mm: float | None = None, model: JointLocator | None = None,
                min_score: float = MIN_SCORE) -> Hand:
    """Locate the 14 finger joints of a whole-hand PA radiograph, left or right.

    Args:
        image: a path, a 2-D array ``[row, col]`` or an :class:`~jsnq.io.Image`.
        spacing_mm: pixel spacing (recorded in the result; the method itself works at the
            hand's own scale and does not need it).
        model: default: the shipped locator (``jsnq.networks.shipped_network("locate")``).
        min_score: a joint scoring below this is missing.

    Returns:
        :class:`~jsnq.hand.types.Hand`: ``joints`` in pixels of the input, ``missing`` with a
        reason for each joint not found, ``side`` "L" or "R".

    Raises:
        JsnqInputError: ``"no hand found: ..."`` for a blank image, or one in which the
            networks find too few joints or no plausible hand configuration; any reading
            problem of the file.
        WeightsUnavailableError: ``model`` is None and the shipped weights cannot be loaded.
    """
    try:
        img = load_image(image, spacing_mm=spacing_mm)
    except JsnqInputError as err:
        if err.problem.startswith("image is blank"):
            raise JsnqInputError(err.source, f"no hand found: {err.problem}") from None
        raise
    source = img.source
    model = shipped_network("locate") if model is None else model
    est = locate_landmarks(img.array, model)
    names = est.names
    idx = {n: i for i, n in enumerate(names)}
    missing: dict[str, str] = {}
    pts: dict[str, np.ndarray] = {}
    scores: dict[str, float] = {}
    for n in names:
        i = idx[n]
        c = float(est.coarse_score[i])
        fs = est.fine_score[i]
        score = c if np.isnan(fs) else math.sqrt(max(c, 0.0) * max(float(fs), 0.0))
        if score < min_score:
            missing[n] = f"not found (score {score:.2f} < {min_score:g})"
        elif not np.isnan(fs) and est.disagreement_px[i] > MAX_DISAGREEMENT_PX:
            missing[n] = f"not found (coarse and fine estimates {est.disagreement_px[i]:.0f} frame px apart)"
        else:
            pts[n] = est.xy[i]
            scores[n] = score
    found = [n for n in JOINT_NAMES if n in pts]
    if len(found) < MIN_JOINTS:
        raise JsnqInputError(source, f"no hand found: only {len(found)} of {len(JOINT_NAMES)} finger joints "
                                     f"detected (need {MIN_JOINTS})")
    rejected, no_hand, side = _check_geometry(pts, est.frame_px, scores)
    if no_hand is not None:
        raise JsnqInputError(source, f"no hand found: {no_hand}")
    for n, why in rejected.items():
        missing[n] = why
        pts.pop(n)
    if sum(n in pts for n in JOINT_NAMES) < MIN_JOINTS:
        raise JsnqInputError(source, "no hand found: too few joints in a plausible configuration")
    joints: dict[str, Joint] = {}
    for chain in FINGERS:
        for k, n in enumerate(chain):
            if n not in JOINT_NAMES or n not in pts:
                continue
            nxt = next((m for m in chain[k + 1:] if m in pts), None)
            prv = next((m for m in reversed(chain[:k]) if m in pts), None)
            if nxt is not None:
                v = pts[nxt] - pts[n]
            elif prv is not None:
                v = pts[n] - pts[prv]
            else:
                missing[n] = "no axis: the finger's other landmarks were not found"
                continue
            joints[n] = Joint(name=n, x=float(pts[n][0]), y=float(pts[n][1]), axis_deg=_angle_deg(v),
                              score=float(min(1.0, scores[n])))
    ordered = {n: joints[n] for n in JOINT_NAMES if n in joints}
    miss = {n: missing[n] for n in JOINT_NAMES if n in missing and n not in joints}
    return Hand(side=side, joints=ordered, missing=miss, shape=img.shape, spacing_mm=img.spacing_mm, source=source)
