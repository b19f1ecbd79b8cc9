"""The counts task: closed forms and qiskit.quantum_info distributions, within binomial error."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import Statevector

from qldm.backends.counts import MAX_SHOTS, sample_counts
from qldm.circuits import PQCSpec
from qldm.circuits.qiskit_builder import build
from qldm.circuits.qpy import QpyCircuit
from qldm.errors import BackendLimitError, InvalidSpecError


def _ry_spec(**channel: object) -> PQCSpec:
    """One qubit: RY(x) then RX(w) (basic_entangler, no CNOT on one qubit)."""
    body: dict[str, object] = {"n_qubits": 1, "encoding": "angle_ry", "ansatz": "basic_entangler"}
    if channel:
        body["channel"] = channel
    return PQCSpec.parse(body)


def _within(count: int, shots: int, p: float, z: float = 5.0) -> bool:
    return abs(count / shots - p) <= z * np.sqrt(p * (1 - p) / shots) + 1e-12


@pytest.mark.parametrize("backend", ["aer", "exact"])
def test_ry_gives_sin_squared(backend: str) -> None:
    angles = np.array([0.0, 0.4, 1.3, np.pi / 2, 2.5, np.pi])
    shots = 5000
    counts = sample_counts(
        _ry_spec(), angles[:, None], np.zeros(1), shots=shots, seed=3, backend=backend
    )
    assert len(counts) == 1 and len(counts[0]) == angles.size
    for angle, c in zip(angles, counts[0], strict=True):
        assert sum(c.values()) == shots
        assert set(c) <= {"0", "1"}
        assert _within(c.get("1", 0), shots, np.sin(angle / 2) ** 2)
    assert counts[0][0] == {"0": shots}
    assert counts[0][-1] == {"1": shots}


def test_bit_flip_on_zero_gives_p_for_each_noise_level() -> None:
    spec = _ry_spec(kind="bit_flip", strength=0.5)
    levels = [0.0, 0.05, 0.3]
    shots = 20_000
    counts = sample_counts(
        spec, np.zeros((2, 1)), np.zeros(1), noise_levels=levels, shots=shots, seed=5
    )
    assert [len(level) for level in counts] == [2, 2, 2]
    for p, level in zip(levels, counts, strict=True):
        for c in level:
            assert sum(c.values()) == shots
            assert _within(c.get("1", 0), shots, p)
    assert counts[0][0] == {"0": shots}
    # the spec's own strength when no levels are given
    own = sample_counts(spec, np.zeros((1, 1)), np.zeros(1), shots=shots, seed=5)
    assert len(own) == 1 and _within(own[0][0].get("1", 0), shots, 0.5)


def test_seeds_reproduce_and_differ() -> None:
    spec = _ry_spec()
    x = np.array([[0.7], [1.9]])
    a = sample_counts(spec, x, np.array([0.4]), shots=1000, seed=42)
    b = sample_counts(spec, x, np.array([0.4]), shots=1000, seed=42)
    c = sample_counts(spec, x, np.array([0.4]), shots=1000, seed=43)
    assert a == b
    assert a != c


def test_bitstrings_put_qubit_zero_rightmost() -> None:
    spec = PQCSpec.parse({"n_qubits": 3, "encoding": "basis", "ansatz": "basic_entangler"})
    # basis encoding RX(pi x_i); basic_entangler with w = 0 is a CNOT ring: |100> (q0 = 1)
    # -> CX(0,1) -> q1 = 1 -> CX(1,2) -> q2 = 1 -> CX(2,0) -> q0 = 0: qubits (q2 q1 q0) = 110
    counts = sample_counts(spec, [[1, 0, 0], [0, 0, 0]], np.zeros(3), shots=10, seed=0)
    assert counts == [[{"110": 10}, {"000": 10}]]


def _statevector_probabilities(spec: PQCSpec, x: np.ndarray, w: np.ndarray) -> dict[str, float]:
    """Independent reference: qiskit.quantum_info on the builder's circuit, bound."""
    if spec.encoding == "amplitude":
        qc = build(spec, amplitudes=x)
        circuit = qc.circuit.assign_parameters(dict(zip(qc.weights, w, strict=True)))
    else:
        qc = build(spec)
        circuit = qc.circuit.assign_parameters(
            dict(zip(qc.parameter_order(), np.concatenate([x, w]), strict=True))
        )
    return Statevector(circuit).probabilities_dict()


@pytest.mark.parametrize(
    "body",
    [
        {"n_qubits": 4, "encoding": "angle_ry", "ansatz": "hqconv", "layers": 1},
        {"n_qubits": 3, "encoding": "amplitude", "ansatz": "ry_rz_brickwork", "layers": 2},
        {"n_qubits": 3, "encoding": "dense_angle", "ansatz": "mps", "layers": 2},
    ],
)
def test_distribution_matches_statevector(body: dict[str, object]) -> None:
    spec = PQCSpec.parse(body)
    rng = np.random.default_rng(1)
    x = rng.uniform(-2, 2, (2, spec.n_inputs))
    w = rng.uniform(-np.pi, np.pi, spec.n_weights)
    shots = 20_000
    counts = sample_counts(spec, x, w, shots=shots, seed=9)
    for b in range(2):
        ref = _statevector_probabilities(spec, x[b], w)
        assert set(counts[0][b]) <= {k for k, v in ref.items() if v > 1e-12}
        for bits, p in ref.items():
            assert _within(counts[0][b].get(bits, 0), shots, p), (b, bits)


