"""Standard errors of runtime results, the M3 calibration riding in the step's own job, no
lock across a calibration, and a resumed job finding its kept result before measuring.

Standard errors are checked against the spread of independent repetitions (64 identical rows
of one job: each row is its own circuit with its own shots), the calibration against the
readout errors the fake device reports (its noise model is built from them)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qldm.backends.base import Context, Workload
from qldm.backends.runtime import RuntimeBackend, fake_device
from qldm.circuits import PQCSpec
from qldm.errors import NoiseFloorError
from qldm.mitigation.m3 import CalibrationCache, CalibrationCircuits, ReadoutCalibration


def _sampler_counts(backend: Any, pubs: list[tuple[Any, None, int]], seed: int) -> list[Any]:
    from qiskit_ibm_runtime import SamplerV2

    sampler = SamplerV2(mode=backend)
    sampler.options.simulator.seed_simulator = seed
    return [r.join_data().get_counts() for r in sampler.run(pubs).result()]


@pytest.mark.parametrize("device", ["manila", "quito"])
def test_calibration_circuits_measure_the_readout_errors_the_device_reports(device: str) -> None:
    backend = fake_device(device)
    qubits = [3, 1, 0]
    circuits = CalibrationCircuits.build(backend, qubits, shots=8000)
    assert circuits.qubits == (0, 1, 3) and len(circuits.circuits) == 4  # Hadamard set, n=3
    # balanced: every qubit is prepared in |0> in half of the circuits, |1> in the other half
    np.testing.assert_array_equal(circuits.prepared.sum(axis=0), [2, 2, 2])
    assert circuits.shots == 4000  # ceil(2 * 8000 / 4), as mthree
    cal = circuits.calibration(
        _sampler_counts(backend, circuits.pubs(), seed=7), runtime_job_id="job-1"
    )
    assert cal.method == "balanced" and cal.runtime_job_id == "job-1" and cal.shots == 8000
    np.testing.assert_allclose(cal.matrices.sum(axis=1), 1.0)
    props = backend.properties()
    shots_per_prep = 2 * circuits.shots  # two circuits prepare each value on each qubit
    for k, q in enumerate(circuits.qubits):
        for prep, name in ((0, "prob_meas1_prep0"), (1, "prob_meas0_prep1")):
            reported = props.qubit_property(q, name)[0]
            measured = cal.matrices[k, 1 - prep, prep]
            sigma = np.sqrt(reported * (1 - reported) / shots_per_prep)
            assert abs(measured - reported) < 4 * sigma + 1e-3, (q, name, measured, reported)


def _repeated(spec: PQCSpec, x: float, b: int = 64) -> tuple[np.ndarray, np.ndarray]:
    return np.full((b, spec.n_inputs), x), np.zeros(spec.n_weights)


@pytest.mark.parametrize("m3", [False, True])
def test_values_std_is_the_spread_of_independent_repetitions(tmp_path: Path, m3: bool) -> None:
    """64 identical rows (RY(pi/2): <Z> = 0, where the binomial spread is largest and mthree's
    bound is tight): the reported standard error matches the rows' sample standard deviation
    within the sampling error of a 64-sample standard deviation (about 9 %)."""
    spec = PQCSpec.parse({"n_qubits": 1, "layers": 1})
    x, w = _repeated(spec, np.pi / 2)
    backend = RuntimeBackend("fake:manila", data_dir=tmp_path, mitigate_readout=m3)
    ev = backend.run(Workload.build(spec, x, w, shots=1000, seed=3))
    assert ev.values is not None and ev.values_std is not None
    assert ev.values_std.shape == ev.values.shape == (1, 64, 1)
    reported = float(ev.values_std.mean())
    empirical = float(ev.values[0, :, 0].std(ddof=1))
    assert 0.7 < empirical / reported < 1.3, (empirical, reported)
    assert reported == pytest.approx(1 / np.sqrt(1000), rel=0.15)  # sqrt((1 - 0) / shots)
    assert ev.metadata["primitive"] == ("sampler" if m3 else "estimator")


def test_values_std_of_instance_averages_shrinks_with_the_split_shots(tmp_path: Path) -> None:
    """With R Pauli-insertion instances the shots are split, R ways: the standard error of
    the average over instances is sqrt(sum_r s_r^2) / R ~ 1 / sqrt(shots), not 1 / sqrt(shots
    / R); checked against the spread of repeated rows."""
    spec = PQCSpec.parse(
        {"n_qubits": 1, "layers": 1, "channel": {"kind": "bit_flip", "strength": 0.05}}
    )
    x, w = _repeated(spec, np.pi / 2)
    backend = RuntimeBackend("fake:manila", data_dir=tmp_path, instances=8)
    ev = backend.run(Workload.build(spec, x, w, shots=2000, seed=5))
    assert ev.values is not None and ev.values_std is not None
    reported = float(ev.values_std.mean())
    empirical = float(ev.values[0, :, 0].std(ddof=1))
    assert 0.7 < empirical / reported < 1.3, (empirical, reported)
    assert reported < 1.5 / np.sqrt(2000)  # not the 1 / sqrt(250) of one instance


def test_jacobian_rows_keep_their_stds_and_the_result_cache_keeps_them(tmp_path: Path) -> None:
    spec = PQCSpec.parse({"n_qubits": 2, "layers": 1})
    rng = np.random.default_rng(1)
    work = Workload.build(
        spec,
        rng.uniform(-1, 1, (3, 2)),
        rng.uniform(-1, 1, spec.n_weights),
        task="jacobian",
        shots=800,
        seed=2,
    )
    ids: list[str] = []
    backend = RuntimeBackend("fake:lima", data_dir=tmp_path)
    first = backend.run(work, Context(checkpoint=ids.append))
    assert first.values_std is not None and first.values_std.shape == (1, 3, 2)
    again = RuntimeBackend("fake:lima", data_dir=tmp_path).run(
        work, Context(resume_runtime_job_id=ids[-1])
    )
    assert again.metadata["resumed"] is True
    np.testing.assert_array_equal(again.values_std, first.values_std)
    # the Jacobians' standard errors come back from the kept rows too
    assert first.d_inputs_std is not None and first.d_inputs_std.shape == (1, 3, 2, 2)
    assert first.d_weights_std is not None and first.d_weights_std.shape == (1, 3, 2, 4)
    assert np.all(first.d_weights_std > 0)
    np.testing.assert_array_equal(again.d_inputs_std, first.d_inputs_std)
    np.testing.assert_array_equal(again.d_weights_std, first.d_weights_std)


def test_a_resumed_job_takes_its_kept_result_before_measuring_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a restart the kept result is found first: no calibration refresh, no floor check
    (the device got worse meanwhile: the floor is now above the request), no M3."""
    import qldm.backends._runtime_pubs as pubs
    import qldm.backends.runtime as runtime

    spec = PQCSpec.parse(
        {"n_qubits": 1, "layers": 1, "channel": {"kind": "bit_flip", "strength": 0.05}}
    )
    work = Workload.build(spec, [[0.3]], [0.0, 0.0], shots=500, seed=1)
    ids: list[str] = []
    first = RuntimeBackend("fake:manila", data_dir=tmp_path, instances=4).run(
        work, Context(checkpoint=ids.append)
    )
    worse = pubs.device_floor

    def high_floor(*args: Any, **kwargs: Any) -> np.ndarray:
        return np.maximum(worse(*args, **kwargs), 0.2)

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("measured again on resume")

    monkeypatch.setattr(pubs, "device_floor", high_floor)
    monkeypatch.setattr(runtime, "plan_calibration", refused)
    monkeypatch.setattr(RuntimeBackend, "refresh_calibration", refused)
    restarted = RuntimeBackend("fake:manila", data_dir=tmp_path, instances=4)
    again = restarted.run(work, Context(resume_runtime_job_id=ids[0]))
    assert again.metadata["resumed"] is True
    np.testing.assert_array_equal(again.values, first.values)
    monkeypatch.setattr(RuntimeBackend, "refresh_calibration", lambda self, **kw: False)
    with pytest.raises(NoiseFloorError):  # without a kept result the floor is checked
        restarted.run(work)


