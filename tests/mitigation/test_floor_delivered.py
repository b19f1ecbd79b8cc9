"""The noise floor holds: what a fake device delivers is what the job asked for.

The delivered channel is measured independently of the floor estimate: one data qubit
(:func:`qldm.bench.noise_floor.delivered`: the job's own ISA circuit and injected strengths,
simulated exactly with the fake device's noise model, the decay of prepared Z, X, Y states
or of the excited population between one and two layers); several data qubits
(:func:`qldm.bench.noise_floor_layers.delivered_layers`: each layer's channel at its slots,
the device's noise on in that layer only, per qubit the marginal X, Y, Z fidelities)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qldm.backends._runtime_options import ResilienceOptions
from qldm.backends._runtime_pubs import level_slots
from qldm.backends.base import Workload
from qldm.backends.runtime import RuntimeBackend, fake_device
from qldm.bench.noise_floor import _simulator, delivered
from qldm.bench.noise_floor_layers import _slot_errors, _with_noise, delivered_layers
from qldm.circuits import PQCSpec
from qldm.circuits.transpile import choose_layout, transpile_spec
from qldm.errors import InvalidSpecError


@pytest.mark.parametrize(
    ("device", "kind", "strength"),
    [
        ("manila", "depolarizing", 0.01),
        ("manila", "bit_flip", 0.03),
        ("lima", "phase_flip", 0.02),
        ("manila", "amplitude_damping", 0.05),
    ],
)
def test_delivered_channel_is_the_request_within_0_005(
    tmp_path: Path, device: str, kind: str, strength: float
) -> None:
    row = delivered(device, kind, strength, data_dir=tmp_path)
    assert 0.0 < row["floor"] < strength
    assert row["delivered"] == pytest.approx(strength, abs=0.005)


def _damping(n: int) -> PQCSpec:
    return PQCSpec.parse(
        {"n_qubits": n, "layers": 1, "channel": {"kind": "amplitude_damping", "strength": 0.1}}
    )


def test_each_dilation_ancilla_sits_next_to_its_data_qubit() -> None:
    backend = fake_device("manila")  # a line 0-1-2-3-4
    isa = transpile_spec(_damping(2), backend)
    data, ancillas = isa.layout[:2], isa.layout[2:4]
    edges = {tuple(sorted(e)) for e in backend.coupling_map.get_edges()}
    assert tuple(sorted(data)) in edges  # the data chain is connected
    for d, a in zip(data, ancillas, strict=True):
        assert tuple(sorted((d, a))) in edges
    assert "swap" not in isa.circuit.count_ops()
    # Every two-qubit gate of the ISA circuit acts on a coupled pair: no routing was needed.
    for inst in isa.circuit.data:
        if inst.operation.num_qubits == 2:
            pair = tuple(sorted(isa.circuit.find_bit(q).index for q in inst.qubits))
            assert pair in edges


def test_a_chain_without_free_neighbours_is_refused_then_routed() -> None:
    backend = fake_device("manila")
    with pytest.raises(InvalidSpecError) as info:
        choose_layout(backend, 3, ancillas=True)  # 6 qubits on a 5-qubit device
    assert info.value.field == "circuit.n_qubits"
    # A 2-qubit chain on the line has a free neighbour at each end (1-2 with 0 and 3, ...).
    layout = choose_layout(backend, 2, ancillas=True)
    assert len(set(layout)) == 4


def test_zne_and_pec_inject_the_full_strength() -> None:
    assert ResilienceOptions(zne_mitigation=True).removes_device_noise
    assert ResilienceOptions(pec_mitigation=True).removes_device_noise
    assert ResilienceOptions(resilience_level=2).removes_device_noise
    assert not ResilienceOptions(resilience_level=1).removes_device_noise
    backend = fake_device("manila")
    spec = PQCSpec.parse({"n_qubits": 1, "layers": 2, "channel": {"kind": "bit_flip"}})
    isa = transpile_spec(spec, backend)
    kwargs: dict[str, Any] = {"instances": 4, "allow_floor": False}
    _, sub = level_slots(spec, isa, backend, [0.03], rng=np.random.default_rng(0), **kwargs)
    _, full = level_slots(
        spec, isa, backend, [0.03], rng=np.random.default_rng(0), subtract_floor=False, **kwargs
    )
    assert full["injected"] == [[[0.03], [0.03]]] and full["floor_subtracted"] is False
    assert 0.0 < sub["injected"][0][0][0] < 0.03 and sub["floor_subtracted"] is True


@pytest.mark.parametrize(
    ("device", "n", "kind", "strength", "floor"),
    [
        ("manila", 3, "phase_flip", 0.03, "calibration"),
        ("manila", 3, "depolarizing", 0.04, "calibration"),
        ("lima", 3, "bit_flip", 0.02, "calibration"),
        ("quito", 2, "depolarizing", 0.05, "calibration"),
        ("manila", 2, "depolarizing", 0.02, "measured"),
        ("manila", 3, "bit_flip", 0.02, "measured"),
        ("lima", 3, "phase_flip", 0.02, "measured"),
        ("lima", 3, "depolarizing", 0.03, "measured"),
    ],
)
def test_several_qubits_deliver_the_request_on_each_qubit(
    tmp_path: Path, device: str, n: int, kind: str, strength: float, floor: str
) -> None:
    # the calibration floor carries each error to the slot through the layer's CNOTs (before,
    # quito's 2 qubits got 0.0514 and 0.0555 for a requested depolarizing 0.05); the measured
    # floor reads the parity the next layer sees (before, lima's 3 got 0.0229, 0.0259, 0.0283
    # for 0.03). Manila's 3 qubits with the measured floor miss: see docs/hardware.md.
    row = delivered_layers(
        device, kind, strength, n_qubits=n, data_dir=tmp_path, floor_method=floor
    )
    assert row["floor"].shape == row["delivered"].shape == (n,)
    assert np.all((row["floor"] > 0.0) & (row["floor"] < strength))
    assert np.abs(row["delivered"] - strength).max() <= 0.005


def _prepared(kind: str, strength: float, n: int, layers: int, tmp_path: Path) -> Any:
    backend = RuntimeBackend("fake:manila", data_dir=tmp_path, allow_noise_floor=True)
    spec = PQCSpec.parse(
        {"n_qubits": n, "layers": layers, "channel": {"kind": kind, "strength": strength}}
    )
    work = Workload.build(spec, [[0.0] * n], np.zeros(spec.n_weights), shots=100, seed=1)
    return backend.prepare(work)


def _expectations(circuits: list[Any], sim: Any, labels: list[str], layout: Any) -> np.ndarray:
    from qiskit.quantum_info import SparsePauliOp

    runs = []
    for circuit in circuits:
        qc = circuit.copy()
        for j, label in enumerate(labels):
            op = SparsePauliOp(label).apply_layout(layout)
            qc.save_expectation_value(op, list(range(qc.num_qubits)), label=f"e{j}")
        runs.append(qc)
    result = sim.run(runs, shots=1).result()
    return np.array(
        [
            [float(np.real(result.data(i)[f"e{j}"])) for j in range(len(labels))]
            for i in range(len(runs))
        ]
    )


def test_the_bench_applies_the_noise_model_of_the_fake_device(tmp_path: Path) -> None:
    # the bench puts the device's noise in by hand (to switch it on per layer); all layers on,
    # that is what AerSimulator.from_backend applies to the same circuit
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import DensityMatrix
    from qiskit_aer import AerSimulator

    prepared = _prepared("depolarizing", 0.03, 3, 2, tmp_path)
    isa, device = prepared.isa, fake_device("manila")
    both = frozenset({0, 1})
    by_hand = _with_noise(prepared, "depolarizing", both, device)
    injected_only = _with_noise(prepared, "depolarizing", both, device, device_noise=False)
    start = isa.circuit.layout.initial_index_layout()
    state = QuantumCircuit(isa.circuit.num_qubits)
    state.h(start[0])
    state.x(start[2])
    prep = QuantumCircuit(isa.circuit.num_qubits)  # noiseless in both simulators
    prep.set_density_matrix(DensityMatrix(state))
    labels = ["IIZ", "IZI", "ZII", "IIX", "XXI", "ZZZ"]
    ours = _expectations(
        [prep.compose(by_hand)], AerSimulator(method="density_matrix"), labels, isa.circuit.layout
    )
    aer = _expectations(
        [prep.compose(injected_only)], _simulator(device), labels, isa.circuit.layout
    )
    assert np.abs(ours - aer).max() < 1e-9
    assert np.abs(ours).max() > 0.5  # not all zero


@pytest.mark.parametrize(("kind", "tolerance"), [("bit_flip", 1e-9), ("depolarizing", 1e-4)])
def test_a_slot_pauli_error_is_the_average_of_the_bound_instances(
    tmp_path: Path, kind: str, tolerance: float
) -> None:
    # 2 qubits, 1 layer: every Pauli instance of the 2 slots enumerated, bound as the job binds
    # them, on the fake device's noise model; against the bench's pauli_error on the slots
    import itertools

    from qldm.mitigation.noise import slot_distribution

    prepared = _prepared(kind, 0.2, 2, 1, tmp_path)
    isa, device = prepared.isa, fake_device("manila")
    hw = isa.hardware
    injected = np.asarray(prepared.noise["injected"][0]).reshape(-1)
    x = {hw.inputs[0]: 0.7, hw.inputs[1]: -1.2}
    zero = dict.fromkeys(isa.circuit.parameters, 0.0)
    labels = ["IZ", "ZI", "IX", "XI", "ZZ", "XY"]
    circuits, weights = [], []
    for combo in itertools.product(*[slot_distribution(kind, float(g)) for g in injected]):
        values = {**zero, **x}
        prob = 1.0
        for slot, (angles, p) in enumerate(combo):
            prob *= p
            width = len(angles)
            for j, a in enumerate(angles):
                values[hw.noise[slot * width + j]] = a
        circuits.append(
            isa.circuit.assign_parameters({k: v for k, v in values.items() if k in zero})
        )
        weights.append(prob)
    sim = _simulator(device)
    enumerated = np.asarray(weights) @ _expectations(circuits, sim, labels, isa.circuit.layout)
    slots = _slot_errors(prepared, kind)
    bound = isa.circuit.assign_parameters({k: v for k, v in {**zero, **x}.items() if k in zero})
    with_errors = bound.copy_empty_like()
    for index, inst in enumerate(bound.data):
        with_errors.append(inst)
        if index in slots:
            error, qubit = slots[index]
            with_errors.append(error.to_instruction(), [qubit])
    inserted = _expectations([with_errors], sim, labels, isa.circuit.layout)[0]
    assert len(slots) == 2
    assert np.abs(enumerated - inserted).max() < tolerance
    assert np.abs(enumerated).max() > 0.1
