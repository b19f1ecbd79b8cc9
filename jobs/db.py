"""The SQL tables behind :class:`qldm.jobs.store.JobStore` (SQLAlchemy Core).

The schema changes only through a migration in ``jobs/migrations/versions``; these table
objects must describe the schema at ``head``. Times are stored as UTC.

Tables:

- ``qldm_jobs``: one row per job: its state, timings, the request (non-numeric fields as
  JSON, arrays as a compressed ``.npz`` blob) and the request's fingerprint (idempotency).
- ``qldm_job_results``: the result of a succeeded job (arrays as ``.npz``, counts and
  metadata as JSON).
- ``qldm_runs``: runs (groups of jobs, optionally one runtime session each).
- ``qldm_run_losses``: the training losses a run's client reported, one row per step.
- ``qldm_api_keys``: API keys, by SHA-256 and a lookup prefix.
- ``qldm_m3_calibrations``: M3 readout calibrations per (device, qubits), newest first, with
  when and how they were measured (the assignment matrices as an ``.npz`` blob).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
"""The Alembic script directory, shipped inside the package."""

VERSION_TABLE = "qldm_alembic_version"
"""Alembic's version table (prefixed, so qldm can share a database with other apps)."""

MIGRATION_LOCK_KEY = 0x716C646D  # "qldm": the PostgreSQL advisory lock taken while migrating

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_AUTOCHECKPOINT_PAGES = 16_384  # 64 MB of 4 kB pages

metadata = MetaData()

jobs = Table(
    "qldm_jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("task", String(16), nullable=False),
    Column("backend", String(128), nullable=False),
    Column("run_id", String(64), nullable=True),
    Column("idempotency_key", String(255), nullable=True),
    Column("request_hash", String(64), nullable=False),
    Column("request_json", Text, nullable=False),
    Column("request_arrays", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("heartbeat_at", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("runtime_job_id", String(128), nullable=True),
    Column("progress", Float, nullable=False, default=0.0),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("worker", String(128), nullable=True),
    Column("runtime_state", String(32), nullable=True),
    Column("usage_s", Float, nullable=True),
    UniqueConstraint("tenant", "idempotency_key", name="uq_qldm_jobs_tenant_idempotency_key"),
    Index("ix_qldm_jobs_status_created", "status", "created_at"),
    Index("ix_qldm_jobs_tenant_created", "tenant", "created_at"),
    Index("ix_qldm_jobs_run_id", "run_id"),
)

job_results = Table(
    "qldm_job_results",
    metadata,
    Column(
        "job_id",
        String(32),
        ForeignKey("qldm_jobs.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("arrays", LargeBinary, nullable=False),
    Column("counts_json", Text, nullable=True),
    Column("metadata_json", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

runs = Table(
    "qldm_runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("name", String(255), nullable=False),
    Column("backend", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    Column("session_id", String(128), nullable=True),
    Column("execution_mode", String(16), nullable=True),
    Column("usage_s", Float, nullable=True),
    Index("ix_qldm_runs_tenant_created", "tenant", "created_at"),
)

run_losses = Table(
    "qldm_run_losses",
    metadata,
    Column("run_id", String(32), ForeignKey("qldm_runs.id", ondelete="CASCADE"), primary_key=True),
    Column("step", BigInteger, primary_key=True, autoincrement=False),
    Column("loss", Float, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

api_keys = Table(
    "qldm_api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("prefix", name="uq_qldm_api_keys_prefix"),
    Index("ix_qldm_api_keys_tenant", "tenant"),
)

m3_calibrations = Table(
    "qldm_m3_calibrations",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("device", String(128), nullable=False),
    Column("qubits", String(2048), nullable=False),
    Column("method", String(32), nullable=False),
    Column("shots", Integer, nullable=False),
    Column("device_calibration", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("matrices", LargeBinary, nullable=False),
    Column("runtime_job_id", String(128), nullable=True),
    Index("ix_qldm_m3_calibrations_key", "device", "qubits", "created_at"),
)


def normalize_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs that name no driver (``postgresql://``)."""
    for plain in ("postgres://", "postgresql://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for ``url``, tuned for qldm's access pattern.

    SQLite: WAL journal (auto-checkpoint at 64 MB), a 30 s busy timeout, foreign keys on, and
    transactions that SQLAlchemy begins explicitly: ``BEGIN`` by default, ``BEGIN IMMEDIATE``
    on connections whose execution options carry ``sqlite_immediate=True`` (every write
    transaction of the store), so that two writers queue on the lock instead of failing with
    "database is locked" half-way through.

    PostgreSQL: psycopg 3, ``pool_pre_ping``.
    """
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, echo=echo, pool_pre_ping=True, future=True)
    kwargs: dict[str, Any] = {
        "connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    }
    memory = parsed.database in (None, "", ":memory:")
    if memory:
        kwargs["poolclass"] = StaticPool
    engine = create_engine(url, echo=echo, future=True, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy emit BEGIN itself (below)
        cur = dbapi_conn.cursor()
        if not memory:
            _enable_wal(cur)
            cur.execute("PRAGMA synchronous=NORMAL")
            # a commit that crosses this many WAL pages copies the WAL into the database (and
            # fsyncs) before it returns; a server checkpoints in the background instead
            # (JobStore.checkpoint), so this only caps the WAL of stores without one
            cur.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT_PAGES}")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _enable_wal(cur: Any, *, tries: int = 100) -> None:
    """``PRAGMA journal_mode=WAL``, retried: when several processes open a new database at
    once, the switch answers "database is locked" at once, without SQLite's busy handler."""
    import sqlite3

    for attempt in range(tries):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(0.005 * (1 + attempt % 10))


def run_migrations(engine: Engine) -> None:
    """Upgrade the schema to ``head``; a no-op when it is there already.

    Safe when several processes start at once: on PostgreSQL the upgrade runs in one
    transaction holding an advisory lock; on SQLite in one ``BEGIN IMMEDIATE`` transaction.
    """
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    is_sqlite = engine.dialect.name == "sqlite"
    eng = engine.execution_options(sqlite_immediate=True) if is_sqlite else engine
    with eng.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def current_revision(engine: Engine) -> str | None:
    """The schema's Alembic revision, or ``None`` before the first migration."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return ctx.get_current_revision()
