"""How ``ServiceClient`` turns error bodies into exceptions (pure function of the response)."""

from __future__ import annotations

import httpx
import pytest

from qldm.client.service_client import ServiceError, error_from_response
from qldm.errors import (
    ERRORS,
    BackendError,
    BackendLimitError,
    InvalidSpecError,
    JobCancelled,
    JobNotFinishedError,
    JobNotFoundError,
    PayloadTooLargeError,
    QldmError,
    RunNotFoundError,
    UnauthorizedError,
)


def _response(status: int, body: object, path: str = "/v1/jobs/x") -> httpx.Response:
    return httpx.Response(status, json=body, request=httpx.Request("GET", f"http://h{path}"))


@pytest.mark.parametrize(
    ("status", "code", "path", "cls"),
    [
        (422, "invalid_spec", "/v1/jobs", InvalidSpecError),
        (400, "backend_limit", "/v1/jobs", BackendLimitError),
        (404, "job_not_found", "/v1/jobs/x", JobNotFoundError),
        (404, "run_not_found", "/v1/runs/x", RunNotFoundError),
        (409, "not_finished", "/v1/jobs/x/result", JobNotFinishedError),
        (409, "cancelled", "/v1/jobs/x/result", JobCancelled),
        (401, "unauthorized", "/v1/jobs", UnauthorizedError),
        (413, "payload_too_large", "/v1/jobs", PayloadTooLargeError),
        (418, "teapot", "/v1/jobs", ServiceError),
        (404, "not_found", "/v2/nothing", ServiceError),
    ],
)
def test_codes_map_to_classes(status: int, code: str, path: str, cls: type[QldmError]) -> None:
    body = {"error": {"code": code, "message": "m", "field": "inputs"}}
    err = error_from_response(_response(status, body, path))
    assert type(err) is cls
    assert err.field == "inputs" and err.message == "m"


def test_a_failed_job_raises_its_own_error() -> None:
    body = {
        "error": {
            "code": "job_failed",
            "message": "job x failed: too big",
            "field": "job_id",
            "job_error": {"code": "backend_limit", "message": "too big"},
        }
    }
    err = error_from_response(_response(409, body, "/v1/jobs/x/result"))
    assert isinstance(err, BackendLimitError)
    body["error"]["job_error"] = {"code": "worker_lost", "message": "died"}  # type: ignore[index]
    assert isinstance(error_from_response(_response(409, body)), BackendError)


def test_a_body_that_is_not_an_error_body() -> None:
    response = httpx.Response(502, text="bad gateway", request=httpx.Request("GET", "http://h/"))
    err = error_from_response(response)
    assert isinstance(err, ServiceError) and err.code == "http_error" and err.status == 502


@pytest.mark.parametrize("code", sorted(ERRORS))
def test_every_code_of_the_table_comes_back_as_its_class(code: str) -> None:
    kind = ERRORS[code]
    body = {"error": {"code": code, "message": "m", "field": None}}
    err = error_from_response(_response(kind.status, body))
    if kind.cls is None:
        assert type(err) is ServiceError and err.code == code and err.status == kind.status
    else:
        assert type(err) is kind.cls and err.code == code
