"""What a job is: its request, its states, its result, and the runs and API keys around it.

A client submits a :class:`JobRequest` (a circuit, a batch of inputs, the weights, the task and
the backend). The store keeps it and hands back :class:`Job` snapshots, immutable objects that
say where the job is in its life::

    queued ──claim──▶ running ──complete──▶ succeeded
      │                  │ └──────fail────▶ failed
      └──cancel──▶ cancelled ◀──cancel (checked between chunks)

A worker that dies puts a running job back to ``queued`` until ``max_attempts`` is reached,
then the job fails with the reason. Shapes: ``B`` samples, ``I`` inputs, ``P`` weights, ``O``
observables, ``K`` noise levels.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import core_schema

from qldm.backends._spsa import MAX_DIRECTIONS
from qldm.backends.base import NoiseSampling, Task, Workload
from qldm.backends.outputs import Metric, Output
from qldm.circuits.qpy import QpyCircuit
from qldm.circuits.spec import PQCSpec, spec_error_from_validation
from qldm.errors import InvalidSpecError
from qldm.jobs._strict import first_loose_value

if TYPE_CHECKING:
    from qldm.backends.base import Evaluation

__all__ = [
    "ARRAY_FIELDS",
    "BACKEND_NAME",
    "RESULT_ARRAYS",
    "TERMINAL",
    "ApiKey",
    "Job",
    "JobOptions",
    "JobRequest",
    "JobResult",
    "JobStatus",
    "Run",
    "RunStatus",
    "TaskName",
]

TaskName = Task
"""The tasks a job may ask for: :class:`qldm.backends.base.Task` (a new task is one value there)."""

ARRAY_FIELDS = ("inputs", "weights", "noise_levels", "targets")
"""The numeric fields of a :class:`JobRequest` (:meth:`JobRequest.arrays`)."""

RESULT_ARRAYS = ("values", "d_inputs", "d_weights", "values_std", "d_inputs_std", "d_weights_std")
"""The array fields of a :class:`JobResult` (:meth:`JobResult.arrays`): the entries of its npz
blob and of an npz answer, the nested lists of a JSON one."""

BACKEND_NAME = re.compile(r"^(exact|aer|(aer|fake|ibm):[A-Za-z0-9_.\-]+)$")
"""The backend names a job or a run may give: ``exact``, ``aer``, ``aer:<device>``,
``fake:<device>``, ``ibm:<device>``."""


class _FloatArray:
    """Pydantic metadata for a float64 array field of ``ndim`` dimensions.

    It takes a numpy array of real numbers (an npz body's entry: copied, as float64) or nested
    lists (JSON: validated as ``list[float]``/``list[list[float]]`` first, so an element that is
    not a number is named, ``inputs.0.1``), refuses other shapes, NaN and infinities, and
    serializes to nested lists in JSON mode (``model_dump()`` keeps the array).
    """

    def __init__(self, ndim: int, *, min_items: int = 0) -> None:
        self.ndim = ndim
        self.min_items = min_items

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        # the server refuses empty batches and empty noise-level lists: say so in the schema
        out: dict[str, Any] = handler(schema)
        if self.min_items:
            out["minItems"] = self.min_items
        return out

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        # strict: a JSON true or a numeric string is not a number (ints are)
        lists: core_schema.CoreSchema = core_schema.float_schema(strict=True)
        for _ in range(self.ndim):
            lists = core_schema.list_schema(lists)
        return core_schema.no_info_wrap_validator_function(
            self._validate,
            lists,
            serialization=core_schema.plain_serializer_function_ser_schema(
                _serialize, info_arg=True
            ),
        )

    def _validate(self, value: Any, lists: core_schema.ValidatorFunctionWrapHandler) -> np.ndarray:
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "fiu":
                raise ValueError(f"expected real numbers, got dtype {value.dtype}")
        else:
            value = lists(value)
        try:
            array = np.array(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not an array of numbers ({exc})") from None
        if array.ndim != self.ndim:
            raise ValueError(f"expected a {self.ndim}-D array, got shape {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError("contains NaN or Inf")
        return array


def _serialize(value: np.ndarray, info: core_schema.SerializationInfo) -> Any:
    return value.tolist() if info.mode_is_json() else value


FloatMatrix = Annotated[np.ndarray, _FloatArray(2, min_items=1)]
"""A ``(rows, columns)`` float64 array; nested lists in JSON."""
FloatVector = Annotated[np.ndarray, _FloatArray(1)]
"""A 1-D float64 array; a list in JSON."""
NonEmptyVector = Annotated[np.ndarray, _FloatArray(1, min_items=1)]
"""A 1-D float64 array of at least one number."""


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.shape == b.shape
            and bool(np.array_equal(a, b))
        )
    return bool(a == b)


class JobStatus(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
)
"""States a job never leaves."""


class RunStatus(StrEnum):
    """Whether a run still takes jobs."""

    OPEN = "open"
    CLOSED = "closed"

    def __str__(self) -> str:
        return self.value


class JobOptions(BaseModel):
    """Execution options of one job (closed: unknown keys are an error).

    Attributes:
        chunk_size: samples per chunk when a large job is split (``None``: a default that
            depends on the backend; runtime backends are never split).
        max_attempts: how many times a job may be started before a lost worker fails it
            (``None``: the server's default).
        allow_noise_floor: on hardware backends, accept the device's own noise where the
            requested channel strength is below it (otherwise that is an error stating the
            floor; see docs/hardware.md).
        gradient_budget: on hardware backends, shot-frugal Jacobians: shift only this many of
            the inputs and weights per sample (random subsets in antithetic pairs, unbiased).
        spsa_directions: on hardware backends, unbiased SPSA Jacobians: ``n`` random
            directions per sample, two circuits each, whatever the number of inputs and
            weights (docs/hardware.md; not together with ``gradient_budget``).
        m3_max_age_s: on hardware backends with M3 readout mitigation, reuse a stored
            calibration of the chosen qubits at most this many seconds old (``0``: measure a
            new one for this job; ``None``: the backend's default, six hours).
        execution_mode: on IBM Runtime backends, ``job``, ``batch`` or ``session``
            (``None``: ``session`` for a job of a run, ``batch`` where the runtime refuses
            Sessions as on the Open plan; ``job`` otherwise).
        max_execution_time: on IBM Runtime backends, the runtime's limit in QPU seconds; a
            job estimated above it is refused before submission.
        split_jobs: on IBM Runtime backends, split a workload over the per-job execution
            limit into several jobs in one Batch (``None``/``True``), or refuse it (``False``).
        result_timeout_s: on IBM Runtime backends, how long a worker waits for the runtime's
            result (``None``: no limit); the runtime job keeps running and can be re-attached.
        floor: on hardware backends, the device noise floor subtracted from the requested
            channel: ``calibration`` (estimated from the calibration) or ``measured`` (a short
            experiment on the job's qubits, in the job's Session or Batch, before its step) or
            ``noise_learner`` (IBM's noise learner on the job's layers of two-qubit gates, in
            the same place); ``None``: the backend's choice (docs/hardware.md).
        floor_shots: shots per circuit of that experiment (``None``: the backend's choice,
            10,000 on ``ibm:``, exact on the noise model of ``fake:``/``aer:`` devices).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    chunk_size: int | None = Field(default=None, ge=1, le=1_000_000)
    max_attempts: int | None = Field(default=None, ge=1, le=20)
    allow_noise_floor: bool = False
    gradient_budget: int | None = Field(default=None, ge=1, le=100_000)
    spsa_directions: int | None = Field(default=None, ge=1, le=MAX_DIRECTIONS)
    m3_max_age_s: float | None = Field(default=None, ge=0.0, le=1e9, allow_inf_nan=False)
    execution_mode: Literal["job", "batch", "session"] | None = None
    max_execution_time: int | None = Field(default=None, ge=1, le=10_800)
    split_jobs: bool | None = None
    result_timeout_s: float | None = Field(default=None, gt=0.0, le=1e7, allow_inf_nan=False)
    floor: Literal["calibration", "measured", "noise_learner"] | None = None
    floor_shots: int | None = Field(default=None, ge=100, le=1_000_000)

    @field_validator("spsa_directions")
    @classmethod
    def _one_estimator(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("gradient_budget") is not None:
            raise ValueError(
                "SPSA and gradient_budget are two different Jacobian estimators; choose one"
            )
        return value

    @model_serializer(mode="wrap")
    def _drop_unset_runtime_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # options added after the first release serialize (and fingerprint) only when set, so
        # a request that does not use them keeps the fingerprint it always had
        data: dict[str, Any] = handler(self)
        for name in _LATER_OPTIONS:
            if data.get(name) is None:
                data.pop(name, None)
        return data


_LATER_OPTIONS = (
    "execution_mode",
    "max_execution_time",
    "split_jobs",
    "result_timeout_s",
    "floor",
    "floor_shots",
)
"""Job options left out of the stored text (and the fingerprint) while ``None``."""


def _circuit_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "qpy" if "qpy" in value else "spec"
    if isinstance(value, PQCSpec):
        return "spec"
    return "qpy" if hasattr(value, "qpy") else "spec"


CircuitField = Annotated[
    Annotated[PQCSpec, Tag("spec")] | Annotated[QpyCircuit, Tag("qpy")],
    Discriminator(_circuit_kind),
]


class JobRequest(BaseModel):
    """One unit of work: evaluate a circuit on a batch.

    Attributes:
        circuit: a :class:`qldm.circuits.PQCSpec`, or a QPY circuit (an object with a ``qpy`` key).
        task: ``expectation`` (values), ``jacobian`` (values and both Jacobians),
            ``counts`` (measured bitstrings; needs ``shots``) or ``metric_tensor`` (the
            Fubini-Study metric of the weights, ``(1, B, P, P)``).
        output: what the values are for ``expectation``/``jacobian``: ``expectation``
            (observables), ``probabilities`` (``2**n`` per sample) or ``fidelity`` (one per
            sample, against ``targets``); :mod:`qldm.backends.outputs`.
        targets: ``(B, 2 * 2**n)`` target states (real parts, then imaginary parts) for
            ``output="fidelity"``; else ``None``.
        metric: ``full`` or ``block_diagonal`` (task ``metric_tensor`` only).
        backend: ``exact``, ``aer``, ``aer:<device>``, ``fake:<device>`` or ``ibm:<device>``.
        inputs: ``(B, I)`` float64 array (JSON: a list of lists).
        weights: ``(P,)`` float64 array.
        noise_levels: ``(K,)`` channel strengths, or ``None`` (the circuit's own, ``K = 1``).
        shots: shots per circuit; ``None`` gives exact expectation values.
        seed: seed for shot sampling and trajectory draws.
        noise_sampling: ``expectation`` (exact channel averages, the default) or
            ``trajectory`` (every sample draws its own realization of the spec's channels;
            :class:`qldm.backends.base.NoiseSampling`); on a spec without a channel it changes
            nothing. Left out of the stored request text when it is the default.
        run_id: the run this job belongs to, or ``None``.
        options: execution options.

    Use :meth:`parse` on untrusted data: it raises :class:`InvalidSpecError` naming the field.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    circuit: CircuitField
    task: TaskName = Task.EXPECTATION
    backend: str = "exact"
    inputs: FloatMatrix
    weights: FloatVector
    noise_levels: NonEmptyVector | None = None
    output: Output = Output.EXPECTATION
    targets: FloatMatrix | None = None
    metric: Metric = Metric.FULL
    shots: int | None = None
    seed: int | None = None
    noise_sampling: NoiseSampling = NoiseSampling.EXPECTATION
    run_id: str | None = Field(default=None, max_length=64)
    options: JobOptions = JobOptions()

    _workload: Workload | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check_arrays(self) -> JobRequest:
        # Errors raised here are re-raised by ``parse`` as InvalidSpecError("<field>: ...").
        if not BACKEND_NAME.match(self.backend):
            raise ValueError(
                f"backend: unknown backend {self.backend!r}: use exact, aer, aer:<device>, "
                "fake:<device> or ibm:<device>"
            )
        if self.shots is not None and self.shots < 1:
            raise ValueError(f"shots: must be a positive integer or null, got {self.shots}")
        if self.task == "counts" and self.shots is None:
            raise ValueError("shots: the counts task needs a number of shots")
        spec = self.circuit if isinstance(self.circuit, PQCSpec) else None
        if (
            self.options.floor == "noise_learner"
            and spec is not None
            and spec.channel.kind == "amplitude_damping"
        ):
            raise ValueError(
                "options.floor: the noise learner cannot see an amplitude-damping floor (the "
                "dilation's reset and relaxation lie outside its boxes); use measured"
            )
        try:
            self._workload = self._build_workload()
        except InvalidSpecError as exc:
            raise ValueError(f"{exc.field}: {exc.message}" if exc.field else exc.message) from None
        return self

    @model_serializer(mode="wrap")
    def _drop_default_state_fields(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        # requests that use no state-level output serialize (and fingerprint) as before
        data: dict[str, Any] = handler(self)
        if self.output is Output.EXPECTATION:
            data.pop("output", None)
        if self.targets is None:
            data.pop("targets", None)
        if self.metric is Metric.FULL:
            data.pop("metric", None)
        if self.noise_sampling is NoiseSampling.EXPECTATION:
            data.pop("noise_sampling", None)
        return data

    def _build_workload(self) -> Workload:
        return Workload.build(
            self.circuit,
            self.inputs,
            self.weights,
            noise_levels=self.noise_levels,
            task=self.task,
            output=self.output,
            targets=self.targets,
            metric=self.metric,
            shots=self.shots,
            seed=self.seed,
            noise_sampling=self.noise_sampling,
        )

    def __eq__(self, other: object) -> bool:
        # Fields only: the cached workload (arrays) is not part of a request's identity.
        if not isinstance(other, JobRequest):
            return NotImplemented
        return self.__dict__.keys() == other.__dict__.keys() and all(
            _same(value, other.__dict__[name]) for name, value in self.__dict__.items()
        )

    __hash__ = None  # type: ignore[assignment]

    # ------------------------------------------------------------------ construction

    @classmethod
    def parse(cls, data: Any) -> JobRequest:
        """Validate a dict or JSON text into a request.

        Raises:
            InvalidSpecError: naming the first offending field (``circuit.n_qubits``,
                ``inputs``, ``options.chunk_size``, ...).
        """
        try:
            if isinstance(data, (str, bytes)):
                return cls.model_validate_json(data)
            if isinstance(data, dict):
                loose = first_loose_value(data, _json_schema(), skip=_ARRAY_FIELD_SET)
                if loose is not None:
                    raise InvalidSpecError(loose[1], field=loose[0])
            return cls.model_validate(data)
        except ValidationError as exc:
            raise _request_error(exc) from None

    # ------------------------------------------------------------------ views

    @property
    def is_qpy(self) -> bool:
        """Whether the circuit is a QPY circuit rather than a :class:`PQCSpec`."""
        return not isinstance(self.circuit, PQCSpec)

    @property
    def n_samples(self) -> int:
        """``B``."""
        return len(self.inputs)

    @property
    def n_levels(self) -> int:
        """``K``."""
        return 1 if self.noise_levels is None else len(self.noise_levels)

    def workload(self) -> Workload:
        """The validated :class:`Workload`: the circuit (a :class:`PQCSpec` or a QPY circuit),
        the batch and the task, what a backend's ``run`` takes."""
        if self._workload is None:
            self._workload = self._build_workload()
        return self._workload

    def arrays(self) -> dict[str, np.ndarray]:
        """The numeric fields (float64 arrays, not copies): ``inputs (B, I)``, ``weights (P,)``
        and, when given, ``noise_levels (K,)``."""
        out = {"inputs": self.inputs, "weights": self.weights}
        if self.noise_levels is not None:
            out["noise_levels"] = self.noise_levels
        if self.targets is not None:
            out["targets"] = self.targets
        return out

    def fingerprint(self) -> str:
        """SHA-256 of the canonical request: equal requests have equal fingerprints.

        The non-array fields go in as canonical JSON, the arrays as their float64 bytes with
        their shapes (a JSON text of every number cost a millisecond per B = 128 job).
        """
        return self.canonical()[2]

    def canonical(self) -> tuple[str, dict[str, np.ndarray], str]:
        """What the store keeps of the request, each part computed once: the non-array fields
        as canonical JSON text (sorted keys), the :meth:`arrays`, and the
        :meth:`fingerprint` of both."""
        body = self.model_dump(mode="json", exclude=set(ARRAY_FIELDS))
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
        arrays = self.arrays()
        digest = hashlib.sha256(text.encode())
        for name, arr in sorted(arrays.items()):
            digest.update(f"|{name}{arr.shape}|".encode())
            digest.update(np.ascontiguousarray(arr, dtype="<f8").tobytes())
        return text, arrays, digest.hexdigest()

    def with_samples(self, start: int, stop: int, *, seed: int | None = None) -> JobRequest:
        """The same request on samples ``start:stop`` only (one chunk of a large job), with
        ``seed`` as its shot-sampling seed when given."""
        update: dict[str, Any] = {"inputs": self.inputs[start:stop]}
        if self.targets is not None:
            update["targets"] = self.targets[start:stop]
        if seed is not None:
            update["seed"] = seed
        chunk = self.model_copy(update=update)
        chunk._workload = None  # built again, for the chunk's samples, on first use
        return chunk


_ARRAY_FIELD_SET = frozenset(ARRAY_FIELDS)


@lru_cache(maxsize=1)
def _json_schema() -> dict[str, Any]:
    return JobRequest.model_json_schema()


def _request_error(exc: ValidationError) -> InvalidSpecError:
    """Like :func:`qldm.circuits.spec.spec_error_from_validation`, without discriminator tags."""
    err = spec_error_from_validation(exc, prefix=None)
    if err.field:
        parts = err.field.split(".")
        # the union's tag follows "circuit": drop it there only ("circuit.qpy" is a real field)
        if len(parts) > 1 and parts[0] == "circuit" and parts[1] in ("spec", "qpy"):
            del parts[1]
        err = InvalidSpecError(err.message, field=".".join(parts) or None)
    return err


@dataclass(frozen=True)
class Job:
    """A snapshot of a job as the store holds it (immutable; read again for news).

    Attributes:
        id: 32 hex characters.
        tenant: the owner.
        status: where the job is.
        task, backend, run_id: copied from the request.
        idempotency_key: the client's key, or ``None``.
        created_at, started_at, finished_at: UTC times (``started_at`` is the last start).
        attempts: how many times a worker started it.
        error_code, error_message: why it failed (``None`` unless failed or cancelled).
        runtime_job_id: the IBM Runtime job id once submitted to one, else ``None``.
        progress: fraction of chunks done, 0 to 1.
        cancel_requested: a cancel arrived while it was running.
        worker: the worker that last claimed it.
        max_attempts: starts allowed before a lost worker fails it.
        runtime_state: the runtime job's last state seen while a worker waited on it
            (``queued``, ``running``, ``done``, ...), ``None`` before a runtime submission.
        usage_s: the runtime's reported usage of the job (QPU seconds), ``None`` when none was
            reported.
    """

    id: str
    tenant: str
    status: JobStatus
    task: str
    backend: str
    run_id: str | None
    idempotency_key: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    error_code: str | None
    error_message: str | None
    runtime_job_id: str | None
    progress: float
    cancel_requested: bool = False
    worker: str | None = None
    max_attempts: int = 3
    runtime_state: str | None = None
    usage_s: float | None = None

    @property
    def terminal(self) -> bool:
        """Whether the job has reached a state it never leaves."""
        return self.status in TERMINAL

    @property
    def queue_seconds(self) -> float | None:
        """Seconds from creation to the (last) start, or ``None`` if not started."""
        if self.started_at is None:
            return None
        return (self.started_at - self.created_at).total_seconds()

    @property
    def run_seconds(self) -> float | None:
        """Seconds from the (last) start to the end, or ``None`` if not finished."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class JobResult:
    """What a finished job returns.

    Attributes:
        values: ``(K, B, W)`` (``W``: ``O`` observables, ``2**n`` probabilities or 1
            fidelity), ``(1, B, P, P)`` for the metric_tensor task, ``None`` for counts.
        d_inputs: ``(K, B, W, I)`` or ``None``.
        d_weights: ``(K, B, W, P)`` or ``None``.
        counts: for the counts task, ``K * B`` dicts bitstring -> count, sample ``b`` of level
            ``k`` at index ``k * B + b``; else ``None``.
        metadata: backend facts (circuits, submissions, shots, timings, chunks, ...).
        values_std: ``(K, B, W)`` standard errors of ``values`` (shot noise, after readout
            mitigation where it ran), or ``None`` where the backend reports none.
        d_inputs_std: ``(K, B, W, I)`` standard errors of ``d_inputs`` (the rows' shot noise
            through the Jacobian's combination), or ``None`` (no Jacobian, none reported, or
            a result stored before they were kept).
        d_weights_std: ``(K, B, W, P)`` standard errors of ``d_weights``, or ``None``.
    """

    values: np.ndarray | None
    d_inputs: np.ndarray | None = None
    d_weights: np.ndarray | None = None
    counts: list[dict[str, int]] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    values_std: np.ndarray | None = None
    d_inputs_std: np.ndarray | None = None
    d_weights_std: np.ndarray | None = None

    @classmethod
    def from_evaluation(cls, evaluation: Evaluation) -> JobResult:
        """Wrap a backend's :class:`qldm.backends.base.Evaluation`."""
        arrays = {name: getattr(evaluation, name) for name in RESULT_ARRAYS}
        return cls.from_arrays(
            {name: np.asarray(a) for name, a in arrays.items() if a is not None},
            counts=None if evaluation.counts is None else list(evaluation.counts),
            metadata=dict(evaluation.metadata),
        )

    @classmethod
    def from_arrays(
        cls,
        arrays: Mapping[str, np.ndarray],
        *,
        counts: list[dict[str, int]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> JobResult:
        """A result from its arrays by name (:data:`RESULT_ARRAYS`; an absent one is
        ``None``, as in a result stored before that field existed); ``values`` as float64."""
        values = arrays.get("values")
        return cls(
            values=None if values is None else np.asarray(values, dtype=np.float64),
            d_inputs=arrays.get("d_inputs"),
            d_weights=arrays.get("d_weights"),
            counts=counts,
            metadata={} if metadata is None else metadata,
            values_std=arrays.get("values_std"),
            d_inputs_std=arrays.get("d_inputs_std"),
            d_weights_std=arrays.get("d_weights_std"),
        )

    def arrays(self) -> dict[str, np.ndarray | None]:
        """The :data:`RESULT_ARRAYS` by name (``None`` where absent)."""
        return {name: getattr(self, name) for name in RESULT_ARRAYS}


@dataclass(frozen=True)
class Run:
    """A group of jobs (one training run), optionally bound to one IBM Runtime session.

    Attributes:
        id: 32 hex characters.
        tenant: the owner.
        name: a label chosen by the client.
        backend: the backend its jobs use.
        status: ``open`` or ``closed`` (a closed run takes no more jobs).
        created_at, closed_at: UTC times.
        session_id: the runtime session id once one is opened, else ``None``.
        execution_mode: ``job``, ``batch`` or ``session`` for the run's runtime jobs that set
            none themselves (``None``: ``session``, ``batch`` where Sessions are refused).
        usage_s: the runtime's reported usage of the run's jobs summed (QPU seconds), ``None``
            while none was reported.
    """

    id: str
    tenant: str
    name: str
    backend: str
    status: RunStatus
    created_at: datetime
    closed_at: datetime | None
    session_id: str | None
    execution_mode: str | None = None
    usage_s: float | None = None


@dataclass(frozen=True)
class ApiKey:
    """An API key as stored (the secret itself is never stored, only its SHA-256).

    Attributes:
        id: 32 hex characters.
        tenant: the tenant the key authenticates as.
        prefix: the first characters of the key, shown to identify it.
        created_at, revoked_at: UTC times.
    """

    id: str
    tenant: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
