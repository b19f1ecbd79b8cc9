"""Any parameterized Qiskit circuit, shipped as base64 QPY with its observables.

A :class:`QpyCircuit` is the second way (besides :class:`PQCSpec`) to say which circuit
a job runs: the client serialises ONE ``QuantumCircuit`` with :func:`qiskit.qpy.dump`, encodes
it in base64 and names which circuit parameters take the job's inputs (columns of
``inputs (B, I)``, in order) and which take its weights (``weights (P,)``, in order).

Example:
    >>> from qiskit import QuantumCircuit
    >>> from qiskit.circuit import Parameter
    >>> x, w = Parameter("x"), Parameter("w")
    >>> qc = QuantumCircuit(1)
    >>> _ = qc.ry(x, 0)
    >>> _ = qc.rz(w, 0)
    >>> circuit = QpyCircuit.from_circuit(qc, ["Z"], input_params=[x], weight_params=[w])
    >>> circuit.n_inputs, circuit.n_weights, circuit.n_outputs, circuit.n_qubits
    (1, 1, 1, 1)

Rules (each violation is an :class:`InvalidSpecError` naming ``circuit.<field>`` when the data
goes through :meth:`QpyCircuit.parse`):

- ``qpy``: at most :data:`MAX_QPY_CHARS` base64 characters that decode to a QPY file holding
  exactly one circuit of 1 to :data:`qldm.circuits.spec.MAX_QUBITS` qubits. Final measurements are
  removed (expectation values need none); any other measurement, classical bit or
  control-flow block is an error.
- ``observables``: 1 to :data:`qldm.circuits.spec.MAX_OBSERVABLES` entries, each a Pauli label
  (``"ZIX"``, Qiskit's order: the rightmost character acts on qubit 0) or a sparse real sum
  ``{"ZI": 0.5, "IZ": -0.5}``; every label has one character per circuit qubit.
- ``input_params`` / ``weight_params``: names of circuit parameters, each at most once, no name
  in both lists, and every parameter of the circuit in one of them.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator
from qiskit import QuantumCircuit
from qiskit import qpy as qiskit_qpy
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp

from qldm.circuits.spec import MAX_OBSERVABLES, MAX_QUBITS, spec_error_from_validation
from qldm.errors import InvalidSpecError

MAX_QPY_CHARS = 2_000_000
"""Longest accepted ``qpy`` string (base64 characters, about 1.5 MB of QPY): a circuit of tens
of thousands of gates, far beyond what a 12-qubit PQC needs."""

MIN_QPY_VERSION = 10
"""Oldest QPY format accepted (Qiskit 0.45, 2023); its headers are checked before loading."""

MAX_CLBITS = 4 * MAX_QUBITS
"""Most classical bits (final measurements are removed; a few registers' worth is plenty)."""

MAX_TERMS = 4096
"""Most Pauli terms, summed over all observables."""

_CONTROL_FLOW = frozenset({"if_else", "while_loop", "for_loop", "switch_case", "box"})

Observable = str | dict[str, float]
"""A Pauli label, or a sparse real sum ``{label: coefficient}``."""


@dataclass(frozen=True)
class LoadedCircuit:
    """A decoded :class:`QpyCircuit` (shared through a cache: never mutate it).

    Attributes:
        circuit: the circuit, final measurements removed.
        inputs: the parameters that take the inputs, ``(I,)``, in column order.
        weights: the parameters that take the weights, ``(P,)``, in order.
        observables: one Hermitian ``SparsePauliOp`` per output, ``(O,)``.
    """

    circuit: QuantumCircuit
    inputs: tuple[Parameter, ...]
    weights: tuple[Parameter, ...]
    observables: tuple[SparsePauliOp, ...]


class QpyCircuit(BaseModel):
    """One parameterized Qiskit circuit as base64 QPY, its observables and parameter roles.

    Attributes:
        qpy: base64 of ``qiskit.qpy.dump`` of exactly one circuit.
        observables: ``(O,)`` Pauli labels or sparse real sums ``{label: coeff}``.
        input_params: circuit parameter names that take the inputs, ``(I,)`` in column order.
        weight_params: circuit parameter names that take the weights, ``(P,)`` in order.

    Use :meth:`parse` on untrusted data (it raises :class:`InvalidSpecError`) and
    :meth:`from_circuit` to build one from a ``QuantumCircuit``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    qpy: str
    observables: list[Observable]
    input_params: list[str] = []
    weight_params: list[str] = []

    # ------------------------------------------------------------------ validation

    @field_validator("qpy")
    @classmethod
    def _decodes(cls, value: str) -> str:
        _decode(value)  # raises ValueError with the reason
        return value

    @field_validator("observables")
    @classmethod
    def _paulis(cls, value: list[Observable], info: ValidationInfo) -> list[Observable]:
        if not value:
            raise ValueError("at least one observable is required")
        if len(value) > MAX_OBSERVABLES:
            raise ValueError(f"at most {MAX_OBSERVABLES} observables, got {len(value)}")
        qpy_text = info.data.get("qpy")
        n_qubits = _decode(qpy_text).num_qubits if qpy_text is not None else None
        n_terms = 0
        for i, obs in enumerate(value):
            terms = {obs: 1.0} if isinstance(obs, str) else obs
            if not terms:
                raise ValueError(f"observable {i} is an empty sum")
            for label, coeff in terms.items():
                if not label or set(label) - set("IXYZ"):
                    raise ValueError(
                        f"observable {i}: Pauli label {label!r} may only contain I, X, Y and Z"
                    )
                if n_qubits is not None and len(label) != n_qubits:
                    raise ValueError(
                        f"observable {i}: Pauli label {label!r} has {len(label)} characters, "
                        f"the circuit has {n_qubits} qubits"
                    )
                if not math.isfinite(coeff):
                    raise ValueError(f"observable {i}: coefficient of {label!r} is not finite")
            n_terms += len(terms)
        if n_terms > MAX_TERMS:
            raise ValueError(f"at most {MAX_TERMS} Pauli terms in all, got {n_terms}")
        return value

    @field_validator("input_params", "weight_params")
    @classmethod
    def _names(cls, value: list[str], info: ValidationInfo) -> list[str]:
        dupes = sorted({name for name in value if value.count(name) > 1})
        if dupes:
            raise ValueError(f"parameter names listed more than once: {dupes}")
        qpy_text = info.data.get("qpy")
        if qpy_text is None:  # the qpy field already failed
            return value
        circuit = _decode(qpy_text)
        known = {p.name for p in circuit.parameters}
        unknown = [name for name in value if name not in known]
        if unknown:
            raise ValueError(
                f"the circuit has no parameters named {unknown}; it has {sorted(known)}"
            )
        if info.field_name == "weight_params":
            inputs = info.data.get("input_params")
            if inputs is None:  # input_params already failed
                return value
            both = sorted(set(inputs) & set(value))
            if both:
                raise ValueError(f"parameters {both} are in both input_params and weight_params")
            missing = sorted(known - set(inputs) - set(value))
            if missing:
                raise ValueError(
                    f"circuit parameters {missing} are in neither input_params nor weight_params"
                )
        return value

    # ------------------------------------------------------------------ construction

    @classmethod
    def parse(cls, data: Any) -> QpyCircuit:
        """Validate a dict or JSON text into a :class:`QpyCircuit`.

        Raises:
            InvalidSpecError: naming the first offending field (``circuit.qpy``,
                ``circuit.observables``, ``circuit.input_params``, ``circuit.weight_params``).
        """
        try:
            if isinstance(data, (str, bytes)):
                return cls.model_validate_json(data)
            return cls.model_validate(data)
        except ValidationError as exc:
            raise spec_error_from_validation(exc, prefix="circuit") from None

    @classmethod
    def from_circuit(
        cls,
        circuit: QuantumCircuit,
        observables: Sequence[str | Mapping[str, float] | SparsePauliOp],
        *,
        input_params: Sequence[Parameter | str] = (),
        weight_params: Sequence[Parameter | str] = (),
    ) -> QpyCircuit:
        """Encode ``circuit`` (client side).

        Args:
            circuit: one circuit; measurements at its end are allowed (they are removed).
            observables: ``(O,)`` Pauli labels, ``{label: coeff}`` sums or ``SparsePauliOp``
                (real coefficients).
            input_params: parameters (or names) that take the inputs, in column order.
            weight_params: parameters (or names) that take the weights, in order.

        Raises:
            InvalidSpecError: as :meth:`parse`; ``circuit.observables`` for a
                ``SparsePauliOp`` with complex coefficients.
        """
        buffer = io.BytesIO()
        qiskit_qpy.dump(circuit, buffer)
        encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
        return cls.parse(
            {
                "qpy": encoded,
                "observables": [_observable_json(obs) for obs in observables],
                "input_params": [_name(p) for p in input_params],
                "weight_params": [_name(p) for p in weight_params],
            }
        )

    # ------------------------------------------------------------------ views

    def load(self) -> LoadedCircuit:
        """The decoded circuit, its parameters by role and its observables (cached)."""
        return _load(*self.cache_key())

    def cache_key(self) -> tuple[str, tuple[str, ...], tuple[str, ...], tuple[Any, ...]]:
        """A hashable key equal for equal circuits (for caches of derived objects)."""
        return (
            self.qpy,
            tuple(self.input_params),
            tuple(self.weight_params),
            tuple(_observable_key(obs) for obs in self.observables),
        )

    @property
    def n_inputs(self) -> int:
        """Number of inputs per sample, ``I``."""
        return len(self.input_params)

    @property
    def n_weights(self) -> int:
        """Number of weights, ``P``."""
        return len(self.weight_params)

    @property
    def n_outputs(self) -> int:
        """Number of observables, ``O``."""
        return len(self.observables)

    @property
    def n_qubits(self) -> int:
        """Number of qubits of the circuit."""
        return _decode(self.qpy).num_qubits


# ---------------------------------------------------------------------- decoding


@lru_cache(maxsize=64)
def _decode(text: str) -> QuantumCircuit:
    """Decode and check one circuit; final measurements removed (shared: do not mutate).

    Raises:
        ValueError: the reason, without a field name (the caller's field is ``qpy``).
    """
    if len(text) > MAX_QPY_CHARS:
        raise ValueError(f"at most {MAX_QPY_CHARS} base64 characters, got {len(text)}")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"not valid base64 ({exc})") from None
    _check_header(raw)
    try:
        programs = qiskit_qpy.load(io.BytesIO(raw))
    except Exception as exc:  # QpyError, struct.error, EOFError, ... on bad bytes
        reason = _ANSI.sub("", str(exc)).strip().splitlines()
        raise ValueError(
            f"not a QPY file this server can read ({type(exc).__name__}: "
            f"{(reason[0] if reason else '')[:200]})"
        ) from None
    if len(programs) != 1:
        raise ValueError(f"expected exactly one circuit in the QPY file, got {len(programs)}")
    circuit = programs[0]
    if not isinstance(circuit, QuantumCircuit):
        raise ValueError(f"expected a QuantumCircuit, got {type(circuit).__name__}")
    if not 1 <= circuit.num_qubits <= MAX_QUBITS:
        raise ValueError(f"the circuit has {circuit.num_qubits} qubits; 1 to {MAX_QUBITS} allowed")
    if circuit.num_clbits:
        circuit = circuit.remove_final_measurements(inplace=False)
    for instruction in circuit.data:
        name = instruction.operation.name
        if name == "measure":
            raise ValueError(
                "the circuit measures before its end; only final measurements can be dropped"
            )
        if name in _CONTROL_FLOW:
            raise ValueError(f"control flow ({name}) is not supported")
    if circuit.num_clbits:
        raise ValueError("the circuit has classical bits that are still in use")
    return circuit


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FILE_HEADER = struct.Struct("!6sBBBBQc")  # QPY >= 10: preface, version, qiskit x.y.z, count, enc
_CIRCUIT_HEAD = struct.Struct("!H1cHIIQ")  # name size, phase type/size, qubits, clbits, metadata


def _check_header(raw: bytes) -> None:
    """Read the sizes a QPY file declares before Qiskit allocates for them.

    ``qiskit.qpy.load`` allocates the declared number of qubits first: a 100-byte file
    declaring 10^8 qubits makes it abort the process (a failed Rust allocation), before any
    check of ours could run. So the file header (QPY format 10 or newer, Qiskit 0.45+) and
    the circuit header are read here, and the counts bounded first.
    """
    if len(raw) < _FILE_HEADER.size + 1 or raw[:6] != b"QISKIT":
        raise ValueError("not a QPY file (no QISKIT preface)")
    _, version, *_, count, _ = _FILE_HEADER.unpack_from(raw)
    if version < MIN_QPY_VERSION:
        raise ValueError(
            f"QPY format {version} is too old; write format {MIN_QPY_VERSION} or newer "
            "(any Qiskit since 0.45 does by default)"
        )
    if version > qiskit_qpy.QPY_VERSION:
        raise ValueError(
            f"QPY format {version} is newer than this server's Qiskit reads "
            f"(<= {qiskit_qpy.QPY_VERSION}); dump with version={qiskit_qpy.QPY_VERSION}"
        )
    if count != 1:
        raise ValueError(f"expected exactly one circuit in the QPY file, got {count}")
    pos = _FILE_HEADER.size
    if raw[pos : pos + 1] != b"q":
        raise ValueError("the QPY file does not hold a circuit")
    pos += 1
    if version >= 16:  # a table of circuit offsets
        if len(raw) < pos + 8:
            raise ValueError("truncated QPY file")
        (pos,) = struct.unpack_from("!Q", raw, pos)
    if len(raw) < pos + _CIRCUIT_HEAD.size:
        raise ValueError("truncated QPY file")
    _, _, _, n_qubits, n_clbits, metadata_size = _CIRCUIT_HEAD.unpack_from(raw, pos)
    if not 1 <= n_qubits <= MAX_QUBITS:
        raise ValueError(f"the circuit has {n_qubits} qubits; 1 to {MAX_QUBITS} allowed")
    if n_clbits > MAX_CLBITS:
        raise ValueError(f"the circuit has {n_clbits} classical bits; at most {MAX_CLBITS}")
    if metadata_size > len(raw):
        raise ValueError("truncated QPY file (metadata larger than the file)")


@lru_cache(maxsize=64)
def _load(
    text: str,
    inputs: tuple[str, ...],
    weights: tuple[str, ...],
    observables: tuple[tuple[tuple[str, float], ...], ...],
) -> LoadedCircuit:
    circuit = _decode(text)
    by_name = {p.name: p for p in circuit.parameters}
    return LoadedCircuit(
        circuit=circuit,
        inputs=tuple(by_name[name] for name in inputs),
        weights=tuple(by_name[name] for name in weights),
        observables=tuple(SparsePauliOp.from_list(list(terms)) for terms in observables),
    )


def _observable_key(obs: Observable) -> tuple[tuple[str, float], ...]:
    if isinstance(obs, str):
        return ((obs, 1.0),)
    return tuple((label, float(coeff)) for label, coeff in obs.items())


def _observable_json(obs: str | Mapping[str, float] | SparsePauliOp) -> Observable:
    if isinstance(obs, str):
        return obs
    if isinstance(obs, SparsePauliOp):
        terms: dict[str, float] = {}
        for label, coeff in obs.to_list():
            if abs(complex(coeff).imag) > 1e-12:
                raise InvalidSpecError(
                    f"observable {obs} has a complex coefficient", field="circuit.observables"
                )
            terms[label] = terms.get(label, 0.0) + complex(coeff).real
        return terms
    return {str(label): float(coeff) for label, coeff in obs.items()}


def _name(param: Parameter | str) -> str:
    return param if isinstance(param, str) else param.name
