"""The compiled gate program and the Qiskit circuit built from it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from qiskit.quantum_info import Statevector

from qldm.circuits import InvalidSpecError, PQCSpec, compile_spec
from qldm.circuits.program import Channel, Gate, Param
from qldm.circuits.qiskit_builder import build
from qldm.circuits.shifts import FOUR_TERM, TWO_TERM, shift_rule


def test_brickwork_layer_is_ry_rz_then_even_then_odd_cnots() -> None:
    program = compile_spec(PQCSpec(n_qubits=4, layers=1))
    gates = [g for g in program.ansatz if isinstance(g, Gate)]
    expected = []
    for q in range(4):
        expected.append(Gate("ry", (q,), Param("weight", 2 * q)))
        expected.append(Gate("rz", (q,), Param("weight", 2 * q + 1)))
    expected += [Gate("cx", (0, 1)), Gate("cx", (2, 3)), Gate("cx", (1, 2))]
    assert gates == expected


def test_weights_are_ordered_layer_then_qubit_then_gate() -> None:
    program = compile_spec(PQCSpec(n_qubits=3, layers=2))
    indices = [
        (g.name, g.qubits[0], g.param.index)
        for g in program.ansatz
        if isinstance(g, Gate) and g.param
    ]
    assert indices[6:8] == [("ry", 0, 6), ("rz", 0, 7)]
    assert [i for *_, i in indices] == list(range(12))


def test_channels_follow_every_layer_on_every_qubit() -> None:
    spec = PQCSpec.parse(
        {"n_qubits": 2, "layers": 3, "channel": {"kind": "bit_flip", "strength": 0.1}}
    )
    channels = [op for op in compile_spec(spec).ansatz if isinstance(op, Channel)]
    assert channels == [Channel(q, layer) for layer in range(3) for q in range(2)]
    assert not any(isinstance(op, Channel) for op in compile_spec(PQCSpec(n_qubits=2)).ansatz)


def test_hqconv_blocks_stay_inside_channels_then_link_channels() -> None:
    program = compile_spec(PQCSpec(n_qubits=8, ansatz="hqconv"))
    pairs = [g.qubits for g in program.ansatz if isinstance(g, Gate) and g.name == "crz"]
    assert pairs == [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4)]


def test_fqconv_gates_cross_channels() -> None:
    program = compile_spec(PQCSpec(n_qubits=8, ansatz="fqconv"))
    for gate in program.ansatz:
        assert isinstance(gate, Gate)
        assert gate.qubits[1] == (gate.qubits[0] + 4) % 8


def _ring(n: int) -> list[tuple[int, ...]]:
    spec = PQCSpec(n_qubits=n, ansatz="basic_entangler")
    return [g.qubits for g in compile_spec(spec).ansatz if isinstance(g, Gate) and g.name == "cx"]


def test_basic_entangler_ring() -> None:
    assert _ring(1) == []
    assert _ring(2) == [(0, 1)]
    assert _ring(3) == [(0, 1), (1, 2), (2, 0)]


def _z_expectations(spec: PQCSpec, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    built = build(spec)
    bound = built.circuit.assign_parameters(
        dict(zip(built.parameter_order(), [*x, *w], strict=True))
    )
    state = Statevector(bound)
    return np.array([state.expectation_value(obs).real for obs in built.observables])


def test_angle_encoding_closed_form_through_qiskit() -> None:
    # RY(x) then RX(w): <Z> = cos(x) cos(w) on each qubit (basic_entangler on one qubit).
    spec = PQCSpec(n_qubits=1, encoding="angle_ry", ansatz="basic_entangler")
    x, w = 0.7, -1.3
    assert _z_expectations(spec, np.array([x]), np.array([w]))[0] == pytest.approx(
        math.cos(x) * math.cos(w)
    )


def test_basis_encoding_prepares_the_bitstring() -> None:
    spec = PQCSpec(n_qubits=3, encoding="basis", ansatz="basic_entangler")
    values = _z_expectations(spec, np.array([1.0, 0.0, 1.0]), np.zeros(3))
    # (q0, q1, q2) = (1, 0, 1); cx(0,1) -> (1, 1, 1); cx(1,2) -> (1, 1, 0); cx(2,0) -> (1, 1, 0)
    assert values == pytest.approx([-1.0, -1.0, 1.0])


def test_amplitude_encoding_normalises_and_rejects_zero() -> None:
    spec = PQCSpec(n_qubits=1, encoding="amplitude", ansatz="basic_entangler")
    built = build(spec, amplitudes=[3.0, 4.0])
    bound = built.circuit.assign_parameters({built.weights[0]: 0.0})
    assert Statevector(bound).expectation_value(built.observables[0]).real == pytest.approx(
        (9 - 16) / 25
    )
    with pytest.raises(InvalidSpecError) as info:
        build(spec, amplitudes=[0.0, 0.0])
    assert info.value.field == "inputs"
    with pytest.raises(InvalidSpecError):
        build(spec)


def test_noisy_circuit_carries_one_aer_error_per_qubit_and_layer() -> None:
    spec = PQCSpec.parse(
        {"n_qubits": 3, "layers": 2, "channel": {"kind": "depolarizing", "strength": 0.2}}
    )
    ops = build(spec).circuit.count_ops()
    assert sum(v for k, v in ops.items() if k not in {"ry", "rz", "cx"}) == 6
    assert "quantum_channel" in ops or any("error" in str(k) or "kraus" in str(k) for k in ops)
    assert build(spec, channels=False).circuit.count_ops().keys() == {"ry", "rz", "cx"}


def test_shift_rules_are_exact_on_their_generators() -> None:
    # f(t) = cos(t) for RY; f(t) = cos(t/2)^2-ish for a controlled rotation: check both rules
    # against the analytic derivative of the expectation of a controlled-RX target.
    f = math.cos
    t = 0.37
    assert sum(c * f(t + s) for s, c in shift_rule("ry")) == pytest.approx(-math.sin(t))
    # <Z_target> after H on control, CRX(t): 0.5 * (1 + cos t) -> derivative -0.5 sin t
    g = lambda a: 0.5 * (1 + math.cos(a))  # noqa: E731
    assert sum(c * g(t + s) for s, c in FOUR_TERM) == pytest.approx(-0.5 * math.sin(t))
    # and for a generator with eigenvalues {0, +-1/2} that the two-term rule gets wrong:
    h = lambda a: math.cos(a / 2)  # noqa: E731
    assert sum(c * h(t + s) for s, c in FOUR_TERM) == pytest.approx(-0.5 * math.sin(t / 2))
    assert sum(c * h(t + s) for s, c in TWO_TERM) != pytest.approx(-0.5 * math.sin(t / 2))


@pytest.mark.parametrize(
    ("ansatz", "sizes"),
    [
        ("ry_rz_brickwork", (1, 2, 3, 5)),
        ("basic_entangler", (1, 2, 3, 6)),
        ("hqconv", (4, 8, 12)),
        ("fqconv", (8, 12)),
        ("mps", (2, 3, 7)),
    ],
)
def test_the_specs_weight_count_is_the_programs_gate_count(
    ansatz: str, sizes: tuple[int, ...]
) -> None:
    for n in sizes:
        spec = PQCSpec(n_qubits=n, layers=3, ansatz=ansatz)
        program = compile_spec(spec)
        weighted = [g for g in program.gates if g.param is not None and g.param.source == "weight"]
        assert len(weighted) == spec.n_weights == program.n_weights
        assert spec.n_weights == 3 * spec.weights_per_layer
