"""Runs: groups of jobs (one training run), each holding one IBM Runtime session on hardware."""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection, Row

from qldm.errors import InvalidSpecError, RunNotFoundError
from qldm.jobs import db
from qldm.jobs._sql import SqlBase, new_id, now, require, utc
from qldm.jobs.model import Run, RunStatus

__all__ = ["EXECUTION_MODES", "MAX_LOSS_POINTS", "RunStore"]

EXECUTION_MODES = ("job", "batch", "session")
"""The IBM Runtime execution modes a run may ask for."""

MAX_LOSS_POINTS = 1000
"""Most loss points one report may carry, and one page of :meth:`RunStore.run_losses`."""


class RunStore(SqlBase):
    """The runs part of :class:`qldm.jobs.store.JobStore`."""

    def create_run(
        self, *, tenant: str, name: str, backend: str, execution_mode: str | None = None
    ) -> Run:
        """Open a new run (a group of jobs, e.g. one training run).

        Args:
            tenant: the owner.
            name: a label chosen by the client.
            backend: the backend its jobs use.
            execution_mode: ``job``, ``batch`` or ``session`` for its runtime jobs that set
                none themselves (``None``: ``session``, ``batch`` where Sessions are refused).

        Raises:
            InvalidSpecError: an empty tenant or backend, a name too long, an unknown
                execution mode (``field="execution_mode"``).
        """
        require(tenant, "tenant")
        require(name, "name", max_length=255)
        require(backend, "backend")
        if execution_mode is not None and execution_mode not in EXECUTION_MODES:
            raise InvalidSpecError(
                f"must be one of {', '.join(EXECUTION_MODES)} or null, got {execution_mode!r}",
                field="execution_mode",
            )
        run_id = new_id()
        with self._write() as conn:
            conn.execute(
                insert(db.runs).values(
                    id=run_id,
                    tenant=tenant,
                    name=name,
                    backend=backend,
                    status=RunStatus.OPEN.value,
                    created_at=now(),
                    execution_mode=execution_mode,
                )
            )
            row = self._run_row(conn, tenant, run_id)
        return _run(row)

    def _run_row(self, conn: Connection, tenant: str, run_id: str) -> Row[Any]:
        row = conn.execute(
            select(db.runs).where(db.runs.c.id == run_id, db.runs.c.tenant == tenant)
        ).first()
        if row is None:
            raise RunNotFoundError(f"no run {run_id!r}", field="run_id")
        return row

    def get_run(self, *, tenant: str, run_id: str) -> Run:
        """The run ``run_id`` of ``tenant``.

        Raises:
            RunNotFoundError: no such run for this tenant.
        """
        with self._read() as conn:
            return _run(self._run_row(conn, tenant, run_id))

    def run(self, run_id: str) -> Run:
        """The run ``run_id`` whatever its tenant (for workers: a job's run was checked to be
        its tenant's when the job was stored).

        Raises:
            RunNotFoundError: no such run.
        """
        with self._read() as conn:
            row = conn.execute(select(db.runs).where(db.runs.c.id == run_id)).first()
        if row is None:
            raise RunNotFoundError(f"no run {run_id!r}", field="run_id")
        return _run(row)

    def list_runs(
        self, *, tenant: str, limit: int = 50, offset: int = 0
    ) -> tuple[builtins.list[Run], int]:
        """A page of the tenant's runs, newest first, and how many there are."""
        if not 1 <= limit <= 1000:
            raise InvalidSpecError(f"must lie in [1, 1000], got {limit}", field="limit")
        if offset < 0:
            raise InvalidSpecError(f"must be >= 0, got {offset}", field="offset")
        cond = db.runs.c.tenant == tenant
        with self._read() as conn:
            total = conn.execute(select(func.count()).select_from(db.runs).where(cond)).scalar_one()
            rows = conn.execute(
                select(db.runs)
                .where(cond)
                .order_by(db.runs.c.created_at.desc(), db.runs.c.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
        return [_run(r) for r in rows], int(total)

    def close_run(self, *, tenant: str, run_id: str) -> Run:
        """Close a run: it takes no more jobs (closing twice is a no-op).

        Raises:
            RunNotFoundError: no such run for this tenant.
        """
        with self._write() as conn:
            conn.execute(
                update(db.runs)
                .where(
                    db.runs.c.id == run_id,
                    db.runs.c.tenant == tenant,
                    db.runs.c.status == RunStatus.OPEN.value,
                )
                .values(status=RunStatus.CLOSED.value, closed_at=now())
            )
            return _run(self._run_row(conn, tenant, run_id))

    def add_run_losses(
        self, *, tenant: str, run_id: str, points: Sequence[tuple[int, float]]
    ) -> int:
        """Record training losses for the run: ``(step, loss)`` pairs; a step reported again
        replaces its loss (a resumed training repeats steps). Closed runs take them too (a
        client may report its last losses after closing).

        Args:
            tenant: the run's owner.
            run_id: the run.
            points: ``(step, loss)``, ``step >= 0``, ``loss`` finite; 1 to
                :data:`MAX_LOSS_POINTS` of them.

        Returns:
            How many points were recorded.

        Raises:
            RunNotFoundError: no such run for this tenant.
            InvalidSpecError: an empty or oversized batch, a negative step, a loss that is
                not finite (``field="points"``).
        """
        if not 1 <= len(points) <= MAX_LOSS_POINTS:
            raise InvalidSpecError(
                f"must hold 1 to {MAX_LOSS_POINTS} points, got {len(points)}", field="points"
            )
        latest: dict[int, float] = {}
        for step, loss in points:
            if step < 0 or not math.isfinite(loss):
                raise InvalidSpecError(
                    f"step must be >= 0 and loss finite, got ({step}, {loss})", field="points"
                )
            latest[int(step)] = float(loss)
        table = db.run_losses
        with self._write() as conn:
            self._run_row(conn, tenant, run_id)
            conn.execute(
                delete(table).where(table.c.run_id == run_id, table.c.step.in_(list(latest)))
            )
            at = now()
            conn.execute(
                insert(table),
                [
                    {"run_id": run_id, "step": step, "loss": loss, "created_at": at}
                    for step, loss in latest.items()
                ],
            )
        return len(latest)

    def run_losses(
        self, *, tenant: str, run_id: str, after: int = -1, limit: int = MAX_LOSS_POINTS
    ) -> tuple[builtins.list[tuple[int, float]], int]:
        """The run's losses with ``step > after``, by step, and how many the run has.

        Raises:
            RunNotFoundError: no such run for this tenant.
            InvalidSpecError: ``limit`` outside ``[1, MAX_LOSS_POINTS]``.
        """
        if not 1 <= limit <= MAX_LOSS_POINTS:
            raise InvalidSpecError(
                f"must lie in [1, {MAX_LOSS_POINTS}], got {limit}", field="limit"
            )
        table = db.run_losses
        with self._read() as conn:
            self._run_row(conn, tenant, run_id)
            total = conn.execute(
                select(func.count()).select_from(table).where(table.c.run_id == run_id)
            ).scalar_one()
            rows = conn.execute(
                select(table.c.step, table.c.loss)
                .where(table.c.run_id == run_id, table.c.step > after)
                .order_by(table.c.step)
                .limit(limit)
            ).all()
        return [(int(r.step), float(r.loss)) for r in rows], int(total)

    def run_job_counts(self, *, tenant: str, run_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """How many of the tenant's jobs each run has, by status (one query)."""
        if not run_ids:
            return {}
        jobs = db.jobs
        with self._read() as conn:
            rows = conn.execute(
                select(jobs.c.run_id, jobs.c.status, func.count())
                .where(jobs.c.tenant == tenant, jobs.c.run_id.in_(list(run_ids)))
                .group_by(jobs.c.run_id, jobs.c.status)
            ).all()
        out: dict[str, dict[str, int]] = {run_id: {} for run_id in run_ids}
        for run_id, status, count in rows:
            out[run_id][status] = int(count)
        return out

    def set_run_session_id(self, run_id: str, session_id: str | None) -> None:
        """Remember the IBM Runtime session a run's jobs share."""
        with self._write() as conn:
            conn.execute(
                update(db.runs).where(db.runs.c.id == run_id).values(session_id=session_id)
            )

    def adopt_run_session(self, run_id: str, session_id: str) -> str:
        """Record ``session_id`` as the run's Session unless it already has one; return the
        one it has afterwards.

        A compare-and-set: when the first jobs of a run start in two workers at once, both
        open a Session, one id is recorded, and the other worker learns it and uses it.

        Raises:
            RunNotFoundError: no such run.
        """
        require(session_id, "session_id")
        with self._write() as conn:
            conn.execute(
                update(db.runs)
                .where(db.runs.c.id == run_id, db.runs.c.session_id.is_(None))
                .values(session_id=session_id)
            )
            held = conn.execute(select(db.runs.c.session_id).where(db.runs.c.id == run_id)).first()
        if held is None:
            raise RunNotFoundError(f"no run {run_id!r}", field="run_id")
        return str(held.session_id)

    def replace_run_session(self, run_id: str, old: str, new: str) -> str:
        """Record ``new`` as the run's Session in place of ``old``, which the runtime ended,
        unless another worker replaced it first; return the one the run holds afterwards (a
        compare-and-set, like :meth:`adopt_run_session`).

        Raises:
            RunNotFoundError: no such run.
        """
        require(new, "session_id")
        with self._write() as conn:
            conn.execute(
                update(db.runs)
                .where(db.runs.c.id == run_id, db.runs.c.session_id == old)
                .values(session_id=new)
            )
            held = conn.execute(select(db.runs.c.session_id).where(db.runs.c.id == run_id)).first()
        if held is None:
            raise RunNotFoundError(f"no run {run_id!r}", field="run_id")
        return str(held.session_id)


def _run(row: Row[Any]) -> Run:
    return Run(
        id=row.id,
        tenant=row.tenant,
        name=row.name,
        backend=row.backend,
        status=RunStatus(row.status),
        created_at=utc(row.created_at),  # type: ignore[arg-type]
        closed_at=utc(row.closed_at),
        session_id=row.session_id,
        execution_mode=row.execution_mode,
        usage_s=None if row.usage_s is None else float(row.usage_s),
    )
