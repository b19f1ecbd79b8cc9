"""The noise floor holds: what a fake device delivers is what the job asked for.

The delivered channel is measured independently of the floor estimate
(:func:`qldm.bench.noise_floor.delivered`: the job's own ISA circuit and injected strengths,
simulated exactly with the fake device's noise model, the decay of prepared Z, X, Y states
or of the excited population between one and two layers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qldm.backends._runtime_options import ResilienceOptions
from qldm.backends._runtime_pubs import level_slots
from qldm.backends.runtime import fake_device
from qldm.bench.noise_floor import delivered
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
    kwargs = {"instances": 4, "allow_floor": False}
    _, sub = level_slots(spec, isa, backend, [0.03], rng=np.random.default_rng(0), **kwargs)
    _, full = level_slots(
        spec, isa, backend, [0.03], rng=np.random.default_rng(0), subtract_floor=False, **kwargs
    )
    assert full["injected"] == [[[0.03], [0.03]]] and full["floor_subtracted"] is False
    assert 0.0 < sub["injected"][0][0][0] < 0.03 and sub["floor_subtracted"] is True
