"""What the store keeps of the runtime path (issue 14): a run's execution mode, the runtime's
live state and reported usage of a job (summed on its run), the runtime job an M3 calibration
came from, the server's calibration refresh age, and one Alembic head matching the tables.

IBM's ``job.usage()`` cannot run here: a stand-in answers as the runtime documents it
(``RuntimeJobV2.usage()``: "the job's usage in seconds", qiskit-ibm-runtime's API reference),
and local jobs report 0."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qldm.backends._sessions import drop_run_sessions, open_sessions
from qldm.errors import InvalidSpecError
from qldm.jobs import db
from qldm.jobs.model import JobRequest, JobResult
from qldm.jobs.runner import _backend, run_stored_job
from qldm.jobs.store import JobStore


@pytest.fixture(autouse=True)
def _data_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    yield
    for run_id, _device in open_sessions():
        drop_run_sessions(run_id)


def _ry(x: float, *, run_id: str | None = None, seed: int = 1, **extra: Any) -> JobRequest:
    return JobRequest.parse(
        {
            "circuit": {"n_qubits": 1, "layers": 1},
            "backend": "fake:manila",
            "inputs": [[x]],
            "weights": [0.0, 0.0],
            "shots": 1000,
            "seed": seed,
            "run_id": run_id,
            **extra,
        }
    )


def _run_job(store: JobStore, request: JobRequest) -> tuple[str, JobResult]:
    job, _ = store.submit(tenant="t", request=request)
    (claimed,) = store.claim(worker="test")
    result = run_stored_job(store.url, job.id, claimed.attempts)
    assert store.complete(job.id, result, attempt=claimed.attempts)
    return job.id, result


def test_one_alembic_head_and_the_migrated_tables_match_the_table_objects(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS_DIR))
    heads = ScriptDirectory.from_config(cfg).get_heads()
    assert heads == ["0004"], heads
    st = JobStore(db_url)
    st.migrate()
    assert st.revision() == "0004"
    with st.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": db.VERSION_TABLE})
        diff = compare_metadata(context, db.metadata)
    st.close()
    assert diff == [], diff


def test_a_runs_execution_mode_reaches_its_jobs(store: JobStore) -> None:
    run = store.create_run(
        tenant="t", name="open-plan", backend="fake:manila", execution_mode="batch"
    )
    assert run.execution_mode == "batch"
    assert store.get_run(tenant="t", run_id=run.id).execution_mode == "batch"
    _, result = _run_job(store, _ry(0.3, run_id=run.id))
    assert result.metadata["execution_mode"] == "batch" and result.metadata["session_id"] is None
    assert store.get_run(tenant="t", run_id=run.id).session_id is None  # no Session opened
    # the job's own option still wins over the run's
    _, own = _run_job(store, _ry(0.3, run_id=run.id, seed=2, options={"execution_mode": "job"}))
    assert own.metadata["execution_mode"] == "job"
    default = store.create_run(tenant="t", name="default", backend="fake:manila")
    assert default.execution_mode is None
    with pytest.raises(InvalidSpecError) as info:
        store.create_run(tenant="t", name="bad", backend="fake:manila", execution_mode="dedicated")
    assert info.value.field == "execution_mode"


def test_the_runtime_state_is_live_and_usage_is_summed_on_the_run(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import qldm.backends._runtime_submit as submit

    seen: dict[int, int] = {}
    real_status = submit.status_name

    def queued_first(job: Any) -> str:  # stand-in: the runtime's queue before it runs
        n = seen[id(job)] = seen.get(id(job), 0) + 1
        return "queued" if n == 1 else real_status(job)

    monkeypatch.setattr(submit, "status_name", queued_first)
    monkeypatch.setattr(submit, "_usage", lambda jobs: 1.25 * len(jobs))  # documented usage
    live: list[tuple[str, str | None]] = []
    original = JobStore.set_runtime_state

    def spy(self: JobStore, job_id: str, state: str) -> None:
        original(self, job_id, state)
        live.append((state, store.job(job_id).runtime_state))  # what GET /v1/jobs/{id} shows

    monkeypatch.setattr(JobStore, "set_runtime_state", spy)
    run = store.create_run(tenant="t", name="usage", backend="fake:manila")
    first, _ = _run_job(store, _ry(0.1, run_id=run.id))
    second, result = _run_job(store, _ry(0.2, run_id=run.id, seed=3))
    assert result.metadata["usage_s"] == 1.25
    assert live[0] == ("queued", "queued") and live[-1] == ("done", "done")
    job = store.job(second)
    assert job.runtime_state == "done" and job.runtime_job_id is not None
    assert job.usage_s == store.job(first).usage_s == 1.25
    assert store.get_run(tenant="t", run_id=run.id).usage_s == pytest.approx(2.5)
    store.set_runtime_state(second, "running")  # a finished job is left alone
    assert store.job(second).runtime_state == "done"
    with pytest.raises(InvalidSpecError):
        store.add_usage(second, float("nan"))


def test_local_jobs_report_zero_usage(store: JobStore) -> None:
    """Local testing mode's ``LocalRuntimeJob.usage()`` answers 0: kept as such."""
    run = store.create_run(tenant="t", name="local", backend="fake:manila")
    job_id, result = _run_job(store, _ry(0.1, run_id=run.id))
    assert result.metadata["usage_s"] == 0.0
    assert store.job(job_id).usage_s == 0.0
    assert store.get_run(tenant="t", run_id=run.id).usage_s == 0.0


def test_the_calibration_refresh_age_is_a_server_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qldm.service.settings import Settings

    monkeypatch.setenv("QLDM_CALIBRATION_MAX_AGE_MIN", "5")
    config = Settings(data_dir=tmp_path).runtime_config()
    assert config.calibration_max_age_min == 5.0
    assert config.options_for("fake:lima")["calibration_max_age_min"] == 5.0
    assert config.options_for("exact") == {}
    backend: Any = _backend("fake:lima", config)  # what a worker builds
    assert backend.calibration_max_age_s == 300.0
    monkeypatch.setenv("QLDM_CALIBRATION_MAX_AGE_MIN", "0")
    with pytest.raises(ValueError):
        Settings(data_dir=tmp_path)


@pytest.mark.skipif(not os.environ.get("QLDM_IBM_TOKEN"), reason="no IBM Quantum token")
def test_ibm_usage_is_reported(tmp_path: Path) -> None:  # pragma: no cover
    from qldm.backends.base import Workload
    from qldm.backends.runtime import RuntimeBackend
    from qldm.circuits import PQCSpec

    backend = RuntimeBackend(
        os.environ.get("QLDM_IBM_DEVICE", "ibm:ibm_brisbane"),
        token=os.environ["QLDM_IBM_TOKEN"],
        data_dir=tmp_path,
    )
    spec = PQCSpec.parse({"n_qubits": 1, "layers": 1})
    ev = backend.run(Workload.build(spec, [[0.1]], np.zeros(2), shots=100))
    assert ev.metadata["usage_s"] is not None and ev.metadata["usage_s"] > 0
