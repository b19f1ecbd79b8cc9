"""QPY circuits: round trip, parameter roles, observables, and every validation error's field."""

from __future__ import annotations

import base64
import io
import subprocess
import sys

import numpy as np
import pytest
from qiskit import QuantumCircuit, qpy
from qiskit.circuit import Parameter, ParameterVector
from qiskit.quantum_info import Operator, SparsePauliOp

from qldm.circuits.qpy import MAX_QPY_CHARS, QpyCircuit
from qldm.circuits.spec import MAX_QUBITS
from qldm.errors import InvalidSpecError


def _encode(*circuits: QuantumCircuit) -> str:
    buffer = io.BytesIO()
    qpy.dump(list(circuits), buffer)
    return base64.b64encode(buffer.getvalue()).decode()


def _two_qubit() -> tuple[QuantumCircuit, ParameterVector, Parameter]:
    x = ParameterVector("x", 2)
    w = Parameter("w")
    qc = QuantumCircuit(2)
    qc.ry(x[0], 0)
    qc.rx(2 * x[1] + 0.1, 1)
    qc.crz(w, 0, 1)
    return qc, x, w


def _body(**changes: object) -> dict[str, object]:
    qc, _, _ = _two_qubit()
    body: dict[str, object] = {
        "qpy": _encode(qc),
        "observables": ["ZI", "IZ"],
        "input_params": ["x[0]", "x[1]"],
        "weight_params": ["w"],
    }
    body.update(changes)
    return body


def test_round_trip_keeps_circuit_roles_and_observables() -> None:
    qc, x, w = _two_qubit()
    circuit = QpyCircuit.from_circuit(
        qc, ["ZI", {"XX": 0.5, "ZZ": -1.0}], input_params=x, weight_params=[w]
    )
    again = QpyCircuit.parse(circuit.model_dump_json())
    assert again == circuit
    loaded = again.load()
    assert [p.name for p in loaded.inputs] == ["x[0]", "x[1]"]
    assert [p.name for p in loaded.weights] == ["w"]
    values = {x[0]: 0.3, x[1]: -0.7, w: 1.1}
    assert Operator(loaded.circuit.assign_parameters(values)).equiv(
        Operator(qc.assign_parameters(values))
    )
    assert loaded.observables[0] == SparsePauliOp("ZI")
    assert loaded.observables[1] == SparsePauliOp(["XX", "ZZ"], [0.5, -1.0])
    assert (circuit.n_inputs, circuit.n_weights, circuit.n_outputs, circuit.n_qubits) == (
        2,
        1,
        2,
        2,
    )
    assert circuit.load() is again.load()  # cached by content


def test_sparse_pauli_op_observable_and_names_given_as_strings() -> None:
    qc, _, _ = _two_qubit()
    obs = SparsePauliOp(["ZZ", "XI", "ZZ"], [0.25, 2.0, 0.25])
    circuit = QpyCircuit.from_circuit(qc, [obs], input_params=["x[0]", "x[1]"], weight_params=["w"])
    assert circuit.observables == [{"ZZ": 0.5, "XI": 2.0}]
    with pytest.raises(InvalidSpecError) as err:
        QpyCircuit.from_circuit(
            qc, [SparsePauliOp("ZZ", 1j)], input_params=["x[0]", "x[1]"], weight_params=["w"]
        )
    assert err.value.field == "circuit.observables"


def test_final_measurements_are_removed_mid_circuit_ones_rejected() -> None:
    qc, x, w = _two_qubit()
    measured = qc.copy()
    measured.measure_all()
    loaded = QpyCircuit.from_circuit(measured, ["ZZ"], input_params=x, weight_params=[w]).load()
    assert loaded.circuit.num_clbits == 0
    assert "measure" not in loaded.circuit.count_ops()

    mid = QuantumCircuit(1, 1)
    mid.h(0)
    mid.measure(0, 0)
    mid.h(0)
    with pytest.raises(InvalidSpecError) as err:
        QpyCircuit.parse({"qpy": _encode(mid), "observables": ["Z"]})
    assert err.value.field == "circuit.qpy"
    assert "measures before its end" in err.value.message

    flow = QuantumCircuit(1, 1)
    flow.measure(0, 0)
    with flow.if_test((flow.clbits[0], 1)):
        flow.x(0)
    with pytest.raises(InvalidSpecError) as err:
        QpyCircuit.parse({"qpy": _encode(flow), "observables": ["Z"]})
    assert err.value.field == "circuit.qpy"


