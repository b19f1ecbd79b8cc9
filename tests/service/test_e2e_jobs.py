"""End to end against a real server: many concurrent clients, idempotency, cancel in every
state, both transports, long-polls, runs, backends, health and metrics."""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from qldm.client.service_client import NPZ, ServiceClient
from qldm.client.service_client import unpack as client_unpack
from qldm.errors import JobCancelled, JobNotFinishedError, RunClosedError
from tests.service.conftest import Deployment
from tests.service.helpers import HTTP, TINY, reference, slow_request, tiny_request

N_JOBS = 200
N_CLIENTS = 8


def run_many(deployment: Deployment, *, n_jobs: int = N_JOBS, n_clients: int = N_CLIENTS) -> None:
    """``n_jobs`` jobs from ``n_clients`` threads, each with its own client (a quarter of them
    submit-and-wait in one exchange, the others submit everything, then long-poll); every
    result is checked against the in-process backend."""
    requests = [
        tiny_request(1000 + i, task="jacobian" if i % 4 == 0 else "expectation")
        for i in range(n_jobs)
    ]
    refs = [reference(r) for r in requests]  # in this thread: torch's forward AD is not
    # thread-safe, so the reference is never computed in the client threads

    def worker(c: int) -> list[tuple[int, str]]:
        mine = list(range(c, n_jobs, n_clients))
        with ServiceClient(
            deployment.url, api_key=deployment.keys["alice"], binary=c % 2 == 0
        ) as client:
            if c % 4 == 1:  # one exchange per job (Prefer: wait), one job at a time
                runs = [(i, *client.run(requests[i], timeout=120)) for i in mine]
            else:  # every job submitted first, then each result long-polled
                ids = [(i, client.submit(requests[i])["id"]) for i in mine]
                runs = [(i, job_id, client.wait(job_id, timeout=120)) for i, job_id in ids]
            for i, _, result in runs:
                ref = refs[i]
                np.testing.assert_allclose(result.values, ref.values, atol=1e-10)
                if requests[i]["task"] == "jacobian":
                    np.testing.assert_allclose(result.d_inputs, ref.d_inputs, atol=1e-10)
                    np.testing.assert_allclose(result.d_weights, ref.d_weights, atol=1e-10)
        return [(i, job_id) for i, job_id, _ in runs]

    with ThreadPoolExecutor(N_CLIENTS) as pool:
        done = [pair for part in pool.map(worker, range(n_clients)) for pair in part]
    assert len({job_id for _, job_id in done}) == n_jobs
    with ServiceClient(deployment.url, api_key=deployment.keys["alice"]) as client:
        for _, job_id in done[:: max(1, n_jobs // 20)]:
            job = client.get(job_id)
            assert job["status"] == "succeeded"
            assert job["attempts"] == 1


def test_many_concurrent_clients(deployment: Deployment) -> None:
    run_many(deployment)


def test_json_and_npz_results_agree(deployment: Deployment) -> None:
    request = tiny_request(7, batch=5, task="jacobian", noise_levels=[0.0, 0.1, 0.2])
    headers = deployment.headers()
    job = HTTP.post(f"{deployment.url}/v1/jobs", json=request, headers=headers).json()
    as_json = HTTP.get(
        f"{deployment.url}/v1/jobs/{job['id']}/result", params={"wait": 30}, headers=headers
    )
    assert as_json.status_code == 200, as_json.text
    body = as_json.json()
    ref = reference(request)
    assert np.asarray(body["values"]).shape == (3, 5, TINY.n_outputs)
    np.testing.assert_allclose(body["values"], ref.values, atol=1e-10)
    np.testing.assert_allclose(body["d_weights"], ref.d_weights, atol=1e-10)
    with ServiceClient(deployment.url, api_key=deployment.keys["alice"]) as client:
        binary = client.result(job["id"])
    np.testing.assert_array_equal(binary.values, np.asarray(body["values"]))
    np.testing.assert_array_equal(binary.d_inputs, np.asarray(body["d_inputs"]))


def test_evaluate_returns_an_evaluation(deployment: Deployment) -> None:
    request = tiny_request(8, batch=3)
    with ServiceClient(deployment.url, api_key=deployment.keys["alice"]) as client:
        ev = client.evaluate(
            TINY,
            np.asarray(request["inputs"]),
            np.asarray(request["weights"]),
            backend="exact",
            task="jacobian",
        )
    ref = reference({**request, "task": "jacobian"})
    np.testing.assert_allclose(ev.values, ref.values, atol=1e-10)
    assert ev.d_weights is not None and ev.d_weights.shape == (1, 3, 2, TINY.n_weights)
    assert "job_id" in ev.metadata


def test_prefer_wait_answers_the_submit_with_the_result(deployment: Deployment) -> None:
    """``Prefer: wait`` on ``POST /v1/jobs``: one exchange gives the result (JSON and npz),
    names it in ``Content-Location``, and the job is stored and readable as any other."""
    request = tiny_request(41, batch=4, task="jacobian")
    ref = reference(request)
    headers = {**deployment.headers(), "Prefer": "wait=30"}
    answer = HTTP.post(f"{deployment.url}/v1/jobs", json=request, headers=headers)
    assert answer.status_code == 200, answer.text
    job_id = answer.headers["location"].rsplit("/", 1)[-1]
    assert answer.headers["content-location"] == f"/v1/jobs/{job_id}/result"
    assert answer.headers["preference-applied"] == "wait=30"
    body = answer.json()
    assert body["id"] == job_id and body["status"] == "succeeded"
    np.testing.assert_allclose(body["values"], ref.values, atol=1e-10)
    np.testing.assert_allclose(body["d_inputs"], ref.d_inputs, atol=1e-10)
    np.testing.assert_allclose(body["d_weights"], ref.d_weights, atol=1e-10)

    binary = HTTP.post(
        f"{deployment.url}/v1/jobs", json=request, headers={**headers, "Accept": NPZ}
    )
    assert binary.status_code == 200 and binary.headers["content-type"] == NPZ
    document, arrays = client_unpack(binary.content)
    assert document["status"] == "succeeded" and document["id"] != job_id
    np.testing.assert_allclose(arrays["d_weights"], ref.d_weights, atol=1e-10)

    with ServiceClient(deployment.url, api_key=deployment.keys["alice"]) as client:
        assert client.get(job_id)["status"] == "succeeded"
        np.testing.assert_array_equal(client.result(job_id).values, np.asarray(body["values"]))
        again_id, again = client.run(request)
    assert again_id not in (job_id, document["id"])
    np.testing.assert_allclose(again.d_weights, ref.d_weights, atol=1e-10)


def test_prefer_wait_shorter_than_the_job_answers_its_status(deployment: Deployment) -> None:
    """A job still running when the wait ends, or one that ends without a result, is answered
    as without the header: its id and status."""
    headers = {**deployment.headers(), "Prefer": "wait=0.2"}
    start = time.monotonic()
    answer = HTTP.post(f"{deployment.url}/v1/jobs", json=slow_request(42), headers=headers)
    assert 0.2 <= time.monotonic() - start < 10
    assert answer.status_code == 202, answer.text
    assert "content-location" not in answer.headers
    assert answer.headers["preference-applied"] == "wait=0.2"
    job = answer.json()
    assert set(job) == {"id", "status"} and job["status"] in ("queued", "running")
    with ServiceClient(deployment.url, api_key=deployment.keys["alice"]) as client:
        _wait_status(client, job["id"], {"running"})
        with ThreadPoolExecutor(1) as pool:
            # the same key: the earlier job, waited for until its cancel ends it
            key = {"Idempotency-Key": uuid.uuid4().hex}
            first = HTTP.post(
                f"{deployment.url}/v1/jobs", json=slow_request(43), headers={**headers, **key}
            ).json()
            _wait_status(client, first["id"], {"running"})
            again = pool.submit(
                HTTP.post,
                f"{deployment.url}/v1/jobs",
                json=slow_request(43),
                headers={**headers, **key, "Prefer": "wait=30"},
            )
            time.sleep(0.3)
            client.cancel(first["id"])
            answer = again.result(timeout=60)
        client.cancel(job["id"])
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"id": first["id"], "status": "cancelled"}
    assert "content-location" not in answer.headers


def test_idempotent_resubmission_returns_the_same_job(deployment: Deployment) -> None:
    request = tiny_request(11)
    key = uuid.uuid4().hex
    headers = {**deployment.headers(), "Idempotency-Key": key}
    first = HTTP.post(f"{deployment.url}/v1/jobs", json=request, headers=headers)
    again = HTTP.post(f"{deployment.url}/v1/jobs", json=request, headers=headers)
    assert first.status_code == 202 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    other = HTTP.post(f"{deployment.url}/v1/jobs", json=tiny_request(12), headers=headers)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"
    with ServiceClient(deployment.url, api_key=deployment.keys["alice"]) as client:
        assert client.submit(request, idempotency_key=key)["id"] == first.json()["id"]
        listed = client.list_jobs(limit=1000)
    assert sum(j["id"] == first.json()["id"] for j in listed["data"]) == 1


def _wait_status(
    client: ServiceClient, job_id: str, states: set[str], timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(job_id)
        if job["status"] in states:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} stayed {job['status']}")
        time.sleep(0.02)


def test_cancel_in_every_state(deployment: Deployment) -> None:
    with ServiceClient(deployment.url, api_key=deployment.keys["alice"]) as client:
        # two slow chunked jobs occupy both workers; the third waits in the queue
        slow = [client.submit(slow_request(s))["id"] for s in (21, 22)]
        for job_id in slow:
            _wait_status(client, job_id, {"running"})
        queued = client.submit(tiny_request(23))["id"]
        assert client.get(queued)["status"] == "queued"

        cancelled = client.cancel(queued)
        assert cancelled["status"] == "cancelled"
        with pytest.raises(JobCancelled):
            client.result(queued)

        # running: stops at the next chunk boundary
        running = client.cancel(slow[0])
        assert running["cancel_requested"] is True
        final = _wait_status(client, slow[0], {"cancelled", "succeeded", "failed"})
        assert final["status"] == "cancelled"
        assert final["progress"] < 1.0
        client.cancel(slow[1])
        _wait_status(client, slow[1], {"cancelled"})

        # finished: a no-op that leaves the result in place
        done = client.submit(tiny_request(24))["id"]
        result = client.wait(done, timeout=60)
        again = client.cancel(done)
        assert again["status"] == "succeeded"
        np.testing.assert_array_equal(client.result(done).values, result.values)

        # the queued job never ran
        assert client.get(queued)["attempts"] == 0


def test_long_poll_answers_when_the_job_ends(deployment: Deployment) -> None:
    with ServiceClient(deployment.url, api_key=deployment.keys["alice"]) as client:
        job_id = client.submit(slow_request(31, batch=60))["id"]
        with pytest.raises(JobNotFinishedError):
            client.result(job_id)
        start = time.monotonic()
        result = client.result(job_id, wait=60)
        assert time.monotonic() - start < 30
        assert result.values is not None and result.values.shape == (1, 60, 2)
        assert result.metadata.get("chunks") == 60


def test_runs(deployment: Deployment) -> None:
    with ServiceClient(deployment.url, api_key=deployment.keys["alice"]) as client:
        run = client.create_run(name="training", backend="exact")
        assert run["status"] == "open"
        job = client.submit(tiny_request(41, run_id=run["id"]))
        client.wait(job["id"], timeout=60)
        listed = client.list_jobs(run_id=run["id"])
        assert [j["id"] for j in listed["data"]] == [job["id"]] and listed["count"] == 1
        assert client.get_run(run["id"])["name"] == "training"
        assert run["id"] in [r["id"] for r in client.list_runs()["data"]]
        closed = client.close_run(run["id"])
        assert closed["status"] == "closed"
        with pytest.raises(RunClosedError):
            client.submit(tiny_request(42, run_id=run["id"]))


def test_backends_health_and_metrics(deployment: Deployment) -> None:
    with ServiceClient(deployment.url, api_key=deployment.keys["alice"]) as client:
        backends = {b["name"]: b for b in client.backends()}
        assert client.ready()
    assert backends["exact"]["kind"] == "exact"
    assert backends["aer"]["available"] is True
    assert backends["aer:fake_athens"]["qubits"] == 5
    assert backends["fake:fake_athens"]["kind"] == "fake"
    assert not any(name.startswith("ibm:") for name in backends)
    assert HTTP.get(f"{deployment.url}/healthz").json() == {"status": "ok"}
    text = HTTP.get(f"{deployment.url}/metrics").text
    assert 'qldm_jobs{state="succeeded"}' in text
    assert "qldm_queue_depth" in text
    assert "qldm_job_run_seconds_bucket" in text
    assert 'qldm_http_request_duration_seconds_count{method="POST",route="/v1/jobs"' in text


class _LossyProxy:
    """A TCP proxy to the server that swallows the answer on its first connection (the
    request arrives, the response is lost), then forwards faithfully."""

    def __init__(self, upstream_port: int) -> None:
        import threading

        self.upstream_port = upstream_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self._threading = threading
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            lossy = self.connections == 1
            self._threading.Thread(
                target=self._pipe, args=(client, upstream, False), daemon=True
            ).start()
            self._threading.Thread(
                target=self._pipe, args=(upstream, client, lossy), daemon=True
            ).start()

    @staticmethod
    def _pipe(source: Any, sink: Any, drop: bool) -> None:
        try:
            while data := source.recv(65536):
                if drop:  # the server answered: hang up on the client without the answer
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            # shutdown first: a bare close() leaves the connection open while the other pipe's
            # thread is still in recv() on it, so the client would wait for an answer instead of
            # seeing the connection drop
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self.listener.close()


def test_a_retried_submit_never_makes_a_second_job(deployment: Deployment) -> None:
    def count() -> int:
        r = HTTP.get(
            f"{deployment.url}/v1/jobs", params={"limit": 1}, headers=deployment.headers("bob")
        )
        return int(r.json()["count"])

    before = count()
    proxy = _LossyProxy(deployment.server.port)
    try:
        with ServiceClient(
            f"http://127.0.0.1:{proxy.port}", api_key=deployment.keys["bob"], retries=3
        ) as client:
            # the server stores the job but its answer is lost; the client retries on a new
            # connection with the same idempotency key and gets the same job back
            job = client.submit(tiny_request(77))
            result = client.wait(job["id"], timeout=60)
    finally:
        proxy.close()
    assert proxy.connections >= 2
    assert count() == before + 1
    np.testing.assert_allclose(result.values, reference(tiny_request(77)).values, atol=1e-10)
