"""The executor contract: what a local process pool and a Ray cluster both provide.

Executors run jobs away from the dispatcher's thread: a local process pool or a Ray cluster.

An executor has a number of ``slots`` (jobs it runs at once), runs any picklable function
(:meth:`Executor.submit`) and, above all, stored jobs (:meth:`Executor.run_job`), whose future
resolves to a :class:`qldm.jobs.model.JobResult` or raises:

- :class:`qldm.errors.JobCancelled`: the job stopped at a chunk boundary after a cancel;
- :class:`qldm.jobs.runner.JobFailure`: the job failed (a stable code and a message);
- :class:`WorkerLostError`: the process running it died; the job may be retried.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from qldm.jobs.model import JobRequest, JobResult

__all__ = ["Executor", "WorkerLostError"]


class WorkerLostError(RuntimeError):
    """The process or Ray worker running a job died before it returned."""


class Executor(Protocol):
    """Where jobs run."""

    @property
    def slots(self) -> int:
        """How many jobs run at once."""
        ...

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` on a worker."""
        ...

    def run_job(
        self,
        *,
        store_url: str,
        job_id: str,
        attempt: int,
        request: JobRequest | None = None,
        runtime_job_id: str | None = None,
    ) -> Future[JobResult]:
        """Run the stored job ``job_id`` (its ``attempt``-th start) on a worker.

        ``request`` (the job's request, when the caller holds it) and ``runtime_job_id`` (its
        stored runtime job id) spare the worker reading them from the store."""
        ...

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop the workers."""
        ...
