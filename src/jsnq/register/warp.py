"""Resampling an image through a :class:`~jsnq.geometry.Similarity` (NumPy/SciPy)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..geometry import Similarity

__all__ = ["SplineImage", "warp_to_baseline", "pixel_grid"]


def pixel_grid(shape: tuple[int, int], step: int = 1) -> np.ndarray:
    """``(N, 2)`` array of ``(x, y)`` pixel centres on a grid with ``step``, row-major."""
    ys, xs = np.mgrid[0 : shape[0] : step, 0 : shape[1] : step]
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(float)


class SplineImage:
    """A 2-D image ready for repeated cubic-spline sampling at arbitrary ``(x, y)`` points.

    The B-spline prefilter runs once; :meth:`sample` then costs one ``map_coordinates``.
    Points outside the image (beyond half a pixel past the border centres) are reported as
    invalid rather than extrapolated.
    """

    def __init__(self, image: np.ndarray, *, order: int = 3) -> None:
        self.shape = image.shape
        self.order = order
        img = np.asarray(image, dtype=np.float64)
        self._coeffs = ndi.spline_filter(img, order=order, mode="mirror") if order > 1 else img

    def sample(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values at ``(N, 2)`` points ``(x, y)`` and a boolean validity mask."""
        return self.sample_rows_cols(np.stack([points[:, 1], points[:, 0]]))

    def sample_rows_cols(self, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`sample` at ``(2, N)`` coordinates: rows (y), then columns (x)."""
        y, x = coords
        valid = (x >= -0.5) & (x <= self.shape[1] - 0.5) & (y >= -0.5) & (y <= self.shape[0] - 0.5)
        vals = ndi.map_coordinates(self._coeffs, coords, order=self.order, prefilter=False, mode="mirror")
        return vals, valid


def warp_to_baseline(followup: np.ndarray, transform: Similarity, shape: tuple[int, int] | None = None,
                     *, order: int = 3, cval: float = np.nan) -> np.ndarray:
    """Resample the follow-up into the baseline frame: ``out[p] = followup[transform(p)]``.

    Args:
        followup: 2-D image [row, col].
        transform: baseline -> follow-up :class:`Similarity`.
        shape: output shape (default: the follow-up's).
        order: spline order.
        cval: value for pixels that map outside the follow-up (NaN by default).
    """
    shape = tuple(followup.shape) if shape is None else tuple(shape)
    pts = transform.apply(pixel_grid(shape))
    vals, valid = SplineImage(followup, order=order).sample(pts)
    vals = np.where(valid, vals, cval)
    return vals.reshape(shape).astype(np.float32)
