"""The runtime path on fake devices (local testing mode): one submission per training step,
re-attachment after a restart, calibrated noise subtraction, the noise floor."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qldm.backends import get_backend
from qldm.backends.base import Context, Workload
from qldm.backends.exact import ExactBackend
from qldm.backends.runtime import RuntimeBackend
from qldm.circuits import PQCSpec
from qldm.errors import BackendError, InvalidSpecError, NoiseFloorError, UnknownBackendError
from qldm.jobs.model import JobOptions


class _Calls:
    """Counts calls of a primitive's ``run`` (the real method still runs)."""

    def __init__(self) -> None:
        self.estimator = 0
        self.sampler = 0


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Calls]:
    import qiskit_ibm_runtime

    seen = _Calls()
    for cls, attr in (
        (qiskit_ibm_runtime.EstimatorV2, "estimator"),
        (qiskit_ibm_runtime.SamplerV2, "sampler"),
    ):
        original = cls.run

        def counted(self: Any, *args: Any, _o: Any = original, _a: str = attr, **kw: Any) -> Any:
            setattr(seen, _a, getattr(seen, _a) + 1)
            return _o(self, *args, **kw)

        monkeypatch.setattr(cls, "run", counted)
    yield seen


def _spec(kind: str, strength: float, *, n: int = 1, layers: int = 2) -> PQCSpec:
    return PQCSpec.parse(
        {"n_qubits": n, "layers": layers, "channel": {"kind": kind, "strength": strength}}
    )


def test_unknown_fake_device_lists_some(tmp_path: Path) -> None:
    with pytest.raises(UnknownBackendError) as info:
        RuntimeBackend("fake:nowhere", data_dir=tmp_path)
    assert info.value.field == "backend"
    assert "fake:" in str(info.value)
    assert isinstance(get_backend("fake:fake_lima", data_dir=tmp_path), RuntimeBackend)


def test_options_are_validated(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpecError) as info:
        RuntimeBackend("fake:lima", resilience={"measure_mitigation": True}, data_dir=tmp_path)
    assert info.value.field == "resilience"
    with pytest.raises(InvalidSpecError) as info:
        RuntimeBackend("fake:lima", resilience={"bogus": 1}, data_dir=tmp_path)
    assert info.value.field == "resilience.bogus"
    with pytest.raises(InvalidSpecError):
        RuntimeBackend("fake:lima", instances=0, data_dir=tmp_path)


def test_training_step_with_k_levels_is_one_estimator_submission(
    tmp_path: Path, calls: _Calls
) -> None:
    spec = _spec("depolarizing", 0.1)
    levels = [0.03, 0.5]
    x, w = [[0.0], [np.pi]], [0.1, 0.2, -0.1, 0.3]
    backend = RuntimeBackend("fake:lima", data_dir=tmp_path, mitigate_readout=False, instances=16)
    ev = backend.run(
        Workload.build(spec, x, w, noise_levels=levels, task="jacobian", shots=2000, seed=3)
    )
    assert calls.estimator == 1 and calls.sampler == 0
    meta = ev.metadata
    assert meta["submissions"] == 1 and meta["pubs"] == 2
    s = 2 * (1 + 2 * 5)  # B (1 + T): 1 input + 4 weights, two shift terms each
    assert meta["circuits"] == 2 * 16 * s
    assert meta["seconds_in_session"] > 0 and meta["seconds_outside"] > 0
    exact = ExactBackend().run(Workload.build(spec, x, w, noise_levels=levels, task="jacobian"))
    assert ev.values.shape == exact.values.shape == (2, 2, 1)
    assert ev.d_weights is not None and ev.d_weights.shape == (2, 2, 1, 4)
    # Each level landed on its own PUB: the Bloch vector shrinks by (1 - s)^2 (0.94, 0.25).
    # At s = 0.5 every Pauli has probability 1/8, so 16 scrambled-Sobol instances hold each
    # Pauli twice: no instance spread. Left are 2,000 shots and unmitigated readout error
    # (lima's assignment errors shrink |<Z>| by up to ~0.12 near +-1).
    np.testing.assert_allclose(ev.values, exact.values, atol=0.15)
    assert np.all(np.abs(ev.values[1]) < np.abs(ev.values[0]) - 0.4)


