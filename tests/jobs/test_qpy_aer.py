"""QPY circuits on Aer: values and per-occurrence parameter-shift Jacobians.

References are closed forms, or qiskit.quantum_info's Statevector on the client's original
circuit (no Aer, no translation) with central finite differences.
"""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter, ParameterVector
from qiskit.circuit.library import PauliEvolutionGate
from qiskit.quantum_info import SparsePauliOp, Statevector
from qiskit_aer.primitives import EstimatorV2

from qldm.backends.qpy_aer import MAX_SHOTS, evaluate_qpy, gradient_form
from qldm.circuits.qpy import QpyCircuit
from qldm.errors import BackendLimitError, InvalidSpecError


def _reference(
    qc: QuantumCircuit,
    params: list[Parameter],
    observables: list[SparsePauliOp],
    theta: np.ndarray,
) -> np.ndarray:
    """``(O,)`` exact expectations of the original circuit at ``theta`` (Statevector)."""
    state = Statevector(qc.assign_parameters(dict(zip(params, theta, strict=True))))
    return np.array([state.expectation_value(obs).real for obs in observables])


def _finite_differences(
    qc: QuantumCircuit,
    params: list[Parameter],
    observables: list[SparsePauliOp],
    theta: np.ndarray,
    h: float = 1e-5,
) -> np.ndarray:
    """``(O, C)`` central differences of :func:`_reference`."""
    cols = []
    for j in range(theta.size):
        e = np.zeros_like(theta)
        e[j] = h
        plus = _reference(qc, params, observables, theta + e)
        minus = _reference(qc, params, observables, theta - e)
        cols.append((plus - minus) / (2 * h))
    return np.stack(cols, axis=-1)


def test_repeated_affine_parameter_matches_closed_form() -> None:
    """RY(a t + b) RY(x) RY(t) on |0>: <Z> = cos(phi), <X> = sin(phi), phi = (a+1) t + b + x."""
    x, t = Parameter("x"), Parameter("t")
    a, b = 0.7, 0.3
    qc = QuantumCircuit(1)
    qc.ry(a * t + b, 0)
    qc.ry(x, 0)
    qc.ry(t, 0)
    circuit = QpyCircuit.from_circuit(qc, ["Z", "X"], input_params=[x], weight_params=[t])
    inputs = np.array([[0.2], [1.1], [-2.5]])
    weights = np.array([0.5])
    ev = evaluate_qpy(circuit, inputs, weights, task="jacobian")
    phi = (a + 1) * weights[0] + b + inputs[:, 0]
    assert ev.values.shape == (1, 3, 2)
    assert ev.d_inputs is not None and ev.d_weights is not None
    assert ev.d_inputs.shape == (1, 3, 2, 1)
    assert ev.d_weights.shape == (1, 3, 2, 1)
    np.testing.assert_allclose(ev.values[0], np.c_[np.cos(phi), np.sin(phi)], atol=1e-10)
    np.testing.assert_allclose(ev.d_inputs[0, ..., 0], np.c_[-np.sin(phi), np.cos(phi)], atol=1e-10)
    np.testing.assert_allclose(
        ev.d_weights[0, ..., 0], (a + 1) * np.c_[-np.sin(phi), np.cos(phi)], atol=1e-10
    )
    form = gradient_form(circuit)
    assert form.gates == ("ry", "ry", "ry")
    np.testing.assert_allclose(form.affine, [[0.0, a], [1.0, 0.0], [0.0, 1.0]])
    assert ev.metadata["submissions"] == 1
    assert ev.metadata["parameter_sets"] == 3 * (1 + 6)


