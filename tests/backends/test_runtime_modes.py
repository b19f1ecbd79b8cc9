"""The runtime path for real accounts, on fake devices (local testing mode) and stand-ins.

Where only the IBM cloud behaves a certain way, the stand-in answers as its documented
responses do:

- a refused Session: "Open Plan users cannot run session jobs" (IBM's migration guide, quoted
  in PennyLaneAI/pennylane-qiskit#631); the error text "You are not authorized to run a session
  when using the open plan" (qiskit-community/spank-plugins#133);
- queue states: ``RuntimeJobV2.status()`` answers ``INITIALIZING``, ``QUEUED``, ``RUNNING``,
  ``CANCELLED``, ``DONE`` or ``ERROR`` (qiskit-ibm-runtime's ``JOB_FINAL_STATES`` and
  ``status``); ``cancel()`` cancels a queued or running job;
- usage: ``job.usage()`` is the job's quantum seconds (IBM's "Workload usage" guide:
  ``job.metrics()["usage"]["quantum_seconds"]``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qiskit_ibm_runtime.exceptions import IBMRuntimeError
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from qldm.backends._runtime_cost import MAX_EXECUTIONS
from qldm.backends._sessions import REFUSED_PREFIX, RunSession, drop_run_sessions
from qldm.backends.base import Context, Workload
from qldm.backends.runtime import RuntimeBackend
from qldm.circuits import PQCSpec
from qldm.errors import BackendError, InvalidSpecError, JobCancelled

SPEC = PQCSpec.parse({"n_qubits": 1, "layers": 1})


def _work(x: float = 0.6, *, shots: int = 400, levels: Any = None, spec: PQCSpec = SPEC) -> Any:
    return Workload.build(
        spec, [[x]], np.zeros(spec.n_weights), noise_levels=levels, shots=shots, seed=3
    )


def _backend(tmp_path: Path, **options: Any) -> RuntimeBackend:
    options.setdefault("mitigate_readout", False)
    return RuntimeBackend("fake:manila", data_dir=tmp_path, **options)


@pytest.mark.parametrize("mode", ["job", "batch", "session"])
def test_each_execution_mode_runs_and_says_which(tmp_path: Path, mode: str) -> None:
    ev = _backend(tmp_path, execution_mode=mode).run(_work())
    assert ev.metadata["execution_mode"] == mode
    assert ev.values is not None and ev.values[0, 0, 0] == pytest.approx(math.cos(0.6), abs=0.15)
    assert (ev.metadata["session_id"] is not None) == (mode == "session")


def test_a_job_option_overrides_the_backend_and_a_bad_mode_is_refused(tmp_path: Path) -> None:
    class Options:
        execution_mode = "batch"

    ev = _backend(tmp_path, execution_mode="job").run(_work(), Context(options=Options()))
    assert ev.metadata["execution_mode"] == "batch"
    with pytest.raises(InvalidSpecError) as info:
        _backend(tmp_path, execution_mode="dedicated")
    assert info.value.field == "execution_mode"


class _OpenPlanSession:
    """A Session the runtime refuses, as on the Open plan."""

    opened = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        type(self).opened += 1
        raise IBMRuntimeError(
            "Unable to create session: You are not authorized to run a session when using "
            "the open plan."
        )


def test_a_refused_session_falls_back_to_batch_and_the_run_records_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import qiskit_ibm_runtime

    monkeypatch.setattr(qiskit_ibm_runtime, "Session", _OpenPlanSession)
    held: dict[str, str] = {}

    def adopt(candidate: str) -> str:
        return held.setdefault("sid", candidate)

    backend = _backend(tmp_path)
    first = backend.run(_work(), Context(run_session=RunSession("run-open", adopt=adopt)))
    assert first.metadata["execution_mode"] == "batch"
    assert "open plan" in first.metadata["execution_fallback"]
    assert held["sid"].startswith(REFUSED_PREFIX)
    # The run's next job goes to a batch straight away: no Session is asked for again.
    opened = _OpenPlanSession.opened
    again = backend.run(_work(0.2), Context(run_session=RunSession("run-open", held["sid"])))
    assert again.metadata["execution_mode"] == "batch" and _OpenPlanSession.opened == opened
    assert "open plan" in again.metadata["execution_fallback"]
    drop_run_sessions("run-open")


def test_over_the_execution_limit_is_split_in_one_batch_or_refused(tmp_path: Path) -> None:
    spec = PQCSpec.parse({"n_qubits": 1, "layers": 1, "channel": {"kind": "bit_flip"}})
    work = _work(0.0, shots=800, levels=[0.1, 0.2], spec=spec)
    ids: list[str] = []
    # 2 levels x 8 instances x 1 set x 100 shots = 1,600 executions; a limit of 500 cuts each
    # level's 8 instances into pieces of 5 and 3 and packs them into 4 jobs.
    backend = _backend(tmp_path, instances=8, execution_limit=500, mitigate_readout=True)
    ev = backend.run(work, Context(checkpoint=ids.append))
    assert ev.metadata["submissions"] == 4 and ev.metadata["execution_mode"] == "batch"
    assert ids[-1] == ev.metadata["runtime_job_id"] and ids[-1].count(",") == 3
    assert ev.metadata["cost"]["executions"] == 1600 and ev.metadata["cost"]["submissions"] == 4
    assert ev.values is not None
    # The same instances unsplit (one job): the joined pieces are the same rows, up to shots.
    whole = _backend(tmp_path, instances=8, mitigate_readout=True).run(work)
    assert whole.metadata["submissions"] == 1 and whole.values is not None
    np.testing.assert_allclose(ev.values, whole.values, atol=0.1)
    assert abs(ev.values[1, 0, 0] - ev.values[0, 0, 0]) > 0.15  # each level on its own rows
    with pytest.raises(InvalidSpecError) as info:
        _backend(tmp_path, instances=8, execution_limit=500, mitigate_readout=True).run(
            work, Context(options=type("O", (), {"split_jobs": False})())
        )
    assert info.value.field == "options.split_jobs" and "1,600 executions" in str(info.value)


def test_estimate_counts_executions_and_qpu_seconds_without_submitting(tmp_path: Path) -> None:
    spec = PQCSpec.parse({"n_qubits": 2, "layers": 2, "channel": {"kind": "depolarizing"}})
    work = Workload.build(
        spec,
        [[0.1, 0.2]] * 3,
        np.zeros(spec.n_weights),
        noise_levels=[0.05, 0.1],
        task="jacobian",
        shots=4000,
    )
    backend = _backend(tmp_path, instances=8, mitigate_readout=True)
    cost = backend.estimate(work)
    s = 3 * (1 + 2 * (2 + spec.n_weights))  # B (1 + T) parameter sets
    assert cost.circuits == 2 * 8 * s and cost.shots == 500  # 4,000 shots over 8 instances
    assert cost.executions == cost.circuits * cost.shots
    assert cost.rep_delay_s == pytest.approx(250e-6)
    assert 0 < cost.circuit_seconds < 50e-6
    assert cost.qpu_seconds == pytest.approx(
        cost.executions * (cost.rep_delay_s + cost.circuit_seconds)
    )
    assert cost.limit == MAX_EXECUTIONS and cost.submissions == 1 and cost.payload_bytes > 0
    with pytest.raises(InvalidSpecError) as info:
        _backend(tmp_path, instances=8, max_execution_time=1).run(work)
    assert info.value.field == "options.max_execution_time"


class _ScriptedJob:
    """A runtime job that answers ``status()`` from a script (then stays in its last state),
    and reports ``usage()``; its result is a real local job's."""

    def __init__(self, real: Any, states: list[str], usage: float | None = 1.5) -> None:
        self.real, self.states, self.usage_s = real, list(states), usage
        self.cancelled = False

    def job_id(self) -> str:
        return f"scripted-{self.real.job_id()}"

    def status(self) -> str:
        if self.cancelled:
            return "CANCELLED"
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def cancel(self) -> None:
        self.cancelled = True

    def result(self) -> Any:
        return self.real.result()

    def usage(self) -> float | None:
        return self.usage_s


