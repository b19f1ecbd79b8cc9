"""SQLite's per-job writes on a DBAPI cursor (jobs._hot): the same rows as SQLAlchemy writes,
SQLAlchemy's exceptions and rollback."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

from qldm.jobs._hot import HotStatement, HotWriter
from qldm.jobs.db import make_engine

_meta = MetaData()
_rows = Table(
    "hot_rows",
    _meta,
    Column("id", String(8), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("flag", Boolean, nullable=False),
    Column("blob", LargeBinary, nullable=False),
    Column("n", Integer, nullable=False),
)


def test_rows_written_on_the_cursor_read_back_as_sqlalchemy_writes_them(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    _meta.create_all(engine)
    writer = HotWriter(engine)
    stmt = HotStatement(insert(_rows), engine)
    at = datetime(2026, 12, 1, 20, 41, 58, 123456, tzinfo=UTC)
    values = {"at": at, "flag": True, "blob": b"\x00\x01" * 1000, "n": 7}
    with writer.transaction() as cur:
        assert cur.execute(stmt, {"id": "hot", **values}) == 1
    with engine.begin() as conn:  # the same values through SQLAlchemy, for comparison
        conn.execute(insert(_rows), {"id": "core", **values})
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(_rows))}
    hot, core = rows["hot"], rows["core"]
    assert (hot.at, hot.flag, bytes(hot.blob), hot.n) == (core.at, core.flag, bytes(core.blob), 7)
    # a literal in the statement travels as a parameter too
    lookup = HotStatement(
        select(_rows.c.n).where(_rows.c.id == bindparam("b"), _rows.c.n == 7), engine
    )
    with writer.transaction() as cur:
        assert cur.first(lookup, {"b": "hot"}) == (7,)
        assert cur.first(lookup, {"b": "nobody"}) is None
    writer.close()
    engine.dispose()


def test_a_failed_transaction_leaves_nothing_and_raises_sqlalchemy_errors(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    _meta.create_all(engine)
    writer = HotWriter(engine)
    stmt = HotStatement(insert(_rows), engine)
    values = {"at": datetime.now(UTC), "flag": False, "blob": b"x", "n": 1}
    with pytest.raises(RuntimeError), writer.transaction() as cur:
        cur.execute(stmt, {"id": "a", **values})
        raise RuntimeError("the caller's own check failed")
    with pytest.raises(IntegrityError), writer.transaction() as cur:
        cur.execute(stmt, {"id": "b", **values})
        cur.execute(stmt, {"id": "b", **values})  # the primary key again
    with writer.transaction() as cur:  # the writer goes on after both
        cur.execute(stmt, {"id": "c", **values})
    with engine.connect() as conn:
        assert [r.id for r in conn.execute(select(_rows.c.id))] == ["c"]
    writer.close()
    engine.dispose()
