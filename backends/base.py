"""The contract every backend fulfils: ``backend.run(workload, context) -> Evaluation``.

- :class:`Workload` says WHAT to compute: the circuit (a :class:`qldm.circuits.PQCSpec` or a
  user's :class:`qldm.circuits.qpy.QpyCircuit`), the batch, and the :class:`Task`.
- :class:`Context` says what the caller offers around it: a checkpoint callback, a runtime job
  to re-attach to, the job's options, the run's Session, where M3 calibrations are kept. Every
  field has a default; in-process callers pass ``Context()`` or nothing.
- :class:`Capabilities` says which tasks and circuit kinds a backend runs; a backend refuses
  the rest with :class:`qldm.errors.BackendLimitError` naming ``task`` or ``circuit``, and the
  server refuses them at submission (:func:`qldm.backends.capabilities`).

Adding a task is one :class:`Task` value plus the backends that implement it (their
:class:`Capabilities` list it).

Shapes: ``B`` samples, ``I`` inputs, ``P`` weights, ``O`` observables, ``K`` noise levels
(``K = 1`` when no noise levels are given: the spec's own channel strength is used).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from qldm.backends.outputs import Metric, Output, check_state_request
from qldm.circuits import PQCSpec
from qldm.circuits.qpy import QpyCircuit
from qldm.circuits.spec import check_noise_level
from qldm.errors import BackendLimitError, InvalidSpecError

if TYPE_CHECKING:
    from qldm.backends._sessions import RunSession
    from qldm.mitigation.m3 import CalibrationStorage

__all__ = [
    "DEVICE",
    "NO_CONTEXT",
    "SIMULATOR",
    "Backend",
    "Capabilities",
    "Circuit",
    "CircuitKind",
    "Context",
    "Evaluation",
    "ExecutionOptions",
    "NoiseSampling",
    "Task",
    "Workload",
    "circuit_kind",
]


class Task(StrEnum):
    """What a workload asks for.

    - ``expectation``: values ``(K, B, O)``;
    - ``jacobian``: values and both Jacobians ``(K, B, O, I)``, ``(K, B, O, P)``;
    - ``counts``: measured bitstrings of every qubit, ``K * B`` dicts (needs ``shots``);
    - ``metric_tensor``: the Fubini-Study metric of the weights per sample, ``(1, B, P, P)``
      (:mod:`qldm.backends.outputs`).

    For ``expectation`` and ``jacobian`` the workload's ``output``
    (:class:`qldm.backends.outputs.Output`) says what the values are: observables ``O``,
    probabilities ``2**n`` or a fidelity ``1`` per sample.
    """

    EXPECTATION = "expectation"
    JACOBIAN = "jacobian"
    COUNTS = "counts"
    METRIC_TENSOR = "metric_tensor"


class NoiseSampling(StrEnum):
    """How a spec's channels are evaluated.

    - ``expectation``: the channel's exact average (density matrix): a deterministic function
      of inputs and weights;
    - ``trajectory``: every (noise level, sample) draws its own realization of every channel
      after every layer (Pauli insertion for bit flip, phase flip, depolarizing; a quantum-jump
      Kraus draw for amplitude damping), as a device with randomized noise delivers it; the
      mean over draws is the ``expectation`` value (:mod:`qldm.backends.trajectory`). On a
      spec without a channel it changes nothing.
    """

    EXPECTATION = "expectation"
    TRAJECTORY = "trajectory"


class CircuitKind(StrEnum):
    """How a workload's circuit is given: a :class:`PQCSpec` or a QPY circuit."""

    SPEC = "spec"
    QPY = "qpy"


Circuit = PQCSpec | QpyCircuit


def circuit_kind(circuit: Any) -> CircuitKind:
    """The kind of ``circuit``.

    Raises:
        InvalidSpecError: neither a :class:`PQCSpec` nor a :class:`QpyCircuit`
            (``field="circuit"``).
    """
    if isinstance(circuit, PQCSpec):
        return CircuitKind.SPEC
    if isinstance(circuit, QpyCircuit):
        return CircuitKind.QPY
    raise InvalidSpecError(
        f"expected a PQCSpec or a QPY circuit, got {type(circuit).__name__}", field="circuit"
    )