def _rich_circuit() -> tuple[QuantumCircuit, ParameterVector, ParameterVector]:
    """Every kind of parameterized gate the translator has to handle, parameters reused."""
    x = ParameterVector("x", 2)
    w = ParameterVector("w", 3)
    qc = QuantumCircuit(3)
    qc.h(0)
    qc.ry(x[0], 0)
    qc.rx(0.5 * x[1] - 0.2, 1)
    qc.crx(w[0], 0, 1)
    qc.cry(2 * w[1], 1, 2)
    qc.crz(w[2] + x[0], 2, 0)  # one angle, two parameters (affine)
    qc.rzz(w[0], 0, 2)
    qc.cp(w[1], 0, 1)
    qc.u(w[2], x[1], 0.3, 2)
    qc.r(w[0], 0.4, 1)
    qc.rxx(-w[1], 1, 2)
    qc.rzx(w[2], 0, 1)
    qc.append(PauliEvolutionGate(SparsePauliOp(["XY", "ZZ"], [1.0, 0.5]), time=w[0]), [0, 2])
    qc.global_phase = w[1]
    return qc, x, w


def test_every_rotation_kind_matches_statevector_and_finite_differences() -> None:
    qc, x, w = _rich_circuit()
    observables = [SparsePauliOp("ZII"), SparsePauliOp(["XYZ", "IZZ", "YII"], [0.5, -1.0, 0.25])]
    circuit = QpyCircuit.from_circuit(qc, observables, input_params=x, weight_params=w)
    rng = np.random.default_rng(7)
    inputs = rng.uniform(-np.pi, np.pi, (2, 2))
    weights = rng.uniform(-np.pi, np.pi, 3)
    ev = evaluate_qpy(circuit, inputs, weights, task="jacobian")
    assert ev.d_inputs is not None and ev.d_weights is not None
    params = [*x, *w]
    for b in range(2):
        theta = np.concatenate([inputs[b], weights])
        np.testing.assert_allclose(
            ev.values[0, b], _reference(qc, params, observables, theta), atol=1e-9
        )
        jac = _finite_differences(qc, params, observables, theta)
        np.testing.assert_allclose(ev.d_inputs[0, b], jac[:, :2], atol=1e-6)
        np.testing.assert_allclose(ev.d_weights[0, b], jac[:, 2:], atol=1e-6)
    form = gradient_form(circuit)
    assert {"crx", "cry", "crz"} <= set(form.gates)
    assert form.method == "statevector"


def test_one_estimator_run_per_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = EstimatorV2.run

    def counting_run(self: EstimatorV2, pubs: object, **kwargs: object) -> object:
        calls.append(1)
        return original(self, pubs, **kwargs)

    monkeypatch.setattr(EstimatorV2, "run", counting_run)
    qc, x, w = _rich_circuit()
    circuit = QpyCircuit.from_circuit(qc, ["ZII", "IXI"], input_params=x, weight_params=w)
    evaluate_qpy(circuit, np.zeros((4, 2)), np.ones(3), task="jacobian")
    assert len(calls) == 1
    evaluate_qpy(circuit, np.zeros((4, 2)), np.ones(3), task="expectation", shots=100, seed=1)
    assert len(calls) == 2


def test_noise_instructions_use_the_density_matrix() -> None:
    """RY(t) then amplitude damping g: <Z> = 1 - 2 (1 - g) sin^2(t/2)."""
    from qiskit_aer.noise import amplitude_damping_error

    t = Parameter("t")
    g = 0.3
    qc = QuantumCircuit(1)
    qc.ry(t, 0)
    qc.append(amplitude_damping_error(g).to_instruction(), [0])
    circuit = QpyCircuit.from_circuit(qc, ["Z"], weight_params=[t])
    angles = np.array([0.4, 1.9])
    values, slopes = [], []
    for angle in angles:
        ev = evaluate_qpy(circuit, np.zeros((1, 0)), np.array([angle]), task="jacobian")
        assert ev.d_weights is not None and ev.d_inputs is not None
        assert ev.d_inputs.shape == (1, 1, 1, 0)
        values.append(ev.values[0, 0, 0])
        slopes.append(ev.d_weights[0, 0, 0, 0])
        assert ev.metadata["method"] == "density_matrix"
    np.testing.assert_allclose(values, 1 - 2 * (1 - g) * np.sin(angles / 2) ** 2, atol=1e-10)
    np.testing.assert_allclose(slopes, -(1 - g) * np.sin(angles), atol=1e-10)


