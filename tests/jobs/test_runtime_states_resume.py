"""The jobs layer's side of a state-level runtime job across a restart: the worker stores the
runtime job id the backend checkpoints, and after the server died with the job running, the
re-dispatched attempt reads it from the store and re-attaches (no second submission) to the
result the first attempt left, on a real SQLite store and ``fake:fake_manila``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qldm.backends.runtime import RuntimeConfig
from qldm.jobs.model import JobRequest
from qldm.jobs.store import JobStore


def test_a_restarted_worker_reattaches_a_state_job_by_its_stored_runtime_job_id(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import qiskit_ibm_runtime

    import qldm.jobs.runner as runner
    from qldm.jobs.runner import run_stored_job

    submitted: list[int] = []
    original = qiskit_ibm_runtime.SamplerV2.run

    def counted(self: Any, *args: Any, **kw: Any) -> Any:
        submitted.append(1)
        return original(self, *args, **kw)

    monkeypatch.setattr(qiskit_ibm_runtime.SamplerV2, "run", counted)
    config = RuntimeConfig(data_dir=tmp_path / "runtime")
    request = JobRequest.parse(
        {
            "circuit": {"n_qubits": 2, "layers": 1, "timestep": {"features": 1}},
            "task": "jacobian",
            "output": "probabilities",
            "backend": "fake:fake_manila",
            "inputs": [[0.3, -0.2, 0.5], [0.9, 0.1, -0.4]],
            "weights": np.linspace(-0.6, 0.6, 8).tolist(),
            "shots": 300,
            "seed": 4,
        }
    )
    store = JobStore(sqlite_url)
    store.migrate()
    job, _ = store.submit(tenant="t", request=request)
    [first] = store.claim(worker="w")
    result = run_stored_job(store.url, job.id, first.attempts, runtime_config=config)
    runtime_job_id = store.job(job.id).runtime_job_id
    assert runtime_job_id == result.metadata["runtime_job_id"] and len(submitted) == 1
    # the server dies before it records the result; the restart re-dispatches the job
    assert list(store.requeue_running()) == [job.id]
    runner._backend.cache_clear()  # a new process: no backend objects survive
    [second] = store.claim(worker="w")
    again = run_stored_job(store.url, job.id, second.attempts, runtime_config=config)
    assert len(submitted) == 1  # nothing submitted
    assert again.metadata["submissions"] == 0 and again.metadata["resumed"] is True
    assert again.metadata["runtime_job_id"] == runtime_job_id
    assert again.values is not None and result.values is not None
    np.testing.assert_array_equal(again.values, result.values)
    np.testing.assert_array_equal(again.d_weights, result.d_weights)
    store.close()
