"""Aer's PUBs: the ``EstimatorV2`` inputs for one spec, shift plan and noise level.

Shared by the density/statevector path (:mod:`qldm.backends.aer`) and trajectory sampling
(:mod:`qldm.backends._aer_trajectory`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from qiskit.circuit import CircuitInstruction, QuantumCircuit
from qiskit.circuit.library import StatePreparation
from qiskit.primitives.containers.bindings_array import BindingsArray

from qldm.backends._shift import ShiftPlan
from qldm.circuits import PQCSpec
from qldm.circuits.qiskit_builder import QiskitCircuit, build
from qldm.errors import BackendError

__all__ = ["pubs_for"]


def pubs_for(
    spec: PQCSpec,
    plan: ShiftPlan,
    level: float | None,
    *,
    transform: Callable[[QuantumCircuit], QuantumCircuit] | None = None,
) -> list[tuple[Any, ...]]:
    """One PUB per circuit group at this noise level: ``(circuit, (1, O), (S, 1, C))``.

    Args:
        spec: the circuit.
        plan: the parameter sets (:func:`qldm.backends._shift.plan_shifts`).
        level: the noise level, or ``None`` (the spec's strengths).
        transform: applied to the Aer-ready circuit before binding (trajectory sampling puts
            its drawn Paulis in the channels' places).
    """
    observables = [spec.pauli_labels()]

    def ready(circuit: QuantumCircuit) -> QuantumCircuit:
        circuit = _aer_gates(circuit)
        return circuit if transform is None else transform(circuit)

    if spec.encoding != "amplitude":
        template = build(spec, noise_level=level)
        circuit = ready(template.circuit)
        return [
            (circuit, observables, _bindings(template, group.parameter_sets))
            for group in plan.groups
        ]
    template = build(spec, noise_level=level, amplitudes=plan.groups[0].amplitudes)
    ansatz = ready(template.circuit)
    pubs: list[tuple[Any, ...]] = []
    for group in plan.groups:
        circuit = _with_state(ansatz, group.amplitudes)
        pubs.append((circuit, observables, _bindings(template, group.parameter_sets)))
    return pubs


_AER_NATIVE = frozenset({"h", "rx", "ry", "rz", "p", "cx", "quantum_channel", "state_preparation"})
"""Operations the builder emits that Aer runs as they are (``state_preparation`` is swapped
for ``set_statevector`` by :func:`_with_state`)."""


def _aer_gates(circuit: QuantumCircuit) -> QuantumCircuit:
    """Decompose what Aer does not know (``crx``, ``crz``) into its exact definitions.

    Qiskit's definitions keep the parameters as expressions (``crz(t)`` becomes
    ``rz(t/2) cx rz(-t/2) cx``), so the circuit is still bound by the same parameters.
    """
    foreign = {inst.operation.name for inst in circuit.data} - _AER_NATIVE
    if not foreign:
        return circuit
    return circuit.decompose(gates_to_decompose=sorted(foreign))


def _bindings(template: QiskitCircuit, sets: np.ndarray) -> BindingsArray:
    """Bind the columns by parameter object, not by the circuit's sorted parameter order."""
    parameters = tuple(template.parameter_order())
    return BindingsArray(data={parameters: sets[:, None, :]})


def _with_state(circuit: QuantumCircuit, state: np.ndarray | None) -> QuantumCircuit:
    """``circuit`` with its leading ``StatePreparation`` replaced by ``set_statevector(state)``.

    The other instructions are shared with ``circuit``, not copied: ``EstimatorV2`` copies
    every PUB's circuit before it adds its save instructions, so nothing mutates them, and a
    workload holds one circuit per sample and perturbation.
    """
    from qiskit.quantum_info import Statevector
    from qiskit_aer.library import SetStatevector

    first = circuit.data[0] if circuit.data else None
    if state is None or first is None or not isinstance(first.operation, StatePreparation):
        raise BackendError("an amplitude-encoded circuit must start with its state preparation")
    if len(first.qubits) != circuit.num_qubits:
        raise BackendError("the state preparation must act on every qubit")
    out = circuit.copy_empty_like()
    out._append(CircuitInstruction(SetStatevector(Statevector(state)), first.qubits))
    for instruction in circuit.data[1:]:
        out._append(instruction)
    return out
