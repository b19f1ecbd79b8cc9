"""Runs' reported losses, job counts per run, and result retention, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from qldm.errors import InvalidSpecError, ResultExpiredError, RunNotFoundError
from qldm.jobs.model import JobResult
from qldm.jobs.store import MAX_LOSS_POINTS, JobStore
from qldm.jobs.store import default_database_url as sqlite_in
from tests.jobs.conftest import ry_request


def _finish(store: JobStore, n: int, *, tenant: str = "t", run_id: str | None = None) -> list[str]:
    """``n`` succeeded jobs, oldest first, each with a result of ``B = 64`` Jacobians."""
    ids = []
    for i in range(n):
        job, _ = store.submit(tenant=tenant, request=ry_request([0.1 * i], 0.2, run_id=run_id))
        [claimed] = store.claim(worker="w")
        result = JobResult(
            values=np.full((1, 64, 6), float(i)),
            d_inputs=np.zeros((1, 64, 6, 6)),
            d_weights=np.zeros((1, 64, 6, 48)),
        )
        assert store.complete(claimed.id, result)
        ids.append(job.id)
    return ids


def test_losses_are_recorded_by_step_replaced_on_repeat_and_paged(store: JobStore) -> None:
    run = store.create_run(tenant="alice", name="train", backend="exact")
    assert store.add_run_losses(tenant="alice", run_id=run.id, points=[(0, 2.5), (1, 2.0)]) == 2
    # a resumed training reports step 1 again: the new loss replaces the old one
    store.add_run_losses(tenant="alice", run_id=run.id, points=[(1, 1.75), (2, 1.5), (2, 1.25)])
    points, total = store.run_losses(tenant="alice", run_id=run.id)
    assert points == [(0, 2.5), (1, 1.75), (2, 1.25)] and total == 3
    later, total = store.run_losses(tenant="alice", run_id=run.id, after=0, limit=1)
    assert later == [(1, 1.75)] and total == 3
    # a closed run still takes its client's last losses
    store.close_run(tenant="alice", run_id=run.id)
    store.add_run_losses(tenant="alice", run_id=run.id, points=[(3, 1.0)])
    assert store.run_losses(tenant="alice", run_id=run.id)[1] == 4


def test_losses_of_another_tenants_run_are_not_found(store: JobStore) -> None:
    run = store.create_run(tenant="alice", name="train", backend="exact")
    store.add_run_losses(tenant="alice", run_id=run.id, points=[(0, 1.0)])
    with pytest.raises(RunNotFoundError) as read:
        store.run_losses(tenant="bob", run_id=run.id)
    with pytest.raises(RunNotFoundError) as write:
        store.add_run_losses(tenant="bob", run_id=run.id, points=[(0, 9.0)])
    assert read.value.field == write.value.field == "run_id"
    assert store.run_losses(tenant="alice", run_id=run.id)[0] == [(0, 1.0)]


@pytest.mark.parametrize(
    "points",
    [[], [(0, math.nan)], [(0, math.inf)], [(-1, 1.0)], [(i, 1.0) for i in range(1001)]],
    ids=["empty", "nan", "inf", "negative-step", "too-many"],
)
def test_bad_loss_points_name_the_field_and_store_nothing(
    store: JobStore, points: list[tuple[int, float]]
) -> None:
    run = store.create_run(tenant="alice", name="train", backend="exact")
    with pytest.raises(InvalidSpecError) as err:
        store.add_run_losses(tenant="alice", run_id=run.id, points=points)
    assert err.value.field == "points"
    assert store.run_losses(tenant="alice", run_id=run.id) == ([], 0)
    assert MAX_LOSS_POINTS == 1000


def test_job_counts_per_run_by_status_for_its_tenant_only(store: JobStore) -> None:
    run = store.create_run(tenant="alice", name="a", backend="exact")
    other = store.create_run(tenant="alice", name="b", backend="exact")
    _finish(store, 2, tenant="alice", run_id=run.id)
    queued, _ = store.submit(tenant="alice", request=ry_request([0.3], 0.1, run_id=run.id))
    store.submit(tenant="alice", request=ry_request([0.4], 0.1, run_id=run.id))
    store.cancel(tenant="alice", job_id=queued.id)
    counts = store.run_job_counts(tenant="alice", run_ids=[run.id, other.id])
    assert counts == {run.id: {"succeeded": 2, "cancelled": 1, "queued": 1}, other.id: {}}
    assert store.run_job_counts(tenant="bob", run_ids=[run.id]) == {run.id: {}}


def test_prune_keeps_the_newest_results_and_the_jobs(store: JobStore) -> None:
    ids = _finish(store, 5)
    report = store.prune_results(keep=2)
    assert (report.results_deleted, report.results_kept) == (3, 2)
    for job_id in ids[:3]:
        with pytest.raises(ResultExpiredError) as err:
            store.result(tenant="t", job_id=job_id)
        assert err.value.code == "result_expired" and err.value.field == "job_id"
        assert store.get(tenant="t", job_id=job_id).status.value == "succeeded"  # job stays
    kept = [store.result(tenant="t", job_id=j).values[0, 0, 0] for j in ids[3:]]
    assert kept == [3.0, 4.0]
    assert store.prune_results(keep=2).results_deleted == 0  # nothing more to do


def test_prune_by_age(store: JobStore) -> None:
    ids = _finish(store, 3)
    assert store.prune_results(older_than=timedelta(hours=1)).results_deleted == 0
    later = store.get(tenant="t", job_id=ids[-1]).finished_at + timedelta(hours=2)
    report = store.prune_results(older_than=timedelta(hours=1), at=later)
    assert (report.results_deleted, report.results_kept) == (3, 0)
    with pytest.raises(InvalidSpecError) as err:
        store.prune_results(keep=-1)
    assert err.value.field == "keep"
    with pytest.raises(InvalidSpecError) as err:
        store.prune_results(older_than=timedelta(seconds=-1))
    assert err.value.field == "older_than"


def test_vacuum_gives_pruned_space_back_to_the_sqlite_file(tmp_path: Path) -> None:
    store = JobStore(sqlite_in(tmp_path))
    store.migrate()
    try:
        _finish(store, 40)  # 40 results of ~170 kB
        store.checkpoint()
        path = tmp_path / "qldm.sqlite3"
        before = path.stat().st_size
        assert before > 40 * 150_000
        store.prune_results(keep=4)
        store.vacuum()
        after = path.stat().st_size
        assert after < before / 5, (before, after)
        assert (tmp_path / "qldm.sqlite3-wal").stat().st_size == 0  # the log truncated too
    finally:
        store.close()
