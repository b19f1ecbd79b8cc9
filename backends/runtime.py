"""``fake:<device>`` and ``ibm:<device>``: qiskit-ibm-runtime primitives, one submission a step.

Both names take the same path; only where the backend comes from differs:

- ``fake:<device>`` is a fake backend of ``qiskit_ibm_runtime.fake_provider`` (``fake:manila``
  or ``fake:fake_manila``: ``FakeManilaV2``), run in the runtime's *local testing mode*: the
  fake backend is the ``backend`` of a ``Batch``/``Session`` and the primitives run it on Aer
  with the device's noise model, in this process.
- ``ibm:<device>`` is ``QiskitRuntimeService(channel=, token=, instance=).backend(device)``.
  The credentials come from the constructor only: a server passes its settings'
  (``QLDM_IBM_TOKEN``, ``QLDM_IBM_CHANNEL``, ``QLDM_IBM_INSTANCE``) through
  :class:`RuntimeConfig`; never from a request.

One workload (a training step: forward values, every parameter-shift term, every noise level)
goes through three steps, each a method that can be called on its own
(:mod:`qldm.backends._runtime_steps` holds the records they pass on):

1. :meth:`RuntimeBackend.prepare`, outside any session, runs nothing:
   :func:`qldm.circuits.transpile.transpile_spec` gives the cached ISA circuit (noise realized
   as parameter slots, :mod:`qldm.mitigation.noise`), the device's noise floor is estimated
   and the injected remainder computed for every level, the shift plan
   (:mod:`qldm.backends._shift`) lays out the ``S`` parameter sets (fewer for subset or SPSA
   Jacobians), and :mod:`qldm.backends._runtime_pubs` turns them into one PUB per level: the
   ISA circuit with bindings ``(R, S)`` (``R`` random Pauli-insertion instances, shots split
   across them). With ``mitigate_readout`` and diagonal (I/Z) observables the primitive is
   ``SamplerV2`` + M3, otherwise ``EstimatorV2`` (with the runtime's own ``resilience``
   options on ``ibm:``); :meth:`RuntimeBackend.calibrate` then finds or measures the M3
   calibration (:mod:`qldm.mitigation.m3`: per device and qubits, reused until older than
   ``m3_max_age_s``, kept in the job store inside the server and in ``<data_dir>/m3/``
   standalone), outside the step's submission;
2. :meth:`RuntimeBackend.submit`: ONE primitive ``run`` inside the job's run's ``Session``
   (:mod:`qldm.backends._sessions`: the run's first runtime job opens it, later ones re-open
   it) or, for a job without a run, a fresh ``Batch``; the runtime job id goes to
   ``checkpoint`` right after submission. Or it re-attaches (below);
3. :meth:`RuntimeBackend.postprocess`: the result is averaged over instances (M3 applied to
   the sampler's counts) and combined into values and Jacobians.

Re-attaching after a restart (``resume_runtime_job_id``): every finished result is written to
a small cache, ``<data_dir>/runtime_results/<job id>.npz`` (per-level values, raw and
mitigated, plus a fingerprint of the workload; :mod:`qldm.backends._runtime_results`). A
resumed run reads that file when it exists (no submission). Otherwise ``ibm:`` fetches the job
with ``service.job(id)`` and waits for it.
A local-testing-mode job lives in the process that submitted it, so when that process died
before the job finished there is nothing to re-attach to: the workload is submitted again and
the metadata says ``"resubmitted": true`` with the reason.

This module holds :class:`RuntimeBackend` (options, the steps above, submission in a Session or
Batch, M3 calibration, re-attaching). The parts it composes live next to it and are
re-exported here where other code imports them:

- :mod:`qldm.backends._runtime_devices`: :func:`fake_device`, :func:`ibm_service`,
  :class:`RuntimeConfig`;
- :mod:`qldm.backends._runtime_options`: :class:`ResilienceOptions` and its validation;
- :mod:`qldm.backends._runtime_pubs`: subset/SPSA row choice, noise slots per level, PUBs and
  the averaging (with M3) of their results;
- :mod:`qldm.backends._runtime_results`: the workload fingerprint and the result cache.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from qldm.backends._runtime_devices import RuntimeConfig, fake_device, ibm_service
from qldm.backends._runtime_options import ResilienceOptions, resilience_options
from qldm.backends._runtime_pubs import (
    average_results,
    build_pub,
    choose_rows,
    level_slots,
)
from qldm.backends._runtime_results import ResultCache, fingerprint
from qldm.backends._runtime_steps import Gathered, Prepared, Submitted, step_metadata
from qldm.backends._sessions import ExecutionMode
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
from qldm.circuits.transpile import IsaCircuit, transpile_spec
from qldm.errors import BackendError, InvalidSpecError, UnknownBackendError
from qldm.mitigation.m3 import (
    DEFAULT_MAX_AGE_S,
    CalibrationCache,
    ReadoutCalibration,
)
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
            a job of a run runs in the run's Session (the context's ``run_session``), any
            other job in a fresh ``Batch``.
        instances: random Pauli-insertion instances per noise level (shots split across them).
        default_shots: shots per parameter set when the workload asks for exact values.
        allow_noise_floor: accept the device floor where a requested strength is below it.
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
        instances: int = 32,
        default_shots: int = DEFAULT_SHOTS,
        allow_noise_floor: bool = False,
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
        self.instances = instances
        self.default_shots = int(default_shots)
        self.allow_noise_floor = bool(allow_noise_floor)
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
        try:
            return self._service.backend(device)
        except Exception as exc:
            raise UnknownBackendError(
                f"IBM Quantum has no backend {device!r} for this account: {exc}",
                field="backend",
            ) from exc

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

        Returns:
            :class:`Evaluation`; metadata ``submissions`` (0 when re-attached, else 1),
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
        start = time.perf_counter()
        prepared = self.prepare(work, context.options)
        mode = ExecutionMode(
            self.backend,
            run=context.run_session,
            session=self.session,
            service=self._service,
            runtime=self.SESSIONS,
        )
        calibration, m3_meta = self.calibrate(prepared, mode, context)
        outside = time.perf_counter() - start
        submitted = self.submit(prepared, mode, context)
        t0 = time.perf_counter()
        gathered = self.postprocess(prepared, submitted, calibration)
        if submitted.result is not None:  # a finished result, kept for a re-attach
            ResultCache(self.data_dir).store(
                submitted.job_id, prepared.digest, gathered.mitigated, gathered.raw
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
        }
        metadata["seconds_in_session"] = submitted.seconds
        metadata["seconds_outside"] = outside
        if m3_meta is not None:
            metadata["m3_calibration"] = m3_meta
            metadata["m3_calibration_age_s"] = m3_meta["age_s"]
        return Evaluation(gathered.values, gathered.d_inputs, gathered.d_weights, metadata)

    # ------------------------------------------------------------------ the steps

    def prepare(self, work: Workload, options: ExecutionOptions | None = None) -> Prepared:
        """Step 1, outside any session (no primitive runs): the ISA circuit, the shift plan
        and its rows (subset or SPSA choice), the noise floor and the injected remainder per
        level, the PUBs, and the fingerprint of the result.

        Args:
            work: the workload.
            options: the job's options (they override the backend's), or ``None``.

        Raises:
            NoiseFloorError: a requested strength is below the device's floor.
            InvalidSpecError: amplitude encoding or too many qubits for the device;
                ``spsa_directions`` with ``gradient_budget`` or on a spec SPSA cannot take.
        """
        spec = work.spec
        allow_floor = bool(getattr(options, "allow_noise_floor", False) or self.allow_noise_floor)
        budget = getattr(options, "gradient_budget", None) or self.gradient_budget
        directions = getattr(options, "spsa_directions", None) or self.spsa_directions
        check_directions(directions, budget=budget)
        jacobian = work.task is Task.JACOBIAN
        if directions is not None and jacobian:
            spsa_rule(spec)  # refuse what SPSA cannot take before transpiling
        isa = transpile_spec(spec, self.backend, optimization_level=self.optimization_level)
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
        )
        n_instances = per_level[0].shape[0]
        labels = spec.pauli_labels()
        use_m3 = self.mitigate_readout and all(set(lb) <= {"I", "Z"} for lb in labels)
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
            digest=fingerprint(
                work, self.name, shots, n_instances, use_m3, budget=budget, spsa=directions
            ),
        )

    def calibrate(
        self, prepared: Prepared, mode: ExecutionMode, context: Context = NO_CONTEXT
    ) -> tuple[ReadoutCalibration | None, dict[str, Any] | None]:
        """The M3 calibration the post-processing needs, and its metadata (``(None, None)``
        without M3): the stored one of the chosen qubits while it is young enough (the job's
        ``m3_max_age_s``, else the backend's), else one measured now, outside the step's
        submission. Kept in ``context.m3_store``, or the backend's files."""
        if not prepared.use_m3:
            return None, None
        store = context.m3_store
        cache = self.calibrations if store is None else CalibrationCache(store, shots=self.m3_shots)
        measured_before = cache.calibrations_run
        max_age = getattr(context.options, "m3_max_age_s", None)
        calibration = self._calibration(
            prepared.isa, cache, self.m3_max_age_s if max_age is None else float(max_age), mode
        )
        meta = calibration.summary(
            measured=cache.calibrations_run > measured_before,
            source="store" if store is not None else "file",
        )
        return calibration, meta

    def submit(
        self, prepared: Prepared, mode: ExecutionMode, context: Context = NO_CONTEXT
    ) -> Submitted:
        """Step 2: one primitive ``run`` of the PUBs, in the job's Session or a fresh
        ``Batch``, its id to ``context.checkpoint`` before the wait; or, with
        ``context.resume_runtime_job_id``, re-attach: the cached result of that runtime job
        when there is one, else (``ibm:``) the runtime job itself. A local-testing-mode job
        with no cached result died with its process: it is submitted again, and said so.

        Raises:
            BackendError: the submission or the job failed, or the resume id's cached result
                belongs to another workload.
        """
        resume = context.resume_runtime_job_id
        cached = ResultCache(self.data_dir).load(resume, prepared.digest)
        if cached is not None and resume is not None:
            return Submitted(resume, None, cached, submissions=0, resumed=True)
        t0 = time.perf_counter()
        if resume is not None and self.kind == "ibm":
            result = self._attach(resume)
            return Submitted(resume, result, None, submissions=0, resumed=True, seconds=_since(t0))
        reason = None
        if resume is not None:
            reason = (
                "local testing mode jobs end with the process that submitted them, and "
                "no finished result was cached for this runtime job id"
            )
        result, job_id = self._submit(prepared, context.checkpoint, mode)
        return Submitted(
            job_id, result, None, submissions=1, resubmitted_reason=reason, seconds=_since(t0)
        )

    def postprocess(
        self, prepared: Prepared, submitted: Submitted, calibration: ReadoutCalibration | None
    ) -> Gathered:
        """Step 3: the per-level rows, averaged over the instances (M3 applied to sampler
        counts), dropped subset rows restored (weighted ``C / m``), then combined into values
        and Jacobians (shift rules, or SPSA). Rows read from the result cache skip the first
        part.

        Raises:
            BackendError: M3 could not mitigate the counts.
        """
        if submitted.cached is not None:
            mitigated, raw = submitted.cached
        else:
            mitigated, raw = average_results(
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
        k = len(prepared.pubs)
        if prepared.spsa is None:
            values, d_inputs, d_weights = combine_levels(prepared.plan, list(mitigated), k)
        else:
            values, d_inputs, d_weights = prepared.spsa.combine_levels(list(mitigated))
        b = prepared.work.inputs.shape[0]
        raw_values = raw.reshape(k, b, -1, raw.shape[-1])[:, :, 0, :]  # the forward rows
        return Gathered(mitigated, raw, values, d_inputs, d_weights, raw_values)

    # ------------------------------------------------------------------ internals

    def _submit_and_wait(
        self,
        primitive: Any,
        prepared: Prepared,
        checkpoint: Callable[[str], None] | None,
    ) -> tuple[Any, str]:
        """Submit the PUBs to a sampler (M3) or estimator, hand its job id to ``checkpoint``
        before waiting, and return ``(result, job id)``.

        Raises:
            BackendError: the submission or the job failed.
        """
        pubs, shots = prepared.pubs, prepared.shots_per_instance
        try:
            if prepared.use_m3:
                job = primitive.run([(*pub, shots) for pub in pubs])
            else:
                job = primitive.run(pubs, precision=1.0 / math.sqrt(shots))
        except Exception as exc:
            raise BackendError(f"submission to {self.name} failed: {exc}") from exc
        job_id = str(job.job_id())
        if checkpoint is not None:
            checkpoint(job_id)
        try:
            return job.result(), job_id
        except Exception as exc:
            raise BackendError(f"job {job_id} on {self.name} failed: {exc}") from exc

    def _submit(
        self,
        prepared: Prepared,
        checkpoint: Callable[[str], None] | None,
        mode: ExecutionMode,
    ) -> tuple[Any, str]:
        """Submit in the job's Session, or in a fresh ``Batch`` (closed once the job is done)."""
        from qiskit_ibm_runtime import Batch

        def go(runtime_mode: Any) -> tuple[Any, str]:
            primitive = self._primitive(runtime_mode, prepared.use_m3, prepared.work.seed)
            return self._submit_and_wait(primitive, prepared, checkpoint)

        session = mode.session()
        if session is not None:
            return go(session)
        with Batch(backend=self.backend) as batch:
            return go(batch)

    def _primitive(self, mode: Any, use_m3: bool, seed: int | None) -> Any:
        from qiskit_ibm_runtime import EstimatorV2, SamplerV2

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            primitive = SamplerV2(mode=mode) if use_m3 else EstimatorV2(mode=mode)
        if self.kind != "ibm" and seed is not None:
            primitive.options.simulator.seed_simulator = int(seed) % (2**31)
        if not use_m3 and self.kind == "ibm":
            self.resilience.apply(primitive.options)
        return primitive

    def _calibration(
        self, isa: IsaCircuit, cache: CalibrationCache, max_age_s: float, mode: ExecutionMode
    ) -> ReadoutCalibration:
        """The M3 calibration of the chosen data qubits: the stored one while it is younger
        than ``max_age_s`` and was measured under the device's current calibration, else a new
        one, measured outside the step's submission. On ``ibm:``, where the runtime is the only
        way to run circuits, it runs in the job's Session, or in its own ``Batch``."""
        qubits = tuple(isa.layout[: isa.hardware.n_data])
        device_cal = None if isa.calibration == "unknown" else isa.calibration

        def get(runtime_mode: Any) -> ReadoutCalibration:
            return cache.get_or_calibrate(
                self.backend, qubits, max_age_s, mode=runtime_mode, device_calibration=device_cal
            )

        if self.kind != "ibm":
            return get(None)
        session = mode.session()
        if session is not None:
            return get(session)
        from qiskit_ibm_runtime import Batch

        with Batch(backend=self.backend) as batch:
            return get(batch)

    def _attach(self, job_id: str) -> Any:
        try:
            return self._service.job(job_id).result()
        except Exception as exc:
            raise BackendError(f"could not re-attach to runtime job {job_id}: {exc}") from exc


def _since(t0: float) -> float:
    return time.perf_counter() - t0
