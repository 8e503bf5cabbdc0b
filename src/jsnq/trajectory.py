"""One joint across N visits: every pair measured, one consistent trajectory fitted.

For visits ``0 .. N-1`` (in time order) the unknowns are the cumulative narrowings
``x_k`` of visit ``k`` relative to the first (``x_0 = 0``). Every pair of visits ``i < j``
is measured in both directions; the two are combined into one antisymmetric estimate
``d_ij = (J(i, j) - J(j, i)) / 2`` of ``x_j - x_i`` by the same rule as a symmetric
:func:`jsnq.measure` (:func:`jsnq.quality.combine_directions`: the RMS of the two directions'
SEs; their disagreement is checked, not added). The trajectory is the weighted
least-squares solution of ``d_ij = x_j - x_i`` (weights ``1 / se_ij^2``), with the
covariance ``(A^T W A)^-1`` scaled up by the reduced chi-square when that exceeds 1 (the
pairs disagree more than their SEs say).

Consistency: the residual ``r_ij = d_ij - (x_j - x_i)`` of every pair and, for every triple
``i < j < k``, the path residual ``d_ij + d_jk - d_ik``. A visit is flagged when the pairs it
takes part in have a normalised residual beyond :data:`FLAG_Z` while the pairs without it
are consistent (leave-one-visit-out). The maths here is pure numpy; measuring the pairs
is :func:`jsnq.series` (in :mod:`jsnq.longitudinal`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

__all__ = ["PairEstimate", "Trajectory", "fit_trajectory", "FLAG_Z"]

#: A pair whose |residual| / SE exceeds this breaks consistency (two-sided p ~ 0.003).
FLAG_Z = 3.0


@dataclass(frozen=True)
class PairEstimate:
    """The narrowing from visit ``i`` to visit ``j`` (``i < j``), both directions combined.

    Attributes:
        i, j: visit indices.
        value_px: ``(J(i, j) - J(j, i)) / 2``.
        se_px: its standard error (:func:`jsnq.quality.combine_directions`).
        forward_px, backward_px: ``J(i, j)`` and ``J(j, i)``.
        reliable: both directions were flagged reliable.
    """

    i: int
    j: int
    value_px: float
    se_px: float
    forward_px: float
    backward_px: float
    reliable: bool

    @property
    def disagreement_px(self) -> float:
        """``J(i, j) + J(j, i)``: 0 for perfectly inverse-consistent measurements."""
        return self.forward_px + self.backward_px


@dataclass(frozen=True)
class Trajectory:
    """Cumulative narrowing of each visit relative to the first.

    Attributes:
        narrowing_px: ``(N,)``, 0 at the first visit; NaN for a visit that no measured pair
            links to the first (its reason is in ``flagged_visits``).
        se_px: ``(N,)`` standard errors (0 at the first visit, by definition; NaN likewise).
        pairs: the pair estimates the fit used.
        residuals_px: per pair, ``d_ij - (x_j - x_i)``, same order as ``pairs``.
        path_residuals_px: per triple ``(i, j, k)``, ``d_ij + d_jk - d_ik``.
        chi2_reduced: sum of squared normalised residuals over the degrees of freedom
            (NaN with no redundancy, i.e. two visits).
        flagged_visits: visits that break consistency, with the reason.
        connected: every visit is linked to the first through usable pairs.
    """

    narrowing_px: np.ndarray = field(repr=False)
    se_px: np.ndarray = field(repr=False)
    pairs: tuple[PairEstimate, ...]
    residuals_px: np.ndarray = field(repr=False)
    path_residuals_px: dict[tuple[int, int, int], float] = field(repr=False)
    chi2_reduced: float
    flagged_visits: dict[int, str]
    connected: bool

    @property
    def path_rms_px(self) -> float:
        v = list(self.path_residuals_px.values())
        return float(np.sqrt(np.mean(np.square(v)))) if v else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "narrowing_px": [_number(v) for v in self.narrowing_px],
            "se_px": [_number(v) for v in self.se_px],
            "pairs": [{"i": p.i, "j": p.j, "value_px": p.value_px, "se_px": p.se_px, "forward_px": p.forward_px,
                       "backward_px": p.backward_px, "disagreement_px": p.disagreement_px, "reliable": p.reliable,
                       "residual_px": float(r)} for p, r in zip(self.pairs, self.residuals_px)],
            "path_residuals_px": [{"visits": list(k), "residual_px": v} for k, v in self.path_residuals_px.items()],
            "path_rms_px": self.path_rms_px,
            "chi2_reduced": self.chi2_reduced,
            "flagged_visits": {str(k): v for k, v in self.flagged_visits.items()},
            "connected": self.connected,
        }


def _number(value: float) -> float | None:
    """A float for JSON, None where nothing was measured."""
    return float(value) if math.isfinite(value) else None


def _solve(n: int, pairs: Sequence[PairEstimate]) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, bool]:
    """WLS fit -> (x, cov, residuals, chi2_reduced, connected)."""
    a = np.zeros((len(pairs), n - 1))
    d = np.array([p.value_px for p in pairs], dtype=float)
    w = np.array([1.0 / max(p.se_px, 1e-6) ** 2 for p in pairs])
    for r, p in enumerate(pairs):
        if p.j > 0:
            a[r, p.j - 1] += 1.0
        if p.i > 0:
            a[r, p.i - 1] -= 1.0
    normal = a.T @ (a * w[:, None])
    connected = bool(n == 1 or np.linalg.matrix_rank(normal) == n - 1)
    cov = np.linalg.pinv(normal)
    x = cov @ (a.T @ (w * d))
    resid = d - a @ x
    dof = len(pairs) - (n - 1)
    chi2 = float(np.sum(w * resid**2) / dof) if dof > 0 else float("nan")
    if dof > 0 and chi2 > 1.0:
        cov = cov * chi2
    return np.concatenate([[0.0], x]), cov, resid, chi2, connected


def _linked_to_first(n_visits: int, pairs: Sequence[PairEstimate]) -> set[int]:
    """The visits joined to visit 0 by a chain of pairs."""
    linked, grew = {0}, True
    while grew:
        grew = False
        for p in pairs:
            if (p.i in linked) != (p.j in linked):
                linked |= {p.i, p.j}
                grew = True
    return linked


def fit_trajectory(n_visits: int, pairs: Sequence[PairEstimate]) -> Trajectory:
    """Fit the trajectory of ``n_visits`` visits from pair estimates (see the module doc).

    Raises:
        ValueError: fewer than two visits, no pairs, or a pair outside ``0 <= i < j < n``.
    """
    if n_visits < 2:
        raise ValueError("a series needs at least two visits")
    if not pairs:
        raise ValueError("no pair of visits could be measured")
    for p in pairs:
        if not 0 <= p.i < p.j < n_visits:
            raise ValueError(f"pair ({p.i}, {p.j}) is not an ordered pair of visits 0..{n_visits - 1}")
    x, cov, resid, chi2, connected = _solve(n_visits, pairs)
    se = np.concatenate([[0.0], np.sqrt(np.maximum(np.diag(cov), 0.0))])
    by_pair = {(p.i, p.j): p.value_px for p in pairs}
    path = {}
    for i, j, k in itertools.combinations(range(n_visits), 3):
        if (i, j) in by_pair and (j, k) in by_pair and (i, k) in by_pair:
            path[i, j, k] = float(by_pair[i, j] + by_pair[j, k] - by_pair[i, k])
    flagged: dict[int, str] = {}
    z = np.abs(resid) / np.array([max(p.se_px, 1e-6) for p in pairs])
    if n_visits >= 4 and np.any(z > FLAG_Z):
        # Leave one visit out: a visit whose pairs carry the inconsistency, while the others agree.
        for v in range(n_visits):
            keep = [p for p in pairs if v not in (p.i, p.j)]
            mapping = {u: k for k, u in enumerate(u for u in range(n_visits) if u != v)}
            sub = [PairEstimate(mapping[p.i], mapping[p.j], p.value_px, p.se_px, p.forward_px, p.backward_px,
                                p.reliable) for p in keep]
            if len(sub) <= n_visits - 2:
                continue
            _, _, r_sub, _, _ = _solve(n_visits - 1, sub)
            z_sub = np.abs(r_sub) / np.array([max(p.se_px, 1e-6) for p in sub])
            own = [zz for p, zz in zip(pairs, z) if v in (p.i, p.j)]
            if np.all(z_sub <= FLAG_Z) and max(own) > FLAG_Z:
                flagged[v] = (f"visit {v}: its pairs disagree with the others (largest normalised residual "
                              f"{max(own):.1f} > {FLAG_Z:g}; consistent without it)")
    elif n_visits == 3 and np.any(z > FLAG_Z):
        for v in range(3):
            flagged[v] = (f"the three visits are inconsistent (path residual "
                          f"{next(iter(path.values()), float('nan')):+.2f} px); which visit is at fault is undetermined")
    if not connected:
        # A visit that no chain of measured pairs links to the first has no narrowing relative
        # to it: NaN, never the 0 the pseudo-inverse leaves there.
        linked = _linked_to_first(n_visits, pairs)
        for v in range(1, n_visits):
            if v in linked:
                continue
            x[v] = se[v] = np.nan
            if not any(v in (p.i, p.j) for p in pairs):
                flagged[v] = f"visit {v}: no pair with it could be measured"
            else:
                flagged[v] = f"visit {v}: no measured pair links it to the first visit"
    return Trajectory(narrowing_px=x, se_px=se, pairs=tuple(pairs), residuals_px=resid, path_residuals_px=path,
                      chi2_reduced=chi2, flagged_visits=flagged, connected=connected)
