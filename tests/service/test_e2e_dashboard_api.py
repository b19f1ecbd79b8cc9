"""End to end: what the dashboard reads, on a real server (auth on, two tenants): runs' losses
and job counts, tenant scoping, validation, result retention (410), and the pages themselves."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from qldm.client.service_client import ServiceClient
from qldm.errors import ResultExpiredError, RunNotFoundError
from qldm.service.server import create_key
from tests.service.conftest import Server
from tests.service.helpers import HTTP, tiny_request


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    root = tmp_path_factory.mktemp("dash-server")
    srv = Server(f"sqlite:///{root / 'qldm.sqlite3'}", root, QLDM_AUTH="on", QLDM_MAX_RESULTS="2")
    keys = {t: create_key(t, settings=srv.settings()) for t in ("alice", "bob")}
    srv.start()
    try:
        yield srv, keys
    finally:
        srv.stop()


def test_losses_belong_to_the_runs_tenant(server: tuple[Server, dict[str, str]]) -> None:
    srv, keys = server
    alice = {"X-API-Key": keys["alice"]}
    bob = {"X-API-Key": keys["bob"]}
    run = HTTP.post(f"{srv.url}/v1/runs", json={"name": "r"}, headers=alice).json()
    url = f"{srv.url}/v1/runs/{run['id']}/losses"
    points = [{"step": 0, "loss": 2.0}, {"step": 1, "loss": 1.5}]
    sent = HTTP.post(url, json={"points": points}, headers=alice)
    assert sent.status_code == 200 and sent.json() == {"data": [], "count": 2}
    got = HTTP.get(url, params={"after": 0}, headers=alice)
    assert got.json() == {"data": [{"step": 1, "loss": 1.5}], "count": 2}

    for method, body in (("GET", None), ("POST", {"points": [{"step": 5, "loss": 9.0}]})):
        answer = HTTP.request(method, url, json=body, headers=bob)
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"] == {
            "code": "run_not_found",
            "message": f"no run {run['id']!r}",
            "field": "run_id",
        }
    assert HTTP.get(url).status_code == 401
    assert HTTP.get(url, headers=alice).json()["count"] == 2  # bob's write stored nothing

    with ServiceClient(srv.url, api_key=keys["bob"]) as client, pytest.raises(RunNotFoundError):
        client.run_losses(run["id"])
    with ServiceClient(srv.url, api_key=keys["alice"]) as client:
        assert client.report_losses(run["id"], [(1, 1.25), (2, 1.0)]) == 3
        assert client.run_losses(run["id"]) == [(0, 2.0), (1, 1.25), (2, 1.0)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"points": []}, "points"),
        ({"points": [{"step": "1", "loss": 1.0}]}, "points.0.step"),
        ({"points": [{"step": -1, "loss": 1.0}]}, "points.0.step"),
        ({"points": [{"step": 1, "loss": 1.0, "extra": 1}]}, "points.0.extra"),
        ({"points": [{"step": i, "loss": 1.0} for i in range(1001)]}, "points"),
    ],
    ids=["empty", "string-step", "negative-step", "unknown-field", "too-many"],
)
def test_bad_loss_reports_are_422_naming_the_field(
    server: tuple[Server, dict[str, str]], body: dict[str, object], field: str
) -> None:
    srv, keys = server
    headers = {"X-API-Key": keys["alice"]}
    run = HTTP.post(f"{srv.url}/v1/runs", json={"name": "r"}, headers=headers).json()
    answer = HTTP.post(f"{srv.url}/v1/runs/{run['id']}/losses", json=body, headers=headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field


def test_nan_loss_is_refused(server: tuple[Server, dict[str, str]]) -> None:
    srv, keys = server
    headers = {"X-API-Key": keys["alice"], "Content-Type": "application/json"}
    run = HTTP.post(f"{srv.url}/v1/runs", json={"name": "r"}, headers=headers).json()
    answer = HTTP.post(
        f"{srv.url}/v1/runs/{run['id']}/losses",
        content=b'{"points": [{"step": 0, "loss": NaN}]}',
        headers=headers,
    )
    assert answer.status_code == 422, answer.text


def test_runs_count_their_jobs_and_old_results_expire(
    server: tuple[Server, dict[str, str]],
) -> None:
    srv, keys = server
    with ServiceClient(srv.url, api_key=keys["alice"]) as client:
        run = client.create_run(name="counted")
        ids = []
        for i in range(4):
            job_id, _ = client.run({**tiny_request(i), "run_id": run["id"]}, timeout=60)
            ids.append(job_id)
        assert client.get_run(run["id"])["job_counts"] == {"succeeded": 4}
        listed = {r["id"]: r for r in client.list_runs()["data"]}
        assert listed[run["id"]]["job_counts"] == {"succeeded": 4}
        # QLDM_MAX_RESULTS=2: the server prunes every 5 s; the oldest results go, jobs stay
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            answer = HTTP.get(
                f"{srv.url}/v1/jobs/{ids[0]}/result", headers={"X-API-Key": keys["alice"]}
            )
            if answer.status_code == 410:
                break
            time.sleep(0.5)
        assert answer.status_code == 410, answer.text
        assert answer.json()["error"]["code"] == "result_expired"
        with pytest.raises(ResultExpiredError):
            client.result(ids[1])
        assert client.get(ids[0])["status"] == "succeeded"
        assert client.result(ids[3]).values is not None  # the newest are kept


def test_the_dashboard_and_the_docs_are_served_without_a_key(
    server: tuple[Server, dict[str, str]],
) -> None:
    """The pages hold no data (the script asks the API with the key), so they need none."""
    srv, _ = server
    for path in ("/ui", "/ui/runs/abc", "/ui/jobs/abc"):
        page = HTTP.get(srv.url + path)
        assert page.status_code == 200 and "/ui/static/ui.js" in page.text
    for asset in ("/ui/static/ui.js", "/ui/static/ui.css"):
        assert HTTP.get(srv.url + asset).status_code == 200
    for path in ("/docs", "/redoc"):
        page = HTTP.get(srv.url + path)
        assert page.status_code == 200
        assert "cdn" not in page.text.lower() and "https://" not in page.text
    assert HTTP.get(f"{srv.url}/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    assert HTTP.get(f"{srv.url}/static-offline-docs/redoc.standalone.js").status_code == 200
    schema = HTTP.get(f"{srv.url}/openapi.json").json()
    assert not [p for p in schema["paths"] if p.startswith("/ui")]
    assert "/v1/runs/{run_id}/losses" in schema["paths"]
