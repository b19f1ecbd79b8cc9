"""Submitting a prepared runtime workload and waiting for it: modes, limits, cancel, usage.

:func:`submit` is step 2 of :class:`qldm.backends.runtime.RuntimeBackend` when it submits
(rather than re-attaches):

- the PUBs of a ``SamplerV2`` workload over IBM's per-job execution limit are cut into pieces
  (:func:`qldm.backends._runtime_cost.split_pubs`) submitted as several jobs in one ``Batch``;
  with ``split_jobs`` off that is refused before anything is submitted
  (``field="options.split_jobs"``);
- the primitive runs in the job's execution mode (:class:`qldm.backends._sessions.ExecutionMode`:
  the run's Session, a job's own Session, a ``Batch``, or the backend itself); a run's Session
  that the runtime ended is renewed once and the submission retried;
- ``max_execution_time`` goes to the primitive's options (IBM cancels a job that exceeds it;
  "Maximum execution time" guide), the job is tagged with the run id (``job_tags``);
- every runtime job id goes to ``checkpoint`` right after its submission (several joined by
  commas), before any wait;
- waiting polls the job's status: every change goes to ``on_status`` (``queued``,
  ``running``, ...), ``should_cancel()`` cancels the runtime jobs and raises
  :class:`qldm.errors.JobCancelled`, and past ``timeout_s`` the wait ends with a
  :class:`qldm.errors.BackendError` (the runtime job keeps its id, so a later resume can
  still re-attach to it);
- the runtime's reported usage (``job.usage()``, quantum seconds; IBM's "Workload usage"
  guide) is summed over the submissions.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from qldm.backends._runtime_cost import JoinedPubResult, Piece, estimate, split_pubs
from qldm.backends._runtime_results import ResultCache
from qldm.backends._runtime_steps import Submitted
from qldm.backends._sessions import ExecutionMode, session_gone
from qldm.errors import BackendError, InvalidSpecError, JobCancelled

__all__ = [
    "SessionGone",
    "SubmitOptions",
    "Waited",
    "in_mode",
    "joined",
    "prepared_cost",
    "primitive",
    "run_estimator",
    "status_name",
    "submit",
    "submit_options",
    "submit_or_attach",
    "wait",
]

FINAL = frozenset({"done", "cancelled", "error"})
"""Runtime job states that do not change any more."""


@dataclass(frozen=True)
class SubmitOptions:
    """How one workload is submitted.

    Attributes:
        limit: the per-job execution limit of sampler jobs (``None``: none).
        split_jobs: cut a workload over ``limit`` into several jobs (else refuse it).
        max_execution_time: the runtime's ``max_execution_time`` (seconds of QPU time).
        timeout_s: how long to wait for the runtime's results (``None``: no limit).
        tags: runtime job tags (the run id).
        kind: ``fake`` or ``ibm``.
        seed: the simulator seed of local testing mode.
        resilience: applies the runtime's resilience options to an estimator (``ibm:``).
        poll_s: the longest pause between two status polls.
    """

    limit: int | None = None
    split_jobs: bool = True
    max_execution_time: int | None = None
    timeout_s: float | None = None
    tags: tuple[str, ...] = ()
    kind: str = "fake"
    seed: int | None = None
    resilience: Any = None
    poll_s: float = 2.0


@dataclass
class Waited:
    """What came back from the runtime.

    Attributes:
        job_ids: the runtime job ids, in submission order.
        results: one PUB result per level (pieces joined).
        usage_s: the runtime's reported usage summed (``None`` when no job reported any).
        statuses: the states each job was seen in, in order.
        extra: the results of the extra PUBs that rode in the first job (M3 calibration).
    """

    job_ids: list[str]
    results: list[Any]
    usage_s: float | None = None
    statuses: list[str] = field(default_factory=list)
    extra: list[Any] = field(default_factory=list)


def status_name(job: Any) -> str:
    """A runtime or local job's state as a lower-case word (``queued``, ``running``, ``done``,
    ``cancelled``, ``error``, ...): ``RuntimeJobV2.status()`` answers text, a local job a
    ``JobStatus``."""
    status = job.status()
    return str(getattr(status, "name", status)).lower()


def primitive(mode: Any, use_m3: bool, options: SubmitOptions) -> Any:
    """A ``SamplerV2`` (M3) or ``EstimatorV2`` on ``mode`` (a Session, Batch or backend)."""
    from qiskit_ibm_runtime import EstimatorV2, SamplerV2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        prim = SamplerV2(mode=mode) if use_m3 else EstimatorV2(mode=mode)
    if options.kind != "ibm":
        if options.seed is not None:
            prim.options.simulator.seed_simulator = int(options.seed) % (2**31)
        return prim
    if options.max_execution_time is not None:
        prim.options.max_execution_time = int(options.max_execution_time)
    if options.tags:
        prim.options.environment.job_tags = list(options.tags)
    if not use_m3 and options.resilience is not None:
        options.resilience.apply(prim.options)
    return prim


def submit(
    prepared: Any,
    mode: ExecutionMode,
    backend: Any,
    options: SubmitOptions,
    *,
    extra_pubs: list[tuple[Any, None, int]] | None = None,
    make_primitive: Callable[[Any, bool, SubmitOptions], Any] | None = None,
    checkpoint: Callable[[str], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_status: Callable[[str], None] | None = None,
) -> Waited:
    """Submit a prepared workload (its PUBs, split when over the limit) and wait for it.

    Args:
        prepared: the prepared workload.
        mode: the job's execution mode.
        backend: the device.
        options: how to submit.
        extra_pubs: ``SamplerV2`` PUBs ``(circuit, None, shots)`` that ride at the end of the
            first runtime job (the M3 calibration circuits); their results come back in
            :attr:`Waited.extra`.
        make_primitive: builds the primitive (default :func:`primitive`).
        checkpoint: gets the runtime job ids right after each submission.
        should_cancel: polled while waiting.
        on_status: gets the runtime state at each change.

    Raises:
        InvalidSpecError: over the limit with ``split_jobs`` off (``options.split_jobs``).
        JobCancelled: ``should_cancel()`` said so while waiting (the runtime jobs are
            cancelled).
        BackendError: a submission or a job failed, or the wait passed ``timeout_s``.
    """
    shots = prepared.shots_per_instance
    batches, pieces, groups = _batches(prepared, options, refuse=True)
    extra = list(extra_pubs or [])
    if extra and not prepared.use_m3:
        raise BackendError("extra PUBs ride only in a SamplerV2 job")
    batches[0] = [*batches[0], *extra]

    def run_all(runtime_mode: Any) -> Waited:
        prim = (make_primitive or primitive)(runtime_mode, prepared.use_m3, options)
        jobs = []
        for batch in batches:
            try:
                if prepared.use_m3:
                    job = prim.run([pub if len(pub) == 3 else (*pub, shots) for pub in batch])
                else:
                    job = prim.run(batch, precision=1.0 / math.sqrt(shots))
            except Exception as exc:
                if session_gone(exc):
                    raise SessionGone(str(exc)) from exc
                raise BackendError(f"submission to {backend.name} failed: {exc}") from exc
            jobs.append(job)
            if checkpoint is not None:
                checkpoint(",".join(str(j.job_id()) for j in jobs))
        return wait(jobs, options, should_cancel=should_cancel, on_status=on_status)

    waited = _in_mode(mode, backend, run_all, several=len(batches) > 1)
    waited.results, waited.extra = _per_level(
        prepared, waited.results, pieces, groups, len(batches[0]) - len(extra)
    )
    return waited


def _batches(
    prepared: Any, options: SubmitOptions, *, refuse: bool
) -> tuple[list[list[Any]], list[tuple[Any, ...]] | None, list[list[int]]]:
    """The PUBs of each runtime job: one job, or pieces over the per-job limit in groups.

    Returns:
        ``(batches, pieces, groups)``: the PUBs of each job; the pieces (``None`` when not
        split); the piece (or PUB) indices of each job.

    Raises:
        InvalidSpecError: ``refuse`` and over the limit with ``split_jobs`` off.
    """
    shots = prepared.shots_per_instance
    pubs = list(prepared.pubs)
    pieces: list[tuple[Any, ...]] | None = None
    groups = [list(range(len(pubs)))]
    if prepared.use_m3 and options.limit is not None:
        pieces, groups = split_pubs(pubs, shots=shots, limit=options.limit)
        if refuse and len(groups) > 1 and not options.split_jobs:
            total = sum(1 if p[1] is None else p[1].size for p in pieces) * shots
            raise InvalidSpecError(
                f"the workload needs {total:,} executions (circuits x shots), over the "
                f"runtime's per-job limit of {options.limit:,}; allow splitting it into "
                f"{len(groups)} jobs, or lower shots, instances or the batch",
                field="options.split_jobs",
            )
        if len(groups) == 1:
            pieces = None
    if pieces is None:
        batches = [[pubs[i] for i in g] for g in groups]
    else:
        batches = [[pieces[i][:2] for i in g] for g in groups]
    return batches, pieces, groups


def _per_level(
    prepared: Any,
    results: list[Any],
    pieces: list[tuple[Any, ...]] | None,
    groups: list[list[int]],
    n_first: int,
) -> tuple[list[Any], list[Any]]:
    """The jobs' PUB results as one per level (pieces joined), and the extra PUBs' results
    (those after the first ``n_first`` of the first job)."""
    first = list(results[0])
    extra = first[n_first:]
    flat = first[:n_first] + [r for result in results[1:] for r in result]
    if pieces is None:
        return flat, extra
    parts: dict[int, list[tuple[Piece, Any]]] = {}
    for i, pub_result in zip([i for g in groups for i in g], flat, strict=True):
        piece = pieces[i][2]
        parts.setdefault(piece.level, []).append((piece, pub_result))
    return [JoinedPubResult(parts[k]) for k in range(len(prepared.pubs))], extra


class SessionGone(Exception):
    """The Session a submission went to was closed or expired."""


def _in_mode(
    mode: ExecutionMode,
    backend: Any,
    go: Callable[[Any], Waited],
    *,
    several: bool,
    keep_open: bool = False,
) -> Waited:
    """Run ``go`` in the job's execution mode: its Session (renewed once if the runtime
    ended it), its ``Batch`` (batch mode, or several submissions), or job mode. The job's own
    Session or Batch is closed afterwards unless ``keep_open`` (more of the job's work follows
    in it: :func:`in_mode`)."""
    try:
        session = mode.session()
        if session is not None:
            try:
                return go(session)
            except SessionGone:
                try:
                    return go(mode.renew())
                except SessionGone as exc:
                    raise BackendError(f"the renewed runtime session ended too: {exc}") from exc
        if mode.execution_mode == "direct":  # no runtime (aer:<device>): the primitive directly
            return go(backend)
        if mode.execution_mode == "batch" or several:
            mode.execution_mode = "batch"  # several jobs of one workload always share a Batch
            return go(mode.batch())
        return go(backend)
    finally:
        if not keep_open:
            mode.close()


def in_mode(mode: ExecutionMode, backend: Any, go: Callable[[Any], Waited]) -> Waited:
    """Run ``go`` (a submission and its wait, raising :class:`SessionGone` when the runtime
    ended the Session) in the job's execution mode, leaving the job's Session or Batch open
    for the step's own jobs (:func:`submit` closes it)."""
    return _in_mode(mode, backend, go, several=False, keep_open=True)


