"""The end-to-end cases again with ``QLDM_EXECUTOR=ray`` (a local Ray instance started by the
server): many concurrent clients, and SIGKILL plus restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.service.conftest import Databases, Deployment
from tests.service.test_e2e_jobs import run_many
from tests.service.test_e2e_restart import kill_and_restart

pytest.importorskip("ray")

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_many_concurrent_clients_on_ray(ray_deployment: Deployment) -> None:
    run_many(ray_deployment)


def test_sigkill_and_restart_on_ray(databases: Databases, tmp_path: Path) -> None:
    kill_and_restart(databases, "sqlite", tmp_path, QLDM_EXECUTOR="ray")
