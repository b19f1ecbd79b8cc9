"""The PQC spec: JSON round trip, sizes, and every bad-spec case naming its field."""

from __future__ import annotations

import json

import pytest
from qiskit.quantum_info import SparsePauliOp

from qldm.circuits import MAX_QUBITS, InvalidSpecError, PQCSpec

REFERENCE = {
    "n_qubits": 6,
    "encoding": "angle_ry",
    "ansatz": "ry_rz_brickwork",
    "layers": 6,
    "channel": {"kind": "amplitude_damping", "strength": 0.01},
    "observables": "z_each",
}


def test_reference_spec_sizes_and_json_round_trip() -> None:
    spec = PQCSpec.parse(REFERENCE)
    assert (spec.n_inputs, spec.n_weights, spec.n_outputs) == (6, 72, 6)
    again = PQCSpec.parse(spec.model_dump_json())
    assert again == spec
    assert json.loads(spec.model_dump_json()) == REFERENCE


@pytest.mark.parametrize(
    ("encoding", "n_inputs"),
    [
        ("angle_ry", 3),
        ("angle_rx", 3),
        ("dense_angle", 6),
        ("phase", 3),
        ("amplitude", 8),
        ("basis", 3),
    ],
)
def test_inputs_per_encoding(encoding: str, n_inputs: int) -> None:
    assert PQCSpec(n_qubits=3, encoding=encoding).n_inputs == n_inputs  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ansatz", "n_qubits", "per_layer"),
    [
        ("ry_rz_brickwork", 5, 10),
        ("basic_entangler", 5, 5),
        ("hqconv", 4, 8),
        ("hqconv", 12, 2 * (12 + 2)),
        ("fqconv", 8, 16),
        ("mps", 5, 8),
    ],
)
def test_weights_per_ansatz(ansatz: str, n_qubits: int, per_layer: int) -> None:
    spec = PQCSpec(n_qubits=n_qubits, ansatz=ansatz, layers=3)  # type: ignore[arg-type]
    assert spec.n_weights == 3 * per_layer


def test_z_each_matches_qiskit_sparse_list_order() -> None:
    spec = PQCSpec(n_qubits=4)
    for i, label in enumerate(spec.pauli_labels()):
        assert SparsePauliOp(label) == SparsePauliOp.from_sparse_list([("Z", [i], 1)], 4)


def test_layer_strengths_scalar_per_layer_and_noise_level() -> None:
    spec = PQCSpec.parse(
        {"n_qubits": 1, "layers": 3, "channel": {"kind": "bit_flip", "strength": [0.1, 0.2, 0.3]}}
    )
    assert spec.layer_strengths() == (0.1, 0.2, 0.3)
    assert spec.layer_strengths(0.5) == (0.5, 0.5, 0.5)
    assert PQCSpec(n_qubits=1, layers=2).layer_strengths() == (0.0, 0.0)


@pytest.mark.parametrize(
    ("patch", "field", "words"),
    [
        ({"n_qubits": MAX_QUBITS + 1}, "n_qubits", "less than or equal"),
        ({"n_qubits": 0}, "n_qubits", "greater than or equal"),
        ({"encoding": "angle_rr"}, "encoding", "angle_ry"),
        ({"ansatz": "brickwork"}, "ansatz", "ry_rz_brickwork"),
        ({"layers": 0}, "layers", "greater than or equal"),
        ({"channel": {"kind": "thermal", "strength": 0.1}}, "channel.kind", "amplitude_damping"),
        ({"channel": {"kind": "bit_flip", "strength": 1.5}}, "channel.strength", "[0, 1]"),
        ({"channel": {"kind": "bit_flip", "strength": -0.1}}, "channel.strength", "[0, 1]"),
        (
            {"channel": {"kind": "bit_flip", "strength": [0.1, 0.2]}},
            "channel.strength",
            "layers = 6",
        ),
        ({"channel": {"kind": "bit_flip", "strength": 0.1, "seed": 1}}, "channel.seed", "Extra"),
        ({"observables": ["ZZ"]}, "observables", "n_qubits = 6"),
        ({"observables": ["ZZZZZQ"]}, "observables", "I, X, Y and Z"),
        ({"observables": []}, "observables", "at least one"),
        ({"ansatz": "hqconv"}, "ansatz", "multiple of 4"),
        ({"unknown": 1}, "unknown", "Extra inputs"),
    ],
)
def test_bad_specs_name_their_field(patch: dict, field: str, words: str) -> None:
    with pytest.raises(InvalidSpecError) as info:
        PQCSpec.parse({**REFERENCE, **patch})
    assert info.value.field == field
    assert words in info.value.message
    assert isinstance(info.value, ValueError)


def test_fqconv_needs_two_channels_and_mps_two_qubits() -> None:
    with pytest.raises(InvalidSpecError, match="at least 2 qubits"):
        PQCSpec.parse({"n_qubits": 1, "ansatz": "mps"})
    with pytest.raises(InvalidSpecError):
        PQCSpec.parse({"n_qubits": 4, "ansatz": "fqconv"})


def test_noise_levels_need_a_channel_and_a_valid_strength() -> None:
    with pytest.raises(InvalidSpecError) as info:
        PQCSpec(n_qubits=1).layer_strengths(0.1)
    assert info.value.field == "noise_levels"
    spec = PQCSpec.parse({**REFERENCE})
    with pytest.raises(InvalidSpecError, match=r"\[0, 1\]"):
        spec.layer_strengths(1.2)


def test_spec_is_immutable_and_hashable() -> None:
    spec = PQCSpec.parse(REFERENCE)
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError on frozen models
        spec.layers = 2  # type: ignore[misc]
    assert hash(spec) == hash(PQCSpec.parse(REFERENCE))
