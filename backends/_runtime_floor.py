"""The measured noise floor of a runtime job: learned in the job's own Session or Batch.

With ``floor="measured"`` a runtime job does not trust the calibration's estimate of the
device's per-layer noise (:func:`qldm.mitigation.noise.device_floor`); it runs the learning
experiment of :mod:`qldm.mitigation.measured_floor` (the layer at one and two layers, zero
weights, Z and X eigenstates prepared on the job's own physical qubits) first, as one
``EstimatorV2`` job in the job's execution mode, so on ``ibm:`` it waits in the same Session or
Batch as the step it serves and sees the same device. Then the step's own jobs follow, injecting
only what the learned floor leaves. Two ways to obtain it:

- ``exact`` (``floor_shots`` ``None`` on ``fake:``/``aer:``, the default there): the experiment
  on an Aer density-matrix simulation of the device's own noise model, the floor local testing
  mode really delivers, with no shots;
- ``in_job`` (``floor_shots`` set; always on ``ibm:``, default :data:`DEFAULT_FLOOR_SHOTS`): the
  runtime runs it with ``precision = 1 / sqrt(floor_shots)``; on ``fake:`` this is local testing
  mode, the same code path as on hardware.

A learned floor is kept per device, calibration date and ISA key (and how it was obtained) in
this process and under ``<data_dir>/floors/``, with the learning job's id and when it ran: the
next step of the same circuit, or a restarted server resuming a job, does not learn it again
until the device recalibrates. :func:`learning_cost` prices the experiment for ``qldm
estimate``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from qldm.backends._runtime_cost import _circuit_seconds, _rep_delay
from qldm.backends._runtime_submit import (
    SessionGone,
    Waited,
    in_mode,
    run_estimator,
    submit_options,
    wait,
)
from qldm.backends._sessions import ExecutionMode, session_gone
from qldm.backends.base import Context
from qldm.circuits import PQCSpec
from qldm.circuits.transpile import IsaCircuit
from qldm.errors import BackendError, InvalidSpecError
from qldm.mitigation.measured_floor import cached, experiment, floor_key, remember

__all__ = [
    "DEFAULT_FLOOR_SHOTS",
    "FloorStore",
    "known_floor",
    "learn_floor",
    "learning_cost",
    "record_floor",
]

DEFAULT_FLOOR_SHOTS = 10_000
"""Shots per learning circuit on ``ibm:``: a per-layer strength to about +-0.002 (the prepared
states stay near eigenstates, so each expectation value's shot noise is well under
``1 / sqrt(shots)``)."""


def _tag(shots: int | None, method: str = "measured") -> str:
    if method == "noise_learner":
        return "noise_learner"
    return "exact" if shots is None else f"in_job@{int(shots)}"


class FloorStore:
    """Learned floors under ``<data_dir>/floors/``, one JSON file per key.

    Args:
        root: the folder (created on first write).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: tuple[Any, ...]) -> Path:
        digest = hashlib.sha256(json.dumps([str(k) for k in key]).encode()).hexdigest()
        return self.root / f"{digest[:32]}.json"

    def load(self, key: tuple[Any, ...]) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The floor and its record kept under ``key`` (``None``: none, or unreadable)."""
        try:
            data = json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return None
        if data.get("key") != [str(k) for k in key]:
            return None
        return np.asarray(data["floor"], dtype=np.float64), dict(data.get("learned") or {})

    def store(self, key: tuple[Any, ...], floor: np.ndarray, learned: dict[str, Any]) -> None:
        """Keep ``floor`` (written whole, then renamed: a reader never sees half a file)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        tmp = path.with_suffix(f".{time.monotonic_ns()}.tmp")
        record = {"key": [str(k) for k in key], "floor": floor.tolist(), "learned": learned}
        tmp.write_text(json.dumps(record))
        tmp.replace(path)


def known_floor(
    spec: PQCSpec,
    isa: IsaCircuit,
    device: Any,
    shots: int | None,
    store: FloorStore,
    *,
    method: str = "measured",
) -> tuple[np.ndarray, dict[str, Any]] | None:
    """A floor learned before for this device, calibration and ISA key (``store``, then this
    process), with its record; ``None``: it has to be learned."""
    key = (*floor_key(spec, isa, device), _tag(shots, method))
    kept = store.load(key)
    if kept is not None:
        remember(key, kept[0])
        return kept[0], {**kept[1], "reused": True}
    found = cached(key)
    if found is not None:
        return found, {"method": _tag(shots, method).split("@")[0], "reused": True}
    return None


def learn_floor(
    rb: Any,
    spec: PQCSpec,
    isa: IsaCircuit,
    *,
    shots: int | None,
    mode: ExecutionMode | None = None,
    context: Context | None = None,
    seed: int | None = None,
    method: str = "measured",
) -> tuple[np.ndarray, dict[str, Any]]:
    """The device's per-layer floor of ``spec.channel.kind`` on ``isa``'s qubits, learned now
    unless :func:`known_floor` has it.

    Args:
        rb: the :class:`qldm.backends.runtime.RuntimeBackend` (device, data dir, options).
        spec: the job's circuit.
        isa: its ISA circuit.
        shots: shots per learning circuit (``None``: exact, on the device's noise model;
            ``fake:``/``aer:`` only).
        mode: the job's execution mode (the experiment runs in it; needed with ``shots``).
        context: the job's context: its options, cancel requests, status reports.
        seed: the simulator seed in local testing mode.
        method: ``measured`` (the experiment of :mod:`qldm.mitigation.measured_floor`) or
            ``noise_learner`` (IBM's ``NoiseLearnerV3`` on the job's layers of two-qubit gates,
            :mod:`qldm.mitigation.learned_floor`, in the job's mode; ``shots`` unused).

    Returns:
        ``(floor (n,), record)``: the record says ``method`` (``exact`` or ``in_job``),
        ``shots``, ``circuits``, and for an in-job experiment its ``job_id``, ``usage_s``,
        ``execution_mode`` and ``session_id``; ``reused`` when it was not learned now.

    Raises:
        JobCancelled: cancelled while the experiment waited.
        BackendError: the experiment failed or timed out.
    """
    store = FloorStore(rb.data_dir / "floors")
    known = known_floor(spec, isa, rb.backend, shots, store, method=method)
    if known is not None:
        return known
    if method == "noise_learner":
        floor, learned = _noise_learner(rb, spec, isa, mode, context, seed)
    else:
        floor, learned = _measured(rb, spec, isa, shots, mode, context, seed)
    key = (*floor_key(spec, isa, rb.backend), _tag(shots, method))
    remember(key, floor)
    store.store(key, floor, learned)
    return floor, learned


