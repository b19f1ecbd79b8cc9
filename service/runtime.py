"""What a running server holds: the store, the executor, the dispatcher, and job waiters.

:class:`Runtime` is built from the settings, started by the app's lifespan and stopped by it.
Long-polls (``GET /v1/jobs/{id}/result?wait=``, ``POST /v1/jobs`` with ``Prefer: wait``) wait
on it: a job that finishes in this process wakes its waiters at once (the store used by the
dispatcher reports every final transition), and every waiter also re-reads the database, with
a backoff from 5 to 100 ms, so jobs finished by another replica are seen too. While this
process's dispatcher runs the job, that read is only a backstop, once a second: the wake-up
comes first, and the server stays quiet while the worker computes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import logging
import os
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import IO, Any

from sqlalchemy import text

from qldm.errors import QldmError, TooManyJobsError
from qldm.jobs._sql import json_default
from qldm.jobs.model import TERMINAL, Job, JobRequest, JobResult, JobStatus, Run, RunStatus
from qldm.jobs.store import JobStore, PruneReport, pack_result
from qldm.service.dblock import hold_sqlite, release
from qldm.service.settings import Settings

__all__ = ["NotifyingStore", "Runtime"]

log = logging.getLogger("qldm.service")

_POLL_FIRST_S = 0.005
_POLL_MAX_S = 0.1
_POLL_LOCAL_S = 1.0  # a job this process runs wakes its waiters itself: the poll is a backstop
_CHECKPOINT_EVERY_S = 1.0
_PRUNE_EVERY_ROUNDS = 5  # prune results every 5 checkpoint rounds (seconds)
_RECENT_RESULTS = 16  # results kept for their long-polls (a B = 128 Jacobian is ~0.5 MB)


class NotifyingStore(JobStore):
    """A :class:`JobStore` that calls ``listener(job_id)`` after each transition that may end
    a job (complete, fail, cancel, release), and keeps the last few results it stored so the
    long-polls waiting on them answer without reading them back."""

    listener: Callable[[str], None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._recent: OrderedDict[str, tuple[JobResult, bytes]] = OrderedDict()
        self._recent_lock = threading.Lock()

    def has_result(self, job_id: str) -> bool:
        """Whether this process just stored ``job_id``'s result (so it succeeded)."""
        with self._recent_lock:
            return job_id in self._recent

    def take_result(self, job_id: str) -> tuple[JobResult, bytes] | None:
        """The result this process just stored for ``job_id`` and its arrays' npz blob (once),
        or ``None``."""
        with self._recent_lock:
            return self._recent.pop(job_id, None)

    def _notify(self, job_id: str) -> None:
        if self.listener is not None:
            try:
                self.listener(job_id)
            except Exception:  # a listener must never break a state change
                log.exception("job listener failed for %s", job_id)

    def complete(self, job_id: str, result: JobResult, *args: Any, **kwargs: Any) -> Any:
        blob = pack_result(result)  # packed once: stored, and sent as it is
        done = super().complete(job_id, result, *args, blob=blob, **kwargs)
        if done:
            # served as the store would serve it: metadata as JSON types
            meta = json.loads(json.dumps(result.metadata, default=json_default))
            with self._recent_lock:
                self._recent[job_id] = (dataclasses.replace(result, metadata=meta), blob)
                while len(self._recent) > _RECENT_RESULTS:
                    self._recent.popitem(last=False)
        self._notify(job_id)
        return done

    def fail(self, job_id: str, *args: Any, **kwargs: Any) -> Any:
        done = super().fail(job_id, *args, **kwargs)
        self._notify(job_id)
        return done

    def mark_cancelled(self, job_id: str, *args: Any, **kwargs: Any) -> Any:
        done = super().mark_cancelled(job_id, *args, **kwargs)
        self._notify(job_id)
        return done

    def release(self, job_id: str, *args: Any, **kwargs: Any) -> Any:
        status = super().release(job_id, *args, **kwargs)
        self._notify(job_id)
        return status


