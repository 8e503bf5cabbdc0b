"""The one place that knows the similarity parameterisation and its conventions.

Conventions (used everywhere in jsnq):

* Arrays are indexed ``[row, col]``; points are ``(x, y) = (col, row)`` in pixels, with
  ``(0, 0)`` the centre of the top-left pixel. Image ``+y`` points down, which for a joint
  crop in canonical orientation (finger up) is from the upper bone towards the lower bone.
* A :class:`Similarity` maps **baseline** pixel coordinates to **follow-up** pixel
  coordinates about a centre ``c`` (by default the crop centre ``((W-1)/2, (H-1)/2)``)::

      p_followup = c + scale * R(angle) @ (p_baseline - c) + (tx, ty)

  with ``R(a) = [[cos a, -sin a], [sin a, cos a]]``. Because ``+y`` points down, a
  positive angle turns the image *clockwise* as displayed.
* Narrowing is the displacement of the upper bone relative to the lower bone along ``+y``,
  evaluated in the baseline frame at a point ``p`` (the crop centre by default):
  ``narrowing = (lower^-1 o upper)(p).y - p.y``. Positive means the joint space narrowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

__all__ = ["Similarity", "crop_centre", "narrowing_px", "symmetric_narrowing_px", "sqrt_similarity",
           "narrowing_jacobian", "px_to_mm"]


def crop_centre(shape: Sequence[int]) -> tuple[float, float]:
    """Centre ``(x, y)`` in pixels of an array of ``shape = (rows, cols)``."""
    rows, cols = int(shape[0]), int(shape[1])
    return ((cols - 1) / 2.0, (rows - 1) / 2.0)


@dataclass(frozen=True)
class Similarity:
    """4-parameter similarity: isotropic scale, rotation, shift; about a fixed centre.

    Attributes:
        scale: isotropic scale factor (1 = no change).
        angle: rotation in radians (positive = clockwise as displayed, since +y is down).
        tx: shift along x (columns) in pixels.
        ty: shift along y (rows) in pixels.
        center: ``(x, y)`` centre of rotation and scaling in pixels.
    """

    scale: float = 1.0
    angle: float = 0.0
    tx: float = 0.0
    ty: float = 0.0
    center: tuple[float, float] = field(default=(0.0, 0.0))

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be a positive finite number, got {self.scale!r}")
        for name in ("angle", "tx", "ty"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)!r}")
        object.__setattr__(self, "center", (float(self.center[0]), float(self.center[1])))

    # -- constructors -----------------------------------------------------------------
    @classmethod
    def identity(cls, center: tuple[float, float] = (0.0, 0.0)) -> "Similarity":
        return cls(1.0, 0.0, 0.0, 0.0, center)

    @classmethod
    def from_params(cls, params: Sequence[float], center: tuple[float, float]) -> "Similarity":
        """From ``(log_scale, angle, tx, ty)``: the vector the optimisers work in."""
        log_s, a, tx, ty = (float(v) for v in params)
        return cls(math.exp(log_s), a, tx, ty, center)

    @classmethod
    def from_matrix(cls, matrix: np.ndarray, center: tuple[float, float] = (0.0, 0.0)) -> "Similarity":
        """From a 3x3 (or 2x3) homogeneous matrix acting on ``(x, y, 1)`` columns.

        The linear part must be a scaled rotation (within 1e-6 relative), else ValueError.
        """
        m = np.asarray(matrix, dtype=float)
        a, b = float(m[0, 0]), float(m[1, 0])
        tol = 1e-6 * max(1.0, abs(a), abs(b))
        if abs(m[0, 1] + b) > tol or abs(m[1, 1] - a) > tol:
            raise ValueError("matrix is not a similarity (linear part is not a scaled rotation)")
        scale = math.hypot(a, b)
        angle = math.atan2(b, a)
        c = np.asarray(center, dtype=float)
        lin = m[:2, :2]
        # p' = L p + o = c + L (p - c) + t  =>  t = o - c + L c
        t = m[:2, 2] - c + lin @ c
        return cls(scale, angle, float(t[0]), float(t[1]), (float(c[0]), float(c[1])))

    # -- views ------------------------------------------------------------------------
    @property
    def angle_deg(self) -> float:
        return math.degrees(self.angle)

    @property
    def params(self) -> np.ndarray:
        """``(log_scale, angle, tx, ty)``."""
        return np.array([math.log(self.scale), self.angle, self.tx, self.ty])

    def linear(self) -> np.ndarray:
        c, s = math.cos(self.angle), math.sin(self.angle)
        return self.scale * np.array([[c, -s], [s, c]])

    def matrix(self) -> np.ndarray:
        """3x3 homogeneous matrix acting on ``(x, y, 1)`` columns."""
        lin = self.linear()
        c = np.asarray(self.center)
        off = c - lin @ c + np.array([self.tx, self.ty])
        m = np.eye(3)
        m[:2, :2] = lin
        m[:2, 2] = off
        return m

    # -- algebra ----------------------------------------------------------------------
    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map ``(..., 2)`` points ``(x, y)`` from the baseline to the follow-up frame."""
        p = np.asarray(points, dtype=float)
        m = self.matrix()
        # Written out: a matrix product with an inner dimension of 2 costs ten times as much.
        x, y = p[..., 0], p[..., 1]
        out = np.empty(p.shape)
        out[..., 0] = m[0, 0] * x + m[0, 1] * y + m[0, 2]
        out[..., 1] = m[1, 0] * x + m[1, 1] * y + m[1, 2]
        return out

    def inverse(self) -> "Similarity":
        return Similarity.from_matrix(np.linalg.inv(self.matrix()), self.center)

    def compose(self, other: "Similarity") -> "Similarity":
        """``self o other``: apply ``other`` first, then ``self``. Keeps ``self.center``."""
        return Similarity.from_matrix(self.matrix() @ other.matrix(), self.center)

    def with_center(self, center: tuple[float, float]) -> "Similarity":
        """The same mapping expressed about another centre."""
        return Similarity.from_matrix(self.matrix(), center)

    def as_dict(self) -> dict[str, float]:
        return {
            "scale": self.scale,
            "angle_deg": self.angle_deg,
            "tx_px": self.tx,
            "ty_px": self.ty,
            "center_x_px": self.center[0],
            "center_y_px": self.center[1],
        }


