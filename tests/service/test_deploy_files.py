"""The Dockerfile and docker-compose.yml only set settings the server reads."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from qldm.service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {f"QLDM_{name.upper()}" for name in Settings.model_fields}


def test_compose_sets_only_known_settings_and_wires_the_services() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "ray-head", "ray-worker", "api"} <= services.keys()
    env = services["api"]["environment"]
    unknown = {key for key in env if key.startswith("QLDM_")} - FIELDS
    assert not unknown, f"compose sets settings the server does not read: {unknown}"
    assert env["QLDM_EXECUTOR"] == "ray"
    assert env["QLDM_RAY_ADDRESS"].startswith("ray://ray-head:")
    assert env["QLDM_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in env["QLDM_DATABASE_URL"]
    # the Ray client port the API uses is the one the head opens
    port = env["QLDM_RAY_ADDRESS"].rsplit(":", 1)[1]
    assert f"--ray-client-server-port={port}" in services["ray-head"]["command"]


def test_dockerfile_sets_only_known_settings_and_serves() -> None:
    text = (ROOT / "Dockerfile").read_text()
    names = set(re.findall(r"\b(QLDM_[A-Z_]+)=", text))
    assert names and names <= FIELDS, names - FIELDS
    assert "qldm serve" in text
    packages = ("qldm", "circuits", "mitigation", "backends", "jobs", "service", "client")
    for package in (*packages, "hybrid", "bench"):
        assert f"COPY {package} ./{package}" in text