class Runtime:
    """The server's moving parts.

    Args:
        settings: the server settings.

    Attributes:
        store: the job store (opened at construction, migrated by :meth:`start`).
        on_finished: called with each job this process sees finish (metrics).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if settings.database_url is None:
            settings.data_dir.expanduser().mkdir(parents=True, exist_ok=True)
        self.store = NotifyingStore(settings.resolved_database_url)
        self.store.listener = self._job_changed
        self.on_finished: Callable[[Job], None] | None = None
        self.dispatcher: Any = None
        self.executor: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._db_lock: IO[str] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Migrate the store, start the executor and the dispatcher (which picks up queued and
        running jobs left by an earlier process)."""
        from qldm.jobs.dispatcher import Dispatcher

        self._loop = loop
        self._db_lock = hold_sqlite(self.store.url)  # one server per SQLite file
        self.store.migrate()
        self.executor = self._make_executor()
        worker = f"{socket.gethostname()}:{os.getpid()}"
        self.dispatcher = Dispatcher(
            self.store,
            self.executor,
            worker_id=worker,
            on_finished=self._finished,
            max_running_per_tenant=self.settings.max_running_per_tenant,
        )
        self.dispatcher.start()
        # the fake-device list takes a second or more to load: do it before the first request
        threading.Thread(target=_load_catalog, name="qldm-catalog", daemon=True).start()
        self._stopping.clear()
        threading.Thread(target=self._checkpoints, name="qldm-checkpoint", daemon=True).start()
        log.info(
            "qldm ready: database %s, executor %s, auth %s",
            self.store.engine.url.render_as_string(hide_password=True),
            self.settings.executor,
            "on" if self.settings.auth_enabled else "off",
        )

    def _make_executor(self) -> Any:
        from qldm.jobs.executors import make_executor

        settings = self.settings
        return make_executor(
            settings.executor,
            max_workers=settings.workers,
            address=settings.ray_address,
            runtime_config=settings.runtime_config(),
        )

    def _checkpoints(self) -> None:
        """Fold SQLite's write-ahead log into the database every second, off the job path
        (else a commit that crosses the WAL limit does it, and its job waits), and prune the
        results beyond the retention every few seconds (:meth:`prune`)."""
        rounds = 0
        while not self._stopping.wait(_CHECKPOINT_EVERY_S):
            rounds += 1
            try:
                if rounds % _PRUNE_EVERY_ROUNDS == 0:
                    self.prune()
                self.store.checkpoint()
            except Exception:  # the next round tries again; commits still work meanwhile
                log.warning("WAL checkpoint or result pruning failed", exc_info=True)

    def prune(self) -> PruneReport:
        """Delete the results beyond the settings' retention (``QLDM_RESULT_TTL_S``,
        ``QLDM_MAX_RESULTS``); the jobs stay."""
        return self.store.prune_results(
            older_than=self.settings.result_ttl, keep=self.settings.max_results
        )

    def stop(self) -> None:
        """Stop the dispatcher and the executor, and close the store."""
        self._stopping.set()
        if self.dispatcher is not None:
            self.dispatcher.stop()
        shutdown = getattr(self.executor, "shutdown", None) or getattr(self.executor, "close", None)
        if callable(shutdown):
            shutdown()
        self.store.close()
        release(self._db_lock)
        self._db_lock = None

    def problems(self) -> list[str]:
        """Why the server is not ready (empty when it is)."""
        out = []
        try:
            with self.store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            out.append(f"database unreachable ({type(exc).__name__})")
        if self.dispatcher is None:
            out.append("dispatcher not started")
        elif not self.dispatcher.alive:
            out.append("dispatcher stopped")
        return out

    # ------------------------------------------------------------------ store calls

    def submit(
        self, *, tenant: str, request: JobRequest, idempotency_key: str | None
    ) -> tuple[Job, bool]:
        """Store a job and start it at once when a slot is free and nothing else waits
        (else queue it and offer it to the dispatcher).

        Raises:
            TooManyJobsError: the tenant has ``max_active_jobs_per_tenant`` jobs queued or
                running already (the limit is checked before the insert, so concurrent
                submits of one tenant may pass it by a few).
        """
        limit = self.settings.max_active_jobs_per_tenant
        if limit is not None and self.store.active_jobs(tenant) >= limit:
            raise TooManyJobsError(
                f"{limit} jobs of this tenant are queued or running, the most this server "
                "takes; retry when some have finished",
                retry_after_s=self.settings.retry_after_s,
            )
        dispatcher = self.dispatcher
        slot = dispatcher is not None and dispatcher.reserve(tenant)
        try:
            job, created = self.store.submit(
                tenant=tenant,
                request=request,
                idempotency_key=idempotency_key,
                start_as=dispatcher.worker_id if slot else None,
            )
        except BaseException:
            if slot:
                dispatcher.unreserve()
            raise
        if slot and created and job.status is JobStatus.RUNNING:
            dispatcher.adopt(job, request)
        else:
            if slot:
                dispatcher.unreserve()
            if created and dispatcher is not None:
                dispatcher.offer(job.id, request)
        return job, created

    def cancel(self, *, tenant: str, job_id: str) -> Job:
        """Cancel a job and wake whoever waits on it."""
        job = self.store.cancel(tenant=tenant, job_id=job_id)
        self._wake_waiters(job_id)
        return job

    def close_run(self, *, tenant: str, run_id: str) -> Run:
        """Close a run, and the runtime Session it holds.

        An ``ibm:`` Session is closed on the runtime (its queued jobs still finish); a local
        one (``local:`` marker) is dropped by each worker when it meets the run's next job,
        which it refuses. The run keeps its ``session_id``. Closing twice is a no-op.

        Raises:
            RunNotFoundError: no such run for this tenant.
        """
        from qldm.backends._sessions import close_run_session

        was_open = self.store.get_run(tenant=tenant, run_id=run_id).status is RunStatus.OPEN
        run = self.store.close_run(tenant=tenant, run_id=run_id)
        if was_open:
            try:
                close_run_session(
                    run.id, run.session_id, credentials=self.settings.ibm_options() or None
                )
            except QldmError as exc:  # the run is closed: the runtime ends idle sessions itself
                log.warning("run %s: %s", run.id, exc)
        return run

    def authenticate(self, key: str) -> str | None:
        """The tenant of an API key, or ``None``."""
        return self.store.authenticate(key)

    def counts(self) -> dict[str, int]:
        """Jobs per state."""
        return self.store.counts_by_status()

    # ------------------------------------------------------------------ waiting

    async def wait(self, job: Job, *, timeout: float) -> Job:
        """Wait until ``job`` is in a final state or ``timeout`` seconds pass.

        Returns:
            The newest snapshot of the job.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        event = asyncio.Event()
        with self._lock:
            self._waiters.setdefault(job.id, set()).add(event)
        delay = _POLL_FIRST_S
        try:
            while job.status not in TERMINAL:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                here = self.dispatcher is not None and self.dispatcher.runs(job.id)
                try:
                    poll = _POLL_LOCAL_S if here else delay
                    await asyncio.wait_for(event.wait(), timeout=min(poll, remaining))
                except TimeoutError:
                    delay = min(_POLL_MAX_S, delay * 2)
                event.clear()
                if self.store.has_result(job.id):  # it succeeded here: no need to read it
                    job = dataclasses.replace(job, status=JobStatus.SUCCEEDED)
                    break
                job = await asyncio.to_thread(self.store.job, job.id)
        finally:
            with self._lock:
                events = self._waiters.get(job.id)
                if events is not None:
                    events.discard(event)
                    if not events:
                        del self._waiters[job.id]
        return job

    def _job_changed(self, job_id: str) -> None:
        """Called by the store after a transition (in the thread that recorded it)."""
        self._wake_waiters(job_id)

    def _finished(self, job: Job) -> None:
        """Called by the dispatcher with each job it ended (no read of the store)."""
        if self.on_finished is not None:
            self.on_finished(job)

    def _wake_waiters(self, job_id: str) -> None:
        with self._lock:
            events = list(self._waiters.get(job_id, ()))
        if events and self._loop is not None:
            for event in events:
                self._loop.call_soon_threadsafe(event.set)


def _load_catalog() -> None:
    """Load the fake-device list, then move everything loaded so far out of the garbage
    collector's sight (``gc.freeze``): with Qiskit's modules and the device list there are
    some 10^5 long-lived objects, and a full collection over them took ~70 ms of a request."""
    from qldm.service.catalog import catalog

    try:
        catalog()
    except Exception:  # listed again (and the error shown) on the first request
        log.exception("could not load the fake-device list")
    gc.collect()
    gc.freeze()
