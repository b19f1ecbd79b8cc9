"""Hardware noise realizations against the Kraus channels on Aer (density matrix), and the
calibrated subtraction arithmetic."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from qiskit_aer import AerSimulator

from qldm.circuits import PQCSpec
from qldm.circuits.qiskit_builder import build
from qldm.circuits.transpile import hardware_circuit, transpile_spec
from qldm.errors import NoiseFloorError
from qldm.mitigation.noise import (
    compose,
    device_floor,
    dilation_angle,
    injected_strengths,
    slot_bindings,
    slot_distribution,
)

SIM = AerSimulator(method="density_matrix")


def _spec(kind: str, strength: float, n: int = 2, layers: int = 1) -> PQCSpec:
    return PQCSpec.parse(
        {
            "n_qubits": n,
            "layers": layers,
            "ansatz": "ry_rz_brickwork",
            "channel": {"kind": kind, "strength": strength},
        }
    )


def _data_values(spec: PQCSpec, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-np.pi, np.pi, spec.n_inputs + spec.n_weights)


def _rho(circuit, n_data: int) -> np.ndarray:
    qc = circuit.decompose(gates_to_decompose=["cry", "crx", "crz"])
    qc.save_density_matrix(qubits=list(range(n_data)))
    return np.asarray(SIM.run(qc).result().data(0)["density_matrix"])


def _kraus_rho(spec: PQCSpec, values: np.ndarray) -> np.ndarray:
    ref = build(spec)
    bound = ref.circuit.assign_parameters(dict(zip(ref.parameter_order(), values, strict=True)))
    return _rho(bound, spec.n_qubits)


def _hardware_rho(spec: PQCSpec, values: np.ndarray, slots: np.ndarray) -> np.ndarray:
    hw = hardware_circuit(spec)
    full = np.concatenate([values, slots])
    bound = hw.circuit.assign_parameters(dict(zip(hw.parameter_order(), full, strict=True)))
    return _rho(bound, spec.n_qubits)


@pytest.mark.parametrize(
    ("kind", "strength"), [("bit_flip", 0.13), ("phase_flip", 0.3), ("depolarizing", 0.21)]
)
def test_pauli_instances_average_to_the_channel_exactly(kind: str, strength: float) -> None:
    spec = _spec(kind, strength, n=2, layers=1)
    values = _data_values(spec)
    per_slot = slot_distribution(kind, strength)
    n_slots = spec.layers * spec.n_qubits
    average = np.zeros((4, 4), dtype=complex)
    for combo in itertools.product(per_slot, repeat=n_slots):
        slots = np.concatenate([np.array(angles) for angles, _ in combo])
        weight = float(np.prod([p for _, p in combo]))
        average += weight * _hardware_rho(spec, values, slots)
    np.testing.assert_allclose(average, _kraus_rho(spec, values), atol=1e-10)


def test_random_instances_converge_to_the_channel() -> None:
    spec = _spec("depolarizing", 0.4, n=1, layers=2)
    values = _data_values(spec, seed=5)
    injected = np.full((2, 1), 0.4)
    slots = slot_bindings("depolarizing", injected, instances=512, rng=np.random.default_rng(0))
    average = np.mean([_hardware_rho(spec, values, row) for row in slots], axis=0)
    # Scrambled Sobol instances: every Pauli frequency is within 1/512 of its probability.
    np.testing.assert_allclose(average, _kraus_rho(spec, values), atol=0.01)


def test_instance_frequencies_are_stratified() -> None:
    injected = np.array([[0.05, 0.5, 0.93]])
    slots = slot_bindings("bit_flip", injected, instances=64, rng=np.random.default_rng(1))
    freq = (slots > 1.0).mean(axis=0)
    assert np.all(np.abs(freq - injected[0]) <= 1 / 64 + 1e-12)
    # Unbiased: over many independent scramblings the mean frequency is the probability.
    means = np.mean(
        [
            (
                slot_bindings("bit_flip", injected, instances=4, rng=np.random.default_rng(s)) > 1
            ).mean(axis=0)
            for s in range(2000)
        ],
        axis=0,
    )
    np.testing.assert_allclose(means, injected[0], atol=0.02)


@pytest.mark.parametrize("gamma", [0.0, 0.17, 0.6, 1.0])
def test_ancilla_dilation_is_amplitude_damping_exactly(gamma: float) -> None:
    spec = _spec("amplitude_damping", gamma, n=2, layers=2)
    values = _data_values(spec, seed=7)
    slots = np.full(spec.layers * spec.n_qubits, dilation_angle(gamma))
    np.testing.assert_allclose(
        _hardware_rho(spec, values, slots), _kraus_rho(spec, values), atol=1e-10
    )


@pytest.mark.parametrize("kind", ["bit_flip", "phase_flip", "depolarizing", "amplitude_damping"])
def test_injected_remainder_composes_to_the_target(kind: str) -> None:
    floor = np.array([0.004, 0.02])
    targets = np.array([0.05, 0.3])
    injected = injected_strengths(kind, targets, floor)
    for layer, target in enumerate(targets):
        for q, f in enumerate(floor):
            assert compose(kind, f, injected[layer, q]) == pytest.approx(target, abs=1e-12)


def test_composition_laws() -> None:
    # Independent bit flips p, q: flip iff exactly one flips.
    assert compose("bit_flip", 0.1, 0.2) == pytest.approx(0.1 * 0.8 + 0.9 * 0.2)
    # Amplitude damping: survival probabilities multiply.
    assert compose("amplitude_damping", 0.1, 0.2) == pytest.approx(1 - 0.9 * 0.8)


def test_below_the_floor_is_refused_with_the_floor() -> None:
    floor = np.array([0.004, 0.02])
    with pytest.raises(NoiseFloorError) as info:
        injected_strengths("bit_flip", np.array([0.01]), floor)
    assert info.value.field == "channel.strength"
    assert "0.02" in str(info.value)
    allowed = injected_strengths("bit_flip", np.array([0.01]), floor, allow_floor=True)
    assert allowed[0, 1] == 0.0 and allowed[0, 0] > 0.0


def test_device_floor_from_calibration() -> None:
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    backend = FakeManilaV2()
    spec = _spec("bit_flip", 0.1, n=2, layers=2)
    isa = transpile_spec(spec, backend)
    floors = {
        kind: device_floor(kind, isa, backend, layers=2)
        for kind in ("bit_flip", "phase_flip", "depolarizing", "amplitude_damping")
    }
    for kind, f in floors.items():
        assert f.shape == (2,)
        assert np.all(f > 0.0) and np.all(f < 0.05), (kind, f)
    # T2 <= 2 T1 makes dephasing at least as strong as relaxation in the twirled channel.
    assert np.all(floors["phase_flip"] >= 0.5 * floors["bit_flip"])
