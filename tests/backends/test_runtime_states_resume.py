"""A resumed state-level runtime job (``context.resume_runtime_job_id``, a restarted server)
re-attaches instead of submitting again: it takes the outcome distributions kept under its
runtime job id before anything is measured, refuses those of another workload, on ``ibm:``
re-attaches to the runtime job itself (here a stand-in service that hands back the finished
local job), and on ``fake:`` without a kept result submits again and says so.

Every resume runs with a ``SamplerV2.run`` that raises, so nothing can be submitted unseen;
the resumed values are compared with those of the job that ran (the same counts, so equal to
the last bit)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qldm.backends._runtime_m3 import M3Step
from qldm.backends._runtime_states import _M3Steps
from qldm.backends._runtime_steps import Submitted
from qldm.backends.base import Context, Evaluation, Workload
from qldm.backends.runtime import RuntimeBackend, fake_device
from qldm.circuits import PQCSpec
from qldm.errors import BackendError
from qldm.mitigation.m3 import CalibrationCache, CalibrationCircuits

SHOTS = 400
TIMESTEP = PQCSpec.parse(
    {"n_qubits": 2, "ansatz": "ry_rz_brickwork", "layers": 1, "timestep": {"features": 1}}
)
COMPLEX = PQCSpec.parse({"n_qubits": 2, "encoding": "complex_amplitude", "ansatz": "mps"})
CASES: dict[str, tuple[PQCSpec, dict[str, Any]]] = {
    "probabilities": (TIMESTEP, {"task": "jacobian", "output": "probabilities"}),
    "fidelity": (COMPLEX, {"output": "fidelity"}),
    "metric": (TIMESTEP, {"task": "metric_tensor", "metric": "block_diagonal"}),
}


def _work(case: str, *, seed: int = 0) -> Workload:
    spec, kw = CASES[case]
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, spec.n_inputs))
    w = 0.7 * rng.normal(size=spec.n_weights)
    if kw.get("output") == "fidelity":
        kw = {**kw, "targets": rng.normal(size=(2, 2 * 2**spec.n_qubits))}
    return Workload.build(spec, x, w, shots=SHOTS, seed=seed, **kw)


class _Jobs:
    """Every ``SamplerV2`` job submitted, by runtime job id; ``closed`` makes ``run`` raise."""

    def __init__(self) -> None:
        self.by_id: dict[str, Any] = {}
        self.closed = False


@pytest.fixture
def sampler(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Jobs]:
    from qiskit_ibm_runtime import SamplerV2

    jobs = _Jobs()
    original = SamplerV2.run

    def run(self: Any, *args: Any, **kw: Any) -> Any:
        if jobs.closed:
            raise AssertionError("a resumed job submitted again")
        job = original(self, *args, **kw)
        jobs.by_id[str(job.job_id())] = job
        return job

    monkeypatch.setattr(SamplerV2, "run", run)
    yield jobs


def _nothing_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    """No calibration refresh and no M3 calibration from here on."""
    import qldm.backends._runtime_states as states

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("measured again on resume")

    monkeypatch.setattr(states, "plan_calibration", refused)
    monkeypatch.setattr(RuntimeBackend, "refresh_calibration", refused)


def _same(again: Evaluation, first: Evaluation) -> None:
    for name in ("values", "d_inputs", "d_weights", "values_std", "d_inputs_std", "d_weights_std"):
        want = getattr(first, name)
        if want is None:
            assert getattr(again, name) is None
        else:
            np.testing.assert_array_equal(getattr(again, name), want)
    for key in ("raw_values", "readout_mitigation", "fingerprint", "circuits", "noise"):
        assert again.metadata.get(key) == first.metadata.get(key), key


@pytest.mark.parametrize("case", list(CASES))
def test_a_resumed_state_job_takes_its_kept_result_and_submits_nothing(
    tmp_path: Path, sampler: _Jobs, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    work = _work(case)
    ids: list[str] = []
    first = RuntimeBackend("fake:manila", data_dir=tmp_path, instances=2).run(
        work, Context(checkpoint=ids.append)
    )
    assert ids == [first.metadata["runtime_job_id"]] and list(sampler.by_id) == ids
    assert first.metadata["submissions"] == 1 and first.metadata["resumed"] is False
    assert first.metadata["m3_calibration"][0]["in_job"] is True
    sampler.closed = True
    _nothing_measured(monkeypatch)
    restarted = RuntimeBackend("fake:manila", data_dir=tmp_path, instances=2)
    again = restarted.run(work, Context(resume_runtime_job_id=ids[0]))
    meta = again.metadata
    assert meta["submissions"] == 0 and meta["resumed"] is True
    assert meta["runtime_job_id"] == ids[0] and "resubmitted" not in meta
    assert meta["calibration_refreshed"] is False and "m3_calibration" not in meta
    _same(again, first)


def test_a_kept_result_of_another_workload_is_refused(
    tmp_path: Path, sampler: _Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = RuntimeBackend("fake:manila", data_dir=tmp_path, instances=2)
    ids: list[str] = []
    backend.run(_work("probabilities"), Context(checkpoint=ids.append))
    expectation = Workload.build(PQCSpec.parse({"n_qubits": 1}), [[0.3]], [0.1, 0.2], shots=200)
    backend.run(expectation, Context(checkpoint=ids.append))  # kept by the expectation path
    sampler.closed = True
    _nothing_measured(monkeypatch)
    others = [
        (_work("probabilities", seed=1), ids[0]),  # other inputs, weights and seed
        (_work("fidelity"), ids[0]),  # other output
        (_work("probabilities"), ids[1]),  # an expectation job's id
    ]
    for work, job_id in others:
        with pytest.raises(BackendError, match="different workload"):
            backend.run(work, Context(resume_runtime_job_id=job_id))


def test_a_local_job_without_a_kept_result_is_submitted_again_and_kept(
    tmp_path: Path, sampler: _Jobs
) -> None:
    backend = RuntimeBackend("fake:manila", data_dir=tmp_path, instances=2)
    ids: list[str] = []
    lost = backend.run(
        _work("fidelity"), Context(resume_runtime_job_id="lost-local-job", checkpoint=ids.append)
    )
    meta = lost.metadata
    assert meta["submissions"] == 1 and meta["resumed"] is False and meta["resubmitted"] is True
    assert "local testing mode" in meta["resubmitted_reason"]
    assert ids == [meta["runtime_job_id"]] != ["lost-local-job"]
    sampler.closed = True
    again = backend.run(_work("fidelity"), Context(resume_runtime_job_id=ids[0]))
    assert again.metadata["submissions"] == 0
    np.testing.assert_array_equal(again.values, lost.values)


class _Service:
    """Stands in for ``QiskitRuntimeService``: ``job(id)`` hands back the finished local job
    (what ``service.job`` gives a restarted ``ibm:`` server)."""

    def __init__(self, jobs: _Jobs) -> None:
        self.jobs = jobs
        self.asked: list[str] = []

    def job(self, job_id: str) -> Any:
        self.asked.append(job_id)
        return self.jobs.by_id[job_id]


def _as_ibm(backend: RuntimeBackend, service: _Service) -> RuntimeBackend:
    """``fake:manila`` taking the ``ibm:`` branch of a resume, with a stand-in service."""
    backend.kind = "ibm"
    backend._service = service
    return backend


@pytest.mark.parametrize("carried", [True, False])
def test_ibm_reattaches_to_the_runtime_job_without_a_kept_result(
    tmp_path: Path, sampler: _Jobs, carried: bool
) -> None:
    """``carried``: the job measured its M3 calibration in its own PUBs (re-attached by a
    server with no calibration stored); else it was submitted with a stored calibration, and
    the restarted server, where that one has aged past ``m3_max_age_s``, uses it again rather
    than measuring a new one."""
    work = _work("probabilities")
    data = tmp_path / "first"
    backend = RuntimeBackend("fake:manila", data_dir=data, instances=2)
    if not carried:
        backend.run(work)  # measures and stores the calibration
    ids: list[str] = []
    first = backend.run(work, Context(checkpoint=ids.append))
    assert first.metadata["m3_calibration"][0]["in_job"] is carried
    sampler.closed = True
    service = _Service(sampler)
    if carried:
        restarted = RuntimeBackend("fake:manila", data_dir=tmp_path / "second", instances=2)
    else:
        (data / "runtime_results" / f"{ids[0]}.npz").unlink()
        restarted = RuntimeBackend("fake:manila", data_dir=data, instances=2, m3_max_age_s=0.0)
    again = _as_ibm(restarted, service).run(work, Context(resume_runtime_job_id=ids[0]))
    assert service.asked == ids
    meta = again.metadata
    assert meta["submissions"] == 0 and meta["resumed"] is True and "resubmitted" not in meta
    assert meta["runtime_job_id"] == ids[0] and meta["runtime_statuses"] == ["done"]
    calibration = meta["m3_calibration"][0]
    assert calibration["in_job"] is carried and calibration["measured"] is carried
    _same(again, first)
    # re-attached once, the result is kept: the next resume does not ask the runtime
    again = restarted.run(work, Context(resume_runtime_job_id=ids[0]))
    assert service.asked == ids and again.metadata["submissions"] == 0
    np.testing.assert_array_equal(again.values, first.values)


class _Queued:
    """A runtime job that stays ``QUEUED`` until ``released`` (a queue), then answers as the
    real local job it wraps; ``cancel()`` cancels it."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.cancelled = self.released = False

    def job_id(self) -> str:
        return str(self.real.job_id())

    def status(self) -> str:
        if self.cancelled:
            return "CANCELLED"
        return str(self.real.status().name) if self.released else "QUEUED"

    def cancel(self) -> None:
        self.cancelled = True

    def result(self) -> Any:
        return self.real.result()


