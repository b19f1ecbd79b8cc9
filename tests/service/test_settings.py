"""Settings: environment variables, the auth rule, and unsafe defaults refused at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from qldm.service.settings import Settings, UnsafeSettingsError, get_settings


def test_env_prefix_and_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("QLDM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("QLDM_WORKERS", "3")
    monkeypatch.setenv("QLDM_IBM_TOKEN", "secret-token")
    settings = Settings()
    assert settings.workers == 3
    assert settings.resolved_database_url == f"sqlite:///{tmp_path}/qldm.sqlite3"
    assert "secret-token" not in repr(settings)
    assert "secret-token" not in settings.model_dump_json()
    assert settings.ibm_options() == {"token": "secret-token"}


def test_get_settings_is_cached() -> None:
    get_settings.cache_clear()
    assert get_settings() is get_settings()
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("host", "auth", "enabled"),
    [
        ("127.0.0.1", "auto", False),
        ("::1", "auto", False),
        ("localhost", "auto", False),
        ("0.0.0.0", "auto", True),
        ("10.1.2.3", "auto", True),
        ("127.0.0.1", "on", True),
        ("127.0.0.1", "off", False),
    ],
)
def test_auth_is_on_beyond_loopback(host: str, auth: str, enabled: bool) -> None:
    settings = Settings(host=host, auth=auth)  # type: ignore[arg-type]
    assert settings.auth_enabled is enabled
    settings.check_safe()


def test_open_bind_without_auth_is_refused() -> None:
    with pytest.raises(UnsafeSettingsError) as info:
        Settings(host="0.0.0.0", auth="off").check_safe()
    assert info.value.field == "auth"


def test_unknown_settings_are_errors() -> None:
    with pytest.raises(ValueError):
        Settings(executor="threads")  # type: ignore[arg-type]


def test_serve_refuses_to_start_unsafely(tmp_path: Path) -> None:
    from qldm.service.server import serve

    settings = Settings(auth="off", data_dir=tmp_path)
    with pytest.raises(SystemExit, match="auth off"):
        serve(host="0.0.0.0", port=0, settings=settings)
    assert not (tmp_path / "qldm.sqlite3").exists()  # refused before anything was created


def test_keys_create_uses_the_server_database(tmp_path: Path) -> None:
    from qldm.jobs.store import JobStore
    from qldm.service.server import create_key

    settings = Settings(data_dir=tmp_path)
    key = create_key("alice", settings=settings)
    store = JobStore(settings.resolved_database_url)
    try:
        assert store.authenticate(key) == "alice"
        assert store.authenticate(key + "x") is None
    finally:
        store.close()


def test_one_default_data_folder_and_one_database_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without QLDM_DATA_DIR: ``$XDG_DATA_HOME/qldm`` everywhere, ``qldm.sqlite3`` in it."""
    from qldm.jobs.store import default_database_url
    from qldm.paths import DATABASE_FILE, default_data_dir, sqlite_url
    from qldm.service.embedded import EmbeddedServer

    monkeypatch.delenv("QLDM_DATA_DIR", raising=False)
    monkeypatch.delenv("QLDM_DATABASE_URL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / "qldm"
    settings = Settings()
    assert settings.data_dir == tmp_path / "qldm"
    assert DATABASE_FILE == "qldm.sqlite3"
    url = f"sqlite:///{tmp_path}/qldm/qldm.sqlite3"
    assert settings.resolved_database_url == url == sqlite_url(settings.data_dir)
    assert EmbeddedServer(settings.data_dir).database_url == url
    assert default_database_url(settings.data_dir) == url
    assert settings.runtime_config().data_dir == tmp_path / "qldm"


def test_data_dir_expands_the_home_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QLDM_DATA_DIR", "~/qldm-state")
    assert Settings().data_dir == Path.home() / "qldm-state"


def test_runtime_config_carries_the_data_folder_and_the_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the server's workers hand every runtime backend (they read no environment)."""
    monkeypatch.setenv("QLDM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("QLDM_IBM_TOKEN", "secret-token")
    monkeypatch.setenv("QLDM_IBM_INSTANCE", "hub/group/project")
    config = Settings().runtime_config()
    assert config.data_dir == tmp_path
    assert (config.token, config.channel, config.instance) == (
        "secret-token",
        None,
        "hub/group/project",
    )
    assert "secret-token" not in repr(config) and "hub/group" not in repr(config)
    assert config.options_for("fake:manila")["data_dir"] == tmp_path
    assert config.options_for("ibm:ibm_brisbane")["token"] == "secret-token"
    assert config.options_for("aer:manila")["data_dir"] == tmp_path
    assert config.options_for("exact") == config.options_for("aer") == {}
    hash(config)  # workers keep one backend per (name, config)


def test_ibm_service_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from qldm.backends.runtime import ibm_service
    from qldm.errors import BackendError

    monkeypatch.setenv("QLDM_IBM_TOKEN", "secret-token")
    with pytest.raises(BackendError, match="QLDM_IBM_TOKEN"):
        ibm_service()


def test_empty_ibm_credentials_are_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """docker-compose passes ``${QLDM_IBM_TOKEN:-}`` through as an empty string."""
    monkeypatch.setenv("QLDM_IBM_TOKEN", "")
    monkeypatch.setenv("QLDM_RAY_ADDRESS", " ")
    settings = Settings()
    assert settings.ibm_token is None and settings.ray_address is None
    assert settings.ibm_options() == {}
