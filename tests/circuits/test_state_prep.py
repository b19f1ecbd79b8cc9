"""The parameterized state preparation against Qiskit's Statevector (any state, up to a
global phase) and the compute-uncompute circuit against the overlap computed directly."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit.quantum_info import Statevector

from qldm.circuits import PQCSpec
from qldm.circuits.qiskit_builder import build
from qldm.circuits.state_circuits import state_circuit
from qldm.circuits.state_prep import n_prep_angles, prep_angles, prep_circuit
from qldm.errors import InvalidSpecError


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("real", [False, True])
def test_prepares_every_state_up_to_a_global_phase(n: int, real: bool) -> None:
    rng = np.random.default_rng(n)
    d = 2**n
    states = rng.normal(size=(4, d)) + (0.0 if real else 1j * rng.normal(size=(4, d)))
    states[0, 1:] = 0.0  # a basis state: zero pairs everywhere
    if n > 1:
        states[1, ::2] = 0.0  # every even amplitude zero
    states[2] = -states[2]  # negative real parts
    qc = prep_circuit(n)
    angles = prep_angles(states)
    assert angles.shape == (4, n_prep_angles(n))
    for state, row in zip(states, angles, strict=True):
        prepared = Statevector(qc.assign_parameters(dict(zip(qc.parameters, row, strict=True))))
        target = state / np.linalg.norm(state)
        assert abs(np.vdot(target, prepared.data)) ** 2 == pytest.approx(1.0, abs=1e-12)
    assert qc.count_ops().get("cx", 0) == (2 * (d - 2) if n > 1 else 0)


def test_zero_state_is_refused_naming_inputs() -> None:
    with pytest.raises(InvalidSpecError) as err:
        prep_angles(np.zeros((1, 4)))
    assert err.value.field == "inputs"


def test_compute_uncompute_gives_the_overlap() -> None:
    spec = PQCSpec.parse(
        {"n_qubits": 3, "encoding": "complex_amplitude", "ansatz": "mps", "layers": 2}
    )
    rng = np.random.default_rng(5)
    z = rng.normal(size=8) + 1j * rng.normal(size=8)
    phi = rng.normal(size=8) + 1j * rng.normal(size=8)
    theta = rng.normal(size=spec.n_weights)
    hw = state_circuit(spec, fidelity=True)
    row = np.concatenate([prep_angles(z[None])[0], prep_angles(phi[None])[0], theta])
    bound = hw.circuit.assign_parameters(dict(zip(hw.parameter_order(), row, strict=True)))
    p0 = abs(Statevector(bound).data[0]) ** 2
    ref = build(spec, amplitudes=z)
    out = Statevector(ref.circuit.assign_parameters(dict(zip(ref.weights, theta, strict=True))))
    expected = abs(np.vdot(phi / np.linalg.norm(phi), out.data)) ** 2
    assert p0 == pytest.approx(expected, abs=1e-12)
