"""Jobs: the job model, the SQL store, the dispatcher and its executors, and the backends.

The heavy parts (SQLAlchemy, process pools, Ray) load on first use, so importing a backend
does not import the store.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qldm.jobs.dispatcher import Dispatcher
    from qldm.jobs.model import Job, JobOptions, JobRequest, JobResult, JobStatus, Run
    from qldm.jobs.runner import execute
    from qldm.jobs.store import JobStore, default_database_url

__all__ = [
    "Dispatcher",
    "Job",
    "JobOptions",
    "JobRequest",
    "JobResult",
    "JobStatus",
    "JobStore",
    "Run",
    "default_database_url",
    "execute",
]

_WHERE = {
    "Dispatcher": "qldm.jobs.dispatcher",
    "Job": "qldm.jobs.model",
    "JobOptions": "qldm.jobs.model",
    "JobRequest": "qldm.jobs.model",
    "JobResult": "qldm.jobs.model",
    "JobStatus": "qldm.jobs.model",
    "Run": "qldm.jobs.model",
    "JobStore": "qldm.jobs.store",
    "default_database_url": "qldm.jobs.store",
    "execute": "qldm.jobs.runner",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'jobs' has no attribute {name!r}")
