"""The state-level outputs, the metric tensor, the timestep embedding and the complex
amplitude encoding on the exact backend, against Qiskit's Statevector/DensityMatrix and
finite differences of Qiskit's states (issue 13, item 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qiskit.quantum_info import DensityMatrix, SparsePauliOp, Statevector

from qldm.backends import get_backend
from qldm.backends.base import Workload
from qldm.circuits import PQCSpec
from qldm.circuits.qiskit_builder import build
from qldm.circuits.timestep import effective_angles
from qldm.errors import BackendLimitError, InvalidSpecError

torch.set_num_threads(1)


def qiskit_state(spec: PQCSpec, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Qiskit's final state of one sample (timestep angles computed here by hand)."""
    base = spec.without_timestep()
    pa, m = spec.n_ansatz_weights, spec.timestep_features
    data = x[: spec.n_data_inputs]
    theta = w[:pa] + (x[spec.n_data_inputs :] @ w[pa:].reshape(m, pa) if m else 0.0)
    if base.encoding in ("amplitude", "complex_amplitude"):
        t = build(base, amplitudes=data)
        qc = t.circuit.assign_parameters(dict(zip(t.weights, theta, strict=True)))
    else:
        t = build(base)
        qc = t.circuit.assign_parameters(
            dict(zip(t.parameter_order(), [*data, *theta], strict=True))
        )
    return np.asarray(Statevector(qc).data)


SPECS = [
    PQCSpec(n_qubits=3, encoding="complex_amplitude", ansatz="mps", layers=2),
    PQCSpec(n_qubits=2, encoding="angle_ry", ansatz="ry_rz_brickwork", layers=2, timestep={}),
    PQCSpec(
        n_qubits=2,
        encoding="complex_amplitude",
        ansatz="basic_entangler",
        layers=3,
        timestep={"features": 2},
    ),
]


def _batch(spec: PQCSpec, b: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(b, spec.n_inputs)), rng.normal(size=spec.n_weights)


@pytest.mark.parametrize("spec", SPECS)
def test_probabilities_expectation_and_fidelity_match_qiskit(spec: PQCSpec) -> None:
    x, w = _batch(spec, 3, 1)
    d = 2**spec.n_qubits
    rng = np.random.default_rng(2)
    targets = rng.normal(size=(3, 2 * d))
    backend = get_backend("exact")
    probs = backend.run(Workload.build(spec, x, w, output="probabilities")).values
    expect = backend.run(Workload.build(spec, x, w)).values
    fid = backend.run(Workload.build(spec, x, w, output="fidelity", targets=targets)).values
    assert probs is not None and expect is not None and fid is not None
    assert probs.shape == (1, 3, d) and fid.shape == (1, 3, 1)
    for b in range(3):
        psi = qiskit_state(spec, x[b], w)
        np.testing.assert_allclose(probs[0, b], np.abs(psi) ** 2, atol=1e-12)
        sv = Statevector(psi)
        for o, label in enumerate(spec.pauli_labels()):
            assert expect[0, b, o] == pytest.approx(sv.expectation_value(SparsePauliOp(label)).real)
        phi = targets[b, :d] + 1j * targets[b, d:]
        phi /= np.linalg.norm(phi)
        assert fid[0, b, 0] == pytest.approx(abs(np.vdot(phi, psi)) ** 2, abs=1e-12)


def test_noisy_probabilities_match_density_matrix() -> None:
    spec = PQCSpec(
        n_qubits=3,
        encoding="angle_ry",
        ansatz="ry_rz_brickwork",
        layers=2,
        channel={"kind": "amplitude_damping", "strength": 0.2},
    )
    x, w = _batch(spec, 2, 3)
    levels = np.array([0.05, 0.3])
    probs = (
        get_backend("exact")
        .run(Workload.build(spec, x, w, output="probabilities", noise_levels=levels))
        .values
    )
    assert probs is not None and probs.shape == (2, 2, 8)
    for k, level in enumerate(levels):
        t = build(spec, noise_level=float(level))
        for b in range(2):
            qc = t.circuit.assign_parameters(
                dict(zip(t.parameter_order(), [*x[b], *w], strict=True))
            )
            np.testing.assert_allclose(probs[k, b], DensityMatrix(qc).probabilities(), atol=1e-12)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("output", ["expectation", "probabilities", "fidelity"])
def test_jacobians_match_finite_differences_of_qiskit(spec: PQCSpec, output: str) -> None:
    x, w = _batch(spec, 2, 4)
    d = 2**spec.n_qubits
    targets = np.random.default_rng(5).normal(size=(2, 2 * d))
    kw = {"targets": targets} if output == "fidelity" else {}
    ev = get_backend("exact").run(Workload.build(spec, x, w, task="jacobian", output=output, **kw))
    assert ev.d_inputs is not None and ev.d_weights is not None

    def f(xb: np.ndarray, wv: np.ndarray, b: int) -> np.ndarray:
        psi = qiskit_state(spec, xb, wv)
        if output == "probabilities":
            return np.abs(psi) ** 2
        if output == "fidelity":
            phi = targets[b, :d] + 1j * targets[b, d:]
            return np.array([abs(np.vdot(phi / np.linalg.norm(phi), psi)) ** 2])
        sv = Statevector(psi)
        return np.array([sv.expectation_value(SparsePauliOp(p)).real for p in spec.pauli_labels()])

    eps = 1e-6
    for b in range(2):
        for i in range(spec.n_inputs):
            e = np.zeros(spec.n_inputs)
            e[i] = eps
            fd = (f(x[b] + e, w, b) - f(x[b] - e, w, b)) / (2 * eps)
            np.testing.assert_allclose(ev.d_inputs[0, b, :, i], fd, atol=1e-7)
        for p in range(spec.n_weights):
            e = np.zeros(spec.n_weights)
            e[p] = eps
            fd = (f(x[b], w + e, b) - f(x[b], w - e, b)) / (2 * eps)
            np.testing.assert_allclose(ev.d_weights[0, b, :, p], fd, atol=1e-7)