def test_m3_step_is_one_sampler_submission(tmp_path: Path, calls: _Calls) -> None:
    spec = _spec("bit_flip", 0.1, n=2, layers=1)
    backend = RuntimeBackend("fake:quito", data_dir=tmp_path, instances=8)
    work = Workload.build(spec, [[0.1, 0.2]], np.zeros(4), noise_levels=[0.1, 0.2], shots=800)
    first = backend.run(work)  # the M3 calibration circuits ride in the step's own job
    assert calls.sampler == 1 and calls.estimator == 0
    assert first.metadata["submissions"] == 1 and first.metadata["m3_calibration"]["in_job"]
    assert first.metadata["m3_calibration"]["runtime_job_id"] == first.metadata["runtime_job_id"]
    calls.sampler = 0
    ev = backend.run(work)  # the stored calibration: the job carries no calibration circuits
    assert calls.sampler == 1 and calls.estimator == 0
    assert ev.metadata["submissions"] == 1 and ev.metadata["primitive"] == "sampler"
    assert ev.metadata["m3_calibration"]["measured"] is False


def test_restart_reattaches_instead_of_resubmitting(tmp_path: Path, calls: _Calls) -> None:
    spec = _spec("bit_flip", 0.1)
    work = Workload.build(spec, [[0.5]], [0.1, 0.2, 0.3, 0.4], shots=1000, seed=5)
    ids: list[str] = []
    first = RuntimeBackend("fake:manila", data_dir=tmp_path, instances=4).run(
        work, Context(checkpoint=ids.append)
    )
    assert len(ids) == 1 and first.metadata["runtime_job_id"] == ids[0]
    submitted = calls.sampler
    # A restarted server: a new backend object, the runtime job id from the job store.
    restarted = RuntimeBackend("fake:manila", data_dir=tmp_path, instances=4)
    again = restarted.run(work, Context(resume_runtime_job_id=ids[0]))
    assert calls.sampler == submitted  # nothing submitted
    assert again.metadata["resumed"] is True and again.metadata["submissions"] == 0
    np.testing.assert_array_equal(again.values, first.values)
    other = Workload.build(spec, [[0.6]], [0.1, 0.2, 0.3, 0.4], shots=1000, seed=5)
    with pytest.raises(BackendError, match="different workload"):
        restarted.run(other, Context(resume_runtime_job_id=ids[0]))
    # A local job that never finished cannot be re-attached: submitted again, and said so.
    lost = restarted.run(work, Context(resume_runtime_job_id="lost-local-job"))
    assert lost.metadata["resubmitted"] is True and lost.metadata["submissions"] == 1


@pytest.mark.parametrize(
    ("device", "kind", "strength", "layers", "x", "expected"),
    [
        # RY(0) then one layer of bit flip p: <Z> = 1 - 2p.
        ("manila", "bit_flip", 0.2, 1, 0.0, 1 - 2 * 0.2),
        ("quito", "bit_flip", 0.2, 1, 0.0, 1 - 2 * 0.2),
        # Depolarizing s shrinks the Bloch vector by 1 - s.
        ("lima", "depolarizing", 0.3, 1, 0.0, 1 - 0.3),
        # RY(pi) = |1>, then damping gamma twice: P(1) = (1 - gamma)^2, <Z> = 1 - 2 P(1).
        ("manila", "amplitude_damping", 0.2, 2, np.pi, 1 - 2 * (1 - 0.2) ** 2),
        ("quito", "amplitude_damping", 0.3, 2, np.pi, 1 - 2 * (1 - 0.3) ** 2),
    ],
)
def test_total_channel_after_subtraction_is_the_requested_one(
    tmp_path: Path,
    device: str,
    kind: str,
    strength: float,
    layers: int,
    x: float,
    expected: float,
) -> None:
    spec = _spec(kind, strength, layers=layers)
    backend = RuntimeBackend(f"fake:{device}", data_dir=tmp_path, instances=128)
    ev = backend.run(Workload.build(spec, [[x]], np.zeros(2 * layers), shots=4096, seed=17))
    floor = ev.metadata["noise"]["device_floor"][0]
    assert 0.0 < floor < strength
    # M3-mitigated; shot noise of 4,096 shots has std <= 0.016. One noise slot (one layer):
    # each Pauli's frequency over the 128 scrambled-Sobol instances is within 1/128 of its
    # probability (<= 0.016 on <Z>). Amplitude damping is one exact instance.
    assert ev.values[0, 0, 0] == pytest.approx(expected, abs=0.05)


