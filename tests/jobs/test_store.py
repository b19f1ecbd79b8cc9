"""The job store on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa

from qldm.errors import (
    IdempotencyConflictError,
    InvalidSpecError,
    JobNotFinishedError,
    JobNotFoundError,
    RunClosedError,
    RunNotFoundError,
)
from qldm.jobs import db
from qldm.jobs.model import JobRequest, JobResult, JobStatus, RunStatus
from qldm.jobs.store import JobStore
from tests.jobs.conftest import PG_ADMIN_URL, ry_request


def _result(b: int = 2) -> JobResult:
    return JobResult(
        values=np.arange(b, dtype=np.float64).reshape(1, b, 1),
        d_inputs=np.ones((1, b, 1, 1)),
        d_weights=np.full((1, b, 1, 1), 0.5),
        metadata={"circuits": np.int64(3), "engine": "test"},
    )


# ---------------------------------------------------------------------- schema


def test_migrations_run_twice_are_a_no_op(db_url: str) -> None:
    st = JobStore(db_url)
    assert st.revision() is None
    st.migrate()
    job, _ = st.submit(tenant="t", request=ry_request([0.1], 0.2))
    st.migrate()
    assert st.revision() == "0004"
    assert st.get(tenant="t", job_id=job.id) == job  # data survives the second run
    names = set(sa.inspect(st.engine).get_table_names())
    assert {
        "qldm_jobs",
        "qldm_job_results",
        "qldm_runs",
        "qldm_api_keys",
        "qldm_m3_calibrations",
        "qldm_run_losses",
    } <= names
    assert db.VERSION_TABLE in names
    st.close()


def test_concurrent_migrations_from_several_processes_agree(db_url: str) -> None:
    """Several replicas starting at once: one migrates, the others find it done."""
    stores = [JobStore(db_url) for _ in range(4)]
    errors: list[BaseException] = []

    def go(st: JobStore) -> None:
        try:
            st.migrate()
        except BaseException as exc:  # pragma: no cover - the failure we look for
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(s.revision() == "0004" for s in stores)
    for s in stores:
        s.close()


def test_sqlite_uses_wal_and_a_busy_timeout(sqlite_url: str) -> None:
    st = JobStore(sqlite_url)
    with st.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.SQLITE_BUSY_TIMEOUT_MS
    st.close()


def test_checkpoint_folds_the_wal_into_the_database(sqlite_url: str) -> None:
    st = JobStore(sqlite_url)
    st.migrate()
    for i in range(20):
        st.submit(tenant="t", request=ry_request([0.1 * i] * 64, 0.2))
    path = Path(st.engine.url.database or "")
    with st.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == (
            db.SQLITE_AUTOCHECKPOINT_PAGES
        )
        # the jobs are in the WAL only (far below the auto-checkpoint), until checkpoint()
        before = path.stat().st_size
        st.checkpoint()
        assert path.stat().st_size > before + 20 * 64 * 8
    st.close()
    JobStore("sqlite://").checkpoint()  # in memory: nothing to do, no error


def test_request_arrays_are_a_compressed_npz_blob(store: JobStore) -> None:
    req = ry_request([0.1 * i for i in range(300)], 0.7)
    job, _ = store.submit(tenant="t", request=req)
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(db.jobs.c.request_json, db.jobs.c.request_arrays).where(
                db.jobs.c.id == job.id
            )
        ).one()
    assert bytes(row.request_arrays[:2]) == b"PK"  # a zip archive (np.savez_compressed)
    assert "inputs" not in row.request_json and "weights" not in row.request_json
    back = store.request(job.id)
    assert back == req
    assert back.fingerprint() == req.fingerprint()


# ---------------------------------------------------------------------- submit / get / list


def test_submit_get_and_list_with_pagination_and_filters(store: JobStore) -> None:
    run = store.create_run(tenant="a", name="r1", backend="exact")
    ids = []
    for i in range(7):
        req = ry_request([0.1 * i], 0.3, run_id=run.id if i % 2 == 0 else None)
        job, created = store.submit(tenant="a", request=req)
        assert created and job.status is JobStatus.QUEUED and job.attempts == 0
        assert job.run_id == req.run_id and job.task == "expectation" and job.backend == "exact"
        assert job.created_at.tzinfo is not None
        ids.append(job.id)
    store.submit(tenant="b", request=ry_request([0.0], 0.0))

    page, total = store.list(tenant="a", limit=3)
    assert total == 7 and [j.id for j in page] == ids[::-1][:3]  # newest first
    page2, _ = store.list(tenant="a", limit=3, offset=3)
    page3, _ = store.list(tenant="a", limit=3, offset=6)
    assert [j.id for j in page + page2 + page3] == ids[::-1]

    in_run, n_run = store.list(tenant="a", run_id=run.id)
    assert n_run == 4 and {j.id for j in in_run} == {ids[i] for i in (0, 2, 4, 6)}

    claimed = store.claim(worker="w", limit=3)  # shared fairly: a, then b, then a again
    assert {j.id for j in claimed if j.tenant == "a"} == set(ids[:2])  # the oldest first
    assert [j.tenant for j in claimed].count("b") == 1
    running, n_running = store.list(tenant="a", status="running")
    assert n_running == 2 and all(j.status is JobStatus.RUNNING for j in running)
    _, n_queued = store.list(tenant="a", status=JobStatus.QUEUED)
    assert n_queued == 5
    assert store.get(tenant="a", job_id=ids[3]).id == ids[3]

    with pytest.raises(InvalidSpecError) as err:
        store.list(tenant="a", status="sleeping")
    assert err.value.field == "status"
    with pytest.raises(InvalidSpecError) as err:
        store.list(tenant="a", limit=0)
    assert err.value.field == "limit"


def test_tenant_isolation(store: JobStore) -> None:
    job, _ = store.submit(tenant="alice", request=ry_request([0.1], 0.2))
    with pytest.raises(JobNotFoundError) as err:
        store.get(tenant="mallory", job_id=job.id)
    assert err.value.code == "job_not_found"
    with pytest.raises(JobNotFoundError):
        store.cancel(tenant="mallory", job_id=job.id)
    with pytest.raises(JobNotFoundError):
        store.result(tenant="mallory", job_id=job.id)
    assert store.list(tenant="mallory") == ([], 0)
    assert store.get(tenant="alice", job_id=job.id).status is JobStatus.QUEUED
    with pytest.raises(JobNotFoundError):
        store.get(tenant="alice", job_id="0" * 32)


def test_idempotency_same_key_same_job_and_conflict(store: JobStore) -> None:
    req = ry_request([0.1, 0.2], 0.3)
    first, created = store.submit(tenant="a", request=req, idempotency_key="step-1")
    again, created_again = store.submit(
        tenant="a", request=JobRequest.parse(req.model_dump()), idempotency_key="step-1"
    )
    assert created and not created_again and again.id == first.id
    # The same key in another tenant is another job.
    other, created_other = store.submit(tenant="b", request=req, idempotency_key="step-1")
    assert created_other and other.id != first.id
    with pytest.raises(IdempotencyConflictError) as err:
        store.submit(tenant="a", request=ry_request([0.1, 0.2], 0.31), idempotency_key="step-1")
    assert err.value.code == "idempotency_conflict" and err.value.field == "idempotency_key"
    assert store.list(tenant="a")[1] == 1


def test_idempotent_submits_racing_create_one_job(store: JobStore) -> None:
    req = ry_request([0.5], 0.5)
    out: list[str] = []
    barrier = threading.Barrier(6)

    def go() -> None:
        barrier.wait()
        job, _ = store.submit(tenant="a", request=req, idempotency_key="race")
        out.append(job.id)

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 6 and len(set(out)) == 1
    assert store.list(tenant="a")[1] == 1


@pytest.mark.postgres
def test_postgresql_submits_and_completes_are_not_serialized(pg_url: str) -> None:
    """Each submit and complete has its own pooled connection and transaction: one that waits
    for a lock another replica holds does not hold up this replica's other clients."""
    store, replica = JobStore(pg_url), JobStore(pg_url)
    store.migrate()
    pool = ThreadPoolExecutor(4)
    try:
        a, _ = store.submit(tenant="t", request=ry_request([0.1], 0.2), start_as="w")
        b, _ = store.submit(tenant="t", request=ry_request([0.2], 0.2), start_as="w")
        assert a.status is b.status is JobStatus.RUNNING
        with replica.engine.connect() as held:
            # the replica's uncommitted insert of a job with the key "held", and a row lock
            # on job a: a submit with that key and a complete of a wait for them
            held.begin()
            row = dict(held.execute(sa.select(db.jobs).where(db.jobs.c.id == a.id)).one()._mapping)
            held.execute(
                sa.insert(db.jobs).values({**row, "id": "f" * 32, "idempotency_key": "held"})
            )
            held.execute(sa.select(db.jobs.c.id).where(db.jobs.c.id == a.id).with_for_update())
            keyed = pool.submit(
                store.submit, tenant="t", request=ry_request([0.3], 0.2), idempotency_key="held"
            )
            completing = pool.submit(store.complete, a.id, _result(1))
            time.sleep(0.5)
            assert not keyed.done() and not completing.done()  # both wait for the replica
            other, created = pool.submit(
                store.submit, tenant="t", request=ry_request([0.4], 0.2)
            ).result(timeout=10)
            assert created and other.status is JobStatus.QUEUED
            assert pool.submit(store.complete, b.id, _result(1)).result(timeout=10)
            assert not keyed.done() and not completing.done()
            held.rollback()
        job, created = keyed.result(timeout=10)  # the replica's insert was rolled back
        assert created and job.idempotency_key == "held"
        assert completing.result(timeout=10)
        assert store.get(tenant="t", job_id=a.id).status is JobStatus.SUCCEEDED
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        replica.close()
        store.close()