@dataclass(frozen=True)
class Capabilities:
    """The tasks, circuit kinds and noise samplings a backend runs.

    Attributes:
        tasks: the :class:`Task` values it implements.
        circuits: the :class:`CircuitKind` values it takes.
        noise_sampling: the :class:`NoiseSampling` values it implements.
    """

    tasks: frozenset[Task]
    circuits: frozenset[CircuitKind]
    noise_sampling: frozenset[NoiseSampling] = frozenset({NoiseSampling.EXPECTATION})

    def check(
        self,
        backend: str,
        task: Task | str,
        circuit: CircuitKind,
        noise_sampling: NoiseSampling | str = NoiseSampling.EXPECTATION,
    ) -> None:
        """Refuse a task, a circuit kind or a noise sampling this backend does not run.

        Raises:
            BackendLimitError: ``field="task"``, ``field="circuit"`` or
                ``field="noise_sampling"``, naming what the backend does run.
        """
        if Task(task) not in self.tasks:
            raise BackendLimitError(
                f"the {backend} backend does not run the {task} task; it runs "
                f"{_listed(self.tasks)}",
                field="task",
            )
        if circuit not in self.circuits:
            raise BackendLimitError(
                f"the {backend} backend does not take {circuit} circuits; it takes "
                f"{_listed(self.circuits)}",
                field="circuit",
            )
        if NoiseSampling(noise_sampling) not in self.noise_sampling:
            raise BackendLimitError(
                f"the {backend} backend does not run noise_sampling={noise_sampling}; it runs "
                f"{_listed(self.noise_sampling)} (trajectories run on exact and aer)",
                field="noise_sampling",
            )


SIMULATOR = Capabilities(
    tasks=frozenset({Task.EXPECTATION, Task.JACOBIAN, Task.COUNTS, Task.METRIC_TENSOR}),
    circuits=frozenset({CircuitKind.SPEC, CircuitKind.QPY}),
    noise_sampling=frozenset(NoiseSampling),
)
"""``exact`` and ``aer``: every task, specs and QPY circuits (counts and QPY circuits are
computed with Aer on both, :mod:`qldm.backends.counts`, :mod:`qldm.backends.qpy_aer`), both
noise samplings (trajectories on specs, for values and Jacobians)."""

DEVICE = Capabilities(
    tasks=frozenset({Task.EXPECTATION, Task.JACOBIAN, Task.METRIC_TENSOR}),
    circuits=frozenset({CircuitKind.SPEC}),
)
"""``aer:<device>``, ``fake:<device>``, ``ibm:<device>``: values and Jacobians of specs (the
device path transpiles a spec with its noise slots and subtracts the device's noise floor),
and the block-diagonal metric from measured circuits (:mod:`qldm.backends._runtime_states`)."""


def _listed(values: frozenset[Any]) -> str:
    return ", ".join(sorted(str(v) for v in values))


class ExecutionOptions(Protocol):
    """The per-job options a backend reads (:class:`qldm.jobs.model.JobOptions` is one)."""

    @property
    def allow_noise_floor(self) -> bool:
        """Accept the device's floor where a requested strength is below it."""
        ...

    @property
    def gradient_budget(self) -> int | None:
        """Shift only this many inputs and weights per sample (subset Jacobians)."""
        ...

    @property
    def spsa_directions(self) -> int | None:
        """SPSA Jacobians with this many random directions per sample."""
        ...

    @property
    def m3_max_age_s(self) -> float | None:
        """Reuse a stored M3 calibration at most this old (``None``: the backend's default)."""
        ...


@dataclass(frozen=True)
class Context:
    """What a caller offers a backend besides the workload; all optional.

    Attributes:
        checkpoint: called with the runtime job id right after a submission, before waiting
            for its result (the job store records it).
        resume_runtime_job_id: re-attach to this runtime job (a restarted server) instead of
            submitting the workload again.
        options: the job's options (:class:`qldm.jobs.model.JobOptions`); ``None``: the
            backend's own settings.
        run_session: the job's run and the runtime Session it holds; ``None``: a job without a
            run (runtime backends open a fresh ``Batch``).
        m3_store: where M3 calibrations are kept (the job store inside the server); ``None``:
            the backend's file cache.
        should_cancel: polled while a runtime backend waits on the runtime; ``True`` cancels
            the runtime job(s) and raises :class:`qldm.errors.JobCancelled`.
        on_status: called with the runtime job's state (``queued``, ``running``, ``done``...)
            each time it changes.
    """

    checkpoint: Callable[[str], None] | None = None
    resume_runtime_job_id: str | None = None
    options: ExecutionOptions | None = None
    run_session: RunSession | None = None
    m3_store: CalibrationStorage | None = None
    should_cancel: Callable[[], bool] | None = None
    on_status: Callable[[str], None] | None = None

    @property
    def run_id(self) -> str | None:
        """The job's run, or ``None``."""
        return None if self.run_session is None else self.run_session.run_id


NO_CONTEXT = Context()
"""The context of an in-process call: nothing offered."""


