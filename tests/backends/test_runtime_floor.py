"""The measured floor learned in the job's own execution mode (``floor="measured"`` with
``floor_shots``): one ``EstimatorV2`` job in the job's Session or Batch before the step's own,
kept per device, calibration and ISA key in the process and on disk, priced by ``estimate``.

``fake:`` runs it in local testing mode, the code path ``ibm:`` runs on hardware; ``ibm:`` is
exercised with a stand-in ``QiskitRuntimeService`` that serves a fake device (no network), as
``tests/backends/test_ibm_account.py`` does. The truth each learned floor is checked against is
the exact one: the same experiment on an Aer density-matrix simulation of the device's noise
model, which ``tests/mitigation/test_measured_floor.py`` checks against the delivered channel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import qiskit_ibm_runtime

from qldm.backends.base import Context, Workload
from qldm.backends.runtime import RuntimeBackend, fake_device
from qldm.circuits import PQCSpec
from qldm.errors import InvalidSpecError, JobCancelled
from qldm.jobs.model import JobOptions
from qldm.mitigation.measured_floor import cache_clear

SPEC = PQCSpec.parse(
    {"n_qubits": 2, "layers": 1, "channel": {"kind": "depolarizing", "strength": 0.04}}
)


def _work(seed: int = 1) -> Workload:
    return Workload.build(SPEC, [[0.1, 0.2]], np.zeros(SPEC.n_weights), shots=400, seed=seed)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    cache_clear()


def _exact(tmp_path: Path) -> np.ndarray:
    backend = RuntimeBackend("fake:manila", data_dir=tmp_path / "exact", floor="measured")
    floor = backend.prepare(_work()).noise["device_floor"]
    cache_clear()
    return np.asarray(floor)


def _recorded(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The execution mode (Session, Batch or backend) of every primitive built."""
    modes: list[Any] = []
    original = RuntimeBackend._primitive

    def primitive(self: RuntimeBackend, mode: Any, use_m3: bool, options: Any) -> Any:
        modes.append(mode)
        return original(self, mode, use_m3, options)

    monkeypatch.setattr(RuntimeBackend, "_primitive", primitive)
    return modes


@pytest.mark.parametrize("mode", ["session", "batch"])
def test_the_floor_is_learned_in_the_jobs_own_session_or_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    truth = _exact(tmp_path)
    modes = _recorded(monkeypatch)
    backend = RuntimeBackend(
        "fake:manila",
        data_dir=tmp_path,
        floor="measured",
        floor_shots=40_000,
        execution_mode=mode,
        mitigate_readout=False,
    )
    ev = backend.run(_work())
    noise = ev.metadata["noise"]
    learned = noise["floor_learning"]
    assert noise["floor_method"] == "measured" and learned["method"] == "in_job"
    assert learned["execution_mode"] == ev.metadata["execution_mode"] == mode
    assert learned["session_id"] == ev.metadata["session_id"]
    assert learned["job_id"] and learned["circuits"] == 18 and learned["shots"] == 40_000
    # the learning job and the step's job ran in one Session or Batch, not the bare backend
    assert len(modes) == 2 and modes[0] is modes[1]
    kind = qiskit_ibm_runtime.Session if mode == "session" else qiskit_ibm_runtime.Batch
    assert type(modes[0]) is kind
    # local testing mode adds N(0, 1/sqrt(shots)) to each exact value (Aer's EstimatorV2):
    # over 8 seeds the per-qubit strength's sd was 0.002 at 40,000 shots; 3 sd
    np.testing.assert_allclose(noise["device_floor"], truth, atol=0.006)
    injected = np.asarray(noise["injected"][0])
    np.testing.assert_allclose(injected.shape, (1, 2))
    assert np.all(injected > 0) and np.all(injected < 0.04)


def test_a_learned_floor_is_kept_and_a_restarted_server_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = RuntimeBackend("fake:manila", data_dir=tmp_path, floor="measured", floor_shots=2_000)
    first = backend.run(_work()).metadata["noise"]
    modes = _recorded(monkeypatch)
    again = backend.run(_work(2)).metadata["noise"]
    assert again["floor_learning"]["reused"] and len(modes) == 1  # only the step's own job
    cache_clear()  # a new process: the floor comes from <data_dir>/floors/
    restarted = RuntimeBackend(
        "fake:manila", data_dir=tmp_path, floor="measured", floor_shots=2_000
    )
    kept = restarted.prepare(_work(3)).noise
    assert kept["device_floor"] == first["device_floor"]
    assert kept["floor_learning"]["job_id"] == first["floor_learning"]["job_id"]
    # floors of other shot counts (and the exact one) are other floors
    other = RuntimeBackend("fake:manila", data_dir=tmp_path, floor="measured", floor_shots=500)
    assert other.prepare(_work()).noise["floor_method"] == "calibration"


