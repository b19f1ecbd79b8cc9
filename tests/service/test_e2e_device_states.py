"""End to end: state-level work on ``aer`` and a fake device through a real server on loopback.

A remote ``QuantumLayer`` on ``aer`` gives the in-process exact layer's probabilities,
gradients and block-diagonal metric (parameter shift against autograd); on a fake device
(``fake:fake_manila``, local testing mode, M3) the probabilities are normalised and within
shot and device noise of the exact ones.
"""

from __future__ import annotations

import torch

from qldm.client import QuantumLayer
from tests.service.conftest import Deployment

SPEC = {
    "n_qubits": 2,
    "encoding": "complex_amplitude",
    "ansatz": "mps",
    "layers": 1,
    "timestep": {"features": 1},
}


def _pair(deployment: Deployment, backend: str, **kw: object) -> tuple[QuantumLayer, QuantumLayer]:
    torch.manual_seed(0)
    local = QuantumLayer(SPEC, output="probabilities").double()
    remote = QuantumLayer(
        SPEC,
        output="probabilities",
        backend=backend,
        url=deployment.url,
        api_key=deployment.keys["alice"],
        **kw,  # type: ignore[arg-type]
    ).double()
    remote.load_state_dict(local.state_dict())
    return local, remote


def test_remote_aer_layer_matches_the_exact_layer(deployment: Deployment) -> None:
    local, remote = _pair(deployment, "aer")
    z = torch.randn(2, 4, dtype=torch.complex128, requires_grad=True)
    t = torch.tensor([0.2, 0.7], dtype=torch.float64)
    a, b = local(z, t=t), remote(z, t=t)
    torch.testing.assert_close(b, a, atol=1e-9, rtol=0)
    (a * torch.arange(4.0, dtype=torch.float64)).sum().backward()
    grad_local, z.grad = z.grad, None
    (b * torch.arange(4.0, dtype=torch.float64)).sum().backward()
    assert local.weight.grad is not None and remote.weight.grad is not None
    torch.testing.assert_close(remote.weight.grad, local.weight.grad, atol=1e-9, rtol=0)
    torch.testing.assert_close(z.grad, grad_local, atol=1e-9, rtol=0)
    g_local = local.metric_tensor(z.detach(), t=t, block_diagonal=True)
    g_remote = remote.metric_tensor(z.detach(), t=t, block_diagonal=True)
    torch.testing.assert_close(g_remote, g_local, atol=1e-9, rtol=0)


def test_remote_fake_device_probabilities(deployment: Deployment) -> None:
    local, remote = _pair(deployment, "fake:fake_manila", shots=2000, seed=0)
    z = torch.randn(2, 4, dtype=torch.complex128)
    t = torch.tensor([0.2, 0.7], dtype=torch.float64)
    with torch.no_grad():
        a, b = local(z, t=t), remote(z, t=t)
    assert b.shape == (2, 4)
    torch.testing.assert_close(b.sum(-1), torch.ones(2, dtype=torch.float64), atol=1e-9, rtol=0)
    assert bool((b >= 0).all()) and float((b - a).abs().max()) < 0.1
