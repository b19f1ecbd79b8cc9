"""What ``qldm serve`` and ``qldm keys create|list|revoke`` run.

All of them take the same :class:`qldm.service.settings.Settings` (``QLDM_*`` variables, read
once by the CLI), so a key created, listed or revoked with ``qldm keys`` lives in the database
``qldm serve`` uses.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from qldm.errors import QldmError
from qldm.service.settings import Settings, UnsafeSettingsError

if TYPE_CHECKING:
    from datetime import timedelta

    from qldm.jobs.model import ApiKey
    from qldm.jobs.store import JobStore, PruneReport

__all__ = [
    "ApiKeyNotFoundError",
    "auth_note",
    "create_key",
    "list_keys",
    "prune",
    "quiet_third_party",
    "revoke_key",
    "serve",
]


class ApiKeyNotFoundError(QldmError, LookupError):
    """No API key has this id in the server's database."""

    code = "api_key_not_found"


def serve(*, settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM.

    Args:
        settings: the settings.
        host: address to bind (``None``: ``settings.host``; auth is on beyond loopback unless
            ``QLDM_AUTH`` says else).
        port: TCP port (``None``: ``settings.port``).

    Raises:
        SystemExit: the settings are unsafe, or another server holds the SQLite database (the
            reason is printed).
    """
    import uvicorn

    from qldm.service.app import create_app
    from qldm.service.dblock import DatabaseInUseError, hold_sqlite, release

    update = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = settings.model_copy(update=update)
    try:
        app = create_app(settings)
        # fail fast, before binding the port, when another server holds the SQLite file (the
        # server takes the lock itself when it starts)
        release(hold_sqlite(settings.resolved_database_url))
    except (UnsafeSettingsError, DatabaseInUseError) as exc:
        raise SystemExit(f"qldm serve: {exc}") from None
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    quiet_third_party(settings.log_level)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=10,
        server_header=False,
    )


@contextmanager
def _store(settings: Settings) -> Iterator[JobStore]:
    """The server's database, migrated, closed on leaving."""
    from qldm.jobs.store import JobStore

    if settings.database_url is None:
        settings.data_dir.expanduser().mkdir(parents=True, exist_ok=True)
    store = JobStore(settings.resolved_database_url)
    try:
        store.migrate()
        yield store
    finally:
        store.close()


def create_key(tenant: str, *, settings: Settings) -> str:
    """Create an API key for ``tenant`` in the server's database and return it.

    Args:
        tenant: the tenant the key authenticates as.
        settings: the settings (their database).

    Returns:
        The key (``qldm_...``); only its hash is stored, so it cannot be shown again.
    """
    with _store(settings) as store:
        return store.create_api_key(tenant=tenant)


def list_keys(*, settings: Settings, tenant: str | None = None) -> list[ApiKey]:
    """The API keys in the server's database, oldest first: ids, tenants, prefixes and dates
    (the keys themselves are not stored).

    Args:
        settings: the settings (their database).
        tenant: only this tenant's keys.
    """
    with _store(settings) as store:
        return store.list_api_keys(tenant=tenant)


def revoke_key(key_id: str, *, settings: Settings) -> tuple[ApiKey, bool]:
    """Revoke the API key ``key_id`` in the server's database.

    A running server refuses the key from its next look-up of it (servers remember a key's
    tenant for a few seconds).

    Args:
        key_id: the key's id (``qldm keys list``).
        settings: the settings (their database).

    Returns:
        The key as stored afterwards, and whether this call revoked it (``False``: it was
        revoked already).

    Raises:
        ApiKeyNotFoundError: no key has this id (``field="key_id"``).
    """
    with _store(settings) as store:
        revoked = store.revoke_api_key(key_id)
        key = store.api_key(key_id)
    if key is None:
        raise ApiKeyNotFoundError(
            f"no API key with id {key_id!r} in this database (`qldm keys list` shows the ids)",
            field="key_id",
        )
    return key, revoked


def prune(
    *,
    settings: Settings,
    older_than: timedelta | None,
    keep: int | None,
    vacuum: bool = True,
) -> tuple[PruneReport, str | None]:
    """Delete results beyond a retention from the server's database (the jobs stay).

    Args:
        settings: the settings (their database).
        older_than: delete results older than this (``None``: no age limit).
        keep: keep at most this many results, the newest (``None``: no count limit).
        vacuum: SQLite: give the freed space back to the file system afterwards.

    Returns:
        What was deleted and kept, and why the vacuum was skipped (``None`` when it ran or
        was not asked for).
    """
    from sqlalchemy.exc import OperationalError

    with _store(settings) as store:
        report = store.prune_results(older_than=older_than, keep=keep)
        if not vacuum:
            return report, None
        try:
            store.vacuum()
        except OperationalError as exc:  # a running server holds the file
            return report, f"vacuum skipped, the database is busy ({exc.orig})"
    return report, None


THIRD_PARTY_LOGGERS = ("alembic",)
"""Libraries whose INFO lines (Alembic: one per plugin and migration step at every start) are
shown only at ``QLDM_LOG_LEVEL=debug``."""


def quiet_third_party(log_level: str) -> None:
    """Raise :data:`THIRD_PARTY_LOGGERS` to WARNING unless ``log_level`` is ``debug``."""
    level = logging.DEBUG if log_level == "debug" else logging.WARNING
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(level)


def auth_note(settings: Settings) -> str | None:
    """Why a server with these settings would ignore API keys, or ``None`` when auth is on."""
    if settings.auth_enabled:
        return None
    if settings.auth == "off":
        why = "QLDM_AUTH=off"
    else:
        why = f"QLDM_AUTH=auto and QLDM_HOST={settings.host} is a loopback address"
    return (
        f"auth is off for these settings ({why}): a server run with them accepts every "
        "request without a key and ignores keys until auth is on (QLDM_AUTH=on, or auto with "
        "`qldm serve --host` beyond loopback)"
    )