def test_the_estimate_prices_the_experiment_until_it_was_learned(tmp_path: Path) -> None:
    backend = RuntimeBackend("fake:manila", data_dir=tmp_path, floor="measured", floor_shots=1_000)
    before = backend.estimate(_work())
    assert before.floor_learning is not None
    assert before.floor_learning["circuits"] == 18  # 2 depths x 8 preparations + 2 readout
    assert before.floor_learning["executions"] == 18_000
    assert before.floor_learning["qpu_seconds"] >= 18_000 * 250e-6
    backend.run(_work())
    assert backend.estimate(_work()).floor_learning is None
    calibration = RuntimeBackend("fake:manila", data_dir=tmp_path / "c")
    assert calibration.estimate(_work()).floor_learning is None


def test_cancelling_while_the_floor_is_learned_stops_before_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[Any] = []
    original = qiskit_ibm_runtime.EstimatorV2.run

    class Queued:
        def __init__(self, real: Any) -> None:
            self.real, self.cancelled = real, False

        def job_id(self) -> str:
            return "queued-learning-job"

        def status(self) -> str:
            return "CANCELLED" if self.cancelled else "QUEUED"

        def cancel(self) -> None:
            self.cancelled = True

        def usage(self) -> None:
            return None

    def run(self: Any, *args: Any, **kwargs: Any) -> Queued:
        runs.append(Queued(original(self, *args, **kwargs)))
        return runs[-1]

    monkeypatch.setattr(qiskit_ibm_runtime.EstimatorV2, "run", run)
    polls: list[int] = []

    def should_cancel() -> bool:
        polls.append(1)
        return len(polls) >= 2

    backend = RuntimeBackend(
        "fake:manila",
        data_dir=tmp_path,
        floor="measured",
        floor_shots=1_000,
        mitigate_readout=False,
    )
    with pytest.raises(JobCancelled):
        backend.run(_work(), Context(should_cancel=should_cancel))
    assert len(runs) == 1 and runs[0].cancelled  # the learning job; no step was submitted


def test_floor_shots_are_validated_and_enter_the_fingerprint(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpecError) as err:
        RuntimeBackend("fake:manila", data_dir=tmp_path, floor_shots=10)
    assert err.value.field == "floor_shots"
    measured = RuntimeBackend("fake:manila", data_dir=tmp_path, floor="measured")
    work = _work()
    exact = measured.digest(work)
    assert measured.digest(work, JobOptions(floor_shots=1_000)) != exact
    assert JobOptions(floor_shots=1_000).model_dump()["floor_shots"] == 1_000
    assert "floor_shots" not in JobOptions().model_dump()  # old fingerprints unchanged


class _Service(qiskit_ibm_runtime.QiskitRuntimeService):
    """Serves fake:manila as ``ibm_manila``, without the network."""

    def __init__(self, **kwargs: Any) -> None:
        self._device = fake_device("manila")

    def backend(self, name: str | None = None, instance: str | None = None, **kw: Any) -> Any:
        return self._device


def test_ibm_learns_the_floor_in_the_jobs_session_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(qiskit_ibm_runtime, "QiskitRuntimeService", _Service)
    truth = _exact(tmp_path)
    backend = RuntimeBackend(
        "ibm:ibm_manila",
        token="t" * 40,
        data_dir=tmp_path,
        floor="measured",
        floor_shots=40_000,
        execution_mode="session",
        mitigate_readout=False,
    )
    assert backend._floor_shots(None) == 40_000
    ev = backend.run(_work())
    learned = ev.metadata["noise"]["floor_learning"]
    assert learned["method"] == "in_job" and learned["shots"] == 40_000
    assert learned["session_id"] == ev.metadata["session_id"] is not None
    np.testing.assert_allclose(ev.metadata["noise"]["device_floor"], truth, atol=0.006)
    # ibm: never learns exactly offline: without floor_shots it takes the default
    default = RuntimeBackend("ibm:ibm_manila", token="t" * 40, data_dir=tmp_path, floor="measured")
    assert default.estimate(_work()).floor_learning["shots"] == 10_000  # type: ignore[index]


