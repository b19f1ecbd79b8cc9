"""The statevector evaluator against Qiskit ``Statevector``, finite differences and closed forms.

Values are compared with Qiskit's ``Statevector`` of the circuit :func:`build` makes; both
Jacobians with central finite differences of those Qiskit values (step 1e-6, so the reference
is good to about 1e-9), and at 12 qubits also with the exact backend's forward-mode engine.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from qiskit.quantum_info import Statevector

from qldm.backends._statevector import _plan, evaluate, supports
from qldm.backends.exact import expectation
from qldm.circuits import PQCSpec
from qldm.circuits.qiskit_builder import build
from qldm.errors import InvalidSpecError

TOL = 1e-8
STEP = 1e-6


def qiskit_values(spec: PQCSpec, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``(B, O)`` by Qiskit ``Statevector`` (one bound circuit per sample)."""
    shared = None if spec.encoding == "amplitude" else build(spec)
    out = []
    for xb in x:
        qc = shared if shared is not None else build(spec, amplitudes=xb)
        binding: dict[Any, float] = dict(zip(qc.weights, w, strict=True))
        if shared is not None:
            binding.update(zip(qc.inputs, xb, strict=True))
        state = Statevector(qc.circuit.assign_parameters(binding))
        out.append([state.expectation_value(o).real for o in qc.observables])
    return np.array(out)