def test_reset_runs_on_the_density_matrix() -> None:
    """H, then reset: the state is |0> whatever came before, <Z> = 1 and d/dt = 0."""
    t = Parameter("t")
    qc = QuantumCircuit(2)
    qc.ry(t, 0)
    qc.reset(0)
    qc.rx(t, 1)
    circuit = QpyCircuit.from_circuit(qc, ["IZ", "ZI"], weight_params=[t])
    ev = evaluate_qpy(circuit, np.zeros((1, 0)), np.array([0.8]), task="jacobian")
    assert ev.d_weights is not None
    np.testing.assert_allclose(ev.values[0, 0], [1.0, np.cos(0.8)], atol=1e-10)
    np.testing.assert_allclose(ev.d_weights[0, 0, :, 0], [0.0, -np.sin(0.8)], atol=1e-10)


def test_shots_sample_binomially_and_seeds_reproduce() -> None:
    t = Parameter("t")
    qc = QuantumCircuit(1)
    qc.ry(t, 0)
    circuit = QpyCircuit.from_circuit(qc, ["Z"], input_params=[t])
    angles = np.array([[0.3], [1.2], [2.0], [2.9]])
    shots = 4000
    a = evaluate_qpy(circuit, angles, np.zeros(0), shots=shots, seed=11, task="jacobian")
    b = evaluate_qpy(circuit, angles, np.zeros(0), shots=shots, seed=11, task="jacobian")
    c = evaluate_qpy(circuit, angles, np.zeros(0), shots=shots, seed=12, task="jacobian")
    np.testing.assert_array_equal(a.values, b.values)
    assert a.d_inputs is not None and b.d_inputs is not None
    np.testing.assert_array_equal(a.d_inputs, b.d_inputs)
    assert not np.array_equal(a.values, c.values)
    exact = np.cos(angles[:, 0])
    sigma = np.sqrt((1 - exact**2) / shots)
    assert np.all(np.abs(a.values[0, :, 0] - exact) < 5 * sigma + 1e-12)
    # each derivative is (f+ - f-)/2 of two independent means: sigma <= sqrt(2/shots)/2
    assert np.all(np.abs(a.d_inputs[0, :, 0, 0] + np.sin(angles[:, 0])) < 5 * np.sqrt(0.5 / shots))
    assert a.metadata["sampling"] == "binomial"


def test_parameter_only_in_the_global_phase_has_zero_derivative() -> None:
    t, s = Parameter("t"), Parameter("s")
    qc = QuantumCircuit(1)
    qc.rx(t, 0)
    qc.global_phase = s
    circuit = QpyCircuit.from_circuit(qc, ["Z"], input_params=[t], weight_params=[s])
    ev = evaluate_qpy(circuit, np.array([[0.6]]), np.array([1.0]), task="jacobian")
    assert ev.d_inputs is not None and ev.d_weights is not None
    np.testing.assert_allclose(ev.values[0, 0, 0], np.cos(0.6), atol=1e-12)
    np.testing.assert_allclose(ev.d_inputs[0, 0, 0, 0], -np.sin(0.6), atol=1e-10)
    assert ev.d_weights[0, 0, 0, 0] == 0.0
    values = evaluate_qpy(circuit, np.array([[0.6]]), np.array([1.0]))
    np.testing.assert_allclose(values.values[0, 0, 0], np.cos(0.6), atol=1e-12)


def test_circuit_without_parameters_gives_one_row_per_sample() -> None:
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.cx(0, 1)
    circuit = QpyCircuit.from_circuit(qc, ["ZZ", "XX", "ZI"])
    ev = evaluate_qpy(circuit, np.zeros((3, 0)), np.zeros(0), task="jacobian")
    np.testing.assert_allclose(ev.values, np.tile([1.0, 1.0, 0.0], (1, 3, 1)), atol=1e-12)
    assert ev.d_inputs is not None and ev.d_inputs.shape == (1, 3, 3, 0)


