"""QuantumLayer(noise_sampling="trajectory"): per-sample draws, seeds, autograd, shots."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qldm.backends import _torch_ops as ops
from qldm.backends.trajectory import draw_uniforms, simulate, strength_rows
from qldm.client import QuantumLayer
from qldm.errors import InvalidSpecError

NOISY = {
    "n_qubits": 3,
    "encoding": "angle_ry",
    "ansatz": "ry_rz_brickwork",
    "layers": 2,
    "channel": {"kind": "bit_flip", "strength": 0.3},
}


def layer(**kwargs: object) -> QuantumLayer:
    torch.manual_seed(0)
    return QuantumLayer(NOISY, noise_sampling="trajectory", **kwargs).double()  # type: ignore[arg-type]


def test_seed_reproduces_and_calls_differ() -> None:
    x = torch.full((16, 3), 0.8, dtype=torch.float64)
    a, b = layer(seed=7), layer(seed=7)
    first, second = a(x), a(x)
    torch.testing.assert_close(first, b(x))
    torch.testing.assert_close(second, b(x))
    assert not torch.equal(first, second)  # call n uses seed + n
    # samples of one batch draw their own realizations: identical inputs, different outputs
    assert len({tuple(row.tolist()) for row in first}) > 1


def test_without_seed_torch_manual_seed_reproduces() -> None:
    x = torch.full((8, 3), 0.5, dtype=torch.float64)
    m = layer()
    torch.manual_seed(3)
    a = m(x)
    torch.manual_seed(3)
    torch.testing.assert_close(m(x), a)


def test_mean_over_draws_is_the_expectation_layer() -> None:
    x = torch.tensor([[0.2, 1.3, 2.1]], dtype=torch.float64)
    traj = layer(seed=1)
    torch.manual_seed(0)
    expect = QuantumLayer(NOISY).double()
    with torch.no_grad():
        draws = traj(x.repeat(3000, 1))
        reference = expect(x)[0]
    z = (draws.mean(0) - reference) / (draws.std(0) / math.sqrt(3000))
    assert float(z.abs().max()) < 4


def test_gradients_flow_and_average_to_the_expectation_gradient() -> None:
    x = torch.tensor([[0.2, 1.3, 2.1]], dtype=torch.float64)
    traj = layer(seed=2)
    torch.manual_seed(0)
    expect = QuantumLayer(NOISY).double()
    expect(x).sum().backward()
    grads = []
    for _ in range(25):  # batch means of 100 draws each
        traj.zero_grad()
        traj(x.repeat(100, 1)).sum().div(100).backward()
        assert traj.weight.grad is not None
        grads.append(traj.weight.grad.clone())
    g = torch.stack(grads)
    assert expect.weight.grad is not None
    diff = g.mean(0) - expect.weight.grad
    se = g.std(0) / math.sqrt(len(grads))
    live = se > 1e-9
    assert float((diff[live] / se[live]).abs().max()) < 4.5
    assert float(torch.cat([diff[~live].abs(), diff.new_zeros(1)]).max()) < 1e-12


def test_noise_levels_per_call_and_their_gradient_refused() -> None:
    m = layer(seed=0)
    x = torch.rand(4, 3, dtype=torch.float64)
    out = m(x, noise_levels=[0.0, 0.2])
    assert out.shape == (2, 4, 3)
    torch.manual_seed(0)
    noiseless = QuantumLayer({**NOISY, "channel": {"kind": "none"}}).double()
    torch.testing.assert_close(out[0], noiseless(x))
    levels = torch.tensor([0.1], dtype=torch.float64, requires_grad=True)
    with pytest.raises(InvalidSpecError) as err:
        m(x, noise_levels=levels)
    assert err.value.field == "noise_levels"


def test_shots_go_through_the_backend_and_still_train() -> None:
    m = layer(seed=5, shots=100)
    x = torch.rand(6, 3, dtype=torch.float64, requires_grad=True)
    out = m(x)
    assert np.allclose(np.round((out.detach().numpy() + 1) * 50), (out.detach().numpy() + 1) * 50)
    out.sum().backward()
    assert m.weight.grad is not None and x.grad is not None
    assert float(m.weight.grad.abs().sum()) > 0


def test_unknown_noise_sampling_names_the_field() -> None:
    with pytest.raises(InvalidSpecError) as err:
        QuantumLayer(NOISY, noise_sampling="sampled")
    assert err.value.field == "noise_sampling"
    assert "noise_sampling=trajectory" in repr(layer())


def test_twelve_qubits_in_graph() -> None:
    spec = {
        "n_qubits": 12,
        "ansatz": "hqconv",
        "layers": 1,
        "channel": {"kind": "depolarizing", "strength": 0.1},
    }
    m = QuantumLayer(spec, noise_sampling="trajectory", seed=0).double()
    x = torch.rand(2, 12, dtype=torch.float64)
    out = m(x)
    out.sum().backward()
    assert out.shape == (2, 12) and m.weight.grad is not None


def test_amplitude_damping_gradients_are_the_same_estimator_with_and_without_autograd() -> None:
    """The score term (unbiased amplitude-damping gradients, tests/backends/
    test_trajectory_score.py) is in both paths: the same seed gives the same gradients."""
    spec = {**NOISY, "channel": {"kind": "amplitude_damping", "strength": 0.3}}
    x = torch.tensor([[0.2, 1.3, 2.1], [2.5, 0.4, 1.0]], dtype=torch.float64).repeat(40, 1)
    grads = []
    for autograd in (True, False):
        torch.manual_seed(0)
        m = QuantumLayer(spec, noise_sampling="trajectory", seed=3, autograd=autograd).double()
        xl = x.clone().requires_grad_(True)
        out = m(xl)
        (out * torch.linspace(-1, 1, 3, dtype=torch.float64)).sum().backward()
        assert m.weight.grad is not None and xl.grad is not None
        grads.append((out.detach(), m.weight.grad.clone(), xl.grad.clone()))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    # the score term is there: the pathwise gradient alone differs
    torch.manual_seed(0)
    m = QuantumLayer(spec, noise_sampling="trajectory", seed=3).double()
    pathwise, _ = simulate(
        m.spec,
        ops.statevectors(m.spec, x),
        m.weight.double(),
        torch.as_tensor(strength_rows(m.spec, None, x.shape[0])),
        torch.as_tensor(draw_uniforms(m.spec, x.shape[0], np.random.default_rng(3))),
    )
    torch.testing.assert_close(pathwise.detach(), grads[0][0])  # the same draws
    (g,) = torch.autograd.grad((pathwise * torch.linspace(-1, 1, 3).double()).sum(), m.weight)
    assert float((g - grads[0][1]).abs().max()) > 1e-3
