"""End to end: large and hostile bodies never stall the server (issue 15, item 3).

A real server on loopback with the default 32 MB body limit. While it refuses a 29 MB JSON body
of 10^6 rows, and while it parses a legal multi-megabyte JSON body, ``/healthz`` keeps
answering: the rows are counted before anything is parsed, and large bodies are parsed in a
separate process, not on the event loop (before: 2.4-2.9 s without an answer).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from qldm.backends import get_backend
from qldm.backends.base import Workload
from qldm.circuits import PQCSpec
from qldm.service.embedded import EmbeddedServer

HEALTHZ_BOUND_S = 0.5
"""The slowest ``/healthz`` allowed while a large body is handled (the issue asks 50 ms on an
idle machine; the test machine is shared, so the bound leaves room: the stall was 2.4 s+)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    data: Path = tmp_path_factory.mktemp("hostile")
    with EmbeddedServer(data, workers=1) as running:
        yield running


class _Prober:
    """Calls ``/healthz`` every 10 ms in a thread and keeps the slowest answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30.0) as client:
            while not self._stop.is_set():
                start = time.perf_counter()
                assert client.get(f"{self.url}/healthz").status_code == 200
                self.latencies.append(time.perf_counter() - start)
                time.sleep(0.01)

    def __enter__(self) -> _Prober:
        self._thread.start()
        time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.1)
        self._stop.set()
        self._thread.join()


def _post(url: str, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/jobs",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=120.0,
    )


def test_a_30_mb_body_of_a_million_rows_is_refused_without_stalling(
    server: EmbeddedServer,
) -> None:
    rows = np.random.default_rng(0).uniform(-3, 3, size=(10**6, 2)).round(9).tolist()
    body = json.dumps(
        {"circuit": {"n_qubits": 2, "layers": 1}, "inputs": rows, "weights": [0.1] * 4}
    ).encode()
    assert len(body) > 28e6
    with _Prober(server.url) as probe:
        start = time.perf_counter()
        r = _post(server.url, body)
        took = time.perf_counter() - start
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "backend_limit"
    assert r.json()["error"]["field"] == "inputs"
    assert took < 5.0
    assert probe.latencies and max(probe.latencies) < HEALTHZ_BOUND_S, max(probe.latencies)


def _amplitude_request(batch: int, seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    return {
        "circuit": {"n_qubits": 6, "encoding": "amplitude", "layers": 1},
        "inputs": rng.uniform(0.1, 1.0, size=(batch, 64)).tolist(),
        "weights": rng.uniform(-np.pi, np.pi, size=12).tolist(),
    }


def test_a_large_legal_json_body_is_parsed_off_the_loop_and_runs(server: EmbeddedServer) -> None:
    """A 3 MB JSON body goes through the reader process; the job's values equal the backend's
    own in this process, so nothing was lost or reordered on the way."""
    request = _amplitude_request(1_000, seed=1)
    body = json.dumps(request).encode()
    assert len(body) > 1e6
    with _Prober(server.url) as probe:
        r = _post(server.url, body)
    assert r.status_code == 202, r.text
    assert max(probe.latencies) < HEALTHZ_BOUND_S, max(probe.latencies)
    job = r.json()["id"]
    result = httpx.get(f"{server.url}/v1/jobs/{job}/result", params={"wait": 60}, timeout=90)
    assert result.status_code == 200, result.text
    spec = PQCSpec.model_validate(request["circuit"])
    expected = get_backend("exact").run(Workload.build(spec, request["inputs"], request["weights"]))
    np.testing.assert_allclose(np.array(result.json()["values"]), expected.values, atol=1e-10)


@pytest.mark.parametrize(
    ("where", "value", "field"),
    [("inputs", "x", "inputs.700.5"), ("weights", True, "weights.3")],
)
def test_errors_in_a_large_body_name_their_field(
    server: EmbeddedServer, where: str, value: object, field: str
) -> None:
    request = _amplitude_request(1_000, seed=2)
    if where == "inputs":
        request["inputs"][700][5] = value  # type: ignore[index]
    else:
        request["weights"][3] = value  # type: ignore[index]
    r = _post(server.url, json.dumps(request).encode())
    assert r.status_code == 422, r.text
    assert r.json()["error"] == {
        "code": "invalid_spec",
        "message": r.json()["error"]["message"],
        "field": field,
    }


def test_a_long_exact_job_stops_within_seconds_of_a_cancel(server: EmbeddedServer) -> None:
    """Item 5: a 12-qubit exact Jacobian of 2,048 samples (about a minute of work here) ran as
    one chunk and ignored DELETE until it ended; in chunks of about a second it stops soon."""
    rng = np.random.default_rng(5)
    body = {
        "circuit": {"n_qubits": 12, "layers": 2},
        "task": "jacobian",
        "inputs": rng.uniform(-1, 1, size=(2048, 12)).tolist(),
        "weights": rng.uniform(-1, 1, size=48).tolist(),
    }
    r = httpx.post(f"{server.url}/v1/jobs", json=body, timeout=60)
    assert r.status_code == 202, r.text
    job = f"{server.url}/v1/jobs/{r.json()['id']}"
    deadline = time.monotonic() + 30
    while httpx.get(job).json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(2.0)
    cancelled_at = time.monotonic()
    assert httpx.delete(job).status_code == 200
    while (status := httpx.get(job).json()["status"]) == "running":
        assert time.monotonic() - cancelled_at < 15, "the job ignored the cancel"
        time.sleep(0.1)
    assert status == "cancelled"
    print(f"cancelled {time.monotonic() - cancelled_at:.2f} s after DELETE")
