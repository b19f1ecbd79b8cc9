"""Jobs: the job model, the SQL store, the dispatcher and its executors, and the backends.

The heavy parts (SQLAlchemy, process pools, Ray) load on first use, so importing a backend
does not import the store.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.dispatcher import Dispatcher
    from jobs.model import Job, JobOptions, JobRequest, JobResult, JobStatus, Run
    from jobs.runner import execute
    from jobs.store import JobStore, default_database_url

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
    "Dispatcher": "jobs.dispatcher",
    "Job": "jobs.model",
    "JobOptions": "jobs.model",
    "JobRequest": "jobs.model",
    "JobResult": "jobs.model",
    "JobStatus": "jobs.model",
    "Run": "jobs.model",
    "JobStore": "jobs.store",
    "default_database_url": "jobs.store",
    "execute": "jobs.runner",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'jobs' has no attribute {name!r}")
