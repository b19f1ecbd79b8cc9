"""End to end: fair sharing between tenants (issue 15).

A real server (two workers) with ``QLDM_MAX_ACTIVE_JOBS_PER_TENANT=3`` and
``QLDM_MAX_RUNNING_PER_TENANT=1``. Before: a tenant could queue without limit, and two long
jobs of one tenant took both workers from every other tenant.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from qldm.client.service_client import ServiceClient
from qldm.errors import TooManyJobsError
from tests.service.conftest import Databases, Deployment, _deploy
from tests.service.helpers import HTTP, slow_request, tiny_request


@pytest.fixture(scope="module")
def shared(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from _deploy(
        databases,
        "sqlite",
        tmp_path_factory.mktemp("tenants"),
        QLDM_MAX_ACTIVE_JOBS_PER_TENANT="3",
        QLDM_MAX_RUNNING_PER_TENANT="1",
        QLDM_RETRY_AFTER_S="2",
    )


def _status(d: Deployment, tenant: str, job_id: str) -> str:
    r = HTTP.get(f"{d.url}/v1/jobs/{job_id}", headers=d.headers(tenant))
    assert r.status_code == 200, r.text
    return str(r.json()["status"])


def _count(d: Deployment, tenant: str) -> int:
    r = HTTP.get(f"{d.url}/v1/jobs", params={"limit": 1}, headers=d.headers(tenant))
    return int(r.json()["count"])


def test_a_tenant_over_its_limit_gets_429_and_others_are_served_first(shared: Deployment) -> None:
    url = f"{shared.url}/v1/jobs"
    alice = []
    for seed in range(3):
        r = HTTP.post(url, json=slow_request(seed, batch=600), headers=shared.headers("alice"))
        assert r.status_code == 202, r.text
        alice.append(r.json()["id"])
    before = _count(shared, "alice")
    r = HTTP.post(url, json=tiny_request(9), headers=shared.headers("alice"))
    assert r.status_code == 429, r.text
    assert r.headers["Retry-After"] == "2"
    assert r.json()["error"]["code"] == "too_many_jobs"
    assert _count(shared, "alice") == before  # nothing stored
    # the client raises the matching class, with the server's Retry-After
    with pytest.raises(TooManyJobsError) as err:
        ServiceClient(shared.url, api_key=shared.keys["alice"]).submit(tiny_request(10))
    assert err.value.retry_after_s == 2

    # one of alice's jobs runs, the other two wait: bob's job takes the second worker at once
    states = [_status(shared, "alice", j) for j in alice]
    assert states.count("running") == 1 and states.count("queued") == 2, states
    r = HTTP.post(
        url,
        json=tiny_request(11),
        headers={**shared.headers("bob"), "Prefer": "wait=30"},
    )
    assert r.status_code == 200, r.text  # bob's result, while alice's jobs still wait
    assert [_status(shared, "alice", j) for j in alice].count("queued") == 2

    for job in alice:
        HTTP.delete(f"{url}/{job}", headers=shared.headers("alice"))
    deadline = time.monotonic() + 60
    while any(_status(shared, "alice", j) not in ("cancelled", "succeeded") for j in alice):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    r = HTTP.post(url, json=tiny_request(12), headers=shared.headers("alice"))
    assert r.status_code == 202, r.text
