"""Fixtures for the job store and dispatcher tests: real SQLite and PostgreSQL databases.

PostgreSQL: the server on 127.0.0.1:5432 (trust auth). Each test that asks for it gets a fresh
database ``qldm_test_<random>``, dropped afterwards, so tests run beside other sessions and
leave nothing behind. Tests are skipped, with the reason, when the server is unreachable.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from qldm.jobs.model import JobRequest
from qldm.jobs.store import JobStore, default_database_url

PG_ADMIN_URL = os.environ.get("QLDM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_reachable() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except Exception as exc:
        return f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {exc}"


_PG_SKIP = _pg_reachable()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (dropped after the test)."""
    if _PG_SKIP:
        pytest.skip(_PG_SKIP)
    import psycopg

    name = f"qldm_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file in the test's temporary directory."""
    return default_database_url(tmp_path / "data")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """The URL of a fresh database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[JobStore]:
    """A migrated store on each database."""
    st = JobStore(db_url)
    st.migrate()
    try:
        yield st
    finally:
        st.close()


def ry_request(xs: list[float], w: float, **extra: object) -> JobRequest:
    """A 1-qubit job: RY(x) then RX(w); analytically <Z> = cos(x) cos(w)."""
    body: dict[str, object] = {
        "circuit": {"n_qubits": 1, "encoding": "angle_ry", "ansatz": "basic_entangler"},
        "inputs": [[x] for x in xs],
        "weights": [w],
        **extra,
    }
    return JobRequest.parse(body)
