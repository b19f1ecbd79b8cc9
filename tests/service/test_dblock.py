"""One server per SQLite database: a second one is refused with the first one's pid, and the
lock goes away with the process that held it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qldm.service.dblock import DatabaseInUseError, hold_sqlite, release
from tests.service.conftest import Databases, Server


def test_a_second_holder_is_refused_until_the_first_lets_go(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.sqlite3'}"
    first = hold_sqlite(url)
    assert first is not None
    with pytest.raises(DatabaseInUseError) as info:
        hold_sqlite(url)
    assert info.value.field == "database_url"
    assert f"pid {os.getpid()}" in str(info.value) and "PostgreSQL" in str(info.value)
    release(first)
    again = hold_sqlite(url)
    assert again is not None
    release(again)


def test_other_databases_need_no_lock(tmp_path: Path) -> None:
    assert hold_sqlite("sqlite://") is None
    assert hold_sqlite("sqlite:///:memory:") is None
    assert hold_sqlite("postgresql+psycopg://postgres@127.0.0.1:5432/test") is None
    # two different files do not conflict
    a = hold_sqlite(f"sqlite:///{tmp_path / 'a.sqlite3'}")
    b = hold_sqlite(f"sqlite:///{tmp_path / 'b.sqlite3'}")
    assert a is not None and b is not None
    release(a)
    release(b)


@pytest.mark.slow
def test_a_second_server_on_one_sqlite_file_exits(databases: Databases, tmp_path: Path) -> None:
    url = databases.new("sqlite")
    first = Server(url, tmp_path / "a").start()
    try:
        second = Server(url, tmp_path / "b")
        with pytest.raises(RuntimeError, match="exited") as info:
            second.start()
        assert "another qldm server" in str(info.value)
        assert f"pid {first.process.pid}" in str(info.value)  # type: ignore[union-attr]
    finally:
        first.stop()
    # the first one is gone: its lock with it
    Server(url, tmp_path / "c").start().stop()
