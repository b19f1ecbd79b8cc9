"""``aer:<device>``: Aer with a fake device's noise model on the runtime path's ISA circuits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qldm.backends import get_backend
from qldm.backends.aer_device import AerDeviceBackend
from qldm.backends.base import Workload
from qldm.backends.exact import ExactBackend
from qldm.circuits import PQCSpec
from qldm.errors import InvalidSpecError, UnknownBackendError


def test_routing_and_unknown_device(tmp_path: Path) -> None:
    backend = get_backend("aer:lima", data_dir=tmp_path)
    assert isinstance(backend, AerDeviceBackend) and backend.name == "aer:lima"
    with pytest.raises(UnknownBackendError):
        AerDeviceBackend("nowhere", data_dir=tmp_path)
    with pytest.raises(InvalidSpecError):
        AerDeviceBackend("lima", resilience={"measure_mitigation": True}, data_dir=tmp_path)


def test_values_and_jacobian_match_exact_under_device_noise(tmp_path: Path) -> None:
    spec = PQCSpec.parse({"n_qubits": 2, "layers": 1})
    x = np.array([[0.3, 1.2], [2.5, -0.7]])
    w = np.array([0.4, -0.2, 0.9, 0.1])
    exact = ExactBackend().run(Workload.build(spec, x, w, task="jacobian"))
    ev = AerDeviceBackend("manila", data_dir=tmp_path).run(
        Workload.build(spec, x, w, task="jacobian", shots=8000, seed=2)
    )
    assert ev.metadata["mode"] == "aer_device" and ev.metadata["submissions"] == 1
    # M3-mitigated device noise (gate errors ~1e-3 to 1e-2) and 8,000 shots.
    np.testing.assert_allclose(ev.values, exact.values, atol=0.05)
    assert ev.d_weights is not None and exact.d_weights is not None
    np.testing.assert_allclose(ev.d_weights, exact.d_weights, atol=0.08)


def test_amplitude_damping_on_the_device_model(tmp_path: Path) -> None:
    spec = PQCSpec.parse(
        {"n_qubits": 1, "layers": 1, "channel": {"kind": "amplitude_damping", "strength": 0.35}}
    )
    ev = AerDeviceBackend("quito", data_dir=tmp_path).run(
        Workload.build(spec, [[np.pi]], [0.0, 0.0], shots=4000, seed=4)
    )
    # |1> damped by gamma: <Z> = 1 - 2 (1 - gamma) = -0.3.
    assert ev.values[0, 0, 0] == pytest.approx(-0.3, abs=0.05)
