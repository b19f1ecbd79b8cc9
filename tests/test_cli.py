"""The ``qldm`` command line: settings read once at the edge, ``qldm keys create|list|revoke``
against the server's database (a real SQLite file), and a revoked key refused by a running
server."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from qldm.cli import app
from qldm.jobs.store import JobStore
from qldm.service.settings import Settings


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data folder that ``QLDM_DATA_DIR`` names; no other ``QLDM_*`` setting is set."""
    for name in [n for n in os.environ if n.startswith("QLDM_")]:
        monkeypatch.delenv(name)
    folder = tmp_path / "data"
    monkeypatch.setenv("QLDM_DATA_DIR", str(folder))
    yield folder


def qldm(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def _store(data_dir: Path) -> JobStore:
    return JobStore(f"sqlite:///{data_dir}/qldm.sqlite3")


def test_keys_create_prints_the_key_once_in_the_server_database(data_dir: Path) -> None:
    result = qldm("keys", "create", "--tenant", "bob")
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert key.startswith("qldm_") and len(result.stdout.splitlines()) == 1
    store = _store(data_dir)  # qldm.sqlite3 in QLDM_DATA_DIR: where `qldm serve` looks
    try:
        assert store.authenticate(key) == "bob"
    finally:
        store.close()


def test_keys_create_says_keys_are_ignored_while_auth_is_off(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loopback = qldm("keys", "create", "--tenant", "bob")  # auth auto on 127.0.0.1: off
    assert loopback.exit_code == 0, loopback.output
    assert "ignores keys until auth is on" in loopback.stderr
    assert "QLDM_AUTH=auto" in loopback.stderr and "127.0.0.1" in loopback.stderr
    assert "ignores keys" not in loopback.stdout  # stdout is the key alone, for scripts

    monkeypatch.setenv("QLDM_AUTH", "off")
    off = qldm("keys", "create", "--tenant", "bob")
    assert "QLDM_AUTH=off" in off.stderr and "ignores keys" in off.stderr

    for env in ({"QLDM_AUTH": "on"}, {"QLDM_AUTH": "auto", "QLDM_HOST": "0.0.0.0"}):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        on = qldm("keys", "create", "--tenant", "bob")
        assert on.exit_code == 0 and on.stderr == "", (env, on.stderr)


def test_keys_list_shows_ids_tenants_prefixes_and_dates_never_the_key(data_dir: Path) -> None:
    empty = qldm("keys", "list")
    assert empty.exit_code == 0 and empty.stdout.strip() == "no API keys"
    alice = qldm("keys", "create", "--tenant", "alice").stdout.strip()
    bob = qldm("keys", "create", "--tenant", "bob").stdout.strip()

    listed = qldm("keys", "list")
    assert listed.exit_code == 0, listed.output
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["ID", "TENANT", "PREFIX", "CREATED", "REVOKED"]
    assert [row.split()[1] for row in rows] == ["alice", "bob"]  # oldest first
    for key, row in zip((alice, bob), rows, strict=True):
        assert key not in listed.stdout
        assert row.split()[2] == key[:13] + "..."  # qldm_ and 8 characters
        assert row.split()[-1] == "-"  # not revoked
    store = _store(data_dir)
    try:
        ids = [k.id for k in store.list_api_keys()]
    finally:
        store.close()
    assert [row.split()[0] for row in rows] == ids

    only_bob = qldm("keys", "list", "--tenant", "bob").stdout.splitlines()
    assert len(only_bob) == 2 and only_bob[1].split()[1] == "bob"
    assert qldm("keys", "list", "--tenant", "carol").stdout.strip() == (
        "no API keys for tenant 'carol'"
    )


def test_keys_revoke_refuses_the_key_and_explains_unknown_ids(data_dir: Path) -> None:
    key = qldm("keys", "create", "--tenant", "alice").stdout.strip()
    store = _store(data_dir)
    try:
        (info,) = store.list_api_keys()
        revoked = qldm("keys", "revoke", info.id)
        assert revoked.exit_code == 0, revoked.output
        assert f"revoked key {info.id} of tenant 'alice'" in revoked.stdout
        assert store.authenticate(key) is None
        assert store.api_key(info.id).revoked_at is not None  # type: ignore[union-attr]
    finally:
        store.close()

    row = qldm("keys", "list").stdout.splitlines()[1]
    assert row.split()[-1] == "UTC"  # a revocation time, not "-"

    again = qldm("keys", "revoke", info.id)
    assert again.exit_code == 0 and "already revoked" in again.stdout

    unknown = qldm("keys", "revoke", "0" * 32)
    assert unknown.exit_code == 1
    assert f"no API key with id {'0' * 32!r}" in unknown.stderr
    assert "qldm keys list" in unknown.stderr


def test_invalid_settings_exit_with_the_reason(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QLDM_WORKERS", "lots")
    result = qldm("keys", "list")
    assert result.exit_code == 2
    assert "invalid QLDM_* settings" in result.stderr and "workers" in result.stderr


def test_serve_help_names_the_data_folder_and_every_setting() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"], terminal_width=120)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "data folder" in text and "~/.local/share/qldm" in text and "qldm.sqlite3" in text
    assert "docs/deploy.md" in text
    missing = [
        f"QLDM_{name.upper()}"
        for name in Settings.model_fields
        if f"QLDM_{name.upper()}" not in text
    ]
    assert not missing, missing


def test_deploy_docs_list_every_setting() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "deploy.md").read_text()
    missing = [
        f"QLDM_{name.upper()}"
        for name in Settings.model_fields
        if f"`QLDM_{name.upper()}`" not in text
    ]
    assert not missing, missing


def test_serve_takes_host_and_port_from_the_settings(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``QLDM_HOST`` counts when ``--host`` is not given (here: refused, as auth is off)."""
    monkeypatch.setenv("QLDM_HOST", "0.0.0.0")
    monkeypatch.setenv("QLDM_AUTH", "off")
    result = qldm("serve")
    assert result.exit_code != 0
    assert "refusing to serve on '0.0.0.0' with auth off" in str(result.exception)
    assert not (data_dir / "qldm.sqlite3").exists()


def test_a_revoked_key_is_refused_by_a_running_server(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qldm.service.embedded import EmbeddedServer

    monkeypatch.setenv("QLDM_AUTH", "on")  # what `qldm keys` reads: no note about auth
    created = qldm("keys", "create", "--tenant", "alice")
    assert created.exit_code == 0 and created.stderr == "", created.output
    key = created.stdout.strip()
    (key_id,) = [row.split()[0] for row in qldm("keys", "list").stdout.splitlines()[1:]]
    # the server's data folder is the one the CLI used: the same qldm.sqlite3
    with EmbeddedServer(data_dir, workers=1, env={"QLDM_AUTH": "on"}) as server:
        url = f"{server.url}/v1/jobs"
        headers = {"Authorization": f"Bearer {key}"}
        assert httpx.get(url, timeout=30).status_code == 401  # auth is on
        assert httpx.get(url, headers=headers, timeout=30).status_code == 200

        assert qldm("keys", "revoke", key_id).exit_code == 0
        deadline = time.monotonic() + 30  # servers remember a key's tenant for a few seconds
        while True:
            response = httpx.get(url, headers=headers, timeout=30)
            if response.status_code != 200 or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        assert response.status_code == 401, server.tail()
        assert response.json()["error"]["code"] == "unauthorized"
        assert "revoked" in response.json()["error"]["message"]
