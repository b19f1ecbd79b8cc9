"""The layers of a hardware circuit at zero weights, and Paulis carried through them.

At zero weights every parametric gate of the ansätze (``rx, ry, rz, p, crx, crz``) is the
identity, so a layer is its fixed gates (``cx``, ``h``): a Clifford ``U``, and every gate of
the ISA circuit bound at zero is Clifford too. A Pauli error then moves through the rest of
its layer as a Pauli (an X on a CNOT's control arrives as ``X_c X_t``, a Z on its target as
``Z_c Z_t``), and an observable moves backwards the same way (Heisenberg picture).

The per-qubit strength of a layer's noise is a *marginal*: the probability that the layer's
channel flips ``Z_q`` (bit flip) or ``X_q`` (phase flip) at the qubit's noise slot. The ratio
of ``<Z_q>`` after two layers to ``<Z_q>`` after one does not measure it on an entangling
layer: the first layer's channel is seen through the second layer's CNOTs, by the parity
``U^dag Z_q U`` (``Z_c Z_t`` on a CNOT's target), whose decay adds several qubits' flips.
Measuring that parity after one layer cancels it (:func:`heisenberg_labels`):
``lambda_q = <Z_q>_{2 layers} / <U^dag Z_q U>_{1 layer}``.

Where a layer ends in an ISA circuit (:func:`layer_ends`): on each data qubit, at the last
instruction of its noise slot (the transpiler merges a slot's rotations with the next
layer's, so the slot's own gates are the only marker left).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from qldm.circuits import PQCSpec
from qldm.circuits.program import Gate, compile_spec
from qldm.circuits.transpile import HardwareCircuit, IsaCircuit

__all__ = [
    "after_slots",
    "heisenberg_labels",
    "layer_clifford_circuit",
    "layer_ends",
    "layer_of",
    "pauli_map",
    "zero_angle_clifford",
]

LayerEnds = list[dict[int, tuple[int, int]]]
"""Per layer: ``{physical qubit: (index of its slot's last ISA instruction, data qubit)}``."""


def layer_clifford_circuit(spec: PQCSpec) -> Any:
    """One ansatz layer of ``spec`` at zero weights (its fixed gates), on the data qubits."""
    from qiskit import QuantumCircuit

    one = PQCSpec.parse({**spec.model_dump(mode="json"), "layers": 1, "channel": {"kind": "none"}})
    qc = QuantumCircuit(spec.n_qubits)
    for op in compile_spec(one).ansatz:
        if isinstance(op, Gate) and op.param is None:
            getattr(qc, op.name)(*op.qubits)
    return qc


def zero_angle_clifford(circuit: Any) -> Any:
    """The Clifford of a logical circuit with every parametric gate at angle 0 (dropped: the
    identity), its fixed gates kept.

    Raises:
        QiskitError: a fixed gate that is not Clifford.
    """
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import Clifford

    fixed = QuantumCircuit(circuit.num_qubits)
    for inst in circuit.data:
        if not inst.operation.params:
            fixed.append(inst.operation, [circuit.find_bit(q).index for q in inst.qubits])
    return Clifford(fixed)


def heisenberg_labels(spec: PQCSpec, labels: list[str]) -> list[str]:
    """``U^dag P U`` for each Pauli label ``P`` (Qiskit order; the leading characters beyond
    the ``n`` data qubits, ancillas, are kept), ``U`` one zero-weight layer of ``spec``; signs
    dropped (the floor's contrasts take the noiseless value's sign)."""
    from qiskit.quantum_info import Clifford, Pauli

    n = spec.n_qubits
    clifford = Clifford(layer_clifford_circuit(spec))
    out = []
    for label in labels:
        head, data = label[: len(label) - n], label[len(label) - n :]
        moved = Pauli(data).evolve(clifford, frame="h")
        moved.phase = 0
        out.append(head + moved.to_label())
    return out


def layer_ends(isa: IsaCircuit, layers: int) -> LayerEnds:
    """Where each layer ends in the ISA circuit, per physical qubit (its noise slot)."""
    hw = isa.hardware
    n = hw.n_data
    width = max(len(hw.noise) // max(layers * n, 1), 1)
    slot_of = {p: i // width for i, p in enumerate(hw.noise)}
    circuit = isa.circuit
    ends: LayerEnds = [{} for _ in range(layers)]
    for index, inst in enumerate(circuit.data):
        for value in inst.operation.params:
            for p in getattr(value, "parameters", ()):
                if p in slot_of:
                    layer, q = divmod(slot_of[p], n)
                    ends[layer][circuit.find_bit(inst.qubits[0]).index] = (index, q)
    return ends


def layer_of(index: int, qargs: tuple[int, ...], ends: LayerEnds) -> int:
    """The layer of ISA instruction ``index`` on physical ``qargs``: the first whose slot on
    its qubit is not before it (after the last slot: the last layer); ``-1`` when none of
    its qubits holds a data qubit."""
    for q in qargs:
        for layer, e in enumerate(ends):
            if q in e and index <= e[q][0]:
                return layer
        if any(q in e for e in ends):
            return len(ends) - 1
    return -1


def after_slots(hw: HardwareCircuit, layer: int, layers: int) -> Any:
    """The logical circuit after the noise slots of ``layer``: the later layers (with their
    slots), whose zero-angle Clifford is ``U^{L - 1 - layer}``."""
    width = max(len(hw.noise) // (layers * hw.n_data), 1)
    mine = {p for i, p in enumerate(hw.noise) if i // width // hw.n_data == layer}
    circuit = hw.circuit
    last = max(
        i
        for i, inst in enumerate(circuit.data)
        for v in inst.operation.params
        if set(getattr(v, "parameters", ())) & mine
    )
    out = circuit.copy_empty_like()
    for inst in circuit.data[last + 1 :]:
        out.append(inst)
    return out


_maps: dict[tuple[Any, ...], dict[str, str] | None] = {}


def pauli_map(operation: Any) -> dict[str, str] | None:
    """How a bound gate carries a Pauli error forward: ``G P G^dag`` as a map of labels on
    the gate's qubits (Qiskit order), phases dropped; ``None`` when ``G`` is not Clifford or
    has no matrix (``reset``, ``measure``)."""
    key = (operation.name, operation.num_qubits, *(round(float(p), 9) for p in operation.params))
    if key in _maps:
        return _maps[key]
    from qiskit.quantum_info import Operator, Pauli

    try:
        g = Operator(operation).data
    except Exception:  # no unitary: reset, measure, a custom instruction
        _maps[key] = None
        return None
    k = operation.num_qubits
    labels = ["".join(t) for t in itertools.product("IXYZ", repeat=k)]
    mats = {lab: Pauli(lab).to_matrix() for lab in labels}
    table: dict[str, str] | None = {}
    for lab in labels:
        moved = g @ mats[lab] @ g.conj().T
        hits = [b for b in labels if abs(abs(np.trace(mats[b].conj().T @ moved)) - 2**k) < 1e-6]
        if len(hits) != 1 or table is None:
            table = None
            break
        table[lab] = hits[0]
    _maps[key] = table
    return table
