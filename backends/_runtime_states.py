"""State-level work on the runtime path (``fake:``, ``ibm:``, ``aer:<device>``): one submission.

The rows of :mod:`qldm.backends._state_rows` (every sample's forward row, every parameter-shift
row, every perturbed state of an input Jacobian) bind ONE parameterized circuit per kind
(:mod:`qldm.circuits.state_circuits`), transpiled once for the device and cached
(:func:`qldm.circuits.transpile.transpile_spec` with the circuit's ``variant``); amplitude and
complex amplitude states and fidelity targets are bindings of the parameterized preparation
(:mod:`qldm.circuits.state_prep`), so no sample needs its own transpilation. Everything goes
to ``SamplerV2`` in one submission (one PUB per noise level, or per metric layer; split into
several jobs of one ``Batch`` only over the per-job execution limit), with the data qubits
measured:

- ``probabilities``: each row's counts, readout-mitigated with M3 where the backend mitigates
  (``mitigate_readout``; quasi-probabilities over the ``2**n`` outcomes), averaged over the
  random Pauli-insertion instances of a noisy spec (the device's floor subtracted from the
  requested strength, as for expectation values, :mod:`qldm.mitigation.noise`). The forward
  values are the nearest probability vectors (Euclidean projection onto the simplex); the
  Jacobians combine the quasi-probabilities of the shift rows (linear, so unbiased);
- ``fidelity``: the frequency of the all-zero outcome of the compute-uncompute circuit
  ``V_phi^dag U(theta) V_psi`` (M3-mitigated), clipped to ``[0, 1]`` for the forward values;
- ``expectation`` of ``timestep``/``complex_amplitude`` specs: ``I``/``Z`` observables from the
  same outcome distributions (others are refused, field ``circuit.observables``);
- ``metric_tensor`` (``block_diagonal``): one circuit per layer of the block-diagonal metric
  (encoding, the gates before the layer, the basis change of its generators), one row per
  sample; the layer's block is the covariance of its generators' eigenvalues under the
  measured (mitigated) distribution.

Jacobians: all parameter-shift rows, or with ``gradient_budget`` ``m`` the antithetic column
subsets of :mod:`qldm.backends._subset` over the data inputs and ansatz angles (weighted
``C / m``, unbiased; the timestep's ``w``, ``v`` and ``tau`` derivatives follow by the chain
rule; not for state encodings, whose input Jacobian needs every perturbed state). Not on this
path: SPSA Jacobians (``spsa_directions``). The M3 calibration of the measured qubits is the
stored one, or its calibration circuits ride as extra PUBs of the same job
(:func:`qldm.backends._runtime_m3.plan_calibration`), as on the expectation path.

Submission, cancel, status, timeout and the checkpoint of the runtime job id are the expectation
path's (:func:`qldm.backends._runtime_submit.submit_or_attach`), and so is a resume after a
restart (``context.resume_runtime_job_id``): every PUB's outcome distributions (mitigated and
raw) are kept in the result cache under the runtime job id and the workload's
:func:`qldm.backends._runtime_results.fingerprint` (``states=True``); a resumed job finds them
before anything is measured again (no calibration refresh, no floor check, no M3, no
submission); on ``ibm:`` without a kept result it re-attaches to the runtime job(s); a
local-testing-mode job without one is submitted again, and its metadata says so.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from qldm.backends._runtime_floor import record_floor
from qldm.backends._runtime_m3 import M3Step, plan_calibration
from qldm.backends._runtime_pubs import build_pub, gradient_meta, level_slots
from qldm.backends._runtime_results import ResultCache, fingerprint
from qldm.backends._runtime_steps import Submitted
from qldm.backends._runtime_submit import submit_or_attach
from qldm.backends._state_rows import (
    combine_rows,
    metric_from_probabilities,
    metric_rows,
    plan_rows,
    row_values,
    row_variances,
    simplex_projection,
)
from qldm.backends._subset import choose_subsets
from qldm.backends.base import Context, Evaluation, Task, Workload
from qldm.backends.outputs import Output
from qldm.circuits.spec import STATE_ENCODINGS
from qldm.circuits.state_circuits import metric_circuit, state_circuit
from qldm.circuits.transpile import IsaCircuit, transpile_spec
from qldm.errors import BackendError, BackendLimitError
from qldm.mitigation.m3 import ReadoutCalibration

__all__ = ["StatePrepared", "run_states"]

Qubits = tuple[int, ...]


class StatePrepared:
    """What :func:`qldm.backends._runtime_submit.submit` reads of a prepared workload.

    Attributes:
        work: the workload.
        isas: the transpiled circuit of each PUB (``isa``: the first, for the cost estimate).
        pubs: ``SamplerV2`` PUBs ``(measured circuit, bindings (R, S))``.
        shots: shots per row; ``shots_per_instance`` per random instance.
        n_instances: ``R``.
        use_m3: always ``True`` here: the sampler runs (readout mitigation is separate).
        digest: the fingerprint of the result (its cache key, the subset seed, metadata).
    """

    use_m3 = True

    def __init__(
        self,
        work: Workload,
        isas: list[IsaCircuit],
        pubs: list[Any],
        shots: int,
        n_inst: int,
        digest: str,
    ) -> None:
        self.work = work
        self.isas = isas
        self.isa = isas[0]
        self.pubs = pubs
        self.shots = shots
        self.n_instances = n_inst
        self.shots_per_instance = max(1, math.ceil(shots / n_inst))
        self.digest = digest


def run_states(rb: Any, work: Workload, context: Context) -> Evaluation:
    """Evaluate a state-level workload on a :class:`qldm.backends.runtime.RuntimeBackend`.

    Returns:
        :class:`Evaluation`: ``values (K, B, W)`` (``d_inputs (K, B, W, I)``,
        ``d_weights (K, B, W, P)`` for ``jacobian``) with their shot-noise standard errors
        ``values_std``, ``d_inputs_std``, ``d_weights_std`` (each row's, binomial or mthree's
        bound, :func:`qldm.backends._state_rows.row_variances`, through the shift rules and
        the timestep chain rule with squared coefficients; ``values_std`` is that of the
        estimate before the simplex projection or the clip to ``[0, 1]``), or
        ``values (1, B, P, P)`` (``metric_tensor``, no standard errors); metadata
        ``submissions`` (0 when resumed), ``resumed``,
        ``runtime_job_id``, ``circuits``, ``shots``, ``readout_mitigation``, ``raw_values``
        (unmitigated forward values), ``noise``, ``resubmitted`` (a ``fake:`` job resumed
        without a kept result), ...

    Raises:
        BackendLimitError: ``spsa_directions``, or ``gradient_budget`` with a state encoding
            (fields ``options.*``), or ``expectation`` of observables other than ``I``/``Z``
            (field ``circuit.observables``).
        NoiseFloorError: a requested strength below the device's floor.
        InvalidSpecError, JobCancelled: as
            :func:`qldm.backends._runtime_submit.submit_or_attach`.
        BackendError: the runtime or M3 failed, the wait timed out, or the resume id's kept
            result belongs to another workload.
    """
    start = time.perf_counter()
    options = context.options
    spec = work.spec
    jacobian = work.task is Task.JACOBIAN
    budget = getattr(options, "gradient_budget", None) or rb.gradient_budget
    if jacobian and (getattr(options, "spsa_directions", None) or rb.spsa_directions):
        raise BackendLimitError(
            "SPSA Jacobians are for expectation values of plain specs; state-level work on "
            "devices takes parameter-shift Jacobians (all of them, or a gradient_budget subset)",
            field="options.spsa_directions",
        )
    if jacobian and budget is not None and spec.encoding in STATE_ENCODINGS:
        raise BackendLimitError(
            "subset Jacobians shift angles; an amplitude-encoded input Jacobian needs every "
            "perturbed state (leave gradient_budget out)",
            field="options.gradient_budget",
        )
    labels = spec.pauli_labels()
    if work.output is Output.EXPECTATION and any(set(lb) - {"I", "Z"} for lb in labels):
        raise BackendLimitError(
            "expectation values of timestep or complex_amplitude specs on devices come from "
            "measured outcomes: I/Z observables only",
            field="circuit.observables",
        )
    shots = work.shots if work.shots is not None else rb.default_shots
    digest = fingerprint(  # a measured floor injects differently: its own name
        work,
        rb._result_name(options),
        shots,
        rb.instances,
        rb.mitigate_readout,
        budget=budget,
        states=True,
    )
    # A resumed job whose result was kept takes it before anything is measured again:
    # no calibration refresh, no floor check, no M3 calibration.
    kept = ResultCache(rb.data_dir).load(context.resume_runtime_job_id, digest)
    refreshed = False if kept is not None else rb.refresh_calibration()
    level = rb.optimization_level
    noise_meta: dict[str, Any] = {"kind": spec.channel.kind}
    mode = rb.mode_for(context)
    try:
        if work.task is Task.METRIC_TENSOR:
            layers, rows = metric_rows(work)
            isas = [
                transpile_spec(
                    spec,
                    rb.backend,
                    optimization_level=level,
                    build=partial(_metric_build, layer=layer),
                    variant=f"metric:{i}",
                )
                for i, layer in enumerate(layers)
            ]
            jobs = [(isa, rows, np.zeros((1, 0))) for isa in isas]
        else:
            plan = plan_rows(work, jacobian=jacobian)
            selection = None
            if jacobian and budget is not None:  # antithetic column subsets, weighted C / m
                seed = int(digest[:15], 16) + budget
                selection = choose_subsets(plan.shift, budget, np.random.default_rng(seed))
            run_rows = plan.rows if selection is None else plan.rows[selection.rows]
            fidelity = work.output is Output.FIDELITY
            isa = transpile_spec(
                spec,
                rb.backend,
                optimization_level=level,
                build=partial(_state_build, fidelity=fidelity),
                variant="state:fidelity" if fidelity else "state",
            )
            allow = kept is not None or bool(
                getattr(options, "allow_noise_floor", False) or rb.allow_noise_floor
            )
            # a measured floor is learned in the job's Session or Batch, on the state circuit's
            # own qubits (a kept result only needs it for the metadata)
            found = (
                rb._known_floor(spec, isa, options)
                if kept is not None
                else rb._learn_floor(work, mode, context, isa=isa)
            )
            per_level, noise_meta = level_slots(
                spec,
                isa,
                rb.backend,
                work.level_values(),
                instances=rb.instances,
                allow_floor=allow,
                rng=np.random.default_rng(work.seed),
                floor=None if found is None else found[0],
            )
            record_floor(noise_meta, spec, found)
            isas = [isa] * len(per_level)
            jobs = [(isa, run_rows, slots) for slots in per_level]
        n_inst = jobs[0][2].shape[0]
        pubs = [build_pub(isa, rows, slots, labels, True) for isa, rows, slots in jobs]
        prepared = StatePrepared(work, isas, pubs, shots, n_inst, digest)
        m3 = None if kept is not None else _M3Steps.plan(rb, isas, context)
        submitted = submit_or_attach(rb, prepared, mode, context, m3=m3)
        m3_meta: list[dict[str, Any]] = []
        bound = rb.mitigate_readout  # a kept result: M3 ran iff the backend mitigates
        if submitted.cached is not None:
            mitigated, raw = list(submitted.cached[0]), list(submitted.cached[1])
            kept_units = submitted.cached[2]  # None in results kept before standard errors
            units = None if kept_units is None else list(kept_units)
        else:
            calibrations: dict[Qubits, ReadoutCalibration] = {}
            if m3 is not None:
                calibrations, m3_meta = m3.finish(submitted, rb.backend, ibm=rb.kind == "ibm")
            mitigated, raw, units = [], [], []
            for (isa, rows, _), result in zip(jobs, submitted.result, strict=True):
                qubits = _qubits(isa)
                m, r, u = _distributions(
                    result, rb.backend, calibrations.get(qubits), qubits, n_inst, rows
                )
                mitigated.append(m)
                raw.append(r)
                units.append(u)
            bound = bool(calibrations)
            ResultCache(rb.data_dir).store(  # kept for a resume: (K, S, 2**n), one S per PUB,
                # and each row's shot-noise unit (K, S) for its standard errors
                submitted.job_id,
                digest,
                np.stack(mitigated),
                np.stack(raw),
                np.stack(units),
            )
        metadata: dict[str, Any] = {
            "backend": rb.name,
            "device": rb.backend.name,
            "mode": rb.MODES[rb.kind],
            "primitive": "sampler",
            "readout_mitigation": "m3" if rb.mitigate_readout else "none",
            "submissions": submitted.submissions,
            "runtime_job_id": submitted.job_id,
            "resumed": submitted.resumed,
            "execution_mode": mode.execution_mode,
            "session_id": mode.session_id,
            "pubs": len(pubs),
            "circuits": sum(n_inst * rows.shape[0] for _, rows, _ in jobs),
            "instances": n_inst,
            "shots": shots,
            "shots_per_instance": prepared.shots_per_instance,
            "seed": work.seed,
            "physical_qubits": list(isas[0].layout[: isas[0].hardware.n_data]),
            "isa_ops": {str(k): int(v) for k, v in isas[0].circuit.count_ops().items()},
            "noise": noise_meta,
            "usage_s": submitted.usage_s,
            "runtime_statuses": submitted.statuses,
            "seconds_in_session": submitted.seconds,
            "calibration_refreshed": refreshed,
            "fingerprint": prepared.digest,
        }
        if m3_meta:
            metadata["m3_calibration"] = m3_meta
        if submitted.resubmitted_reason is not None:
            metadata["resubmitted"] = True
            metadata["resubmitted_reason"] = submitted.resubmitted_reason
        if work.task is Task.METRIC_TENSOR:
            g = metric_from_probabilities(work, layers, mitigated)
            metadata.update(metric=work.metric.value, seconds=time.perf_counter() - start)
            return Evaluation(g[None], metadata=metadata)
        # shot noise of every run row (binomial, or mthree's bound after M3), as standard
        # errors so that a subset's expansion weights them like the values
        row_stds = None
        if units is not None:
            row_stds = [
                np.sqrt(
                    row_variances(row_values(m, work.output, labels), work.output, u, bound=bound)
                )
                for m, u in zip(mitigated, units, strict=True)
            ]
        if selection is not None:  # dropped shift rows -> 0, kept ones C / m
            n_full = plan.rows.shape[0]
            mitigated = [selection.expand(m, n_full) for m in mitigated]
            raw = [selection.expand(r, n_full) for r in raw]
            if row_stds is not None:
                row_stds = [selection.expand(sd, n_full) for sd in row_stds]
        level_values = [row_values(m, work.output, labels) for m in mitigated]
        values, d_inputs, d_weights = combine_rows(plan, level_values)
        stds: list[np.ndarray | None] = [None, None, None]
        if row_stds is not None:
            variances = combine_rows(plan, [sd**2 for sd in row_stds], variances=True)
            stds = [None if v is None else np.sqrt(v) for v in variances]
        raw_values = combine_rows(plan, [row_values(r, work.output, labels) for r in raw])[0]
        metadata["gradient"] = gradient_meta(selection, None) if jacobian else None
        values = _physical(values, work.output)
        metadata.update(output=work.output.value, raw_values=raw_values.tolist())
        metadata["seconds"] = time.perf_counter() - start
        return Evaluation(
            values,
            d_inputs,
            d_weights,
            metadata,
            values_std=stds[0],
            d_inputs_std=stds[1],
            d_weights_std=stds[2],
        )
    finally:
        mode.close()  # the job's own Session or Batch (submitting closes it too)


def _state_build(spec: Any, *, fidelity: bool) -> Any:
    return state_circuit(spec, fidelity=fidelity, noise="slots")


def _metric_build(spec: Any, *, layer: Any) -> Any:
    return metric_circuit(spec, layer)


def _physical(values: np.ndarray, output: Output) -> np.ndarray:
    """Forward values as the quantities they estimate: probability vectors, fidelities."""
    if output is Output.PROBABILITIES:
        return simplex_projection(values)
    if output is Output.FIDELITY:
        return np.clip(values, 0.0, 1.0)
    return values


@dataclass(frozen=True)
class _Measured:
    """What :func:`qldm.backends._runtime_m3.plan_calibration` reads: the measured circuit."""

    isa: IsaCircuit
    use_m3: bool = True


@dataclass
class _M3Steps:
    """The M3 step of every measured qubit set (none when the backend does not mitigate
    readout): a stored calibration, or its calibration circuits riding in the job.

    Attributes:
        steps: ``(qubits, step)`` per measured qubit set, in the order their circuits ride.
    """

    steps: list[tuple[Qubits, M3Step]]

    @classmethod
    def plan(cls, rb: Any, isas: list[IsaCircuit], context: Context) -> _M3Steps:
        """Plan every qubit set's calibration (nothing runs)."""
        steps: dict[Qubits, M3Step] = {}
        for isa in isas if rb.mitigate_readout else []:
            qubits = _qubits(isa)
            if qubits not in steps:
                step = plan_calibration(rb, _Measured(isa), context)
                if step is not None:
                    steps[qubits] = step
        return cls(list(steps.items()))

    def pubs(self) -> list[tuple[Any, None, int]]:
        """The extra ``SamplerV2`` PUBs of the job (what
        :func:`qldm.backends._runtime_submit.submit_or_attach` reads of an M3 step)."""
        return [pub for _, step in self.steps for pub in step.pubs()]

    def finish(
        self, submitted: Submitted, device: Any, *, ibm: bool
    ) -> tuple[dict[Qubits, ReadoutCalibration], list[dict[str, Any]]]:
        """Every qubit set's calibration (from the store, or measured by the extra PUBs the
        job carried) and its metadata. A re-attached job that carried no calibration
        circuits uses the stored ones it was submitted with
        (:meth:`qldm.backends._runtime_m3.M3Step.without_circuits`).

        Raises:
            BackendError: the job carried another number of calibration PUBs than planned
                (a re-attached job), or mthree's faulty-qubit check failed.
        """
        extra, expected = submitted.extra, len(self.pubs())
        if submitted.resumed and expected and len(extra) != expected:
            if extra:
                raise BackendError(
                    f"the re-attached job carried {len(extra)} M3 calibration PUBs, not the "
                    f"{expected} planned now"
                )
            for _, step in self.steps:
                step.without_circuits(device, ibm=ibm)
        calibrations: dict[Qubits, ReadoutCalibration] = {}
        meta: list[dict[str, Any]] = []
        start, job_id = 0, submitted.job_id.split(",")[0]
        for qubits, step in self.steps:
            n = len(step.pubs())
            calibrations[qubits], summary = step.finish(extra[start : start + n], job_id)
            meta.append(summary)
            start += n
        return calibrations, meta


