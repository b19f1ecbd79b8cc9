"""What ``qldm serve`` and ``qldm keys create`` run.

Both read the same :class:`qldm.service.settings.Settings` (``QLDM_*`` variables), so a key created
with ``qldm keys create`` lives in the database ``qldm serve`` uses.
"""

from __future__ import annotations

import logging

from qldm.service.settings import Settings, UnsafeSettingsError, get_settings

__all__ = ["create_key", "serve"]


def serve(*, host: str, port: int, settings: Settings | None = None) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM.

    Args:
        host: address to bind (auth is on beyond loopback unless ``QLDM_AUTH`` says else).
        port: TCP port.
        settings: the settings; ``None`` reads them from the environment.

    Raises:
        SystemExit: the settings are unsafe, or another server holds the SQLite database (the
            reason is printed).
    """
    import uvicorn

    from qldm.service.app import create_app
    from qldm.service.dblock import DatabaseInUseError, hold_sqlite, release

    base = settings or get_settings()
    settings = base.model_copy(update={"host": host, "port": port})
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
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=10,
        server_header=False,
    )


def create_key(tenant: str, *, settings: Settings | None = None) -> str:
    """Create an API key for ``tenant`` in the server's database and return it.

    Args:
        tenant: the tenant the key authenticates as.
        settings: the settings; ``None`` reads them from the environment.

    Returns:
        The key (``qldm_...``); only its hash is stored, so it cannot be shown again.
    """
    from qldm.jobs.store import JobStore

    settings = settings or get_settings()
    if settings.database_url is None:
        settings.data_dir.expanduser().mkdir(parents=True, exist_ok=True)
    store = JobStore(settings.resolved_database_url)
    try:
        store.migrate()
        return store.create_api_key(tenant=tenant)
    finally:
        store.close()