def test_target_below_the_floor_is_refused(tmp_path: Path) -> None:
    spec = _spec("bit_flip", 1e-5)
    backend = RuntimeBackend("fake:manila", data_dir=tmp_path)
    work = Workload.build(spec, [[0.0]], np.zeros(4), shots=500, seed=1)
    with pytest.raises(NoiseFloorError) as info:
        backend.run(work)
    assert info.value.field == "channel.strength"
    assert "floor" in str(info.value)

    ev = RuntimeBackend("fake:manila", data_dir=tmp_path, instances=2).run(
        work, Context(options=JobOptions(allow_noise_floor=True))
    )
    assert ev.metadata["noise"]["injected"] == [[[0.0], [0.0]]]


def test_job_options_reach_the_runtime_backend_through_the_runner(tmp_path: Path) -> None:
    from qldm.backends.runtime import RuntimeConfig
    from qldm.jobs.model import JobRequest
    from qldm.jobs.runner import execute

    config = RuntimeConfig(data_dir=tmp_path)  # what the server's executor passes
    body = {
        "circuit": {"n_qubits": 1, "layers": 1, "channel": {"kind": "bit_flip", "strength": 1e-5}},
        "task": "expectation",
        "backend": "fake:manila",
        "inputs": [[0.0]],
        "weights": [0.0, 0.0],
        "shots": 400,
        "seed": 3,
    }
    with pytest.raises(NoiseFloorError):
        execute(JobRequest.parse(body), runtime_config=config)
    result = execute(
        JobRequest.parse({**body, "options": {"allow_noise_floor": True}}), runtime_config=config
    )
    assert result.metadata["noise"]["injected"][0][0] == [0.0]


@pytest.mark.skipif(
    not os.environ.get("QLDM_IBM_TOKEN"),
    reason="no IBM Quantum token configured (QLDM_IBM_TOKEN); ibm: runs need a real account",
)
def test_ibm_device_runs_one_submission(tmp_path: Path) -> None:  # pragma: no cover
    device = os.environ.get("QLDM_IBM_DEVICE", "ibm_brisbane")
    backend = RuntimeBackend(
        f"ibm:{device}",
        data_dir=tmp_path,
        token=os.environ["QLDM_IBM_TOKEN"],
        channel=os.environ.get("QLDM_IBM_CHANNEL"),
        instance=os.environ.get("QLDM_IBM_INSTANCE"),
    )
    spec = PQCSpec.parse({"n_qubits": 1, "layers": 1})
    ev = backend.run(Workload.build(spec, [[0.0]], [0.0, 0.0], shots=1000))
    assert ev.metadata["submissions"] == 1
    assert ev.values[0, 0, 0] == pytest.approx(1.0, abs=0.1)


def test_resilience_options_reach_the_runtime_estimator() -> None:
    from qiskit_ibm_runtime import EstimatorV2

    from qldm.backends.runtime import ResilienceOptions, fake_device

    estimator = EstimatorV2(mode=fake_device("manila"))  # options only; nothing is run
    ResilienceOptions(
        resilience_level=2,
        measure_mitigation=True,
        zne_mitigation=True,
        zne_noise_factors=(1.0, 3.0, 5.0),
        gate_twirling=True,
        measure_twirling=True,
    ).apply(estimator.options)
    options = estimator.options
    assert options.resilience_level == 2
    assert options.resilience.measure_mitigation and options.resilience.zne_mitigation
    assert tuple(options.resilience.zne.noise_factors) == (1.0, 3.0, 5.0)
    assert options.twirling.enable_gates and options.twirling.enable_measure


