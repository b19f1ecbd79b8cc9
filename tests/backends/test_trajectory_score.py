"""The score-function term of amplitude-damping trajectory gradients, against Qiskit.

Reference: Qiskit's ``DensityMatrix`` of the circuit, every channel applied as the amplitude
damping Kraus pair written out in :func:`tests.backends.test_trajectory.kraus`, differentiated
by central finite differences (cross-checked with qldm's density engine).

The per-draw gradient is heavy-tailed: rare jump patterns carry large scores (in
``python -m qldm.bench.trajectory_gradient``'s 2-qubit case a pattern of probability 4e-4 has
per-draw gradient -3.6 against a spread of 0.075, and the sample standard deviation of 4,000
draws of that component was 0.011), so a sample standard error can be several times too small.
The standard errors here are exact instead: with 1-2 qubits every draw pattern is enumerated
(:func:`qldm.bench.trajectory_gradient.branches`), which also gives the exact mean.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qiskit.quantum_info import DensityMatrix, Kraus

from qldm.backends.base import Workload
from qldm.backends.exact import ExactBackend
from qldm.backends.trajectory import sample, with_score
from qldm.bench.trajectory_gradient import branches, density_jacobian
from qldm.circuits import PQCSpec
from qldm.circuits.qiskit_builder import build
from tests.backends.test_trajectory import kraus

GAMMA = 0.3
DRAWS = 2000


def damped_spec(n_qubits: int, layers: int) -> PQCSpec:
    return PQCSpec.parse(
        {
            "n_qubits": n_qubits,
            "layers": layers,
            "ansatz": "ry_rz_brickwork",
            "channel": {"kind": "amplitude_damping", "strength": GAMMA},
            "observables": "z_each",
        }
    )


def qiskit_values(spec: PQCSpec, params: np.ndarray) -> np.ndarray:
    """``(O,)`` <Z_q> of the density matrix, parameters ``[x, w]``, channels as Kraus maps."""
    circuit = build(spec)
    bound = circuit.circuit.assign_parameters(
        dict(zip(circuit.parameter_order(), params, strict=True))
    )
    rho = DensityMatrix.from_label("0" * spec.n_qubits)
    channel = Kraus(kraus("amplitude_damping", GAMMA))
    for inst in bound.data:
        qubits = [bound.find_bit(q).index for q in inst.qubits]
        op = channel if inst.operation.name == "quantum_channel" else inst.operation
        rho = rho.evolve(op, qubits)
    return np.array([rho.expectation_value(o).real for o in circuit.observables])


def qiskit_jacobian(spec: PQCSpec, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``(O, I + P)`` by central differences of :func:`qiskit_values`."""
    params = np.concatenate([x, w])
    step = 1e-5
    cols = []
    for j in range(params.size):
        e = np.zeros_like(params)
        e[j] = step
        cols.append(
            (qiskit_values(spec, params + e) - qiskit_values(spec, params - e)) / (2 * step)
        )
    return np.stack(cols, 1)


CASES = [(1, 3, 0), (2, 2, 1)]  # (qubits, layers, seed)


def case(n_qubits: int, layers: int, seed: int) -> tuple[PQCSpec, np.ndarray, np.ndarray]:
    spec = damped_spec(n_qubits, layers)
    rng = np.random.default_rng(seed)
    return spec, rng.uniform(0.2, 2.8, n_qubits), rng.uniform(-1.5, 1.5, spec.n_weights)


@pytest.mark.parametrize(("n_qubits", "layers", "seed"), CASES)
def test_exact_mean_of_the_score_estimator_is_the_density_gradient(
    n_qubits: int, layers: int, seed: int
) -> None:
    spec, x, w = case(n_qubits, layers, seed)
    reference = qiskit_jacobian(spec, x, w)
    np.testing.assert_allclose(density_jacobian(spec, x, w), reference, atol=1e-8)
    exact = branches(spec, x, w)
    np.testing.assert_allclose(exact.mean_values(), qiskit_values(spec, np.r_[x, w]), atol=1e-12)
    norm = np.linalg.norm(reference)
    for estimator in ("score", "score+LOO"):
        np.testing.assert_allclose(exact.moments(estimator)[0], reference, atol=1e-8)
    # the pathwise gradient alone (the estimator before the score term) is biased
    assert np.linalg.norm(exact.moments("pathwise")[0] - reference) / norm > 0.1


