"""The job store: jobs, results, runs, API keys and M3 calibrations in SQL (SQLite or PostgreSQL).

The database is the source of truth. Every state change is one short transaction whose
``WHERE`` clause names the state it leaves, so two processes can never both move a job:

- :meth:`JobStore.claim` moves ``queued -> running`` (PostgreSQL: ``SELECT ... FOR UPDATE
  SKIP LOCKED``; SQLite: one ``BEGIN IMMEDIATE`` transaction);
- :meth:`JobStore.complete` writes the result and ``running -> succeeded`` together, and only
  while the job is still running (a cancelled or failed job is never overwritten);
- :meth:`JobStore.requeue_running` and :meth:`JobStore.release` put the jobs of a lost worker
  back to ``queued``, or fail them once ``max_attempts`` starts were used.

Requests are stored as JSON for their non-numeric fields and a compressed ``.npz`` blob for
their arrays; results likewise.
"""

from __future__ import annotations

import builtins
import functools
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from qldm.errors import (
    IdempotencyConflictError,
    InvalidSpecError,
    JobNotFinishedError,
    JobNotFoundError,
    ResultExpiredError,
    RunClosedError,
    RunNotFoundError,
)
from qldm.jobs import db
from qldm.jobs._api_keys import API_KEY_PREFIX, ApiKeyStore
from qldm.jobs._fair import fair_shares
from qldm.jobs._hot import HotCursor, HotStatement
from qldm.jobs._m3_store import M3CalibrationStore
from qldm.jobs._retention import PruneReport, RetentionStore
from qldm.jobs._runs import MAX_LOSS_POINTS, RunStore
from qldm.jobs._runtime_accounting import RuntimeAccountingStore
from qldm.jobs._sql import json_default, new_id, pack, require, unpack, utc
from qldm.jobs._sql import now as utcnow
from qldm.jobs.model import Job, JobRequest, JobResult, JobStatus, RunStatus
from qldm.paths import sqlite_url

__all__ = [
    "API_KEY_PREFIX",
    "MAX_LOSS_POINTS",
    "JobStore",
    "PruneReport",
    "default_database_url",
    "pack_result",
]

_ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