def test_a_state_level_job_subtracts_the_floor_measured_on_its_own_qubits(
    tmp_path: Path,
) -> None:
    from qldm.backends._runtime_states import run_states

    spec = PQCSpec.parse(
        {"n_qubits": 2, "layers": 1, "channel": {"kind": "depolarizing", "strength": 0.04}}
    )
    work = Workload.build(
        spec, [[0.1, 0.2]], np.zeros(spec.n_weights), shots=400, seed=1, output="probabilities"
    )
    calibration = RuntimeBackend("fake:manila", data_dir=tmp_path / "c")
    measured = RuntimeBackend(
        "fake:manila", data_dir=tmp_path / "m", floor="measured", floor_shots=40_000
    )
    a = run_states(calibration, work, Context()).metadata["noise"]
    b = run_states(measured, work, Context()).metadata["noise"]
    assert a["floor_method"] == "calibration" and b["floor_method"] == "measured"
    assert b["floor_learning"]["method"] == "in_job" and b["floor_learning"]["job_id"]
    assert np.asarray(b["injected"]).shape == np.asarray(a["injected"]).shape
    assert not np.allclose(a["device_floor"], b["device_floor"])


def test_ibms_noise_learner_runs_in_the_jobs_session_and_learns_the_floor(
    tmp_path: Path,
) -> None:
    spec = PQCSpec.parse(
        {"n_qubits": 2, "layers": 1, "channel": {"kind": "phase_flip", "strength": 0.04}}
    )
    work = Workload.build(spec, [[0.1, 0.2]], np.zeros(spec.n_weights), shots=400, seed=1)
    exact = RuntimeBackend("fake:manila", data_dir=tmp_path / "e", floor="measured")
    truth = np.asarray(exact.prepare(work).noise["device_floor"])
    cache_clear()
    backend = RuntimeBackend(
        "fake:manila",
        data_dir=tmp_path,
        floor="noise_learner",
        noise_learner={"num_randomizations": 16, "layer_pair_depths": [0, 4, 16]},
        execution_mode="session",
        mitigate_readout=False,
    )
    ev = backend.run(work)
    noise = ev.metadata["noise"]
    learned = noise["floor_learning"]
    assert noise["floor_method"] == "measured" and learned["method"] == "noise_learner"
    assert learned["session_id"] == ev.metadata["session_id"] is not None
    assert learned["job_id"] and learned["circuits"] > 0 and learned["not_covered"]
    # the learner sees only the boxed CNOT layer: on the CNOT's control the two-layer ratio
    # reads f(X_c X_t) where the learner splits f(X_c) f(X_c X_t) evenly (~1e-3 here), see
    # tests/mitigation/test_learned_floor.py; the target agrees closely
    np.testing.assert_allclose(noise["device_floor"], truth, atol=2e-3)
    assert backend.run(work).metadata["noise"]["floor_learning"]["reused"]
    damping = PQCSpec.parse(
        {"n_qubits": 1, "layers": 1, "channel": {"kind": "amplitude_damping", "strength": 0.2}}
    )
    with pytest.raises(InvalidSpecError) as err:
        backend.run(Workload.build(damping, [[0.1]], np.zeros(damping.n_weights), shots=100))
    assert err.value.field == "options.floor"
    with pytest.raises(InvalidSpecError) as err:
        RuntimeBackend("fake:manila", data_dir=tmp_path, noise_learner={"twirls": 3})
    assert err.value.field == "noise_learner"


def test_a_noise_learner_job_for_amplitude_damping_is_refused_at_submission() -> None:
    from qldm.jobs.model import JobRequest

    base = {
        "backend": "fake:manila",
        "circuit": {"n_qubits": 1, "channel": {"kind": "amplitude_damping", "strength": 0.2}},
        "inputs": [[0.1]],
        "weights": [0.0, 0.0],
    }
    with pytest.raises(InvalidSpecError) as err:
        JobRequest.parse({**base, "options": {"floor": "noise_learner"}})
    assert err.value.field == "options.floor"
    assert JobRequest.parse({**base, "options": {"floor": "measured", "floor_shots": 1000}})
