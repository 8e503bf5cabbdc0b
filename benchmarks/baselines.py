"""Reference methods for the jsnq benchmark: per-bone registration by other means.

Both functions take ``baseline``, ``followup`` (float 2-D arrays ``[row, col]`` of one
shape) and ``labels`` (baseline frame; 1 = upper bone side, 2 = lower bone side,
0 = ignore) and return ``(upper, lower)`` as :class:`jsnq.geometry.Similarity` objects
mapping baseline to follow-up pixel coordinates about the crop centre.

* :func:`sitk_per_bone` -- SimpleITK similarity registration per side (correlation metric,
  B-spline interpolation, fixed-image mask, multi-resolution), a strong classical reference.
* :func:`poc_per_bone` -- partial-image phase-only correlation per side (translation only),
  the predecessor method.

SimpleITK is imported lazily, so :func:`poc_per_bone` works without it. Thread counts are
left to the caller (``sitk.ProcessObject.SetGlobalDefaultNumberOfThreads``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from jsnq.geometry import Similarity, crop_centre

__all__ = ["sitk_per_bone", "poc_per_bone"]

SIDES = (1, 2)  # label values: upper, lower


def _check(baseline, followup, labels):
    b = np.asarray(baseline, dtype=float)
    f = np.asarray(followup, dtype=float)
    lab = np.asarray(labels)
    if b.ndim != 2 or b.shape != f.shape or lab.shape != b.shape:
        raise ValueError(f"need 2-D baseline, followup, labels of one shape; got "
                         f"{b.shape}, {f.shape}, {lab.shape}")
    for k in SIDES:
        if not np.any(lab == k):
            raise ValueError(f"labels contain no pixel of side {k}")
    return b, f, lab


# -- SimpleITK ---------------------------------------------------------------------------
def sitk_per_bone(baseline, followup, labels, *, levels: int = 2) -> tuple[Similarity, Similarity]:
    """Per-side SimpleITK similarity registration; returns ``(upper, lower)``.

    fixed = baseline, moving = followup, spacing 1 and origin 0 so physical ``(x, y)`` =
    ``(col, row)``. SimpleITK's optimised transform maps fixed points to moving points,
    ``p_f = c + s R(a) (p_b - c) + t`` with ``R`` the same matrix as in jsnq (checked by
    tests), so its parameters carry over unchanged. All pixels of the side are sampled
    (deterministic). ``levels`` pyramid levels: shrink 2**k, smoothing sigma 2**k / 2
    (0 at full resolution).
    """
    import SimpleITK as sitk

    b, f, lab = _check(baseline, followup, labels)
    if levels < 1:
        raise ValueError("levels must be >= 1")
    centre = crop_centre(b.shape)
    fixed = sitk.GetImageFromArray(b.astype(np.float32))   # index (i, j) = (col, row)
    moving = sitk.GetImageFromArray(f.astype(np.float32))
    shrink = [2 ** k for k in range(levels - 1, -1, -1)]
    sigmas = [s / 2.0 if s > 1 else 0.0 for s in shrink]

    out = []
    for k in SIDES:
        mask = sitk.GetImageFromArray((lab == k).astype(np.uint8))
        tx = sitk.Similarity2DTransform()
        tx.SetCenter(centre)  # identity: scale 1, angle 0, translation 0

        reg = sitk.ImageRegistrationMethod()
        reg.SetMetricAsCorrelation()
        reg.SetMetricFixedMask(mask)
        reg.SetMetricSamplingStrategy(reg.NONE)  # every pixel: deterministic
        reg.SetInterpolator(sitk.sitkBSpline)
        reg.SetOptimizerAsRegularStepGradientDescent(
            learningRate=1.0, minStep=1e-5, numberOfIterations=300,
            relaxationFactor=0.5, gradientMagnitudeTolerance=1e-8)
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetShrinkFactorsPerLevel(shrink)
        reg.SetSmoothingSigmasPerLevel(sigmas)
        reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()  # spacing 1: same as pixels
        reg.SetInitialTransform(tx, inPlace=True)
        reg.Execute(fixed, moving)

        t = tx.GetTranslation()
        c = tx.GetCenter()
        out.append(Similarity(tx.GetScale(), tx.GetAngle(), t[0], t[1], (c[0], c[1])))
    return out[0], out[1]


# -- phase-only correlation --------------------------------------------------------------
def _upsampled_dft(cross: np.ndarray, centre: np.ndarray, factor: int, half: int) -> np.ndarray:
    """Inverse DFT of ``cross`` on a (2*half+1)^2 grid of step 1/factor about ``centre``
    (row, col shift): the band-limited interpolant of the correlation surface."""
    off = np.arange(-half, half + 1) / factor
    k0 = np.fft.fftfreq(cross.shape[0])[None, :]
    k1 = np.fft.fftfreq(cross.shape[1])[:, None]
    e0 = np.exp(2j * np.pi * (centre[0] + off)[:, None] * k0)   # (m, rows)
    e1 = np.exp(2j * np.pi * k1 * (centre[1] + off)[None, :])   # (cols, m)
    return np.real(e0 @ cross @ e1)


def _parabola_vertex(m1: float, m0: float, p1: float) -> float:
    den = m1 - 2.0 * m0 + p1
    return 0.0 if den >= 0 else 0.5 * (m1 - p1) / den


def _side_weight(hard: np.ndarray, taper: float) -> np.ndarray:
    """Soft mask: 1 deep inside, raised-cosine ramp over ``taper`` px inside the edge, 0 outside
    (so, unlike a Gaussian-blurred mask, it never reaches into the other bone side)."""
    if taper <= 0:
        return hard.astype(float)
    d = ndimage.distance_transform_edt(hard)
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(d / taper, 0.0, 1.0))


def _poc_peak(f0: np.ndarray, g0: np.ndarray, lowpass: float | None, upsample: int) -> np.ndarray:
    """Shift ``(dy, dx)`` with ``g0(x) ~ f0(x - d)``, from the phase-only correlation peak."""
    rows, cols = f0.shape
    cross = np.fft.fft2(g0) * np.conj(np.fft.fft2(f0))
    cross /= np.abs(cross) + 1e-30 * np.abs(cross).max()
    if lowpass is not None:  # Gaussian spectral weight, std = lowpass x Nyquist
        fy = np.fft.fftfreq(rows)[:, None] / 0.5
        fx = np.fft.fftfreq(cols)[None, :] / 0.5
        cross *= np.exp(-0.5 * (fx ** 2 + fy ** 2) / lowpass ** 2)
    surf = np.real(np.fft.ifft2(cross))
    n = np.array(surf.shape)
    i0 = np.array(np.unravel_index(np.argmax(surf), surf.shape))
    i0 = np.where(i0 > n / 2, i0 - n, i0).astype(float)  # wrap to signed shifts
    if upsample <= 1:
        return i0
    half = int(1.5 * upsample)
    fine = _upsampled_dft(cross, i0, upsample, half)
    j = np.clip(np.array(np.unravel_index(np.argmax(fine), fine.shape)), 1, 2 * half - 1)
    sub = (_parabola_vertex(fine[j[0] - 1, j[1]], fine[j[0], j[1]], fine[j[0] + 1, j[1]]),
           _parabola_vertex(fine[j[0], j[1] - 1], fine[j[0], j[1]], fine[j[0], j[1] + 1]))
    return i0 + (j - half + np.array(sub)) / upsample


def poc_per_bone(baseline, followup, labels, *, window: str = "hann", taper: float = 8.0,
                 lowpass: float | None = 0.1, upsample: int = 20,
                 iterations: int = 3) -> tuple[Similarity, Similarity]:
    """Partial-image POC translation per side; returns ``(upper, lower)`` (scale 1, angle 0).

    For each side the weight ``w`` = soft baseline mask of that side (raised-cosine taper of
    ``taper`` px inside its edge) x 2-D window (``"hann"`` or ``"none"``). Both images are
    mean-subtracted (``w``-weighted) and multiplied by their weight; the normalised
    cross-power spectrum, times a Gaussian low-pass (std ``lowpass`` x Nyquist; None = off),
    is inverted; the integer peak is refined by evaluating the band-limited surface on a
    1/``upsample`` px grid about it plus a parabola fit on that grid.

    A static window biases the peak towards zero shift (here ~0.1-0.3 px for 2-3 px
    shifts), so ``iterations`` times the follow-up weight is moved with the anatomy,
    ``w(x - d)``, and the shift re-estimated; ``iterations=0`` is the plain one-shot method.
    The shift ``d`` satisfies ``followup(x + d) = baseline(x)``.
    """
    b, f, lab = _check(baseline, followup, labels)
    rows, cols = b.shape
    if window == "hann":
        win = np.outer(np.hanning(rows), np.hanning(cols))
    elif window == "none":
        win = np.ones_like(b)
    else:
        raise ValueError(f"unknown window {window!r}")
    centre = crop_centre(b.shape)

    out = []
    for k in SIDES:
        w = _side_weight(lab == k, taper) * win
        f0 = (b - np.sum(b * w) / np.sum(w)) * w
        d = np.zeros(2)  # (dy, dx)
        for it in range(iterations + 1):
            wf = ndimage.shift(w, d, order=3, mode="constant") if it else w
            g0 = (f - np.sum(f * wf) / np.sum(wf)) * wf
            d = _poc_peak(f0, g0, lowpass, upsample)
        out.append(Similarity(1.0, 0.0, float(d[1]), float(d[0]), centre))
    return out[0], out[1]
