"""The backend contract: ``backend.run(workload, context)``, capabilities declared per backend,
refusals naming ``task`` or ``circuit``, and the runner choosing paths by the workload."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter

from qldm.backends import capabilities, get_backend
from qldm.backends.aer import AerBackend
from qldm.backends.aer_device import AerDeviceBackend
from qldm.backends.base import (
    DEVICE,
    NO_CONTEXT,
    SIMULATOR,
    CircuitKind,
    Context,
    Task,
    Workload,
)
from qldm.backends.counts import CountsBackend
from qldm.backends.exact import ExactBackend
from qldm.backends.qpy_aer import QpyAerBackend
from qldm.backends.runtime import RuntimeBackend
from qldm.circuits import PQCSpec
from qldm.circuits.qpy import QpyCircuit
from qldm.errors import BackendLimitError, InvalidSpecError, UnknownBackendError
from qldm.jobs.model import JobOptions, JobRequest
from qldm.jobs.runner import execute, job_context

SPEC = PQCSpec.parse({"n_qubits": 1, "layers": 1})


def _ry_qpy() -> QpyCircuit:
    t, s = Parameter("t"), Parameter("s")
    qc = QuantumCircuit(1)
    qc.ry(t, 0)
    qc.ry(s, 0)
    return QpyCircuit.from_circuit(qc, ["Z"], input_params=[t], weight_params=[s])


@pytest.mark.parametrize(
    "cls",
    [ExactBackend, AerBackend, RuntimeBackend, AerDeviceBackend, CountsBackend, QpyAerBackend],
)
def test_every_backend_has_exactly_the_one_run_signature(cls: type) -> None:
    params = list(inspect.signature(cls.run).parameters.values())
    assert [p.name for p in params] == ["self", "work", "context"]
    assert params[2].default is NO_CONTEXT
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)


def test_capabilities_by_name_are_the_classes_own(tmp_path: Path) -> None:
    for name, cls in (("exact", ExactBackend), ("aer", AerBackend)):
        assert capabilities(name) is cls.capabilities is SIMULATOR
        assert type(get_backend(name)) is cls
    for name in ("aer:manila", "fake:manila", "ibm:ibm_torino"):
        assert capabilities(name) is DEVICE
    assert type(get_backend("aer:manila", data_dir=tmp_path)).capabilities is DEVICE
    assert type(get_backend("fake:manila", data_dir=tmp_path)).capabilities is DEVICE
    assert SIMULATOR.tasks == {Task.EXPECTATION, Task.JACOBIAN, Task.COUNTS, Task.METRIC_TENSOR}
    # devices measure the block-diagonal metric only (a full one is refused naming ``metric``)
    assert DEVICE.tasks == {Task.EXPECTATION, Task.JACOBIAN, Task.METRIC_TENSOR}
    assert DEVICE.circuits == {CircuitKind.SPEC}
    with pytest.raises(UnknownBackendError) as err:
        capabilities("annealer")
    assert err.value.field == "backend"


def test_device_backends_refuse_counts_and_qpy_naming_the_field(tmp_path: Path) -> None:
    backend = RuntimeBackend("fake:manila", data_dir=tmp_path)
    counts = Workload.build(SPEC, [[0.1]], [0.0, 0.0], task="counts", shots=10)
    with pytest.raises(BackendLimitError) as err:
        backend.run(counts)
    assert err.value.field == "task"
    qpy = Workload.build(_ry_qpy(), [[0.1]], [0.2])
    with pytest.raises(BackendLimitError) as err:
        AerDeviceBackend("manila", data_dir=tmp_path).run(qpy)
    assert err.value.field == "circuit"
    with pytest.raises(BackendLimitError) as err:
        CountsBackend().run(qpy)  # values of a QPY circuit are not counts
    assert err.value.field == "task"
    with pytest.raises(BackendLimitError) as err:
        QpyAerBackend().run(Workload.build(SPEC, [[0.1]], [0.0, 0.0]))
    assert err.value.field == "circuit"


def test_the_runner_refuses_what_the_backend_does_not_run(tmp_path: Path) -> None:
    """No "not available" fallback: the device backend's own refusal reaches the job."""
    body = {
        "circuit": SPEC.model_dump(mode="json"),
        "task": "counts",
        "backend": "aer:manila",
        "inputs": [[0.1]],
        "weights": [0.0, 0.0],
        "shots": 10,
    }
    with pytest.raises(BackendLimitError) as err:
        execute(JobRequest.parse(body))
    assert err.value.field == "task"


