"""A rich progress bar for :func:`jsnq.study.run_study`: units done and failed, elapsed time and an ETA.

Presentation only: it turns :class:`~jsnq.study.run.Progress` events into a bar and a few lines.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

from .run import Progress

__all__ = ["rich_progress"]


@contextmanager
def rich_progress(console: Any = None) -> Iterator[Callable[[Progress], None]]:
    """A context yielding the ``progress`` callback for :func:`~jsnq.study.run_study`.

    It prints Dask's dashboard link (when there is one) and how many units were skipped as
    already done, then shows ``units ━━━━ 12/40 · 1 not measured · 0:01:10 · ETA 0:04:02`` (joint
series not measured: a hand unit counts each of its joints). The ETA is
    rich's estimate from the rate at which units have finished so far in this run.
    """
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    console = console or Console(stderr=True)
    bar = Bar(TextColumn("units"), BarColumn(), MofNCompleteColumn(), TextColumn("· {task.fields[failed]} not measured ·"),
              TimeElapsedColumn(), TextColumn("· ETA"), TimeRemainingColumn(), console=console)
    task: list[Any] = []

    def update(e: Progress) -> None:
        if e.event == "start":
            if e.dashboard_link:
                console.print(f"Dask dashboard: {e.dashboard_link}")
            if e.skipped:
                console.print(f"{e.skipped} {'unit' if e.skipped == 1 else 'units'} already done with the same "
                              "inputs and settings: skipped")
            bar.start()  # only now: an error before the plan is ready prints its one line alone
            task.append(bar.add_task("units", total=e.total, failed=0))
        elif e.event == "unit" and task:
            bar.update(task[0], completed=e.done, failed=e.failed)
            if e.status != "ok" and e.error:
                console.print(f"[yellow]{e.unit}: {e.error}[/yellow]", highlight=False)

    try:
        yield update
    finally:
        if task:
            bar.stop()
