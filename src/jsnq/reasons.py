"""Short codes for the reasons a joint is flagged or not measured, and reasons in another pixel unit.

The full reasons stay in the JSON, the CSV tables and the reports; the terminal prints a code
per reason (:func:`codes`) and a legend of the codes it used (:func:`legend`). :data:`CODES` is
the one place the codes are defined: each with the phrases of the reasons it stands for (first
match) and its meaning.

Whole-hand results quote their pixel figures in pixels of the radiograph, while the checks
that write the reasons work on the joint's resampled crop: :func:`rescale_px` turns every
``<number> px`` of a reason into radiograph pixels, so a reason quotes the same unit as its row.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

__all__ = ["CODES", "codes", "legend", "rescale_px", "unique", "join_reasons", "visit_reasons"]

#: code -> (phrases of the reasons it stands for, meaning); a reason gets every code it matches.
CODES: dict[str, tuple[tuple[str, ...], str]] = {
    "NOTREQ": (("not requested",), "not requested (--joints)"),
    "NOTFOUND": (("not found", "not located", "no axis"), "the joint was not found in the radiograph"),
    "CUTOFF": (("cut off", "image edge", "outside the image", "beyond the image"),
               "the joint's crop leaves the radiograph (cut off)"),
    "PLACE": (("does not match", "finger region", "cannot relate the visits"),
              "the follow-up's crop could not be placed"),
    "JSW": (("the jsw is not valid", "no joint space at", "jsw change"),
            "no valid joint space width (left empty)"),
    "SEG": (("segmentation network failed", "bone split", "classical joint-space line", "did not find both bones",
             "no split line"), "bone split not trusted: not in this joint's space, or the network failed"),
    "POSTURE": (("posture",), "posture changed: the bones rotated against each other"),
    "IMPLAUS": (("implausible narrowing", "narrowing is not finite"), "implausibly large narrowing"),
    "SE": (("standard error",), "standard error too large"),
    "CONV": (("did not converge",), "a bone's registration did not converge"),
    "BOUNDS": (("plausibility bounds",), "a bone's motion at the plausibility bounds"),
    "MATCH": (("poor match",), "a bone matches poorly after registration"),
    "DIR": (("forward and backward",), "forward and backward measurements disagree"),
    "LABELS": (("labels disagree",), "the two visits' bone splits disagree"),
    "VISIT": (("its pairs disagree", "inconsistent", "links it to the first", "pair with it", "pairs of other visits"),
              "a visit is inconsistent with the others"),
    "SIDE": (("manifest says side",), "manifest side differs from the located hand"),
    "FAIL": ((), "other (see the full reason)"),
}

#: code -> phrases that, in the same reason, cancel it (the JSW failed but the split was kept).
_UNLESS = {"SEG": ("the split line was kept",)}
_PX = re.compile(r"(?<![\w.])([+\-−]?)(\d+(?:\.\d+)?)(?: crop)?( px\b)")


def codes(reasons: Iterable[str]) -> list[str]:
    """The codes of a list of reasons, each once, in :data:`CODES` order: every code one of whose
    phrases a reason contains; ``FAIL`` for a reason that contains none."""
    found: set[str] = set()
    for reason in reasons:
        low = reason.lower()
        mine = {c for c, (phrases, _) in CODES.items() if any(p in low for p in phrases)
                and not any(u in low for u in _UNLESS.get(c, ()))}
        found |= mine or {"FAIL"}
    return [c for c in CODES if c in found]


def legend(used: Iterable[str]) -> list[str]:
    """``"CODE  meaning"`` lines for the codes in ``used``, in :data:`CODES` order."""
    have = set(used)
    return [f"{c:<8} {CODES[c][1]}" for c in CODES if c in have]


def rescale_px(text: str, factor: float, digits: int = 2) -> str:
    """Every ``<number> px`` (or ``<number> crop px``) of ``text`` multiplied by ``factor`` (e.g.
    ``1 / zoom``: crop px -> radiograph px, written ``px``), with ``digits`` decimals and its sign
    kept; the rest unchanged (``21 frame px`` names another unit and stays)."""
    if not text or factor == 1.0:
        return text

    def one(m: re.Match) -> str:
        sign, number, unit = m.group(1), float(m.group(2)), m.group(3)
        return f"{sign}{number * factor:.{digits}f}{unit}"

    return _PX.sub(one, text)


def unique(reasons: Sequence[str]) -> list[str]:
    """The non-empty reasons, each once, in order."""
    seen: list[str] = []
    for r in reasons:
        if r and r not in seen:
            seen.append(r)
    return seen


def join_reasons(reasons: Sequence[str]) -> str:
    """Reasons joined by ``"; "``, each once."""
    return "; ".join(unique(reasons))


def visit_reasons(series: Any, k: int) -> list[str]:
    """Why visit ``k`` of a :class:`~jsnq.results.SeriesResult` is not reliable: its flag, and
    the reasons of the unreliable or failed pairs it takes part in; a reason shared by several
    pairs once, naming them (``pairs 0->1, 1->0: ...``)."""
    t = series.trajectory
    out = unique([t.flagged_visits.get(k) or ""])
    by_reason: dict[str, list[str]] = {}
    for (i, j), m in sorted(series.measurements.items()):
        if k in (i, j) and not m.reliable:
            for r in m.reasons:
                by_reason.setdefault(r, []).append(f"{i}->{j}")
    for (i, j), e in sorted(series.errors.items()):
        if k in (i, j):
            by_reason.setdefault(f"failed: {e}", []).append(f"{i}->{j}")
    for r, pairs in by_reason.items():
        if r in out:
            continue
        out.append(f"{'pair' if len(pairs) == 1 else 'pairs'} {', '.join(pairs)}: {r}")
    return out
