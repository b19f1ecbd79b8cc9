"""QNGD against a hand-derived natural-gradient step on the one-qubit RY-RZ circuit.

State ``RZ(b) RY(a)|0>`` has Bloch vector ``(sin a cos b, sin a sin b, cos a)`` and the
Fubini-Study metric (quarter convention) ``g = diag(1/4, sin^2(a)/4)``. For the loss
``L = -<X> = -sin a cos b`` the gradient is ``(-cos a cos b, sin a sin b)``, so one damped step
is ``a -= lr * dL/da / (1/4 + λ)``, ``b -= lr * dL/db / (sin^2 a / 4 + λ)``.
"""

from __future__ import annotations

import math

import pytest
import torch

from qldm.hybrid.config import ConfigError
from qldm.hybrid.qngd import QNGD, layer_metric, natural_direction


def _metric(theta: torch.Tensor) -> torch.Tensor:
    a = float(theta[0])
    return torch.diag(torch.tensor([0.25, math.sin(a) ** 2 / 4], dtype=torch.float64))


def _loss(theta: torch.Tensor) -> torch.Tensor:
    return -torch.sin(theta[0]) * torch.cos(theta[1])


@pytest.mark.parametrize("damping", [0.0, 1e-2])
def test_one_step_equals_the_hand_derived_step(damping: float) -> None:
    a, b, lr = 0.7, -0.4, 0.1
    theta = torch.tensor([a, b], dtype=torch.float64, requires_grad=True)
    opt = QNGD([theta], metric=lambda: _metric(theta.detach()), lr=lr, damping=damping)
    _loss(theta).backward()
    opt.step()
    ga, gb = -math.cos(a) * math.cos(b), math.sin(a) * math.sin(b)
    want_a = a - lr * ga / (0.25 + damping)
    want_b = b - lr * gb / (math.sin(a) ** 2 / 4 + damping)
    assert theta[0].item() == pytest.approx(want_a, abs=1e-12)
    assert theta[1].item() == pytest.approx(want_b, abs=1e-12)


def test_block_diagonal_drops_the_cross_terms() -> None:
    g = torch.tensor([[1.0, 0.4, 0.1], [0.4, 2.0, 0.3], [0.1, 0.3, 0.5]], dtype=torch.float64)
    grad = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    full = natural_direction(g, grad, damping=0.0)
    torch.testing.assert_close(g @ full, grad)
    blk = natural_direction(g, grad, damping=0.0, blocks=[2, 1])
    # block [0:2] solved with its own 2x2 matrix, the last entry alone
    want = torch.cat([torch.linalg.solve(g[:2, :2], grad[:2]), grad[2:] / g[2, 2]])
    torch.testing.assert_close(blk, want)


def test_qngd_converges_where_the_metric_is_badly_scaled() -> None:
    # Near a = 0 the b direction is almost flat in state space; plain gradient descent with the
    # same lr barely moves b, the natural gradient rescales it.
    theta = torch.tensor([0.3, 2.5], dtype=torch.float64, requires_grad=True)
    opt = QNGD([theta], metric=lambda: _metric(theta.detach()), lr=0.05, damping=1e-3)
    for _ in range(60):
        opt.zero_grad()
        _loss(theta).backward()
        opt.step()
    assert _loss(theta.detach()).item() < -0.99


def test_bad_arguments_name_their_field() -> None:
    theta = torch.zeros(2, requires_grad=True)
    with pytest.raises(ConfigError, match="lr"):
        QNGD([theta], metric=lambda: torch.eye(2), lr=0.0)
    with pytest.raises(ConfigError, match="blocks"):
        QNGD([theta], metric=lambda: torch.eye(2), blocks=[1, 2])
    with pytest.raises(ConfigError, match="metric"):
        natural_direction(torch.eye(3), torch.zeros(2), damping=0.0)


def test_layer_metric_of_the_one_qubit_circuit() -> None:
    from qldm.client import QuantumLayer

    if not hasattr(QuantumLayer, "metric_tensor"):
        pytest.skip("QuantumLayer.metric_tensor has not landed yet")
    layer = QuantumLayer(
        {"n_qubits": 1, "encoding": "angle_ry", "ansatz": "ry_rz_brickwork", "layers": 1}
    ).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([0.7, -0.4], dtype=torch.float64))
    x = torch.zeros(3, 1, dtype=torch.float64)
    g = layer_metric(layer, x)()
    torch.testing.assert_close(g, _metric(layer.weight.detach()), atol=1e-10, rtol=0)