def _qubits(isa: IsaCircuit) -> Qubits:
    return tuple(int(q) for q in isa.layout[: isa.hardware.n_data])


def _distributions(
    result: Any,
    device: Any,
    calibration: ReadoutCalibration | None,
    qubits: tuple[int, ...],
    n_inst: int,
    rows: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(S, 2**n)`` outcome distributions of one PUB, averaged over its instances: M3
    quasi-probabilities (or frequencies without a calibration) and raw frequencies; and
    ``(S,)`` ``u = sum_r gamma_r^2 / (n_r R^2)`` (``gamma_r^2`` mthree's mitigation overhead,
    1 without a calibration) for :func:`qldm.backends._state_rows.row_variances`."""
    n, s = len(qubits), rows.shape[0]
    counts = [result.data.meas.get_counts((r, i)) for r in range(n_inst) for i in range(s)]
    raw = np.stack([_dense(c, n) for c in counts])
    shots = raw.sum(axis=1)
    raw = raw / shots[:, None]
    mitigated, overhead = raw, np.ones_like(shots)
    if calibration is not None:
        try:
            quasis = calibration.mitigator(device).apply_correction(
                counts, list(qubits), return_mitigation_overhead=True
            )
        except Exception as exc:  # mthree raises its own errors and numpy's
            raise BackendError(f"M3 correction failed: {exc}") from exc
        mitigated = np.stack([_dense(dict(q), n) for q in quasis])
        overhead = np.array([float(q.mitigation_overhead) for q in quasis])
    shape = (n_inst, s, 2**n)
    unit = (overhead / shots).reshape(n_inst, s).sum(axis=0) / n_inst**2
    return mitigated.reshape(shape).mean(axis=0), raw.reshape(shape).mean(axis=0), unit


def _dense(distribution: dict[Any, float], n: int) -> np.ndarray:
    """A counts or quasi-probability dict (bitstrings, qubit 0 rightmost) as ``(2**n,)``."""
    out = np.zeros(2**n)
    for key, value in distribution.items():
        out[int(key, 2) if isinstance(key, str) else int(key)] += float(value)
    return out
