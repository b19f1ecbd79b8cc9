"""End-to-end fixtures: a real ``qldm serve`` (uvicorn) subprocess on a free loopback port,
over SQLite in a temp dir or a fresh PostgreSQL database (created per test session, dropped
after; the PostgreSQL cases are skipped with a reason when 127.0.0.1:5432 is unreachable).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from qldm.service.embedded import EmbeddedServer
from qldm.service.server import create_key
from qldm.service.settings import Settings

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


class Server(EmbeddedServer):
    """A ``qldm serve`` subprocess over ``database_url`` with two local workers.

    Args:
        database_url: the database it serves.
        data_dir: its data directory (``server.log`` goes there too).
        env: extra ``QLDM_*`` variables.
    """

    def __init__(self, database_url: str, data_dir: Path, **env: str) -> None:
        super().__init__(
            data_dir,
            database_url=database_url,
            workers=2,
            env=env,
            grace=30.0,
        )

    def settings(self) -> Settings:
        return Settings(database_url=self.database_url, data_dir=self.data_dir)

    def log(self) -> str:
        return self.tail(5000)


# ---------------------------------------------------------------------- databases


def _postgres_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return None
    except Exception as exc:  # any failure means: skip the PostgreSQL cases
        return f"PostgreSQL on 127.0.0.1:5432 unreachable ({type(exc).__name__}: {exc})"


class Databases:
    """Hands out fresh databases: SQLite files, or PostgreSQL databases dropped at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.created: list[str] = []

    def new(self, kind: str) -> str:
        name = f"qldm_e2e_{uuid.uuid4().hex[:12]}"
        if kind == "sqlite":
            return f"sqlite:///{self.root / (name + '.sqlite3')}"
        reason = _postgres_available()
        if reason is not None:
            pytest.skip(reason)
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"

    def drop_all(self) -> None:
        if not self.created:
            return
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    dbs = Databases(tmp_path_factory.mktemp("db"))
    yield dbs
    dbs.drop_all()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# ---------------------------------------------------------------------- servers


class Deployment:
    """A running server with two tenants' keys."""

    def __init__(self, server: Server, keys: dict[str, str]) -> None:
        self.server = server
        self.keys = keys

    @property
    def url(self) -> str:
        return self.server.url

    def headers(self, tenant: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}"}


def _deploy(databases: Databases, kind: str, root: Path, **env: str) -> Iterator[Deployment]:
    url = databases.new(kind)
    server = Server(url, root, QLDM_AUTH="on", **env)
    keys = {tenant: create_key(tenant, settings=server.settings()) for tenant in ("alice", "bob")}
    server.start()
    try:
        yield Deployment(server, keys)
    finally:
        server.stop()


_LIMITS = {
    "QLDM_MAX_BODY_BYTES": str(256 * 1024),
    "QLDM_MAX_BATCH": "512",
    "QLDM_MAX_SHOTS": "100000",
}


@pytest.fixture(scope="session")
def deployment(
    databases: Databases, db_kind: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """A local-executor server with auth on, per database kind, shared by the session."""
    yield from _deploy(databases, db_kind, tmp_path_factory.mktemp(f"srv-{db_kind}"), **_LIMITS)


@pytest.fixture(scope="session")
def ray_deployment(
    databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """A Ray-executor server (local Ray instance) over SQLite."""
    yield from _deploy(
        databases, "sqlite", tmp_path_factory.mktemp("srv-ray"), QLDM_EXECUTOR="ray", **_LIMITS
    )
