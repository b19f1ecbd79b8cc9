"""The cluster executor: jobs as Ray tasks, large jobs as several tasks side by side.

A job that fits in one chunk runs as one Ray task that gets its request (or reads it from the
store when the dispatcher does not hold it) and reports progress to the store (like a local
worker). A larger job is split by samples
(:func:`qldm.jobs.runner.chunk_bounds`); each chunk is a Ray task that gets its request directly,
so one job can use many workers. A driver thread here waits for the chunks, records progress,
stops the remaining chunks when the job is cancelled, and gathers the result in order.

Ray's own task retries are off (``max_retries=0``): a worker that dies surfaces as
:class:`qldm.jobs.executors.WorkerLostError` and the dispatcher's bounded retries apply.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from qldm.errors import JobCancelled
from qldm.jobs.executors.base import WorkerLostError
from qldm.jobs.executors.local import limit_threads
from qldm.jobs.runner import (
    JobFailure,
    _stale,
    _worker_store,
    chunk_bounds,
    chunk_seed,
    gather,
    run_request,
    run_stored_job,
)

if TYPE_CHECKING:
    from qldm.backends.runtime import RuntimeConfig
    from qldm.jobs.model import JobRequest, JobResult

__all__ = ["RayExecutor"]

_WAIT_S = 0.25  # how often the driver checks for a cancel while chunks run


class RayExecutor:
    """Runs jobs on a Ray cluster.

    Args:
        address: a cluster address (``ray://host:10001`` or ``auto``), or ``None`` to start a
            new local Ray instance of this process's own (or use the one this process already
            started), never another process's.
        num_cpus: CPUs of a local instance (default: all cores); ignored with ``address``.
        slots: jobs driven at once (default: the cluster's CPUs).
        init_kwargs: further ``ray.init`` arguments.
        runtime_config: the server's data folder and IBM credentials, passed with every job to
            the runtime backends its task builds (Ray workers, possibly on other machines, read
            no settings of the server).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        slots: int | None = None,
        init_kwargs: dict[str, Any] | None = None,
        runtime_config: RuntimeConfig | None = None,
    ) -> None:
        import ray

        self.runtime_config = runtime_config

        self._ray = ray
        self._owns_ray = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "ignore_reinit_error": True,
            }
            if address is None and num_cpus is not None:
                kwargs["num_cpus"] = num_cpus
            kwargs.update(init_kwargs or {})
            # "local": a new instance of its own. With None, ray.init joins the last local
            # cluster it finds (/tmp/ray/ray_current_cluster): after a SIGKILL, the killed
            # server's dying one, whose GCS then vanished under the restarted server.
            ray.init(address=address or "local", **kwargs)
            self._owns_ray = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self._slots = slots or max(1, cpus)
        self._drivers = ThreadPoolExecutor(self._slots, thread_name_prefix="qldm-ray-driver")
        self._chunk_task: Any = ray.remote(num_cpus=1, max_retries=0)(_run_chunk)
        self._job_task: Any = ray.remote(num_cpus=1, max_retries=0)(_run_job)

    @property
    def slots(self) -> int:
        """How many jobs are driven at once."""
        return self._slots

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` as a Ray task."""
        ref = self._ray.remote(max_retries=0)(fn).remote(*args)
        return ref.future()  # type: ignore[no-any-return,unused-ignore]

    def run_job(
        self,
        *,
        store_url: str,
        job_id: str,
        attempt: int,
        request: JobRequest | None = None,
        runtime_job_id: str | None = None,
    ) -> Future[JobResult]:
        """Run the stored job: one task, or one task per chunk, gathered here."""
        return self._drivers.submit(
            self._drive, store_url, job_id, attempt, request, runtime_job_id
        )

    def _drive(
        self,
        store_url: str,
        job_id: str,
        attempt: int,
        request: JobRequest | None,
        runtime_job_id: str | None,
    ) -> JobResult:
        ray = self._ray
        store = _worker_store(store_url)
        if request is None:
            request = store.request(job_id)
        bounds = chunk_bounds(request)
        if len(bounds) == 1:
            task = self._job_task.remote(
                store_url, job_id, attempt, request, runtime_job_id, self.runtime_config
            )
            return self._get(task)  # type: ignore[no-any-return,unused-ignore]
        refs = [
            self._chunk_task.remote(request.with_samples(a, b, seed=chunk_seed(request.seed, i)))
            for i, (a, b) in enumerate(bounds)
        ]
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=_WAIT_S)
            for ref in ready:
                self._get(ref)  # raise at once when a chunk failed
            if ready:
                store.set_progress(job_id, (len(refs) - len(pending)) / len(refs))
            if pending and _stale(store, job_id, attempt):
                for ref in pending:
                    ray.cancel(ref)
                raise JobCancelled(f"cancelled with {len(pending)} of {len(refs)} chunks left")
        return gather([self._get(r) for r in refs], n_levels=request.n_levels)

    def _get(self, ref: Any) -> Any:
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, (JobFailure, JobCancelled)):
                raise cause from None
            raise JobFailure("internal_error", str(exc)[-1000:]) from None
        except ray.exceptions.RayError as exc:  # worker crashed, node died, object lost
            raise WorkerLostError(f"Ray worker lost: {type(exc).__name__}: {exc}") from None

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop driving jobs; shut Ray down if this executor started it."""
        self._drivers.shutdown(wait=wait, cancel_futures=True)
        if self._owns_ray:
            self._ray.shutdown()


def _run_chunk(request: JobRequest) -> JobResult:
    """A Ray task: one chunk, in a worker limited to one numerics thread."""
    limit_threads()
    return run_request(request)


def _run_job(*args: Any) -> JobResult:
    """A Ray task: a stored job (:func:`qldm.jobs.runner.run_stored_job`'s arguments), in a
    worker limited to one numerics thread."""
    limit_threads()
    return run_stored_job(*args)
