"""The API's schemas: what goes over the wire, separate from the store's rows and snapshots.

A family per entity: ``JobCreate`` (the body of ``POST /v1/jobs``, the job request itself),
``JobSubmitted``, ``JobPublic``, ``JobsPublic(data, count)``, ``ResultPublic``; ``RunCreate``,
``RunPublic``, ``RunsPublic``, ``RunLossesCreate``, ``RunLossesPublic``; ``BackendPublic``,
``BackendsPublic``; ``ErrorPublic``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from qldm.jobs.model import (
    BACKEND_NAME,
    Job,
    JobRequest,
    JobResult,
    JobStatus,
    Run,
    RunStatus,
)
from qldm.jobs.store import MAX_LOSS_POINTS

__all__ = [
    "BackendPublic",
    "BackendsPublic",
    "ErrorDetail",
    "ErrorPublic",
    "JobCreate",
    "JobErrorPublic",
    "JobPublic",
    "JobSubmitted",
    "JobsPublic",
    "LossPoint",
    "ResultPublic",
    "RunCreate",
    "RunLossesCreate",
    "RunLossesPublic",
    "RunPublic",
    "RunsPublic",
]

JobCreate = JobRequest
"""The body of ``POST /v1/jobs``: a :class:`JobRequest` (closed: unknown fields fail)."""


class ErrorDetail(BaseModel):
    """The inside of every error body."""

    code: str
    message: str
    field: str | None = None


class ErrorPublic(BaseModel):
    """Every error response: ``{"error": {"code", "message", "field"}}``."""

    error: ErrorDetail


class JobSubmitted(BaseModel):
    """The answer to ``POST /v1/jobs`` (202; 200 when an idempotency key matched a job)."""

    id: str
    status: JobStatus


class JobErrorPublic(BaseModel):
    """Why a job failed or was cancelled."""

    code: str
    message: str


class JobPublic(BaseModel):
    """A job as clients see it."""

    id: str
    status: JobStatus
    task: str
    backend: str
    run_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    progress: float
    cancel_requested: bool
    error: JobErrorPublic | None
    runtime_job_id: str | None = Field(
        default=None, description="the IBM Runtime job id(s) once submitted (comma-joined)"
    )
    runtime_state: str | None = Field(
        default=None,
        description="the runtime job's last state seen while waiting on it (queued, running, "
        "done, ...): a running job whose runtime_state is queued waits in the device's queue",
    )
    usage_s: float | None = Field(
        default=None, description="the runtime's reported usage of the job, QPU seconds"
    )

    @classmethod
    def of(cls, job: Job) -> JobPublic:
        """The public view of a store snapshot."""
        error = None
        if job.error_code is not None:
            error = JobErrorPublic(code=job.error_code, message=job.error_message or "")
        return cls(
            id=job.id,
            status=job.status,
            task=job.task,
            backend=job.backend,
            run_id=job.run_id,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            attempts=job.attempts,
            progress=job.progress,
            cancel_requested=job.cancel_requested,
            error=error,
            runtime_job_id=job.runtime_job_id,
            runtime_state=job.runtime_state,
            usage_s=job.usage_s,
        )


class JobsPublic(BaseModel):
    """A page of jobs and the total count matching the filter."""

    data: list[JobPublic]
    count: int


class ResultPublic(BaseModel):
    """A finished job's result as JSON (``Accept: application/x-npz`` gives the binary form).

    Attributes:
        id: the job.
        status: always ``succeeded``.
        values: ``(K, B, O)`` nested lists, or ``None`` for the counts task.
        d_inputs: ``(K, B, O, I)`` or ``None``.
        d_weights: ``(K, B, O, P)`` or ``None``.
        counts: ``K * B`` dicts bitstring -> count (counts task), else ``None``.
        metadata: backend facts.
        values_std: ``(K, B, O)`` standard errors of ``values`` (shot noise, after readout
            mitigation where it ran), or ``None`` where the backend reports none.
        d_inputs_std: ``(K, B, O, I)`` standard errors of ``d_inputs``, or ``None``.
        d_weights_std: ``(K, B, O, P)`` standard errors of ``d_weights``, or ``None``.
    """

    id: str
    status: JobStatus = JobStatus.SUCCEEDED
    values: list[Any] | None
    d_inputs: list[Any] | None = None
    d_weights: list[Any] | None = None
    counts: list[dict[str, int]] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    values_std: list[Any] | None = None
    d_inputs_std: list[Any] | None = None
    d_weights_std: list[Any] | None = None

    @classmethod
    def of(cls, job_id: str, result: JobResult) -> ResultPublic:
        """The JSON view of a result."""
        return cls(
            id=job_id,
            values=_lists(result.values),
            d_inputs=_lists(result.d_inputs),
            d_weights=_lists(result.d_weights),
            counts=result.counts,
            metadata=result.metadata,
            values_std=_lists(result.values_std),
            d_inputs_std=_lists(result.d_inputs_std),
            d_weights_std=_lists(result.d_weights_std),
        )


def _lists(arr: np.ndarray | None) -> list[Any] | None:
    return None if arr is None else np.asarray(arr, dtype=np.float64).tolist()


class RunCreate(BaseModel):
    """The body of ``POST /v1/runs``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    backend: str = Field(
        default="exact", min_length=1, max_length=100, pattern=BACKEND_NAME.pattern
    )
    execution_mode: Literal["job", "batch", "session"] | None = Field(
        default=None,
        description="IBM Runtime execution mode of the run's jobs that set none (null: a "
        "Session, or batches where the plan refuses Sessions, as the Open plan does)",
    )


