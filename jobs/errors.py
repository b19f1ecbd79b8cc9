"""Errors raised by the job layer and the backends."""

from __future__ import annotations

from circuits._errors import InvalidSpecError, QldmError

__all__ = [
    "BackendError",
    "BackendLimitError",
    "IdempotencyConflictError",
    "InvalidSpecError",
    "JobCancelled",
    "JobNotFinishedError",
    "JobNotFoundError",
    "QldmError",
    "RunClosedError",
    "RunNotFoundError",
    "UnknownBackendError",
]


class BackendError(QldmError, RuntimeError):
    """A backend failed to run work it had accepted."""

    code = "backend_error"


class BackendLimitError(QldmError, ValueError):
    """The work exceeds what this backend can run (qubits, shots, samples, memory)."""

    code = "backend_limit"


class UnknownBackendError(QldmError, ValueError):
    """No backend has this name."""

    code = "unknown_backend"


class JobNotFoundError(QldmError, LookupError):
    """No job with this id belongs to the caller's tenant."""

    code = "not_found"


class JobNotFinishedError(QldmError, RuntimeError):
    """The job has no result yet (queued or running), or ended without one."""

    code = "not_finished"


class IdempotencyConflictError(QldmError, ValueError):
    """An idempotency key was reused with a different request body."""

    code = "idempotency_conflict"


class RunNotFoundError(QldmError, LookupError):
    """No run with this id belongs to the caller's tenant."""

    code = "not_found"


class RunClosedError(QldmError, RuntimeError):
    """The run is closed: it takes no more jobs."""

    code = "run_closed"


class JobCancelled(QldmError, RuntimeError):
    """Raised inside a worker when the job was cancelled between two chunks."""

    code = "cancelled"
