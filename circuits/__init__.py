"""PQC specs, their compiled gate programs, Qiskit circuits and shift rules."""

from qldm.circuits.program import Program, compile_spec
from qldm.circuits.spec import MAX_QUBITS, ChannelSpec, PQCSpec
from qldm.errors import InvalidSpecError, QldmError

__all__ = [
    "MAX_QUBITS",
    "ChannelSpec",
    "InvalidSpecError",
    "PQCSpec",
    "Program",
    "QldmError",
    "compile_spec",
]
