"""One server per SQLite database.

SQLite has no ``FOR UPDATE SKIP LOCKED`` and no heartbeats between servers: a server recovers
every ``running`` job on start, so a second server on the same file would re-run the first
one's jobs. :func:`hold_sqlite` takes an exclusive ``flock`` on ``<database>.server.lock`` for
the server's lifetime and refuses a second server with a clear error. The kernel drops the lock
when the process dies, however it dies (SIGKILL included), so a restart never finds a stale
lock. PostgreSQL needs none of this: replicas share it by design.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO

from sqlalchemy.engine import make_url

from qldm.errors import QldmError

__all__ = ["DatabaseInUseError", "hold_sqlite", "release"]


class DatabaseInUseError(QldmError):
    """Another qldm server already serves this SQLite database."""

    code = "database_in_use"


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return None
    return Path(database).expanduser().resolve()


def hold_sqlite(url: str) -> IO[str] | None:
    """Lock a SQLite database for this server process.

    Args:
        url: the server's database URL.

    Returns:
        The open lock file (keep it open: closing it releases the lock), or ``None`` for a
        database that is not a SQLite file.

    Raises:
        DatabaseInUseError: another live server holds the database (the message names its pid).
    """
    import fcntl

    path = _sqlite_file(url)
    if path is None:
        return None
    lock_path = path.with_name(path.name + ".server.lock")
    handle = open(lock_path, "a+")  # noqa: SIM115 - held open for the server's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise DatabaseInUseError(
            f"another qldm server (pid {holder}) serves the SQLite database {path}: SQLite takes "
            "one server; stop it, give this one its own QLDM_DATA_DIR, or share a PostgreSQL "
            "database (QLDM_DATABASE_URL) between replicas",
            field="database_url",
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def release(handle: IO[str] | None) -> None:
    """Release a lock from :func:`hold_sqlite` (``None``: nothing to do)."""
    if handle is not None:
        with contextlib.suppress(OSError):
            handle.close()
