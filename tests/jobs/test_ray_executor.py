"""The Ray executor against a real local Ray instance (one start for the module, ~10 s)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import pytest

from qldm.jobs.dispatcher import Dispatcher
from qldm.jobs.model import Job, JobRequest, JobStatus
from qldm.jobs.runner import chunk_bounds
from qldm.jobs.store import JobStore
from tests.jobs.conftest import ry_request

pytestmark = pytest.mark.ray

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_executor() -> Iterator[object]:
    from qldm.jobs.executors.ray import RayExecutor

    # One local Ray for the module (reused if another test module already started one).
    ex = RayExecutor(num_cpus=2, init_kwargs={"include_dashboard": False})
    yield ex
    ex.shutdown()


def _wait_terminal(store: JobStore, job: Job, timeout: float = 120.0) -> Job:
    deadline = time.monotonic() + timeout
    while not store.job(job.id).terminal:
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job.id} still {store.job(job.id).status}")
        time.sleep(0.01)
    return store.job(job.id)


def test_ray_runs_a_chunked_job_as_several_tasks_and_gathers_in_order(
    sqlite_url: str, ray_executor: object
) -> None:
    from qldm.jobs.executors.ray import RayExecutor

    assert isinstance(ray_executor, RayExecutor)
    store = JobStore(sqlite_url)
    store.migrate()
    xs = np.linspace(-math.pi, math.pi, 23).tolist()
    # Expectation only: a Jacobian would make each fresh Ray worker load torch.func (seconds);
    # chunked Jacobians are gathered by the same code (tests/jobs/test_dispatcher.py).
    chunked = ry_request(xs, 0.35, options={"chunk_size": 5})
    single = ry_request(xs[:3], -1.2)
    assert len(chunk_bounds(chunked)) == 5
    dispatcher = Dispatcher(store, ray_executor, poll_interval=0.02)
    dispatcher.start()
    try:
        job, _ = store.submit(tenant="t", request=chunked)
        one, _ = store.submit(tenant="t", request=single)
        dispatcher.wake()
        done = _wait_terminal(store, job)
        done_one = _wait_terminal(store, one)
    finally:
        dispatcher.stop()
    assert done.status is JobStatus.SUCCEEDED, done
    assert done_one.status is JobStatus.SUCCEEDED, done_one
    res = store.result(tenant="t", job_id=job.id)
    assert res.values is not None and res.d_inputs is None
    assert res.values.shape == (1, 23, 1) and res.metadata["chunks"] == 5
    np.testing.assert_allclose(res.values[0, :, 0], np.cos(xs) * np.cos(0.35), atol=1e-12)
    res_one = store.result(tenant="t", job_id=one.id)
    assert res_one.values is not None
    np.testing.assert_allclose(res_one.values[0, :, 0], np.cos(xs[:3]) * np.cos(-1.2), atol=1e-12)
    store.close()


def test_ray_chunks_run_on_several_workers(ray_executor: object) -> None:
    """One job can use several workers: chunk tasks land on more than one process."""
    from qldm.jobs.executors.ray import RayExecutor

    assert isinstance(ray_executor, RayExecutor)
    futures = [ray_executor.submit(_pid_after, 0.3) for _ in range(4)]
    pids = {f.result(timeout=120) for f in futures}
    assert len(pids) >= 2


def test_ray_task_failure_is_a_job_failure_with_its_code(
    sqlite_url: str, ray_executor: object
) -> None:
    from qldm.jobs.executors.ray import RayExecutor

    assert isinstance(ray_executor, RayExecutor)
    store = JobStore(sqlite_url)
    store.migrate()
    # The exact backend refuses noisy circuits beyond its density-matrix limit: the error is
    # raised inside the Ray chunk tasks and must come back with its code.
    from qldm.backends.exact import MAX_DENSITY_QUBITS

    n = MAX_DENSITY_QUBITS + 1
    req = JobRequest.parse(
        {
            "circuit": {
                "n_qubits": n,
                "ansatz": "basic_entangler",
                "channel": {"kind": "bit_flip", "strength": 0.1},
            },
            "inputs": [[0.1] * n] * 3,
            "weights": [0.2] * n,
            "options": {"chunk_size": 2},
        }
    )
    job, _ = store.submit(tenant="t", request=req)
    dispatcher = Dispatcher(store, ray_executor, poll_interval=0.02)
    dispatcher.start()
    try:
        done = _wait_terminal(store, job)
    finally:
        dispatcher.stop()
    assert done.status is JobStatus.FAILED and done.attempts == 1
    assert done.error_code == "backend_limit", done
    assert "n_qubits" in (done.error_message or ""), done
    store.close()


def _pid_after(seconds: float) -> int:
    import os

    time.sleep(seconds)
    return os.getpid()
