"""Trajectory sampling on Aer: the exact backend's draws for Pauli channels (to float
precision, values and Jacobians), Aer's own Kraus sampling for amplitude damping (in
distribution: mean against Qiskit's DensityMatrix, variance against the analytic one)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from qiskit.quantum_info import DensityMatrix, Kraus, SparsePauliOp, Statevector

from qldm.backends import get_backend
from qldm.backends.base import Workload
from qldm.circuits import PQCSpec
from qldm.circuits.qiskit_builder import build
from qldm.client import QuantumLayer
from tests.backends.test_trajectory import (
    PAULIS,
    kraus,
    moments,
    one_qubit_spec,
    outcome_distribution,
)


@pytest.mark.parametrize("kind", ["bit_flip", "phase_flip", "depolarizing"])
@pytest.mark.parametrize("encoding", ["angle_ry", "amplitude"])
def test_pauli_trajectories_are_the_exact_backends(kind: str, encoding: str) -> None:
    spec = PQCSpec.parse(
        {
            "n_qubits": 2,
            "layers": 2,
            "encoding": encoding,
            "channel": {"kind": kind, "strength": (0.3, 0.0)},
        }
    )
    rng = np.random.default_rng(1)
    x = rng.uniform(0.1, 3, (5, spec.n_inputs))
    w = rng.uniform(-1, 1, spec.n_weights)
    work = Workload.build(
        spec, x, w, task="jacobian", seed=3, noise_levels=[0.2, 0.7], noise_sampling="trajectory"
    )
    aer, exact = get_backend("aer").run(work), get_backend("exact").run(work)
    assert aer.metadata["noise_sampling"] == "trajectory"
    np.testing.assert_allclose(aer.values, exact.values, atol=1e-10)
    np.testing.assert_allclose(aer.d_weights, exact.d_weights, atol=1e-9)
    np.testing.assert_allclose(aer.d_inputs, exact.d_inputs, atol=1e-9)


def test_amplitude_damping_draws_match_the_density_matrix_and_the_analytic_variance() -> None:
    s = 0.35
    spec = one_qubit_spec("amplitude_damping", s)
    x, w = np.array([[0.7]]), np.array([0.4, 0.9])
    noiseless = build(spec, channels=False)
    bound = noiseless.circuit.assign_parameters(
        dict(zip([*noiseless.inputs, *noiseless.weights], [*x[0], *w], strict=True))
    )
    psi = Statevector(bound).data
    rho = DensityMatrix(psi).evolve(Kraus(kraus("amplitude_damping", s)))
    reference = np.array([rho.expectation_value(SparsePauliOp(p)).real for p in PAULIS])
    _, var_a, mu4 = moments(outcome_distribution("amplitude_damping", s, psi))
    draws = 3000
    work = Workload.build(spec, np.repeat(x, draws, 0), w, seed=7, noise_sampling="trajectory")
    values = get_backend("aer").run(work).values[0]
    mean, var = values.mean(0), values.var(0, ddof=1)
    z = (mean - reference) / np.sqrt(var / draws)
    var_z = (var - var_a) / np.sqrt((mu4 - var_a**2) / draws)
    assert np.abs(z).max() < 4, z
    assert np.abs(var_z).max() < 4, (var, var_a)


def test_amplitude_damping_levels_and_samples_draw_independently() -> None:
    spec = PQCSpec.parse({"n_qubits": 1, "channel": {"kind": "amplitude_damping", "strength": 0.5}})
    x = np.full((400, 1), 2.0)
    w = np.zeros(spec.n_weights)
    work = Workload.build(spec, x, w, seed=1, noise_levels=[0.5, 0.5], noise_sampling="trajectory")
    ev = get_backend("aer").run(work)
    assert len(np.unique(np.round(ev.values[0, :, 0], 9))) == 2  # jumped or not
    assert not np.array_equal(ev.values[0], ev.values[1])  # two levels, two streams
    again = get_backend("aer").run(work)
    np.testing.assert_array_equal(again.values, ev.values)  # the seed reproduces


def test_amplitude_damping_jacobians_estimate_the_density_gradient() -> None:
    spec = PQCSpec.parse(
        {"n_qubits": 2, "layers": 1, "channel": {"kind": "amplitude_damping", "strength": 0.4}}
    )
    x = np.array([[0.9, 2.2]])
    w = np.array([0.3, -0.7, 1.1, 0.5])
    draws = 800
    ev = get_backend("aer").run(
        Workload.build(
            spec, np.repeat(x, draws, 0), w, task="jacobian", seed=2, noise_sampling="trajectory"
        )
    )
    exact = get_backend("exact").run(Workload.build(spec, x, w, task="jacobian"))
    g = ev.d_weights[0]
    se = g.std(0) / math.sqrt(draws)
    live = se > 1e-9
    diff = g.mean(0) - exact.d_weights[0, 0]
    assert np.abs(diff[live] / se[live]).max() < 4.5
    assert np.abs(diff[~live]).max(initial=0.0) < 1e-9


def test_layer_on_aer_draws_the_exact_layers_pauli_trajectories() -> None:
    spec = {"n_qubits": 2, "layers": 2, "channel": {"kind": "depolarizing", "strength": 0.4}}
    torch.manual_seed(0)
    exact = QuantumLayer(spec, noise_sampling="trajectory", seed=4).double()
    torch.manual_seed(0)
    aer = QuantumLayer(spec, backend="aer", noise_sampling="trajectory", seed=4).double()
    x = torch.rand(6, 2, dtype=torch.float64)
    a, b = exact(x), aer(x)
    torch.testing.assert_close(b, a, atol=1e-10, rtol=0)
    a.sum().backward()
    b.sum().backward()
    assert exact.weight.grad is not None and aer.weight.grad is not None
    torch.testing.assert_close(aer.weight.grad, exact.weight.grad, atol=1e-9, rtol=0)
