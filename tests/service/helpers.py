"""Small jobs for the end-to-end tests, and their reference values computed in-process."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np

from qldm.backends import get_backend
from qldm.backends.base import Evaluation, Workload
from qldm.circuits import PQCSpec

HTTP = httpx.Client(timeout=60.0)
"""A plain HTTP client for the tests that look at raw responses."""

BACKEND = "exact"
"""The backend the end-to-end jobs run on (cheap and deterministic)."""

TINY = PQCSpec.model_validate(
    {"n_qubits": 2, "layers": 1, "channel": {"kind": "amplitude_damping", "strength": 0.05}}
)
"""2 qubits, 1 layer: I = 2, P = 4, O = 2."""


def tiny_request(
    seed: int, *, batch: int = 2, task: str = "expectation", **extra: Any
) -> dict[str, Any]:
    """A small job request with inputs and weights drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    return {
        "circuit": TINY.model_dump(mode="json"),
        "task": task,
        "backend": BACKEND,
        "inputs": rng.uniform(-np.pi, np.pi, size=(batch, TINY.n_inputs)).tolist(),
        "weights": rng.uniform(-np.pi, np.pi, size=TINY.n_weights).tolist(),
        **extra,
    }


def reference(request: dict[str, Any]) -> Evaluation:
    """The same work evaluated in the test process with the in-process backend."""
    spec = PQCSpec.model_validate(request["circuit"])
    work = Workload.build(
        spec,
        request["inputs"],
        request["weights"],
        noise_levels=request.get("noise_levels"),
        task=request.get("task", "expectation"),
    )
    return get_backend(request.get("backend", BACKEND)).run(work)


def slow_request(seed: int, *, batch: int = 400) -> dict[str, Any]:
    """A job of many one-sample chunks: it stays running for a while and can be cancelled
    between chunks."""
    return tiny_request(seed, batch=batch, task="jacobian", options={"chunk_size": 1})