@pytest.mark.postgres
def test_postgresql_connections_lost_under_the_store_are_replaced(pg_url: str) -> None:
    store = JobStore(pg_url)
    store.migrate()
    try:
        first, _ = store.submit(tenant="t", request=ry_request([0.1], 0.2))
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:  # cut the store off
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (pg_url.rsplit("/", 1)[1],),
            )
        again, created = store.submit(tenant="t", request=ry_request([0.5], 0.2))
        assert created and again.status is JobStatus.QUEUED
        assert {j.id for j in store.list(tenant="t")[0]} == {first.id, again.id}
    finally:
        store.close()


# ---------------------------------------------------------------------- claim / complete


def test_claim_hands_each_job_to_exactly_one_of_many_concurrent_claimers(store: JobStore) -> None:
    n_jobs, n_threads = 60, 6
    ids = {
        store.submit(tenant="t", request=ry_request([0.01 * i], 0.1))[0].id for i in range(n_jobs)
    }
    claimed: list[list[str]] = [[] for _ in range(n_threads)]
    wrong: list[object] = []
    barrier = threading.Barrier(n_threads)

    def claimer(k: int) -> None:
        barrier.wait()
        while True:
            jobs = store.claim(worker=f"w{k}", limit=3)
            if not jobs:
                return
            for job in jobs:
                if job.status is not JobStatus.RUNNING or job.worker != f"w{k}":
                    wrong.append(job)
                claimed[k].append(job.id)
            time.sleep(0.002)  # a worker works between claims: let the others in

    threads = [threading.Thread(target=claimer, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [j for part in claimed for j in part]
    assert wrong == []
    assert len(everything) == n_jobs  # no job twice
    assert set(everything) == ids  # every job once
    assert sum(1 for part in claimed if part) >= 2  # the claimers really competed
    jobs, _ = store.list(tenant="t", limit=100)
    assert all(j.attempts == 1 and j.status is JobStatus.RUNNING for j in jobs)
    assert all(j.started_at is not None and j.started_at >= j.created_at for j in jobs)


def test_complete_stores_result_once_and_only_while_running(store: JobStore) -> None:
    job, _ = store.submit(tenant="a", request=ry_request([0.1, 0.2], 0.3))
    with pytest.raises(JobNotFinishedError):
        store.result(tenant="a", job_id=job.id)
    assert not store.complete(job.id, _result())  # queued: not applied
    [claimed] = store.claim(worker="w")
    assert not store.complete(job.id, _result(), attempt=claimed.attempts + 1)  # stale attempt
    assert store.complete(job.id, _result(), attempt=claimed.attempts)
    assert not store.complete(job.id, _result(5))  # never twice
    done = store.get(tenant="a", job_id=job.id)
    assert done.status is JobStatus.SUCCEEDED and done.progress == 1.0
    assert done.finished_at is not None and done.started_at is not None
    assert done.queue_seconds is not None and done.queue_seconds >= 0
    assert done.run_seconds is not None and done.run_seconds >= 0
    res = store.result(tenant="a", job_id=job.id)
    np.testing.assert_array_equal(res.values, _result().values)
    np.testing.assert_array_equal(res.d_weights, _result().d_weights)
    assert res.metadata == {"circuits": 3, "engine": "test"}
    counts = store.counts_by_status()
    assert counts["succeeded"] == 1 and set(counts) == {s.value for s in JobStatus}


def test_a_result_keeps_its_standard_errors_and_one_without_reads_none(store: JobStore) -> None:
    """``values_std``, ``d_inputs_std`` and ``d_weights_std`` go into the stored npz blob and
    come back; a result stored without them (as before they existed) reads them as ``None``.
    Chunks are joined along the sample axis, the standard errors with them."""
    from qldm.jobs.runner import gather

    def with_stds(b: int, scale: float) -> JobResult:
        base = _result(b)
        return JobResult(
            values=base.values,
            d_inputs=base.d_inputs,
            d_weights=base.d_weights,
            values_std=np.full((1, b, 1), scale),
            d_inputs_std=np.full((1, b, 1, 1), 2 * scale),
            d_weights_std=np.full((1, b, 1, 1), 3 * scale),
        )

    joined = gather([with_stds(2, 0.25), with_stds(1, 0.5)], n_levels=1)
    assert joined.d_weights_std is not None
    np.testing.assert_array_equal(joined.d_weights_std[0, :, 0, 0], [0.75, 0.75, 1.5])
    assert gather([with_stds(2, 0.25), _result(1)], n_levels=1).d_inputs_std is None
    for stored in (joined, _result(3)):
        job, _ = store.submit(tenant="a", request=ry_request([0.1, 0.2, 0.3], 0.3))
        [claimed] = store.claim(worker="w")
        assert store.complete(job.id, stored, attempt=claimed.attempts)
        back = store.result(tenant="a", job_id=job.id)
        for name in ("values_std", "d_inputs_std", "d_weights_std"):
            want = getattr(stored, name)
            if want is None:
                assert getattr(back, name) is None
            else:
                np.testing.assert_array_equal(getattr(back, name), want)


def test_complete_does_not_overwrite_a_cancelled_or_failed_job(store: JobStore) -> None:
    a, _ = store.submit(tenant="t", request=ry_request([0.1], 0.3))
    b, _ = store.submit(tenant="t", request=ry_request([0.2], 0.3))
    store.claim(worker="w", limit=2)
    store.cancel(tenant="t", job_id=a.id)
    assert store.mark_cancelled(a.id)
    assert not store.complete(a.id, _result(1))
    assert store.get(tenant="t", job_id=a.id).status is JobStatus.CANCELLED
    assert store.fail(b.id, "backend_error", "boom")
    assert not store.complete(b.id, _result(1))
    failed = store.get(tenant="t", job_id=b.id)
    assert failed.status is JobStatus.FAILED and failed.error_code == "backend_error"
    assert failed.error_message == "boom"
    with pytest.raises(JobNotFinishedError, match="boom"):
        store.result(tenant="t", job_id=b.id)
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.job_results)).scalar() == 0


