"""The placement of a circuit: Qiskit's error-aware layout against the chain layout, kept by
expected fidelity, and that score checked analytically and against a noisy simulation."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.quantum_info import Statevector, hellinger_fidelity

from qldm.backends._runtime_pubs import measured_circuit
from qldm.backends.runtime import fake_device
from qldm.circuits import PQCSpec
from qldm.circuits.layout_score import expected_fidelity
from qldm.circuits.transpile import transpile_spec
from qldm.errors import InvalidSpecError


def test_an_initial_layout_switches_qiskits_error_aware_passes_off() -> None:
    """Why the chain alone was not enough: given an initial layout, the preset pass managers
    set no VF2 limits, so neither VF2Layout nor VF2PostLayout runs."""
    from qiskit.transpiler.preset_passmanagers.common import get_vf2_limits

    assert get_vf2_limits(1, initial_layout=None).call_limit is not None
    assert get_vf2_limits(1, initial_layout=[0, 1]).call_limit is None  # type: ignore[arg-type]


def test_expected_fidelity_is_the_product_of_reported_errors() -> None:
    backend = fake_device("lima")
    target = backend.target
    qc = QuantumCircuit(backend.num_qubits)
    qc.sx(2)
    qc.cx(3, 1)
    qc.delay(1000, 2, unit="ns")
    e_sx = target["sx"][(2,)].error
    e_cx = target["cx"][(3, 1)].error
    e_meas = target["measure"][(2,)].error
    t1, t2 = target.qubit_properties[2].t1, target.qubit_properties[2].t2
    t2 = min(t2, 2 * t1)
    process = (1 + math.exp(-1e-6 / t1) + 2 * math.exp(-1e-6 / t2)) / 4
    expected = (1 - e_sx) * (1 - e_cx) * (1 - e_meas) * (2 * process + 1) / 3
    assert expected_fidelity(qc, target, measured=[2]) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("ansatz", "winner"), [("ry_rz_brickwork", "chain"), ("basic_entangler", "qiskit")]
)
def test_auto_keeps_the_placement_with_the_higher_expected_fidelity(
    ansatz: str, winner: str
) -> None:
    """On fake:torino: a brickwork of CNOTs on neighbours fits a chain; a ring of CNOTs
    (basic_entangler) does not, and Qiskit's placement (VF2 / Sabre + VF2PostLayout) wins."""
    spec = PQCSpec.parse({"n_qubits": 6, "layers": 4, "ansatz": ansatz})
    backend = fake_device("torino")
    isa = transpile_spec(spec, backend)
    scores = dict(isa.layout_scores)
    assert set(scores) == {"chain", "qiskit"} and isa.layout_method == winner
    assert scores[winner] == max(scores.values())
    forced = transpile_spec(spec, backend, layout="chain")
    assert forced.layout_method == "chain" and dict(forced.layout_scores).keys() == {"chain"}
    with pytest.raises(InvalidSpecError) as info:
        transpile_spec(spec, backend, layout="vf2")  # type: ignore[arg-type]
    assert info.value.field == "layout"


def test_expected_fidelity_orders_placements_as_a_noisy_simulation_does() -> None:
    """The ring ansatz on fake:torino, both placements simulated with the device's noise
    model (Aer): the placement with the higher expected fidelity has the higher Hellinger
    fidelity to the ideal distribution."""
    from qiskit_aer import AerSimulator

    spec = PQCSpec.parse({"n_qubits": 6, "layers": 4, "ansatz": "basic_entangler"})
    backend = fake_device("torino")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim = AerSimulator.from_backend(backend)
    values = np.random.default_rng(0).uniform(-np.pi, np.pi, spec.n_inputs + spec.n_weights)
    measured: dict[str, tuple[float, float]] = {}
    for method in ("chain", "qiskit"):
        isa = transpile_spec(spec, backend, layout=method)  # type: ignore[arg-type]
        order = isa.hardware.parameter_order()
        device_params = set(isa.circuit.parameters)
        logical = isa.hardware.circuit
        ideal = Statevector(logical.assign_parameters(dict(zip(order, values, strict=False))))
        bound = measured_circuit(isa).assign_parameters(
            {p: v for p, v in zip(order, values, strict=False) if p in device_params}
        )
        counts = sim.run(bound, shots=20_000, seed_simulator=3).result().get_counts()
        fidelity = hellinger_fidelity(ideal.probabilities_dict(), counts)
        measured[method] = (dict(isa.layout_scores)[method], fidelity)
    (e_chain, h_chain), (e_qiskit, h_qiskit) = measured["chain"], measured["qiskit"]
    assert e_qiskit > e_chain and h_qiskit > h_chain + 0.005, measured