def test_choose_layout_is_the_best_connected_chain() -> None:
    import itertools

    from qldm.backends.runtime import fake_device
    from qldm.circuits.transpile import choose_layout

    backend = fake_device("quito")  # T-shaped 5-qubit device
    target = backend.target
    edges = {tuple(sorted(e)) for e in backend.coupling_map.get_edges()}

    def cost(chain: tuple[int, ...]) -> float:
        total = sum(target["measure"][(q,)].error + target["sx"][(q,)].error for q in chain)
        for a, b in itertools.pairwise(chain):
            total += min(
                target["cx"][qargs].error for qargs in ((a, b), (b, a)) if qargs in target["cx"]
            )
        return total

    chains = [
        c
        for c in itertools.permutations(range(5), 3)
        if all(tuple(sorted(p)) in edges for p in itertools.pairwise(c))
    ]
    best = min(cost(c) for c in chains)
    chosen = tuple(choose_layout(backend, 3))
    assert chosen in chains
    assert cost(chosen) == pytest.approx(best)


def test_large_device_transpiles_once_avoiding_unphysical_qubits() -> None:
    from qldm.backends.runtime import fake_device
    from qldm.circuits.transpile import cache_info, transpile_spec

    backend = fake_device("brisbane")  # 127 qubits; qubits 102 and 119 report T2 > 2 T1
    spec = _spec("amplitude_damping", 0.1, n=3, layers=2)
    isa = transpile_spec(spec, backend)
    assert len(isa.layout) == 6 and not {102, 119} & set(isa.layout)
    used = {isa.circuit.find_bit(q).index for inst in isa.circuit.data for q in inst.qubits}
    assert used == set(isa.layout)  # no delays padded onto the other 121 qubits
    hits = cache_info()["hits"]
    other_strength = _spec("amplitude_damping", 0.3, n=3, layers=2)
    assert transpile_spec(other_strength, backend) is isa  # strengths are bindings
    assert cache_info()["hits"] == hits + 1


def test_job_runner_checkpoints_and_resumes_a_fake_job(tmp_path: Path, calls: _Calls) -> None:
    from qldm.backends.runtime import RuntimeConfig
    from qldm.jobs.model import JobRequest
    from qldm.jobs.runner import execute

    config = RuntimeConfig(data_dir=tmp_path)  # the server's data dir, as its executor passes it
    request = JobRequest.parse(
        {
            "circuit": {
                "n_qubits": 1,
                "layers": 1,
                "channel": {"kind": "bit_flip", "strength": 0.1},
            },
            "task": "jacobian",
            "backend": "fake:fake_lima",  # the catalog's spelling
            "inputs": [[0.2]],
            "weights": [0.1, 0.3],
            "noise_levels": [0.1, 0.3],
            "shots": 1000,
            "seed": 2,
        }
    )
    ids: list[str] = []
    first = execute(request, checkpoint=ids.append, runtime_config=config)
    assert len(ids) == 1 and first.metadata["submissions"] == 1 and calls.sampler == 1
    again = execute(request, resume_runtime_job_id=ids[0], runtime_config=config)
    assert calls.sampler == 1 and again.metadata["resumed"] is True
    np.testing.assert_array_equal(again.values, first.values)
    assert (tmp_path / "runtime_results" / f"{ids[0]}.npz").exists()


# ---------------------------------------------------------------------- the steps, one by one


def test_prepare_lays_out_one_pub_per_level_and_runs_nothing(tmp_path: Path, calls: _Calls) -> None:
    spec = _spec("depolarizing", 0.1)
    x, w = [[0.0], [np.pi]], [0.1, 0.2, -0.1, 0.3]
    work = Workload.build(spec, x, w, noise_levels=[0.03, 0.5], task="jacobian", shots=2000, seed=3)
    backend = RuntimeBackend("fake:lima", data_dir=tmp_path, mitigate_readout=False, instances=16)
    prepared = backend.prepare(work)
    assert calls.estimator == calls.sampler == 0  # nothing runs
    s = 2 * (1 + 2 * 5)  # B (1 + T): 1 input + 4 weights, two shift terms each
    assert len(prepared.pubs) == 2 and prepared.sets.shape == (s, 5) and prepared.n_full == s
    assert prepared.n_instances == 16 and prepared.shots_per_instance == 125  # ceil(2000 / 16)
    assert prepared.use_m3 is False and prepared.selection is None and prepared.spsa is None
    assert len(prepared.noise["injected"]) == 2
    assert backend.prepare(work).digest == prepared.digest  # the cache key is reproducible
    reseeded = Workload.build(spec, x, w, noise_levels=[0.03, 0.5], task="jacobian", seed=4)
    assert backend.prepare(reseeded).digest != prepared.digest
    subset = backend.prepare(work, JobOptions(gradient_budget=2))  # the job's options win
    assert subset.selection is not None and subset.sets.shape[0] < s and subset.n_full == s


