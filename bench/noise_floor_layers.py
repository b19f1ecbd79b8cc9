"""``qldm bench floor``, several data qubits: the channel each layer of a job delivers.

The one-qubit table (:mod:`qldm.bench.noise_floor`) measures the decay between one and two
layers. On an entangling layer that ratio mixes qubits (the first layer is seen through the
second's CNOTs) and schedules (the idle wait a second layer imposes on the first is missing
from a one-layer circuit), so here each layer's channel is isolated instead: the job's own
ISA circuit is simulated exactly with the fake device's noise switched on in one layer only
(:func:`delivered_layers` states the definition).
"""

from __future__ import annotations

import tempfile
import warnings
from typing import Any

import numpy as np

__all__ = ["delivered_layers", "main"]

CASES_QUBITS = (
    ("manila", 2, "ry_rz_brickwork", "bit_flip", 0.01),
    ("manila", 2, "ry_rz_brickwork", "phase_flip", 0.03),
    ("manila", 2, "ry_rz_brickwork", "depolarizing", 0.02),
    ("manila", 3, "ry_rz_brickwork", "bit_flip", 0.02),
    ("manila", 3, "ry_rz_brickwork", "phase_flip", 0.03),
    ("manila", 3, "ry_rz_brickwork", "depolarizing", 0.04),
    ("lima", 2, "ry_rz_brickwork", "depolarizing", 0.02),
    ("lima", 3, "ry_rz_brickwork", "bit_flip", 0.02),
    ("lima", 3, "ry_rz_brickwork", "phase_flip", 0.02),
    ("lima", 3, "ry_rz_brickwork", "depolarizing", 0.03),
    ("quito", 2, "ry_rz_brickwork", "bit_flip", 0.03),
    ("quito", 2, "ry_rz_brickwork", "depolarizing", 0.05),
    ("quito", 3, "ry_rz_brickwork", "bit_flip", 0.05),
)
"""(device, qubits, ansatz, channel, requested strength) rows of the several-qubit table."""

_LETTER_PREP = {"X": ("h",), "Y": ("h", "s"), "Z": ()}


