"""The submission check refuses a task or circuit kind the backend does not run, naming the
field, from the backends' declared capabilities (no backend is built)."""

from __future__ import annotations

import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter

from qldm.circuits.qpy import QpyCircuit
from qldm.errors import BackendLimitError
from qldm.jobs.model import JobRequest
from qldm.service.catalog import check_request


def _request(**changes: object) -> JobRequest:
    body: dict[str, object] = {
        "circuit": {"n_qubits": 1, "layers": 1},
        "inputs": [[0.1]],
        "weights": [0.0, 0.0],
        "shots": 10,
        **changes,
    }
    return JobRequest.parse(body)


def _qpy() -> dict[str, object]:
    t = Parameter("t")
    qc = QuantumCircuit(1)
    qc.ry(t, 0)
    return QpyCircuit.from_circuit(qc, ["Z"], input_params=[t]).model_dump(mode="json")


def _check(request: JobRequest) -> None:
    check_request(request, ibm_configured=True, max_batch=512, max_shots=100_000)


@pytest.mark.parametrize("backend", ["aer:fake_manila", "fake:fake_manila", "ibm:ibm_torino"])
def test_device_backends_refuse_counts_and_qpy_at_submission(backend: str) -> None:
    with pytest.raises(BackendLimitError) as err:
        _check(_request(backend=backend, task="counts"))
    assert err.value.field == "task"
    with pytest.raises(BackendLimitError) as err:
        _check(_request(backend=backend, circuit=_qpy(), weights=[]))
    assert err.value.field == "circuit"
    _check(_request(backend=backend, task="jacobian"))


@pytest.mark.parametrize("backend", ["exact", "aer"])
def test_simulators_take_every_task_and_qpy(backend: str) -> None:
    for task in ("expectation", "jacobian", "counts"):
        _check(_request(backend=backend, task=task))
        _check(_request(backend=backend, task=task, circuit=_qpy(), weights=[]))
