"""End to end: the server is killed with SIGKILL while jobs run, restarted on the same
database, and every job still ends succeeded exactly once with the right numbers."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from qldm.client.service_client import ServiceClient
from qldm.jobs.model import JobStatus
from qldm.jobs.store import JobStore
from qldm.service.server import create_key
from tests.service.conftest import Databases, Server
from tests.service.helpers import HTTP, reference, tiny_request

N_JOBS = 10


def kill_and_restart(databases: Databases, kind: str, root: Path, **env: str) -> None:
    server = Server(databases.new(kind), root, QLDM_AUTH="on", **env)
    key = create_key("carol", settings=server.settings())
    # many one-sample chunks: each job runs for a while, so some are mid-way at the kill
    requests = [
        tiny_request(500 + i, batch=16, task="jacobian", options={"chunk_size": 1})
        for i in range(N_JOBS)
    ]
    server.start()
    try:
        with ServiceClient(server.url, api_key=key) as client:
            ids = [
                client.submit(r, idempotency_key=f"job-{i}")["id"] for i, r in enumerate(requests)
            ]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                states = [client.get(i)["status"] for i in ids]
                if "running" in states and "succeeded" in states:
                    break
                time.sleep(0.05)
        # kill the server and its workers at once (no shutdown code runs), then read the
        # states they left behind. Read after the kill, not before: a SQLite commit that was
        # durable in the WAL but not yet visible to other readers counts, as it will for the
        # restarted server.
        server.kill()
        store = JobStore(server.database_url)
        at_kill = {j.id: j for j in store.list(tenant="carol", limit=1000)[0]}
        store.close()
        running_at_kill = {i for i, j in at_kill.items() if j.status is JobStatus.RUNNING}
        assert running_at_kill, at_kill
        assert any(j.status is JobStatus.SUCCEEDED for j in at_kill.values()), at_kill

        server.start()
        with ServiceClient(server.url, api_key=key, retries=5) as client:
            # a client that retries its submit after the crash gets the same job back
            again = client.submit(requests[0], idempotency_key="job-0")
            assert again["id"] == ids[0]
            for i, job_id in enumerate(ids):
                result = client.wait(job_id, timeout=120)
                ref = reference(requests[i])
                np.testing.assert_allclose(result.values, ref.values, atol=1e-10)
                np.testing.assert_allclose(result.d_weights, ref.d_weights, atol=1e-10)
            listed = client.list_jobs(limit=1000)
        assert listed["count"] == N_JOBS
        jobs = {j["id"]: j for j in listed["data"]}
        assert all(j["status"] == "succeeded" for j in jobs.values())
        for job_id, job in jobs.items():
            # a job interrupted by the kill ran again once; the others ran exactly once
            assert job["attempts"] == (2 if job_id in running_at_kill else 1), job
        metrics = HTTP.get(f"{server.url}/metrics").text
        assert 'qldm_jobs{state="running"} 0.0' in metrics
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_sigkill_and_restart(databases: Databases, tmp_path: Path, kind: str) -> None:
    kill_and_restart(databases, kind, tmp_path)


@pytest.mark.slow
@pytest.mark.ray
def test_sigkill_and_restart_on_postgres_with_ray(databases: Databases, tmp_path: Path) -> None:
    """Item 9: on PostgreSQL with the Ray executor the restarted server must keep its Ray
    instance and finish every recovered job once (the same checks as above)."""
    pytest.importorskip("ray")
    kill_and_restart(databases, "postgres", tmp_path, QLDM_EXECUTOR="ray")
