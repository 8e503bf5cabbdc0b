"""Studies: cohorts of patients and visits measured on dask.distributed, one tidy table out.

* :mod:`~jsnq.study.manifest`: STUDY.csv -> units (one task each);
* :mod:`~jsnq.study.units`: measuring one unit on a worker (crops: :func:`jsnq.series`);
* :mod:`~jsnq.study.schedule`: the LocalCluster or an existing cluster, ``as_completed``;
* :mod:`~jsnq.study.store`: the study's folder, every file written atomically;
* :mod:`~jsnq.study.tables`, :mod:`~jsnq.study.stats`: the rows and the per-joint rates (pure);
* :mod:`~jsnq.study.run`: :func:`run_study`, tying them together.

Quick use::

    from jsnq.study import run_study
    result = run_study("STUDY.csv", "out", workers=4)
    print(result.summary)
"""

from .manifest import Manifest, Unit, Visit, read_manifest
from .run import Progress, StudyResult, assemble, run_study
from .stats import JointSummary, Rate, summarise, unit_rate

__all__ = ["run_study", "read_manifest", "assemble", "Manifest", "Unit", "Visit", "Progress", "StudyResult",
           "JointSummary", "Rate", "summarise", "unit_rate"]