def run_estimator(
    mode: ExecutionMode,
    backend: Any,
    pubs: list[Any],
    options: SubmitOptions,
    *,
    precision: float | None,
    make_primitive: Callable[[Any, bool, SubmitOptions], Any] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_status: Callable[[str], None] | None = None,
) -> Waited:
    """One ``EstimatorV2`` job of ``pubs`` (no resilience options: raw device values) in the
    job's execution mode, waited for as :func:`wait` does, the job's Session or Batch left
    open for the step's own jobs (:func:`submit` closes it). ``make_primitive`` builds the
    estimator (default :func:`primitive`).

    Raises:
        JobCancelled: ``should_cancel()`` said so while waiting (the runtime job is cancelled).
        BackendError: the submission or the job failed, or the wait passed ``timeout_s``.
    """
    raw = replace(options, resilience=None)

    def go(runtime_mode: Any) -> Waited:
        try:
            prim = (make_primitive or primitive)(runtime_mode, False, raw)
            job = prim.run(pubs, precision=precision)
        except Exception as exc:
            if session_gone(exc):
                raise SessionGone(str(exc)) from exc
            raise BackendError(f"submission to {backend.name} failed: {exc}") from exc
        return wait([job], raw, should_cancel=should_cancel, on_status=on_status)

    return in_mode(mode, backend, go)