def test_workloads_name_circuit_and_task() -> None:
    qpy = _ry_qpy()
    work = Workload.build(qpy, [[0.1], [0.2]], [0.3], task="jacobian")
    assert work.kind is CircuitKind.QPY and work.circuit is qpy and work.task is Task.JACOBIAN
    with pytest.raises(BackendLimitError) as err:
        _ = work.spec
    assert err.value.field == "circuit"
    for kwargs, field in (
        ({"task": "sample"}, "task"),
        ({"task": "counts"}, "shots"),  # counts need shots
        ({"seed": -1}, "seed"),
        ({"shots": 0}, "shots"),
        ({"noise_levels": [0.1]}, "noise_levels"),  # QPY circuits carry their own noise
    ):
        with pytest.raises(InvalidSpecError) as info:
            Workload.build(qpy, [[0.1]], [0.3], **kwargs)  # type: ignore[arg-type]
        assert info.value.field == field
    with pytest.raises(InvalidSpecError) as info:
        Workload.build("circuit", [[0.1]], [0.3])  # type: ignore[arg-type]
    assert info.value.field == "circuit"


@pytest.mark.parametrize("name", ["exact", "aer"])
def test_simulators_take_counts_and_qpy_as_regular_paths(name: str) -> None:
    backend = get_backend(name)
    qpy = backend.run(Workload.build(_ry_qpy(), [[0.1], [0.9]], [0.4], task="jacobian"))
    angles = np.array([0.5, 1.3])
    assert qpy.values is not None and qpy.d_weights is not None
    np.testing.assert_allclose(qpy.values[0, :, 0], np.cos(angles), atol=1e-10)
    np.testing.assert_allclose(qpy.d_weights[0, :, 0, 0], -np.sin(angles), atol=1e-10)
    assert qpy.metadata["backend"] == name and qpy.metadata["circuit"] == "qpy"
    counts = backend.run(
        Workload.build(SPEC, [[0.0], [np.pi]], [0.0, 0.0], task="counts", shots=20, seed=1)
    )
    assert counts.values is None and counts.counts == [{"0": 20}, {"1": 20}]
    assert counts.metadata["backend"] == name and counts.metadata["levels"] == 1


def test_in_process_callers_pass_nothing_or_an_empty_context() -> None:
    work = Workload.build(SPEC, [[0.3]], [0.1, 0.2], task="jacobian")
    a = ExactBackend().run(work)
    b = ExactBackend().run(work, Context())
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.d_weights, b.d_weights)  # type: ignore[arg-type]


def test_the_runner_builds_the_context_from_the_request() -> None:
    seen: list[str] = []
    request = JobRequest.parse(
        {
            "circuit": SPEC.model_dump(mode="json"),
            "backend": "fake:manila",
            "inputs": [[0.1]],
            "weights": [0.0, 0.0],
            "run_id": "r1",
            "options": {"allow_noise_floor": True},
        }
    )
    ctx = job_context(request, checkpoint=seen.append, resume_runtime_job_id="rt-1")
    assert ctx.options == JobOptions(allow_noise_floor=True)
    assert ctx.run_id == "r1" and ctx.run_session is not None
    assert ctx.resume_runtime_job_id == "rt-1" and ctx.checkpoint == seen.append
    alone = job_context(request.model_copy(update={"run_id": None}))
    assert alone.run_session is None and alone.m3_store is None
