"""Job requests (validation naming the field, QPY circuits) and the runner's extension paths."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qldm.backends.base import NO_CONTEXT, Context
from qldm.errors import InvalidSpecError
from qldm.jobs.model import TERMINAL, JobRequest, JobStatus
from qldm.jobs.runner import chunk_bounds, chunk_seed, default_chunk_size, execute
from qldm.jobs.store import JobStore
from tests.jobs.conftest import ry_request

BASE = {
    "circuit": {"n_qubits": 2, "ansatz": "basic_entangler"},
    "inputs": [[0.1, 0.2]],
    "weights": [0.3, 0.4],
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"circuit": {"n_qubits": 0}}, "circuit.n_qubits"),
        ({"inputs": [[0.1, 0.2, 0.3]]}, "inputs"),
        ({"inputs": [[0.1, float("nan")]]}, "inputs"),
        ({"weights": [0.3]}, "weights"),
        ({"weights": [0.3, float("inf")]}, "weights"),
        ({"noise_levels": [0.1]}, "noise_levels"),  # the channel is "none"
        ({"task": "sample"}, "task"),
        ({"task": "counts"}, "shots"),  # counts need shots
        ({"shots": 0}, "shots"),
        ({"backend": "cuda"}, "backend"),
        ({"options": {"chunk_size": 0}}, "options.chunk_size"),
        ({"options": {"resilience": 2}}, "options.resilience"),  # closed options
        ({"colour": "red"}, "colour"),
        (
            {
                "circuit": {
                    "qpy": "!!",
                    "observables": ["Z"],
                    "input_params": [],
                    "weight_params": [],
                }
            },
            "circuit.qpy",
        ),
    ],
)
def test_invalid_requests_name_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidSpecError) as err:
        JobRequest.parse({**BASE, **change})
    assert err.value.field == field, err.value


def test_status_and_request_basics() -> None:
    assert {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED} == TERMINAL
    assert JobStatus("queued") is JobStatus.QUEUED and str(JobStatus.RUNNING) == "running"
    req = JobRequest.parse(BASE)
    assert req.workload().inputs.shape == (1, 2) and req.n_levels == 1
    same = JobRequest.parse(req.model_dump_json())
    assert same == req and same.fingerprint() == req.fingerprint()
    assert JobRequest.parse({**BASE, "seed": 1}).fingerprint() != req.fingerprint()


def test_chunking_rules() -> None:
    req = ry_request([0.1] * 10, 0.2, options={"chunk_size": 4})
    assert chunk_bounds(req) == [(0, 4), (4, 8), (8, 10)]
    assert chunk_bounds(ry_request([0.1] * 10, 0.2)) == [(0, 10)]
    runtime = ry_request([0.1] * 10, 0.2, backend="fake:fake_fez", options={"chunk_size": 1})
    assert chunk_bounds(runtime) == [(0, 10)]  # one job = one runtime submission
    aer_jac = ry_request([0.1] * 10, 0.2, backend="aer", task="jacobian")
    assert default_chunk_size(aer_jac) < default_chunk_size(ry_request([0.1], 0.2, backend="aer"))
    assert chunk_seed(None, 3) is None
    assert chunk_seed(7, 0) == chunk_seed(7, 0) != chunk_seed(7, 1)


def _qpy_body() -> dict[str, object]:
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter

    from qldm.circuits.qpy import QpyCircuit

    x, w = Parameter("x"), Parameter("w")
    qc = QuantumCircuit(1)
    qc.ry(x, 0)
    qc.rx(w, 0)
    circuit = QpyCircuit.from_circuit(qc, ["Z"], input_params=[x], weight_params=[w])
    return {
        "circuit": circuit.model_dump(),
        "inputs": [[0.1], [0.5], [2.0]],
        "weights": [0.3],
        "backend": "aer",
    }


def test_qpy_requests_run_through_the_qpy_evaluator_and_survive_the_store(
    sqlite_url: str,
) -> None:
    body = _qpy_body()
    req = JobRequest.parse({**body, "task": "jacobian", "options": {"chunk_size": 2}})
    assert req.is_qpy
    work = req.workload()  # the workload names the QPY circuit; the backend picks the path
    assert work.kind == "qpy" and work.circuit is req.circuit and work.task == "jacobian"
    res = execute(req)
    xs, w = np.array([0.1, 0.5, 2.0]), 0.3
    assert res.values is not None and res.d_inputs is not None and res.d_weights is not None
    np.testing.assert_allclose(res.values[0, :, 0], np.cos(xs) * np.cos(w), atol=1e-10)
    np.testing.assert_allclose(res.d_inputs[0, :, 0, 0], -np.sin(xs) * np.cos(w), atol=1e-10)
    np.testing.assert_allclose(res.d_weights[0, :, 0, 0], -np.cos(xs) * np.sin(w), atol=1e-10)
    assert res.metadata["chunks"] == 2

    with pytest.raises(InvalidSpecError) as err:
        JobRequest.parse({**body, "inputs": [[0.1, 0.2]]})
    assert err.value.field == "inputs"
    with pytest.raises(InvalidSpecError) as err:
        JobRequest.parse({**body, "noise_levels": [0.1]})
    assert err.value.field == "noise_levels"

    store = JobStore(sqlite_url)
    store.migrate()
    job, _ = store.submit(tenant="t", request=req)
    assert store.request(job.id) == req
    store.close()


def test_counts_jobs_are_gathered_level_major_over_chunks() -> None:
    """RY(x) then RX(w) on one qubit: P(1) = (1 - cos x cos w) / 2; with x = 0, w = 0 every
    shot reads 0 and with x = pi every shot reads 1, at every noise level 0."""
    req = JobRequest.parse(
        {
            "circuit": {
                "n_qubits": 1,
                "ansatz": "basic_entangler",
                "channel": {"kind": "bit_flip", "strength": 0.0},
            },
            "inputs": [[0.0], [math.pi], [0.0], [math.pi], [0.0]],
            "weights": [0.0],
            "noise_levels": [0.0, 1.0],  # a full bit flip after the layer swaps the outcomes
            "task": "counts",
            "shots": 64,
            "seed": 5,
            "backend": "aer",
            "options": {"chunk_size": 2},
        }
    )
    res = execute(req)
    assert res.values is None and res.counts is not None and len(res.counts) == 2 * 5
    assert res.metadata["chunks"] == 3
    level_0 = ["0", "1", "0", "1", "0"]
    level_1 = ["1", "0", "1", "0", "1"]
    want = [*level_0, *level_1]  # index k * B + b
    assert res.counts == [{bit: 64} for bit in want]


class _RuntimeLikeBackend:
    """Follows the contract the IBM runtime backend uses: it reports its runtime job id
    through ``checkpoint`` before waiting, and re-attaches with ``resume_runtime_job_id``.
    (The real one needs IBM Runtime; this checks the runner's side of the contract.)"""

    name = "fake:contract"

    def __init__(self) -> None:
        self.calls: list[dict[str, object]] = []

    def run(self, work: object, context: Context = NO_CONTEXT) -> object:
        from qldm.backends.base import Evaluation, Workload

        assert isinstance(work, Workload)
        self.calls.append({"resume": context.resume_runtime_job_id, "options": context.options})
        if context.resume_runtime_job_id is None:
            assert context.checkpoint is not None
            context.checkpoint(f"rt-{len(self.calls)}")
            raise ConnectionError("the server died while the runtime job was queued")
        x = work.inputs[:, 0]
        w = work.weights[0]
        return Evaluation(values=(np.cos(x) * np.cos(w))[None, :, None])


def test_a_runtime_job_id_is_stored_before_the_wait_and_resumed_after_a_crash(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import qldm.jobs.runner as runner_module
    from qldm.jobs.runner import JobFailure, run_stored_job

    backend = _RuntimeLikeBackend()
    monkeypatch.setattr(runner_module, "_backend", lambda name, config=None: backend)
    store = JobStore(sqlite_url)
    store.migrate()
    req = ry_request([0.2, 0.9], 0.5, backend="fake:contract", options={"chunk_size": 1})
    job, _ = store.submit(tenant="t", request=req)
    [first] = store.claim(worker="w")
    with pytest.raises(JobFailure, match="server died"):
        run_stored_job(store.url, job.id, first.attempts)
    assert store.job(job.id).runtime_job_id == "rt-1"  # stored before the wait
    assert store.requeue_running() == {job.id: JobStatus.QUEUED}
    [second] = store.claim(worker="w")
    res = run_stored_job(store.url, job.id, second.attempts)
    assert backend.calls[-1]["resume"] == "rt-1"  # re-attached, not submitted again
    assert len(backend.calls) == 2  # runtime jobs are never split into chunks
    assert backend.calls[-1]["options"] == req.options
    assert res.values is not None
    np.testing.assert_allclose(res.values[0, :, 0], np.cos([0.2, 0.9]) * np.cos(0.5))
    store.close()
