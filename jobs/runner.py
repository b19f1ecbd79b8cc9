"""Run one job: build the work, call the backend (in chunks for large jobs), gather the result.

:func:`execute` is what every executor runs, in a worker process or a Ray task. It knows
nothing of the database; :func:`run_stored_job` wraps it for a worker that reads the request
from the store and reports progress, cancellation checks and runtime job ids back to it.

Every chunk is one call of the backend contract (:mod:`qldm.backends.base`):
``get_backend(request.backend).run(request.workload(), context)``, the workload naming the
circuit (a spec or a QPY circuit) and the task, the context built by :func:`job_context`. The
backend refuses what it does not run (``BackendLimitError`` naming ``task`` or ``circuit``).

Chunks: a large job is split by samples (``options.chunk_size``, or :func:`default_chunk_size`)
into chunks that run one after the other here, or side by side as Ray tasks; every noise level
travels in every chunk. A large job of exact values (no shots) runs here in chunks of about
:data:`CHUNK_SECONDS` each instead (:func:`timed_chunks`), so that a cancel is seen within
about a second however long the job is. Jobs on IBM Runtime backends (``fake:``/``ibm:``) are
never split: one job is one runtime submission. Between chunks the job checks
``should_cancel()`` and raises :class:`qldm.errors.JobCancelled`.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from qldm.backends._sessions import Mode, RunSession, drop_run_sessions
from qldm.backends.base import NO_CONTEXT, Context
from qldm.errors import JobCancelled, QldmError, RunClosedError
from qldm.jobs.model import RESULT_ARRAYS, JobRequest, JobResult, RunStatus

if TYPE_CHECKING:
    from qldm.backends.base import Backend
    from qldm.backends.runtime import RuntimeConfig
    from qldm.jobs.store import JobStore
    from qldm.mitigation.m3 import CalibrationStorage

__all__ = [
    "JobFailure",
    "chunk_bounds",
    "chunk_seed",
    "default_chunk_size",
    "execute",
    "execute_chunk",
    "gather",
    "job_context",
    "run_stored_job",
    "warm_up",
]

EXACT_CHUNK_BUDGET = 1 << 16
"""Samples x noise levels per chunk on the ``exact`` backend (its cost barely grows with B)."""

SIMULATOR_CHUNK_BUDGET = 1 << 15
"""Parameter sets x noise levels per chunk on simulators that run every shift term (Aer)."""

CHUNK_SECONDS = 1.0
"""About how long one chunk of a large exact-valued job runs (:func:`timed_chunks`): a cancel
waits at most about this long."""

TIMED_FIRST_CHUNK = 32
"""Samples in the first chunk of a timed job (the later ones are sized from its time)."""

ProgressFn = Callable[[float], None]
CancelFn = Callable[[], bool]
CheckpointFn = Callable[[str], None]


class JobFailure(Exception):
    """A job failed with a stable ``code`` (pickles across processes, unlike field errors).

    Attributes:
        code: machine-readable code (``invalid_spec``, ``backend_error``, ``internal_error``...).
        message: human-readable reason, with the field name when there is one.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def is_runtime_backend(name: str) -> bool:
    """Whether ``name`` is an IBM Runtime backend (``fake:<device>`` or ``ibm:<device>``)."""
    return name.startswith(("fake:", "ibm:"))


