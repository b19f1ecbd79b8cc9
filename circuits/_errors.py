"""The root of qldm's exceptions.

Every package raises subclasses of :class:`QldmError`, mixed with the built-in type a caller
would expect (``ValueError`` for bad input), and carrying the name of the offending field.
"""

from __future__ import annotations


class QldmError(Exception):
    """Root of every error qldm raises on purpose.

    Attributes:
        field: dotted name of the input field the error is about, or ``None``.
        code: a stable, machine-readable error code (used in HTTP error bodies).
    """

    code = "qldm_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        if self.field:
            return f"{self.field}: {self.message}"
        return self.message


class InvalidSpecError(QldmError, ValueError):
    """A circuit spec, or the inputs, weights or noise levels given with it, are invalid."""

    code = "invalid_spec"
