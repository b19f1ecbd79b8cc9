"""End to end: ``noise_sampling="trajectory"`` through a real server on loopback.

The server draws the same trajectories as the in-process backend for the same seed (one chunk),
refuses an unknown value (422 naming the field) and a device backend (400 ``backend_limit``
naming the field), and a remote ``QuantumLayer`` trains on the drawn trajectories.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qldm.backends import get_backend
from qldm.backends.base import Workload
from qldm.circuits import PQCSpec
from qldm.client import QuantumLayer
from tests.service.conftest import Deployment
from tests.service.helpers import HTTP, TINY, tiny_request


def _in_process(request: dict[str, object]) -> object:
    work = Workload.build(
        PQCSpec.model_validate(request["circuit"]),
        request["inputs"],
        request["weights"],
        noise_levels=request.get("noise_levels"),
        task=str(request["task"]),
        seed=request.get("seed"),  # type: ignore[arg-type]
        noise_sampling="trajectory",
    )
    return get_backend("exact").run(work)


def test_server_draws_the_in_process_trajectories(deployment: Deployment) -> None:
    request = {
        **tiny_request(3, batch=6, task="jacobian", noise_levels=[0.2, 0.6]),
        "seed": 42,
        "noise_sampling": "trajectory",
    }
    headers = deployment.headers()
    job = HTTP.post(f"{deployment.url}/v1/jobs", json=request, headers=headers)
    assert job.status_code == 202, job.text
    result = HTTP.get(
        f"{deployment.url}/v1/jobs/{job.json()['id']}/result", params={"wait": 30}, headers=headers
    )
    assert result.status_code == 200, result.text
    body = result.json()
    ref = _in_process(request)
    np.testing.assert_allclose(body["values"], ref.values, atol=1e-12)  # type: ignore[attr-defined]
    np.testing.assert_allclose(body["d_weights"], ref.d_weights, atol=1e-12)  # type: ignore[attr-defined]
    assert body["metadata"]["noise_sampling"] == "trajectory"
    # a different seed draws different trajectories (amplitude damping at 0.6: many jumps)
    other = _in_process({**request, "seed": 43})
    assert not np.allclose(other.values, ref.values)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"noise_sampling": "sampled"}, 422, "invalid_spec"),
        ({"noise_sampling": "trajectory", "task": "counts", "shots": 10}, 422, "invalid_spec"),
        ({"noise_sampling": "trajectory", "backend": "aer:fake_manila"}, 400, "backend_limit"),
    ],
)
def test_bad_noise_sampling_names_the_field(
    deployment: Deployment, changes: dict[str, object], status: int, code: str
) -> None:
    request = {**tiny_request(5), **changes}
    r = HTTP.post(f"{deployment.url}/v1/jobs", json=request, headers=deployment.headers())
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code and error["field"] == "noise_sampling", error


def test_remote_layer_matches_the_in_process_layer(deployment: Deployment) -> None:
    spec = TINY.model_dump(mode="json")
    torch.manual_seed(0)
    local = QuantumLayer(spec, noise_sampling="trajectory", seed=11).double()
    torch.manual_seed(0)
    remote = QuantumLayer(
        spec,
        noise_sampling="trajectory",
        seed=11,
        url=deployment.url,
        api_key=deployment.keys["alice"],
    ).double()
    x = torch.rand(5, TINY.n_inputs, dtype=torch.float64)
    for _ in range(2):  # calls n = 0, 1 use seeds 11, 12 on both
        a = local(x)
        b = remote(x)
        torch.testing.assert_close(b, a, atol=1e-12, rtol=0)
        a.sum().backward()
        b.sum().backward()
    assert local.weight.grad is not None and remote.weight.grad is not None
    torch.testing.assert_close(remote.weight.grad, local.weight.grad, atol=1e-10, rtol=0)
