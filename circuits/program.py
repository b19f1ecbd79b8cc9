"""A spec compiled to a flat list of gates: the one circuit definition every engine walks.

The Qiskit builder, the exact torch engine and the shift rules all read the same
:class:`Program`, so there is exactly one place that says what ``ry_rz_brickwork`` is.

Invariants (checked by :func:`compile_spec` and relied on by the engines):

- data enters only in ``Program.encoding``, which holds no weights and no channels, so an
  engine may evolve the observables backwards through ``Program.ansatz`` once (Heisenberg
  picture) and contract them with every sample's encoded state;
- every input and every weight drives exactly one gate, so a parameter-shift term shifts one
  gate.

Gate conventions (Qiskit's): ``rx/ry/rz(t) = exp(-i t P / 2)``, ``p(t) = diag(1, e^{it})``,
``crx/crz`` apply ``rx/rz`` to ``qubits[1]`` when ``qubits[0]`` is 1, ``cx`` has the control
first. A :class:`Param` ``angle = scale * value``.

The ansätze (``n`` qubits, per layer; weights ordered layer, then block in the order the
blocks are applied, then gate):

- ``ry_rz_brickwork``: RY(w) then RZ(w) on every qubit, then CNOT(i, i+1) for even i, then
  CNOT(i, i+1) for odd i. ``2n`` weights.
- ``basic_entangler``: RX(w) on every qubit, then a ring of CNOT(i, i+1 mod n) (one CNOT for
  two qubits, none for one), as PennyLane's ``BasicEntanglerLayers``. ``n`` weights.
- ``hqconv`` (De Falco et al., hierarchical): qubits form channels of 4 (a 2x2 patch each).
  A-blocks, stride 1 inside each channel: CRZ(w) then CRX(w) on (p, p+1 mod 4) for each p of
  the channel; then B-blocks between channels: CRZ(w) then CRX(w) from the first qubit of
  channel c to the first qubit of channel c+1. ``2(n + n/4 - 1)`` weights.
- ``fqconv`` (flat): C-blocks CRZ(w) on (p, p+4 mod n) for every p, then D-blocks CRX(w) on
  (p, p+4 mod n) for every p: every gate crosses channels. Needs two or more channels.
  ``2n`` weights.
- ``mps``: a staircase of blocks on (i, i+1), i = 0..n-2: RY(w) on i, RY(w) on i+1,
  CNOT(i, i+1). ``2(n-1)`` weights.

The encodings (``x`` is one sample):

- ``angle_ry`` / ``angle_rx``: RY(x_i) / RX(x_i) on qubit i.
- ``dense_angle``: RY(x_{2i}) then RZ(x_{2i+1}) on qubit i.
- ``phase``: H then P(x_i) on qubit i.
- ``amplitude``: the real state x / |x| (2^n inputs, Qiskit's basis order). A zero vector is
  an error.
- ``complex_amplitude``: the complex state z / |z| with ``z = x[:2^n] + i x[2^n:]`` (2 * 2^n
  inputs: real parts, then imaginary parts). A zero vector is an error.

Timestep embedding (``spec.timestep``): the program describes the ansatz's angles ``theta``
(``n_weights = P_a``) and the data inputs only (``n_inputs = I - m``); the engines compute the
per-sample angles ``theta_k = w_k + sum_j tau_j v_{j,k}`` from the spec's weights and the
timestep features (:mod:`qldm.circuits.timestep`).
- ``basis``: RX(pi x_i) on qubit i, which prepares |x> (up to a global phase) for bits
  x_i in {0, 1}; derivatives by inputs are those of this smooth extension.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from qldm.circuits.spec import QCONV_BLOCK, PQCSpec

GateName = Literal["h", "rx", "ry", "rz", "p", "cx", "crx", "crz"]
PARAMETRIC_GATES: frozenset[str] = frozenset({"rx", "ry", "rz", "p", "crx", "crz"})


@dataclass(frozen=True)
class Param:
    """A gate angle taken from the data or the weights: ``angle = scale * value``."""

    source: Literal["input", "weight"]
    index: int
    scale: float = 1.0


@dataclass(frozen=True)
class Gate:
    """One gate. ``param`` is ``None`` for fixed gates (``h``, ``cx``)."""

    name: GateName
    qubits: tuple[int, ...]
    param: Param | None = None


@dataclass(frozen=True)
class Channel:
    """The spec's noise channel on ``qubit``, after ansatz layer ``layer``."""

    qubit: int
    layer: int


@dataclass(frozen=True)
class AmplitudeEncoding:
    """Prepare the normalised input vector as the state of all qubits (real, or complex:
    real parts then imaginary parts)."""

    n_qubits: int
    complex: bool = False


EncodingOp = Gate | AmplitudeEncoding
AnsatzOp = Gate | Channel


@dataclass(frozen=True)
class Program:
    """A compiled spec.

    Attributes:
        n_qubits: number of qubits.
        encoding: ops that depend only on the inputs, applied first to |0...0>.
        ansatz: ops that depend only on the weights, and the channels (if the spec has one).
        n_inputs: number of inputs the encoding reads (``I``; ``I - m`` with a timestep).
        n_weights: number of ansatz angles (``P``; ``P_a`` with a timestep).
    """

    n_qubits: int
    encoding: tuple[EncodingOp, ...]
    ansatz: tuple[AnsatzOp, ...]
    n_inputs: int
    n_weights: int

    @property
    def gates(self) -> tuple[Gate, ...]:
        """Every parametric or fixed gate, encoding first (channels and state prep excluded)."""
        return tuple(op for op in (*self.encoding, *self.ansatz) if isinstance(op, Gate))