def _measured(
    rb: Any,
    spec: PQCSpec,
    isa: IsaCircuit,
    shots: int | None,
    mode: ExecutionMode | None,
    context: Context | None,
    seed: int | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The experiment of :mod:`qldm.mitigation.measured_floor`: exact on the device's noise
    model (``shots`` ``None``), or one estimator job in the job's execution mode."""
    exp = experiment(spec, isa, rb.backend)
    learned: dict[str, Any] = {
        "method": "exact" if shots is None else "in_job",
        "shots": shots,
        "circuits": exp.circuits,
        "learned_at": time.time(),
    }
    if shots is None:
        floor = exp.run(_exact_estimator(rb.backend))
    else:
        if mode is None:
            raise ValueError("an in-job floor needs the job's execution mode")
        ctx = context or Context()
        options = replace(submit_options(None, ctx, rb), seed=seed)
        waited = run_estimator(
            mode,
            rb.backend,
            exp.pubs,
            options,
            precision=1.0 / math.sqrt(shots),
            make_primitive=rb._primitive,
            should_cancel=ctx.should_cancel,
            on_status=ctx.on_status,
        )
        floor = exp.floor([r.data.evs for r in waited.results[0]])
        learned.update(
            job_id=waited.job_ids[0],
            usage_s=waited.usage_s,
            execution_mode=mode.execution_mode,
            session_id=mode.session_id,
        )
    return floor, learned


def _noise_learner(
    rb: Any,
    spec: PQCSpec,
    isa: IsaCircuit,
    mode: ExecutionMode | None,
    context: Context | None,
    seed: int | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """IBM's noise learner in the job's execution mode, waited for as the step's jobs are
    (cancel requests, status, ``result_timeout_s``)."""
    from qldm.mitigation.learned_floor import Learning, submit_learning

    if mode is None:
        raise ValueError("the noise learner runs in the job's execution mode")
    ctx = context or Context()
    options = submit_options(None, ctx, rb)
    submitted: list[Learning] = []

    def go(runtime_mode: Any) -> Waited:
        try:
            settings = rb.noise_learner
            if settings.seed_simulator is None and seed is not None and rb.kind != "ibm":
                settings = replace(settings, seed_simulator=int(seed) % (2**31))
            submitted.append(
                submit_learning(spec, isa, rb.backend, mode=runtime_mode, settings=settings)
            )
        except ValueError as exc:  # amplitude damping: the learner cannot see that floor
            raise InvalidSpecError(str(exc), field="options.floor") from exc
        except Exception as exc:
            if session_gone(exc):
                raise SessionGone(str(exc)) from exc
            raise BackendError(f"noise learner on {rb.backend.name} failed: {exc}") from exc
        return wait(
            [submitted[-1].job], options, should_cancel=ctx.should_cancel, on_status=ctx.on_status
        )

    waited = in_mode(mode, rb.backend, go)
    floor, learned = submitted[-1].floor(waited.results[0])
    learned.update(
        usage_s=waited.usage_s,
        execution_mode=mode.execution_mode,
        session_id=mode.session_id,
        learned_at=time.time(),
    )
    return floor, learned


def _exact_estimator(device: Any) -> Any:
    """An Aer ``EstimatorV2`` on a density-matrix simulation of ``device``'s noise model."""
    import warnings

    from qiskit_aer import AerSimulator
    from qiskit_aer.primitives import EstimatorV2 as AerEstimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim = AerSimulator.from_backend(device)
    sim.set_options(method="density_matrix")
    return AerEstimator.from_backend(sim)


def learning_cost(spec: PQCSpec, isa: IsaCircuit, device: Any, shots: int) -> dict[str, Any]:
    """What the in-job experiment would cost (nothing runs): ``circuits`` (measured circuits:
    each binding is read in one basis), ``shots``, ``executions`` and a lower bound of
    ``qpu_seconds`` (the job's circuit's duration per shot plus the repetition delay, which
    dominates, as :func:`qldm.backends._runtime_cost.estimate` counts them)."""
    exp = experiment(spec, isa, device)
    executions = exp.circuits * int(shots)
    per_shot = _rep_delay(device) + _circuit_seconds(isa, device)
    return {
        "circuits": exp.circuits,
        "shots": int(shots),
        "executions": executions,
        "qpu_seconds": executions * per_shot,
    }


def record_floor(
    noise_meta: dict[str, Any], spec: PQCSpec, found: tuple[np.ndarray, dict[str, Any]] | None
) -> None:
    """Say in a job's ``noise`` metadata which floor it subtracted: ``floor_method``
    (``calibration`` or ``measured``) and the measured floor's record (``floor_learning``)."""
    if spec.channel.kind == "none":
        return
    noise_meta["floor_method"] = "calibration" if found is None else "measured"
    if found is not None:
        noise_meta["floor_learning"] = found[1]