def finite_differences(
    spec: PQCSpec, x: np.ndarray, w: np.ndarray, *, inputs: list[int], weights: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Central differences of :func:`qiskit_values`, ``(B, O, len(inputs))`` and
    ``(B, O, len(weights))``."""
    dx = []
    for i in inputs:
        e = np.zeros_like(x)
        e[:, i] = STEP
        dx.append((qiskit_values(spec, x + e, w) - qiskit_values(spec, x - e, w)) / (2 * STEP))
    dw = []
    for p in weights:
        e = np.zeros_like(w)
        e[p] = STEP
        dw.append((qiskit_values(spec, x, w + e) - qiskit_values(spec, x, w - e)) / (2 * STEP))
    return np.stack(dx, -1), np.stack(dw, -1)


def run(spec: PQCSpec, x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
    r = evaluate(spec, torch.tensor(x), torch.tensor(w), jacobian=True)
    assert r.d_inputs is not None and r.d_weights is not None
    return r.values.numpy(), r.d_inputs.numpy(), r.d_weights.numpy()


def sample(spec: PQCSpec, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-math.pi, math.pi, (batch, spec.n_inputs))
    if spec.encoding == "basis":
        x = rng.integers(0, 2, (batch, spec.n_inputs)).astype(float) + rng.normal(0, 0.1, x.shape)
    return x, rng.uniform(-math.pi, math.pi, spec.n_weights)


# ---------------------------------------------------------------------------- closed forms


def test_rx_then_z_is_cos() -> None:
    # one qubit: RX(x) then RX(w) (basic_entangler), <Z> = cos(x + w)
    spec = PQCSpec.parse(
        {"n_qubits": 1, "encoding": "angle_rx", "ansatz": "basic_entangler", "layers": 1}
    )
    x = np.array([[0.3], [-1.2], [2.5]])
    w = np.array([0.7])
    values, dx, dw = run(spec, x, w)
    np.testing.assert_allclose(values[:, 0], np.cos(x[:, 0] + w[0]), atol=1e-14)
    np.testing.assert_allclose(dx[:, 0, 0], -np.sin(x[:, 0] + w[0]), atol=1e-14)
    np.testing.assert_allclose(dw[:, 0, 0], -np.sin(x[:, 0] + w[0]), atol=1e-14)


@pytest.mark.parametrize("ansatz", ["hqconv", "fqconv"])
def test_zero_weights_are_the_identity(ansatz: str) -> None:
    # CRZ(0) = CRX(0) = I: <Z_q> = cos x_q, d/dx diagonal -sin x_q
    spec = PQCSpec.parse({"n_qubits": 12, "encoding": "angle_rx", "ansatz": ansatz, "layers": 3})
    x, _ = sample(spec, 3, 1)
    values, dx, _ = run(spec, x, np.zeros(spec.n_weights))
    np.testing.assert_allclose(values, np.cos(x), atol=1e-13)
    want = np.zeros_like(dx)
    for q in range(12):
        want[:, q, q] = -np.sin(x[:, q])
    np.testing.assert_allclose(dx, want, atol=1e-13)


def test_diagonal_gates_leave_z_alone() -> None:
    # fqconv with its CRX weights at zero keeps only CRZ gates, which are diagonal:
    # <Z_q> = cos x_q after RY(x_q), and no CRZ weight moves it
    spec = PQCSpec.parse({"n_qubits": 8, "encoding": "angle_ry", "ansatz": "fqconv", "layers": 1})
    x, w = sample(spec, 2, 2)
    w[8:] = 0.0  # CRX off: only diagonal CRZ gates remain
    values, _, dw = run(spec, x, w)
    np.testing.assert_allclose(values, np.cos(x), atol=1e-13)
    np.testing.assert_allclose(dw[:, :, :8], 0.0, atol=1e-13)


# ---------------------------------------------------------------------------- against Qiskit

SMALL_CASES = [
    ("angle_rx", "hqconv", 4),
    ("angle_rx", "hqconv", 8),
    ("angle_ry", "fqconv", 8),
    ("angle_rx", "ry_rz_brickwork", 5),
    ("angle_ry", "basic_entangler", 3),
    ("dense_angle", "mps", 4),
    ("phase", "ry_rz_brickwork", 3),
    ("basis", "basic_entangler", 4),
    ("amplitude", "ry_rz_brickwork", 3),
    ("angle_ry", "mps", 6),
]


@pytest.mark.parametrize(("encoding", "ansatz", "n"), SMALL_CASES)
def test_against_qiskit_and_finite_differences(encoding: str, ansatz: str, n: int) -> None:
    spec = PQCSpec.parse({"n_qubits": n, "encoding": encoding, "ansatz": ansatz, "layers": 2})
    x, w = sample(spec, 2, n)
    values, dx, dw = run(spec, x, w)
    np.testing.assert_allclose(values, qiskit_values(spec, x, w), atol=TOL)
    fx, fw = finite_differences(
        spec, x, w, inputs=list(range(spec.n_inputs)), weights=list(range(spec.n_weights))
    )
    np.testing.assert_allclose(dx, fx, atol=TOL)
    np.testing.assert_allclose(dw, fw, atol=TOL)


def test_pauli_strings_join_components() -> None:
    # fqconv on 8 qubits is four independent pairs; X/Y strings across pairs join them
    labels = ("XIIIIIIY", "IIZIIIZI", "IIIIIIII", "IIIYXIII", "ZIIIIIII")
    spec = PQCSpec.parse(
        {
            "n_qubits": 8,
            "encoding": "angle_rx",
            "ansatz": "fqconv",
            "layers": 2,
            "observables": labels,
        }
    )
    # {0, 4} and {3, 7} joined by the first string, {1, 5}, {2, 6}
    assert [c.qubits for c in _plan(spec).components] == [(0, 3, 4, 7), (1, 5), (2, 6)]
    x, w = sample(spec, 2, 3)
    values, dx, dw = run(spec, x, w)
    np.testing.assert_allclose(values, qiskit_values(spec, x, w), atol=TOL)
    fx, fw = finite_differences(
        spec, x, w, inputs=list(range(spec.n_inputs)), weights=list(range(spec.n_weights))
    )
    np.testing.assert_allclose(dx, fx, atol=TOL)
    np.testing.assert_allclose(dw, fw, atol=TOL)


def test_light_cones_of_pauli_strings() -> None:
    # hqconv on 8 qubits: X/Y/Z strings whose light cones end on different blocks of the last
    # layer, so their adjoint passes start at different blocks, from P on the forward state in
    # that block's digit order
    labels = ("IIIIIIXI", "YIIIIIII", "IIIXIIIZ", "IIIIZIII", "IIIIIIIZ", "IYIIIIII")
    spec = PQCSpec.parse(
        {
            "n_qubits": 8,
            "encoding": "angle_ry",
            "ansatz": "hqconv",
            "layers": 2,
            "observables": labels,
        }
    )
    (comp,) = _plan(spec).components
    assert len(set(comp.joins)) > 2 and not comp.diagonal
    x, w = sample(spec, 2, 4)
    values, dx, dw = run(spec, x, w)
    np.testing.assert_allclose(values, qiskit_values(spec, x, w), atol=TOL)
    fx, fw = finite_differences(
        spec, x, w, inputs=list(range(spec.n_inputs)), weights=list(range(spec.n_weights))
    )
    np.testing.assert_allclose(dx, fx, atol=TOL)
    np.testing.assert_allclose(dw, fw, atol=TOL)


@pytest.mark.parametrize("ansatz", ["hqconv", "fqconv"])
def test_twelve_qubits(ansatz: str) -> None:
    spec = PQCSpec.parse({"n_qubits": 12, "encoding": "angle_rx", "ansatz": ansatz, "layers": 3})
    x, w = sample(spec, 1, 12)
    values, dx, dw = run(spec, x, w)
    np.testing.assert_allclose(values, qiskit_values(spec, x, w), atol=TOL)
    rng = np.random.default_rng(5)
    some_inputs = sorted(rng.choice(spec.n_inputs, 2, replace=False).tolist())
    some_weights = sorted(rng.choice(spec.n_weights, 2, replace=False).tolist())
    fx, fw = finite_differences(spec, x, w, inputs=some_inputs, weights=some_weights)
    np.testing.assert_allclose(dx[:, :, some_inputs], fx, atol=TOL)
    np.testing.assert_allclose(dw[:, :, some_weights], fw, atol=TOL)
    # every entry, against autograd through the exact engine's own torch statevector
    xt, wt = torch.tensor(x), torch.tensor(w)
    want = expectation(spec, xt, wt, engine="statevector")[0]
    jx, jw = torch.autograd.functional.jacobian(
        lambda a, b: expectation(spec, a, b, engine="statevector")[0], (xt, wt)
    )
    np.testing.assert_allclose(values, want.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(dx, torch.einsum("bobi->boi", jx).numpy(), atol=1e-12)
    np.testing.assert_allclose(dw, jw.numpy(), atol=1e-12)


def test_float32_is_single_precision() -> None:
    # complex64 (float32 inputs): values within 2e-6 of Qiskit at 12 qubits, Jacobians within
    # 2e-6 of the float64 ones (entries of order 1)
    spec = PQCSpec.parse({"n_qubits": 12, "encoding": "angle_rx", "ansatz": "hqconv", "layers": 3})
    x, w = sample(spec, 2, 11)
    r = evaluate(spec, torch.tensor(x, dtype=torch.float32), torch.tensor(w, dtype=torch.float32))
    assert r.values.dtype == torch.float32
    np.testing.assert_allclose(r.values.numpy(), qiskit_values(spec, x, w), atol=2e-6)
    r32 = evaluate(
        spec,
        torch.tensor(x, dtype=torch.float32),
        torch.tensor(w, dtype=torch.float32),
        jacobian=True,
    )
    _, dx, dw = run(spec, x, w)
    assert r32.d_inputs is not None and r32.d_weights is not None
    np.testing.assert_allclose(r32.d_inputs.numpy(), dx, atol=2e-6)
    np.testing.assert_allclose(r32.d_weights.numpy(), dw, atol=2e-6)


def test_batches_are_split_into_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    import qldm.backends._statevector as sv

    spec = PQCSpec.parse({"n_qubits": 8, "encoding": "angle_rx", "ansatz": "hqconv", "layers": 2})
    x, w = sample(spec, 5, 7)
    whole = run(spec, x, w)
    monkeypatch.setattr(sv, "_CHUNK_AMPLITUDES", 1)
    for got, want in zip(run(spec, x, w), whole, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-14)


def test_kept_workspace_is_per_thread_and_never_leaks_into_results() -> None:
    # the adjoint scratch a thread keeps between calls: a larger call in between, and two
    # threads at once, leave every result equal to the one of a first call
    from concurrent.futures import ThreadPoolExecutor

    small = PQCSpec.parse({"n_qubits": 8, "encoding": "angle_rx", "ansatz": "hqconv", "layers": 2})
    large = PQCSpec.parse({"n_qubits": 12, "encoding": "angle_rx", "ansatz": "hqconv"})
    xs, ws = sample(small, 3, 9)
    xl, wl = sample(large, 6, 10)
    first_small = run(small, xs, ws)
    kept = [a.copy() for a in first_small]
    first_large = run(large, xl, wl)
    np.testing.assert_allclose(first_small[0], qiskit_values(small, xs, ws), atol=TOL)
    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(run, *args) for args in [(large, xl, wl), (small, xs, ws)] * 3]
        results = [job.result() for job in jobs]
    for got, want in zip(results, [first_large, first_small] * 3, strict=True):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(first_small, kept, strict=True):  # later calls did not write into it
        np.testing.assert_array_equal(a, b)


def test_values_only() -> None:
    spec = PQCSpec.parse({"n_qubits": 8, "encoding": "angle_rx", "ansatz": "hqconv", "layers": 2})
    x, w = sample(spec, 3, 8)
    r = evaluate(spec, torch.tensor(x), torch.tensor(w))
    assert r.d_inputs is None and r.d_weights is None
    np.testing.assert_allclose(r.values.numpy(), qiskit_values(spec, x, w), atol=TOL)


# ---------------------------------------------------------------------------- errors


def test_rejects_noisy_specs_and_bad_shapes() -> None:
    noisy = PQCSpec(
        n_qubits=2,
        ansatz="mps",
        channel={"kind": "bit_flip", "strength": 0.1},  # type: ignore[arg-type]
    )
    assert not supports(noisy)
    with pytest.raises(InvalidSpecError) as err:
        evaluate(noisy, torch.zeros(1, 2, dtype=torch.float64), torch.zeros(noisy.n_weights))
    assert err.value.field == "spec"
    spec = PQCSpec(n_qubits=2, ansatz="mps")
    assert supports(spec)
    with pytest.raises(InvalidSpecError) as err:
        evaluate(spec, torch.zeros(1, 3, dtype=torch.float64), torch.zeros(spec.n_weights))
    assert err.value.field == "inputs"
    with pytest.raises(InvalidSpecError) as err:
        evaluate(spec, torch.zeros(1, 2, dtype=torch.float64), torch.zeros(1))
    assert err.value.field == "weights"
    amp = PQCSpec(n_qubits=2, encoding="amplitude", ansatz="mps")
    with pytest.raises(InvalidSpecError) as err:
        evaluate(amp, torch.zeros(1, 4, dtype=torch.float64), torch.zeros(amp.n_weights))
    assert err.value.field == "inputs"
