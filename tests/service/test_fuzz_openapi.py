"""Fuzzing the API from its own OpenAPI description (issue 15): schemathesis generates requests
for every operation, valid and invalid, against a real server on loopback, and runs its
checks on every answer: no 5xx, status codes, content types and bodies as the schema says,
invalid data refused, and so on. The number of examples is bounded so the suite stays quick;
``QLDM_FUZZ_EXAMPLES`` raises it for a longer run.

Every check runs except ``positive_data_acceptance`` (that a request the schema allows is
accepted): a job's validity goes beyond what JSON Schema can say (``inputs`` rows as wide as
the circuit's inputs, ``weights`` as long as its parameters, a fake device that exists), and
the server refuses those requests with a 4xx naming the field, as it should.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the dev extra")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import positive_data_acceptance  # noqa: E402

from qldm.service.app import create_app  # noqa: E402
from qldm.service.embedded import EmbeddedServer  # noqa: E402
from qldm.service.settings import Settings  # noqa: E402

EXAMPLES = int(os.environ.get("QLDM_FUZZ_EXAMPLES", "30"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    env = {
        "QLDM_MAX_BATCH": "4",  # generated jobs are small: the fuzzing is about the API
        "QLDM_MAX_ACTIVE_JOBS_PER_TENANT": "20",
        "QLDM_MAX_WAIT_S": "1",
    }
    with EmbeddedServer(Path(tmp_path_factory.mktemp("fuzz")), workers=1, env=env) as running:
        yield running


def _openapi() -> dict[str, Any]:
    """The app's own OpenAPI document, built without serving (the one ``/openapi.json``
    serves; schemathesis's lazy fixture loader does not run under this pytest)."""
    with tempfile.TemporaryDirectory() as data:
        return create_app(Settings(data_dir=Path(data), auth="off")).openapi()


schema = schemathesis.openapi.from_dict(_openapi())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_keeps_its_own_description(case: Any, server: EmbeddedServer) -> None:
    case.call_and_validate(base_url=server.url, excluded_checks=[positive_data_acceptance])
