"""Running units on dask.distributed: a LocalCluster by default, an existing cluster by address.

Following Dask's own guidance: one coarse task per unit (seconds to minutes each), the unit's
*paths* travel and the images are read on the workers, results are gathered with
``as_completed`` as they finish, and a lost worker's tasks are rescheduled by the scheduler
(``distributed.scheduler.allowed-failures``, 3 by default; a unit that kills workers more often
than that is recorded as failed). The same code runs on a LocalCluster and on a real cluster.

Threads: a LocalCluster gets ``workers`` processes (default: one per available core) with one
task thread each (the classical engine is Python-heavy, so processes, not threads, give the
parallelism), and each worker's torch / OpenMP / BLAS pools get ``cores // workers`` threads,
so that workers x threads never exceeds the cores. On an existing cluster, how many workers
share a host is the cluster's business, so each task's numerical pools get one thread (start the
workers with as many task threads, or processes, in all as the host has cores).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

__all__ = ["Session", "open_session", "run_tasks", "available_cores"]

log = logging.getLogger(__name__)
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def available_cores() -> int:
    """Cores this process may use (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def limit_numeric_threads(n: int) -> None:
    """Limit torch's intra-op pool (and OpenMP/BLAS for libraries not loaded yet) to ``n`` threads.

    Called inside each worker, in the thread that runs the task (OpenMP's setting is per thread)."""
    for var in _THREAD_VARS:
        os.environ[var] = str(n)
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)


def _task(threads: int, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """What a worker runs: the thread limit, then the unit."""
    limit_numeric_threads(threads)
    return fn(*args, **kwargs)


@dataclass
class Session:
    """A client connected to a cluster.

    Attributes:
        client: the ``distributed.Client``.
        address: the scheduler's address.
        dashboard_link: Dask's dashboard, or None when it is not served (bokeh not installed).
        local: a LocalCluster started here (False: an existing cluster).
        workers: number of workers when connected.
        numeric_threads: torch / OpenMP threads per task.
    """

    client: Any
    address: str
    dashboard_link: str | None
    local: bool
    workers: int
    numeric_threads: int


def _dashboard(client: Any, local: bool) -> str | None:
    if local and importlib.util.find_spec("bokeh") is None:  # no dashboard is served without it
        return None
    try:
        if "dashboard" not in client.scheduler_info().get("services", {}):
            return None
        return client.dashboard_link
    except Exception:  # informative only
        return None


#: The warnings multiprocessing's resource tracker prints when the process that made the local
#: workers' queues is killed (``kill -9``, a closed terminal): it then removes those semaphores
#: itself, so nothing leaks, but "12 leaked semaphore objects" reads like a fault.
_TRACKER_WARNING = "ignore::UserWarning:multiprocessing.resource_tracker"


def _quiet_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (if not yet running) with :data:`_TRACKER_WARNING`
    filtered: it passes this process's ``-W`` options on to the tracker it spawns."""
    import sys
    from multiprocessing import resource_tracker

    if _TRACKER_WARNING not in sys.warnoptions:
        sys.warnoptions.append(_TRACKER_WARNING)
    resource_tracker.ensure_running()


@contextmanager
def open_session(*, workers: int | None = None, scheduler: str | None = None, numeric_threads: int | None = None,
                 connect_timeout_s: float = 30.0) -> Iterator[Session]:
    """Connect to ``scheduler`` (an address such as ``tcp://host:8786``), or start a LocalCluster of
    ``workers`` processes (default: one per available core). Closed (the local cluster shut down)
    on exit, also on Ctrl-C.

    ``numeric_threads``: torch / OpenMP / BLAS threads per task; default ``cores // workers`` on a
    LocalCluster, 1 on an existing cluster.

    Raises:
        ValueError: ``workers`` below 1, or both ``workers`` and ``scheduler`` given.
        OSError: the scheduler cannot be reached (one line naming the address).
    """
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None and workers is not None:
        raise ValueError("give workers (a local cluster) or scheduler (an existing one), not both")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if numeric_threads is not None and numeric_threads < 1:
        raise ValueError(f"numeric_threads must be at least 1, got {numeric_threads}")
    cluster = None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=connect_timeout_s)
        except (OSError, TimeoutError) as err:
            raise OSError(f"cannot reach the Dask scheduler at {scheduler}: {' '.join(str(err).split())}") from None
        threads = numeric_threads or 1
    else:
        cores = available_cores()
        n = workers or cores
        threads = numeric_threads or max(1, cores // n)
        with_dashboard = importlib.util.find_spec("bokeh") is not None
        # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536 so that they hand freed memory back
        # to the OS; jsnq allocates and frees large arrays on every pair, and with that setting a
        # unit takes longer (docs/study.md, "Benchmark", malloc). glibc's own adaptive threshold is kept
        # instead; a unit's peak memory is a few hundred MB either way.
        # A Nanny also copies its variables into the spawning process's own environment, where
        # every later worker inherits them: undo that copy if an earlier default cluster left it.
        dask_value = dask.config.get("distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_", None)
        if dask_value is not None and os.environ.get("MALLOC_TRIM_THRESHOLD_") == str(dask_value):
            del os.environ["MALLOC_TRIM_THRESHOLD_"]
        _quiet_resource_tracker()
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                   dashboard_address=":0" if with_dashboard else None, silence_logs=logging.ERROR,
                                   env={v: str(threads) for v in _THREAD_VARS})
        client = Client(cluster)
    try:
        session = Session(client=client, address=client.scheduler.address, dashboard_link=_dashboard(client, cluster is not None),
                          local=cluster is not None, workers=len(client.scheduler_info().get("workers", {})),
                          numeric_threads=threads)
        yield session
    finally:
        try:
            client.close()
        finally:
            if cluster is not None:
                cluster.close()


def run_tasks(session: Session, fn: Callable[..., Any], jobs: Sequence[tuple[str, tuple]], *,
              on_done: Callable[[str, Any, BaseException | None], None], retries: int = 1) -> None:
    """Submit ``fn(*args)`` for each ``(name, args)`` as its own task; call ``on_done(name, result,
    None)`` (or ``on_done(name, None, error)``) in the client as each finishes, in finishing order.

    ``retries``: how often a task that *raised* is run again (a lost worker's tasks are
    rescheduled by the scheduler regardless). Ctrl-C propagates (the session's exit cancels
    what is in flight).
    """
    from distributed import as_completed

    run = uuid.uuid4().hex[:8]
    names, futures = {}, []
    for name, args in jobs:
        fut = session.client.submit(_task, session.numeric_threads, fn, *args, key=f"jsnq-unit-{name}-{run}",
                                    pure=False, retries=retries)
        names[fut.key] = name
        futures.append(fut)
    # with_results: each result is fetched by as_completed inside the client's own event loop, as
    # the task finishes; a task's exception comes back as (type, exception, traceback).
    pending = as_completed(futures, with_results=True, raise_errors=False)
    del futures  # as_completed holds them; each is released once handled
    for fut, value in pending:
        if fut.status == "finished":
            result, error = value, None
        elif fut.status == "error":  # KilledWorker, or what fn raised after its retries
            result, error = None, value[1]
        else:  # cancelled (the scheduler or another client cancelled it)
            result = None
            error = value if isinstance(value, BaseException) else RuntimeError(f"task {fut.status}")
        name = names.pop(fut.key)
        fut.release()
        on_done(name, result, error)