def test_complete_is_one_transaction(store: JobStore) -> None:
    """A result that cannot be written leaves the job running (no half-finished job)."""
    job, _ = store.submit(tenant="t", request=ry_request([0.1], 0.3))
    store.claim(worker="w")

    class Unserializable:
        pass

    bad = JobResult(values=np.zeros((1, 1, 1)), counts=[{"0": Unserializable()}])  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        store.complete(job.id, bad)
    assert store.get(tenant="t", job_id=job.id).status is JobStatus.RUNNING

    # A failure inside the transaction, after the status update, rolls the status back.
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE qldm_job_results RENAME TO qldm_job_results_away")
    with pytest.raises(sa.exc.DBAPIError):
        store.complete(job.id, _result(1))
    assert store.get(tenant="t", job_id=job.id).status is JobStatus.RUNNING
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE qldm_job_results_away RENAME TO qldm_job_results")
    assert store.complete(job.id, _result(1))
    values = store.result(tenant="t", job_id=job.id).values
    assert values is not None and values.shape == (1, 1, 1)


# ---------------------------------------------------------------------- cancel


def test_cancel_in_each_state(store: JobStore) -> None:
    queued, _ = store.submit(tenant="t", request=ry_request([0.1], 0.3))
    running, _ = store.submit(tenant="t", request=ry_request([0.2], 0.3))
    done, _ = store.submit(tenant="t", request=ry_request([0.3], 0.3))
    # claim the two older ones ... in order: queued is oldest, so cancel it first
    c = store.cancel(tenant="t", job_id=queued.id)
    assert c.status is JobStatus.CANCELLED and c.finished_at is not None
    assert c.error_code == "cancelled"
    claimed = store.claim(worker="w", limit=5)
    assert {j.id for j in claimed} == {running.id, done.id}  # a cancelled job never starts
    assert store.complete(done.id, _result(1))

    r = store.cancel(tenant="t", job_id=running.id)
    assert r.status is JobStatus.RUNNING and r.cancel_requested
    assert store.is_cancel_requested(running.id)
    assert store.mark_cancelled(running.id)
    assert store.get(tenant="t", job_id=running.id).status is JobStatus.CANCELLED

    d = store.cancel(tenant="t", job_id=done.id)
    assert d.status is JobStatus.SUCCEEDED and not d.cancel_requested
    assert store.cancel(tenant="t", job_id=queued.id).status is JobStatus.CANCELLED
    assert store.claim(worker="w") == []


