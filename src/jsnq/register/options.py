"""Options of the classical registration engine (:mod:`jsnq.register.classical`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["EXPOSURE_MODELS", "RegistrationOptions"]


#: Photometric models of the follow-up against the baseline on each side: ``linear`` (gain and
#: offset), ``monotone`` (a monotone quadratic curve: gain, offset and curvature).
EXPOSURE_MODELS = ("linear", "monotone")


@dataclass(frozen=True)
class RegistrationOptions:
    """Options of the classical engine.

    Attributes:
        global_levels: ``(sigma_px, step_px)`` scale-space levels for the joint (both-bone)
            similarity that follows the global search. ``sigma`` is the Gaussian blur applied
            to both images; ``step`` the spacing of the baseline sample grid.
        bone_levels: levels for the per-bone refinement; the last must be ``(0, 1)``
            (full resolution, every pixel) for sub-pixel precision.
        max_iter: Gauss-Newton iterations per level.
        tol_px: stop a level when the update moves no pixel of the side by more than this.
        search_angles_deg: rotations tried by the global search.
        search_scales: scales tried by the global search.
        search_factor: downsampling of the global search.
        block_px: block size of the sandwich covariance.
        grad_sigma: extra Gaussian smoothing (px) of the baseline for the Jacobian only.
        gap_exclusion_px: pixels of one side closer than this to the other side are left out
            of both fits. They lie in the joint space, which belongs to neither bone and
            deforms as the joint narrows; including them biases the narrowing towards zero
            (docs/benchmarks.md, "Figures behind the defaults").
        edge_ramp_px: 0 (the default): every pixel of a side outside the gap band counts
            fully. Above 0: each side's pixels are weighted by their distance from the side's
            edge (0 within ``gap_exclusion_px``, rising linearly to 1 over ``edge_ramp_px``;
            :func:`~jsnq.labels.edge_weights`), so that pixels near the split line and near the bones'
            overlap enter a fit gradually. It about halves how much the narrowing depends on
            where the labels put the split but discards information, so the noise error grows
            (docs/benchmarks.md, "Segmentation", "Soft edge weights"). For labels you do not trust.
        gain_free: False (the default): the geometric update uses the smoothed-gradient
            instrument as is. True: the instrument is made orthogonal to the (centred)
            template, so the fixed point of the geometry no longer depends on the fitted gain
            and offset (:class:`~jsnq.register.scale_space.Level`). The gain is then only a
            step size. Without it, a gain error leaks into the geometry through the mask's
            boundary, and unequal noise in the two visits biases the ratio-of-SDs gain and
            with it the narrowing. The option largely removes that bias but raises the forward/backward
            disagreement on real pairs slightly and is slower, so it is not the default
            (docs/benchmarks.md, "Unequal noise and --gain-free").
        max_abs_angle_deg, scale_range, max_shift_px: plausibility bounds; a fit beyond them
            is flagged ``at_bound``.
        parallel_bones: fit the two bones in two threads. The fits are independent (the
            same result either way) and numpy and scipy release the GIL in their heavy loops,
            so on two cores a registration takes less time (docs/benchmarks.md, "Registration
            engines"); turn it off when every core already runs its own process.
        inverse_consistent: with both visits' labels (and ``symmetric``), fit each bone once,
            inverse-consistently (:func:`~jsnq.register.classical.register_pair`: the forward
            and backward Gauss-Newton steps averaged into one transform), instead of registering both ways and averaging
            the two narrowings. False: the two separate fits (jsnq 0.1's behaviour).
        exposure_model: ``monotone`` (the default): the follow-up is a monotone quadratic
            curve of the baseline on each side (gain, offset and curvature, fitted with the
            geometry: :func:`~jsnq.register.gauss_newton.monotone_exposure`), which absorbs
            nonlinear exposure changes such as a gamma at no cost in precision on real crops
            (docs/benchmarks.md, "Issue 14's conditions", "Nonlinear exposure"). Fitted at the
            full-resolution level only. ``linear``: a gain and an offset (jsnq 0.1).
        network_passes: forward passes of the registration network's cascade that start the
            hybrid's refinement (default 1: the refinement reaches the same fit from the
            coarse pass in a third of the network's time; docs/benchmarks.md, "Issue 14's
            conditions"); 0: the shipped weights' own number (``inference_passes``, 3, which
            the network-only engine always uses).
    """

    global_levels: tuple[tuple[float, int], ...] = ((4.0, 4),)
    bone_levels: tuple[tuple[float, int], ...] = ((2.0, 2), (0.0, 1))
    max_iter: int = 30
    tol_px: float = 2e-3
    search_angles_deg: tuple[float, ...] = tuple(float(a) for a in np.arange(-20.0, 20.1, 5.0))
    search_scales: tuple[float, ...] = (0.9, 1.0, 1.1)
    search_factor: int = 4
    block_px: int = 8
    grad_sigma: float = 1.5
    gap_exclusion_px: float = 3.0
    edge_ramp_px: float = 0.0
    gain_free: bool = False
    max_abs_angle_deg: float = 30.0
    scale_range: tuple[float, float] = (0.75, 1.33)
    max_shift_px: float = 60.0
    parallel_bones: bool = True
    inverse_consistent: bool = True
    exposure_model: str = "monotone"
    network_passes: int = 1

    def __post_init__(self) -> None:
        if self.network_passes < 0:
            raise ValueError(f"network_passes must be >= 0, got {self.network_passes}")
        if self.exposure_model not in EXPOSURE_MODELS:
            raise ValueError(f"exposure_model must be one of {', '.join(map(repr, EXPOSURE_MODELS))}; "
                             f"got {self.exposure_model!r}")
        if not self.bone_levels or tuple(self.bone_levels[-1]) != (0, 1):
            raise ValueError("bone_levels must end with (0, 1): full resolution, every pixel")
        for sigma, step in (*self.global_levels, *self.bone_levels):
            if sigma < 0 or int(step) < 1:
                raise ValueError(f"levels need sigma >= 0 and step >= 1, got ({sigma}, {step})")
        if not self.edge_ramp_px >= 0:
            raise ValueError(f"edge_ramp_px must be >= 0, got {self.edge_ramp_px}")
