"""``fake:<device>`` and ``ibm:<device>``: qiskit-ibm-runtime primitives, one submission a step.

- ``fake:<device>``: a fake backend of ``qiskit_ibm_runtime.fake_provider`` (``fake:manila``),
  run in the runtime's *local testing mode* (Aer with the device's noise model, in-process).
- ``ibm:<device>``: ``QiskitRuntimeService(channel=, token=, instance=).backend(device)``, the
  credentials from the constructor only (a server passes its settings through
  :class:`RuntimeConfig`), never from a request.

One workload (a training step: values, every parameter-shift term, every noise level) runs in
steps that can be called on their own (records in :mod:`qldm.backends._runtime_steps`):
:meth:`RuntimeBackend.prepare` (transpile once, noise floor, shift plan, one PUB per level;
nothing runs), :meth:`RuntimeBackend.calibrate` (M3: the stored calibration, or its circuits
riding in the step's own job, :mod:`qldm.backends._runtime_m3`),
:meth:`RuntimeBackend.submit` (the job's execution mode, split over the per-job limit, cancel,
status, timeout, usage: :mod:`qldm.backends._runtime_submit`; or a re-attach by runtime job id
after a restart, from ``<data_dir>/runtime_results/`` or the runtime) and
:meth:`RuntimeBackend.postprocess` (averaging over instances, M3, combining into values and
Jacobians). :meth:`RuntimeBackend.estimate` prices a workload without submitting it
(:mod:`qldm.backends._runtime_cost`). docs/hardware.md tells the whole story.

Composed parts, re-exported here where other code imports them: :mod:`._runtime_devices`
(:func:`fake_device`, :func:`ibm_service`, :class:`RuntimeConfig`), :mod:`._runtime_options`
(:class:`ResilienceOptions`), :mod:`._runtime_pubs` (rows, noise slots, PUBs, averaging),
:mod:`._runtime_results` (fingerprint, result cache), :mod:`._sessions` (execution modes).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from qldm.backends._runtime_cost import MAX_EXECUTIONS, Cost, estimate
from qldm.backends._runtime_devices import (
    LEAST_BUSY,
    RuntimeConfig,
    fake_device,
    ibm_device,
    ibm_service,
    refresh_backend,
)
from qldm.backends._runtime_floor import (
    DEFAULT_FLOOR_SHOTS,
    FloorStore,
    known_floor,
    learn_floor,
    learning_cost,
    record_floor,
)
from qldm.backends._runtime_m3 import M3Step, plan_calibration
from qldm.backends._runtime_options import ResilienceOptions, resilience_options
from qldm.backends._runtime_pubs import (
    average_results,
    build_pub,
    choose_rows,
    level_slots,
)
from qldm.backends._runtime_results import ResultCache, fingerprint
from qldm.backends._runtime_steps import (
    Gathered,
    Prepared,
    Submitted,
    run_metadata,
    step_metadata,
)
from qldm.backends._runtime_submit import (
    SubmitOptions,
    prepared_cost,
    primitive,
    submit_options,
    submit_or_attach,
)
from qldm.backends._sessions import MODES, ExecutionMode
from qldm.backends._shift import combine_levels, plan_shifts
from qldm.backends._spsa import check_directions, spsa_rule
from qldm.backends.base import (
    DEVICE,
    NO_CONTEXT,
    Capabilities,
    Context,
    Evaluation,
    ExecutionOptions,
    Task,
    Workload,
)
from qldm.backends.outputs import check_state_support, needs_state_engine
from qldm.circuits import PQCSpec
from qldm.circuits.transpile import IsaCircuit, transpile_spec
from qldm.errors import BackendError, InvalidSpecError, UnknownBackendError
from qldm.mitigation.m3 import (
    DEFAULT_MAX_AGE_S,
    CalibrationCache,
    ReadoutCalibration,
)
from qldm.mitigation.measured_floor import FLOOR_METHODS
from qldm.paths import default_data_dir

__all__ = [
    "DEFAULT_SHOTS",
    "ResilienceOptions",
    "RuntimeBackend",
    "RuntimeConfig",
    "fake_device",
    "ibm_service",
]

DEFAULT_SHOTS = 4000
"""Shots per parameter set when a workload asks for exact values (hardware cannot)."""


class RuntimeBackend:
    """IBM Runtime primitives (``ibm:``) or their local testing mode (``fake:``).

    Args:
        name: ``fake:<device>`` or ``ibm:<device>``.
        optimization_level: preset pass-manager level (0-3).
        resilience: runtime error-mitigation options (:class:`ResilienceOptions`), ``ibm:``
            only; they imply ``EstimatorV2``.
        mitigate_readout: M3 readout mitigation (SamplerV2 + mthree) for I/Z observables.
        m3_max_age_s: recalibrate M3 when the stored calibration is older (a job's option
            ``m3_max_age_s`` overrides it).
        m3_shots: shots per M3 calibration circuit.
        session: a runtime ``Session`` to run every job in (embedding qldm in-process); ``None``:
            the execution mode decides.
        execution_mode: ``job``, ``batch`` or ``session`` (a job's option overrides it);
            ``None``: ``session`` for a job of a run (``batch`` where the runtime refuses
            Sessions, as on the Open plan), ``job`` otherwise.
        max_execution_time: the runtime's ``max_execution_time`` in seconds of QPU time
            (``ibm:``); a workload estimated above it is refused before submission.
        execution_limit: executions (circuits x shots) per sampler job; over it a workload is
            split into several jobs in one ``Batch`` (``None``: no limit).
        split_jobs: split a workload over ``execution_limit`` (else refuse it).
        result_timeout_s: how long to wait for the runtime's results (``None``: no limit).
        calibration_max_age_min: refresh the device's properties and target when the last
            refresh is older (``ibm:``; and fake devices whose ``refresh()`` takes no
            arguments).
        instances: random Pauli-insertion instances per noise level (shots split across them).
        default_shots: shots per parameter set when the workload asks for exact values.
        allow_noise_floor: accept the device floor where a requested strength is below it.
        floor: ``calibration`` (the floor estimated from the device's calibration,
            :func:`qldm.mitigation.noise.device_floor`), ``measured`` (learned by a short
            experiment on the job's qubits, :mod:`qldm.backends._runtime_floor`) or
            ``noise_learner`` (IBM's ``NoiseLearnerV3`` on the job's layers of two-qubit
            gates, in the job's Session or Batch, :mod:`qldm.mitigation.learned_floor`).
        floor_shots: shots per circuit of the measured floor's experiment, which then runs on
            the runtime in the job's Session or Batch (a job's option overrides it); ``None``:
            :data:`qldm.backends._runtime_floor.DEFAULT_FLOOR_SHOTS` on ``ibm:``, and exactly on
            the device's noise model (no shots, nothing submitted) on ``fake:``/``aer:``.
        noise_learner: ``NoiseLearnerV3`` options for ``floor="noise_learner"``
            (``num_randomizations``, ``shots_per_randomization``, ``layer_pair_depths``,
            ``seed_simulator``; :class:`qldm.mitigation.learned_floor.LearnerSettings`);
            ``None``: the runtime's defaults.
        gradient_budget: shot-frugal Jacobians: shift only this many of the ``C`` inputs and
            weights per sample, drawn at random in antithetic pairs and weighted ``C / m``
            (unbiased, :mod:`qldm.backends._subset`); ``None`` shifts all of them.
        spsa_directions: unbiased SPSA Jacobians: ``n`` random directions per sample, two
            parameter sets each (:mod:`qldm.backends._spsa`); not together with
            ``gradient_budget``.
        token, channel, instance: IBM Quantum credentials (``ibm:``), from the server.
        data_dir: where finished runtime results are cached, and M3 calibrations when the
            context of :meth:`run` has no ``m3_store`` (default:
            :func:`qldm.paths.default_data_dir`).

    Raises:
        UnknownBackendError: bad name or unknown device (``field="backend"``).
        InvalidSpecError: invalid options (naming the option).
        BackendError: ``ibm:`` without credentials or the service refused them.
    """

    def __init__(
        self,
        name: str,
        *,
        optimization_level: int = 1,
        resilience: dict[str, Any] | None = None,
        mitigate_readout: bool = True,
        m3_max_age_s: float = DEFAULT_MAX_AGE_S,
        m3_shots: int = 4000,
        session: Any = None,
        execution_mode: str | None = None,
        max_execution_time: int | None = None,
        execution_limit: int | None = MAX_EXECUTIONS,
        split_jobs: bool = True,
        result_timeout_s: float | None = None,
        calibration_max_age_min: float = 30.0,
        instances: int = 32,
        default_shots: int = DEFAULT_SHOTS,
        allow_noise_floor: bool = False,
        floor: str = "calibration",
        floor_shots: int | None = None,
        noise_learner: dict[str, Any] | None = None,
        gradient_budget: int | None = None,
        spsa_directions: int | None = None,
        token: str | None = None,
        channel: str | None = None,
        instance: str | None = None,
        data_dir: str | Path | None = None,
    ) -> None:
        kind, _, device = name.partition(":")
        if kind not in self.KINDS or not device:
            raise UnknownBackendError(f"not a {self.__class__.__name__}: {name!r}", field="backend")
        if optimization_level not in (0, 1, 2, 3):
            raise InvalidSpecError("must be 0, 1, 2 or 3", field="optimization_level")
        if isinstance(instances, bool) or not isinstance(instances, int) or instances < 1:
            raise InvalidSpecError("must be a positive integer", field="instances")
        self.resilience = resilience_options(resilience, kind)
        self.name = name
        self.kind = kind
        self.optimization_level = optimization_level
        self.mitigate_readout = bool(mitigate_readout) and not resilience
        self.m3_max_age_s = float(m3_max_age_s)
        self.m3_shots = int(m3_shots)
        self.session = session
        if execution_mode is not None and execution_mode not in MODES:
            raise InvalidSpecError(f"must be one of {', '.join(MODES)}", field="execution_mode")
        self.execution_mode = execution_mode
        self.max_execution_time = max_execution_time
        self.execution_limit = execution_limit
        self.split_jobs = bool(split_jobs)
        self.result_timeout_s = result_timeout_s
        self.calibration_max_age_s = 60.0 * float(calibration_max_age_min)
        self._refreshed = time.monotonic()
        self.instances = instances
        self.default_shots = int(default_shots)
        self.allow_noise_floor = bool(allow_noise_floor)
        self.floor = self._floor_method(floor, field="floor")
        self.floor_shots = _check_floor_shots(floor_shots, field="floor_shots")
        self.noise_learner = _learner_settings(noise_learner)
        if gradient_budget is not None and (
            isinstance(gradient_budget, bool)
            or not isinstance(gradient_budget, int)
            or gradient_budget < 1
        ):
            raise InvalidSpecError("must be a positive integer or null", field="gradient_budget")
        self.gradient_budget = gradient_budget
        check_directions(spsa_directions, budget=gradient_budget)
        self.spsa_directions = spsa_directions
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        self.calibrations = CalibrationCache(self.data_dir / "m3", shots=m3_shots)
        self._service: Any = None
        self.backend = self._resolve(device, token, channel, instance)

    capabilities: ClassVar[Capabilities] = DEVICE
    """Values and Jacobians of specs (:data:`qldm.backends.base.DEVICE`)."""

    KINDS: ClassVar[tuple[str, ...]] = ("fake", "ibm")
    """The name prefixes this class serves."""

    SESSIONS: ClassVar[bool] = True
    """Whether work runs in runtime Sessions and Batches (not on ``aer:<device>``)."""

    MODES: ClassVar[dict[str, str]] = {
        "fake": "local_testing",
        "ibm": "ibm_runtime",
        "aer": "aer_device",
    }

    def _resolve(
        self, device: str, token: str | None, channel: str | None, instance: str | None
    ) -> Any:
        """The ``BackendV2`` of ``device``."""
        if self.kind == "fake":
            return fake_device(device)
        self._service = ibm_service(token, channel, instance)
        return ibm_device(self._service, device)

    # ------------------------------------------------------------------ the contract

    def run(self, work: Workload, context: Context = NO_CONTEXT) -> Evaluation:
        """Evaluate ``work`` in one runtime submission: :meth:`prepare`, :meth:`calibrate`,
        :meth:`submit` (or re-attach), :meth:`postprocess`.

        Args:
            work: the workload (a spec; task ``expectation`` or ``jacobian``).
            context: ``checkpoint`` gets the runtime job id right after submission;
                ``resume_runtime_job_id`` re-attaches to that job instead of submitting;
                ``options`` (the job's) ``allow_noise_floor``, ``gradient_budget``,
                ``spsa_directions`` and ``m3_max_age_s`` override the backend's;
                ``run_session`` submits inside the run's Session (opened by the run's first
                job, re-opened by later ones) instead of a fresh ``Batch``; ``m3_store``
                keeps M3 calibrations (the job store inside the server; ``None``: files under
                ``<data_dir>/m3/``).

        A resumed job (``resume_runtime_job_id``) whose result was kept finds it first, before
        the calibration refresh, the noise-floor check and M3, none of which it needs.

        Returns:
            :class:`Evaluation` with ``values_std`` (the shot-noise standard errors of the
            values: mthree's for M3, the estimator's ``stds`` otherwise) and, for a Jacobian,
            ``d_inputs_std`` and ``d_weights_std`` (the same propagated through the
            combination, :meth:`postprocess`); metadata
            ``submissions`` (0 when re-attached, else 1),
            ``circuits`` (bound circuits executed), ``execution_mode`` (``session`` or
            ``batch``) and ``session_id``, ``seconds_in_session``, ``seconds_outside``,
            ``raw_values`` (K, B, O) before readout mitigation, ``physical_qubits``, ``noise``
            (floor and injected strengths), ``m3_calibration`` (when M3 ran: its age, whether
            this job measured it, where it is kept), ...

        Raises:
            BackendLimitError: the ``counts`` task or a QPY circuit (``field="task"`` /
                ``"circuit"``).
            NoiseFloorError: a requested strength is below the device's floor.
            InvalidSpecError: amplitude encoding or too many qubits for the device;
                ``spsa_directions`` with ``gradient_budget`` or on a spec SPSA cannot take.
            BackendError: the runtime failed.
        """
        self.capabilities.check(self.name, work.task, work.kind)
        check_state_support(self.name, work)  # refuse what no device path computes
        if needs_state_engine(work):  # probabilities, fidelity, metric, timestep, complex
            from qldm.backends._runtime_states import run_states

            return run_states(self, work, context)
        start = time.perf_counter()
        # A resumed job whose result was saved takes it before anything is measured again:
        # no calibration refresh, no floor check, no M3 calibration.
        saved = ResultCache(self.data_dir).load(
            context.resume_runtime_job_id, self.digest(work, context.options)
        )
        refreshed = False if saved is not None else self.refresh_calibration()
        mode = self.mode_for(context)
        try:
            # a measured floor is learned in the job's Session or Batch, before its PUBs exist
            learned = None if saved is not None else self._learn_floor(work, mode, context)
            prepared = self.prepare(
                work, context.options, check_floor=saved is None, learned_floor=learned
            )
            m3 = None if saved is not None else self.calibrate(prepared, context)
            outside = time.perf_counter() - start
            submitted = self.submit(prepared, mode, context, m3=m3)
        finally:
            mode.close()  # the job's own Session or Batch (submit closes it too)
        t0 = time.perf_counter()
        calibration, m3_meta = (None, None)
        if m3 is not None and submitted.cached is None:
            if submitted.resumed and not submitted.extra:  # re-attached without calibration
                m3.without_circuits(self.backend, ibm=self.kind == "ibm")
            calibration, m3_meta = m3.finish(submitted.extra, submitted.job_id.split(",")[0])
        gathered = self.postprocess(prepared, submitted, calibration)
        if submitted.result is not None and gathered.std is not None:  # kept for a re-attach
            ResultCache(self.data_dir).store(
                submitted.job_id, prepared.digest, gathered.mitigated, gathered.raw, gathered.std
            )
        outside += time.perf_counter() - t0
        metadata = {
            "backend": self.name,
            "device": self.backend.name,
            "mode": self.MODES[self.kind],
            "readout_mitigation": (
                "m3" if prepared.use_m3 else ("runtime" if self.kind == "ibm" else "none")
            ),
            **step_metadata(prepared, submitted, gathered, mode),
            **run_metadata(
                submitted,
                mode,
                seconds_outside=outside,
                calibration_refreshed=refreshed,
                cost=prepared_cost(prepared, self.backend, self.execution_limit),
                m3=m3_meta,
            ),
        }
        return Evaluation(
            gathered.values,
            gathered.d_inputs,
            gathered.d_weights,
            metadata,
            values_std=gathered.values_std,
            d_inputs_std=gathered.d_inputs_std,
            d_weights_std=gathered.d_weights_std,
        )

    def mode_for(self, context: Context) -> ExecutionMode:
        """Where the job's runtime work runs: the backend's Session, the run's, a ``Batch`` or
        job mode (the job's ``execution_mode`` option over the backend's)."""
        return ExecutionMode(
            self.backend,
            run=context.run_session,
            session=self.session,
            service=self._service,
            runtime=self.SESSIONS,
            requested=getattr(context.options, "execution_mode", None) or self.execution_mode,
        )

    # ------------------------------------------------------------------ the steps

    def prepare(
        self,
        work: Workload,
        options: ExecutionOptions | None = None,
        *,
        check_floor: bool = True,
        learned_floor: tuple[np.ndarray, dict[str, Any]] | None = None,
    ) -> Prepared:
        """Step 1, outside any session (no primitive runs): the ISA circuit, the shift plan
        and its rows (subset or SPSA choice), the noise floor and the injected remainder per
        level, the PUBs, and the fingerprint of the result.

        Args:
            work: the workload.
            options: the job's options (they override the backend's), or ``None``.
            check_floor: refuse strengths below the device's floor (``False``: a resumed job
                whose result is already kept; the floor then only fills the metadata).
            learned_floor: the measured floor and its record, learned in the job's execution
                mode (:meth:`run`); ``None``: with ``floor="measured"``, the exact floor on
                ``fake:``/``aer:``, else one learned before (the calibration estimate until the
                first job has learned it; the ``noise`` metadata says which).

        Raises:
            NoiseFloorError: a requested strength is below the device's floor.
            InvalidSpecError: amplitude encoding or too many qubits for the device;
                ``spsa_directions`` with ``gradient_budget`` or on a spec SPSA cannot take.
        """
        spec = work.spec
        allow_floor = not check_floor or bool(
            getattr(options, "allow_noise_floor", False) or self.allow_noise_floor
        )
        budget = getattr(options, "gradient_budget", None) or self.gradient_budget
        directions = getattr(options, "spsa_directions", None) or self.spsa_directions
        check_directions(directions, budget=budget)
        jacobian = work.task is Task.JACOBIAN
        if directions is not None and jacobian:
            spsa_rule(spec)  # refuse what SPSA cannot take before transpiling
        isa = transpile_spec(spec, self.backend, optimization_level=self.optimization_level)
        found = learned_floor or self._known_floor(spec, isa, options)
        plan = plan_shifts(spec, work.inputs, work.weights, jacobian=jacobian)
        full_sets = plan.groups[0].parameter_sets  # (S, I + P): one circuit for angle encodings
        selection, spsa = choose_rows(work, plan, self.name, budget=budget, directions=directions)
        sets = full_sets if selection is None else full_sets[selection.rows]
        sets = sets if spsa is None else spsa.parameter_sets
        levels = work.level_values()
        shots = work.shots if work.shots is not None else self.default_shots
        per_level, noise_meta = level_slots(
            spec,
            isa,
            self.backend,
            levels,
            instances=self.instances,
            allow_floor=allow_floor,
            rng=np.random.default_rng(work.seed),
            subtract_floor=not (self.kind == "ibm" and self.resilience.removes_device_noise),
            floor=None if found is None else found[0],
        )
        record_floor(noise_meta, spec, found)
        n_instances = per_level[0].shape[0]
        labels = spec.pauli_labels()
        use_m3 = self._uses_m3(labels)
        return Prepared(
            work=work,
            isa=isa,
            plan=plan,
            n_full=int(full_sets.shape[0]),
            sets=sets,
            selection=selection,
            spsa=spsa,
            shots=shots,
            n_instances=n_instances,
            shots_per_instance=max(1, math.ceil(shots / n_instances)),
            labels=labels,
            use_m3=use_m3,
            pubs=[build_pub(isa, sets, slots, labels, use_m3) for slots in per_level],
            noise=noise_meta,
            digest=self.digest(work, options),
        )

    def _floor_method(self, value: Any, *, field: str) -> str:
        """``value`` checked as a ``floor`` option (``InvalidSpecError`` naming ``field``)."""
        if value not in FLOOR_METHODS:
            raise InvalidSpecError(f"must be one of {', '.join(FLOOR_METHODS)}", field=field)
        return str(value)

    def _floor_option(self, options: ExecutionOptions | None) -> str:
        """The job's ``floor`` option, else the backend's."""
        value = getattr(options, "floor", None)
        return self.floor if value is None else self._floor_method(value, field="options.floor")

    def _floor_shots(self, options: ExecutionOptions | None) -> int | None:
        """Shots per circuit of the measured floor's experiment (``None``: exact, offline)."""
        value = getattr(options, "floor_shots", None)
        shots = self.floor_shots if value is None else value
        if shots is None and self.kind == "ibm":
            return DEFAULT_FLOOR_SHOTS
        return _check_floor_shots(shots, field="options.floor_shots")

    def _result_name(self, options: ExecutionOptions | None) -> str:
        """The name a result's fingerprint records (a measured floor injects differently)."""
        method = self._floor_option(options)
        if method == "noise_learner":
            return f"{self.name}|floor=noise_learner"
        if method != "measured":
            return self.name
        shots = self._floor_shots(options)
        return f"{self.name}|floor=measured" + ("" if shots is None else f"@{shots}")

    def _learn_floor(
        self,
        work: Workload,
        mode: ExecutionMode,
        context: Context,
        *,
        isa: IsaCircuit | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The measured floor of ``work``'s spec on ``isa``'s qubits (default: the spec's own
        ISA circuit), learned now in the job's execution ``mode`` unless known (``None``: the
        job does not ask for a measured floor)."""
        spec = work.spec
        method = self._floor_option(context.options)
        if method == "calibration" or spec.channel.kind == "none":
            return None
        if isa is None:
            isa = transpile_spec(spec, self.backend, optimization_level=self.optimization_level)
        return learn_floor(
            self,
            spec,
            isa,
            shots=self._floor_shots(context.options),
            mode=mode,
            context=context,
            seed=work.seed,
            method=method,
        )

    def _known_floor(
        self, spec: PQCSpec, isa: IsaCircuit, options: ExecutionOptions | None
    ) -> tuple[np.ndarray, dict[str, Any]] | None:
        """Outside :meth:`run` (an estimate, a resumed job): the exact measured floor on
        ``fake:``/``aer:``, a floor learned before in a job, or ``None`` (the calibration
        estimate)."""
        method = self._floor_option(options)
        if method == "calibration" or spec.channel.kind == "none":
            return None
        shots = self._floor_shots(options)
        if shots is None and method == "measured":
            return learn_floor(self, spec, isa, shots=None)
        store = FloorStore(self.data_dir / "floors")
        return known_floor(spec, isa, self.backend, shots, store, method=method)

    def digest(self, work: Workload, options: ExecutionOptions | None = None) -> str:
        """The fingerprint :meth:`prepare` gives ``work``, without transpiling or the floor
        (a resumed job looks its kept result up with it first)."""
        budget = getattr(options, "gradient_budget", None) or self.gradient_budget
        directions = getattr(options, "spsa_directions", None) or self.spsa_directions
        shots = work.shots if work.shots is not None else self.default_shots
        kind = work.spec.channel.kind
        n_instances = 1 if kind in ("none", "amplitude_damping") else self.instances
        use_m3 = self._uses_m3(work.spec.pauli_labels())
        return fingerprint(
            work,
            self._result_name(options),
            shots,
            n_instances,
            use_m3,
            budget=budget,
            spsa=directions,
        )

    def _uses_m3(self, labels: list[str]) -> bool:
        return self.mitigate_readout and all(set(lb) <= {"I", "Z"} for lb in labels)

    def calibrate(self, prepared: Prepared, context: Context = NO_CONTEXT) -> M3Step | None:
        """The stored M3 calibration of the workload's qubits, or the circuits that measure it
        inside the step's own job (``None`` without M3):
        :func:`qldm.backends._runtime_m3.plan_calibration`. Nothing runs here."""
        return plan_calibration(self, prepared, context)

    def submit(
        self,
        prepared: Prepared,
        mode: ExecutionMode,
        context: Context = NO_CONTEXT,
        *,
        m3: M3Step | None = None,
    ) -> Submitted:
        """Step 2: the PUBs in the job's execution mode (several jobs in one ``Batch`` when
        over the per-job limit; ``m3``'s calibration circuits, when it has any, ride in the
        first), every runtime job id to ``context.checkpoint`` before the wait,
        the runtime's states to ``context.on_status``, ``context.should_cancel`` honoured while
        waiting; or, with ``context.resume_runtime_job_id``, re-attach: the cached result of
        that runtime job when there is one, else (``ibm:``) the runtime job(s) themselves. A
        local-testing-mode job with no cached result died with its process: it is submitted
        again, and said so.

        Raises:
            InvalidSpecError: over the limit with splitting off (``options.split_jobs``), or
                estimated over ``max_execution_time`` (``options.max_execution_time``).
            JobCancelled: cancelled while waiting (the runtime jobs are cancelled too).
            BackendError: the submission or the job failed, the wait timed out, or the resume
                id's cached result belongs to another workload.
        """
        return submit_or_attach(self, prepared, mode, context, m3=m3)

    def estimate(self, work: Workload, options: ExecutionOptions | None = None) -> Cost:
        """What ``work`` would cost, without submitting anything (prepare only: transpile,
        floor, PUBs).

        Raises:
            NoiseFloorError, InvalidSpecError: as :meth:`prepare`.
        """
        prepared = self.prepare(work, options)
        cost = estimate(prepared, self.backend, limit=self.execution_limit)
        shots = self._floor_shots(options)
        measured = self._floor_option(options) == "measured"
        if measured and shots is not None and prepared.noise.get("floor_method") == "calibration":
            # not learned yet: the job learns it first, in its own Session or Batch
            learning = learning_cost(work.spec, prepared.isa, self.backend, shots)
            cost = replace(cost, floor_learning=learning)
        return cost

    def refresh_calibration(self, *, force: bool = False) -> bool:
        """Fetch the device's properties and target again when the last fetch is older than
        ``calibration_max_age_min`` (or ``force``), so the transpile-cache key (calibration
        date), the layout, M3's "device recalibrated" rule and the noise floor follow the
        device. ``ibm:`` backends refresh through ``IBMBackend.refresh()``; fake devices only
        when their ``refresh`` takes no arguments (their calibration is a fixed file).

        Returns:
            Whether the backend was refreshed.
        """
        now = time.monotonic()
        if not force and now - self._refreshed < self.calibration_max_age_s:
            return False
        if self.kind == "ibm" and self.name == f"ibm:{LEAST_BUSY}":
            self.backend = ibm_device(self._service, LEAST_BUSY)  # busy-ness changes too
            self._refreshed = now
            return True
        if not refresh_backend(self.backend, self.name, ibm=self.kind == "ibm"):
            return False
        self._refreshed = now
        return True

    def postprocess(
        self, prepared: Prepared, submitted: Submitted, calibration: ReadoutCalibration | None
    ) -> Gathered:
        """Step 3: the per-level rows, averaged over the instances (M3 applied to sampler
        counts), dropped subset rows restored (weighted ``C / m``), then combined into values
        and Jacobians (shift rules, or SPSA). Rows read from the result cache skip the first
        part.

        Standard errors: the rows' ``std`` (:func:`average_results`) go through the same
        combination with every coefficient squared (the rows are independent shot estimates,
        so ``var(sum_i c_i f_i) = sum_i c_i^2 var(f_i)``; ``variances=True`` of
        :func:`qldm.backends._shift.combine_levels` and of SPSA's), giving ``values_std``,
        ``d_inputs_std`` and ``d_weights_std``. A subset Jacobian's kept rows carry their
        weight ``C / m`` in ``std`` as in the values (dropped rows: 0). They are shot noise
        only: not the sampling of which columns a subset keeps or which directions SPSA
        draws, not the draw of the Pauli-insertion instances, not the M3 calibration's own
        noise (fixed for all rows of a job).

        Raises:
            BackendError: M3 could not mitigate the counts.
        """
        std: np.ndarray | None
        if submitted.cached is not None:
            mitigated, raw, std = submitted.cached
        else:
            mitigated, raw, std = average_results(
                submitted.result,
                use_m3=prepared.use_m3,
                labels=prepared.labels,
                isa=prepared.isa,
                calibration=calibration,
                backend=self.backend,
                n_instances=prepared.n_instances,
                n_sets=int(prepared.sets.shape[0]),
            )
            if prepared.selection is not None:  # dropped shift rows -> 0, kept ones C / m
                mitigated = prepared.selection.expand(mitigated, prepared.n_full)
                raw = prepared.selection.expand(raw, prepared.n_full)
                if std is not None:
                    std = prepared.selection.expand(std, prepared.n_full)
        values, d_inputs, d_weights = _combined(prepared, mitigated)
        b = prepared.work.inputs.shape[0]
        raw_values = raw.reshape(len(prepared.pubs), b, -1, raw.shape[-1])[:, :, 0, :]
        if std is None:
            return Gathered(mitigated, raw, values, d_inputs, d_weights, raw_values)
        variances = _combined(prepared, std**2, variances=True)
        values_std, d_inputs_std, d_weights_std = (
            None if v is None else np.sqrt(v) for v in variances
        )
        return Gathered(
            mitigated,
            raw,
            values,
            d_inputs,
            d_weights,
            raw_values,
            std,
            values_std,
            d_inputs_std,
            d_weights_std,
        )

    # ------------------------------------------------------------------ internals

    def _submit_options(self, prepared: Prepared, context: Context) -> SubmitOptions:
        """The job's submission options (:func:`submit_options`)."""
        return submit_options(prepared, context, self)

    def _primitive(self, runtime_mode: Any, use_m3: bool, options: SubmitOptions) -> Any:
        """The runtime primitive on ``runtime_mode`` (a Session, Batch or the backend)."""
        return primitive(runtime_mode, use_m3, options)

    def _attach(self, job_id: str) -> Any:
        try:
            return self._service.job(job_id)
        except Exception as exc:
            raise BackendError(f"could not re-attach to runtime job {job_id}: {exc}") from exc


def _check_floor_shots(value: Any, *, field: str) -> int | None:
    """``value`` checked as ``floor_shots`` (``InvalidSpecError`` naming ``field``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 1_000_000:
        raise InvalidSpecError("must be an integer from 100 to 1,000,000, or null", field=field)
    return value


def _learner_settings(value: dict[str, Any] | None) -> Any:
    """``value`` as :class:`qldm.mitigation.learned_floor.LearnerSettings` (``None``: the
    defaults; ``InvalidSpecError`` naming ``noise_learner``)."""
    from qldm.mitigation.learned_floor import LearnerSettings

    if value is None:
        return LearnerSettings()
    try:
        data = dict(value)
        if "layer_pair_depths" in data:
            data["layer_pair_depths"] = tuple(int(d) for d in data["layer_pair_depths"])
        return LearnerSettings(**data)
    except (TypeError, ValueError) as exc:
        raise InvalidSpecError(
            f"not NoiseLearnerV3 settings: {exc}", field="noise_learner"
        ) from exc


def _combined(
    prepared: Prepared, rows: np.ndarray, *, variances: bool = False
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(K, S, O)`` rows combined into ``values (K, B, O)``, ``d_inputs (K, B, O, I)`` and
    ``d_weights (K, B, O, P)`` by the shift plan or SPSA (their variances with ``variances``:
    ``rows`` are then the rows' variances)."""
    if prepared.spsa is None:
        return combine_levels(prepared.plan, list(rows), len(prepared.pubs), variances=variances)
    return prepared.spsa.combine_levels(list(rows), variances=variances)
