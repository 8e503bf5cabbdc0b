"""``run_study``: a manifest in, the study's folder out. Orchestration only: the maths is in
:mod:`~jsnq.study.stats` and :mod:`~jsnq.study.tables`, a unit's measurement in
:mod:`~jsnq.study.units`, the cluster in :mod:`~jsnq.study.schedule`, the files in
:mod:`~jsnq.study.store`.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..config import MeasureConfig, resolve
from ..errors import JsnqInputError
from ..version import __version__
from ..reasons import join_reasons
from .manifest import Manifest, Unit, read_manifest
from .stats import JointSummary, UnitOutcome, summarise, unit_rate
from .store import Store
from .tables import JOINT_COLUMNS, PAIR_COLUMNS, SUMMARY_COLUMNS, UNIT_COLUMNS, finite_or_none
from .units import (RECORD_FORMAT, fail_record, failure_message, hand_joints, input_digests,
                    new_record, run_unit, unit_key)

__all__ = ["Progress", "StudyResult", "run_study", "assemble"]


@dataclass(frozen=True)
class Progress:
    """One step of a study, for a progress display.

    Attributes:
        event: ``"start"`` (the plan is known), ``"unit"`` (a unit finished) or ``"finish"``.
        total: units to compute in this run (not counting those skipped).
        done: units finished in this run (ok or failed).
        failed: joint series (a crop unit; each joint of a hand unit) of those units that could
            not be measured.
        skipped: units already done with the same inputs and configuration.
        unit, status, error: the unit that just finished (``"ok"`` / ``"failed"``), for ``"unit"``.
        elapsed_s: since the run started.
        dashboard_link: Dask's dashboard, when there is one.
    """

    event: str
    total: int
    done: int
    failed: int
    skipped: int
    elapsed_s: float
    unit: str | None = None
    status: str | None = None
    error: str | None = None
    dashboard_link: str | None = None


@dataclass(frozen=True)
class StudyResult:
    """What a run did and where its files are.

    Attributes:
        out_dir: the study's folder.
        units: every unit's id, in manifest order.
        computed, skipped, failed: unit ids measured in this run, skipped as already done with
            the same key, and failed in this run (a failed unit is never skipped: a rerun tries it again).
        summary: per joint type.
        not_measured: every series of the study (a crop unit; a joint of a hand unit) that could
            not be measured, this run's or not: ``units.csv``'s failed rows (``unit``,
            ``patient``, ``side``, ``joint``, ``error``). The one count of failures that the
            printed summary, the exit code, ``study.json``, ``summary.csv`` and the report share.
        files: name -> path of the tables and reports.
        dashboard_link: Dask's dashboard when there was one.
        elapsed_s: wall time of the run.
    """

    out_dir: Path
    units: tuple[str, ...]
    computed: tuple[str, ...]
    skipped: tuple[str, ...]
    failed: tuple[str, ...]
    summary: tuple[JointSummary, ...]
    not_measured: tuple[dict[str, Any], ...]
    files: dict[str, Path]
    dashboard_link: str | None
    elapsed_s: float


def _is_done(record: dict[str, Any] | None, key: str, need_report: bool) -> bool:
    return (record is not None and record.get("format") == RECORD_FORMAT and record.get("status") == "ok"
            and record.get("key") == key and (not need_report or bool(record.get("report"))))


def run_study(manifest: str | os.PathLike | Manifest, out_dir: str | os.PathLike, *,
              config: MeasureConfig | None = None, workers: int | None = None, scheduler: str | None = None,
              spacing_mm: float | None = None, report: bool = False,
              progress: Callable[[Progress], None] | None = None, retries: int = 1,
              numeric_threads: int | None = None, joints: Sequence[str] | None = None) -> StudyResult:
    """Measure a study: every unit of the manifest once, on Dask, resumably.

    Args:
        manifest: STUDY.csv (see :mod:`jsnq.study.manifest`) or a :class:`Manifest` already read.
        out_dir: the study's folder (created); see :mod:`jsnq.study.store` for its layout.
        config: how to measure (default :class:`~jsnq.config.MeasureConfig()`); its digest is
            part of every unit's rerun key.
        workers: processes of a LocalCluster (default: one per available core); ``0`` runs the
            units in this process, one after another, without Dask (debugging, and the
            benchmark's baseline).
        scheduler: address of an existing Dask scheduler (``tcp://host:8786``) instead of a
            LocalCluster. Workers there read the images by the manifest's paths, so those paths
            must be valid on the workers (a shared file system).
        spacing_mm: pixel spacing for rows without ``spacing_mm``.
        report: write an HTML report per unit (``reports/``) and the study's (``report.html``).
        progress: called in this process at the start, after each unit and at the end.
        retries: how often a unit whose task raised is run again (a killed worker's units are
            rescheduled by Dask regardless).
        numeric_threads: torch / OpenMP / BLAS threads per task on Dask (default: the cores
            divided among the LocalCluster's workers; 1 on an existing cluster). With
            ``workers=0``, this process's limit is left alone unless given.
        joints: a whole-hand study measures only these joints of each hand (names of
            :data:`jsnq.hand.types.JOINT_NAMES`; default all 14); part of the rerun key. A crop
            study measures the joints its manifest lists, so it refuses this option.

    Returns:
        A :class:`StudyResult`.

    Raises:
        JsnqInputError: a bad manifest (one line naming file and line).
        ValueError: an unknown joint in ``joints``, or ``joints`` for a crop study.
        KeyboardInterrupt: the units finished so far are kept; a rerun measures the rest.
    """
    start = time.perf_counter()
    m = manifest if isinstance(manifest, Manifest) else read_manifest(manifest, default_spacing_mm=spacing_mm)
    config = resolve(config)
    if joints is not None:
        if m.kind != "hand":
            raise ValueError("joints= selects joints of whole hands; a crop study measures the joints its "
                             "manifest's 'joint' column lists")
        joints = hand_joints(joints)
    store = Store(out_dir)
    report_dir = None
    if report:
        store.reports.mkdir(exist_ok=True)
        report_dir = str(store.reports.resolve())
    todo, skipped = _plan(m, store, config, joints, report)
    run = _Run(m, store, config, joints, len(todo), skipped, progress, start)
    _execute(todo, config, run, workers=workers, scheduler=scheduler, numeric_threads=numeric_threads,
             retries=retries, report_dir=report_dir, joints=joints)
    files, summary, not_measured = assemble(m, store, report=report, config=config,
                                            run_info={"dashboard_link": run.dashboard_link, "workers": workers,
                                                      "scheduler": scheduler})
    run.tell("finish")
    return StudyResult(out_dir=store.root, units=tuple(u.id for u in m.units), computed=tuple(run.computed),
                       skipped=tuple(skipped), failed=tuple(run.failed), summary=tuple(summary),
                       not_measured=tuple(not_measured), files=files,
                       dashboard_link=run.dashboard_link, elapsed_s=time.perf_counter() - start)


def _plan(manifest: Manifest, store: Store, config: MeasureConfig, joints: Sequence[str] | None,
          report: bool) -> tuple[list[tuple[Unit, str]], list[str]]:
    """-> (the units to measure with their rerun keys, the ids of those already done with the
    same key); refuses unmeasurable units first (:func:`refuse_unmeasurable`)."""
    digest = config.digest()
    todo: list[tuple[Unit, str]] = []
    skipped: list[str] = []
    digests = {u.id: input_digests(u) for u in manifest.units}
    refuse_unmeasurable(manifest, digests)
    for u in manifest.units:
        key = unit_key(u, digests[u.id], digest, joints)
        if _is_done(store.load(u.id), key, report):
            skipped.append(u.id)
        else:
            todo.append((u, key))
    return todo, skipped


class _Run:
    """A run's bookkeeping: each finished unit's record saved, the counts, the progress events."""

    def __init__(self, manifest: Manifest, store: Store, config: MeasureConfig, joints: Sequence[str] | None,
                 total: int, skipped: list[str], progress: Callable[[Progress], None] | None, start: float):
        self.by_id = {u.id: u for u in manifest.units}
        self.store, self.config, self.joints = store, config, joints
        self.total, self.skipped, self.progress, self.start = total, skipped, progress, start
        self.done = 0
        self.lost = 0  # joint series that could not be measured
        self.computed: list[str] = []
        self.failed: list[str] = []
        self.dashboard_link: str | None = None

    def tell(self, event: str, **kw: Any) -> None:
        if self.progress is not None:
            self.progress(Progress(event=event, total=self.total, done=self.done, failed=self.lost,
                                   skipped=len(self.skipped), elapsed_s=time.perf_counter() - self.start,
                                   dashboard_link=self.dashboard_link, **kw))

    def on_done(self, unit_id: str, record: dict[str, Any] | None, error: BaseException | None) -> None:
        unit = self.by_id[unit_id]
        if record is None:  # the task itself failed (a worker died too often, or a bug)
            record = fail_record(new_record(unit, self.config, input_digests(unit), self.joints), unit,
                                 failure_message(error))
        self.store.save(record)
        self.done += 1
        self.computed.append(unit_id)
        self.lost += sum(1 for e in record.get("series") or [] if e.get("status") != "ok")
        if record["status"] != "ok":
            self.failed.append(unit_id)
        self.tell("unit", unit=unit_id, status=record["status"], error=record.get("error"))


def _execute(todo: list[tuple[Unit, str]], config: MeasureConfig, run: _Run, *, workers: int | None,
             scheduler: str | None, numeric_threads: int | None, retries: int, report_dir: str | None,
             joints: Sequence[str] | None) -> None:
    """Measure the units to do, here one after another (``workers=0``) or on Dask, telling
    ``run`` as each finishes."""
    if workers == 0:
        if numeric_threads is not None:
            from .schedule import limit_numeric_threads

            limit_numeric_threads(numeric_threads)
        run.tell("start")
        for u, key in todo:
            run.on_done(u.id, run_unit(u, config, key, report_dir=report_dir, joints=joints), None)
    elif todo:
        from .schedule import open_session, run_tasks

        tasks = [(u.id, (run_unit, u, config, key, report_dir, joints)) for u, key in todo]
        with open_session(workers=workers, scheduler=scheduler, numeric_threads=numeric_threads) as session:
            run.dashboard_link = session.dashboard_link
            run.tell("start")
            run_tasks(session, _run_with_report, tasks, on_done=run.on_done, retries=retries)
    else:
        run.tell("start")


def refuse_unmeasurable(manifest: Manifest, digests: dict[str, list[dict[str, str | None]]]) -> None:
    """Refuse, before anything is measured, a unit that cannot be measured honestly: two visits
    with the same image bytes, or (where the manifest and ``--spacing`` give no spacing) images
    whose own headers mix a pixel spacing with none, or differ by more than 1 %.

    Raises:
        JsnqInputError: one line naming the manifest and the line.
    """
    from ..io import file_spacing

    for u in manifest.units:
        seen: dict[str, Any] = {}
        for v, d in zip(u.visits, digests[u.id]):
            sha = d["image"] or ""
            if sha in seen and not sha.startswith("missing:"):
                raise JsnqInputError(f"{manifest.path} line {v.line}", f"image {v.image_as_given!r} has the same "
                                     f"bytes as line {seen[sha].line}'s ({seen[sha].image_as_given!r}): two visits "
                                     "must be two radiographs")
            seen[sha] = v
        if u.spacing_mm is not None:
            continue
        probed = []
        for v in u.visits:
            try:
                probed.append((v, file_spacing(v.image)))
            except Exception:  # unreadable: the unit fails when it runs, with the reason
                continue
        known = [(v, sp) for v, sp in probed if sp is not None]
        if not known:
            continue
        if len(known) < len(probed):
            v = next(v for v, sp in probed if sp is None)
            raise JsnqInputError(f"{manifest.path} line {v.line}", f"image {v.image_as_given!r} has no pixel spacing "
                                 f"but line {known[0][0].line}'s has {known[0][1]:g} mm; give spacing_mm (or "
                                 "--spacing) for every visit")
        lo, hi = min(sp for _, sp in known), max(sp for _, sp in known)
        if hi - lo > 0.01 * lo:
            v = next(v for v, sp in known if sp != known[0][1])
            raise JsnqInputError(f"{manifest.path} line {v.line}", f"the visits' pixel spacings differ ({lo:g} vs "
                                 f"{hi:g} mm); give spacing_mm (or --spacing), or resample")


def _run_with_report(fn: Callable[..., Any], unit: Unit, config: MeasureConfig, key: str,
                     report_dir: str | None, joints: Sequence[str] | None = None) -> dict[str, Any]:
    """The task: ``fn(unit, config, key, report_dir=..., joints=...)`` (positional arguments travel best)."""
    return fn(unit, config, key, report_dir=report_dir, joints=joints)


def _outcomes(unit: Unit, record: dict[str, Any]) -> list[tuple[UnitOutcome, dict[str, Any]]]:
    """A finished unit -> per series (one for a crop unit, one per joint for a hand), its summary
    input and its units.csv row."""
    out = []
    for entry in record.get("series") or []:
        joint = entry.get("joint") or ""
        rows = [r for r in record.get("rows") or [] if r.get("joint", "") == joint]
        ok = entry.get("status") == "ok"
        flagged = not all(r.get("reliable") for r in rows)
        # a hand's side: the manifest's, else the located hand's (the record's)
        base = {**unit.identity, "side": record.get("side") or unit.side, "joint": joint, "unit": unit.id, "status": entry.get("status"),
                "error": entry.get("error") or "", "n_visits": len(unit.visits),
                "n_pairs": sum(1 for p in record.get("pairs") or [] if p.get("joint", "") == joint and not p.get("error")),
                "years": rows[-1].get("years") if rows else None, "flagged": flagged if ok else None,
                "reasons": join_reasons([r.get("reasons") or "" for r in rows]) if ok else "",
                "report": entry.get("report") and f"reports/{entry['report']}", "elapsed_s": record.get("elapsed_s"),
                "config_hash": record.get("config_hash")}
        if not ok or not rows:
            out.append((UnitOutcome(joint, unit.patient, False, None, math.nan, math.nan, True), base))
            continue
        t = entry["trajectory"]
        chi2 = t.get("chi2_reduced")
        rate = unit_rate([tuple(p) for p in t["pairs"]], [r["years"] for r in rows],
                         chi2_reduced=math.nan if chi2 is None else chi2, spacing_mm=entry.get("spacing_mm"))
        last = rows[-1]
        last_se_px, last_se_mm = last.get("narrowing_se_px"), last.get("narrowing_se_mm")
        outcome = UnitOutcome(joint, unit.patient, True, rate, math.nan if last_se_px is None else float(last_se_px),
                              math.nan if last_se_mm is None else float(last_se_mm), flagged,
                              spacing_mm=entry.get("spacing_mm"))
        out.append((outcome, {**base, "rate_px_per_year": finite_or_none(rate.px_per_year),
                              "rate_se_px_per_year": finite_or_none(rate.se_px_per_year),
                              "rate_mm_per_year": finite_or_none(rate.mm_per_year),
                              "rate_se_mm_per_year": finite_or_none(rate.se_mm_per_year),
                              "last_narrowing_px": last.get("narrowing_px"), "last_se_px": last_se_px,
                              "last_narrowing_mm": last.get("narrowing_mm"), "last_se_mm": last_se_mm,
                              "spacing_mm": entry.get("spacing_mm"),
                              "chi2_reduced": chi2}))
    return out


def assemble(manifest: Manifest, store: Store, *, report: bool = False, config: MeasureConfig | None = None,
             run_info: dict[str, Any] | None = None
             ) -> tuple[dict[str, Path], list[JointSummary], list[dict[str, Any]]]:
    """Write the study's tables (and report) from the records of the manifest's units ->
    ``(files, summary, not_measured)`` (see :class:`StudyResult`).

    Units without a record (an interrupted run) are left out of the tables and listed in
    ``study.json`` as ``missing``; records of units no longer in the manifest are ignored.
    """
    joints: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    unit_rows: list[dict[str, Any]] = []
    outcomes: list[UnitOutcome] = []
    missing: list[str] = []
    for u in manifest.units:
        record = store.load(u.id)
        if record is None:
            missing.append(u.id)
            continue
        for row in record.get("rows") or []:
            # paths are not part of the rerun key: show the manifest's current one
            joints.append({**row, "image": u.visits[row["visit"]].image_as_given})
        pairs.extend(record.get("pairs") or [])
        for outcome, unit_row in _outcomes(u, record):
            outcomes.append(outcome)
            unit_rows.append(unit_row)
    summary = summarise(outcomes)
    files = {
        "joints.csv": store.write_table("joints.csv", joints, JOINT_COLUMNS),
        "joints.parquet": store.write_table("joints.parquet", joints, JOINT_COLUMNS),
        "pairs.parquet": store.write_table("pairs.parquet", pairs, PAIR_COLUMNS),
        "units.csv": store.write_table("units.csv", unit_rows, UNIT_COLUMNS),
        "summary.csv": store.write_table("summary.csv", [asdict(s) for s in summary], SUMMARY_COLUMNS),
    }
    from .store import atomic_write_text, json_ready

    not_measured = [{k: r.get(k) for k in ("unit", "patient", "side", "joint", "error")}
                    for r in unit_rows if r["status"] != "ok"]
    info = {"jsnq_version": __version__, "manifest": manifest.path, "kind": manifest.kind,
            "n_units": len(manifest.units), "n_images": manifest.n_images, "missing": missing,
            "n_series": len(unit_rows), "n_not_measured": len(not_measured), "not_measured": not_measured,
            "failed": sorted({r["unit"] for r in unit_rows if r["status"] != "ok"}),
            "config": None if config is None else config.to_dict(),
            "config_hash": None if config is None else config.digest(), **(run_info or {})}
    files["study.json"] = atomic_write_text(store.root / "study.json", json.dumps(json_ready(info), indent=1))
    if report:
        from ..report.study import render_study_report

        html = render_study_report(unit_rows, [asdict(s) for s in summary], title=f"jsnq study: {Path(manifest.path).name}")
        files["report.html"] = atomic_write_text(store.root / "report.html", html)
    return files, summary, not_measured