def wait(
    jobs: list[Any],
    options: SubmitOptions,
    *,
    should_cancel: Callable[[], bool] | None = None,
    on_status: Callable[[str], None] | None = None,
) -> Waited:
    """Wait for runtime jobs, reporting their state, honouring cancel requests and the timeout.

    Raises:
        JobCancelled: ``should_cancel()`` returned ``True`` (every job not finished is
            cancelled on the runtime first).
        BackendError: a job failed or was cancelled elsewhere, or ``timeout_s`` passed.
    """
    ids = [str(j.job_id()) for j in jobs]
    start = time.monotonic()
    pause = 0.02
    seen: list[str] = []
    last = ""
    while True:
        states = [status_name(j) for j in jobs]
        # the least advanced job speaks for all (queued before running before done)
        state = next((s for s in states if s not in FINAL), states[-1])
        if any(s == "error" for s in states):
            state = "error"
        if state != last:
            seen.append(state)
            last = state
            if on_status is not None:
                on_status(state)
        if all(s in FINAL for s in states):
            break
        if should_cancel is not None and should_cancel():
            for job, s in zip(jobs, states, strict=True):
                if s not in FINAL:
                    _cancel(job)
            raise JobCancelled(f"cancelled; runtime job(s) {', '.join(ids)} cancelled too")
        if options.timeout_s is not None and time.monotonic() - start > options.timeout_s:
            raise BackendError(
                f"runtime job(s) {', '.join(ids)} still {state} after {options.timeout_s:g} s "
                "(the result timeout); they keep running on the runtime and can be re-attached"
            )
        time.sleep(pause)
        pause = min(pause * 2, options.poll_s)
    results = []
    for job, job_id in zip(jobs, ids, strict=True):
        try:
            results.append(job.result())
        except Exception as exc:
            raise BackendError(f"job {job_id} on the runtime failed: {exc}") from exc
    return Waited(ids, results, usage_s=_usage(jobs), statuses=seen)


