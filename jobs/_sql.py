"""Plumbing shared by the store's parts: the connection base class and row helpers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy.engine import Connection, Engine

from qldm.errors import InvalidSpecError
from qldm.jobs import db, npz
from qldm.jobs._hot import HotWriter

__all__ = ["SqlBase", "json_default", "new_id", "now", "pack", "require", "unpack", "utc"]


def now() -> datetime:
    """The current UTC time."""
    return datetime.now(UTC)


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: they were stored as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def new_id() -> str:
    """A fresh id: 32 hex characters (uuid4)."""
    return uuid.uuid4().hex


def pack(arrays: dict[str, np.ndarray | None]) -> bytes:
    """Arrays (``None`` ones left out) as an ``.npz`` blob (:func:`qldm.jobs.npz.write`).

    Uncompressed: float64 results of circuits barely compress (about 6% for a B=128
    Jacobian) and compression cost 16 ms per job, more than the rest of the job's bookkeeping.
    """
    return npz.write({k: v for k, v in arrays.items() if v is not None})


def unpack(blob: bytes) -> dict[str, np.ndarray]:
    """The arrays of a :func:`pack` blob (no pickles)."""
    return npz.read(blob)


def require(value: str, name: str, *, max_length: int = 128) -> str:
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise InvalidSpecError(
            f"must be a non-empty string of at most {max_length} characters", field=name
        )
    return value


def json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


class SqlBase:
    """An engine, with read and write transactions that suit both databases.

    Args:
        url: SQLAlchemy URL (``postgresql://`` means psycopg 3).
        echo: log SQL.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = db.normalize_url(url)
        self._engine: Engine = db.make_engine(self.url, echo=echo)
        self._sqlite = self._engine.dialect.name == "sqlite"
        self._writer: Engine = (
            self._engine.execution_options(sqlite_immediate=True) if self._sqlite else self._engine
        )
        # SQLite: the per-job writes on a connection of their own (jobs._hot); PostgreSQL's
        # go through the pool like every other transaction
        self._hot = HotWriter(self._engine) if self._sqlite else None

    # ------------------------------------------------------------------ lifecycle

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for tests and metrics)."""
        return self._engine

    def migrate(self) -> None:
        """Bring the schema to the latest revision (idempotent; safe for concurrent replicas:
        PostgreSQL takes an advisory lock, SQLite a ``BEGIN IMMEDIATE`` lock)."""
        db.run_migrations(self._engine)

    def revision(self) -> str | None:
        """The schema's current Alembic revision (``None`` before :meth:`migrate`)."""
        return db.current_revision(self._engine)

    def checkpoint(self) -> None:
        """SQLite: copy the write-ahead log into the database now, without blocking writers
        (``PRAGMA wal_checkpoint(PASSIVE)``), so that no commit on the job path has to.
        A no-op on PostgreSQL."""
        if self._engine.dialect.name != "sqlite" or self.url.split("?")[0] in (
            "sqlite://",
            "sqlite:///:memory:",
        ):
            return
        with self._engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        """Close every pooled connection (and on SQLite the per-job writer's own)."""
        if self._hot is not None:
            self._hot.close()
        self._engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction (SQLite: ``BEGIN IMMEDIATE``)."""
        with self._writer.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            yield conn