def test_a_queued_state_job_reports_cancels_times_out_and_is_reattached_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The expectation path's wait serves state jobs: the runtime state goes to ``on_status``,
    a cancel request cancels the runtime job, the result timeout ends the wait with the job's id
    checkpointed, and a restarted ``ibm:`` server re-attaches to that job once it ran (its
    probabilities within shot and device noise of the exact ones)."""
    from qiskit_ibm_runtime import SamplerV2

    from qldm.backends import get_backend
    from qldm.errors import JobCancelled

    jobs = _Jobs()
    original = SamplerV2.run

    def run(self: Any, *args: Any, **kw: Any) -> _Queued:
        if jobs.closed:
            raise AssertionError("a resumed job submitted again")
        job = _Queued(original(self, *args, **kw))
        jobs.by_id[job.job_id()] = job
        return job

    monkeypatch.setattr(SamplerV2, "run", run)
    spec = TIMESTEP
    rng = np.random.default_rng(3)
    x, w = rng.normal(size=(2, spec.n_inputs)), rng.normal(size=spec.n_weights)
    work = Workload.build(spec, x, w, output="probabilities", shots=2000, seed=3)
    backend = RuntimeBackend("fake:manila", data_dir=tmp_path, instances=2, result_timeout_s=0.2)
    polls: list[int] = []

    def should_cancel() -> bool:
        polls.append(1)
        return len(polls) >= 2

    with pytest.raises(JobCancelled, match="cancelled too"):
        backend.run(work, Context(should_cancel=should_cancel))
    [cancelled] = jobs.by_id.values()
    assert cancelled.cancelled
    ids: list[str] = []
    seen: list[str] = []
    with pytest.raises(BackendError, match=r"still queued after 0\.2 s"):
        backend.run(work, Context(checkpoint=ids.append, on_status=seen.append))
    assert seen == ["queued"] and len(ids) == 1 and ids[0] in jobs.by_id
    jobs.by_id[ids[0]].released = True  # it left the queue while the server was down
    jobs.closed = True
    restarted = _as_ibm(
        RuntimeBackend("fake:manila", data_dir=tmp_path, instances=2), _Service(jobs)
    )
    seen.clear()
    again = restarted.run(work, Context(resume_runtime_job_id=ids[0], on_status=seen.append))
    assert again.metadata["submissions"] == 0 and again.metadata["resumed"] is True
    assert seen[-1] == "done" and "queued" not in seen
    want = get_backend("exact").run(work).values
    assert again.values is not None and want is not None
    assert np.abs(again.values - want).max() < 0.08


def test_a_reattached_job_with_other_calibration_pubs_than_planned_is_refused(
    tmp_path: Path,
) -> None:
    """Calibration results are told apart from the levels by count only (``joined``): a
    re-attached job that carried some, but not the number planned now, cannot be read."""
    device = fake_device("manila")
    circuits = CalibrationCircuits.build(device, [0, 1], shots=100)
    step = M3Step(CalibrationCache(tmp_path, shots=100), "file", None, circuits, None)
    steps = _M3Steps([((0, 1), step)])
    assert len(steps.pubs()) == len(circuits.circuits) > 1
    carried = Submitted("job-1", None, None, 0, resumed=True, extra=["only one"])
    with pytest.raises(BackendError, match="carried 1 M3 calibration PUBs"):
        steps.finish(carried, device, ibm=True)