def _cancel(job: Any) -> None:
    try:
        job.cancel()
    except Exception as exc:  # a job that finished meanwhile cannot be cancelled
        raise BackendError(f"could not cancel runtime job {job.job_id()}: {exc}") from exc


def _usage(jobs: list[Any]) -> float | None:
    """The runtime's reported usage in seconds summed over ``jobs`` (``None``: none reported)."""
    total, any_reported = 0.0, False
    for job in jobs:
        try:
            value = job.usage()
        except Exception:  # local jobs and older services may not report usage
            value = None
        if value is not None:
            total += float(value)
            any_reported = True
    return total if any_reported else None


def submit_options(prepared: Any, context: Any, backend: Any) -> SubmitOptions:
    """A job's submission options: its own (``context.options``) override the backend's
    (a :class:`qldm.backends.runtime.RuntimeBackend`). ``prepared`` ``None``: work that is not
    the prepared workload (the measured floor's experiment): no QPU-time check, no seed.

    Raises:
        InvalidSpecError: the workload is estimated over ``max_execution_time``
            (``field="options.max_execution_time"``): the runtime would cancel it midway and
            bill what ran.
    """
    opts = context.options
    max_time = getattr(opts, "max_execution_time", None) or backend.max_execution_time
    split = getattr(opts, "split_jobs", None)
    timeout = getattr(opts, "result_timeout_s", None) or backend.result_timeout_s
    if max_time is not None and prepared is not None:
        cost = estimate(prepared, backend.backend, limit=backend.execution_limit)
        if cost.qpu_seconds > max_time:
            raise InvalidSpecError(
                f"estimated {cost.qpu_seconds:.0f} s of QPU time ({cost.executions:,} "
                f"executions), over max_execution_time {max_time} s: the runtime would "
                "cancel the job and bill what ran",
                field="options.max_execution_time",
            )
    return SubmitOptions(
        limit=backend.execution_limit,
        split_jobs=backend.split_jobs if split is None else bool(split),
        max_execution_time=max_time,
        timeout_s=timeout,
        tags=(f"qldm-run:{context.run_id}",) if context.run_id else (),
        kind=backend.kind,
        seed=prepared.work.seed if prepared is not None else None,
        resilience=backend.resilience,
    )