@dataclass(frozen=True)
class Workload:
    """One evaluation of a circuit on a batch.

    Attributes:
        circuit: a :class:`PQCSpec` or a :class:`QpyCircuit`.
        inputs: ``(B, I)`` float64.
        weights: ``(P,)`` float64.
        noise_levels: ``(K,)`` float64, each replacing the channel strength, or ``None`` (QPY
            circuits take none: their noise is in the circuit).
        task: what to compute (:class:`Task`).
        output: what ``values`` hold for ``expectation``/``jacobian``
            (:class:`qldm.backends.outputs.Output`; keyword-only).
        targets: ``(B, 2 * 2**n)`` target states (real, then imaginary parts) for
            ``output="fidelity"``, else ``None`` (keyword-only).
        metric: ``full`` or ``block_diagonal`` for the ``metric_tensor`` task (keyword-only).
        shots: shots per circuit; ``None`` means exact expectation values (``counts`` needs
            shots).
        seed: seed for shot sampling (and trajectory draws), a non-negative integer or
            ``None``.
        noise_sampling: how the spec's channels are evaluated (:class:`NoiseSampling`);
            ``trajectory`` takes specs and the ``expectation`` and ``jacobian`` tasks.
    """

    circuit: Circuit
    inputs: np.ndarray
    weights: np.ndarray
    noise_levels: np.ndarray | None = None
    task: Task = Task.EXPECTATION
    shots: int | None = None
    seed: int | None = None
    noise_sampling: NoiseSampling = NoiseSampling.EXPECTATION
    output: Output = field(default=Output.EXPECTATION, kw_only=True)
    targets: np.ndarray | None = field(default=None, kw_only=True)
    metric: Metric = field(default=Metric.FULL, kw_only=True)

    @classmethod
    def build(
        cls,
        circuit: Circuit,
        inputs: Any,
        weights: Any,
        *,
        noise_levels: Any = None,
        task: Task | str = Task.EXPECTATION,
        output: Output | str = Output.EXPECTATION,
        targets: Any = None,
        metric: Metric | str = Metric.FULL,
        shots: int | None = None,
        seed: int | None = None,
        noise_sampling: NoiseSampling | str = NoiseSampling.EXPECTATION,
    ) -> Workload:
        """Validate shapes and values and build a workload.

        Raises:
            InvalidSpecError: naming ``circuit``, ``inputs``, ``weights``, ``noise_levels``,
                ``task``, ``shots``, ``seed`` or ``noise_sampling`` (an unknown value, or
                ``trajectory`` with a QPY circuit or the ``counts`` task).
        """
        circuit_kind(circuit)
        try:
            chosen = Task(task)
        except ValueError:
            known = ", ".join(t.value for t in Task)
            raise InvalidSpecError(f"unknown task {task!r}: use {known}", field="task") from None
        x = _as_matrix(inputs, circuit.n_inputs, "inputs")
        w = _as_vector(weights, circuit.n_weights, "weights")
        levels = None
        if noise_levels is not None and isinstance(circuit, QpyCircuit):
            raise InvalidSpecError(
                "QPY circuits take no noise levels: put the noise in the circuit "
                "(Aer noise instructions) instead",
                field="noise_levels",
            )
        if isinstance(circuit, PQCSpec):
            if noise_levels is not None:
                levels = _as_vector(noise_levels, None, "noise_levels")
                if levels.size == 0:
                    raise InvalidSpecError(
                        "give at least one noise level, or none", field="noise_levels"
                    )
                for level in levels:
                    check_noise_level(circuit, float(level))
            if circuit.encoding == "amplitude" and np.any(np.linalg.norm(x, axis=1) == 0.0):
                raise InvalidSpecError("amplitude encoding of a zero vector", field="inputs")
        if shots is not None and (
            isinstance(shots, bool) or not isinstance(shots, int) or shots < 1
        ):
            raise InvalidSpecError(
                f"shots must be a positive integer or null, got {shots!r}", field="shots"
            )
        if chosen is Task.COUNTS and shots is None:
            raise InvalidSpecError("the counts task needs a number of shots", field="shots")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise InvalidSpecError(
                f"seed must be a non-negative integer or null, got {seed!r}", field="seed"
            )
        sampling = _noise_sampling(noise_sampling, circuit, chosen)
        state = check_state_request(
            circuit,
            task=chosen.value,
            inputs=x,
            output=output,
            targets=targets,
            metric=metric,
            noise_levels=levels,
        )
        return cls(
            circuit,
            x,
            w,
            levels,
            chosen,
            shots,
            seed,
            sampling,
            output=state[0],
            targets=state[1],
            metric=state[2],
        )

    @property
    def kind(self) -> CircuitKind:
        """Whether the circuit is a spec or a QPY circuit."""
        return circuit_kind(self.circuit)

    @property
    def spec(self) -> PQCSpec:
        """The circuit as a :class:`PQCSpec`, for backends that take only specs.

        Raises:
            BackendLimitError: the circuit is a QPY circuit (``field="circuit"``).
        """
        if not isinstance(self.circuit, PQCSpec):
            raise BackendLimitError("this path takes PQCSpec circuits only", field="circuit")
        return self.circuit

    @property
    def n_levels(self) -> int:
        """``K``."""
        return 1 if self.noise_levels is None else int(self.noise_levels.size)

    def level_values(self) -> list[float | None]:
        """The noise level of each of the K evaluations (``None``: the spec's own strength)."""
        if self.noise_levels is None:
            return [None]
        return [float(v) for v in self.noise_levels]