def default_database_url(data_dir: Path) -> str:
    """The embedded default: the SQLite file :data:`qldm.paths.DATABASE_FILE` in ``data_dir``
    (the folder is created if needed)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    return sqlite_url(data_dir)


class JobStore(RunStore, ApiKeyStore, M3CalibrationStore, RetentionStore, RuntimeAccountingStore):
    """Jobs, results, runs, API keys and M3 readout calibrations in one SQL database.

    Args:
        url: SQLAlchemy URL: ``sqlite:///path/qldm.sqlite3`` or
            ``postgresql+psycopg://user@host:5432/db`` (``postgresql://`` means psycopg 3 too).
        max_attempts: starts allowed per job when its request sets none.
        echo: log SQL.

    The store is thread-safe (one connection pool); a worker process builds its own store
    from :attr:`url` instead of inheriting one.
    """

    def __init__(self, url: str, *, max_attempts: int = 3, echo: bool = False) -> None:
        if max_attempts < 1:
            raise InvalidSpecError("must be at least 1", field="max_attempts")
        super().__init__(url, echo=echo)
        self.max_attempts = max_attempts

    # ------------------------------------------------------------------ jobs: client side

    def submit(
        self,
        *,
        tenant: str,
        request: JobRequest,
        idempotency_key: str | None = None,
        start_as: str | None = None,
    ) -> tuple[Job, bool]:
        """Store a new queued job.

        Args:
            tenant: the owner.
            request: the validated request.
            idempotency_key: when given, a second submit with the same key and the same
                request returns the first job instead of creating one.
            start_as: a worker id with a free slot: when no other job is queued, the job is
                stored already claimed by it (``running``, attempt 1, as :meth:`claim` would
                leave it), saving a claim transaction; otherwise it is queued as usual.

        Returns:
            ``(job, created)``: ``created`` is ``False`` when an earlier job with this key was
            returned.

        Raises:
            IdempotencyConflictError: the key was used with a different request.
            RunNotFoundError: ``request.run_id`` names no run of this tenant.
            RunClosedError: the run is closed.
        """
        require(tenant, "tenant")
        if idempotency_key is not None:
            require(idempotency_key, "idempotency_key", max_length=255)
        text, arrays, fingerprint = request.canonical()
        values: dict[str, Any] = {
            "id": new_id(),
            "tenant": tenant,
            "task": request.task,
            "backend": request.backend,
            "run_id": request.run_id,
            "idempotency_key": idempotency_key,
            "request_hash": fingerprint,
            "request_json": text,
            "request_arrays": pack(dict(arrays)),
            "max_attempts": request.options.max_attempts,
            "progress": 0.0,
            "cancel_requested": False,
        }
        # Insert first: a repeated key is rare, and the unique (tenant, key) constraint finds
        # it (also when two submits with one key race); only then is the earlier job read.
        try:
            with self._job_write() as tx:
                if request.run_id is not None:
                    run = tx.first("run_status", {"b_id": request.run_id, "b_tenant": tenant})
                    if run is None:
                        raise RunNotFoundError(f"no run {request.run_id!r}", field="run_id")
                    if run[0] != RunStatus.OPEN.value:
                        raise RunClosedError(f"run {request.run_id} is closed", field="run_id")
                now = utcnow()
                start = start_as is not None and tx.first("any_queued", {}) is None
                values.update(
                    status=(JobStatus.RUNNING if start else JobStatus.QUEUED).value,
                    worker=start_as if start else None,
                    started_at=now if start else None,
                    heartbeat_at=now if start else None,
                    created_at=now,
                    attempts=1 if start else 0,
                )
                tx.execute("insert_job", values)
        except (IntegrityError, RunClosedError):
            existing = None
            if idempotency_key is not None:
                existing = self._by_idempotency_key(tenant, idempotency_key, fingerprint)
            if existing is None:
                raise
            return existing, False  # the same request again (a retry): the same job
        return self._job(_InsertedRow(values)), True

    @contextmanager
    def _job_write(self) -> Iterator[_CoreWrite | _HotWrite]:
        """The write transaction of :meth:`submit` and :meth:`complete`: on SQLite on the
        store's own DBAPI connection (:mod:`qldm.jobs._hot`), elsewhere on one of the pool's."""
        if self._hot is None:
            with self._write() as conn:
                yield _CoreWrite(conn)
        else:
            with self._hot.transaction() as cursor:
                yield _HotWrite(cursor, self._hot_statements)

    @functools.cached_property
    def _hot_statements(self) -> dict[str, HotStatement]:
        """The per-job statements compiled for SQLite's cursor (on first use)."""
        return {name: HotStatement(stmt, self.engine) for name, stmt in _JOB_STATEMENTS.items()}

    def _job(self, row: Row[Any] | _InsertedRow) -> Job:
        return _job_from_row(row, self.max_attempts)

    def _by_idempotency_key(self, tenant: str, key: str, fingerprint: str) -> Job | None:
        with self._read() as conn:
            row = conn.execute(
                select(db.jobs).where(db.jobs.c.tenant == tenant, db.jobs.c.idempotency_key == key)
            ).first()
        if row is None:
            return None
        if row.request_hash != fingerprint:
            raise IdempotencyConflictError(
                f"idempotency key {key!r} was already used for job {row.id} with a different "
                "request",
                field="idempotency_key",
            )
        return self._job(row)

    def get(self, *, tenant: str, job_id: str) -> Job:
        """The job ``job_id`` of ``tenant``.

        Raises:
            JobNotFoundError: no such job, or it belongs to another tenant.
        """
        with self._read() as conn:
            row = conn.execute(
                select(db.jobs).where(db.jobs.c.id == job_id, db.jobs.c.tenant == tenant)
            ).first()
        if row is None:
            raise JobNotFoundError(f"no job {job_id!r}", field="job_id")
        return self._job(row)

    def job(self, job_id: str) -> Job:
        """The job ``job_id`` whatever its tenant (for workers and the dispatcher).

        Raises:
            JobNotFoundError: no such job.
        """
        with self._read() as conn:
            row = conn.execute(select(db.jobs).where(db.jobs.c.id == job_id)).first()
        if row is None:
            raise JobNotFoundError(f"no job {job_id!r}", field="job_id")
        return self._job(row)

    def list(
        self,
        *,
        tenant: str,
        status: JobStatus | str | None = None,
        run_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[builtins.list[Job], int]:
        """A page of the tenant's jobs, newest first.

        Returns:
            ``(jobs, total)``: at most ``limit`` jobs from ``offset``, and how many match.

        Raises:
            InvalidSpecError: unknown ``status``, or ``limit``/``offset`` out of range.
        """
        if not 1 <= limit <= 1000:
            raise InvalidSpecError(f"must lie in [1, 1000], got {limit}", field="limit")
        if offset < 0:
            raise InvalidSpecError(f"must be >= 0, got {offset}", field="offset")
        conds = [db.jobs.c.tenant == tenant]
        if status is not None:
            try:
                conds.append(db.jobs.c.status == JobStatus(status).value)
            except ValueError:
                raise InvalidSpecError(f"unknown status {status!r}", field="status") from None
        if run_id is not None:
            conds.append(db.jobs.c.run_id == run_id)
        with self._read() as conn:
            total = conn.execute(
                select(func.count()).select_from(db.jobs).where(*conds)
            ).scalar_one()
            rows = conn.execute(
                select(db.jobs)
                .where(*conds)
                .order_by(db.jobs.c.created_at.desc(), db.jobs.c.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
        return [self._job(r) for r in rows], int(total)

    def request(self, job_id: str) -> JobRequest:
        """The request of job ``job_id`` as submitted.

        Raises:
            JobNotFoundError: no such job.
        """
        with self._read() as conn:
            row = conn.execute(
                select(db.jobs.c.request_json, db.jobs.c.request_arrays).where(
                    db.jobs.c.id == job_id
                )
            ).first()
        if row is None:
            raise JobNotFoundError(f"no job {job_id!r}", field="job_id")
        body = json.loads(row.request_json)
        body.update(unpack(row.request_arrays))
        return JobRequest.model_validate(body)

    def result(self, *, tenant: str, job_id: str) -> JobResult:
        """The result of a succeeded job.

        Raises:
            JobNotFoundError: no such job for this tenant.
            JobNotFinishedError: the job has not succeeded (the message says its state and,
                for a failed job, why).
        """
        return self.result_and_blob(tenant=tenant, job_id=job_id)[0]

    def result_and_blob(self, *, tenant: str, job_id: str) -> tuple[JobResult, bytes]:
        """The result of a succeeded job, and its arrays as stored (the npz blob of
        :func:`pack_result`, which the API sends on without encoding them again).

        Raises:
            JobNotFoundError: no such job for this tenant.
            JobNotFinishedError: the job has not succeeded (the message says its state and,
                for a failed job, why).
            ResultExpiredError: the job succeeded but its result was pruned.
        """
        job = self.get(tenant=tenant, job_id=job_id)
        if job.status is not JobStatus.SUCCEEDED:
            why = f": {job.error_code}: {job.error_message}" if job.error_code else ""
            raise JobNotFinishedError(f"job {job_id} is {job.status.value}{why}", field="job_id")
        with self._read() as conn:
            row = conn.execute(
                select(db.job_results).where(db.job_results.c.job_id == job_id)
            ).first()
        if row is None:  # complete() writes both in one transaction: the result was pruned
            raise ResultExpiredError(
                f"job {job_id} succeeded, but its result was pruned (the server keeps results "
                "for QLDM_RESULT_TTL_S seconds, at most QLDM_MAX_RESULTS of them)",
                field="job_id",
            )
        blob = bytes(row.arrays)
        result = JobResult.from_arrays(
            unpack(blob),
            counts=None if row.counts_json is None else json.loads(row.counts_json),
            metadata=json.loads(row.metadata_json),
        )
        return result, blob

    def cancel(self, *, tenant: str, job_id: str) -> Job:
        """Cancel a job.

        A queued job is cancelled at once and never runs; a running job gets
        ``cancel_requested`` and stops at its next chunk boundary; a finished job is returned
        unchanged.

        Raises:
            JobNotFoundError: no such job for this tenant.
        """
        with self._write() as conn:
            now = utcnow()  # inside the lock: times follow the order of the transactions
            base = (db.jobs.c.id == job_id, db.jobs.c.tenant == tenant)
            conn.execute(
                update(db.jobs)
                .where(*base, db.jobs.c.status == JobStatus.QUEUED.value)
                .values(
                    status=JobStatus.CANCELLED.value,
                    finished_at=now,
                    cancel_requested=True,
                    error_code="cancelled",
                    error_message="cancelled before it started",
                )
            )
            conn.execute(
                update(db.jobs)
                .where(*base, db.jobs.c.status == JobStatus.RUNNING.value)
                .values(cancel_requested=True)
            )
            row = conn.execute(select(db.jobs).where(*base)).first()
        if row is None:
            raise JobNotFoundError(f"no job {job_id!r}", field="job_id")
        return self._job(row)

    # ------------------------------------------------------------------ jobs: worker side

    def claim(
        self, *, worker: str, limit: int = 1, max_per_tenant: int | None = None
    ) -> builtins.list[Job]:
        """Move up to ``limit`` queued jobs to ``running`` for ``worker``, fairly between
        tenants: the tenant with the fewest running jobs goes first, and within a tenant the
        oldest job (:func:`qldm.jobs._fair.fair_shares`).

        Atomic: a job is handed to exactly one claimer, even with many processes or replicas
        claiming at once. Each claimed job's ``attempts`` goes up by one.

        Args:
            worker: the claimer's id.
            limit: most jobs to claim.
            max_per_tenant: most running jobs per tenant (over every worker; ``None``: no
                limit): a tenant at it gets nothing more until one of its jobs ends.
        """
        if limit < 1:
            return []
        with self._write() as conn:
            waiting = conn.execute(
                select(db.jobs.c.tenant, func.min(db.jobs.c.created_at), func.count())
                .where(db.jobs.c.status == JobStatus.QUEUED.value)
                .group_by(db.jobs.c.tenant)
            ).all()
            if not waiting:
                return []
            running = conn.execute(
                select(db.jobs.c.tenant, func.count())
                .where(db.jobs.c.status == JobStatus.RUNNING.value)
                .group_by(db.jobs.c.tenant)
            ).all()
            shares = fair_shares(
                [(t, created, n) for t, created, n in waiting],
                {t: n for t, n in running},
                slots=limit,
                max_per_tenant=max_per_tenant,
            )
            ids = [
                job_id
                for tenant, share in shares.items()
                for job_id in conn.execute(
                    select(db.jobs.c.id)
                    .where(db.jobs.c.status == JobStatus.QUEUED.value, db.jobs.c.tenant == tenant)
                    .order_by(db.jobs.c.created_at, db.jobs.c.id)
                    .limit(share)
                    .with_for_update(skip_locked=True)
                ).scalars()
            ]
            if not ids:
                return []
            now = utcnow()  # after the jobs were seen: a start never precedes a creation
            conn.execute(
                update(db.jobs)
                .where(db.jobs.c.id.in_(ids), db.jobs.c.status == JobStatus.QUEUED.value)
                .values(
                    status=JobStatus.RUNNING.value,
                    attempts=db.jobs.c.attempts + 1,
                    started_at=now,
                    heartbeat_at=now,
                    worker=worker,
                    progress=0.0,
                )
            )
            rows = conn.execute(
                select(db.jobs)
                .where(
                    db.jobs.c.id.in_(ids),
                    db.jobs.c.worker == worker,
                    db.jobs.c.status == JobStatus.RUNNING.value,
                )
                .order_by(db.jobs.c.created_at, db.jobs.c.id)
            ).all()
        return [self._job(r) for r in rows]

    def active_jobs(self, tenant: str) -> int:
        """How many jobs ``tenant`` has queued or running (through the status index: the
        tenant's finished jobs, however many, are not read)."""
        query: Any = (
            select(func.count())
            .select_from(db.jobs)
            .where(db.jobs.c.status.in_(_ACTIVE), db.jobs.c.tenant == tenant)
        )
        if self.engine.dialect.name == "sqlite":  # its planner picks the tenant index
            query = text(
                f"SELECT count(*) FROM {db.jobs.name} INDEXED BY ix_qldm_jobs_status_created "
                "WHERE status IN (:queued, :running) AND tenant = :tenant"
            ).bindparams(queued=_ACTIVE[0], running=_ACTIVE[1], tenant=tenant)
        with self._read() as conn:
            return int(conn.execute(query).scalar_one())

    def _running(self, job_id: str, attempt: int | None) -> tuple[Any, ...]:
        conds: tuple[Any, ...] = (
            db.jobs.c.id == job_id,
            db.jobs.c.status == JobStatus.RUNNING.value,
        )
        if attempt is not None:
            conds += (db.jobs.c.attempts == attempt,)
        return conds

    def complete(
        self,
        job_id: str,
        result: JobResult,
        *,
        attempt: int | None = None,
        blob: bytes | None = None,
    ) -> bool:
        """Store the result and mark the job succeeded, in one transaction.

        Applies only while the job is running (and, when ``attempt`` is given, still in that
        attempt): a job that was cancelled, failed or re-queued meanwhile is left alone.

        Args:
            job_id: the job.
            result: its result.
            attempt: the attempt that computed it (``None``: any).
            blob: ``result``'s arrays already packed by :func:`pack_result` (else packed here).

        Returns:
            Whether the result was stored.
        """
        counts = None if result.counts is None else json.dumps(result.counts)
        meta = json.dumps(result.metadata, default=json_default)
        if blob is None:
            blob = pack_result(result)
        try:
            with self._job_write() as tx:
                now = utcnow()
                if attempt is None:
                    done = tx.execute("complete", {"b_id": job_id, "b_now": now})
                else:
                    params = {"b_id": job_id, "b_attempt": attempt, "b_now": now}
                    done = tx.execute("complete_attempt", params)
                if done != 1:
                    raise _NotApplied  # rolls the transaction back
                # no result row can exist yet: only this transaction, which ends the job's
                # running state, writes one (a second would violate the primary key)
                tx.execute(
                    "insert_result",
                    {
                        "job_id": job_id,
                        "arrays": blob,
                        "counts_json": counts,
                        "metadata_json": meta,
                        "created_at": now,
                    },
                )
        except _NotApplied:
            return False
        return True

    def fail(self, job_id: str, code: str, message: str, *, attempt: int | None = None) -> bool:
        """Mark a queued or running job failed with ``code`` and ``message``.

        Returns:
            Whether the job was changed (a finished job is left alone).
        """
        conds: list[Any] = [db.jobs.c.id == job_id, db.jobs.c.status.in_(_ACTIVE)]
        if attempt is not None:
            conds.append(db.jobs.c.attempts == attempt)
        with self._write() as conn:
            res = conn.execute(
                update(db.jobs)
                .where(*conds)
                .values(
                    status=JobStatus.FAILED.value,
                    finished_at=utcnow(),
                    error_code=code[:64],
                    error_message=message,
                )
            )
        return res.rowcount == 1

    def mark_cancelled(self, job_id: str, *, attempt: int | None = None) -> bool:
        """A running job stopped because it was cancelled: ``running -> cancelled``."""
        with self._write() as conn:
            res = conn.execute(
                update(db.jobs)
                .where(*self._running(job_id, attempt))
                .values(
                    status=JobStatus.CANCELLED.value,
                    finished_at=utcnow(),
                    error_code="cancelled",
                    error_message="cancelled while running",
                )
            )
        return res.rowcount == 1

    def release(
        self,
        job_id: str,
        *,
        reason: str,
        attempt: int | None = None,
        max_attempts: int | None = None,
    ) -> JobStatus | None:
        """The worker running the job was lost: retry it, or fail it once its attempts are
        used up (a job whose cancel was requested is cancelled instead).

        Args:
            job_id: the job.
            reason: recorded in the job's error message.
            attempt: act only if the job is still in this attempt.
            max_attempts: the limit for jobs whose request set none (default: the store's).

        Returns:
            The job's new state, or ``None`` if it was not running (in that attempt).
        """
        with self._write() as conn:
            row = conn.execute(
                select(db.jobs).where(*self._running(job_id, attempt)).with_for_update()
            ).first()
            if row is None:
                return None
            status = self._release_row(conn, row, reason, max_attempts)
        return status

    def _release_row(
        self, conn: Connection, row: Row[Any], reason: str, max_attempts: int | None
    ) -> JobStatus:
        now = utcnow()
        limit = row.max_attempts or max_attempts or self.max_attempts
        where = (db.jobs.c.id == row.id, db.jobs.c.status == JobStatus.RUNNING.value)
        if row.cancel_requested:
            values: dict[str, Any] = {
                "status": JobStatus.CANCELLED.value,
                "finished_at": now,
                "error_code": "cancelled",
                "error_message": f"cancelled while running ({reason})",
            }
        elif row.attempts >= limit:
            values = {
                "status": JobStatus.FAILED.value,
                "finished_at": now,
                "error_code": "worker_lost",
                "error_message": (
                    f"{reason}; gave up after {row.attempts} attempts (max_attempts={limit})"
                ),
            }
        else:
            values = {
                "status": JobStatus.QUEUED.value,
                "worker": None,
                "progress": 0.0,
                "error_code": None,
                "error_message": f"retrying after: {reason}",
            }
        conn.execute(update(db.jobs).where(*where).values(**values))
        return JobStatus(values["status"])

    def requeue_running(
        self,
        *,
        older_than: timedelta | None = None,
        worker: str | None = None,
        reason: str = "the server restarted while the job was running",
        max_attempts: int | None = None,
    ) -> dict[str, JobStatus]:
        """Recover the jobs of workers that are gone (call it on start-up).

        Each running job goes back to ``queued``, or to ``failed`` (code ``worker_lost``) once
        it has used ``max_attempts`` starts, or to ``cancelled`` if a cancel was requested.
        A job's ``runtime_job_id`` is kept, so a hardware job re-attaches instead of being
        submitted again.

        Args:
            older_than: only jobs whose last heartbeat is older than this (several replicas:
                leave the jobs of live replicas alone). ``None``: every running job.
            worker: only jobs claimed by this worker id.
            reason: recorded in the job's error message.
            max_attempts: the limit for jobs whose request set none (default: the store's).

        Returns:
            The new state of each recovered job, by job id.
        """
        conds: list[Any] = [db.jobs.c.status == JobStatus.RUNNING.value]
        if older_than is not None:
            conds.append(db.jobs.c.heartbeat_at < utcnow() - older_than)
        if worker is not None:
            conds.append(db.jobs.c.worker == worker)
        out: dict[str, JobStatus] = {}
        with self._write() as conn:
            rows = conn.execute(
                select(db.jobs).where(*conds).with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                out[row.id] = self._release_row(conn, row, reason, max_attempts)
        return out

    def heartbeat(self, job_ids: Sequence[str]) -> None:
        """Record that the worker of these running jobs is alive."""
        if not job_ids:
            return
        with self._write() as conn:
            conn.execute(
                update(db.jobs)
                .where(db.jobs.c.id.in_(list(job_ids)), db.jobs.c.status == JobStatus.RUNNING.value)
                .values(heartbeat_at=utcnow())
            )

    def set_runtime_job_id(self, job_id: str, runtime_job_id: str) -> None:
        """Remember the IBM Runtime job id of a job (before its results are in)."""
        with self._write() as conn:
            conn.execute(
                update(db.jobs).where(db.jobs.c.id == job_id).values(runtime_job_id=runtime_job_id)
            )

    def set_progress(self, job_id: str, fraction: float) -> None:
        """Record the fraction of a running job that is done (clipped to [0, 1])."""
        value = min(1.0, max(0.0, float(fraction)))
        with self._write() as conn:
            conn.execute(
                update(db.jobs)
                .where(db.jobs.c.id == job_id, db.jobs.c.status == JobStatus.RUNNING.value)
                .values(progress=value, heartbeat_at=utcnow())
            )

    def is_cancel_requested(self, job_id: str) -> bool:
        """Whether the job should stop: a cancel was requested, or it is no longer running."""
        with self._read() as conn:
            row = conn.execute(
                select(db.jobs.c.status, db.jobs.c.cancel_requested).where(db.jobs.c.id == job_id)
            ).first()
        if row is None:
            return True
        return bool(row.cancel_requested) or row.status != JobStatus.RUNNING.value

    def counts_by_status(self) -> dict[str, int]:
        """How many jobs are in each state (all tenants; every state present)."""
        with self._read() as conn:
            rows = conn.execute(
                select(db.jobs.c.status, func.count()).group_by(db.jobs.c.status)
            ).all()
        out = {s.value: 0 for s in JobStatus}
        for status, n in rows:
            out[status] = int(n)
        return out


class _NotApplied(Exception):
    """Internal: abort a transaction whose guard matched no row."""


def pack_result(result: JobResult) -> bytes:
    """A result's arrays as the npz blob the store keeps (``None`` arrays left out)."""
    return pack(result.arrays())


# submit() and complete() run once per job: their statements are built once
_COMPLETE_VALUES = {
    "status": JobStatus.SUCCEEDED.value,
    "finished_at": bindparam("b_now"),
    "progress": 1.0,
    "error_code": None,
    "error_message": None,
}
_COMPLETE = (
    update(db.jobs)
    .where(db.jobs.c.id == bindparam("b_id"), db.jobs.c.status == JobStatus.RUNNING.value)
    .values(**_COMPLETE_VALUES)
)
_COMPLETE_ATTEMPT = _COMPLETE.where(db.jobs.c.attempts == bindparam("b_attempt"))
_SUBMIT_COLUMNS = (
    "id",
    "tenant",
    "task",
    "backend",
    "run_id",
    "idempotency_key",
    "request_hash",
    "request_json",
    "request_arrays",
    "max_attempts",
    "progress",
    "cancel_requested",
    "status",
    "worker",
    "started_at",
    "heartbeat_at",
    "created_at",
    "attempts",
)
_JOB_STATEMENTS: dict[str, Any] = {
    "insert_job": insert(db.jobs).values({c: bindparam(c) for c in _SUBMIT_COLUMNS}),
    "any_queued": select(db.jobs.c.id).where(db.jobs.c.status == JobStatus.QUEUED.value).limit(1),
    "run_status": select(db.runs.c.status).where(
        db.runs.c.id == bindparam("b_id"), db.runs.c.tenant == bindparam("b_tenant")
    ),
    "complete": _COMPLETE,
    "complete_attempt": _COMPLETE_ATTEMPT,
    "insert_result": insert(db.job_results),
}


class _CoreWrite:
    """One transaction of :meth:`JobStore.submit` or :meth:`JobStore.complete` on a
    SQLAlchemy connection, by statement name (:data:`_JOB_STATEMENTS`)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def first(self, name: str, values: dict[str, Any]) -> tuple[Any, ...] | None:
        """The first row of the ``select`` ``name``, or ``None``."""
        row = self._conn.execute(_JOB_STATEMENTS[name], values).first()
        return None if row is None else tuple(row)

    def execute(self, name: str, values: dict[str, Any]) -> int:
        """Run the statement ``name``; the rows it changed."""
        return int(self._conn.execute(_JOB_STATEMENTS[name], values).rowcount)


class _HotWrite:
    """The same on SQLite's hot cursor, with the statements compiled for it."""

    def __init__(self, cursor: HotCursor, compiled: dict[str, HotStatement]) -> None:
        self._cursor = cursor
        self._compiled = compiled

    def first(self, name: str, values: dict[str, Any]) -> tuple[Any, ...] | None:
        """The first row of the ``select`` ``name``, or ``None``."""
        return self._cursor.first(self._compiled[name], values)

    def execute(self, name: str, values: dict[str, Any]) -> int:
        """Run the statement ``name``; the rows it changed."""
        return self._cursor.execute(self._compiled[name], values)


class _InsertedRow:
    """The values :meth:`JobStore.submit` inserted, read like a row (columns it left to their
    defaults are ``None``)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def __getattr__(self, name: str) -> Any:
        return self._values.get(name)


def _job_from_row(row: Row[Any] | _InsertedRow, default_max_attempts: int) -> Job:
    return Job(
        id=row.id,
        tenant=row.tenant,
        status=JobStatus(row.status),
        task=row.task,
        backend=row.backend,
        run_id=row.run_id,
        idempotency_key=row.idempotency_key,
        created_at=utc(row.created_at),  # type: ignore[arg-type]
        started_at=utc(row.started_at),
        finished_at=utc(row.finished_at),
        attempts=int(row.attempts),
        error_code=row.error_code,
        error_message=row.error_message,
        runtime_job_id=row.runtime_job_id,
        progress=float(row.progress),
        cancel_requested=bool(row.cancel_requested),
        worker=row.worker,
        max_attempts=int(row.max_attempts or default_max_attempts),
        runtime_state=row.runtime_state,
        usage_s=None if row.usage_s is None else float(row.usage_s),
    )