# ---------------------------------------------------------------------- recovery


def test_requeue_running_retries_then_fails_after_max_attempts(store: JobStore) -> None:
    job, _ = store.submit(tenant="t", request=ry_request([0.1], 0.3))
    for attempt in (1, 2):
        [c] = store.claim(worker="old")
        assert c.attempts == attempt
        store.set_runtime_job_id(job.id, "rt-123")
        out = store.requeue_running()
        assert out == {job.id: JobStatus.QUEUED}
        j = store.get(tenant="t", job_id=job.id)
        assert j.status is JobStatus.QUEUED and j.runtime_job_id == "rt-123"  # re-attaches
    [c] = store.claim(worker="old")
    assert c.attempts == 3
    out = store.requeue_running(reason="node died")
    assert out == {job.id: JobStatus.FAILED}
    failed = store.get(tenant="t", job_id=job.id)
    assert failed.status is JobStatus.FAILED and failed.error_code == "worker_lost"
    message = failed.error_message or ""
    assert "node died" in message and "3 attempts" in message


def test_requeue_respects_per_job_max_attempts_heartbeats_and_cancels(store: JobStore) -> None:
    one, _ = store.submit(tenant="t", request=ry_request([0.1], 0.3, options={"max_attempts": 1}))
    fresh, _ = store.submit(tenant="t", request=ry_request([0.2], 0.3))
    cancelled, _ = store.submit(tenant="t", request=ry_request([0.3], 0.3))
    store.claim(worker="w", limit=3)
    store.cancel(tenant="t", job_id=cancelled.id)
    assert store.requeue_running(older_than=timedelta(hours=1)) == {}  # heartbeats are fresh
    time.sleep(0.05)
    store.heartbeat([fresh.id])
    out = store.requeue_running(older_than=timedelta(milliseconds=40))
    assert out == {one.id: JobStatus.FAILED, cancelled.id: JobStatus.CANCELLED}
    assert store.get(tenant="t", job_id=fresh.id).status is JobStatus.RUNNING
    assert store.release(fresh.id, reason="lost", attempt=7) is None  # stale attempt
    assert store.release(fresh.id, reason="lost", attempt=1) is JobStatus.QUEUED


