"""SQLite: the writes on every job's path (submit, complete), run on one DBAPI connection.

SQLite takes one write transaction at a time anyway, so these two run on a connection of the
store's own, under a lock, and skip SQLAlchemy's execution of a transaction (pool checkout,
``BEGIN IMMEDIATE`` through an event, execution contexts, result objects, the reset on return
to the pool). Measured side by side (``qldm bench service --against``, 150 B = 128 Jacobian jobs
per tree and run), the same writes through SQLAlchemy Core made the server add 1.0, 1.9 and
2.4 ms more per job (p50). PostgreSQL's writes go through SQLAlchemy's pool instead: there a
lock and one connection would make one replica's clients wait for each other.

- the statements are still SQLAlchemy Core statements, compiled once for the engine's dialect
  (SQL text, parameter order, the columns' bind processors: datetimes as SQLite stores them);
- a file database gets one connection of its own, taken from the engine (so it has the
  engine's connect-time settings: WAL, busy timeout, foreign keys) and detached from the pool;
  an in-memory database (tests) uses the pool's single connection instead;
- DBAPI errors are raised as SQLAlchemy's exception classes (``IntegrityError``, ...), so
  callers catch what they would catch from Core; after any error but an integrity error the
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
    """Write transactions on a DBAPI cursor of a SQLite database, for :class:`HotStatement`s.

    Args:
        engine: the store's engine (SQLite).

    Raises:
        ValueError: the engine is not SQLite's.
    """

    def __init__(self, engine: Engine) -> None:
        if engine.dialect.name != "sqlite":
            raise ValueError("HotWriter is for SQLite; other databases use the pool")
        self._engine = engine
        self._own = engine.url.database not in (None, "", ":memory:")
        self._lock = threading.Lock()
        self._conn: Any = None  # our own DBAPI connection (taken from the pool, detached)
        self._dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._integrity: type[Exception] = engine.dialect.loaded_dbapi.IntegrityError

    @contextmanager
    def transaction(self) -> Iterator[HotCursor]:
        """One ``BEGIN IMMEDIATE`` transaction: committed when the block ends, rolled back
        when it raises.

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
                cursor.execute("BEGIN IMMEDIATE")
                yield HotCursor(cursor)
                cursor.execute("COMMIT")
            except BaseException as exc:
                # a database error (an integrity error aside) may have broken the connection
                database = isinstance(exc, self._dbapi_error)
                broken = not _rollback(raw, cursor) or (
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
                    self._close_connection()

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already gone
                conn.close()

    def close(self) -> None:
        """Close the connection (for the store's ``close``)."""
        with self._lock:
            self._close_connection()


def _rollback(raw: Any, cursor: Any) -> bool:
    """Roll the open transaction back; whether that worked."""
    try:
        if raw.in_transaction:
            cursor.execute("ROLLBACK")
    except Exception:
        return False
    return True


class HotCursor:
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