def joined(
    prepared: Any, results: list[Any], options: SubmitOptions
) -> tuple[list[Any], list[Any]]:
    """Re-attached jobs' PUB results as one per level (pieces joined as when submitted), and
    the results of the extra PUBs (M3 calibration circuits) the first job carried."""
    batches, pieces, groups = _batches(prepared, options, refuse=False)
    return _per_level(prepared, results, pieces, groups, len(batches[0]))


def prepared_cost(prepared: Any, device: Any, limit: int | None) -> dict[str, Any]:
    """The ``cost`` entry of a job's metadata (:func:`qldm.backends._runtime_cost.estimate`)."""
    return estimate(prepared, device, limit=limit).as_dict()


def submit_or_attach(
    backend: Any, prepared: Any, mode: ExecutionMode, context: Any, *, m3: Any = None
) -> Submitted:
    """Step 2 of :class:`qldm.backends.runtime.RuntimeBackend` (its :meth:`submit`, and the
    state-level engine's, :mod:`qldm.backends._runtime_states`): the cached result of
    ``context.resume_runtime_job_id`` when there is one; else on ``ibm:`` a re-attach to that
    runtime job (or jobs); else a submission (:func:`submit`, ``m3``'s calibration circuits
    riding in the first job). A local-testing-mode job with no cached result died with its
    process: it is submitted again, and said so.

    Args:
        backend: the :class:`qldm.backends.runtime.RuntimeBackend`.
        prepared: the prepared workload; its ``digest`` is the cache key's fingerprint.
        mode: the job's execution mode.
        context: the resume id, checkpoint, cancel and status hooks, the job's options.
        m3: what rides as extra PUBs: anything whose ``pubs()`` gives them (an
            :class:`qldm.backends._runtime_m3.M3Step`, or the state engine's steps of several
            qubit sets); ``None``: nothing.

    Raises:
        InvalidSpecError, JobCancelled, BackendError: as :func:`submit`, :func:`wait`; or the
            resume id's cached result belongs to another workload.
    """
    resume = context.resume_runtime_job_id
    cached = ResultCache(backend.data_dir).load(resume, prepared.digest)
    if cached is not None and resume is not None:
        return Submitted(resume, None, cached, submissions=0, resumed=True)
    options = backend._submit_options(prepared, context)
    t0 = time.perf_counter()
    if resume is not None and backend.kind == "ibm":
        jobs = [backend._attach(job_id) for job_id in resume.split(",")]
        waited = wait(
            jobs, options, should_cancel=context.should_cancel, on_status=context.on_status
        )
        result, extra = joined(prepared, waited.results, options)
        return Submitted(
            resume,
            result,
            None,
            submissions=0,
            resumed=True,
            seconds=time.perf_counter() - t0,
            usage_s=waited.usage_s,
            statuses=waited.statuses,
            extra=extra,
        )
    reason = None
    if resume is not None:
        reason = (
            "local testing mode jobs end with the process that submitted them, and "
            "no finished result was cached for this runtime job id"
        )
    waited = submit(
        prepared,
        mode,
        backend.backend,
        options,
        extra_pubs=None if m3 is None else m3.pubs(),
        make_primitive=backend._primitive,
        checkpoint=context.checkpoint,
        should_cancel=context.should_cancel,
        on_status=context.on_status,
    )
    return Submitted(
        ",".join(waited.job_ids),
        waited.results,
        None,
        submissions=len(waited.job_ids),
        resubmitted_reason=reason,
        seconds=time.perf_counter() - t0,
        usage_s=waited.usage_s,
        statuses=waited.statuses,
        extra=waited.extra,
    )
