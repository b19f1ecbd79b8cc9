"""PQC specs, their compiled gate programs, Qiskit circuits and shift rules."""

from circuits._errors import InvalidSpecError, QldmError
from circuits.program import Program, compile_spec
from circuits.spec import MAX_QUBITS, ChannelSpec, PQCSpec

__all__ = [
    "MAX_QUBITS",
    "ChannelSpec",
    "InvalidSpecError",
    "PQCSpec",
    "Program",
    "QldmError",
    "compile_spec",
]
