"""A run holds one runtime Session (fake devices, local testing mode, real job stores): its
runtime jobs share it, standalone jobs use a Batch, closing the run drops it and refuses the
run's later jobs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from qiskit_ibm_runtime import SamplerV2
from qiskit_ibm_runtime.exceptions import IBMRuntimeError

from qldm.backends._sessions import (
    LOCAL_PREFIX,
    RunSession,
    close_run_session,
    drop_run_sessions,
    open_sessions,
    session_for,
)
from qldm.backends.runtime import fake_device
from qldm.errors import RunClosedError
from qldm.jobs.model import JobRequest, JobResult, RunStatus
from qldm.jobs.runner import JobFailure, execute, run_stored_job
from qldm.jobs.store import JobStore


@pytest.fixture(autouse=True)
def _data_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # the backends' default data folder (M3 files, runtime results) goes to the test's folder
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    yield
    for run_id, _device in open_sessions():  # leave no Session to the next test
        drop_run_sessions(run_id)


def _ry(x: float, *, run_id: str | None = None, seed: int = 1) -> JobRequest:
    """RY(x) on fake:manila, measured 2,000 times: <Z> = cos(x) (RX(0) weights)."""
    return JobRequest.parse(
        {
            "circuit": {"n_qubits": 1, "layers": 1},
            "backend": "fake:manila",
            "inputs": [[x]],
            "weights": [0.0, 0.0],
            "shots": 2000,
            "seed": seed,
            "run_id": run_id,
        }
    )


def _measured_x(session: Any) -> Any:
    from qiskit import QuantumCircuit, transpile

    qc = QuantumCircuit(1)
    qc.x(0)
    qc.measure_all()
    return transpile(qc, fake_device("manila"))


def _run_job(store: JobStore, request: JobRequest) -> JobResult:
    """Submit, claim and run a job the way a worker does (in this process)."""
    job, _ = store.submit(tenant="t", request=request)
    (claimed,) = store.claim(worker="test")
    assert claimed.id == job.id
    result = run_stored_job(store.url, job.id, claimed.attempts)
    assert store.complete(job.id, result, attempt=claimed.attempts)
    return result


def test_jobs_of_a_run_share_its_session_and_standalone_jobs_use_a_batch(
    store: JobStore,
) -> None:
    run = store.create_run(tenant="t", name="train", backend="fake:manila")
    assert run.session_id is None
    first = _run_job(store, _ry(0.0, run_id=run.id, seed=1))
    second = _run_job(store, _ry(np.pi, run_id=run.id, seed=2))
    alone = _run_job(store, _ry(np.pi / 3, seed=3))

    sid = first.metadata["session_id"]
    assert first.metadata["execution_mode"] == second.metadata["execution_mode"] == "session"
    assert isinstance(sid, str) and sid.startswith(LOCAL_PREFIX)  # local mode: no runtime id
    assert second.metadata["session_id"] == sid
    assert store.get_run(tenant="t", run_id=run.id).session_id == sid
    assert open_sessions() == {(run.id, "fake_manila"): sid}  # one Session object here
    assert alone.metadata["execution_mode"] == "job" and alone.metadata["session_id"] is None
    # Inside the session the numbers are the same physics: <Z> = cos(x), M3-mitigated.
    for result, x in ((first, 0.0), (second, np.pi), (alone, np.pi / 3)):
        assert result.values is not None
        assert result.values[0, 0, 0] == pytest.approx(np.cos(x), abs=0.06)
        assert result.metadata["submissions"] == 1
    # M3 calibrations live in the store: measured by the first job, reused by the others.
    assert first.metadata["m3_calibration"]["source"] == "store"
    assert first.metadata["m3_calibration"]["measured"] is True
    assert second.metadata["m3_calibration"]["measured"] is False
    assert second.metadata["m3_calibration"]["created_at"] == pytest.approx(
        first.metadata["m3_calibration"]["created_at"],
        abs=1e-5,  # microseconds in SQL
    )


def test_another_worker_reopens_the_run_session_under_the_same_id(store: JobStore) -> None:
    run = store.create_run(tenant="t", name="train", backend="fake:manila")
    sid = _run_job(store, _ry(0.3, run_id=run.id)).metadata["session_id"]
    drop_run_sessions(run.id)  # as if the next job ran in another worker process
    assert open_sessions() == {}
    again = _run_job(store, _ry(0.3, run_id=run.id, seed=2))
    assert again.metadata["session_id"] == sid
    assert open_sessions() == {(run.id, "fake_manila"): sid}


def test_closing_the_run_drops_its_session_and_refuses_its_later_jobs(store: JobStore) -> None:
    run = store.create_run(tenant="t", name="train", backend="fake:manila")
    _run_job(store, _ry(0.0, run_id=run.id))
    session, sid = session_for(RunSession(run.id), fake_device("manila"))  # the cached one
    queued, _ = store.submit(tenant="t", request=_ry(0.1, run_id=run.id))

    closed = store.close_run(tenant="t", run_id=run.id)
    assert close_run_session(closed.id, closed.session_id) is False  # nothing remote in local
    assert closed.status is RunStatus.CLOSED and closed.session_id == sid  # kept
    assert open_sessions() == {}
    with pytest.raises(IBMRuntimeError, match="session is closed"):  # the object is closed
        SamplerV2(mode=session).run([_measured_x(session)], shots=10)
    # A job queued before the close is refused by its worker; a new one by the store.
    (claimed,) = store.claim(worker="test")
    assert claimed.id == queued.id
    with pytest.raises(JobFailure) as info:
        run_stored_job(store.url, queued.id, claimed.attempts)
    assert info.value.code == "run_closed"
    assert open_sessions() == {}
    with pytest.raises(RunClosedError):
        store.submit(tenant="t", request=_ry(0.2, run_id=run.id))


def test_a_submitted_job_of_a_closed_run_still_reattaches(store: JobStore) -> None:
    """A restart after the run was closed: the job's runtime result is not lost."""
    run = store.create_run(tenant="t", name="train", backend="fake:manila")
    job, _ = store.submit(tenant="t", request=_ry(0.4, run_id=run.id))
    (claimed,) = store.claim(worker="test")
    first = run_stored_job(store.url, job.id, claimed.attempts)  # the server dies before
    runtime_job_id = store.job(job.id).runtime_job_id  # recording it
    assert runtime_job_id == first.metadata["runtime_job_id"]
    store.close_run(tenant="t", run_id=run.id)
    again = run_stored_job(store.url, job.id, claimed.attempts)
    assert again.metadata["resumed"] is True and again.metadata["submissions"] == 0
    assert again.metadata["execution_mode"] == "job"
    np.testing.assert_array_equal(again.values, first.values)


