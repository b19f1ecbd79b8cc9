"""The writes on every job's path (submit, complete), run on one DBAPI connection.

Measured on the reference job, a server that sat idle while its worker computed runs its
Python code with cold caches, at 3-4 times its cost in a tight loop. There SQLAlchemy's
execution of a transaction (pool checkout, ``BEGIN`` through an event, execution contexts,
result objects, the reset on return to the pool) cost about 0.5 ms over the same statements on
a DBAPI cursor, for each of the two transactions a job needs. So these two run on a cursor:

- the statements are still SQLAlchemy Core statements, compiled once for the engine's dialect
  (SQL text, parameter order, the columns' bind processors: datetimes as SQLite stores them);
- a file SQLite database or PostgreSQL gets one connection of its own, taken from the engine
  (so it has the engine's connect-time settings: WAL, busy timeout, foreign keys) and
  detached from the pool, used under a lock (SQLite writes one transaction at a time anyway;
  on PostgreSQL this serializes one replica's submits and completes with each other). An
  in-memory SQLite database (tests) uses the pool's single connection instead;
- DBAPI errors are raised as SQLAlchemy's exception classes (``IntegrityError``, ...), so
  callers catch what they caught before; after any error but an integrity error the
  connection is dropped and the next transaction opens a fresh one.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

__all__ = ["HotStatement", "HotWriter"]


class HotStatement:
    """A Core statement compiled for one dialect, with its parameters built by hand.

    Args:
        statement: an ``insert``/``update``/``select`` whose parameters are all named
            ``bindparam``s or literals.
        engine: the engine whose dialect it is compiled for.
    """

    def __init__(self, statement: ClauseElement, engine: Engine) -> None:
        dialect = engine.dialect
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        self.sql: str = compiled.string
        self._compiled = compiled
        self._order: list[str] | None = (
            list(compiled.positiontup or []) if compiled.positional else None
        )
        escaped = getattr(compiled, "escaped_bind_names", None) or {}
        self._processors: dict[str, Any] = {}
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self._processors[escaped.get(name, name)] = processor

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """The DBAPI parameters for ``values`` (by bind name), literals included."""
        params: dict[str, Any] = dict(self._compiled.construct_params(dict(values)) or {})
        for name, processor in self._processors.items():
            value = params.get(name)
            if value is not None:
                params[name] = processor(value)
        if self._order is not None:
            return tuple(params[name] for name in self._order)
        return params


class HotWriter:
    """Write transactions on a DBAPI cursor, for :class:`HotStatement`s.

    Args:
        engine: the store's engine.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        database = engine.url.database
        self._own = not (self._sqlite and database in (None, "", ":memory:"))
        self._lock = threading.Lock()
        self._conn: Any = None  # our own DBAPI connection (taken from the pool, detached)
        self._dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._integrity: type[Exception] = engine.dialect.loaded_dbapi.IntegrityError

    def statement(self, statement: ClauseElement) -> HotStatement:
        """``statement`` compiled for this writer's database."""
        return HotStatement(statement, self._engine)

    @contextmanager
    def transaction(self) -> Iterator[_Cursor]:
        """One write transaction (SQLite: ``BEGIN IMMEDIATE``): committed when the block
        ends, rolled back when it raises.

        Raises:
            sqlalchemy.exc.DBAPIError: a database error, as its SQLAlchemy subclass.
        """
        with self._lock:
            fairy: Any = None
            raw: Any = self._conn if self._own else None
            if raw is None:
                fairy = self._engine.raw_connection()
                raw = fairy.driver_connection
                if self._own:
                    fairy.detach()  # ours now: the pool neither resets nor shares it
                    self._conn, fairy = raw, None
            cursor = raw.cursor()
            broken = False
            try:
                if self._sqlite:
                    cursor.execute("BEGIN IMMEDIATE")
                yield _Cursor(cursor)
                if self._sqlite:
                    cursor.execute("COMMIT")
                else:
                    raw.commit()
            except BaseException as exc:
                # a database error (an integrity error aside) may have broken the connection
                database = isinstance(exc, self._dbapi_error)
                broken = not self._rollback(raw, cursor) or (
                    database and not isinstance(exc, self._integrity)
                )
                if database:
                    raise sa_exc.DBAPIError.instance(
                        None, None, exc, self._dbapi_error, connection_invalidated=broken
                    ) from exc
                raise
            finally:
                with contextlib.suppress(Exception):
                    cursor.close()
                if fairy is not None:
                    fairy.close()  # back to the pool
                elif broken:
                    self.close_connection()

    def _rollback(self, raw: Any, cursor: Any) -> bool:
        """Roll the open transaction back; whether that worked."""
        try:
            if not self._sqlite:
                raw.rollback()
            elif raw.in_transaction:
                cursor.execute("ROLLBACK")
        except Exception:
            return False
        return True

    def close_connection(self) -> None:
        """Close this writer's own connection (a later transaction opens a fresh one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already gone
                conn.close()

    def close(self) -> None:
        """Close the connection (for the store's ``close``)."""
        with self._lock:
            self.close_connection()


class _Cursor:
    """A DBAPI cursor that takes :class:`HotStatement`s."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, statement: HotStatement, values: Mapping[str, Any]) -> int:
        """Run ``statement`` with ``values``; the rows it changed."""
        self._cursor.execute(statement.sql, statement.parameters(values))
        return int(self._cursor.rowcount)

    def first(self, statement: HotStatement, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """Run a ``select``; its first row, or ``None``."""
        self._cursor.execute(statement.sql, statement.parameters(values))
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)
