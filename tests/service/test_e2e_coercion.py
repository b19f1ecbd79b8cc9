"""End to end: no loose coercion, and the API's own description matches what it enforces
(issue 15, item 7).

Before: ``"shots": true`` ran one shot, ``"n_qubits": true`` meant 1, numeric strings passed as
numbers, ``?wait=inf`` was accepted (while ``Prefer: wait=inf`` was refused), a run's backend
could be any string, the schema lacked ``minItems``/``minLength`` the server enforces, and 405
answers named one method in ``Allow``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.service.conftest import Deployment
from tests.service.helpers import HTTP, TINY, tiny_request


def _count(deployment: Deployment) -> int:
    r = HTTP.get(f"{deployment.url}/v1/jobs", params={"limit": 1}, headers=deployment.headers())
    assert r.status_code == 200, r.text
    return int(r.json()["count"])


@pytest.fixture
def unchanged(deployment: Deployment) -> Iterator[None]:
    before = _count(deployment)
    yield
    assert _count(deployment) == before


def _assert_error(response: httpx.Response, status: int, code: str, field: str | None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (code, field), error
    assert error["message"]


def _request(**changes: Any) -> dict[str, Any]:
    return {**tiny_request(7), **changes}


def _circuit(**changes: Any) -> dict[str, Any]:
    return {**TINY.model_dump(mode="json"), **changes}


LOOSE: list[tuple[str, dict[str, Any], str]] = [
    ("shots true", _request(shots=True), "shots"),
    ("shots as text", _request(shots="100"), "shots"),
    ("seed true", _request(shots=10, seed=True), "seed"),
    ("seed as text", _request(shots=10, seed="3"), "seed"),
    ("n_qubits true", _request(circuit=_circuit(n_qubits=True)), "circuit.n_qubits"),
    ("layers as text", _request(circuit=_circuit(layers="1")), "circuit.layers"),
    (
        "strength true",
        _request(circuit=_circuit(channel={"kind": "bit_flip", "strength": True})),
        "circuit.channel.strength",
    ),
    ("chunk_size true", _request(options={"chunk_size": True}), "options.chunk_size"),
    (
        "allow_noise_floor 1",
        _request(options={"allow_noise_floor": 1}),
        "options.allow_noise_floor",
    ),
    ("a weight true", _request(weights=[True, 0.0, 0.0, 0.0]), "weights.0"),
    ("an input as text", _request(inputs=[["0.5", 0.1]]), "inputs.0.0"),
    ("a noise level as text", _request(noise_levels=["0.1"]), "noise_levels.0"),
]


@pytest.mark.parametrize(("case", "body", "field"), LOOSE, ids=[c[0] for c in LOOSE])
def test_loose_values_are_refused_naming_the_field(
    deployment: Deployment, unchanged: None, case: str, body: dict[str, Any], field: str
) -> None:
    r = HTTP.post(f"{deployment.url}/v1/jobs", json=body, headers=deployment.headers())
    _assert_error(r, 422, "invalid_spec", field)


def test_integers_and_floats_still_pass_where_numbers_go(deployment: Deployment) -> None:
    body = _request(inputs=[[1, 0.5]], weights=[0, 1, 2, 3], shots=10, seed=3)
    r = HTTP.post(f"{deployment.url}/v1/jobs", json=body, headers=deployment.headers())
    assert r.status_code == 202, r.text


@pytest.mark.parametrize("wait", ["inf", "nan", "-1"])
def test_an_infinite_wait_is_refused_in_the_query_as_in_the_header(
    deployment: Deployment, wait: str
) -> None:
    r = HTTP.get(
        f"{deployment.url}/v1/jobs/{'0' * 32}/result",
        params={"wait": wait},
        headers=deployment.headers(),
    )
    _assert_error(r, 422, "validation_error", "wait")
    r = HTTP.post(
        f"{deployment.url}/v1/jobs",
        json=_request(),
        headers={**deployment.headers(), "Prefer": f"wait={wait}"},
    )
    _assert_error(r, 422, "validation_error", "Prefer")


@pytest.mark.parametrize(
    ("backend", "status", "code"),
    [
        ("Æàº", 422, "validation_error"),
        ("", 422, "validation_error"),
        ("quantum-annealer", 422, "validation_error"),
        ("aer:fake_nowhere", 422, "unknown_backend"),
        ("ibm:ibm_torino", 422, "unknown_backend"),
    ],
)
def test_a_run_on_a_backend_the_server_cannot_run_is_refused(
    deployment: Deployment, backend: str, status: int, code: str
) -> None:
    before = HTTP.get(f"{deployment.url}/v1/runs", headers=deployment.headers()).json()["count"]
    r = HTTP.post(
        f"{deployment.url}/v1/runs",
        json={"name": "r", "backend": backend},
        headers=deployment.headers(),
    )
    _assert_error(r, status, code, "backend")
    after = HTTP.get(f"{deployment.url}/v1/runs", headers=deployment.headers()).json()["count"]
    assert after == before


def test_a_run_on_a_known_backend_opens(deployment: Deployment) -> None:
    for backend in ("exact", "aer", "aer:fake_athens", "fake:fake_athens"):
        r = HTTP.post(
            f"{deployment.url}/v1/runs",
            json={"name": "r", "backend": backend},
            headers=deployment.headers(),
        )
        assert r.status_code == 201, r.text


def test_the_schema_says_what_the_server_enforces(deployment: Deployment) -> None:
    document = HTTP.get(f"{deployment.url}/openapi.json").json()
    assert "429" in document["paths"]["/v1/jobs"]["post"]["responses"]  # too_many_jobs
    schemas = document["components"]["schemas"]
    job = schemas["JobRequest"]["properties"]
    assert job["inputs"]["minItems"] == 1
    levels = [b for b in job["noise_levels"]["anyOf"] if b.get("type") == "array"]
    assert levels and levels[0]["minItems"] == 1
    backend = schemas["RunCreate"]["properties"]["backend"]
    assert backend["minLength"] == 1 and backend["pattern"].startswith("^(exact|aer|")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/jobs/" + "0" * 32, {"GET", "DELETE"}),
        ("DELETE", "/v1/jobs", {"GET", "POST"}),
        ("PATCH", "/v1/runs/" + "0" * 32, {"GET", "DELETE"}),
    ],
)
def test_405_lists_every_method_of_the_path(
    deployment: Deployment, method: str, path: str, allowed: set[str]
) -> None:
    r = HTTP.request(method, f"{deployment.url}{path}", headers=deployment.headers())
    assert r.status_code == 405, r.text
    methods = {m.strip() for m in r.headers["Allow"].split(",")}
    assert allowed <= methods and method not in methods
    assert r.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("n_qubits", [11, 12])
def test_a_noisy_job_too_large_for_exact_is_refused_at_submission(
    deployment: Deployment, unchanged: None, n_qubits: int
) -> None:
    """Item 6: it was accepted (202) and failed later with ``backend_limit``."""
    body = {
        "circuit": {"n_qubits": n_qubits, "channel": {"kind": "bit_flip", "strength": 0.1}},
        "inputs": [[0.1] * n_qubits],
        "weights": [0.1] * (2 * n_qubits),
        "backend": "exact",
    }
    r = HTTP.post(f"{deployment.url}/v1/jobs", json=body, headers=deployment.headers())
    _assert_error(r, 400, "backend_limit", "circuit.n_qubits")
