"""M3 calibrations in the job store (SQLite and PostgreSQL): kept with their time, reused
until older than the allowed age, and still good enough to beat raw counts."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from qldm.backends.base import Context, Workload
from qldm.backends.exact import ExactBackend
from qldm.backends.runtime import RuntimeBackend
from qldm.circuits import PQCSpec
from qldm.errors import InvalidSpecError
from qldm.jobs import db
from qldm.jobs._m3_store import KEEP_PER_KEY
from qldm.jobs.model import JobOptions
from qldm.jobs.store import JobStore
from qldm.mitigation.m3 import CalibrationCache, CalibrationStorage, ReadoutCalibration
from tests.jobs.conftest import ry_request


def _calibration(created_at: float, *, p: float = 0.02, **extra: object) -> ReadoutCalibration:
    """A made-up calibration of qubits (4, 1): assignment matrices with flip probability p."""
    m = np.array([[1 - p, 2 * p], [p, 1 - 2 * p]])
    return ReadoutCalibration(
        device=str(extra.pop("device", "fake_manila")),
        qubits=(1, 4),
        matrices=np.stack([m, m.T]),
        created_at=created_at,
        shots=1000,
        **extra,  # type: ignore[arg-type]
    )


def _rows(store: JobStore) -> int:
    with store.engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(db.m3_calibrations))
        return int(count.scalar_one())


def test_store_keeps_calibrations_with_their_time_and_age(store: JobStore) -> None:
    assert isinstance(store, CalibrationStorage)
    now = time.time()
    old = _calibration(now - 1000.0, p=0.05, method="balanced", device_calibration="day-1")
    store.save_m3_calibration(old)
    got = store.latest_m3_calibration("fake_manila", [4, 1], 2000.0)  # any qubit order
    assert got is not None
    assert got.qubits == (1, 4) and got.shots == 1000 and got.method == "balanced"
    assert got.device_calibration == "day-1"
    assert got.created_at == pytest.approx(old.created_at, abs=1e-5)
    np.testing.assert_array_equal(got.matrices, old.matrices)
    # Too old for the allowed age, age 0, another device, other qubits: nothing.
    assert store.latest_m3_calibration("fake_manila", [1, 4], 500.0) is None
    assert store.latest_m3_calibration("fake_manila", [1, 4], 0.0) is None
    assert store.latest_m3_calibration("fake_lima", [1, 4], 2000.0) is None
    assert store.latest_m3_calibration("fake_manila", [1, 2], 2000.0) is None
    # Measured under another device calibration: not reused; under the same one: reused.
    assert (
        store.latest_m3_calibration("fake_manila", [1, 4], 2000.0, device_calibration="day-2")
        is None
    )
    assert (
        store.latest_m3_calibration("fake_manila", [1, 4], 2000.0, device_calibration="day-1")
        is not None
    )
    newer = _calibration(now - 10.0, p=0.01, device_calibration="day-2")
    store.save_m3_calibration(newer)
    got = store.latest_m3_calibration("fake_manila", [1, 4], 2000.0)
    assert got is not None and got.device_calibration == "day-2"
    np.testing.assert_array_equal(got.matrices, newer.matrices)
    only_old = store.latest_m3_calibration(
        "fake_manila", [1, 4], 2000.0, device_calibration="day-1"
    )
    assert only_old is not None and only_old.method == "balanced"


def test_store_keeps_the_newest_few_per_key_and_validates(store: JobStore) -> None:
    now = time.time()
    for i in range(KEEP_PER_KEY + 3):
        store.save_m3_calibration(_calibration(now - 100.0 + i))
    store.save_m3_calibration(_calibration(now, device="fake_lima"))
    assert _rows(store) == KEEP_PER_KEY + 1
    newest = store.latest_m3_calibration("fake_manila", [1, 4], 1e12)  # beyond a timedelta
    assert newest is not None
    assert newest.created_at == pytest.approx(now - 100.0 + KEEP_PER_KEY + 2, abs=1e-5)
    bad = ReadoutCalibration("fake_manila", (1, 4), np.zeros((3, 2, 2)), now, 1000)
    with pytest.raises(InvalidSpecError) as info:
        store.save_m3_calibration(bad)
    assert info.value.field == "matrices"
    with pytest.raises(InvalidSpecError) as info:
        store.latest_m3_calibration("fake_manila", [], 10.0)
    assert info.value.field == "qubits"
    with pytest.raises(InvalidSpecError) as info:
        store.latest_m3_calibration("fake_manila", [1], float("nan"))
    assert info.value.field == "m3_max_age_s"


def test_migration_0002_adds_the_table_to_a_0001_database(db_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    st = JobStore(db_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS_DIR))
    with st.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    assert st.revision() == "0001"
    assert "qldm_m3_calibrations" not in sa.inspect(st.engine).get_table_names()
    job, _ = st.submit(tenant="t", request=ry_request([0.1], 0.2))
    st.migrate()
    assert st.revision() == "0004"
    assert "qldm_m3_calibrations" in sa.inspect(st.engine).get_table_names()
    assert st.get(tenant="t", job_id=job.id) == job
    st.close()


def test_runtime_backend_reuses_the_stored_calibration_until_too_old(
    store: JobStore, tmp_path: Path
) -> None:
    """Inside the server the worker passes its store: the calibration lives there (not in
    ``<data_dir>/m3``), is reused by a fresh backend (another worker) within the allowed age,
    and measured again when the job allows age 0. The mitigated <Z> still beats the raw one."""
    spec = PQCSpec.parse({"n_qubits": 2, "encoding": "angle_ry", "layers": 1})
    x = np.array([[np.pi, 0.6], [0.0, 0.0]])  # |1>|.>, |00>: readout error shows most here
    w = np.zeros(spec.n_weights)
    exact = ExactBackend().run(Workload.build(spec, x, w)).values
    work = Workload.build(spec, x, w, shots=4000, seed=11)

    first = RuntimeBackend("fake:manila", data_dir=tmp_path, m3_shots=4000)
    meta = first.run(work, Context(m3_store=store)).metadata["m3_calibration"]
    assert meta["measured"] is True and meta["source"] == "store"
    assert meta["method"] == "balanced" and meta["shots"] == 4000
    assert meta["in_job"] is True  # measured inside the step's own job, not a separate one
    assert meta["runtime_job_id"] is not None
    assert _rows(store) == 1
    assert not (tmp_path / "m3").exists()  # the file fallback was not used

    other_worker = RuntimeBackend("fake:manila", data_dir=tmp_path, m3_shots=4000)
    ev = other_worker.run(work, Context(m3_store=store))
    again = ev.metadata["m3_calibration"]
    assert again["measured"] is False and again["created_at"] == pytest.approx(meta["created_at"])
    assert again["qubits"] == meta["qubits"] == sorted(ev.metadata["physical_qubits"])
    raw = np.asarray(ev.metadata["raw_values"])
    err_mitigated = np.abs(ev.values - exact).sum()
    err_raw = np.abs(raw - exact).sum()
    assert err_mitigated < err_raw, (err_mitigated, err_raw)
    # 4000 shots: one standard deviation of a <Z> near +-1 is below 0.016.
    assert np.abs(ev.values - exact).max() < 0.05

    fresh = other_worker.run(work, Context(m3_store=store, options=JobOptions(m3_max_age_s=0)))
    remeasured = fresh.metadata["m3_calibration"]
    assert remeasured["measured"] is True and remeasured["created_at"] > meta["created_at"]
    assert _rows(store) == 2


def test_file_cache_is_the_standalone_fallback(tmp_path: Path) -> None:
    """Without a store, calibrations are files under ``<data_dir>/m3`` with the same rules."""
    backend = RuntimeBackend("fake:lima", data_dir=tmp_path, m3_shots=2000)
    spec = PQCSpec.parse({"n_qubits": 1, "layers": 1})
    work = Workload.build(spec, [[np.pi]], [0.0, 0.0], shots=2000, seed=3)
    meta = backend.run(work).metadata["m3_calibration"]
    assert meta["source"] == "file" and meta["measured"] is True
    assert len(list((tmp_path / "m3").glob("*.npz"))) == 1
    cache = CalibrationCache(tmp_path / "m3")
    stored = cache.storage.latest_m3_calibration("fake_lima", meta["qubits"], 3600.0)
    assert stored is not None and stored.created_at == pytest.approx(meta["created_at"])
    assert stored.method == "balanced" and stored.device_calibration is not None
    assert stored.runtime_job_id == meta["runtime_job_id"]
    assert backend.run(work).metadata["m3_calibration"]["measured"] is False
    # RY(pi): <Z> = -1 exactly; M3 removes lima's readout error up to shot noise.
    ev = backend.run(work, Context(options=JobOptions(m3_max_age_s=0)))
    assert ev.metadata["m3_calibration"]["measured"] is True
    assert ev.values[0, 0, 0] == pytest.approx(-1.0, abs=0.05)
