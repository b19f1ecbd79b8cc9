"""The circuits of state-level work (:mod:`qldm.backends.outputs`) for Aer and devices.

One parameterized circuit serves a whole workload, so a device transpiles it once and every
sample, shift term and target is a binding:

- :func:`state_circuit`: the spec's encoding, its ansatz over the ansatz angles ``theta``
  (``P_a``; a timestep embedding's per-sample angles are bindings,
  :mod:`qldm.circuits.timestep`), its channels (Aer noise instructions, or parameterized
  realization slots for hardware, :mod:`qldm.circuits.transpile`), and for a fidelity the
  *inverse* preparation of the target: ``|<0|V_phi^dag U(theta)|psi>|^2 = |<phi|U|psi>|^2``
  (compute-uncompute; the all-zero outcome's probability). The ``amplitude`` and
  ``complex_amplitude`` encodings and the targets are prepared by the parameterized
  preparation of :mod:`qldm.circuits.state_prep` (no per-sample synthesis);
- :func:`metric_circuit`: for one layer of the block-diagonal metric
  (:func:`qldm.circuits.metric.metric_layers`), the encoding, the gates before the layer and
  the basis change that diagonalises the layer's generators; its outcome distribution with
  :func:`qldm.circuits.metric.layer_eigenvalues` gives the layer's block.

Both return a :class:`qldm.circuits.transpile.HardwareCircuit`: its ``inputs`` are the
encoding's columns (the data inputs, or the :func:`qldm.circuits.state_prep.n_prep_angles`
preparation angles of a state encoding) followed by the target's preparation angles, its
``weights`` the ansatz angles ``theta``, its ``noise`` the slots (empty unless ``noise="slots"``).
"""

from __future__ import annotations

from typing import Any, Literal

from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector

from qldm.circuits.metric import MetricLayer
from qldm.circuits.program import AmplitudeEncoding, Channel, Param, compile_spec
from qldm.circuits.qiskit_builder import _aer_error, _append_gate
from qldm.circuits.spec import STATE_ENCODINGS, PQCSpec
from qldm.circuits.state_prep import n_prep_angles, prep_circuit
from qldm.circuits.transpile import HardwareCircuit, append_slot, slot_width

__all__ = ["NoiseMode", "encoding_columns", "metric_circuit", "state_circuit"]

NoiseMode = Literal["aer", "slots", "none"]
"""How the spec's channels appear: Aer noise instructions, hardware slots, or not at all."""


def encoding_columns(spec: PQCSpec) -> int:
    """The encoding's binding columns: the data inputs, or a state encoding's angles."""
    if spec.encoding in STATE_ENCODINGS:
        return n_prep_angles(spec.n_qubits)
    return spec.n_data_inputs


def state_circuit(
    spec: PQCSpec,
    *,
    fidelity: bool = False,
    noise: NoiseMode = "none",
    noise_level: float | None = None,
) -> HardwareCircuit:
    """The circuit of ``spec`` (without its timestep) for probabilities, a fidelity or
    expectation values; no measurements.

    Args:
        spec: the circuit (a ``timestep`` is ignored: bind each sample's angles).
        fidelity: append the inverse preparation of a target (its angles are the last
            ``n_prep_angles(n)`` inputs).
        noise: ``aer`` (Kraus instructions of strength ``noise_level`` or the spec's),
            ``slots`` (hardware realization slots) or ``none``.
        noise_level: the channel strength for ``noise="aer"`` (``None``: the spec's).

    Returns:
        A :class:`HardwareCircuit` (``inputs`` = encoding columns, then target angles).
    """
    base = spec.without_timestep()
    n = base.n_qubits
    enc = encoding_columns(base)
    x = ParameterVector("x", enc + (n_prep_angles(n) if fidelity else 0))
    w = ParameterVector("w", base.n_weights)
    kind = base.channel.kind if noise == "slots" else "none"
    eta = ParameterVector("eta", base.layers * n * slot_width(kind))
    n_anc = n if kind == "amplitude_damping" else 0
    qc = QuantumCircuit(n + n_anc)
    strengths = base.layer_strengths(noise_level) if noise == "aer" else ()
    errors: dict[float, Any] = {}
    program = compile_spec(base)
    for op in (*program.encoding, *program.ansatz):
        if isinstance(op, AmplitudeEncoding):
            qc.compose(prep_circuit(n, list(x[:enc])), range(n), inplace=True)
        elif isinstance(op, Channel):
            if noise == "slots":
                append_slot(qc, kind, eta, op)
            elif noise == "aer" and strengths[op.layer] > 0.0:
                strength = strengths[op.layer]
                if strength not in errors:
                    from qiskit_aer import noise as aer_noise

                    errors[strength] = _aer_error(aer_noise, base.channel.kind, strength)
                qc.append(errors[strength].to_instruction(), [op.qubit])
        else:
            _append_gate(qc, op, _angles(x, w))
    if fidelity:
        qc.compose(prep_circuit(n, list(x[enc:])).inverse(), range(n), inplace=True)
    return HardwareCircuit(qc, x, w, eta, n, n_anc)


def metric_circuit(spec: PQCSpec, layer: MetricLayer) -> HardwareCircuit:
    """The measured circuit of one block of the block-diagonal metric (no measurements).

    Args:
        spec: a noiseless spec (its timestep is ignored).
        layer: one of :func:`qldm.circuits.metric.metric_layers` of ``spec``.

    Returns:
        A :class:`HardwareCircuit`: encoding, the ansatz gates before the layer, then per
        qubit of the layer the change into its generator's basis (``X``: ``h``; ``Y``:
        ``sdg`` then ``h``).
    """
    base = spec.without_timestep()
    n = base.n_qubits
    enc = encoding_columns(base)
    x = ParameterVector("x", enc)
    w = ParameterVector("w", base.n_weights)
    qc = QuantumCircuit(n)
    for op in compile_spec(base).encoding:
        if isinstance(op, AmplitudeEncoding):
            qc.compose(prep_circuit(n, list(x)), range(n), inplace=True)
        else:
            _append_gate(qc, op, _angles(x, w))
    for gate in layer.before:
        _append_gate(qc, gate, _angles(x, w))
    for q, letter in sorted(layer.basis.items()):
        if letter == "Y":
            qc.sdg(q)
        if letter in ("X", "Y"):
            qc.h(q)
    return HardwareCircuit(qc, x, w, ParameterVector("eta", 0), n, 0)


def _angles(x: ParameterVector, w: ParameterVector) -> Any:
    def angle(param: Param) -> Any:
        value = x[param.index] if param.source == "input" else w[param.index]
        return value if param.scale == 1.0 else param.scale * value

    return angle
