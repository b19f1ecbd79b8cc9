"""End to end: the state-level outputs, the metric tensor, timestep specs and complex
amplitudes through a real server on loopback (docs/api.md, section QuantumLayer).

A remote ``QuantumLayer`` (jobs with ``output``/``targets``/``task="metric_tensor"``) gives the
in-process layer's values, gradients and metric; bad fields are 422 naming the field; what a
backend does not run is 400 ``backend_limit`` naming the field.
"""

from __future__ import annotations

import pytest
import torch

from qldm.client import QuantumLayer
from tests.service.conftest import Deployment
from tests.service.helpers import HTTP, tiny_request

SPEC = {
    "n_qubits": 2,
    "encoding": "complex_amplitude",
    "ansatz": "mps",
    "layers": 2,
    "timestep": {"features": 1},
}


@pytest.mark.parametrize("output", ["probabilities", "fidelity"])
def test_remote_layer_matches_the_in_process_layer(deployment: Deployment, output: str) -> None:
    torch.manual_seed(0)
    local = QuantumLayer(SPEC, output=output).double()
    remote = QuantumLayer(
        SPEC, output=output, url=deployment.url, api_key=deployment.keys["alice"]
    ).double()
    remote.load_state_dict(local.state_dict())
    z = torch.randn(3, 4, dtype=torch.complex128)
    t = torch.tensor([0.1, 0.4, 0.8], dtype=torch.float64)
    target = torch.randn(3, 4, dtype=torch.complex128) if output == "fidelity" else None
    a = local(z, t=t, target=target)
    b = remote(z, t=t, target=target)
    torch.testing.assert_close(b, a, atol=1e-12, rtol=0)
    a.sum().backward()
    b.sum().backward()
    assert local.weight.grad is not None and remote.weight.grad is not None
    torch.testing.assert_close(remote.weight.grad, local.weight.grad, atol=1e-10, rtol=0)
    g_local = local.metric_tensor(z, t=t)
    g_remote = remote.metric_tensor(z, t=t)
    torch.testing.assert_close(g_remote, g_local, atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    ("changes", "status", "code", "field"),
    [
        ({"task": "metric"}, 422, "invalid_spec", "task"),
        ({"output": "fidelity"}, 422, "invalid_spec", "targets"),
        ({"output": "fidelity", "targets": [[1.0, 0.0]]}, 422, "invalid_spec", "targets"),
        ({"metric": "block_diagonal"}, 422, "invalid_spec", "metric"),
        (  # devices compute probabilities (from counts), not trajectories
            {
                "output": "probabilities",
                "backend": "aer:fake_manila",
                "noise_sampling": "trajectory",
            },
            400,
            "backend_limit",
            "noise_sampling",
        ),
        ({"task": "metric_tensor"}, 422, "invalid_spec", "circuit.channel"),  # a noisy spec
    ],
)
def test_bad_state_fields_name_the_field(
    deployment: Deployment, changes: dict[str, object], status: int, code: str, field: str
) -> None:
    request = {**tiny_request(2), **changes}
    r = HTTP.post(f"{deployment.url}/v1/jobs", json=request, headers=deployment.headers())
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code and error["field"] == field, error