def default_chunk_size(request: JobRequest) -> int:
    """Samples per chunk when the request sets no ``options.chunk_size``.

    Runtime backends are never split. The ``exact`` backend takes up to
    :data:`EXACT_CHUNK_BUDGET` samples x levels per chunk; other simulators up to
    :data:`SIMULATOR_CHUNK_BUDGET` parameter sets x levels (a Jacobian needs ``1 + 2(I + P)``
    parameter sets per sample).
    """
    n = request.n_samples
    if is_runtime_backend(request.backend):
        return n
    k = request.n_levels
    if request.backend == "exact":
        return max(1, EXACT_CHUNK_BUDGET // k)
    per_sample = 1
    if request.task == "jacobian":
        per_sample = 1 + 2 * (len(request.inputs[0]) + len(request.weights))
    return max(1, SIMULATOR_CHUNK_BUDGET // (k * per_sample))


def chunk_bounds(request: JobRequest) -> list[tuple[int, int]]:
    """The ``(start, stop)`` sample ranges the job is split into (one range if unsplit)."""
    n = request.n_samples
    if is_runtime_backend(request.backend):
        return [(0, n)]
    size = request.options.chunk_size or default_chunk_size(request)
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def execute(
    request: JobRequest,
    *,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    checkpoint: CheckpointFn | None = None,
    resume_runtime_job_id: str | None = None,
    run_session: RunSession | None = None,
    m3_store: CalibrationStorage | None = None,
    runtime_config: RuntimeConfig | None = None,
    on_status: Callable[[str], None] | None = None,
) -> JobResult:
    """Run a job to its result, chunk by chunk.

    Args:
        request: the job.
        progress: called with the fraction done after each chunk.
        should_cancel: checked before each chunk after the first (the job was claimed just
            before the first); when it returns ``True`` the job stops.
        checkpoint, resume_runtime_job_id, run_session, m3_store, on_status: the backend
            call's :class:`qldm.backends.base.Context`, see :func:`job_context`.
        runtime_config: the server's data folder and IBM credentials for runtime backends
            (``fake:``, ``ibm:``, ``aer:<device>``); ``None``: the backends' own defaults.

    Returns:
        The gathered result: ``values (K, B, O)``, Jacobians ``(K, B, O, I)`` and
        ``(K, B, O, P)`` for task ``jacobian``, or ``K * B`` counts for task ``counts``.

    Raises:
        JobCancelled: ``should_cancel()`` returned ``True``.
        InvalidSpecError, BackendError, BackendLimitError: from the backend.
    """
    context = job_context(
        request,
        checkpoint=checkpoint,
        resume_runtime_job_id=resume_runtime_job_id,
        run_session=run_session,
        m3_store=m3_store,
        should_cancel=should_cancel,
        on_status=on_status,
    )
    if timed_chunks(request):
        parts = _run_timed(request, context, progress, should_cancel, runtime_config)
        return gather(parts, n_levels=request.n_levels)
    bounds = chunk_bounds(request)
    parts = []
    for i, (start, stop) in enumerate(bounds):
        if i > 0 and should_cancel is not None and should_cancel():
            raise JobCancelled(f"cancelled after {i} of {len(bounds)} chunks")
        chunk = (
            request
            if len(bounds) == 1
            else request.with_samples(start, stop, seed=chunk_seed(request.seed, i))
        )
        parts.append(execute_chunk(chunk, context, runtime_config=runtime_config))
        if progress is not None:
            progress((i + 1) / len(bounds))
    return gather(parts, n_levels=request.n_levels)


def timed_chunks(request: JobRequest) -> bool:
    """Whether the job runs in chunks of about :data:`CHUNK_SECONDS` each (:func:`_run_timed`):
    more than :data:`TIMED_FIRST_CHUNK` * 2 samples on a simulator, exact values (no shots:
    the results do not depend on where the batch is cut) and no ``options.chunk_size``."""
    return (
        not is_runtime_backend(request.backend)
        and request.shots is None
        and request.options.chunk_size is None
        and request.n_samples > 2 * TIMED_FIRST_CHUNK
    )


def _run_timed(
    request: JobRequest,
    context: Context,
    progress: ProgressFn | None,
    should_cancel: CancelFn | None,
    runtime_config: RuntimeConfig | None,
) -> list[JobResult]:
    """Run the job in chunks sized from the time the last one took, so each takes about
    :data:`CHUNK_SECONDS` (never more samples than :func:`default_chunk_size`, the memory
    bound): a cancel is seen within about that time, and a long job frees its worker for
    the next one in between (the first chunk has :data:`TIMED_FIRST_CHUNK` samples).

    Raises:
        JobCancelled: ``should_cancel()`` returned ``True`` between two chunks.
    """
    n = request.n_samples
    largest = default_chunk_size(request)
    parts: list[JobResult] = []
    start, size = 0, min(TIMED_FIRST_CHUNK, largest)
    checked = time.monotonic()
    while start < n:
        # read the store at most every CHUNK_SECONDS / 2 (fast jobs read it not at all)
        if start and should_cancel is not None and time.monotonic() - checked >= CHUNK_SECONDS / 2:
            checked = time.monotonic()
            if should_cancel():
                raise JobCancelled(f"cancelled after {start} of {n} samples")
        stop = min(n, start + size)
        began = time.perf_counter()
        parts.append(
            execute_chunk(request.with_samples(start, stop), context, runtime_config=runtime_config)
        )
        per_sample = max(time.perf_counter() - began, 1e-6) / (stop - start)
        size = max(1, min(largest, int(CHUNK_SECONDS / per_sample)))
        start = stop
        if progress is not None:
            progress(start / n)
    return parts


def job_context(
    request: JobRequest,
    *,
    checkpoint: CheckpointFn | None = None,
    resume_runtime_job_id: str | None = None,
    run_session: RunSession | None = None,
    m3_store: CalibrationStorage | None = None,
    should_cancel: CancelFn | None = None,
    on_status: Callable[[str], None] | None = None,
) -> Context:
    """The :class:`qldm.backends.base.Context` of a job's backend calls.

    Args:
        request: the job (its ``options`` go to the backend; its ``run_id`` decides whether
            it runs in a run's Session).
        checkpoint: called by runtime backends with their runtime job id before they wait.
        resume_runtime_job_id: after a restart, the runtime job to re-attach to instead of
            submitting again.
        run_session: the job's run and the runtime Session it holds (the store's view); a job
            with a ``run_id`` and none given gets a :class:`RunSession` with no store behind
            it; a job without a ``run_id`` gets none.
        m3_store: where runtime backends keep M3 calibrations (the job store); ``None``: their
            file cache.
        should_cancel: polled by runtime backends while they wait on the runtime; when it
            returns ``True`` they cancel the runtime job (a DELETE of a running hardware job
            cancels it on IBM, not only between chunks).
        on_status: called by runtime backends with the runtime job's state at each change
            (the store shows it in ``GET /v1/jobs/{id}``).
    """
    if request.run_id is None:
        run_session = None
    elif run_session is None:
        run_session = RunSession(request.run_id)
    return Context(
        checkpoint=checkpoint,
        resume_runtime_job_id=resume_runtime_job_id,
        options=request.options,
        run_session=run_session,
        m3_store=m3_store,
        should_cancel=should_cancel,
        on_status=on_status,
    )


def execute_chunk(
    request: JobRequest,
    context: Context = NO_CONTEXT,
    *,
    runtime_config: RuntimeConfig | None = None,
) -> JobResult:
    """Run one chunk (all its samples, all noise levels) in one backend call:
    ``get_backend(request.backend).run(request.workload(), context)``."""
    backend = _backend(request.backend, runtime_config)
    return JobResult.from_evaluation(backend.run(request.workload(), context))


def gather(parts: Sequence[JobResult], *, n_levels: int) -> JobResult:
    """Join chunk results along the sample axis.

    Args:
        parts: results of consecutive sample ranges, in order.
        n_levels: ``K`` (counts are laid out level-major, ``k * B + b``).
    """
    if len(parts) == 1:
        return parts[0]

    def cat(name: str) -> np.ndarray | None:
        arrays = [getattr(p, name) for p in parts]
        if any(a is None for a in arrays):
            return None
        return np.concatenate(arrays, axis=1)

    counts: list[dict[str, int]] | None = None
    if all(p.counts is not None for p in parts):
        counts = []
        for k in range(n_levels):
            for p in parts:
                part = p.counts or []
                b = len(part) // n_levels
                counts.extend(part[k * b : (k + 1) * b])
    joined = {name: cat(name) for name in RESULT_ARRAYS}
    return JobResult.from_arrays(
        {name: a for name, a in joined.items() if a is not None},
        counts=counts,
        metadata=_merge_metadata([p.metadata for p in parts]),
    )


SUMMED_METADATA = frozenset(
    {"circuits", "submissions", "parameter_sets", "experiments", "pubs", "seconds"}
)
"""Metadata counters that add up over chunks; other keys are taken from the first chunk."""


def _merge_metadata(metas: list[dict[str, Any]]) -> dict[str, Any]:
    """The first chunk's metadata, the :data:`SUMMED_METADATA` counters summed, ``chunks``."""
    out = dict(metas[0])
    for key in SUMMED_METADATA & set(out):
        vals = [m.get(key) for m in metas]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            out[key] = sum(vals)
    out["chunks"] = len(metas)
    return out


def chunk_seed(seed: int | None, index: int) -> int | None:
    """The seed of chunk ``index``: independent streams per chunk, reproducible per job."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


# ---------------------------------------------------------------------- backends


@lru_cache(maxsize=16)
def _backend(name: str, config: RuntimeConfig | None = None) -> Backend:
    """One backend instance per name, config and process (their caches survive between jobs)."""
    from qldm.backends import get_backend

    return get_backend(name, **(config.options_for(name) if config is not None else {}))


# ---------------------------------------------------------------------- worker side


@lru_cache(maxsize=4)
def _worker_store(url: str) -> JobStore:
    """One store (connection pool) per database and worker process, built in the worker."""
    from qldm.jobs.store import JobStore

    return JobStore(url)


def run_stored_job(
    store_url: str,
    job_id: str,
    attempt: int | None = None,
    request: JobRequest | None = None,
    runtime_job_id: str | None = None,
    runtime_config: RuntimeConfig | None = None,
) -> JobResult:
    """Run a stored job in a worker: execute its request with the store's hooks.

    The dispatcher passes the request and the stored runtime job id when it holds them (a job
    submitted to this server); otherwise (``request`` is ``None``) both are read from the
    store. Progress and runtime job ids are written to the store as they come; the job stops
    between chunks once a cancel was requested (or it no longer runs in this attempt). A job
    of a run on a runtime backend runs in the run's Session (a closed run's job is refused,
    see :func:`_in_run`); runtime backends keep their M3 calibrations in the store and get the
    server's ``runtime_config`` (data folder, IBM credentials) from the executor.

    Raises:
        JobCancelled: the job was cancelled.
        JobFailure: the job failed (code and message kept across processes).
    """
    store = _worker_store(store_url)
    try:
        if request is None:
            request = store.request(job_id)
            runtime_job_id = store.job(job_id).runtime_job_id
        request, run_session = _in_run(store, request, runtime_job_id)
        result = execute(
            request,
            progress=lambda fraction: _record_progress(store, job_id, fraction),
            should_cancel=lambda: _stale(store, job_id, attempt),
            checkpoint=lambda rid: store.set_runtime_job_id(job_id, rid),
            resume_runtime_job_id=runtime_job_id,
            run_session=run_session,
            m3_store=store,
            runtime_config=runtime_config,
            on_status=lambda state: store.set_runtime_state(job_id, state),
        )
        usage = result.metadata.get("usage_s")
        if isinstance(usage, (int, float)) and not isinstance(usage, bool):
            store.add_usage(job_id, float(usage))  # billed: kept on the job and its run
        return result
    except JobCancelled:
        raise
    except QldmError as exc:
        raise JobFailure(exc.code, str(exc)) from None
    except Exception as exc:
        raise JobFailure("internal_error", _describe(exc)) from None


def _in_run(
    store: JobStore, request: JobRequest, runtime_job_id: str | None
) -> tuple[JobRequest, RunSession | None]:
    """The request to run and, for a job of a run on ``fake:``/``ibm:``, its run's Session.

    The run's first such job records the Session it opens (the store's compare-and-set
    :meth:`qldm.jobs.store.JobStore.adopt_run_session`); later ones re-open it. A job of a closed
    run that was already submitted (``runtime_job_id``: the server restarted) still re-attaches
    to its runtime job, as a job without a run (no Session is opened for it).

    Raises:
        RunClosedError: the run was closed (its Session with it) before the job was
            submitted; this process's Session objects of the run are dropped.
    """
    if request.run_id is None or not is_runtime_backend(request.backend):
        return request, None
    run = store.run(request.run_id)
    if run.status is not RunStatus.OPEN:
        drop_run_sessions(run.id)
        if runtime_job_id is not None:
            return request.model_copy(update={"run_id": None}), None
        raise RunClosedError(
            f"run {run.id} is closed, and its runtime session with it: the job was not run",
            field="run_id",
        )
    run_id = run.id
    return request, RunSession(
        run_id,
        run.session_id,
        adopt=lambda sid: store.adopt_run_session(run_id, sid),
        replace=lambda old, new: store.replace_run_session(run_id, old, new),
        mode=cast("Mode | None", run.execution_mode),
    )


def _record_progress(store: Any, job_id: str, fraction: float) -> None:
    # 1.0 is written with the result itself: one SQL write less for every one-chunk job
    if fraction < 1.0:
        store.set_progress(job_id, fraction)


def warm_up() -> None:
    """Run a tiny exact expectation and Jacobian, so a worker's first real job does not pay
    for lazy imports (torch's functional transforms load on first use). Failures are ignored:
    warming up is an optimisation."""
    try:
        request = JobRequest.parse(
            {
                "circuit": {"n_qubits": 1, "ansatz": "basic_entangler"},
                "inputs": [[0.1]],
                "weights": [0.2],
                "task": "jacobian",
            }
        )
        execute(request)
    except Exception:  # pragma: no cover - e.g. the exact backend is not installed
        return


def run_request(request: JobRequest) -> JobResult:
    """Run a request with no store (a chunk on a remote worker): failures as :class:`JobFailure`."""
    try:
        return execute(request)
    except QldmError as exc:
        raise JobFailure(exc.code, str(exc)) from None
    except Exception as exc:
        raise JobFailure("internal_error", _describe(exc)) from None


def _stale(store: JobStore, job_id: str, attempt: int | None) -> bool:
    """Whether the job should stop: cancel requested, no longer running, or re-claimed."""
    from qldm.jobs.model import JobStatus

    job = store.job(job_id)
    if job.cancel_requested or job.status is not JobStatus.RUNNING:
        return True
    return attempt is not None and job.attempts != attempt


def _describe(exc: BaseException) -> str:
    tail = traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:]
    return f"{type(exc).__name__}: {exc} | {''.join(tail).strip()[-800:]}"
