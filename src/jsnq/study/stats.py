"""Progression rates and their summary per joint type: pure maths, no I/O.

**A unit's rate** (one patient's joint on one side). The series fits the cumulative narrowing
``x_k`` of each visit from the antisymmetric pair estimates ``d_ij`` (SE ``s_ij``) by weighted
least squares, ``d_ij = x_j - x_i`` with weights ``w_ij = 1/s_ij^2``, its covariance scaled by
``c = max(1, chi2_reduced)`` (:mod:`jsnq.trajectory`). A linear progression ``x_k = b t_k``
(``t_k`` in years since the first visit) is fitted to that trajectory by generalised least
squares under the trajectory's own covariance. Because the trajectory is itself the WLS solution
of the pair equations, this equals the WLS slope fitted to the pairs directly::

    b = sum(w_ij dt_ij d_ij) / sum(w_ij dt_ij^2),     SE(b) = sqrt(c / sum(w_ij dt_ij^2))

with ``dt_ij = t_j - t_i``. It uses the same pairs and weights as the trajectory, so it
inherits the trajectory's assumption that pair errors are independent. In mm: times the
pixel spacing.

**Per joint type** (e.g. every ``MCP2``): each patient contributes one rate, the mean of their
units' rates (the two hands of one patient are not independent). The reported rate is the mean
over patients, with a Student-t 95 % interval ``mean +- t(0.975, n-1) sd / sqrt(n)``. The
interval comes from the spread between patients, which already contains the measurement error,
so it holds whether or not the per-unit SEs are right. It is unweighted: the spread between
patients usually exceeds the measurement error, and weighting by SEs that may be wrong would
be worse.

**Smallest detectable change** (95 %): ``SDC = 1.96 sqrt(mean_u se_u^2)``, with ``se_u`` the SE of
unit ``u``'s cumulative narrowing at its last visit. That SE is already the SE of a change (last
visit minus first), so no extra sqrt(2) is needed. A change smaller than the SDC is within
measurement error at 95 % for a typical unit. The rate has its own version,
``SDC_rate = 1.96 sqrt(mean_u SE(b_u)^2)``.

**What is pooled.** Only trusted units: measured, and with every visit reliable. Flagged units
(a flagged pair or visit) are counted apart (``n_flagged``, ``share_flagged`` = their fraction of
the measured units) and left out of the rates and SDCs, as failed units are (``n_failed``). Rates
and SDCs are pooled in mm when every trusted unit has a pixel spacing; in px only when their
pixels are one size (all the same spacing, or none known): px of different sizes are not averaged.
An undefined value (e.g. the CI of one patient) is NaN, written as an empty cell, with a note.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

__all__ = ["Rate", "UnitOutcome", "JointSummary", "unit_rate", "summarise", "SDC_Z"]

#: The normal quantile of a two-sided 95 % detectable change.
SDC_Z = 1.959963984540054
NAN = float("nan")


@dataclass(frozen=True)
class Rate:
    """A unit's linear progression rate, px/year (and mm/year when the spacing is known; else NaN)."""

    px_per_year: float
    se_px_per_year: float
    mm_per_year: float
    se_mm_per_year: float


def unit_rate(pairs: Iterable[tuple[int, int, float, float]], years: Sequence[float], *,
              chi2_reduced: float = NAN, spacing_mm: float | None = None) -> Rate:
    """The GLS rate of one trajectory (see the module doc).

    Args:
        pairs: ``(i, j, value_px, se_px)`` per pair estimate the trajectory used (``i < j``).
        years: per visit, years since the first visit.
        chi2_reduced: the trajectory fit's reduced chi-square (NaN: no redundancy, taken as 1).
        spacing_mm: pixel spacing for the mm values, or None.

    Returns:
        The :class:`Rate`; all NaN when no pair spans a non-zero time (e.g. same-day visits).
    """
    num = den = 0.0
    for i, j, value, se in pairs:
        if not (math.isfinite(value) and math.isfinite(se) and se > 0):
            continue
        dt = float(years[j]) - float(years[i])
        w = 1.0 / se**2
        num += w * dt * value
        den += w * dt * dt
    if den <= 0.0:
        return Rate(NAN, NAN, NAN, NAN)
    c = chi2_reduced if math.isfinite(chi2_reduced) and chi2_reduced > 1.0 else 1.0
    b, se_b = num / den, math.sqrt(c / den)
    if spacing_mm is None:
        return Rate(b, se_b, NAN, NAN)
    return Rate(b, se_b, b * spacing_mm, se_b * spacing_mm)


@dataclass(frozen=True)
class UnitOutcome:
    """What the per-joint summary needs of one unit.

    Attributes:
        joint, patient: grouping.
        ok: the unit was measured (False: it failed).
        rate: its :class:`Rate` (None when it failed).
        last_se_px, last_se_mm: SE of the cumulative narrowing at its last visit (mm: NaN without spacing).
        flagged: at least one of its visits is not reliable.
        spacing_mm: the pixel spacing of its px figures (None: unknown).
    """

    joint: str
    patient: str
    ok: bool
    rate: Rate | None
    last_se_px: float
    last_se_mm: float
    flagged: bool
    spacing_mm: float | None = None