def test_joined_separates_the_calibration_results_a_reattached_job_carried(
    tmp_path: Path,
) -> None:
    """``ibm:`` re-attach (no runtime here): the first job's results end with the M3
    calibration PUBs it carried; they are told apart from the levels by count."""
    from qldm.backends._runtime_submit import SubmitOptions, joined

    spec = PQCSpec.parse(
        {"n_qubits": 1, "layers": 1, "channel": {"kind": "bit_flip", "strength": 0.05}}
    )
    backend = RuntimeBackend("fake:manila", data_dir=tmp_path, instances=2)
    prepared = backend.prepare(
        Workload.build(spec, [[0.1]], [0.0, 0.0], noise_levels=[0.05, 0.1], shots=100)
    )
    assert len(prepared.pubs) == 2
    per_level, extra = joined(prepared, [["L0", "L1", "C0", "C1"]], SubmitOptions(limit=None))
    assert per_level == ["L0", "L1"] and extra == ["C0", "C1"]
    per_level, extra = joined(prepared, [["L0", "L1"]], SubmitOptions(limit=None))
    assert per_level == ["L0", "L1"] and extra == []


def test_no_lock_is_held_while_a_calibration_is_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A calibration that waits (a queue) does not hold up another one."""
    backend = fake_device("manila")
    release = threading.Event()
    calls: list[tuple[int, ...]] = []

    def slow(
        self: CalibrationCache, dev: Any, qubits: tuple[int, ...], mode: Any, cal: Any
    ) -> ReadoutCalibration:
        calls.append(qubits)
        if qubits == (0,):
            assert release.wait(20), "the other calibration never finished"
        return ReadoutCalibration(str(dev.name), qubits, np.eye(2)[None], time.time(), 10)

    monkeypatch.setattr(CalibrationCache, "_calibrate", slow)
    cache = CalibrationCache(tmp_path, shots=10)
    waiting = threading.Thread(target=cache.get_or_calibrate, args=(backend, [0], 60.0))
    waiting.start()
    while not calls:
        time.sleep(0.01)
    cache.get_or_calibrate(backend, [1], 60.0)  # would block forever under a global lock
    release.set()
    waiting.join(20)
    assert not waiting.is_alive() and sorted(calls) == [(0,), (1,)]


def test_a_reattached_job_without_calibration_circuits_uses_the_stored_calibration(
    tmp_path: Path,
) -> None:
    """An ``ibm:`` job submitted while a stored calibration was fresh carries no calibration
    circuits; re-attached after it aged, the newest stored one (the one it was submitted with)
    is used, not a new measurement."""
    from qldm.backends._runtime_m3 import M3Step

    backend = fake_device("manila")
    cache = CalibrationCache(tmp_path, shots=100)
    old = ReadoutCalibration("fake_manila", (0, 1), np.stack([np.eye(2)] * 2), 1.0, 100)
    cache.save(old)
    step = M3Step(cache, "file", None, CalibrationCircuits.build(backend, [0, 1], shots=100), None)
    step.without_circuits(backend, ibm=False)
    calibration, meta = step.finish([], "job-7")
    assert calibration.created_at == 1.0 and meta["measured"] is False
    assert cache.calibrations_run == 1  # the save above; nothing measured