class RunPublic(BaseModel):
    """A run as clients see it.

    ``session_id`` is the runtime Session its ``fake:``/``ibm:`` jobs share: the runtime's id on
    ``ibm:``, a ``local:<uuid>`` marker in local testing mode, ``None`` until its first runtime
    job opened one. It stays after the run is closed.
    """

    id: str
    name: str
    backend: str
    status: RunStatus
    created_at: datetime
    closed_at: datetime | None
    session_id: str | None = None
    job_counts: dict[JobStatus, int] = Field(
        default_factory=dict, description="the run's jobs by status (statuses with none left out)"
    )
    execution_mode: str | None = None
    usage_s: float | None = Field(
        default=None,
        description="the runtime's reported usage of the run's jobs summed, QPU seconds "
        "(null while none was reported)",
    )

    @classmethod
    def of(cls, run: Run, *, job_counts: dict[str, int] | None = None) -> RunPublic:
        """The public view of a store snapshot, with its jobs counted by status."""
        return cls(
            id=run.id,
            name=run.name,
            backend=run.backend,
            status=run.status,
            created_at=run.created_at,
            closed_at=run.closed_at,
            session_id=run.session_id,
            job_counts={JobStatus(k): v for k, v in (job_counts or {}).items()},
            execution_mode=run.execution_mode,
            usage_s=run.usage_s,
        )


class RunsPublic(BaseModel):
    """A page of runs and the total count."""

    data: list[RunPublic]
    count: int


class LossPoint(BaseModel):
    """One training step's loss, as the training client reports it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    step: int = Field(ge=0, le=2**63 - 1)
    loss: float = Field(allow_inf_nan=False)


class RunLossesCreate(BaseModel):
    """The body of ``POST /v1/runs/{run_id}/losses``: a batch of training losses (a step
    reported again replaces its loss)."""

    model_config = ConfigDict(extra="forbid")

    points: list[LossPoint] = Field(min_length=1, max_length=MAX_LOSS_POINTS)


class RunLossesPublic(BaseModel):
    """A run's losses by step (``data``), and how many the run has (``count``)."""

    data: list[LossPoint]
    count: int


class FloorLearningPublic(BaseModel):
    """The measured floor's experiment a job runs before its step (``options.floor:
    measured`` when the floor of its circuit was not learned yet)."""

    circuits: int
    shots: int
    executions: int
    qpu_seconds: float


class EstimatePublic(BaseModel):
    """What a job would cost on a runtime device (``POST /v1/estimate``; nothing runs).

    ``qpu_seconds`` is ``executions x (rep_delay_s + circuit_seconds)``, a lower bound (IBM's
    per-job overhead of a few seconds is left out); ``submissions`` is how many runtime jobs
    the per-job execution ``limit`` splits it into.
    """

    backend: str
    primitive: Literal["sampler", "estimator"]
    circuits: int
    shots: int
    executions: int
    payload_bytes: int
    circuit_seconds: float
    rep_delay_s: float
    qpu_seconds: float
    limit: int | None
    submissions: int
    floor_learning: FloorLearningPublic | None = None


class BackendPublic(BaseModel):
    """One backend the server can run jobs on."""

    name: str
    kind: Literal["exact", "aer", "fake", "ibm"]
    qubits: int
    available: bool


class BackendsPublic(BaseModel):
    """Every backend and the count."""

    data: list[BackendPublic]
    count: int
