"""A run's runtime Session through the API, against a real server with two worker processes:
the run's jobs share one Session (also when they start side by side in both workers), a
standalone job uses a Batch, and closing the run keeps its Session id and refuses new jobs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from qldm.client.service_client import ServiceClient
from qldm.errors import BackendLimitError, RunClosedError
from tests.service.conftest import Deployment


def _ry(x: float, seed: int, run_id: str | None = None) -> dict[str, Any]:
    """RY(x) on fake:fake_manila: <Z> = cos(x) (RX(0) weights), M3-mitigated."""
    return {
        "circuit": {"n_qubits": 1, "layers": 1},
        "backend": "fake:fake_manila",  # the catalog's spelling
        "inputs": [[x]],
        "weights": [0.0, 0.0],
        "shots": 2000,
        "seed": seed,
        "run_id": run_id,
    }


def test_a_run_holds_one_session_until_it_is_closed(deployment: Deployment) -> None:
    with ServiceClient(deployment.url, api_key=deployment.keys["alice"]) as client:
        run = client.create_run(name="session", backend="fake:fake_manila")
        assert run["session_id"] is None
        xs = [0.0, np.pi, np.pi / 2]
        ids = [client.submit(_ry(x, seed=i, run_id=run["id"]))["id"] for i, x in enumerate(xs)]
        alone = client.submit(_ry(np.pi / 3, seed=9))["id"]
        results = [client.wait(job_id, timeout=180) for job_id in ids]
        batch = client.wait(alone, timeout=180)

        sessions = {r.metadata["session_id"] for r in results}
        assert len(sessions) == 1, sessions
        (sid,) = sessions
        assert sid.startswith("local:")  # local testing mode: a marker, not a runtime id
        assert {r.metadata["execution_mode"] for r in results} == {"session"}
        assert client.get_run(run["id"])["session_id"] == sid
        assert batch.metadata["execution_mode"] == "job"
        assert batch.metadata["session_id"] is None
        for result, x in zip([*results, batch], [*xs, np.pi / 3], strict=True):
            assert result.values is not None
            assert result.values[0, 0, 0] == pytest.approx(np.cos(x), abs=0.06)
            assert result.metadata["m3_calibration"]["source"] == "store"
            # mthree's standard error after M3 reaches the client: about 1 / sqrt(2000)
            assert result.values_std is not None and result.values_std.shape == (1, 1, 1)
            assert 0.015 < float(result.values_std[0, 0, 0]) < 0.04

        closed = client.close_run(run["id"])
        assert closed["status"] == "closed" and closed["session_id"] == sid
        with pytest.raises(RunClosedError):
            client.submit(_ry(0.1, seed=5, run_id=run["id"]))
        assert client.close_run(run["id"])["status"] == "closed"  # twice: a no-op


def test_a_runs_execution_mode_runtime_state_and_the_estimate_endpoint(
    deployment: Deployment,
) -> None:
    """A run asks for batch mode (as an Open-plan user would); its job (a Jacobian) shows the
    runtime job id and the runtime's last state, and its result carries the standard errors
    of the values and both Jacobians, the same in npz and JSON; ``POST /v1/estimate`` prices a
    job without running it."""
    with ServiceClient(deployment.url, api_key=deployment.keys["alice"]) as client:
        run = client.create_run(name="open", backend="fake:fake_manila", execution_mode="batch")
        assert run["execution_mode"] == "batch" and run["usage_s"] is None
        job_id = client.submit({**_ry(0.4, seed=3, run_id=run["id"]), "task": "jacobian"})["id"]
        result = client.wait(job_id, timeout=180)  # npz
        assert result.metadata["execution_mode"] == "batch"
        client.binary = False
        as_json = client.result(job_id)
        client.binary = True
        # M3's sqrt(gamma^2 / 2000) per row (gamma^2 nearly the same for every row); a
        # two-term rule [f(+) - f(-)] / 2 gives sqrt(2) / 2 of it
        assert result.d_inputs_std is not None and result.d_inputs_std.shape == (1, 1, 1, 1)
        assert result.d_weights_std is not None and result.d_weights_std.shape == (1, 1, 1, 2)
        assert result.values_std is not None
        jacobian_std = np.concatenate([result.d_inputs_std, result.d_weights_std], axis=-1)
        want = np.sqrt(0.5) * np.broadcast_to(result.values_std[..., None], (1, 1, 1, 3))
        np.testing.assert_allclose(jacobian_std, want, rtol=0.05)
        assert 0.01 < float(jacobian_std.min()) <= float(jacobian_std.max()) < 0.03
        for name in ("values_std", "d_inputs_std", "d_weights_std"):
            np.testing.assert_array_equal(getattr(as_json, name), getattr(result, name))
        job = client.get(job_id)
        assert job["runtime_job_id"] == result.metadata["runtime_job_id"]
        assert job["runtime_state"] == "done"
        after = client.get_run(run["id"])
        assert after["session_id"] is None and after["usage_s"] == 0.0  # local jobs: usage 0

        jacobian = {**_ry(0.4, seed=3), "task": "jacobian"}
        stored = client.list_jobs()["count"]
        cost = client.estimate(jacobian)
        assert client.list_jobs()["count"] == stored  # nothing stored, nothing run
        # B (1 + 2 (I + P)) = 1 + 2 * 3 parameter sets, no channel: one instance, one level
        assert cost["circuits"] == 7 and cost["shots"] == 2000 and cost["executions"] == 14_000
        assert cost["primitive"] == "sampler" and cost["submissions"] == 1
        assert cost["qpu_seconds"] == pytest.approx(
            cost["executions"] * (cost["rep_delay_s"] + cost["circuit_seconds"])
        )
        assert cost["floor_learning"] is None
        # a measured floor not learned yet: its experiment is priced on its own
        noisy = {
            **jacobian,
            "circuit": {
                "n_qubits": 1,
                "layers": 1,
                "channel": {"kind": "bit_flip", "strength": 0.05},
            },
            "options": {"floor": "measured", "floor_shots": 1000},
        }
        learning = client.estimate(noisy)["floor_learning"]
        assert learning["circuits"] == 14 and learning["executions"] == 14_000  # 2 x 6 + 2
        with pytest.raises(BackendLimitError) as info:
            client.estimate({**jacobian, "backend": "exact"})
        assert info.value.field == "backend"
