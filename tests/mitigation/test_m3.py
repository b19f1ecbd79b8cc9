"""M3 readout mitigation on fake devices: closer to the exact value than raw counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qldm.backends.base import Workload
from qldm.backends.exact import ExactBackend
from qldm.backends.runtime import RuntimeBackend, fake_device
from qldm.circuits import PQCSpec
from qldm.errors import MitigationError
from qldm.mitigation.m3 import CalibrationCache, raw_expectations, z_expectations


def test_raw_expectations_of_known_counts() -> None:
    counts = {"01": 30, "10": 70}  # rightmost character is classical bit 0
    np.testing.assert_allclose(raw_expectations(counts, ["IZ", "ZI", "ZZ"]), [0.4, -0.4, -1.0])
    mitigated, raw = z_expectations([counts], ["IZ"], calibration=None, backend=None, qubits=[0, 1])
    np.testing.assert_allclose(mitigated, raw)
    with pytest.raises(MitigationError):
        z_expectations([counts], ["XZ"], calibration=None, backend=None, qubits=[0, 1])


def test_calibration_cache_reuses_and_expires(tmp_path: Path) -> None:
    backend = fake_device("manila")
    cache = CalibrationCache(tmp_path, shots=2000)
    cal = cache.get_or_calibrate(backend, [1, 0], 3600)
    assert cal.qubits == (0, 1) and cal.matrices.shape == (2, 2, 2)
    np.testing.assert_allclose(cal.matrices.sum(axis=1), 1.0, atol=1e-6)  # columns sum to 1
    assert np.all(np.diagonal(cal.matrices, axis1=1, axis2=2) > 0.85)
    cache.get_or_calibrate(backend, [0, 1], 3600)
    assert cache.calibrations_run == 1
    fresh = CalibrationCache(tmp_path, shots=2000)  # another process: read from disk
    again = fresh.get_or_calibrate(backend, [0, 1], 3600)
    assert fresh.calibrations_run == 0 and again.created_at == cal.created_at
    fresh.get_or_calibrate(backend, [0, 1], 0.0)  # too old: measured again
    assert fresh.calibrations_run == 1


@pytest.mark.parametrize("device", ["manila", "lima", "quito"])
def test_m3_is_closer_to_the_exact_value_than_raw(device: str, tmp_path: Path) -> None:
    spec = PQCSpec.parse({"n_qubits": 2, "encoding": "angle_ry", "layers": 1})
    x = np.array([[np.pi, 0.6], [0.0, 0.0]])  # |1>|.>, |00>: readout error shows most here
    w = np.zeros(spec.n_weights)
    exact = ExactBackend().run(Workload.build(spec, x, w)).values
    backend = RuntimeBackend(f"fake:{device}", data_dir=tmp_path, m3_shots=4000)
    ev = backend.run(Workload.build(spec, x, w, shots=4000, seed=11))
    raw = np.asarray(ev.metadata["raw_values"])
    err_mitigated = np.abs(ev.values - exact).sum()
    err_raw = np.abs(raw - exact).sum()
    assert ev.metadata["readout_mitigation"] == "m3"
    assert err_mitigated < err_raw, (err_mitigated, err_raw)
    # 4000 shots: one standard deviation of a <Z> near +-1 is below 0.016.
    assert np.abs(ev.values - exact).max() < 0.05
