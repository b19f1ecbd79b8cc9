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

One workload (a training step: forward values, every parameter-shift term, every noise level):

1. outside any session: :func:`qldm.circuits.transpile.transpile_spec` gives the cached ISA circuit
   (noise realized as parameter slots, :mod:`qldm.mitigation.noise`), the device's noise floor is
   estimated and the injected remainder computed for every level, and the shift plan
   (:mod:`qldm.backends._shift`) lays out the ``S`` parameter sets (fewer for subset or SPSA
   Jacobians); :mod:`qldm.backends._runtime_pubs` turns them into PUBs;
2. ONE primitive ``run`` with one PUB per noise level: the ISA circuit with bindings of shape
   ``(R, S)`` (``R`` random Pauli-insertion instances, shots split across them), inside the
   job's run's ``Session`` (:mod:`qldm.backends._sessions`: the run's first runtime job opens
   it, later ones re-open it) or, for a job without a run, a fresh ``Batch``. With
   ``mitigate_readout`` and diagonal (I/Z) observables it is ``SamplerV2`` + M3
   (:mod:`qldm.mitigation.m3`: a calibration per device and qubits, reused until it is older than
   ``m3_max_age_s``, kept in the job store inside the server and in
   ``<data_dir>/m3/`` standalone, measured outside the step's submission); otherwise
   ``EstimatorV2`` (with the runtime's own ``resilience`` options on ``ibm:``);
3. the runtime job id goes to ``checkpoint`` right after submission; the result is averaged
   over instances (M3 applied to the sampler's counts, :mod:`qldm.backends._runtime_pubs`) and
   combined into values and Jacobians.

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
    gradient_meta,
    level_slots,
)
from qldm.backends._runtime_results import ResultCache, fingerprint
from qldm.backends._sessions import ExecutionMode, RunSession
from qldm.backends._shift import combine_levels, plan_shifts
from qldm.backends._spsa import check_directions, spsa_rule
from qldm.backends.base import Evaluation, Workload
from qldm.circuits.transpile import IsaCircuit, cache_info, transpile_spec
from qldm.errors import BackendError, InvalidSpecError, UnknownBackendError
from qldm.mitigation.m3 import (
    DEFAULT_MAX_AGE_S,
    CalibrationCache,
    CalibrationStorage,
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
            a job of a run runs in the run's Session (``run_session`` of :meth:`run`), any
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
        data_dir: where finished runtime results are cached, and M3 calibrations when
            :meth:`run` gets no ``m3_store`` (default: :func:`qldm.paths.default_data_dir`).

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

    # ------------------------------------------------------------------ public

    def run(
        self,
        work: Workload,
        *,
        checkpoint: Callable[[str], None] | None = None,
        resume_runtime_job_id: str | None = None,
        options: Any = None,
        run_session: RunSession | None = None,
        m3_store: CalibrationStorage | None = None,
    ) -> Evaluation:
        """Evaluate ``work`` in one runtime submission.

        Args:
            work: the workload.
            checkpoint: called with the runtime job id right after submission.
            resume_runtime_job_id: re-attach to this runtime job instead of submitting.
            options: the job's options; its ``allow_noise_floor``, ``gradient_budget``,
                ``spsa_directions`` and ``m3_max_age_s`` override the backend's.
            run_session: the job's run: submit inside the run's Session (opened by the run's
                first job, re-opened by later ones) instead of a fresh ``Batch``.
            m3_store: where M3 calibrations are kept (the job store inside the server);
                ``None``: files under ``<data_dir>/m3/``.

        Returns:
            :class:`Evaluation`; metadata ``submissions`` (0 when re-attached, else 1),
            ``circuits`` (bound circuits executed), ``execution_mode`` (``session`` or
            ``batch``) and ``session_id``, ``seconds_in_session``, ``seconds_outside``,
            ``raw_values`` (K, B, O) before readout mitigation, ``physical_qubits``, ``noise``
            (floor and injected strengths), ``m3_calibration`` (when M3 ran: its age, whether
            this job measured it, where it is kept), ...

        Raises:
            NoiseFloorError: a requested strength is below the device's floor.
            InvalidSpecError: amplitude encoding or too many qubits for the device;
                ``spsa_directions`` with ``gradient_budget`` or on a spec SPSA cannot take.
            BackendError: the runtime failed.
        """
        start = time.perf_counter()
        spec = work.spec
        allow_floor = bool(getattr(options, "allow_noise_floor", False) or self.allow_noise_floor)
        budget = getattr(options, "gradient_budget", None) or self.gradient_budget
        directions = getattr(options, "spsa_directions", None) or self.spsa_directions
        check_directions(directions, budget=budget)
        if directions is not None and work.task == "jacobian":
            spsa_rule(spec)  # refuse what SPSA cannot take before transpiling
        isa = transpile_spec(spec, self.backend, optimization_level=self.optimization_level)
        plan = plan_shifts(spec, work.inputs, work.weights, jacobian=work.task == "jacobian")
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
        )
        n_instances = per_level[0].shape[0]
        shots_per_instance = max(1, math.ceil(shots / n_instances))
        labels = spec.pauli_labels()
        use_m3 = self.mitigate_readout and all(set(lb) <= {"I", "Z"} for lb in labels)
        pubs = [build_pub(isa, sets, slots, labels, use_m3) for slots in per_level]
        mode = ExecutionMode(
            self.backend,
            run=run_session,
            session=self.session,
            service=self._service,
            runtime=self.SESSIONS,
        )
        calibration, m3_meta = None, None
        if use_m3:
            cache = (
                self.calibrations
                if m3_store is None
                else CalibrationCache(m3_store, shots=self.m3_shots)
            )
            measured_before = cache.calibrations_run
            max_age = getattr(options, "m3_max_age_s", None)
            calibration = self._calibration(
                isa,
                cache,
                self.m3_max_age_s if max_age is None else float(max_age),
                mode,
            )
            m3_meta = calibration.summary(
                measured=cache.calibrations_run > measured_before,
                source="store" if m3_store is not None else "file",
            )
        digest = fingerprint(
            work, self.name, shots, n_instances, use_m3, budget=budget, spsa=directions
        )
        results = ResultCache(self.data_dir)
        outside = time.perf_counter() - start
        resumed, resubmitted_reason = False, None
        in_session = 0.0
        cached = results.load(resume_runtime_job_id, digest)
        if cached is not None:
            mitigated, raw = cached
            job_id = resume_runtime_job_id
            resumed = True
            submissions = 0
        else:
            t0 = time.perf_counter()
            if resume_runtime_job_id is not None and self.kind == "ibm":
                result = self._attach(resume_runtime_job_id)
                job_id, resumed, submissions = resume_runtime_job_id, True, 0
            else:
                if resume_runtime_job_id is not None:
                    resubmitted_reason = (
                        "local testing mode jobs end with the process that submitted them, and "
                        "no finished result was cached for this runtime job id"
                    )
                result, job_id = self._submit(
                    pubs, use_m3, shots_per_instance, work.seed, checkpoint, mode
                )
                submissions = 1
            in_session = time.perf_counter() - t0
            t1 = time.perf_counter()
            mitigated, raw = average_results(
                result,
                use_m3=use_m3,
                labels=labels,
                isa=isa,
                calibration=calibration,
                backend=self.backend,
                n_instances=n_instances,
                n_sets=sets.shape[0],
            )
            if selection is not None:  # dropped shift rows -> 0, kept ones weighted C / m
                mitigated = selection.expand(mitigated, full_sets.shape[0])
                raw = selection.expand(raw, full_sets.shape[0])
            results.store(job_id, digest, mitigated, raw)
            outside += time.perf_counter() - t1
        t2 = time.perf_counter()
        if spsa is None:
            values, d_inputs, d_weights = combine_levels(plan, list(mitigated), len(levels))
        else:
            values, d_inputs, d_weights = spsa.combine_levels(list(mitigated))
        b = work.inputs.shape[0]
        raw_values = raw.reshape(len(levels), b, -1, raw.shape[-1])[:, :, 0, :]  # forward rows
        outside += time.perf_counter() - t2
        metadata: dict[str, Any] = {
            "backend": self.name,
            "device": self.backend.name,
            "mode": self.MODES[self.kind],
            "primitive": "sampler" if use_m3 else "estimator",
            "readout_mitigation": "m3" if use_m3 else ("runtime" if self.kind == "ibm" else "none"),
            "submissions": submissions,
            "pubs": len(pubs),
            "circuits": len(pubs) * n_instances * int(sets.shape[0]),
            "instances": n_instances,
            "gradient": gradient_meta(selection, spsa),
            "shots": shots,
            "shots_per_instance": shots_per_instance,
            "seed": work.seed,
            "runtime_job_id": job_id,
            "resumed": resumed,
            "execution_mode": mode.execution_mode,
            "session_id": mode.session_id,
            "physical_qubits": list(isa.layout[: isa.hardware.n_data]),
            "calibration": isa.calibration,
            "transpile_cache": cache_info(),
            "noise": noise_meta,
            "raw_values": raw_values.tolist(),
            "seconds_in_session": in_session,
            "seconds_outside": outside,
        }
        if m3_meta is not None:
            metadata["m3_calibration"] = m3_meta
            metadata["m3_calibration_age_s"] = m3_meta["age_s"]
        if resubmitted_reason is not None:
            metadata["resubmitted"] = True
            metadata["resubmitted_reason"] = resubmitted_reason
        return Evaluation(values, d_inputs, d_weights, metadata)

    # ------------------------------------------------------------------ internals

    def _submit_and_wait(
        self,
        primitive: Any,
        pubs: list[tuple[Any, ...]],
        use_m3: bool,
        shots: int,
        checkpoint: Callable[[str], None] | None,
    ) -> tuple[Any, str]:
        """Submit ``pubs`` to a sampler (M3) or estimator, hand its job id to ``checkpoint``
        before waiting, and return ``(result, job id)``.

        Raises:
            BackendError: the submission or the job failed.
        """
        try:
            if use_m3:
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
        pubs: list[tuple[Any, ...]],
        use_m3: bool,
        shots: int,
        seed: int | None,
        checkpoint: Callable[[str], None] | None,
        mode: ExecutionMode,
    ) -> tuple[Any, str]:
        """Submit in the job's Session, or in a fresh ``Batch`` (closed once the job is done)."""
        from qiskit_ibm_runtime import Batch

        def go(runtime_mode: Any) -> tuple[Any, str]:
            primitive = self._primitive(runtime_mode, use_m3, seed)
            return self._submit_and_wait(primitive, pubs, use_m3, shots, checkpoint)

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
