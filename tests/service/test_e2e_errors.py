"""End to end: every bad input and every auth failure gets its status code and error body, and
nothing is stored on the way."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from qldm.client.service_client import ServiceClient
from qldm.errors import BackendLimitError, InvalidSpecError, JobNotFoundError, UnauthorizedError
from tests.service.conftest import Deployment
from tests.service.helpers import HTTP, TINY, tiny_request


def _count(deployment: Deployment, tenant: str = "alice") -> int:
    r = HTTP.get(
        f"{deployment.url}/v1/jobs", params={"limit": 1}, headers=deployment.headers(tenant)
    )
    assert r.status_code == 200, r.text
    return int(r.json()["count"])


def _npz(document: dict[str, Any], **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, json=np.frombuffer(json.dumps(document).encode(), np.uint8), **arrays)
    return buffer.getvalue()


def _assert_error(response: httpx.Response, status: int, code: str, field: str | None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code, body
    assert body["error"]["field"] == field, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def _with(**changes: Any) -> dict[str, Any]:
    request = tiny_request(5)
    request.update(changes)
    return request


def _circuit(**changes: Any) -> dict[str, Any]:
    return {**TINY.model_dump(mode="json"), **changes}


BAD_JSON: list[tuple[str, dict[str, Any], int, str, str | None]] = [
    ("unknown top-level field", _with(colour="red"), 422, "invalid_spec", "colour"),
    (
        "unknown circuit field",
        _with(circuit=_circuit(depth=3)),
        422,
        "invalid_spec",
        "circuit.depth",
    ),
    (
        "missing inputs",
        {k: v for k, v in _with().items() if k != "inputs"},
        422,
        "invalid_spec",
        "inputs",
    ),
    ("inputs of the wrong width", _with(inputs=[[0.1, 0.2, 0.3]]), 422, "invalid_spec", "inputs"),
    ("weights of the wrong length", _with(weights=[0.1]), 422, "invalid_spec", "weights"),
    ("ragged inputs", _with(inputs=[[0.1, 0.2], [0.3]]), 422, "invalid_spec", "inputs"),
    ("text for a number", _with(weights=["a", 0, 0, 0]), 422, "invalid_spec", "weights.0"),
    ("noise level above 1", _with(noise_levels=[1.5]), 422, "invalid_spec", "noise_levels"),
    ("unknown task", _with(task="sample"), 422, "invalid_spec", "task"),
    ("unknown backend", _with(backend="quantum-annealer"), 422, "invalid_spec", "backend"),
    ("unknown fake device", _with(backend="aer:fake_nowhere"), 422, "unknown_backend", "backend"),
    (
        "too many qubits for the spec",
        _with(circuit=_circuit(n_qubits=40)),
        422,
        "invalid_spec",
        "circuit.n_qubits",
    ),
    (
        "too many qubits for the device",
        {
            **tiny_request(5),
            "circuit": {"n_qubits": 6, "layers": 1},
            "inputs": [[0.0] * 6],
            "weights": [0.0] * 12,
            "backend": "aer:fake_athens",
        },
        400,
        "backend_limit",
        "circuit",
    ),
    ("too many shots", _with(shots=10**6), 400, "backend_limit", "shots"),
    ("too many samples", _with(inputs=[[0.1, 0.2]] * 513), 400, "backend_limit", "inputs"),
    ("zero shots", _with(shots=0), 422, "invalid_spec", "shots"),
    ("ibm without a token", _with(backend="ibm:ibm_torino"), 422, "unknown_backend", "backend"),
    ("unknown option", _with(options={"priority": 1}), 422, "invalid_spec", "options.priority"),
]


@pytest.fixture
def unchanged(deployment: Deployment) -> Iterator[None]:
    """Asserts that the test stored no job."""
    before = _count(deployment)
    yield
    assert _count(deployment) == before


@pytest.mark.parametrize(
    ("case", "body", "status", "code", "field"), BAD_JSON, ids=[c[0] for c in BAD_JSON]
)
def test_bad_json_bodies(
    deployment: Deployment,
    unchanged: None,
    case: str,
    body: dict[str, Any],
    status: int,
    code: str,
    field: str | None,
) -> None:
    r = HTTP.post(f"{deployment.url}/v1/jobs", json=body, headers=deployment.headers())
    _assert_error(r, status, code, field)


@pytest.mark.parametrize(
    ("literal", "where"),
    [("NaN", "inputs.0.1"), ("Infinity", "weights.2"), ("-Infinity", "noise_levels.0")],
)
def test_nan_and_infinity_literals_are_refused(
    deployment: Deployment, unchanged: None, literal: str, where: str
) -> None:
    request = _with(
        circuit=_circuit(channel={"kind": "bit_flip", "strength": 0.1}), noise_levels=[0.1]
    )
    text = json.dumps(request)
    if where.startswith("inputs"):
        request["inputs"][0][1] = "@"
    elif where.startswith("weights"):
        request["weights"][2] = "@"
    else:
        request["noise_levels"][0] = "@"
    text = json.dumps(request).replace('"@"', literal)
    r = HTTP.post(
        f"{deployment.url}/v1/jobs",
        content=text,
        headers={**deployment.headers(), "Content-Type": "application/json"},
    )
    _assert_error(r, 422, "invalid_spec", where)


@pytest.mark.parametrize("depth", [17, 1_000, 100_000])
def test_deeply_nested_json_is_refused_as_a_bad_body(
    deployment: Deployment, unchanged: None, depth: int
) -> None:
    """Nesting past 16 levels is a 422 naming the body (it answered 500 at about 1,000 deep, a
    RecursionError); the server goes on answering."""
    text = '{"inputs": ' + "[" * depth + "]" * depth + "}"
    r = HTTP.post(
        f"{deployment.url}/v1/jobs",
        content=text,
        headers={**deployment.headers(), "Content-Type": "application/json"},
    )
    _assert_error(r, 422, "invalid_spec", "body")
    assert HTTP.get(f"{deployment.url}/healthz").status_code == 200


def test_deeply_nested_json_in_an_npz_body_is_refused(
    deployment: Deployment, unchanged: None
) -> None:
    text = '{"inputs": ' + "[" * 2_000 + "]" * 2_000 + "}"
    buffer = io.BytesIO()
    np.savez(buffer, json=np.frombuffer(text.encode(), dtype=np.uint8))
    r = HTTP.post(
        f"{deployment.url}/v1/jobs",
        content=buffer.getvalue(),
        headers={**deployment.headers(), "Content-Type": "application/x-npz"},
    )
    _assert_error(r, 422, "validation_error", "json")


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/runs"])
def test_an_offset_past_64_bits_is_a_validation_error(deployment: Deployment, path: str) -> None:
    url = f"{deployment.url}{path}"
    r = HTTP.get(url, params={"offset": 2**63}, headers=deployment.headers())
    _assert_error(r, 422, "validation_error", "offset")
    r = HTTP.get(url, params={"offset": 2**63 - 1}, headers=deployment.headers())
    assert r.status_code == 200 and r.json()["data"] == []


def test_bad_npz_bodies(deployment: Deployment, unchanged: None) -> None:
    url, headers = (
        f"{deployment.url}/v1/jobs",
        {**deployment.headers(), "Content-Type": "application/x-npz"},
    )
    request = tiny_request(3)
    inputs, weights = np.asarray(request.pop("inputs")), np.asarray(request.pop("weights"))
    bad = inputs.copy()
    bad[1, 0] = np.nan
    _assert_error(
        HTTP.post(url, content=_npz(request, inputs=bad, weights=weights), headers=headers),
        422,
        "invalid_spec",
        "inputs.1.0",
    )
    _assert_error(
        HTTP.post(
            url, content=_npz(request, inputs=inputs[:, :1], weights=weights), headers=headers
        ),
        422,
        "invalid_spec",
        "inputs",
    )
    _assert_error(
        HTTP.post(url, content=b"PK\x03\x04 not really", headers=headers),
        422,
        "validation_error",
        "body",
    )
    _assert_error(
        HTTP.post(
            url,
            content=_npz(request, inputs=inputs.astype(complex), weights=weights),
            headers=headers,
        ),
        422,
        "validation_error",
        "inputs",
    )


def test_npz_job_is_stored(deployment: Deployment) -> None:
    before = _count(deployment)
    request = tiny_request(4)
    body = _npz(
        {k: v for k, v in request.items() if k not in ("inputs", "weights")},
        inputs=np.asarray(request["inputs"]),
        weights=np.asarray(request["weights"]),
    )
    r = HTTP.post(
        f"{deployment.url}/v1/jobs",
        content=body,
        headers={**deployment.headers(), "Content-Type": "application/x-npz"},
    )
    # an idle server starts the job at once (direct start); a busy one queues it
    assert r.status_code == 202 and r.json()["status"] in ("queued", "running")
    assert _count(deployment) == before + 1


def test_oversized_bodies_get_413(deployment: Deployment, unchanged: None) -> None:
    big = _with(inputs=[[0.123456789, 0.987654321]] * 12_000)  # ~ 300 kB > 256 kB
    text = json.dumps(big).encode()
    url = f"{deployment.url}/v1/jobs"
    headers = {**deployment.headers(), "Content-Type": "application/json"}
    _assert_error(HTTP.post(url, content=text, headers=headers), 413, "payload_too_large", "body")

    def stream() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for i in range(0, len(text), 16_384):
            yield text[i : i + 16_384]

    _assert_error(
        HTTP.post(url, content=stream(), headers=headers), 413, "payload_too_large", "body"
    )


def test_other_errors(deployment: Deployment, unchanged: None) -> None:
    url, headers = f"{deployment.url}/v1/jobs", deployment.headers()
    _assert_error(
        HTTP.post(
            url, content=b"{not json", headers={**headers, "Content-Type": "application/json"}
        ),
        422,
        "invalid_spec",
        "body",
    )
    _assert_error(
        HTTP.post(url, content=b"[1, 2]", headers={**headers, "Content-Type": "application/json"}),
        422,
        "invalid_spec",
        "body",
    )
    _assert_error(
        HTTP.post(url, content=b"x", headers={**headers, "Content-Type": "text/csv"}),
        415,
        "unsupported_media_type",
        "Content-Type",
    )
    _assert_error(
        HTTP.get(url, params={"limit": 0}, headers=headers), 422, "validation_error", "limit"
    )
    _assert_error(
        HTTP.get(url, params={"status": "sleeping"}, headers=headers),
        422,
        "validation_error",
        "status",
    )
    _assert_error(HTTP.get(f"{url}/{'0' * 32}", headers=headers), 404, "job_not_found", "job_id")
    _assert_error(
        HTTP.get(f"{deployment.url}/v1/runs/{'0' * 32}", headers=headers),
        404,
        "run_not_found",
        "run_id",
    )
    _assert_error(HTTP.get(f"{deployment.url}/v2/nothing", headers=headers), 404, "not_found", None)
    too_long = HTTP.post(
        url, json=tiny_request(5), headers={**headers, "Idempotency-Key": "k" * 256}
    )
    _assert_error(too_long, 422, "validation_error", "idempotency-key")
    assert too_long.json()["error"]["message"] == "String should have at most 255 characters"
    for prefer in ("wait=soon", "wait=-1", "wait=nan", "wait=inf", "wait"):
        _assert_error(
            HTTP.post(url, json=tiny_request(5), headers={**headers, "Prefer": prefer}),
            422,
            "validation_error",
            "Prefer",
        )


def test_client_raises_the_matching_errors(deployment: Deployment, unchanged: None) -> None:
    with ServiceClient(deployment.url, api_key=deployment.keys["alice"]) as client:
        with pytest.raises(InvalidSpecError) as info:
            client.submit(_with(weights=[0.1]))
        assert info.value.field == "weights"
        with pytest.raises(BackendLimitError) as limit:
            client.submit(_with(shots=10**6))
        assert limit.value.field == "shots"
        with pytest.raises(JobNotFoundError):
            client.get("f" * 32)


# ---------------------------------------------------------------------- auth and tenants


def test_requests_without_a_valid_key_get_401(deployment: Deployment) -> None:
    url = f"{deployment.url}/v1/jobs"
    for headers, field in [
        ({}, "Authorization"),
        ({"Authorization": "Bearer qldm_wrong"}, "Authorization"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "Authorization"),
        ({"X-API-Key": "qldm_also_wrong"}, "Authorization"),
    ]:
        r = HTTP.post(url, json=tiny_request(1), headers=headers)
        _assert_error(r, 401, "unauthorized", field)
        assert r.headers["www-authenticate"] == "Bearer"
        _assert_error(HTTP.get(url, headers=headers), 401, "unauthorized", field)
    # auth comes first: a bad body from a stranger is still a 401
    _assert_error(HTTP.post(url, json={"colour": "red"}), 401, "unauthorized", "Authorization")
    ok = HTTP.get(url, headers={"X-API-Key": deployment.keys["alice"]})
    assert ok.status_code == 200
    with (
        ServiceClient(deployment.url, api_key="qldm_nope") as client,
        pytest.raises(UnauthorizedError),
    ):
        client.list_jobs()
    assert HTTP.get(f"{deployment.url}/healthz").status_code == 200


def test_tenants_see_only_their_own_jobs(deployment: Deployment) -> None:
    alice, bob = deployment.headers("alice"), deployment.headers("bob")
    job = HTTP.post(f"{deployment.url}/v1/jobs", json=tiny_request(2), headers=alice).json()
    mine = HTTP.post(f"{deployment.url}/v1/jobs", json=tiny_request(3), headers=bob).json()
    base = f"{deployment.url}/v1/jobs/{job['id']}"
    for method, url in [("GET", base), ("GET", f"{base}/result"), ("DELETE", base)]:
        _assert_error(HTTP.request(method, url, headers=bob), 404, "job_not_found", "job_id")
    ids = [
        j["id"]
        for j in HTTP.get(f"{deployment.url}/v1/jobs", params={"limit": 1000}, headers=bob).json()[
            "data"
        ]
    ]
    assert mine["id"] in ids and job["id"] not in ids
    ids = [
        j["id"]
        for j in HTTP.get(
            f"{deployment.url}/v1/jobs", params={"limit": 1000}, headers=alice
        ).json()["data"]
    ]
    assert job["id"] in ids and mine["id"] not in ids
    # the same idempotency key in two tenants makes two jobs
    key = {"Idempotency-Key": "shared-key"}
    a = HTTP.post(f"{deployment.url}/v1/jobs", json=tiny_request(9), headers={**alice, **key})
    b = HTTP.post(f"{deployment.url}/v1/jobs", json=tiny_request(9), headers={**bob, **key})
    assert a.status_code == b.status_code == 202 and a.json()["id"] != b.json()["id"]