def compile_spec(spec: PQCSpec) -> Program:
    """Compile ``spec`` into its :class:`Program` (cached: specs are immutable)."""
    return _compile(spec)


@lru_cache(maxsize=256)
def _compile(spec: PQCSpec) -> Program:
    n = spec.n_qubits
    encoding = _encoding_ops(spec.encoding, n)
    ansatz: list[AnsatzOp] = []
    per_layer = spec.weights_per_layer
    for layer in range(spec.layers):
        ansatz.extend(_ansatz_layer(spec.ansatz, n, layer, layer * per_layer))
        if spec.noisy:
            ansatz.extend(Channel(q, layer) for q in range(n))
    program = Program(
        n_qubits=n,
        encoding=tuple(encoding),
        ansatz=tuple(ansatz),
        n_inputs=spec.n_data_inputs,
        n_weights=spec.layers * per_layer,
    )
    _check_invariants(program)
    return program


def _encoding_ops(encoding: str, n: int) -> list[EncodingOp]:
    if encoding == "amplitude":
        return [AmplitudeEncoding(n)]
    if encoding == "complex_amplitude":
        return [AmplitudeEncoding(n, complex=True)]
    ops: list[EncodingOp] = []
    for q in range(n):
        if encoding == "angle_ry":
            ops.append(Gate("ry", (q,), Param("input", q)))
        elif encoding == "angle_rx":
            ops.append(Gate("rx", (q,), Param("input", q)))
        elif encoding == "dense_angle":
            ops.append(Gate("ry", (q,), Param("input", 2 * q)))
            ops.append(Gate("rz", (q,), Param("input", 2 * q + 1)))
        elif encoding == "phase":
            ops.append(Gate("h", (q,)))
            ops.append(Gate("p", (q,), Param("input", q)))
        elif encoding == "basis":
            ops.append(Gate("rx", (q,), Param("input", q, math.pi)))
        else:  # pragma: no cover - the spec's Literal rejects it first
            raise ValueError(f"unknown encoding {encoding!r}")
    return ops


def _ansatz_layer(ansatz: str, n: int, layer: int, offset: int) -> list[Gate]:
    """One layer's gates; weights numbered from ``offset`` in application order."""
    ops: list[Gate] = []

    def rot(name: GateName, qubits: tuple[int, ...]) -> None:
        ops.append(
            Gate(name, qubits, Param("weight", offset + sum(o.param is not None for o in ops)))
        )

    if ansatz == "ry_rz_brickwork":
        for q in range(n):
            rot("ry", (q,))
            rot("rz", (q,))
        ops.extend(Gate("cx", (i, i + 1)) for i in range(0, n - 1, 2))
        ops.extend(Gate("cx", (i, i + 1)) for i in range(1, n - 1, 2))
    elif ansatz == "basic_entangler":
        for q in range(n):
            rot("rx", (q,))
        if n == 2:
            ops.append(Gate("cx", (0, 1)))
        elif n > 2:
            ops.extend(Gate("cx", (i, (i + 1) % n)) for i in range(n))
    elif ansatz == "hqconv":
        channels = n // QCONV_BLOCK
        for c in range(channels):
            base = c * QCONV_BLOCK
            for p in range(QCONV_BLOCK):
                pair = (base + p, base + (p + 1) % QCONV_BLOCK)
                rot("crz", pair)
                rot("crx", pair)
        for c in range(channels - 1):
            pair = (c * QCONV_BLOCK, (c + 1) * QCONV_BLOCK)
            rot("crz", pair)
            rot("crx", pair)
    elif ansatz == "fqconv":
        stride = QCONV_BLOCK
        if n <= stride:
            raise ValueError("fqconv needs at least two channels of 4 qubits")
        for p in range(n):
            rot("crz", (p, (p + stride) % n))
        for p in range(n):
            rot("crx", (p, (p + stride) % n))
    elif ansatz == "mps":
        for i in range(n - 1):
            rot("ry", (i,))
            rot("ry", (i + 1,))
            ops.append(Gate("cx", (i, i + 1)))
    else:  # pragma: no cover - the spec's Literal rejects it first
        raise ValueError(f"unknown ansatz {ansatz!r}")
    return ops


def _check_invariants(program: Program) -> None:
    """Internal consistency of a compiled program (a failure is a bug in this module)."""
    wrong_source = [
        g
        for ops, source in ((program.encoding, "input"), (program.ansatz, "weight"))
        for g in ops
        if isinstance(g, Gate) and g.param is not None and g.param.source != source
    ]
    if wrong_source:
        raise RuntimeError(f"gates read the wrong kind of parameter: {wrong_source}")
    seen: dict[tuple[str, int], int] = {}
    for gate in program.gates:
        if gate.param is not None:
            key = (gate.param.source, gate.param.index)
            seen[key] = seen.get(key, 0) + 1
    if any(count != 1 for count in seen.values()):
        raise RuntimeError("every input and weight must drive exactly one gate")
    weights = sorted(index for source, index in seen if source == "weight")
    if weights != list(range(program.n_weights)):
        raise RuntimeError("weights are not numbered 0..P-1")