def narrowing_px(upper: Similarity, lower: Similarity, point: tuple[float, float] | None = None) -> float:
    """Displacement along +y of the upper bone relative to the lower bone, in pixels.

    Evaluated in the baseline frame at ``point`` (default: ``upper.center``):
    ``(lower^-1 o upper)(point).y - point.y``. Positive = narrowing. For pure translations
    this equals ``upper.ty - lower.ty``.
    """
    p = np.asarray(upper.center if point is None else point, dtype=float)
    rel = lower.inverse().compose(upper)
    return float(rel.apply(p)[1] - p[1])


def sqrt_similarity(s: Similarity) -> Similarity:
    """The similarity ``h`` with ``h o h = s`` (half the scale's log, half the angle), same centre."""
    m = s.matrix()
    half = Similarity(math.sqrt(s.scale), s.angle / 2.0, 0.0, 0.0, (0.0, 0.0)).matrix()
    # h(x) = B x + u with B^2 = A and (B + I) u = t.
    u = np.linalg.solve(half[:2, :2] + np.eye(2), m[:2, 2])
    h = half.copy()
    h[:2, 2] = u
    return Similarity.from_matrix(h, s.center)


def symmetric_narrowing_px(upper: Similarity, lower: Similarity, point: tuple[float, float] | None = None,
                           followup_point: tuple[float, float] | None = None) -> float:
    """Inverse-consistent narrowing: the upper bone's displacement towards the lower bone,
    measured half-way between the two visits.

    With ``R = lower^-1 o upper`` (the upper bone's motion relative to the lower bone, in the
    baseline frame) and its square root ``H`` (``H o H = R``)::

        p*  = (point + lower^-1(followup_point)) / 2        (or point, without followup_point)
        d   = R(-angle_lower / 2) (0, 1)                     (the y axis, half-way rotated)
        JSN = sqrt(scale_lower) * d . (H(p*) - H^-1(p*))

    so that swapping the visits (``upper^-1``, ``lower^-1``, the points swapped) gives
    exactly ``-JSN``: the evaluation point, the axis and the pixel size are each taken
    half-way between the two visits. For pure translations this is ``upper.ty - lower.ty``,
    like :func:`narrowing_px`, which it matches to first order for small motions.

    ``point`` and ``followup_point`` should mark the same anatomical place in each visit
    (e.g. each crop's joint centre); default: ``upper.center``.
    """
    p = np.asarray(upper.center if point is None else point, dtype=float)
    lower_inv = lower.inverse()
    if followup_point is not None:
        p = 0.5 * (p + lower_inv.apply(np.asarray(followup_point, dtype=float)))
    h = sqrt_similarity(lower_inv.compose(upper))
    disp = h.apply(p) - h.inverse().apply(p)
    half = lower.angle / 2.0
    return float(math.sqrt(lower.scale) * (math.sin(half) * disp[0] + math.cos(half) * disp[1]))


def px_to_mm(value_px: float, spacing_mm: float | None) -> float | None:
    """Pixels to millimetres; ``None`` when the spacing is unknown."""
    return None if spacing_mm is None else float(value_px) * float(spacing_mm)


def narrowing_jacobian(upper: Similarity, lower: Similarity, point: tuple[float, float] | None = None,
                       *, eps: float = 1e-6, function=None) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of :func:`narrowing_px` with respect to each bone's parameters.

    The parameters are right-composed perturbations ``d = (log_scale, angle, tx, ty)``:
    ``upper o Similarity.from_params(d, upper.center)^-1`` (the inverse-compositional update
    used by the registration engine, whose covariances are expressed in this ``d``).
    Central differences with step ``eps``. ``function(upper, lower)`` replaces
    :func:`narrowing_px` at ``point`` when given (e.g. :func:`symmetric_narrowing_px`).
    """
    fn = function or (lambda u, lo: narrowing_px(u, lo, point=point))
    def perturbed(s: Similarity, d: np.ndarray) -> Similarity:
        return s.compose(Similarity.from_params(d, s.center).inverse())

    grads = []
    for which in (0, 1):
        g = np.zeros(4)
        for k in range(4):
            d = np.zeros(4)
            d[k] = eps
            pair_p = [upper, lower]
            pair_m = [upper, lower]
            pair_p[which] = perturbed(pair_p[which], d)
            pair_m[which] = perturbed(pair_m[which], -d)
            g[k] = (fn(*pair_p) - fn(*pair_m)) / (2 * eps)
        grads.append(g)
    return grads[0], grads[1]