@pytest.mark.parametrize(("n_qubits", "layers", "seed"), CASES)
def test_sampled_gradients_average_to_the_density_gradient(
    n_qubits: int, layers: int, seed: int
) -> None:
    """Autograd through :func:`sample` and the backend's ``jacobian`` task, the same draws."""
    spec, x, w = case(n_qubits, layers, seed)
    reference = qiskit_jacobian(spec, x, w)
    # the leave-one-out baseline over draws of one input tends to E[f]
    se = np.sqrt(branches(spec, x, w).moments("score+LOO")[1] / DRAWS)
    xt = torch.tensor(np.repeat(x[None], DRAWS, 0), requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    out = sample(spec, xt, wt, noise_levels=None, rng=np.random.default_rng(seed + 10))[0]
    mean = np.empty_like(reference)
    for o in range(spec.n_outputs):
        gx, gw = torch.autograd.grad(out[:, o].mean(), (xt, wt), retain_graph=True)
        mean[o] = np.concatenate([gx.sum(0).numpy(), gw.numpy()])
    live = se > 1e-12
    z = (mean - reference)[live] / se[live]
    assert np.abs(z).max() < 4, z
    assert np.abs((mean - reference)[~live]).max() < 1e-10
    # the backend's Jacobians (no autograd for the caller) are the same estimator, draw for draw
    ev = ExactBackend().run(
        Workload.build(
            spec,
            np.repeat(x[None], DRAWS, 0),
            w,
            task="jacobian",
            seed=seed + 10,
            noise_sampling="trajectory",
        )
    )
    assert ev.values is not None and ev.d_inputs is not None and ev.d_weights is not None
    per_row = np.concatenate([ev.d_inputs[0], ev.d_weights[0]], -1)
    np.testing.assert_allclose(per_row.mean(0), mean, atol=1e-10)
    np.testing.assert_allclose(ev.values[0], out.detach().numpy(), atol=1e-12)


def test_values_are_unchanged_by_the_score_term() -> None:
    spec, x, w = case(2, 2, 3)
    xs = np.repeat(x[None], 50, 0)
    levels = torch.tensor([0.1, 0.4], dtype=torch.float64)
    xt = torch.tensor(xs, requires_grad=True)
    with_graph = sample(
        spec, xt, torch.tensor(w), noise_levels=levels, rng=np.random.default_rng(4)
    )
    with torch.no_grad():
        plain = sample(spec, xt, torch.tensor(w), noise_levels=levels, rng=np.random.default_rng(4))
    assert with_graph.requires_grad
    torch.testing.assert_close(with_graph, plain, rtol=0, atol=0)
    ev = ExactBackend().run(
        Workload.build(
            spec, xs, w, noise_levels=levels.numpy(), seed=4, noise_sampling="trajectory"
        )
    )
    assert ev.values is not None
    np.testing.assert_allclose(ev.values, plain.numpy(), atol=1e-12)


def test_with_score_gradient_and_leave_one_out_baseline() -> None:
    """``grad f' = grad f + (f - b) grad log p``, ``b`` the mean of the group's other rows."""
    theta = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    a = torch.tensor([1.0, -2.0, 0.5, 3.0, 4.0], dtype=torch.float64)
    f0 = torch.tensor([[0.2, 1.0], [0.4, -1.0], [0.9, 0.0], [-0.5, 0.5], [0.3, 0.3]])
    f0 = f0.double()
    values = f0 * theta  # pathwise derivative f0
    log_prob = a * theta  # score a
    groups = torch.tensor([0, 0, 0, 1, 2])
    out = with_score(values, log_prob, groups)
    torch.testing.assert_close(out, values, rtol=0, atol=0)
    f = f0 * 0.7
    baseline = torch.stack(
        [
            (f[1] + f[2]) / 2,
            (f[0] + f[2]) / 2,
            (f[0] + f[1]) / 2,
            torch.zeros(2, dtype=torch.float64),  # alone in its group: no baseline
            torch.zeros(2, dtype=torch.float64),
        ]
    )
    for o in range(2):
        (grad,) = torch.autograd.grad(out[:, o].sum(), theta, retain_graph=True)
        expected = (f0[:, o] + (f[:, o] - baseline[:, o]) * a).sum()
        torch.testing.assert_close(grad, expected)
    # no graph through the log-probabilities (Pauli channels): the values themselves
    assert with_score(values, log_prob.detach(), groups) is values
