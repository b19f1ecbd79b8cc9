"""The settings: one typed ``pydantic-settings`` class read from ``QLDM_*`` variables.

Every setting has an environment variable named ``QLDM_`` + its upper-case name
(``QLDM_DATABASE_URL``, ``QLDM_EXECUTOR``, ...). This is the one place qldm reads them: the
edges (``qldm serve``, ``qldm keys``, ``qldm train``/``evaluate``/``demo``) call
:func:`get_settings` once and pass the values down; nothing below reads the environment.
``service.app.create_app(settings)`` takes them as an argument (tests pass their own) and its
routes get them through a dependency on the app, never from an import-time global. The
server's workers get the data folder and the IBM credentials as a
:class:`qldm.backends.runtime.RuntimeConfig` (:meth:`Settings.runtime_config`) with each job.

Defaults are safe for a laptop: SQLite in the data directory, a local process pool, auth on
whenever the server binds beyond loopback. :meth:`Settings.check_safe` refuses the unsafe
combinations at start-up.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from qldm.errors import QldmError
from qldm.paths import default_data_dir, sqlite_url

if TYPE_CHECKING:
    from qldm.backends.runtime import RuntimeConfig

__all__ = ["Settings", "UnsafeSettingsError", "get_settings"]


class UnsafeSettingsError(QldmError, ValueError):
    """A combination of settings the server refuses to start with."""

    code = "unsafe_settings"


class Settings(BaseSettings):
    """Server settings.

    Attributes:
        host: address the server binds (``qldm serve --host`` sets it).
        port: TCP port.
        data_dir: the data folder: the SQLite database, cached runtime results, M3
            calibrations, data sets and the metrics' classifier (default
            :func:`qldm.paths.default_data_dir`: ``$XDG_DATA_HOME/qldm``, else
            ``~/.local/share/qldm``).
        database_url: SQLAlchemy URL; ``None`` means SQLite at ``data_dir/qldm.sqlite3``.
        executor: ``local`` (a process pool in the server) or ``ray`` (a Ray cluster).
        ray_address: Ray address for ``executor="ray"``; ``None`` starts a local Ray instance.
        workers: worker processes of the local executor.
        auth: ``auto`` (on whenever ``host`` is not loopback), ``on`` or ``off``.
        max_body_bytes: largest request body accepted (413 beyond it).
        max_batch: most samples ``B`` one job may carry (400 beyond it).
        max_shots: most shots per circuit one job may ask for (400 beyond it).
        max_wait_s: longest wait the server holds (``GET /v1/jobs/{id}/result?wait=``, and
            ``POST /v1/jobs`` with ``Prefer: wait``).
        idempotency: honour the ``Idempotency-Key`` header of ``POST /v1/jobs``.
        result_ttl_s: keep a finished job's result this many seconds (``None``: no age
            limit); the job itself stays, and its pruned result is a 410 ``result_expired``.
        max_results: keep at most this many results, the newest (``None``: no count limit).
        max_active_jobs_per_tenant: most jobs one tenant may have queued or running; a submit
            beyond it is a 429 ``too_many_jobs`` with ``Retry-After`` (``None``: no limit).
        max_running_per_tenant: most jobs of one tenant that run at once, so that other
            tenants' jobs start while it has more queued (``None``: as many as there are
            workers; set ``workers - 1`` to always keep a worker for the other tenants).
        retry_after_s: the ``Retry-After`` of a 429 answer, in seconds.
        ibm_token: IBM Quantum token for ``ibm:`` backends; never logged nor returned.
        ibm_channel: IBM Quantum channel (``ibm_quantum_platform``, ``ibm_cloud``).
        ibm_instance: IBM Quantum instance (CRN or hub/group/project).
        calibration_max_age_min: runtime backends (``ibm:``) fetch the device's properties and
            target again when their last fetch is older than this many minutes.
        log_level: uvicorn's log level.
    """

    model_config = SettingsConfigDict(env_prefix="QLDM_", extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    workers: int = Field(default=2, ge=1, le=256)
    auth: Literal["auto", "on", "off"] = "auto"
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_batch: int = Field(default=4096, ge=1)
    max_shots: int = Field(default=1_000_000, ge=1)
    max_wait_s: float = Field(default=60.0, ge=0.0, le=3600.0)
    idempotency: bool = True
    result_ttl_s: float | None = Field(default=86_400.0, ge=0.0)
    max_results: int | None = Field(default=1000, ge=0)
    max_active_jobs_per_tenant: int | None = Field(default=1000, ge=1)
    max_running_per_tenant: int | None = Field(default=None, ge=1)
    retry_after_s: int = Field(default=1, ge=1, le=3600)
    ibm_token: SecretStr | None = None
    ibm_channel: SecretStr | None = None
    ibm_instance: SecretStr | None = None
    calibration_max_age_min: float = Field(default=30.0, gt=0.0, le=10_080.0, allow_inf_nan=False)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    @field_validator("data_dir")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator(
        "ibm_token",
        "ibm_channel",
        "ibm_instance",
        "ray_address",
        "result_ttl_s",
        "max_results",
        "max_active_jobs_per_tenant",
        "max_running_per_tenant",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # docker-compose passes unset variables through as empty strings
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def resolved_database_url(self) -> str:
        """``database_url``, or SQLite in ``data_dir`` when it is unset."""
        if self.database_url:
            return self.database_url
        return sqlite_url(self.data_dir)

    @property
    def result_ttl(self) -> timedelta | None:
        """``result_ttl_s`` as a duration (``None``: results are kept whatever their age)."""
        return None if self.result_ttl_s is None else timedelta(seconds=self.result_ttl_s)

    @property
    def loopback_only(self) -> bool:
        """Whether ``host`` is a loopback address (``127.0.0.0/8``, ``::1``, ``localhost``)."""
        return is_loopback(self.host)

    @property
    def auth_enabled(self) -> bool:
        """Whether requests need an API key (``auto``: on beyond loopback)."""
        if self.auth == "auto":
            return not self.loopback_only
        return self.auth == "on"

    def check_safe(self) -> None:
        """Refuse settings that would expose the server.

        Raises:
            UnsafeSettingsError: auth ``off`` on a non-loopback bind (``field="auth"``), or a
                ``ray_address`` without ``executor="ray"`` (``field="ray_address"``).
        """
        if self.auth == "off" and not self.loopback_only:
            raise UnsafeSettingsError(
                f"refusing to serve on {self.host!r} with auth off: anyone who can reach the "
                "port could run jobs; set QLDM_AUTH=on (or auto) and create a key with "
                "`qldm keys create --tenant NAME`, or bind 127.0.0.1",
                field="auth",
            )
        if self.ray_address and self.executor != "ray":
            raise UnsafeSettingsError(
                "QLDM_RAY_ADDRESS is set but QLDM_EXECUTOR is not 'ray'", field="ray_address"
            )

    def ibm_options(self) -> dict[str, str]:
        """The IBM credentials as plain strings, for the runtime backend only (never logged)."""
        out: dict[str, str] = {}
        for name in ("ibm_token", "ibm_channel", "ibm_instance"):
            value = getattr(self, name)
            if value is not None:
                out[name.removeprefix("ibm_")] = value.get_secret_value()
        return out

    def runtime_config(self) -> RuntimeConfig:
        """What the server's workers give the runtime backends they build: the data folder, the
        IBM credentials (plain strings, left out of its ``repr``) and the calibration refresh
        age."""
        from qldm.backends.runtime import RuntimeConfig

        return RuntimeConfig(
            data_dir=self.data_dir,
            calibration_max_age_min=self.calibration_max_age_min,
            **self.ibm_options(),
        )


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only the loopback interface."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
