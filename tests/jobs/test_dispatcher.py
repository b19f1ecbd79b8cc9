"""The dispatcher with the local process pool, running real exact-backend jobs."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from qldm.backends.exact import ExactBackend
from qldm.jobs import db
from qldm.jobs.dispatcher import Dispatcher
from qldm.jobs.executors.local import LocalExecutor
from qldm.jobs.model import Job, JobRequest, JobStatus
from qldm.jobs.runner import chunk_bounds, execute
from qldm.jobs.store import JobStore
from tests.jobs.conftest import ry_request

NOISY_SPEC = {
    "n_qubits": 3,
    "encoding": "angle_ry",
    "ansatz": "ry_rz_brickwork",
    "layers": 2,
    "channel": {"kind": "amplitude_damping", "strength": 0.05},
}


@pytest.fixture(scope="module")
def executor() -> Iterator[LocalExecutor]:
    """Two warm worker processes, shared by the module (spawning one costs seconds)."""
    ex = LocalExecutor(2)
    yield ex
    ex.shutdown()


def _wait(cond: Callable[[], bool], timeout: float = 60.0, step: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(step)


def _wait_terminal(store: JobStore, job: Job, timeout: float = 60.0) -> Job:
    _wait(lambda: store.job(job.id).terminal, timeout)
    return store.job(job.id)


def _noisy_request(seed: int, b: int, **extra: object) -> JobRequest:
    rng = np.random.default_rng(seed)
    return JobRequest.parse(
        {
            "circuit": NOISY_SPEC,
            "inputs": rng.uniform(-math.pi, math.pi, (b, 3)).tolist(),
            "weights": rng.uniform(-math.pi, math.pi, 12).tolist(),
            **extra,
        }
    )


def _long_request(b: int = 400) -> JobRequest:
    """Many one-sample chunks: a job that runs long enough to be interrupted."""
    xs = np.linspace(0.0, 1.0, b).tolist()
    return ry_request(xs, 0.4, options={"chunk_size": 1})


def test_dispatcher_runs_real_jobs_that_match_the_backend(
    sqlite_url: str, executor: LocalExecutor
) -> None:
    store = JobStore(sqlite_url)
    store.migrate()
    xs = [0.0, 0.3, 1.1, -2.0]
    jobs_and_requests = [
        (ry_request(xs, 0.7), "closed form"),
        (ry_request(xs, -0.2, task="jacobian"), "closed form"),
        (_noisy_request(1, 5, task="jacobian", noise_levels=[0.0, 0.1, 0.3]), "direct"),
        (_noisy_request(2, 10, noise_levels=[0.2], options={"chunk_size": 3}), "direct"),
    ]
    dispatcher = Dispatcher(store, executor, poll_interval=0.02)
    assert not dispatcher.alive and not dispatcher.reserve()  # no loop yet: no direct start
    dispatcher.start()
    assert dispatcher.alive
    try:
        submitted = [
            (store.submit(tenant="t", request=req)[0], req, how) for req, how in jobs_and_requests
        ]
        dispatcher.wake()
        for job, req, how in submitted:
            done = _wait_terminal(store, job)
            assert done.status is JobStatus.SUCCEEDED, done
            assert done.attempts == 1 and done.progress == 1.0
            res = store.result(tenant="t", job_id=job.id)
            assert res.values is not None
            if how == "closed form":  # RY(x) then RX(w): <Z> = cos x cos w
                w = req.weights[0]
                want = np.cos(xs) * np.cos(w)
                np.testing.assert_allclose(res.values[0, :, 0], want, atol=1e-12)
                if req.task == "jacobian":
                    assert res.d_inputs is not None and res.d_weights is not None
                    np.testing.assert_allclose(
                        res.d_inputs[0, :, 0, 0], -np.sin(xs) * np.cos(w), atol=1e-12
                    )
                    np.testing.assert_allclose(
                        res.d_weights[0, :, 0, 0], -np.cos(xs) * np.sin(w), atol=1e-12
                    )
            else:  # the backend called directly, in this process, unchunked
                ref = ExactBackend().run(req.workload())
                np.testing.assert_allclose(res.values, ref.values, atol=1e-12)
                if req.task == "jacobian":
                    assert res.d_inputs is not None and ref.d_inputs is not None
                    assert res.d_weights is not None and ref.d_weights is not None
                    np.testing.assert_allclose(res.d_inputs, ref.d_inputs, atol=1e-12)
                    np.testing.assert_allclose(res.d_weights, ref.d_weights, atol=1e-12)
                assert res.metadata.get("chunks", 1) == len(chunk_bounds(req))
    finally:
        dispatcher.stop()
        store.close()
    assert not dispatcher.alive
    assert len(chunk_bounds(jobs_and_requests[3][0])) == 4


@contextlib.contextmanager
def _asleep(url: str, executor: LocalExecutor) -> Iterator[tuple[JobStore, Dispatcher]]:
    """A store and a started dispatcher whose loop is asleep for the next 5 s."""
    store = JobStore(url)
    store.migrate()
    dispatcher = Dispatcher(store, executor, poll_interval=5.0)
    dispatcher.start()
    time.sleep(0.05)
    try:
        yield store, dispatcher
    finally:
        dispatcher.stop()
        store.close()


def test_a_woken_dispatcher_starts_a_job_within_milliseconds(
    sqlite_url: str, executor: LocalExecutor
) -> None:
    """B = 128 exact job: wake() ends the poll sleep, so the poll interval does not matter."""
    with _asleep(sqlite_url, executor) as (store, dispatcher):
        waits = []
        for seed in range(3):
            job, _ = store.submit(tenant="t", request=_noisy_request(seed, 128, task="jacobian"))
            dispatcher.wake()
            done = _wait_terminal(store, job, timeout=30)
            assert done.status is JobStatus.SUCCEEDED
            assert done.queue_seconds is not None
            waits.append(done.queue_seconds)
        print(f"\nqueue wait after wake(), B=128: {[f'{w * 1e3:.1f} ms' for w in waits]}")
        assert min(waits) < 0.5  # far below the 5 s poll interval even on a loaded machine


def test_a_freed_slot_takes_the_next_queued_job_at_once(
    sqlite_url: str, executor: LocalExecutor
) -> None:
    """More queued jobs than slots, a 5 s poll: each finished job's slot is refilled from
    the queue when it frees, not at the next poll."""
    with _asleep(sqlite_url, executor) as (store, dispatcher):
        jobs = [store.submit(tenant="t", request=ry_request([0.1 * i], 0.2))[0] for i in range(6)]
        start = time.monotonic()
        dispatcher.wake()
        done = [_wait_terminal(store, job, timeout=30) for job in jobs]
        took = time.monotonic() - start
    assert all(j.status is JobStatus.SUCCEEDED for j in done)
    assert took < 4.0, f"6 one-sample jobs on 2 slots took {took:.1f} s"


def test_cancel_queued_never_runs_and_running_stops_between_chunks(
    sqlite_url: str, executor: LocalExecutor
) -> None:
    store = JobStore(sqlite_url)
    store.migrate()
    queued, _ = store.submit(tenant="t", request=ry_request([0.1], 0.2))
    assert store.cancel(tenant="t", job_id=queued.id).status is JobStatus.CANCELLED
    long_job, _ = store.submit(tenant="t", request=_long_request())
    dispatcher = Dispatcher(store, executor, poll_interval=0.02)
    dispatcher.start()
    try:
        _wait(lambda: store.job(long_job.id).progress > 0.0)
        store.cancel(tenant="t", job_id=long_job.id)
        done = _wait_terminal(store, long_job)
        assert done.status is JobStatus.CANCELLED and done.progress < 1.0
        assert done.error_code == "cancelled"
        never = store.job(queued.id)
        assert never.status is JobStatus.CANCELLED and never.attempts == 0
        assert never.started_at is None
    finally:
        dispatcher.stop()
        store.close()


def test_a_failing_job_is_recorded_with_its_code(sqlite_url: str, executor: LocalExecutor) -> None:
    store = JobStore(sqlite_url)
    store.migrate()
    good, _ = store.submit(tenant="t", request=ry_request([0.1], 0.2))
    bad, _ = store.submit(tenant="t", request=ry_request([0.1], 0.3))
    with store.engine.begin() as conn:  # a request the worker cannot read
        conn.execute(
            sa.update(db.jobs).where(db.jobs.c.id == bad.id).values(request_arrays=b"not npz")
        )
    ended: list[Job] = []
    dispatcher = Dispatcher(store, executor, poll_interval=0.02, on_finished=ended.append)
    dispatcher.start()
    try:
        failed = _wait_terminal(store, bad)
        assert failed.status is JobStatus.FAILED and failed.error_code == "internal_error"
        assert failed.attempts == 1 and failed.error_message
        assert _wait_terminal(store, good).status is JobStatus.SUCCEEDED
    finally:
        dispatcher.stop()
        store.close()
    # on_finished saw each end once, with the final state and times like the store's
    assert sorted((j.id, j.status) for j in ended) == sorted(
        [(good.id, JobStatus.SUCCEEDED), (bad.id, JobStatus.FAILED)]
    )
    for job in ended:
        assert job.run_seconds is not None and 0 <= job.run_seconds < 60
        assert job.queue_seconds is not None and job.queue_seconds >= 0


def test_start_recovers_jobs_a_dead_server_left_running(
    db_url: str, executor: LocalExecutor
) -> None:
    """A job claimed by a server that died is re-queued on start and runs (PostgreSQL too)."""
    store = JobStore(db_url)
    store.migrate()
    job, _ = store.submit(tenant="t", request=ry_request([0.5, 1.5], 0.25))
    [claimed] = store.claim(worker="dead-server")
    assert claimed.attempts == 1
    # The dead server's last heartbeat was a minute ago. SQLite (one server per file) recovers
    # every running job on start; PostgreSQL (maybe several replicas) only stale ones.
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(db.jobs)
            .where(db.jobs.c.id == job.id)
            .values(heartbeat_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    dispatcher = Dispatcher(store, executor, poll_interval=0.02)
    shared = store.engine.dialect.name == "postgresql"
    assert dispatcher.requeue_older_than == (timedelta(seconds=30) if shared else None)
    dispatcher.start()
    try:
        assert dispatcher.recovered == {job.id: "queued"}
        done = _wait_terminal(store, job)
    finally:
        dispatcher.stop()
    assert done.status is JobStatus.SUCCEEDED and done.attempts == 2
    assert done.worker == dispatcher.worker_id
    res = store.result(tenant="t", job_id=job.id)
    assert res.values is not None
    np.testing.assert_allclose(res.values[0, :, 0], np.cos([0.5, 1.5]) * np.cos(0.25), atol=1e-12)
    store.close()


def test_execute_in_process_gathers_chunks_like_one_call() -> None:
    req = _noisy_request(5, 7, task="jacobian", noise_levels=[0.0, 0.2], options={"chunk_size": 2})
    seen: list[float] = []
    res = execute(req, progress=seen.append)
    ref = ExactBackend().run(req.workload())
    assert seen == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert res.values is not None and res.values.shape == (2, 7, 3)
    np.testing.assert_allclose(res.values, ref.values, atol=1e-12)
    assert res.d_inputs is not None and ref.d_inputs is not None
    assert res.d_weights is not None and ref.d_weights is not None
    np.testing.assert_allclose(res.d_inputs, ref.d_inputs, atol=1e-12)
    np.testing.assert_allclose(res.d_weights, ref.d_weights, atol=1e-12)
    from qldm.errors import JobCancelled

    with pytest.raises(JobCancelled):
        execute(req, should_cancel=lambda: len(seen) > 4, progress=seen.append)


@pytest.mark.postgres
def test_two_replicas_on_one_postgres_run_every_job_exactly_once(
    pg_url: str, executor: LocalExecutor
) -> None:
    """Two dispatchers (two API replicas) share one database: no job runs twice."""
    stores = [JobStore(pg_url), JobStore(pg_url)]
    stores[0].migrate()
    stores[1].migrate()
    dispatchers = [
        Dispatcher(st, executor, worker_id=f"replica-{i}", poll_interval=0.01)
        for i, st in enumerate(stores)
    ]
    for d in dispatchers:
        d.start()
    try:
        jobs = [
            stores[i % 2].submit(tenant="t", request=ry_request([0.05 * i], 0.3))[0]
            for i in range(16)
        ]
        for d in dispatchers:
            d.wake()
        done = [_wait_terminal(stores[0], job) for job in jobs]
    finally:
        for d in dispatchers:
            d.stop()
    assert all(j.status is JobStatus.SUCCEEDED and j.attempts == 1 for j in done)
    assert {j.worker for j in done} <= {"replica-0", "replica-1"}
    for i, job in enumerate(jobs):
        res = stores[1].result(tenant="t", job_id=job.id)
        assert res.values is not None
        np.testing.assert_allclose(res.values[0, 0, 0], math.cos(0.05 * i) * math.cos(0.3))
    for st in stores:
        st.close()


@pytest.mark.slow  # a fresh worker pool imports torch again: ~10 s idle, ~30 s under load
def test_workers_killed_mid_job_retry_once_or_fail_after_max_attempts(
    sqlite_url: str, executor: LocalExecutor
) -> None:
    """SIGKILL the workers while two jobs run: the job allowed one attempt fails with the
    reason, the other is retried on a fresh pool and succeeds exactly once."""
    store = JobStore(sqlite_url)
    store.migrate()
    retried_req = _long_request(300)
    retried, _ = store.submit(tenant="t", request=retried_req)
    once_req = ry_request(
        np.linspace(0, 1, 300).tolist(), 0.1, options={"chunk_size": 1, "max_attempts": 1}
    )
    once, _ = store.submit(tenant="t", request=once_req)
    restarts = executor.restarts
    dispatcher = Dispatcher(store, executor, poll_interval=0.02)
    dispatcher.start()
    try:
        _wait(
            lambda: (
                0.0 < store.job(retried.id).progress < 0.5
                and 0.0 < store.job(once.id).progress < 0.5
            )
        )
        pids = executor.worker_pids()
        assert len(pids) == 2
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        failed = _wait_terminal(store, once)
        done = _wait_terminal(store, retried, timeout=120)
    finally:
        dispatcher.stop()
    assert failed.status is JobStatus.FAILED and failed.error_code == "worker_lost"
    assert failed.attempts == 1 and "WorkerLostError" in (failed.error_message or "")
    assert done.status is JobStatus.SUCCEEDED, done
    assert done.attempts == 2 and executor.restarts == restarts + 1
    with store.engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(db.job_results)).scalar()
    assert n == 1
    res = store.result(tenant="t", job_id=retried.id)
    assert res.values is not None
    xs = np.asarray(retried_req.inputs)[:, 0]
    np.testing.assert_allclose(res.values[0, :, 0], np.cos(xs) * np.cos(0.4), atol=1e-12)
    store.close()


def test_one_dead_worker_costs_only_its_own_job_an_attempt(
    sqlite_url: str, executor: LocalExecutor
) -> None:
    """Each worker is its own pool: SIGKILL one while two jobs run, and only its job is
    retried; the other job runs on undisturbed and succeeds in its first attempt."""
    executor.warm_up()  # workers an earlier test killed are replaced and started first
    store = JobStore(sqlite_url)
    store.migrate()
    a, _ = store.submit(tenant="t", request=_long_request(400))
    b, _ = store.submit(tenant="t", request=_long_request(401))
    dispatcher = Dispatcher(store, executor, poll_interval=0.02)
    dispatcher.start()
    try:
        _wait(lambda: all(0.0 < store.job(j.id).progress < 0.5 for j in (a, b)))
        pids = executor.worker_pids()
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGKILL)
        done = {j.id: _wait_terminal(store, j, timeout=120) for j in (a, b)}
    finally:
        dispatcher.stop()
    assert all(j.status is JobStatus.SUCCEEDED for j in done.values()), done
    assert sorted(j.attempts for j in done.values()) == [1, 2], done
    store.close()


def test_an_in_memory_database_is_refused(executor: LocalExecutor) -> None:
    from qldm.errors import InvalidSpecError

    with pytest.raises(InvalidSpecError) as err:
        Dispatcher(JobStore("sqlite://"), executor)
    assert err.value.field == "database_url"


def test_workers_exit_when_their_server_is_killed(tmp_path: object) -> None:
    """A SIGKILLed parent leaves no orphaned worker processes behind."""
    import subprocess
    import sys

    script = (
        "import os, sys, time\n"
        "from jobs.executors.local import LocalExecutor\n"
        "ex = LocalExecutor(max_workers=2, preload=(), warm=True)\n"
        "print(' '.join(map(str, ex.worker_pids())), flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        alive = pids
        while alive and time.monotonic() < deadline:
            time.sleep(0.2)
            alive = [p for p in pids if _alive(p)]
        assert not alive, f"workers {alive} outlived their parent"
    finally:
        proc.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_workers_take_the_data_folder_from_the_executor_not_the_environment(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runtime job keeps its result file in the data folder the server gave its executor;
    the workers (spawned with this environment) read no QLDM_DATA_DIR."""
    from qldm.backends.runtime import RuntimeConfig

    monkeypatch.setenv("QLDM_DATA_DIR", str(tmp_path / "not-read"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "default"))  # the default folder's base
    data_dir = tmp_path / "server-data"
    store = JobStore(sqlite_url)
    store.migrate()
    ex = LocalExecutor(1, warm=False, runtime_config=RuntimeConfig(data_dir=data_dir))
    dispatcher = Dispatcher(store, ex, poll_interval=0.02)
    dispatcher.start()
    try:
        request = JobRequest.parse(
            {
                "circuit": {"n_qubits": 1, "layers": 1},
                "backend": "fake:manila",
                "inputs": [[0.3]],
                "weights": [0.0, 0.0],
                "shots": 2000,
                "seed": 1,
            }
        )
        job, _ = store.submit(tenant="t", request=request)
        dispatcher.wake()
        done = _wait_terminal(store, job, timeout=300)
        assert done.status is JobStatus.SUCCEEDED, done
        values = store.result(tenant="t", job_id=job.id).values
        assert values is not None and abs(values[0, 0, 0] - math.cos(0.3)) < 0.15
    finally:
        dispatcher.stop()
        ex.shutdown()
        store.close()
    assert [p.name for p in (data_dir / "runtime_results").iterdir()] == [
        f"{done.runtime_job_id}.npz"
    ]
    assert not (tmp_path / "not-read").exists() and not (tmp_path / "default").exists()