def _slot_errors(prepared: Any, kind: str) -> dict[int, tuple[Any, int]]:
    """Each noise slot's injected Pauli channel as an Aer ``pauli_error``, keyed by the ISA
    instruction it follows (the slot's last parameterized gate) with its qubit.

    The slot's gates are bound to the identity; the channel ``sum_P p_P (V_P V_0^dag)``
    (``V`` the slot's gates from its first to its last parameterized one, noiseless) goes
    right after them. For one parameterized gate per slot (``bit_flip``, ``phase_flip``) that
    is what the bound instances average to, exactly; for ``depolarizing`` (``rx(a) rz(b)``,
    an ``sx`` between its two gates) the Pauli moves past that ``sx``'s own noise, which
    differs from the bound gates by ``p * t_sx / T1`` (about ``1e-5``).
    """
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import Operator, Pauli
    from qiskit_aer.noise import pauli_error

    from qldm.circuits.transpile import slot_width
    from qldm.mitigation.noise import slot_distribution

    isa = prepared.isa
    circuit, noise = isa.circuit, list(isa.hardware.noise)
    width = slot_width(kind)
    injected = np.asarray(prepared.noise["injected"][0]).reshape(-1)
    where: dict[int, list[int]] = {}
    for index, inst in enumerate(circuit.data):
        for value in inst.operation.params:
            for p in getattr(value, "parameters", ()):
                if p in noise:
                    where.setdefault(noise.index(p) // width, []).append(index)
    paulis = {lab: Pauli(lab).to_matrix() for lab in "IXYZ"}
    out = {}
    for slot, indices in where.items():
        qubit = circuit.find_bit(circuit.data[indices[0]].qubits[0]).index
        segment = QuantumCircuit(1)
        for index in range(indices[0], indices[-1] + 1):
            inst = circuit.data[index]
            on = [circuit.find_bit(q).index for q in inst.qubits]
            if qubit in on and inst.operation.name != "delay":
                if len(on) != 1:
                    raise ValueError(f"slot {slot}: a two-qubit gate inside its gates")
                segment.append(inst.operation, [0])
        own = noise[slot * width : (slot + 1) * width]

        def unitary(angles: tuple[float, ...], seg: Any = segment, own: Any = own) -> Any:
            values = dict.fromkeys(seg.parameters, 0.0)
            values.update({p: a for p, a in zip(own, angles, strict=True) if p in values})
            return Operator(seg.assign_parameters(values)).data

        identity = unitary((0.0,) * width)
        mix: dict[str, float] = {}
        for angles, prob in slot_distribution(kind, float(injected[slot])):
            moved = unitary(angles) @ identity.conj().T
            label = next(k for k, m in paulis.items() if abs(abs(np.trace(m @ moved)) - 2) < 1e-8)
            mix[label] = mix.get(label, 0.0) + prob
        out[indices[-1]] = (pauli_error(list(mix.items())), qubit)
    return out


def _device_errors(device: Any) -> dict[tuple[str, tuple[int, ...]], Any]:
    """The fake device's gate errors as ``NoiseModel.from_backend`` builds them."""
    from qiskit_aer.noise.device import basic_device_gate_errors

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        errors = basic_device_gate_errors(target=device.target)
    return {(name, tuple(qubits)): error for name, qubits, error in errors}


def _with_noise(
    prepared: Any, kind: str, on: frozenset[int], device: Any, *, device_noise: bool = True
) -> Any:
    """The job's ISA circuit, all parameters 0 (slots the identity), with the fake device's
    noise and the injected slot channels in the layers ``on`` only (empty: no noise): the
    noise model's gate errors after each gate, thermal relaxation over each delay, as
    ``AerSimulator.from_backend`` applies them. The delays before a qubit's first gate are
    left out (in the job the qubit waits there in ``|0>``, which relaxation leaves alone;
    here the preparation goes before the circuit). ``device_noise=False``: the injected
    channels only (for a simulator that applies the noise model itself)."""
    from qiskit_aer.noise import thermal_relaxation_error

    from qldm.mitigation.layer_paulis import layer_ends, layer_of

    isa = prepared.isa
    layers = prepared.work.spec.layers
    circuit = isa.circuit.assign_parameters(dict.fromkeys(isa.circuit.parameters, 0.0))
    ends = layer_ends(isa, layers)
    slots = _slot_errors(prepared, kind)
    errors = _device_errors(device)
    out = circuit.copy_empty_like()
    started: set[int] = set()
    for index, inst in enumerate(circuit.data):
        qargs = tuple(circuit.find_bit(q).index for q in inst.qubits)
        if inst.operation.name == "delay" and not started & set(qargs):
            continue  # a qubit waiting in |0> before its first gate: relaxation leaves it
        started.update(qargs)
        out.append(inst)
        if layer_of(index, qargs, ends) not in on:
            continue
        name = inst.operation.name
        if not device_noise:
            pass
        elif name == "delay":
            op = inst.operation
            seconds = float(op.duration) * (float(device.dt) if op.unit == "dt" else 1.0)
            for q in qargs:
                props = device.target.qubit_properties[q]
                t1, t2 = props.t1, min(props.t2, 2 * props.t1)
                out.append(thermal_relaxation_error(t1, t2, seconds).to_instruction(), [q])
        elif (name, qargs) in errors:
            out.append(errors[(name, qargs)].to_instruction(), list(qargs))
        if index in slots:
            error, qubit = slots[index]
            out.append(error.to_instruction(), [qubit])
    return out


def _region_fidelities(prepared: Any, kind: str, device: Any) -> np.ndarray:
    """``(L, n, 3)`` the ``X_q, Y_q, Z_q`` fidelities of each layer's channel at its slots.

    Only layer ``l``'s noise is on (:func:`_with_noise`); the observable at the circuit's end
    is ``V P_q V^dag`` (``V`` the later layers), which the noiseless rest turns into ``P_q``
    at the slot; the two preparations are the ``+1`` and ``-1`` product eigenstates of its
    image at the start (``U^-(l+1) P_q U^(l+1)``), made by noiseless gates before the
    circuit, and the fidelity is the contrast ``(e_+ s_+ + e_- s_-) / 2`` (``s`` the
    noiseless signs; a non-unital offset cancels).
    """
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import Pauli, SparsePauliOp
    from qiskit_aer import AerSimulator

    from qldm.mitigation.layer_paulis import after_slots, zero_angle_clifford

    isa = prepared.isa
    hw = isa.hardware
    n, width, layers = hw.n_data, hw.circuit.num_qubits, prepared.work.spec.layers
    start = isa.circuit.layout.initial_index_layout()
    whole = zero_angle_clifford(hw.circuit)
    sim = AerSimulator(method="density_matrix")
    bases = {
        layer: _with_noise(prepared, kind, frozenset({layer}), device) for layer in range(layers)
    }
    clean = _with_noise(prepared, kind, frozenset(), device)
    out = np.zeros((layers, n, 3))
    for layer in range(layers):
        later = zero_angle_clifford(after_slots(hw, layer, layers))
        circuits, index = [], []
        for q in range(n):
            for axis, letter in enumerate("XYZ"):
                label = ["I"] * width
                label[-1 - q] = letter
                end = Pauli("".join(label)).evolve(later, frame="s")
                begin = end.evolve(whole, frame="h").to_label().lstrip("-i")
                observable = SparsePauliOp(end.to_label().lstrip("-i")).apply_layout(
                    isa.circuit.layout
                )
                support = [k for k, c in enumerate(reversed(begin)) if c != "I"]
                for flip in (False, True):
                    prep = QuantumCircuit(isa.circuit.num_qubits)
                    for k, c in enumerate(reversed(begin)):
                        if c == "I":
                            continue
                        if flip and k == support[0]:
                            prep.x(start[k])
                        for gate in _LETTER_PREP[c]:
                            getattr(prep, gate)(start[k])
                    for base in (bases[layer], clean):
                        qc = prep.compose(base)
                        qc.save_expectation_value(observable, list(range(qc.num_qubits)))
                        circuits.append(qc)
                        index.append((q, axis))
        result = sim.run(circuits, shots=1).result()
        values = [float(np.real(result.data(i)["expectation_value"])) for i in range(len(index))]
        for j in range(0, len(values), 4):
            q, axis = index[j]
            noisy_plus, ideal_plus, noisy_minus, ideal_minus = values[j : j + 4]
            out[layer, q, axis] = (
                noisy_plus * np.sign(ideal_plus) + noisy_minus * np.sign(ideal_minus)
            ) / 2
    return out


def _strengths(kind: str, fidelities: np.ndarray) -> np.ndarray:
    """Strengths in ``kind``'s parameterization from ``(..., 3)`` X, Y, Z fidelities."""
    lx, ly, lz = fidelities[..., 0], fidelities[..., 1], fidelities[..., 2]
    if kind == "bit_flip":
        return (1 - lz) / 2
    if kind == "phase_flip":
        return (1 - lx) / 2
    return 1 - (lx + ly + lz) / 3


def delivered_layers(
    device: str,
    kind: str,
    strength: float,
    *,
    n_qubits: int,
    ansatz: str = "ry_rz_brickwork",
    layers: int = 2,
    data_dir: Any = None,
    floor_method: str = "calibration",
) -> dict[str, Any]:
    """Per data qubit, the channel each layer of a ``fake:<device>`` job delivers.

    The job: ``n_qubits``, ``ansatz``, ``layers`` layers, ``angle_ry`` encoding, zero weights,
    asking for ``kind`` at ``strength`` (``allow_noise_floor``). Its own ISA circuit, bound
    with the injected strengths it chose (each slot's Pauli channel inserted as an Aer
    ``pauli_error`` where its gates are, :func:`_slot_errors`), is simulated exactly (Aer
    density matrix) with the fake device's noise (``NoiseModel.from_backend``: gate errors and
    relaxation over delays) switched on in one layer at a time, the rest noiseless.

    Definition: a layer holds the ISA instructions from the previous layer's noise slot on
    each qubit to its own slot (:func:`qldm.mitigation.layer_paulis.layer_of`; idle time is
    where the schedule puts it). The layer delivers, on qubit ``q``, the *marginal* of its
    channel at the slot: the fidelity ``lambda_P`` of ``P_q`` (``P = X, Y, Z``), measured by
    carrying ``P_q`` to the circuit's end through the noiseless later layers and preparing
    the eigenstates of its image at the start (:func:`_region_fidelities`; zero-weight
    layers are Clifford). In each kind's parameterization: ``bit_flip`` ``(1 - lambda_Z) /
    2``, ``phase_flip`` ``(1 - lambda_X) / 2``, ``depolarizing`` ``1 - (lambda_X + lambda_Y
    + lambda_Z) / 3``; the requested channel gives exactly ``strength`` on every qubit in
    every layer. ``delivered`` is the mean over the layers (one strength is injected in
    every layer; the last layer has no idle wait for a next one).

    Args:
        device: a fake device (``manila``).
        kind: ``bit_flip``, ``phase_flip`` or ``depolarizing``.
        strength: the requested per-layer strength.
        n_qubits: data qubits.
        ansatz: the spec's ansatz.
        layers: the job's layers.
        data_dir: the backend's data folder (a temporary one when ``None``).
        floor_method: the backend's ``floor`` option: ``calibration`` or ``measured``.

    Returns:
        ``{"requested", "delivered": (n,), "per_layer": (L, n), "floor": (n,), "layout"}``
        (``floor``: the backend's per-qubit floor).

    Raises:
        ValueError: ``amplitude_damping`` (not a Pauli channel: see :func:`delivered`), or a
            circuit routed inside its layers (``hqconv``'s ring of 4 on a 5-qubit line).
    """
    from qldm.backends.base import Workload
    from qldm.backends.runtime import RuntimeBackend
    from qldm.circuits import PQCSpec
    from qldm.mitigation.layer_paulis import layer_ends

    if kind not in ("bit_flip", "phase_flip", "depolarizing"):
        raise ValueError(
            f"several-qubit delivered channels are measured for Pauli kinds, not {kind!r}"
        )
    folder = data_dir or tempfile.mkdtemp(prefix="qldm-floor-")
    backend = RuntimeBackend(
        f"fake:{device}", data_dir=folder, allow_noise_floor=True, floor=floor_method
    )
    spec = PQCSpec.parse(
        {
            "n_qubits": n_qubits,
            "ansatz": ansatz,
            "layers": layers,
            "channel": {"kind": kind, "strength": strength},
        }
    )
    work = Workload.build(
        spec, [[0.0] * spec.n_inputs], np.zeros(spec.n_weights), shots=1000, seed=1
    )
    prepared = backend.prepare(work)
    if any(len(ends) != n_qubits for ends in layer_ends(prepared.isa, layers)):
        raise ValueError(
            f"{ansatz} on {n_qubits} qubits of fake:{device} is routed inside its layers (a "
            "data qubit's noise slot moves between device qubits): no per-layer channel"
        )
    per_layer = _strengths(kind, _region_fidelities(prepared, kind, backend.backend))
    return {
        "requested": strength,
        "delivered": per_layer.mean(axis=0),
        "per_layer": per_layer,
        "floor": np.asarray(prepared.noise["device_floor"], dtype=np.float64),
        "layout": tuple(prepared.isa.layout),
    }


def _per_qubit(values: Any) -> str:
    return " / ".join(f"{v:.4f}" for v in values)


def main() -> None:
    """Print the several-qubit table: per data qubit, the calibration and measured floors and
    the delivered strength (mean over the job's 2 layers) with each."""
    print(
        "| device | qubits | channel | requested | calibration floor | measured floor | "
        "delivered (calibration) | delivered (measured) | worst error cal. / meas. |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for device, n, ansatz, kind, strength in CASES_QUBITS:
        cal = delivered_layers(device, kind, strength, n_qubits=n, ansatz=ansatz)
        meas = delivered_layers(
            device, kind, strength, n_qubits=n, ansatz=ansatz, floor_method="measured"
        )
        worst = [float(np.max(np.abs(r["delivered"] - strength))) for r in (cal, meas)]
        print(
            f"| fake:{device} | {n} | {kind} | {strength:.3f} | {_per_qubit(cal['floor'])} | "
            f"{_per_qubit(meas['floor'])} | {_per_qubit(cal['delivered'])} | "
            f"{_per_qubit(meas['delivered'])} | {worst[0]:.4f} / {worst[1]:.4f} |"
        )


if __name__ == "__main__":
    main()