def test_amplitude_encoding_with_damping_and_levels() -> None:
    """|11> -> mps (w = 0: CX(0,1)) -> |q1 q0> = 01 -> damping g on each qubit: P(00) = g."""
    spec = PQCSpec.parse(
        {
            "n_qubits": 2,
            "encoding": "amplitude",
            "ansatz": "mps",
            "channel": {"kind": "amplitude_damping", "strength": 0.1},
        }
    )
    shots = 20_000
    counts = sample_counts(
        spec,
        [[0, 0, 0, 3.0], [1.0, 0, 0, 0]],
        np.zeros(2),
        noise_levels=[0.1, 0.4],
        shots=shots,
        seed=2,
    )
    for g, level in zip([0.1, 0.4], counts, strict=True):
        assert set(level[0]) == {"00", "01"}
        assert _within(level[0]["00"], shots, g)
        assert level[1] == {"00": shots}


def test_qpy_circuit_counts() -> None:
    t = Parameter("t")
    qc = QuantumCircuit(2)
    qc.ry(t, 0)
    qc.cx(0, 1)
    qc.measure_all()
    circuit = QpyCircuit.from_circuit(qc, ["ZZ"], input_params=[t])
    shots = 10_000
    counts = sample_counts(circuit, [[np.pi / 2], [0.0]], np.zeros(0), shots=shots, seed=4)
    assert set(counts[0][0]) == {"00", "11"}
    assert _within(counts[0][0]["11"], shots, 0.5)
    assert counts[0][1] == {"00": shots}
    with pytest.raises(InvalidSpecError) as err:
        sample_counts(circuit, [[0.0]], np.zeros(0), noise_levels=[0.1], shots=10, seed=0)
    assert err.value.field == "noise_levels"


def test_runner_gathers_counts_level_major() -> None:
    from qldm.jobs.model import JobRequest
    from qldm.jobs.runner import execute

    spec = _ry_spec(kind="bit_flip", strength=0.0)
    request = JobRequest.parse(
        {
            "circuit": spec.model_dump(mode="json"),
            "task": "counts",
            "backend": "aer",
            "inputs": [[0.0], [np.pi]],
            "weights": [0.0],
            "noise_levels": [0.0, 1.0],
            "shots": 50,
            "seed": 1,
        }
    )
    result = execute(request)
    assert result.counts == [{"0": 50}, {"1": 50}, {"1": 50}, {"0": 50}]


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"shots": None}, InvalidSpecError, "shots"),
        ({"shots": 0}, InvalidSpecError, "shots"),
        ({"shots": MAX_SHOTS + 1}, InvalidSpecError, "shots"),
        ({"seed": "abc"}, InvalidSpecError, "seed"),
        ({"backend": "fake:fake_manila"}, BackendLimitError, "backend"),
        ({"inputs": np.zeros((2, 2))}, InvalidSpecError, "inputs"),
        ({"weights": np.zeros(3)}, InvalidSpecError, "weights"),
        ({"noise_levels": [0.1]}, InvalidSpecError, "noise_levels"),  # channel is none
        ({"spec": "circuit"}, InvalidSpecError, "circuit"),
    ],
)
def test_errors_name_their_field(
    kwargs: dict[str, object], error: type[Exception], field: str
) -> None:
    args: dict[str, object] = {
        "spec": _ry_spec(),
        "inputs": np.zeros((2, 1)),
        "weights": np.zeros(1),
        "shots": 100,
        "seed": 1,
    }
    args.update(kwargs)
    with pytest.raises(error) as err:
        sample_counts(**args)  # type: ignore[arg-type]
    assert getattr(err.value, "field", None) == field


def test_one_aer_run_for_all_levels_and_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    from qiskit_aer import AerSimulator

    calls: list[int] = []
    original = AerSimulator.run

    def counting_run(self: AerSimulator, circuits: object, **kwargs: object) -> object:
        calls.append(1)
        return original(self, circuits, **kwargs)

    monkeypatch.setattr(AerSimulator, "run", counting_run)
    spec = _ry_spec(kind="depolarizing", strength=0.1)
    counts = sample_counts(
        spec, np.zeros((5, 1)), np.zeros(1), noise_levels=[0.0, 0.5, 1.0], shots=100, seed=0
    )
    assert len(calls) == 1
    assert [len(level) for level in counts] == [5, 5, 5]
    amp = PQCSpec.parse({"n_qubits": 2, "encoding": "amplitude", "ansatz": "mps"})
    sample_counts(amp, np.eye(4), np.zeros(2), shots=100, seed=0)
    assert len(calls) == 2