Counts = dict[str, int]
"""Bitstring (qubit 0 rightmost) to count."""


@dataclass(frozen=True)
class Evaluation:
    """What a backend returns.

    Attributes:
        values: ``(K, B, W)`` for the tasks ``expectation`` and ``jacobian`` (``W`` is ``O``,
            ``2**n`` or 1 by the workload's ``output``), ``(1, B, P, P)`` for
            ``metric_tensor``, ``None`` for ``counts``.
        d_inputs: ``(K, B, W, I)`` derivatives by inputs (task ``jacobian``), else ``None``.
        d_weights: ``(K, B, W, P)`` derivatives by weights (task ``jacobian``), else ``None``.
        metadata: backend facts (circuits run, submissions, shots, timings, ...).
        counts: task ``counts``: ``K * B`` dicts, sample ``b`` of level ``k`` at index
            ``k * B + b``, each summing to ``shots``; else ``None``.
        values_std: ``(K, B, W)`` standard errors of ``values`` (shot noise; after readout
            mitigation where it ran), or ``None`` where the backend does not report them
            (exact values, or not computed).
        d_inputs_std: ``(K, B, W, I)`` standard errors of ``d_inputs`` (the rows' shot noise
            propagated through the Jacobian's linear combination), or ``None``.
        d_weights_std: ``(K, B, W, P)`` standard errors of ``d_weights``, or ``None``.
    """

    values: np.ndarray | None
    d_inputs: np.ndarray | None = None
    d_weights: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    counts: list[Counts] | None = None
    values_std: np.ndarray | None = None
    d_inputs_std: np.ndarray | None = None
    d_weights_std: np.ndarray | None = None


class Backend(Protocol):
    """Anything that evaluates workloads.

    Attributes:
        name: the backend's name (``exact``, ``aer``, ``fake:manila``, ...).
        capabilities: the tasks and circuit kinds it runs.
    """

    name: str
    capabilities: ClassVar[Capabilities]

    def run(self, work: Workload, context: Context = NO_CONTEXT) -> Evaluation:
        """Evaluate ``work``.

        Raises:
            BackendLimitError: a task or circuit kind outside :attr:`capabilities` (naming
                ``task`` or ``circuit``), or a workload beyond the backend's limits.
            InvalidSpecError, BackendError: see each backend.
        """
        ...


def _noise_sampling(value: Any, circuit: Circuit, task: Task) -> NoiseSampling:
    try:
        sampling = NoiseSampling(value)
    except ValueError:
        known = ", ".join(v.value for v in NoiseSampling)
        raise InvalidSpecError(
            f"unknown noise_sampling {value!r}: use {known}", field="noise_sampling"
        ) from None
    if sampling is NoiseSampling.TRAJECTORY:
        if isinstance(circuit, QpyCircuit):
            raise InvalidSpecError(
                "trajectory sampling draws a spec's channels; a QPY circuit's noise is in the "
                "circuit",
                field="noise_sampling",
            )
        if task is Task.COUNTS:
            raise InvalidSpecError(
                "the counts task measures the density matrix's outcomes; trajectory sampling "
                "is for the expectation and jacobian tasks",
                field="noise_sampling",
            )
    return sampling


def _as_vector(value: Any, size: int | None, name: str) -> np.ndarray:
    arr = _finite_array(value, name)
    if arr.ndim != 1 or (size is not None and arr.shape[0] != size):
        want = f"({size},)" if size is not None else "(K,)"
        raise InvalidSpecError(f"expected shape {want}, got {arr.shape}", field=name)
    return arr


def _as_matrix(value: Any, width: int, name: str) -> np.ndarray:
    arr = _finite_array(value, name)
    if arr.ndim != 2 or arr.shape[1] != width or arr.shape[0] < 1:
        raise InvalidSpecError(
            f"expected shape (B, {width}) with B >= 1, got {arr.shape}", field=name
        )
    return arr


def _finite_array(value: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidSpecError(f"not an array of numbers ({exc})", field=name) from None
    if not np.all(np.isfinite(arr)):
        raise InvalidSpecError("contains NaN or Inf", field=name)
    return arr