def _scripted(monkeypatch: pytest.MonkeyPatch, states: list[str]) -> list[_ScriptedJob]:
    import qiskit_ibm_runtime

    made: list[_ScriptedJob] = []
    original = qiskit_ibm_runtime.EstimatorV2.run

    def run(self: Any, *args: Any, **kwargs: Any) -> _ScriptedJob:
        made.append(_ScriptedJob(original(self, *args, **kwargs), states))
        return made[-1]

    monkeypatch.setattr(qiskit_ibm_runtime.EstimatorV2, "run", run)
    return made


def test_the_runtime_state_is_reported_and_usage_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scripted(monkeypatch, ["INITIALIZING", "QUEUED", "QUEUED", "RUNNING", "DONE"])
    seen: list[str] = []
    ev = _backend(tmp_path).run(_work(), Context(on_status=seen.append))
    assert seen == ["initializing", "queued", "running", "done"]
    assert ev.metadata["runtime_statuses"] == seen and ev.metadata["usage_s"] == 1.5


def test_cancelling_cancels_the_runtime_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _scripted(monkeypatch, ["QUEUED"])
    polls: list[int] = []

    def should_cancel() -> bool:
        polls.append(1)
        return len(polls) >= 2

    with pytest.raises(JobCancelled, match="cancelled too"):
        _backend(tmp_path).run(_work(), Context(should_cancel=should_cancel))
    assert len(made) == 1 and made[0].cancelled


