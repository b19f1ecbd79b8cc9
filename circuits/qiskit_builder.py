"""Build the Qiskit circuit of a spec, with the channels as Aer noise instructions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter, ParameterVector
from qiskit.circuit.library import StatePreparation
from qiskit.quantum_info import SparsePauliOp

from qldm.circuits.program import AmplitudeEncoding, Channel, Gate, Param, compile_spec
from qldm.circuits.spec import STATE_ENCODINGS, PQCSpec
from qldm.errors import InvalidSpecError


@dataclass(frozen=True)
class QiskitCircuit:
    """A spec as a parameterized Qiskit circuit.

    Attributes:
        circuit: the circuit; no measurements. Channels appear as Aer ``QuantumError``
            instructions, so only Aer's simulators run it while the spec is noisy.
        inputs: the ``x`` parameters, ``(I,)`` (empty for ``amplitude``: the state is bound in).
        weights: the ``w`` parameters, ``(P,)``.
        observables: one ``SparsePauliOp`` per output, ``(O,)``.
    """

    circuit: QuantumCircuit
    inputs: ParameterVector
    weights: ParameterVector
    observables: tuple[SparsePauliOp, ...]

    def parameter_order(self) -> list[Parameter]:
        """The circuit's parameters in the order :func:`bind_values` lays out its columns."""
        return [*self.inputs, *self.weights]


def build(
    spec: PQCSpec,
    *,
    noise_level: float | None = None,
    amplitudes: Any = None,
    channels: bool = True,
) -> QiskitCircuit:
    """Build ``spec`` as a Qiskit circuit.

    Args:
        spec: the circuit description.
        noise_level: replaces the channel strength of every layer.
        amplitudes: for the ``amplitude`` encoding, one sample ``(2^n,)``; for
            ``complex_amplitude`` ``(2 * 2^n,)`` (real parts, then imaginary parts) or a
            complex ``(2^n,)``; normalised here.
        channels: ``False`` leaves the channels out (for hardware, where noise is realized
            differently: see :mod:`mitigation`).

    Raises:
        InvalidSpecError: ``amplitudes`` missing, misshaped or zero for an ``amplitude`` spec;
            a spec with a ``timestep`` (field ``timestep``: build
            ``spec.without_timestep()`` and bind each sample's angles,
            :mod:`qldm.circuits.timestep`).
    """
    from qiskit_aer import noise as aer_noise

    if spec.timestep is not None:
        raise InvalidSpecError(
            "a spec with a timestep has per-sample angles: build spec.without_timestep() and "
            "bind each sample's angles (qldm.circuits.timestep.effective_angles)",
            field="timestep",
        )
    program = compile_spec(spec)
    strengths = spec.layer_strengths(noise_level)
    n_inputs = 0 if spec.encoding in STATE_ENCODINGS else spec.n_inputs
    x = ParameterVector("x", n_inputs)
    w = ParameterVector("w", spec.n_weights)
    qc = QuantumCircuit(spec.n_qubits)

    def angle(param: Param) -> Any:
        value = x[param.index] if param.source == "input" else w[param.index]
        return value if param.scale == 1.0 else param.scale * value

    errors: dict[float, Any] = {}

    def channel_error(strength: float) -> Any:
        if strength not in errors:
            errors[strength] = _aer_error(aer_noise, spec.channel.kind, strength)
        return errors[strength]

    for op in (*program.encoding, *program.ansatz):
        if isinstance(op, AmplitudeEncoding):
            qc.append(StatePreparation(_normalised(amplitudes, spec)), range(spec.n_qubits))
        elif isinstance(op, Channel):
            if channels and strengths[op.layer] > 0.0:
                qc.append(channel_error(strengths[op.layer]).to_instruction(), [op.qubit])
        else:
            _append_gate(qc, op, angle)
    observables = tuple(SparsePauliOp(label) for label in spec.pauli_labels())
    return QiskitCircuit(circuit=qc, inputs=x, weights=w, observables=observables)


def _append_gate(qc: QuantumCircuit, gate: Gate, angle: Any) -> None:
    if gate.name == "h":
        qc.h(gate.qubits[0])
    elif gate.name == "cx":
        qc.cx(*gate.qubits)
    else:
        assert gate.param is not None
        getattr(qc, gate.name)(angle(gate.param), *gate.qubits)


def _aer_error(aer_noise: Any, kind: str, strength: float) -> Any:
    if kind == "amplitude_damping":
        return aer_noise.amplitude_damping_error(strength)
    if kind == "bit_flip":
        return aer_noise.pauli_error([("X", strength), ("I", 1.0 - strength)])
    if kind == "phase_flip":
        return aer_noise.pauli_error([("Z", strength), ("I", 1.0 - strength)])
    if kind == "depolarizing":
        return aer_noise.depolarizing_error(strength, 1)
    raise ValueError(f"no Aer error for channel kind {kind!r}")


def state_vector(amplitudes: Any, spec: PQCSpec) -> np.ndarray:
    """One sample's encoded state for the ``amplitude``/``complex_amplitude`` encodings,
    ``(2^n,)`` normalised (real for ``amplitude``, complex128 for ``complex_amplitude``).

    Raises:
        InvalidSpecError: missing, misshaped, zero or non-finite amplitudes (field ``inputs``).
    """
    return _normalised(amplitudes, spec)


def _normalised(amplitudes: Any, spec: PQCSpec) -> np.ndarray:
    if amplitudes is None:
        raise InvalidSpecError(
            "the amplitude encoding needs the sample's amplitudes to build a circuit",
            field="inputs",
        )
    if spec.encoding == "complex_amplitude":
        raw = np.asarray(amplitudes).reshape(-1)
        d = 2**spec.n_qubits
        if np.iscomplexobj(raw) and raw.shape == (d,):
            vec = raw.astype(np.complex128)
        elif raw.shape == (2 * d,):
            real = raw.astype(float)
            vec = real[:d] + 1j * real[d:]
        else:
            raise InvalidSpecError(
                f"expected {2 * d} real amplitudes (real parts, then imaginary parts) or {d} "
                f"complex ones, got shape {raw.shape}",
                field="inputs",
            )
        norm = float(np.linalg.norm(vec))
        if not np.isfinite(norm) or norm == 0.0:
            raise InvalidSpecError(
                "amplitude encoding of a zero (or non-finite) vector", field="inputs"
            )
        return vec / norm
    vec = np.asarray(amplitudes, dtype=float).reshape(-1)
    if vec.shape != (spec.n_inputs,):
        raise InvalidSpecError(
            f"expected {spec.n_inputs} amplitudes, got {vec.size}", field="inputs"
        )
    norm = float(np.linalg.norm(vec))
    if not np.isfinite(norm) or norm == 0.0:
        raise InvalidSpecError(
            "amplitude encoding of a zero (or non-finite) vector", field="inputs"
        )
    return vec / norm
