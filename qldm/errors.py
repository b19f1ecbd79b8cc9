"""qldm's exceptions and the one table from error code to HTTP status.

Every package raises subclasses of :class:`QldmError`, mixed with the built-in type a caller
would expect (``ValueError`` for bad input), carrying the name of the offending field. Each
class has a stable ``code``; :data:`ERRORS` maps every code the server answers with to its
HTTP status and to the class the client raises for it. The server (``qldm.service.errors``)
and the client (``qldm.client.service_client``) both read this table, so the two cannot drift.

This module imports nothing from qldm, so every layer may import it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ERRORS",
    "BackendError",
    "BackendLimitError",
    "ErrorKind",
    "IdempotencyConflictError",
    "InvalidSpecError",
    "JobCancelled",
    "JobNotFinishedError",
    "JobNotFoundError",
    "MitigationError",
    "NoiseFloorError",
    "PayloadTooLargeError",
    "QldmError",
    "RequestValidationError",
    "ResultExpiredError",
    "RunClosedError",
    "RunNotFoundError",
    "TooManyJobsError",
    "UnauthorizedError",
    "UnknownBackendError",
    "UnsupportedMediaTypeError",
    "error_class",
    "status_for",
]


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


class RequestValidationError(QldmError, ValueError):
    """A request body, parameter or header fails validation (unknown field, wrong shape)."""

    code = "validation_error"


class UnknownBackendError(QldmError, ValueError):
    """No backend has this name."""

    code = "unknown_backend"


class BackendLimitError(QldmError, ValueError):
    """The work exceeds what this backend can run (qubits, shots, samples, memory, task)."""

    code = "backend_limit"


class BackendError(QldmError, RuntimeError):
    """A backend failed to run work it had accepted."""

    code = "backend_error"


class NoiseFloorError(QldmError, ValueError):
    """A requested channel strength is below what the device already does on its own."""

    code = "noise_floor"


class MitigationError(QldmError, RuntimeError):
    """Readout calibration or correction failed."""

    code = "mitigation_error"


class UnauthorizedError(QldmError, PermissionError):
    """No API key, or one the server does not know."""

    code = "unauthorized"


class JobNotFoundError(QldmError, LookupError):
    """No job with this id belongs to the caller's tenant."""

    code = "job_not_found"


class RunNotFoundError(QldmError, LookupError):
    """No run with this id belongs to the caller's tenant."""

    code = "run_not_found"


class JobNotFinishedError(QldmError, RuntimeError):
    """The job has no result yet (queued or running), or ended without one."""

    code = "not_finished"


class JobCancelled(QldmError, RuntimeError):
    """The job was cancelled (raised inside a worker between two chunks)."""

    code = "cancelled"


class ResultExpiredError(QldmError, LookupError):
    """The job succeeded, but its result was pruned (the server's result retention)."""

    code = "result_expired"


class IdempotencyConflictError(QldmError, ValueError):
    """An idempotency key was reused with a different request body."""

    code = "idempotency_conflict"


class RunClosedError(QldmError, RuntimeError):
    """The run is closed: it takes no more jobs."""

    code = "run_closed"


class PayloadTooLargeError(QldmError, ValueError):
    """A request body, or one of its arrays, is larger than the server takes."""

    code = "payload_too_large"


class TooManyJobsError(QldmError, RuntimeError):
    """The tenant has as many jobs queued or running as the server allows one tenant.

    Attributes:
        retry_after_s: seconds after which a retry may be taken (the ``Retry-After`` header).
    """

    code = "too_many_jobs"

    def __init__(self, message: str, *, field: str | None = None, retry_after_s: int = 1) -> None:
        super().__init__(message, field=field)
        self.retry_after_s = retry_after_s


class UnsupportedMediaTypeError(QldmError, ValueError):
    """A body in a media type the route does not read."""

    code = "unsupported_media_type"


@dataclass(frozen=True)
class ErrorKind:
    """One row of :data:`ERRORS`: an error code's HTTP status, its class and when it happens."""

    status: int
    cls: type[QldmError] | None
    when: str


ERRORS: dict[str, ErrorKind] = {
    "validation_error": ErrorKind(
        422, RequestValidationError, "a body, parameter or header fails validation"
    ),
    "invalid_spec": ErrorKind(
        422, InvalidSpecError, "the circuit, inputs, weights or noise levels are invalid"
    ),
    "unknown_backend": ErrorKind(422, UnknownBackendError, "no backend has this name"),
    "noise_floor": ErrorKind(
        422, NoiseFloorError, "a requested channel is weaker than the device's own noise"
    ),
    "backend_limit": ErrorKind(
        400, BackendLimitError, "too many qubits, shots or samples, or a task the backend lacks"
    ),
    "bad_request": ErrorKind(400, None, "a request the server cannot read"),
    "unauthorized": ErrorKind(401, UnauthorizedError, "missing or wrong API key"),
    "job_not_found": ErrorKind(404, JobNotFoundError, "no such job, or another tenant's"),
    "run_not_found": ErrorKind(404, RunNotFoundError, "no such run, or another tenant's"),
    "not_found": ErrorKind(404, None, "no such route"),
    "method_not_allowed": ErrorKind(405, None, "the route does not take this method"),
    "not_acceptable": ErrorKind(406, None, "no answer in an accepted media type"),
    "not_finished": ErrorKind(
        409, JobNotFinishedError, "the job has no result yet (queued or running)"
    ),
    "cancelled": ErrorKind(409, JobCancelled, "the job was cancelled: it has no result"),
    "idempotency_conflict": ErrorKind(
        409, IdempotencyConflictError, "an Idempotency-Key reused with a different body"
    ),
    "run_closed": ErrorKind(409, RunClosedError, "the run takes no more jobs"),
    "job_failed": ErrorKind(409, None, "the job failed; ``job_error`` holds its own error"),
    "conflict": ErrorKind(409, None, "the request conflicts with the resource's state"),
    "result_expired": ErrorKind(
        410, ResultExpiredError, "the job succeeded but its result was pruned (retention)"
    ),
    "payload_too_large": ErrorKind(
        413, PayloadTooLargeError, "the body is larger than the server takes"
    ),
    "unsupported_media_type": ErrorKind(
        415, UnsupportedMediaTypeError, "neither JSON nor application/x-npz"
    ),
    "too_many_jobs": ErrorKind(
        429,
        TooManyJobsError,
        "the tenant has as many jobs queued or running as allowed; retry after Retry-After s",
    ),
    "internal_error": ErrorKind(500, None, "a bug; the message says nothing about it"),
    "mitigation_error": ErrorKind(502, MitigationError, "readout mitigation failed"),
    "backend_error": ErrorKind(502, BackendError, "the backend failed (a failed job's result)"),
    "unavailable": ErrorKind(503, None, "the server is shutting down or overloaded"),
}
"""Every code the server answers with: its HTTP status, the client's class, and when."""


def status_for(exc: QldmError) -> int:
    """The HTTP status of a qldm error (by its ``code``; unknown codes by its base type)."""
    kind = ERRORS.get(exc.code)
    if kind is not None:
        return kind.status
    if isinstance(exc, LookupError):
        return 404
    if isinstance(exc, ValueError):
        return 422
    return 500


def error_class(code: str) -> type[QldmError] | None:
    """The class that stands for ``code`` (``None`` for codes without one)."""
    kind = ERRORS.get(code)
    return kind.cls if kind is not None else None