@dataclass(frozen=True)
class JointSummary:
    """The summary of one joint type (see the module doc for every estimator).

    Rates and SDCs use the trusted rated units only; the ``*_mm`` values are NaN unless every
    one has a pixel spacing, the ``*_px`` values unless their pixels are one size (``notes``
    says why a value is empty).
    """

    joint: str
    n_units: int
    n_failed: int
    n_flagged: int
    n_rated: int
    n_patients: int
    rate_px_per_year: float
    rate_ci_low_px: float
    rate_ci_high_px: float
    rate_sd_px: float
    rate_mm_per_year: float
    rate_ci_low_mm: float
    rate_ci_high_mm: float
    rate_sd_mm: float
    sdc_px: float
    sdc_mm: float
    sdc_rate_px_per_year: float
    sdc_rate_mm_per_year: float
    share_flagged: float
    notes: str


def _t975(df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def _mean_ci(per_patient: Sequence[float]) -> tuple[float, float, float, float]:
    """(mean, low, high, sd) over patients; CI and SD NaN with fewer than two."""
    v = np.asarray(per_patient, dtype=float)
    if v.size == 0:
        return NAN, NAN, NAN, NAN
    mean = float(v.mean())
    if v.size < 2:
        return mean, NAN, NAN, NAN
    sd = float(v.std(ddof=1))
    half = _t975(v.size - 1) * sd / math.sqrt(v.size)
    return mean, mean - half, mean + half, sd


def _rms(values: Sequence[float]) -> float:
    v = np.asarray(values, dtype=float)
    return float(np.sqrt(np.mean(v**2))) if v.size else NAN


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun if n == 1 else noun + 's'}"


def _one_size(spacings: Sequence[float | None]) -> bool:
    """All None, or all known and within 1 % of each other."""
    if all(s is None for s in spacings):
        return True
    if any(s is None for s in spacings):
        return False
    return max(spacings) - min(spacings) <= 0.01 * min(spacings)


def _patients_mean(patients: dict[str, list[Rate]], unit: str, valid: bool, rated: Sequence[UnitOutcome],
                   notes: list[str], why_empty: str) -> tuple[float, float, float, float]:
    """:func:`_mean_ci` of the per-patient mean rate (``Rate.<unit>``) when ``valid``; else NaNs,
    with ``why_empty`` noted when there were rates."""
    if valid:
        return _mean_ci([float(np.mean([getattr(r, unit) for r in rs])) for rs in patients.values()])
    if rated:
        notes.append(why_empty)
    return (NAN,) * 4


def summarise(outcomes: Iterable[UnitOutcome]) -> list[JointSummary]:
    """One :class:`JointSummary` per joint type, in order of first appearance."""
    by_joint: dict[str, list[UnitOutcome]] = {}
    for o in outcomes:
        by_joint.setdefault(o.joint, []).append(o)
    out = []
    for joint, units in by_joint.items():
        ok = [u for u in units if u.ok]
        trusted = [u for u in ok if not u.flagged]
        rated = [u for u in trusted if u.rate is not None and math.isfinite(u.rate.px_per_year)]
        notes = []
        if len(ok) > len(trusted):
            notes.append(f"{_plural(len(ok) - len(trusted), 'flagged unit')} left out of the rates")
        patients: dict[str, list[Rate]] = {}
        for u in rated:
            patients.setdefault(u.patient, []).append(u.rate)
        have_px = bool(rated) and _one_size([u.spacing_mm for u in rated])
        px = _patients_mean(patients, "px_per_year", have_px, rated, notes,
                            "px values empty: the units' pixels differ in size (see mm)")
        have_mm = bool(rated) and all(math.isfinite(u.rate.mm_per_year) for u in rated)
        mm = _patients_mean(patients, "mm_per_year", have_mm, rated, notes,
                            "mm values empty: not every unit has a pixel spacing")
        if len(patients) == 1:
            notes.append("confidence interval empty: one patient with a trusted rate")
        if len(rated) < len(trusted):
            notes.append(f"{_plural(len(trusted) - len(rated), 'trusted unit')} without a rate (no time between visits)")
        if not rated:
            notes.append("no trusted unit with a rate")
        out.append(JointSummary(
            joint=joint, n_units=len(units), n_failed=len(units) - len(ok), n_flagged=len(ok) - len(trusted),
            n_rated=len(rated), n_patients=len(patients),
            rate_px_per_year=px[0], rate_ci_low_px=px[1], rate_ci_high_px=px[2], rate_sd_px=px[3],
            rate_mm_per_year=mm[0], rate_ci_low_mm=mm[1], rate_ci_high_mm=mm[2], rate_sd_mm=mm[3],
            sdc_px=SDC_Z * _rms([u.last_se_px for u in rated]) if have_px else NAN,
            sdc_mm=SDC_Z * _rms([u.last_se_mm for u in rated]) if have_mm else NAN,
            sdc_rate_px_per_year=SDC_Z * _rms([u.rate.se_px_per_year for u in rated]) if have_px else NAN,
            sdc_rate_mm_per_year=SDC_Z * _rms([u.rate.se_mm_per_year for u in rated]) if have_mm else NAN,
            share_flagged=(sum(u.flagged for u in ok) / len(ok)) if ok else NAN,
            notes="; ".join(notes)))
    return out