def test_submit_checkpoints_then_reattaches_by_resume_id(tmp_path: Path, calls: _Calls) -> None:
    from qldm.backends._runtime_results import ResultCache
    from qldm.backends._sessions import ExecutionMode

    spec = _spec("bit_flip", 0.1)
    work = Workload.build(spec, [[0.5]], [0.1, 0.2, 0.3, 0.4], shots=1000, seed=5)
    backend = RuntimeBackend("fake:manila", data_dir=tmp_path, mitigate_readout=False, instances=4)
    prepared = backend.prepare(work)
    mode = ExecutionMode(backend.backend, run=None)
    ids: list[str] = []
    submitted = backend.submit(prepared, mode, Context(checkpoint=ids.append))
    assert calls.estimator == 1 and ids == [submitted.job_id] and submitted.submissions == 1
    assert submitted.result is not None and submitted.cached is None and not submitted.resumed
    assert mode.execution_mode == "job"
    gathered = backend.postprocess(prepared, submitted, None)
    assert gathered.std is not None
    ResultCache(backend.data_dir).store(
        ids[0], prepared.digest, gathered.mitigated, gathered.raw, gathered.std
    )

    again = backend.submit(prepared, mode, Context(resume_runtime_job_id=ids[0]))
    assert calls.estimator == 1  # nothing submitted
    assert again.resumed and again.submissions == 0 and again.cached is not None
    np.testing.assert_array_equal(
        backend.postprocess(prepared, again, None).values, gathered.values
    )
    lost = backend.submit(prepared, mode, Context(resume_runtime_job_id="lost-local-job"))
    assert calls.estimator == 2 and lost.submissions == 1 and lost.resubmitted_reason


@pytest.mark.parametrize("encoding", ["angle_ry", "dense_angle"])
def test_postprocess_combines_given_rows_into_values_and_jacobians(
    tmp_path: Path, encoding: str
) -> None:
    """Post-processing on its own: feed it the exact value of every parameter set as if the
    estimator had returned them; the values and both Jacobians are the exact backend's."""
    from qiskit.primitives import DataBin, PrimitiveResult, PubResult

    from qldm.backends._runtime_steps import Submitted

    spec = PQCSpec.parse({"n_qubits": 2, "layers": 2, "encoding": encoding})
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, (3, spec.n_inputs))
    w = rng.uniform(-1, 1, spec.n_weights)
    work = Workload.build(spec, x, w, task="jacobian")
    backend = RuntimeBackend("fake:manila", data_dir=tmp_path, mitigate_readout=False)
    prepared = backend.prepare(work)
    assert prepared.n_instances == 1  # no channel: one instance, no noise slots
    exact = ExactBackend()
    n_in = spec.n_inputs
    rows = np.stack(
        [
            exact.run(Workload.build(spec, row[None, :n_in], row[n_in:])).values[0, 0]  # type: ignore[index]
            for row in prepared.sets
        ]
    )  # (S, O)
    evs = rows[None]  # (R, S, O)
    result = PrimitiveResult([PubResult(DataBin(evs=evs, shape=evs.shape))])
    gathered = backend.postprocess(prepared, Submitted("synthetic", result, None, 1), None)
    reference = exact.run(work)
    np.testing.assert_allclose(gathered.values, reference.values, atol=1e-10)
    np.testing.assert_allclose(gathered.d_inputs, reference.d_inputs, atol=1e-10)  # type: ignore[arg-type]
    np.testing.assert_allclose(gathered.d_weights, reference.d_weights, atol=1e-10)  # type: ignore[arg-type]
    np.testing.assert_array_equal(gathered.raw_values, gathered.values)  # estimator: no M3
