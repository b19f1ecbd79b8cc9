"""Runs: groups of jobs (one training run), each holding one IBM Runtime session on hardware."""

from __future__ import annotations

import builtins
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection, Row

from qldm.errors import InvalidSpecError, RunNotFoundError
from qldm.jobs import db
from qldm.jobs._sql import SqlBase, new_id, now, require, utc
from qldm.jobs.model import Run, RunStatus

__all__ = ["RunStore"]


class RunStore(SqlBase):
    """The runs part of :class:`qldm.jobs.store.JobStore`."""

    def create_run(self, *, tenant: str, name: str, backend: str) -> Run:
        """Open a new run (a group of jobs, e.g. one training run)."""
        require(tenant, "tenant")
        require(name, "name", max_length=255)
        require(backend, "backend")
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
    )
