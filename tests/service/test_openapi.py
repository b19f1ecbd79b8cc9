"""The OpenAPI schema of ``POST /v1/jobs``: its headers (FastAPI ``Header`` parameters) and
both body media types."""

from __future__ import annotations

from pathlib import Path

from qldm.service.app import create_app
from qldm.service.settings import Settings


def test_the_submit_route_documents_its_headers_and_both_bodies(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/q.sqlite3"))
    operation = app.openapi()["paths"]["/v1/jobs"]["post"]
    headers = {p["name"]: p["schema"] for p in operation["parameters"] if p["in"] == "header"}
    assert set(headers) == {"idempotency-key", "prefer", "accept", "authorization", "x-api-key"}
    assert {"type": "string", "maxLength": 255} in headers["idempotency-key"]["anyOf"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"application/json", "application/x-npz"}
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/JobRequest"}
    assert "JobRequest" in app.openapi()["components"]["schemas"]
