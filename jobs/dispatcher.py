"""The dispatcher: moves queued jobs from the store to an executor and records how they end.

One background thread loops::

    claim up to the executor's free slots ─▶ executor.run_job(...) ─▶ future
    future done ─▶ complete / fail / mark_cancelled / release (retry or give up)

A finished job is recorded by the thread that resolves its future (the executor's), so its
result reaches the store without waiting for the loop; the loop records what that missed. It
sleeps ``poll_interval`` between rounds, but :meth:`Dispatcher.offer` (called by the API
right after a submit) and every finished future end the sleep at once, so a job starts within
milliseconds of its submission. An offered job's request goes to the worker with it, so the
worker need not read it back from the store (jobs it was not offered, e.g. recovered ones or
another replica's, are read there).

Direct start: when a slot is free, the API first holds it (:meth:`Dispatcher.reserve`), stores
the job already claimed by this dispatcher (:meth:`JobStore.submit` with ``start_as``,
which queues it instead when other jobs wait), and hands it over with :meth:`Dispatcher.adopt`
(or gives the slot back with :meth:`Dispatcher.unreserve`). That saves the claim transaction
and a thread hop on an idle server; the state is written before the job runs either way.

Guarantees (they come from the store's guarded transactions):

- a job is claimed by one dispatcher only, and its result is stored only while it is still
  running in the same attempt, so a job that was re-queued and started again is never
  completed twice;
- a cancelled queued job never starts; a running one stops at its next chunk boundary;
- a worker that dies leaves its job to be retried, up to ``max_attempts`` starts, then the
  job fails with code ``worker_lost`` and the reason;
- on :meth:`Dispatcher.start`, jobs left ``running`` by a previous process are recovered the
  same way (with ``requeue_older_than``, only those whose heartbeat stopped: the jobs of live
  replicas are left alone). A hardware job keeps its runtime job id and re-attaches.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from qldm.errors import InvalidSpecError, JobCancelled, QldmError
from qldm.jobs._sql import now as utcnow
from qldm.jobs.executors import WorkerLostError
from qldm.jobs.model import TERMINAL, JobStatus
from qldm.jobs.runner import JobFailure

if TYPE_CHECKING:
    from collections.abc import Callable

    from qldm.jobs.executors import Executor
    from qldm.jobs.model import Job, JobRequest, JobResult
    from qldm.jobs.store import JobStore

__all__ = ["Dispatcher"]

_MAX_OFFERED = 256  # requests kept for queued jobs (older ones are read from the store)

log = logging.getLogger(__name__)


@dataclass
class _InFlight:
    job: Job
    future: Future[JobResult]
    settling: bool = False


class Dispatcher:
    """Feeds an executor from the store in a background thread.

    Args:
        store: the job store.
        executor: where jobs run (:class:`qldm.jobs.executors.local.LocalExecutor`, ...).
        worker_id: this dispatcher's name in the store (default: host, pid and a random tag).
        poll_interval: seconds between rounds when nothing wakes it (a round claims what
            another process queued, and records what the executor's threads could not).
            ``"auto"`` (default): 1 s on SQLite, where this is the only server and its own
            submits wake it; 0.05 s on PostgreSQL, where replicas take each other's queued
            jobs.
        max_attempts: starts allowed per job whose request sets none.
        requeue_older_than: on start and then every ``heartbeat_interval``, recover the
            running jobs whose heartbeat is older than this (the jobs of live replicas are left
            alone); ``None`` recovers every running job, once, on start (one server per
            database). ``"auto"`` (default): ``None`` on SQLite, ``6 * heartbeat_interval`` on
            PostgreSQL, where several replicas may share the database.
        heartbeat_interval: seconds between heartbeats of the jobs this dispatcher runs.
        on_finished: called with each job this dispatcher ends (its snapshot with the final
            state and time; for metrics), in the thread that records it.
        max_running_per_tenant: most jobs of one tenant running at once, over every
            dispatcher of the database (``None``: no limit). Free slots go first to the tenant
            with the fewest running jobs (:meth:`JobStore.claim`).
    """

    def __init__(
        self,
        store: JobStore,
        executor: Executor,
        *,
        worker_id: str | None = None,
        poll_interval: float | Literal["auto"] = "auto",
        max_attempts: int = 3,
        requeue_older_than: timedelta | Literal["auto"] | None = "auto",
        heartbeat_interval: float = 5.0,
        on_finished: Callable[[Job], None] | None = None,
        max_running_per_tenant: int | None = None,
    ) -> None:
        shared = store.engine.dialect.name != "sqlite"
        if poll_interval == "auto":
            poll_interval = 0.05 if shared else 1.0
        if poll_interval <= 0:
            raise InvalidSpecError("must be positive", field="poll_interval")
        if max_attempts < 1:
            raise InvalidSpecError("must be at least 1", field="max_attempts")
        if store.url.split("?")[0] in ("sqlite://", "sqlite:///:memory:"):
            raise InvalidSpecError(
                "workers open the database themselves: use a SQLite file or PostgreSQL, "
                "not an in-memory database",
                field="database_url",
            )
        self.store = store
        self.executor = executor
        self.worker_id = worker_id or (
            f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
        self.poll_interval = poll_interval
        self.max_attempts = max_attempts
        if requeue_older_than == "auto":
            requeue_older_than = timedelta(seconds=6 * heartbeat_interval) if shared else None
        self.requeue_older_than: timedelta | None = requeue_older_than
        self.heartbeat_interval = heartbeat_interval
        self.on_finished = on_finished
        self.max_running_per_tenant = max_running_per_tenant
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._inflight: dict[str, _InFlight] = {}
        self._offered: OrderedDict[str, JobRequest] = OrderedDict()
        self._reserved = 0
        self._maybe_queued = True  # jobs may wait from before this process
        self._last_claim = 0.0
        self._lock = threading.Lock()
        self._draining = False
        self.recovered: dict[str, str] = {}
        """Jobs recovered on start: job id -> new state."""

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        """Recover what a previous process left running, then start the loop thread."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._draining = False
        self._recover()
        self._thread = threading.Thread(target=self._loop, name="qldm-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, *, wait: bool = True, timeout: float | None = 30.0) -> None:
        """Stop claiming jobs; with ``wait``, let running jobs finish (up to ``timeout``
        seconds) and record their outcomes. Jobs still running afterwards stay ``running``
        in the store and are recovered by the next :meth:`start`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._draining = True
        if wait:
            while self.running_jobs() and (deadline is None or time.monotonic() < deadline):
                self._wake.set()
                time.sleep(0.01)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(None if deadline is None else max(0.1, deadline - time.monotonic()))
            self._thread = None

    def wake(self) -> None:
        """Look for new jobs now."""
        self._expect_queued()
        self._wake.set()

    def offer(self, job_id: str, request: JobRequest) -> None:
        """A job was just stored with this request: look for it now, and hand the request to
        its worker when this dispatcher claims it."""
        with self._lock:
            self._offered[job_id] = request
            while len(self._offered) > _MAX_OFFERED:
                self._offered.popitem(last=False)
            self._maybe_queued = True
        self._wake.set()

    def reserve(self, tenant: str | None = None) -> bool:
        """Hold a free slot for a job of ``tenant`` about to be stored as started (see
        :meth:`adopt`); ``False`` when none is free, the tenant runs as many jobs here as
        ``max_running_per_tenant`` allows, or the dispatcher is stopping."""
        with self._lock:
            if self._draining or not self.alive:
                return False
            if len(self._inflight) + self._reserved >= self.executor.slots:
                return False
            cap = self.max_running_per_tenant
            if cap is not None and (
                self._reserved  # another submit holds a slot: its tenant is unknown here
                or sum(item.job.tenant == tenant for item in self._inflight.values()) >= cap
            ):
                return False
            self._reserved += 1
            return True

    def unreserve(self) -> None:
        """Give back a slot from :meth:`reserve` that no job took."""
        with self._lock:
            self._reserved = max(0, self._reserved - 1)
        self._wake.set()

    def adopt(self, job: Job, request: JobRequest) -> None:
        """Run ``job``, stored as claimed by this dispatcher, in the slot from :meth:`reserve`."""
        try:
            self._start(job, request)
        finally:
            self.unreserve()

    def running_jobs(self) -> list[str]:
        """Ids of the jobs this dispatcher is running."""
        with self._lock:
            return list(self._inflight)

    def runs(self, job_id: str) -> bool:
        """Whether this dispatcher runs ``job_id`` and has not begun recording its end (so the
        store's notification of that end is still to come)."""
        with self._lock:
            item = self._inflight.get(job_id)
            return item is not None and not item.settling

    @property
    def alive(self) -> bool:
        """Whether the loop thread runs (the server's ``/readyz`` checks it)."""
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ loop

    def _recover(self) -> None:
        recovered = self.store.requeue_running(
            older_than=self.requeue_older_than, max_attempts=self.max_attempts
        )
        self.recovered.update({k: v.value for k, v in recovered.items()})
        if recovered:
            self._expect_queued()
            log.info("recovered %d running jobs: %s", len(recovered), recovered)

    def _loop(self) -> None:
        last_beat = time.monotonic()
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self._settle()
                self._claim()
                now = time.monotonic()
                if now - last_beat >= self.heartbeat_interval:
                    last_beat = now
                    self.store.heartbeat(self.running_jobs())
                    if self.requeue_older_than is not None:
                        self._recover()
            except Exception:  # the loop must survive a database hiccup
                log.exception("dispatcher round failed")
                self._stop.wait(min(1.0, 10 * self.poll_interval))
            self._wake.wait(self.poll_interval)
        self._settle()

    def _claim(self) -> None:
        """Claim queued jobs into the free slots: at once when some may wait (offered,
        re-queued or left by an earlier process, or the last claim filled every slot), else at
        most once per ``poll_interval`` (jobs queued by another replica). A slot freed by a
        finished job thus costs no claim transaction while nothing waits."""
        with self._lock:
            free = self.executor.slots - len(self._inflight) - self._reserved
            due = self._maybe_queued or (
                time.monotonic() - self._last_claim >= 0.9 * self.poll_interval
            )
        if free <= 0 or self._draining or not due:
            return
        with self._lock:
            self._maybe_queued = False  # a job offered from here on sets it again
            self._last_claim = time.monotonic()
        claimed = self.store.claim(
            worker=self.worker_id, limit=free, max_per_tenant=self.max_running_per_tenant
        )
        if len(claimed) == free:
            self._expect_queued()  # the queue may hold more
        for job in claimed:
            with self._lock:
                request = self._offered.pop(job.id, None)
            self._start(job, request)

    def _expect_queued(self) -> None:
        with self._lock:
            self._maybe_queued = True

    def _start(self, job: Job, request: JobRequest | None) -> None:
        """Hand a claimed job to the executor (or, if it refuses, back to the queue)."""
        try:
            future = self.executor.run_job(
                store_url=self.store.url,
                job_id=job.id,
                attempt=job.attempts,
                request=request,
                runtime_job_id=job.runtime_job_id,
            )
        except Exception as exc:  # the executor refused: give the job back
            self.store.release(
                job.id,
                reason=f"executor refused the job: {exc}",
                attempt=job.attempts,
                max_attempts=self.max_attempts,
            )
            self._expect_queued()
            return
        item = _InFlight(job, future)
        with self._lock:
            self._inflight[job.id] = item
        # recorded in the thread that resolves the future (no hop to the loop thread); the
        # loop's _settle is the fallback when that fails (say, the database is unreachable)
        future.add_done_callback(lambda _f: self._finished(item))

    def _finished(self, item: _InFlight) -> None:
        self._settle_item(item)
        if self.max_running_per_tenant is not None:
            self._expect_queued()  # a capped tenant's queued job may take the slot now
        self._wake.set()  # a slot is free (or the outcome is still to record)

    def _settle(self) -> None:
        with self._lock:
            done = [f for f in self._inflight.values() if f.future.done()]
        for item in done:
            self._settle_item(item)

    def _settle_item(self, item: _InFlight) -> None:
        """Record a finished job's outcome once, by whichever thread comes first (when the
        database fails, the loop's next round tries again)."""
        with self._lock:
            if item.settling or self._inflight.get(item.job.id) is not item:
                return
            item.settling = True
        try:
            status = self._record(item)
        except Exception as exc:
            log.exception("job %s: could not record its outcome", item.job.id)
            try:
                self.store.fail(
                    item.job.id,
                    "internal_error",
                    f"could not record the outcome: {type(exc).__name__}: {exc}",
                    attempt=item.job.attempts,
                )
                status = JobStatus.FAILED
            except Exception:  # the database is unreachable: try again next round
                with self._lock:
                    item.settling = False
                return
        with self._lock:
            self._inflight.pop(item.job.id, None)
        if status is not None and self.on_finished is not None:
            job = dataclasses.replace(item.job, status=status, finished_at=utcnow())
            try:
                self.on_finished(job)
            except Exception:  # metrics must never break the dispatcher
                log.exception("on_finished failed for job %s", job.id)

    def _record(self, item: _InFlight) -> JobStatus | None:
        """Store how the job ended; its final state, or ``None`` when it is not final (re-queued)
        or the store had moved it already."""
        job, future = item.job, item.future
        attempt = job.attempts
        exc = future.exception()
        if exc is None:
            if not self.store.complete(job.id, future.result(), attempt=attempt):
                log.info("job %s finished but is no longer running: result dropped", job.id)
                return None
            return JobStatus.SUCCEEDED
        if isinstance(exc, JobCancelled):
            done = self.store.mark_cancelled(job.id, attempt=attempt)
            return JobStatus.CANCELLED if done else None
        if isinstance(exc, WorkerLostError):
            state = self.store.release(
                job.id,
                reason=f"worker lost ({type(exc).__name__}: {exc})",
                attempt=attempt,
                max_attempts=self.max_attempts,
            )
            log.warning("job %s: worker lost on attempt %d -> %s", job.id, attempt, state)
            if state is JobStatus.QUEUED:
                self._expect_queued()
            return state if state in TERMINAL else None
        if isinstance(exc, JobFailure):
            code, message = exc.code, exc.message
        elif isinstance(exc, QldmError):
            code, message = exc.code, str(exc)
        else:
            code, message = "internal_error", f"{type(exc).__name__}: {exc}"
        done = self.store.fail(job.id, code, message, attempt=attempt)
        return JobStatus.FAILED if done else None