def test_progress_and_runtime_ids(store: JobStore) -> None:
    job, _ = store.submit(tenant="t", request=ry_request([0.1], 0.3))
    store.set_progress(job.id, 0.5)  # not running: ignored
    assert store.get(tenant="t", job_id=job.id).progress == 0.0
    store.claim(worker="w")
    store.set_progress(job.id, 0.5)
    store.set_progress(job.id, 7.0)
    assert store.get(tenant="t", job_id=job.id).progress == 1.0
    store.set_runtime_job_id(job.id, "d1abc")
    assert store.job(job.id).runtime_job_id == "d1abc"
    assert not store.is_cancel_requested(job.id)


# ---------------------------------------------------------------------- runs and keys


def test_runs(store: JobStore) -> None:
    run = store.create_run(tenant="a", name="train-1", backend="fake:fake_fez")
    assert run.status is RunStatus.OPEN and run.session_id is None
    store.set_run_session_id(run.id, "sess-1")
    assert store.get_run(tenant="a", run_id=run.id).session_id == "sess-1"
    with pytest.raises(RunNotFoundError):
        store.get_run(tenant="b", run_id=run.id)
    with pytest.raises(RunNotFoundError):
        store.submit(tenant="b", request=ry_request([0.1], 0.2, run_id=run.id))
    store.create_run(tenant="a", name="train-2", backend="exact")
    runs, total = store.list_runs(tenant="a", limit=1)
    assert total == 2 and runs[0].name == "train-2"
    closed = store.close_run(tenant="a", run_id=run.id)
    assert closed.status is RunStatus.CLOSED and closed.closed_at is not None
    assert store.close_run(tenant="a", run_id=run.id).closed_at == closed.closed_at
    with pytest.raises(RunClosedError):
        store.submit(tenant="a", request=ry_request([0.1], 0.2, run_id=run.id))


def test_api_keys_are_stored_hashed(store: JobStore) -> None:
    assert not store.has_api_keys()
    key = store.create_api_key(tenant="alice")
    assert key.startswith("qldm_") and len(key) > 40
    assert store.has_api_keys()
    assert store.authenticate(key) == "alice"
    assert store.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert store.authenticate("nope") is None and store.authenticate("") is None
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(db.api_keys)).one()
    assert key not in (stored.key_hash, stored.prefix) and key.startswith(stored.prefix)
    [info] = store.list_api_keys(tenant="alice")
    assert store.revoke_api_key(info.id)
    assert store.authenticate(key) is None and not store.has_api_keys()


def test_store_rejects_bad_arguments(store: JobStore) -> None:
    with pytest.raises(InvalidSpecError) as err:
        store.submit(tenant="", request=ry_request([0.1], 0.2))
    assert err.value.field == "tenant"
    with pytest.raises(InvalidSpecError):
        JobStore("sqlite://", max_attempts=0)