@pytest.mark.parametrize(
    ("angle", "words"),
    [
        (lambda t, s: t.sin(), "not affine"),
        (lambda t, s: t * t, "not affine"),
        (lambda t, s: t * s, "not affine"),
    ],
)
def test_non_affine_angles_are_rejected_naming_the_gate(angle: object, words: str) -> None:
    t, s = Parameter("t"), Parameter("s")
    qc = QuantumCircuit(1)
    qc.rz(0.1, 0)
    qc.ry(angle(t, s), 0)  # type: ignore[operator]
    qc.rx(s, 0)
    circuit = QpyCircuit.from_circuit(qc, ["Z"], input_params=[t], weight_params=[s])
    with pytest.raises(InvalidSpecError) as err:
        evaluate_qpy(circuit, np.array([[0.1]]), np.array([0.2]), task="jacobian")
    assert err.value.field == "circuit.qpy"
    assert words in err.value.message
    assert "gate 1 with parameters, ry" in err.value.message


def test_values_alone_accept_any_angle_expression() -> None:
    """<Z> after RY(sin(t) * s) then RX(s) on |0> is cos(sin(t) s) cos(s)."""
    t, s = Parameter("t"), Parameter("s")
    qc = QuantumCircuit(1)
    qc.ry(t.sin() * s, 0)
    qc.rx(s, 0)
    circuit = QpyCircuit.from_circuit(qc, ["Z"], input_params=[t], weight_params=[s])
    inputs = np.array([[0.3], [1.4]])
    ev = evaluate_qpy(circuit, inputs, np.array([0.9]))
    expected = np.cos(np.sin(inputs[:, 0]) * 0.9) * np.cos(0.9)
    np.testing.assert_allclose(ev.values[0, :, 0], expected, atol=1e-12)
    assert ev.d_inputs is None and ev.metadata["parameter_sets"] == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"noise_levels": [0.1]}, InvalidSpecError, "noise_levels"),
        ({"task": "counts"}, InvalidSpecError, "task"),
        ({"shots": 0}, InvalidSpecError, "shots"),
        ({"shots": MAX_SHOTS + 1}, InvalidSpecError, "shots"),
        ({"shots": 1.5}, InvalidSpecError, "shots"),
        ({"seed": -1}, InvalidSpecError, "seed"),
        ({"backend": "fake:fake_manila"}, BackendLimitError, "backend"),
        ({"inputs": np.zeros((2, 2))}, InvalidSpecError, "inputs"),
        ({"inputs": np.zeros(1)}, InvalidSpecError, "inputs"),
        ({"weights": np.zeros(2)}, InvalidSpecError, "weights"),
        ({"weights": [np.nan]}, InvalidSpecError, "weights"),
        ({"circuit": "not a circuit"}, InvalidSpecError, "circuit"),
    ],
)
def test_job_errors_name_their_field(
    kwargs: dict[str, object], error: type[Exception], field: str
) -> None:
    t, s = Parameter("t"), Parameter("s")
    qc = QuantumCircuit(1)
    qc.ry(t, 0)
    qc.rz(s, 0)
    args: dict[str, object] = {
        "circuit": QpyCircuit.from_circuit(qc, ["Z"], input_params=[t], weight_params=[s]),
        "inputs": np.zeros((2, 1)),
        "weights": np.zeros(1),
    }
    args.update(kwargs)
    circuit, inputs, weights = args.pop("circuit"), args.pop("inputs"), args.pop("weights")
    with pytest.raises(error) as err:
        evaluate_qpy(circuit, inputs, weights, **args)  # type: ignore[arg-type]
    assert getattr(err.value, "field", None) == field


def test_job_runner_evaluates_a_qpy_request() -> None:
    """The path a job takes: JSON request -> runner -> evaluate_qpy."""
    from qldm.jobs.model import JobRequest
    from qldm.jobs.runner import execute

    t, s = Parameter("t"), Parameter("s")
    qc = QuantumCircuit(1)
    qc.ry(t, 0)
    qc.ry(s, 0)
    circuit = QpyCircuit.from_circuit(qc, ["Z"], input_params=[t], weight_params=[s])
    request = JobRequest.parse(
        {
            "circuit": circuit.model_dump(mode="json"),
            "task": "jacobian",
            "backend": "aer",
            "inputs": [[0.1], [0.9]],
            "weights": [0.4],
        }
    )
    result = execute(request)
    assert result.values is not None and result.d_weights is not None
    angles = np.array([0.5, 1.3])
    np.testing.assert_allclose(np.asarray(result.values)[0, :, 0], np.cos(angles), atol=1e-10)
    np.testing.assert_allclose(
        np.asarray(result.d_weights)[0, :, 0, 0], -np.sin(angles), atol=1e-10
    )