def test_largest_circuit_is_accepted() -> None:
    qc = QuantumCircuit(MAX_QUBITS)
    qc.h(range(MAX_QUBITS))
    circuit = QpyCircuit.parse({"qpy": _encode(qc), "observables": ["Z" * MAX_QUBITS]})
    assert circuit.n_qubits == MAX_QUBITS
    assert circuit.n_inputs == circuit.n_weights == 0


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"qpy": "not base64 !!"}, "circuit.qpy", "base64"),
        ({"qpy": base64.b64encode(b"QISKITjunk").decode()}, "circuit.qpy", "QPY"),
        ({"qpy": base64.b64encode(b"hello").decode()}, "circuit.qpy", "QPY"),
        ({"qpy": "A" * (MAX_QPY_CHARS + 4)}, "circuit.qpy", "base64 characters"),
        ({"observables": []}, "circuit.observables", "at least one"),
        ({"observables": ["Z"]}, "circuit.observables", "2 qubits"),
        ({"observables": ["ZA"]}, "circuit.observables", "I, X, Y and Z"),
        ({"observables": [{}]}, "circuit.observables", "empty"),
        ({"observables": [{"ZZ": float("nan")}]}, "circuit.observables", "finite"),
        ({"input_params": ["x[0]", "x[0]", "x[1]"]}, "circuit.input_params", "more than once"),
        ({"input_params": ["x[0]", "x[1]", "y"]}, "circuit.input_params", "no parameters"),
        ({"weight_params": ["w", "ghost"]}, "circuit.weight_params", "no parameters"),
        ({"weight_params": ["w", "x[1]"]}, "circuit.weight_params", "both"),
        ({"weight_params": []}, "circuit.weight_params", "neither"),
        ({"input_params": ["x[0]"]}, "circuit.weight_params", "neither"),
        ({"colour": "blue"}, "circuit.colour", "Extra inputs"),
    ],
)
def test_every_validation_error_names_its_field(
    changes: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(InvalidSpecError) as err:
        QpyCircuit.parse(_body(**changes))
    assert err.value.field == field
    assert words in err.value.message


def test_one_circuit_per_file_and_qubit_limits() -> None:
    qc, _, _ = _two_qubit()
    with pytest.raises(InvalidSpecError) as err:
        QpyCircuit.parse(_body(qpy=_encode(qc, qc)))
    assert err.value.field == "circuit.qpy"
    assert "exactly one circuit" in err.value.message
    big = QuantumCircuit(MAX_QUBITS + 1)
    with pytest.raises(InvalidSpecError) as err:
        QpyCircuit.parse({"qpy": _encode(big), "observables": ["Z" * (MAX_QUBITS + 1)]})
    assert err.value.field == "circuit.qpy"
    assert f"1 to {MAX_QUBITS}" in err.value.message


def test_parse_accepts_json_text_and_rejects_a_list() -> None:
    body = _body()
    import json

    assert QpyCircuit.parse(json.dumps(body)).n_inputs == 2
    with pytest.raises(InvalidSpecError):
        QpyCircuit.parse([body])


def test_values_through_the_loaded_circuit_match_the_original() -> None:
    """The decoded circuit computes what the client's circuit computes (Statevector)."""
    from qiskit.quantum_info import Statevector

    qc, x, w = _two_qubit()
    qc.h(0)
    loaded = QpyCircuit.from_circuit(qc, ["XZ"], input_params=x, weight_params=[w]).load()
    rng = np.random.default_rng(0)
    for _ in range(3):
        vals = rng.uniform(-np.pi, np.pi, 3)
        bind_new = dict(zip((*loaded.inputs, *loaded.weights), vals, strict=True))
        bind_old = dict(zip((*x, w), vals, strict=True))
        a = Statevector(loaded.circuit.assign_parameters(bind_new))
        b = Statevector(qc.assign_parameters(bind_old))
        assert a.equiv(b)


def test_circuits_package_imports_no_torch_sql_or_http() -> None:
    code = (
        "import sys, circuits.qpy; "
        "print([m for m in ('torch', 'sqlalchemy', 'fastapi', 'httpx') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def _header_offset(raw: bytes) -> int:
    """Where the circuit header of a one-circuit QPY file (format >= 16) starts."""
    import struct

    (offset,) = struct.unpack_from("!Q", raw, 20)
    return int(offset)


def test_declared_sizes_are_checked_before_qiskit_allocates() -> None:
    """A tiny file that declares 10^8 qubits would make qpy.load abort the process."""
    import struct

    qc = QuantumCircuit(3)
    qc.h(0)
    buffer = io.BytesIO()
    qpy.dump(qc, buffer)
    raw = bytearray(buffer.getvalue())
    start = _header_offset(bytes(raw))
    assert struct.unpack_from("!I", raw, start + 5)[0] == 3  # the num_qubits field
    bomb = raw.copy()
    struct.pack_into("!I", bomb, start + 5, 100_000_000)
    with pytest.raises(InvalidSpecError) as err:
        QpyCircuit.parse({"qpy": base64.b64encode(bytes(bomb)).decode(), "observables": ["ZZZ"]})
    assert err.value.field == "circuit.qpy"
    assert "100000000 qubits" in err.value.message
    clbits = raw.copy()
    struct.pack_into("!I", clbits, start + 9, 10**9)
    with pytest.raises(InvalidSpecError, match="classical bits"):
        QpyCircuit.parse({"qpy": base64.b64encode(bytes(clbits)).decode(), "observables": ["ZZZ"]})
    for version, words in ((9, "too old"), (qpy.QPY_VERSION + 1, "newer")):
        other = raw.copy()
        other[6] = version
        with pytest.raises(InvalidSpecError, match=words):
            QpyCircuit.parse({"qpy": base64.b64encode(bytes(other)).decode(), "observables": ["Z"]})


def test_every_qpy_format_this_qiskit_writes_is_read() -> None:
    qc, _, _ = _two_qubit()
    for version in range(qpy.QPY_COMPATIBILITY_VERSION, qpy.QPY_VERSION + 1):
        buffer = io.BytesIO()
        qpy.dump(qc, buffer, version=version)
        circuit = QpyCircuit.parse(_body(qpy=base64.b64encode(buffer.getvalue()).decode()))
        assert circuit.n_qubits == 2 and circuit.n_inputs == 2


def test_a_truncated_file_is_an_error_without_a_backtrace() -> None:
    qc, _, _ = _two_qubit()
    raw = base64.b64decode(_encode(qc))
    with pytest.raises(InvalidSpecError) as err:
        QpyCircuit.parse(_body(qpy=base64.b64encode(raw[: len(raw) - 30]).decode()))
    assert err.value.field == "circuit.qpy"
    assert "\x1b[" not in err.value.message and len(err.value.message) < 400
