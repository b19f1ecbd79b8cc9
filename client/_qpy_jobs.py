"""What ``RemoteEstimatorV2`` and ``RemoteSamplerV2`` share: the client they talk through, a
circuit's QPY bytes, and one QPY-circuit job whose ``inputs`` are the parameter sets of several
PUBs of that circuit, one after the other (every circuit parameter is an input, in
``circuit.parameters`` order; there are no weights)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from qiskit import QuantumCircuit, qpy
from qiskit.primitives.containers.bindings_array import BindingsArray

from qldm.client.service_client import ServiceClient

__all__ = ["ServerPrimitive", "Submitted", "qpy_bytes", "submit_rows"]


class ServerPrimitive:
    """What :class:`~qldm.client.RemoteEstimatorV2` and :class:`~qldm.client.RemoteSamplerV2`
    share: the server's client, the backend, the seed, the run and the per-job wait.

    Args:
        url: the server's base URL, or ``None`` when ``client`` is given.
        api_key: the tenant's API key.
        backend: the server-side backend.
        seed: seed for shot sampling.
        run_id: the run the jobs belong to.
        client: an existing :class:`ServiceClient` to use instead of ``url``/``api_key``.
        timeout: seconds to wait for each job (``None``: no limit).

    Raises:
        ValueError: neither ``url`` nor ``client`` is given.
    """

    def __init__(
        self,
        url: str | None,
        *,
        api_key: str | None,
        backend: str,
        seed: int | None,
        run_id: str | None,
        client: ServiceClient | None,
        timeout: float | None,
    ) -> None:
        if client is None:
            if url is None:
                raise ValueError("give the server's url or a ServiceClient")
            client = ServiceClient(url, api_key=api_key)
        self._client = client
        self._backend = backend
        self._seed = seed
        self._run_id = run_id
        self._timeout = timeout

    @property
    def client(self) -> ServiceClient:
        """The HTTP client."""
        return self._client


def qpy_bytes(circuit: QuantumCircuit, cache: dict[int, bytes]) -> bytes:
    """The circuit's QPY bytes, dumped once per circuit object (``cache`` keyed by ``id``)."""
    key = id(circuit)
    if key not in cache:
        buffer = io.BytesIO()
        qpy.dump(circuit, buffer)
        cache[key] = buffer.getvalue()
    return cache[key]


@dataclass(frozen=True)
class Submitted:
    """A submitted job: its id, and where each of its PUBs' rows start and end
    (``offsets[k]:offsets[k + 1]`` for its ``k``-th PUB)."""

    job_id: str
    offsets: list[int]


def submit_rows(
    client: ServiceClient,
    circuit: QuantumCircuit,
    circuit_qpy: bytes,
    parameter_values: Sequence[BindingsArray],
    *,
    task: str,
    observables: list[str],
    backend: str,
    shots: int | None,
    seed: int | None,
    run_id: str | None,
) -> Submitted:
    """Submit one job of ``circuit`` whose ``inputs`` are every set of ``parameter_values``.

    Args:
        client: the HTTP client.
        circuit: the circuit (its parameters name the input columns).
        circuit_qpy: its QPY bytes.
        parameter_values: one ``BindingsArray`` per PUB; its ``size`` sets become its rows.
        task: the job's task (``expectation``, ``counts``).
        observables: the job's Pauli labels.
        backend, shots, seed, run_id: the job's fields.

    Returns:
        The job's id and each PUB's row offsets.

    Raises:
        QldmError subclass: the server refused the job.
    """
    params = list(circuit.parameters)
    rows = [
        np.asarray(values.as_array(params)).reshape(values.size, len(params))
        for values in parameter_values
    ]
    request: dict[str, Any] = {
        "circuit": {
            "qpy": base64.b64encode(circuit_qpy).decode("ascii"),
            "observables": observables,
            "input_params": [p.name for p in params],
            "weight_params": [],
        },
        "task": task,
        "backend": backend,
        "inputs": np.concatenate(rows).astype(np.float64),
        "weights": np.zeros(0),
        "shots": shots,
        "seed": seed,
        "run_id": run_id,
    }
    job = client.submit(request)
    offsets = np.cumsum([0, *(len(r) for r in rows)])
    return Submitted(str(job["id"]), [int(o) for o in offsets])