def test_aer_binds_every_parameterized_gate_it_is_left_with() -> None:
    """Aer's broadcast binding of each rotation kept in AER_BASIS equals Statevector's."""
    from qldm.backends.qpy_aer import AER_BASIS, SHIFT_RULES

    p = Parameter("p")
    kept = [g for g in AER_BASIS if g in SHIFT_RULES]
    assert "cp" not in kept and "crx" not in kept
    labels = ["XX", "XI", "IX", "YI", "IY", "ZZ", "YX"]
    values = np.array([0.7, -1.3])
    for name in kept:
        qc = QuantumCircuit(2)
        qc.h([0, 1])
        qc.s(1)
        qc.ry(0.3, 0)
        getattr(qc, name)(0.5 * p + 0.1, *([0] if name in ("rx", "ry", "rz", "p") else [0, 1]))
        evs = EstimatorV2().run([(qc, [labels], values.reshape(2, 1, 1))]).result()[0].data.evs
        for row, v in zip(evs, values, strict=True):
            state = Statevector(qc.assign_parameters([v]))
            ref = [state.expectation_value(SparsePauliOp(lab)).real for lab in labels]
            np.testing.assert_allclose(row, ref, atol=1e-10, err_msg=name)


@pytest.mark.parametrize(
    "body",
    [
        {
            "n_qubits": 4,
            "encoding": "angle_ry",
            "ansatz": "hqconv",
            "layers": 2,
            "channel": {"kind": "amplitude_damping", "strength": 0.05},
            "observables": ["ZIIX", "IYZI"],
        },
        {"n_qubits": 5, "encoding": "dense_angle", "ansatz": "ry_rz_brickwork", "layers": 2},
    ],
)
def test_a_spec_circuit_sent_as_qpy_agrees_with_the_aer_backend(body: dict[str, object]) -> None:
    """The builder's circuit (channels as Aer noise instructions) through QPY and this module
    gives what the ``aer`` backend's own shift plan gives for the spec."""
    from qldm.backends import get_backend
    from qldm.backends.base import Workload
    from qldm.circuits import PQCSpec
    from qldm.circuits.qiskit_builder import build

    spec = PQCSpec.parse(body)
    built = build(spec)
    circuit = QpyCircuit.from_circuit(
        built.circuit, spec.pauli_labels(), input_params=built.inputs, weight_params=built.weights
    )
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (3, spec.n_inputs))
    w = rng.uniform(-2, 2, spec.n_weights)
    ev = evaluate_qpy(circuit, x, w, task="jacobian")
    ref = get_backend("aer").run(Workload.build(spec, x, w, task="jacobian"))
    assert ev.metadata["method"] == ("density_matrix" if spec.noisy else "statevector")
    assert ref.d_inputs is not None and ref.d_weights is not None
    np.testing.assert_allclose(ev.values, ref.values, atol=1e-10)
    np.testing.assert_allclose(ev.d_inputs, ref.d_inputs, atol=1e-10)  # type: ignore[arg-type]
    np.testing.assert_allclose(ev.d_weights, ref.d_weights, atol=1e-10)  # type: ignore[arg-type]


def test_an_opaque_gate_cannot_be_translated() -> None:
    from qiskit.circuit import Gate

    t = Parameter("t")
    qc = QuantumCircuit(1)
    qc.append(Gate("mystery", 1, [t]), [0])
    circuit = QpyCircuit.from_circuit(qc, ["Z"], weight_params=[t])
    with pytest.raises(InvalidSpecError) as err:
        evaluate_qpy(circuit, np.zeros((1, 0)), np.array([0.1]))
    assert err.value.field == "circuit.qpy"
    assert "cannot be translated" in err.value.message