def test_metric_of_one_qubit_is_analytic() -> None:
    """``RZ(b) RY(a) RY(x)|0>``: ``g = diag(1/4, sin^2(a + x)/4)``."""
    spec = PQCSpec(n_qubits=1, encoding="angle_ry", ansatz="ry_rz_brickwork", layers=1)
    x = np.array([[0.3], [-1.2]])
    w = np.array([0.4, 1.1])
    for metric in ("full", "block_diagonal"):
        g = (
            get_backend("exact")
            .run(Workload.build(spec, x, w, task="metric_tensor", metric=metric))
            .values
        )
        assert g is not None and g.shape == (1, 2, 2, 2)
        for b in range(2):
            want = np.diag([0.25, np.sin(0.4 + x[b, 0]) ** 2 / 4])
            np.testing.assert_allclose(g[0, b], want, atol=1e-12)


@pytest.mark.parametrize("spec", SPECS)
def test_full_metric_matches_finite_differences_of_qiskit_states(spec: PQCSpec) -> None:
    x, w = _batch(spec, 2, 6)
    g = get_backend("exact").run(Workload.build(spec, x, w, task="metric_tensor")).values
    gb = (
        get_backend("exact")
        .run(Workload.build(spec, x, w, task="metric_tensor", metric="block_diagonal"))
        .values
    )
    assert g is not None and gb is not None
    eps = 1e-6
    for b in range(2):
        psi = qiskit_state(spec, x[b], w)
        jac = []
        for p in range(spec.n_weights):
            e = np.zeros(spec.n_weights)
            e[p] = eps
            jac.append(
                (qiskit_state(spec, x[b], w + e) - qiskit_state(spec, x[b], w - e)) / (2 * eps)
            )
        j = np.stack(jac, 1)
        ov = j.conj().T @ psi
        want = (j.conj().T @ j).real - np.outer(ov, ov.conj()).real
        np.testing.assert_allclose(g[0, b], want, atol=1e-7)
        assert np.linalg.eigvalsh(g[0, b]).min() > -1e-10
        if spec.timestep is None:  # blocks are the full metric's own entries, zero elsewhere
            keep = gb[0, b] != 0
            np.testing.assert_allclose(gb[0, b][keep], want[keep], atol=1e-7)


def test_timestep_angles_and_chain_rule() -> None:
    spec = PQCSpec(n_qubits=2, ansatz="mps", layers=1, timestep={"features": 2})
    assert (spec.n_inputs, spec.n_weights, spec.n_ansatz_weights) == (4, 6, 2)
    x = np.array([[0.1, 0.2, 0.5, -1.0]])
    w = np.array([1.0, 2.0, 0.3, 0.4, -0.1, 0.2])
    data, theta = effective_angles(spec, x, w)
    np.testing.assert_allclose(data, [[0.1, 0.2]])
    np.testing.assert_allclose(theta, [[1.0 + 0.5 * 0.3 + 1.0 * 0.1, 2.0 + 0.5 * 0.4 - 1.0 * 0.2]])
    assert "timestep" not in PQCSpec(n_qubits=2).model_dump()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"task": "nope"}, "task"),
        ({"output": "nope"}, "output"),
        ({"output": "fidelity"}, "targets"),
        ({"output": "fidelity", "targets": np.ones((1, 3))}, "targets"),
        ({"output": "fidelity", "targets": np.zeros((1, 8))}, "targets"),
        ({"targets": np.ones((1, 8))}, "targets"),
        ({"metric": "block_diagonal"}, "metric"),
        ({"task": "counts", "shots": 10, "output": "probabilities"}, "output"),
    ],
)
def test_workload_validation_names_the_field(kwargs: dict, field: str) -> None:
    spec = PQCSpec(n_qubits=2)
    with pytest.raises(InvalidSpecError) as err:
        Workload.build(spec, np.zeros((1, 2)), np.zeros(4), **kwargs)
    assert err.value.field == field


def test_noisy_metric_and_zero_state_are_refused() -> None:
    noisy = PQCSpec(n_qubits=2, channel={"kind": "bit_flip", "strength": 0.1})
    with pytest.raises(InvalidSpecError) as err:
        Workload.build(noisy, np.zeros((1, 2)), np.zeros(4), task="metric_tensor")
    assert err.value.field == "circuit.channel"
    spec = PQCSpec(n_qubits=1, encoding="complex_amplitude")
    with pytest.raises(InvalidSpecError) as err:
        get_backend("exact").run(Workload.build(spec, np.zeros((1, 4)), np.zeros(2)))
    assert err.value.field == "inputs"
    with pytest.raises(BackendLimitError) as lim:
        Workload.build(
            noisy, np.zeros((1, 2)), np.zeros(4), output="fidelity", targets=np.ones((1, 8))
        )
        get_backend("exact").run(
            Workload.build(
                noisy, np.zeros((1, 2)), np.zeros(4), output="fidelity", targets=np.ones((1, 8))
            )
        )
    assert lim.value.field == "output"