def test_waiting_has_a_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _scripted(monkeypatch, ["QUEUED"])
    with pytest.raises(BackendError, match=r"still queued after 0\.2 s"):
        _backend(tmp_path, result_timeout_s=0.2).run(_work())


class _Recalibrating(FakeManilaV2):
    """fake_manila whose calibration changes each time it is refreshed (T1 and T2 halve on
    every qubit, the calibration date moves on a day), as ``IBMBackend.refresh()`` fetches a
    new one: its properties and target are rebuilt from the new calibration."""

    def __init__(self) -> None:
        super().__init__()
        self.refreshes = 0
        self.properties()  # loads the calibration file into _props_dict

    def refresh(self) -> None:  # type: ignore[override]
        self.refreshes += 1
        props = self._props_dict
        assert props is not None
        props["last_update_date"] = f"2030-01-{self.refreshes:02d}T00:00:00+00:00"
        for qubit in props["qubits"]:
            for item in qubit:
                if item["name"] in ("T1", "T2"):
                    item["value"] /= 2
        self._target = None  # rebuilt from the new calibration on next use


def test_a_stale_calibration_is_refreshed_and_everything_follows(tmp_path: Path) -> None:
    spec = PQCSpec.parse({"n_qubits": 1, "layers": 1, "channel": {"kind": "bit_flip"}})
    backend = RuntimeBackend(
        "fake:manila", data_dir=tmp_path, calibration_max_age_min=0.0, instances=4
    )
    backend.backend = _Recalibrating()
    work = _work(0.0, shots=400, levels=[0.1], spec=spec)
    first = backend.run(work)
    second = backend.run(work)
    assert backend.backend.refreshes == 2
    assert first.metadata["calibration_refreshed"] and second.metadata["calibration_refreshed"]
    assert second.metadata["calibration"] != first.metadata["calibration"]  # cache key
    floor1 = first.metadata["noise"]["device_floor"][0]
    floor2 = second.metadata["noise"]["device_floor"][0]
    assert floor2 > floor1  # shorter T1/T2, more relaxation per layer
    assert second.metadata["m3_calibration"]["measured"] is True  # the device recalibrated
    assert second.metadata["m3_calibration"]["device_calibration"] == second.metadata["calibration"]
    fresh = RuntimeBackend("fake:manila", data_dir=tmp_path, instances=4)  # 30 min default
    assert fresh.refresh_calibration() is False
