"""The records the steps of a runtime workload hand each other, and its metadata.

:class:`qldm.backends.runtime.RuntimeBackend` runs a workload in three steps that can be called
and tested one by one: ``prepare`` gives a :class:`Prepared` (transpiled circuit, rows, noise
slots, PUBs; nothing runs), ``submit`` a :class:`Submitted` (one primitive run, or a re-attach
by runtime job id), ``postprocess`` a :class:`Gathered` (rows averaged and M3-mitigated,
combined into values and Jacobians). :func:`step_metadata` describes all three.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qldm.backends._runtime_pubs import gradient_meta
from qldm.backends._sessions import ExecutionMode
from qldm.backends._shift import ShiftPlan
from qldm.backends._spsa import SpsaSelection
from qldm.backends._subset import SubsetSelection
from qldm.backends.base import Workload
from qldm.circuits.transpile import IsaCircuit, cache_info

__all__ = ["Gathered", "Prepared", "Submitted", "run_metadata", "step_metadata"]


@dataclass(frozen=True)
class Prepared:
    """Step 1 of a workload (:meth:`RuntimeBackend.prepare`): what its submission needs.

    Attributes:
        work: the workload.
        isa: the cached ISA circuit (noise as parameter slots).
        plan: the full shift plan; ``n_full``: its ``S`` parameter sets.
        sets: ``(S_run, I + P)`` the parameter sets that run (all, a subset, or SPSA's).
        selection: the subset choice (``gradient_budget``), else ``None``.
        spsa: the SPSA choice (``spsa_directions``), else ``None``.
        shots: shots per parameter set; ``shots_per_instance`` once split over the
            ``n_instances`` random Pauli-insertion instances.
        labels: the ``O`` Pauli labels.
        use_m3: ``SamplerV2`` + M3 (else ``EstimatorV2``).
        pubs: one PUB per noise level.
        noise: the ``noise`` metadata (device floor, injected strengths).
        digest: the fingerprint of the result (cache key and subset/SPSA seed).
    """

    work: Workload
    isa: IsaCircuit
    plan: ShiftPlan
    n_full: int
    sets: np.ndarray
    selection: SubsetSelection | None
    spsa: SpsaSelection | None
    shots: int
    n_instances: int
    shots_per_instance: int
    labels: list[str]
    use_m3: bool
    pubs: list[tuple[Any, ...]]
    noise: dict[str, Any]
    digest: str


@dataclass(frozen=True)
class Submitted:
    """Step 2 (:meth:`RuntimeBackend.submit`): the runtime job and what came back.

    Attributes:
        job_id: the runtime (or primitive) job id.
        result: the primitive's result; ``None`` when ``cached`` holds the rows.
        cached: ``(mitigated, raw, std)`` rows ``(K, S, O)`` from the result cache (``std``
            ``None`` in older files), or ``None``.
        submissions: runtime jobs submitted (0 when re-attached; more than 1 when split).
        resumed: re-attached to an earlier submission.
        resubmitted_reason: why a resume id could not be re-attached, or ``None``.
        seconds: spent submitting and waiting.
        usage_s: the runtime's reported usage (quantum seconds), ``None`` when not reported.
        statuses: the runtime states the job(s) went through while waited on.
        extra: the results of the extra PUBs (M3 calibration circuits) the first job carried.
    """

    job_id: str
    result: Any
    cached: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None
    submissions: int
    resumed: bool = False
    resubmitted_reason: str | None = None
    seconds: float = 0.0
    usage_s: float | None = None
    statuses: list[str] = field(default_factory=list)
    extra: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Gathered:
    """Step 3 (:meth:`RuntimeBackend.postprocess`): rows and what they combine into.

    Attributes:
        mitigated: ``(K, S, O)`` per-level rows, averaged over instances, readout-mitigated.
        raw: ``(K, S, O)`` the same before readout mitigation.
        values: ``(K, B, O)``; ``d_inputs (K, B, O, I)``, ``d_weights (K, B, O, P)`` or
            ``None`` (task ``expectation``).
        raw_values: ``(K, B, O)`` the forward rows of ``raw``.
        std: ``(K, S, O)`` standard errors of ``mitigated`` (shot noise), or ``None`` (a
            cached result from before they were kept).
        values_std: ``(K, B, O)`` the forward rows of ``std`` (the standard errors of
            ``values``), or ``None``.
        d_inputs_std: ``(K, B, O, I)``, ``d_weights_std`` ``(K, B, O, P)``: the standard
            errors of the Jacobians, ``std`` propagated through their combination; ``None``
            without a Jacobian or without ``std``.
    """

    mitigated: np.ndarray
    raw: np.ndarray
    values: np.ndarray
    d_inputs: np.ndarray | None
    d_weights: np.ndarray | None
    raw_values: np.ndarray
    std: np.ndarray | None = None
    values_std: np.ndarray | None = None
    d_inputs_std: np.ndarray | None = None
    d_weights_std: np.ndarray | None = None


def step_metadata(
    prepared: Prepared, submitted: Submitted, gathered: Gathered, mode: ExecutionMode
) -> dict[str, Any]:
    """What the three steps did: primitive, submissions, PUBs and circuits, instances, the
    gradient estimator, shots, the runtime job and session, qubits, noise, raw values."""
    isa = prepared.isa
    metadata: dict[str, Any] = {
        "primitive": "sampler" if prepared.use_m3 else "estimator",
        "submissions": submitted.submissions,
        "pubs": len(prepared.pubs),
        "circuits": len(prepared.pubs) * prepared.n_instances * int(prepared.sets.shape[0]),
        "instances": prepared.n_instances,
        "gradient": gradient_meta(prepared.selection, prepared.spsa),
        "shots": prepared.shots,
        "shots_per_instance": prepared.shots_per_instance,
        "seed": prepared.work.seed,
        "runtime_job_id": submitted.job_id,
        "resumed": submitted.resumed,
        "execution_mode": mode.execution_mode,
        "session_id": mode.session_id,
        "physical_qubits": list(isa.layout[: isa.hardware.n_data]),
        "layout": {"method": isa.layout_method, "expected_fidelity": dict(isa.layout_scores)},
        "calibration": isa.calibration,
        "transpile_cache": cache_info(),
        "noise": prepared.noise,
        "raw_values": gathered.raw_values.tolist(),
    }
    if submitted.resubmitted_reason is not None:
        metadata["resubmitted"] = True
        metadata["resubmitted_reason"] = submitted.resubmitted_reason
    return metadata


def run_metadata(
    submitted: Submitted,
    mode: ExecutionMode,
    *,
    seconds_outside: float,
    calibration_refreshed: bool,
    cost: dict[str, Any],
    m3: dict[str, Any] | None,
) -> dict[str, Any]:
    """The rest of a runtime job's metadata: timings, calibration refresh, estimated cost,
    the runtime's usage and states, execution-mode fallback or renewal, the M3 calibration."""
    metadata: dict[str, Any] = {
        "seconds_in_session": submitted.seconds,
        "seconds_outside": seconds_outside,
        "calibration_refreshed": calibration_refreshed,
        "cost": cost,
        "usage_s": submitted.usage_s,
        "runtime_statuses": submitted.statuses,
    }
    if mode.fallback_reason is not None:
        metadata["execution_fallback"] = mode.fallback_reason
    if mode.renewed_from is not None:
        metadata["session_renewed_from"] = mode.renewed_from
    if m3 is not None:
        metadata["m3_calibration"] = m3
        metadata["m3_calibration_age_s"] = m3["age_s"]
    return metadata
