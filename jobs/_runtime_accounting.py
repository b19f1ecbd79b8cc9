"""What the runtime reports about a job while and after it runs: its live state and its usage.

- :meth:`RuntimeAccountingStore.set_runtime_state`: the runtime job's state each time it
  changes while a worker waits on it (``queued``, ``running``, ``done``, ...), so
  ``GET /v1/jobs/{id}`` shows a job that waits in IBM's queue as such, not only as
  ``running``;
- :meth:`RuntimeAccountingStore.add_usage`: the runtime's reported usage of a job (QPU
  seconds, ``job.usage()``; IBM's "Workload usage" guide) kept on the job and added to its
  run's sum. It is recorded when the worker has the runtime's answer, whether or not the job
  is then stored as succeeded: the usage was billed either way.
"""

from __future__ import annotations

import math

from sqlalchemy import func, select, update

from qldm.errors import InvalidSpecError
from qldm.jobs import db
from qldm.jobs._sql import SqlBase
from qldm.jobs.model import JobStatus

__all__ = ["RuntimeAccountingStore"]

_MAX_STATE = 32


class RuntimeAccountingStore(SqlBase):
    """The runtime-state and usage part of :class:`qldm.jobs.store.JobStore`."""

    def set_runtime_state(self, job_id: str, state: str) -> None:
        """Record the runtime job's state of a running job (a finished job is left alone).

        Raises:
            InvalidSpecError: an empty state or one longer than 32 characters.
        """
        if not state or len(state) > _MAX_STATE:
            raise InvalidSpecError(
                f"must be 1 to {_MAX_STATE} characters, got {state!r}", field="runtime_state"
            )
        with self._write() as conn:
            conn.execute(
                update(db.jobs)
                .where(db.jobs.c.id == job_id, db.jobs.c.status == JobStatus.RUNNING.value)
                .values(runtime_state=state)
            )

    def add_usage(self, job_id: str, usage_s: float) -> None:
        """Add the runtime's reported usage to the job and to its run's sum (one transaction).

        Raises:
            InvalidSpecError: a negative or non-finite usage (``field="usage_s"``).
        """
        if not math.isfinite(usage_s) or usage_s < 0:
            raise InvalidSpecError(f"must be a finite number >= 0, got {usage_s}", field="usage_s")
        jobs, runs = db.jobs, db.runs
        with self._write() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(usage_s=func.coalesce(jobs.c.usage_s, 0.0) + float(usage_s))
            )
            run_id = conn.execute(select(jobs.c.run_id).where(jobs.c.id == job_id)).scalar()
            if run_id is not None:
                conn.execute(
                    update(runs)
                    .where(runs.c.id == run_id)
                    .values(usage_s=func.coalesce(runs.c.usage_s, 0.0) + float(usage_s))
                )