def test_adopt_run_session_is_a_compare_and_set(store: JobStore) -> None:
    run = store.create_run(tenant="t", name="r", backend="fake:manila")
    assert store.adopt_run_session(run.id, "local:first") == "local:first"
    assert store.adopt_run_session(run.id, "local:second") == "local:first"
    assert store.run(run.id).session_id == "local:first"


def test_a_run_without_a_store_keeps_one_session_per_process() -> None:
    """In-process (``execute`` with no store, e.g. QuantumLayer without a server), the run's
    jobs share one Session object and marker; ``aer:<device>`` runs with no runtime at all."""
    a = execute(_ry(0.0, run_id="local-run"))
    b = execute(_ry(0.5, run_id="local-run", seed=4))
    assert a.metadata["execution_mode"] == "session"
    assert a.metadata["session_id"] == b.metadata["session_id"]
    # The primitives really run in that Session object: once it is closed (what the runtime
    # does at its max_time or idle timeout; the library then raises "The session is closed."),
    # the run's next job opens a new Session instead of failing, and says so.
    session, old = session_for(RunSession("local-run"), fake_device("manila"))
    session.close()
    c = execute(_ry(0.7, run_id="local-run"))
    assert c.metadata["session_renewed_from"] == old
    assert c.metadata["session_id"] not in (None, old)
    assert c.values is not None and c.values[0, 0, 0] == pytest.approx(np.cos(0.7), abs=0.06)
    assert drop_run_sessions("local-run") == 1
    aer = execute(JobRequest.parse({**_ry(0.0).model_dump(), "backend": "aer:manila"}))
    assert aer.metadata["execution_mode"] == "direct" and aer.metadata["session_id"] is None


@pytest.mark.skipif(
    not os.environ.get("QLDM_IBM_TOKEN"),
    reason="no IBM Quantum token configured (QLDM_IBM_TOKEN); ibm: runs need a real account",
)
def test_ibm_run_session_is_one_runtime_session(tmp_path: Any) -> None:  # pragma: no cover
    from qldm.backends.base import Context, Workload
    from qldm.backends.runtime import RuntimeBackend

    device = os.environ.get("QLDM_IBM_DEVICE", "ibm_brisbane")
    backend = RuntimeBackend(
        f"ibm:{device}",
        data_dir=tmp_path,
        mitigate_readout=False,
        token=os.environ["QLDM_IBM_TOKEN"],
        channel=os.environ.get("QLDM_IBM_CHANNEL"),
        instance=os.environ.get("QLDM_IBM_INSTANCE"),
    )
    held: list[str] = []

    def adopt(candidate: str) -> str:
        held.append(candidate)
        return held[0]

    run = RunSession("ibm-run", adopt=adopt)
    work = Workload.build(_ry(0.0).workload().spec, [[0.0]], [0.0, 0.0], shots=500)
    first = backend.run(work, Context(run_session=run))
    second = backend.run(work, Context(run_session=RunSession("ibm-run", held[0])))
    sid = first.metadata["session_id"]
    assert not sid.startswith(LOCAL_PREFIX) and second.metadata["session_id"] == sid
    assert close_run_session("ibm-run", sid, service=backend._service) is True


def test_replace_run_session_is_a_compare_and_set(store: JobStore) -> None:
    run = store.create_run(tenant="t", name="r", backend="fake:manila")
    assert store.adopt_run_session(run.id, "s1") == "s1"
    assert store.replace_run_session(run.id, "s1", "s2") == "s2"
    assert store.replace_run_session(run.id, "s1", "s3") == "s2"  # someone replaced it first


def test_job_options_choose_the_execution_mode_and_limits() -> None:
    request = JobRequest.parse(
        {**_ry(0.3).model_dump(mode="json"), "options": {"execution_mode": "batch"}}
    )
    result = execute(request)
    assert result.metadata["execution_mode"] == "batch"
    assert result.metadata["cost"]["executions"] == result.metadata["circuits"] * 2000
    from qldm.errors import InvalidSpecError

    with pytest.raises(InvalidSpecError) as info:
        JobRequest.parse({**_ry(0.3).model_dump(mode="json"), "options": {"execution_mode": "x"}})
    assert info.value.field == "options.execution_mode"
