"""Fair sharing between tenants (issue 15): the claim order and the per-tenant cap, on the
pure rule and on real SQLite and PostgreSQL stores."""

from __future__ import annotations

import pytest

from qldm.jobs._fair import fair_shares
from qldm.jobs.store import JobStore
from tests.jobs.conftest import ry_request


def test_free_slots_go_to_the_tenant_with_the_fewest_running_jobs() -> None:
    waiting = [("a", 1, 10), ("b", 2, 1)]
    assert fair_shares(waiting, {}, slots=2) == {"a": 1, "b": 1}
    assert fair_shares(waiting, {"a": 3}, slots=1) == {"b": 1}
    # b has one job only: the rest go to a
    assert fair_shares(waiting, {}, slots=4) == {"a": 3, "b": 1}
    # ties go to the tenant whose oldest job is older
    assert fair_shares([("a", 5, 1), ("b", 2, 1)], {}, slots=1) == {"b": 1}


def test_the_per_tenant_cap_holds_slots_back() -> None:
    waiting = [("a", 1, 10), ("b", 2, 10)]
    assert fair_shares(waiting, {"a": 1}, slots=3, max_per_tenant=1) == {"b": 1}
    assert fair_shares(waiting, {"a": 1, "b": 1}, slots=3, max_per_tenant=1) == {}
    assert fair_shares(waiting, {}, slots=0) == {}


def _queue(store: JobStore, tenant: str, n: int) -> list[str]:
    return [store.submit(tenant=tenant, request=ry_request([0.1 * i], 0.2))[0].id for i in range(n)]


def test_claim_interleaves_tenants_not_the_oldest_first(store: JobStore) -> None:
    """Before: claim took the oldest queued jobs, so a tenant that queued 5 jobs first took
    every free slot from a tenant that queued one job a moment later."""
    a = _queue(store, "alice", 5)
    b = _queue(store, "bob", 1)
    claimed = store.claim(worker="w", limit=2)
    assert {j.id for j in claimed} == {a[0], b[0]}
    # bob has nothing queued any more: alice's next jobs follow, oldest first
    assert [j.id for j in store.claim(worker="w", limit=2)] == a[1:3]


def test_claim_respects_the_running_cap_of_each_tenant(store: JobStore) -> None:
    a = _queue(store, "alice", 3)
    first = store.claim(worker="w", limit=3, max_per_tenant=1)
    assert [j.id for j in first] == [a[0]]
    assert store.claim(worker="w", limit=3, max_per_tenant=1) == []
    b = _queue(store, "bob", 2)
    assert [j.id for j in store.claim(worker="w", limit=3, max_per_tenant=1)] == [b[0]]
    store.cancel(tenant="alice", job_id=a[0])
    store.mark_cancelled(a[0])
    assert [j.id for j in store.claim(worker="w", limit=3, max_per_tenant=1)] == [a[1]]


def test_active_jobs_counts_queued_and_running_of_one_tenant(store: JobStore) -> None:
    a = _queue(store, "alice", 3)
    _queue(store, "bob", 2)
    store.claim(worker="w", limit=1)
    assert store.active_jobs("alice") == 3
    store.cancel(tenant="alice", job_id=a[2])
    assert store.active_jobs("alice") == 2
    assert store.active_jobs("carol") == 0


@pytest.mark.parametrize("limit", [1, 4])
def test_claim_with_one_tenant_is_oldest_first(store: JobStore, limit: int) -> None:
    a = _queue(store, "alice", 6)
    assert [j.id for j in store.claim(worker="w", limit=limit)] == a[:limit]
