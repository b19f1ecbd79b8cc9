"""The measured floor (``floor="measured"``): the device's own per-layer channel learned from
one- and two-layer runs of the job's layer, checked against the channel a fake device really
delivers (:func:`qldm.bench.noise_floor.delivered`: exact Aer density matrices of the fake
device's noise model, the Y axis measured too; on several qubits
:func:`qldm.bench.noise_floor_layers.delivered_layers`, each layer's channel at its slots; jobs
of several qubits above the measured floor: ``test_floor_delivered.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qldm.backends.base import Workload
from qldm.backends.runtime import RuntimeBackend
from qldm.bench.noise_floor import delivered
from qldm.bench.noise_floor_layers import delivered_layers
from qldm.circuits import PQCSpec
from qldm.errors import InvalidSpecError
from qldm.jobs.model import JobOptions, JobRequest
from qldm.mitigation.layer_paulis import heisenberg_labels


@pytest.mark.parametrize("kind", ["depolarizing", "bit_flip", "phase_flip"])
def test_measured_floor_is_the_delivered_floor(tmp_path: Path, kind: str) -> None:
    # asking for 0 with allow_noise_floor injects nothing: what is delivered is the floor
    truth = delivered("manila", kind, 0.0, data_dir=tmp_path / "a")["delivered"]
    calibrated = delivered("manila", kind, 0.0, data_dir=tmp_path / "b")["floor"]
    measured = delivered("manila", kind, 0.0, data_dir=tmp_path / "c", floor_method="measured")
    assert 0.0 < truth < 0.01
    assert measured["floor"] == pytest.approx(truth, abs=0.005)
    # no worse than the calibration estimate (bit_flip: the estimate is off by ~1e-4)
    assert abs(measured["floor"] - truth) <= abs(calibrated - truth) + 1e-9


@pytest.mark.parametrize(("kind", "strength"), [("depolarizing", 0.03), ("bit_flip", 0.01)])
def test_injecting_above_the_measured_floor_delivers_the_request(
    tmp_path: Path, kind: str, strength: float
) -> None:
    row = delivered("manila", kind, strength, data_dir=tmp_path, floor_method="measured")
    assert 0.0 < row["floor"] < strength
    assert row["delivered"] == pytest.approx(strength, abs=0.005)


def _two_qubit_bit_flip() -> Workload:
    spec = PQCSpec.parse(
        {"n_qubits": 2, "layers": 1, "channel": {"kind": "bit_flip", "strength": 0.04}}
    )
    return Workload.build(spec, [[0.1, 0.2]], np.zeros(spec.n_weights), shots=100, seed=1)


def test_prepare_records_the_measured_floor_and_keeps_results_apart(tmp_path: Path) -> None:
    work = _two_qubit_bit_flip()
    calib = RuntimeBackend("fake:manila", data_dir=tmp_path)
    measured = RuntimeBackend("fake:manila", data_dir=tmp_path, floor="measured")
    a, b = calib.prepare(work), measured.prepare(work)
    fa, fb = np.array(a.noise["device_floor"]), np.array(b.noise["device_floor"])
    assert fa.shape == fb.shape == (2,)
    assert np.all((fb > 0) & (fb < 0.04))
    assert not np.allclose(fa, fb)  # measured, not the calibration estimate
    assert a.digest != b.digest == measured.digest(work)


@pytest.mark.parametrize("value", ["guess", "", None])
def test_floor_option_is_validated(tmp_path: Path, value: object) -> None:
    with pytest.raises(InvalidSpecError) as err:
        RuntimeBackend("fake:manila", data_dir=tmp_path, floor=value)  # type: ignore[arg-type]
    assert err.value.field == "floor"


BASE = {
    "circuit": {"n_qubits": 2, "ansatz": "basic_entangler"},
    "inputs": [[0.1, 0.2]],
    "weights": [0.3, 0.4],
}


def test_job_option_floor_is_validated_and_stays_out_of_old_fingerprints() -> None:
    plain = JobRequest.parse(BASE)
    assert "floor" not in plain.options.model_dump()  # unset: the fingerprint it always had
    assert JobRequest.parse({**BASE, "options": {"floor": None}}).fingerprint() == (
        plain.fingerprint()
    )
    measured = JobRequest.parse({**BASE, "options": {"floor": "measured"}})
    assert measured.options.floor == "measured"
    assert measured.fingerprint() != plain.fingerprint()
    with pytest.raises(InvalidSpecError) as err:
        JobRequest.parse({**BASE, "options": {"floor": "guess"}})
    assert "floor" in (err.value.field or "")


def test_the_job_option_overrides_the_backend(tmp_path: Path) -> None:
    work = _two_qubit_bit_flip()
    calib = RuntimeBackend("fake:manila", data_dir=tmp_path)
    measured = RuntimeBackend("fake:manila", data_dir=tmp_path, floor="measured")
    as_measured = JobOptions(floor="measured")
    as_calibration = JobOptions(floor="calibration")
    a = calib.prepare(work, as_measured)
    b = measured.prepare(work)
    c = measured.prepare(work, as_calibration)
    assert a.noise["device_floor"] == b.noise["device_floor"]
    assert a.digest == b.digest == calib.digest(work, as_measured)
    assert c.noise["device_floor"] == calib.prepare(work).noise["device_floor"]
    assert c.digest == calib.digest(work) != a.digest


def test_one_layer_observables_are_the_parities_the_next_layer_sees() -> None:
    # zero-weight ry_rz_brickwork on 3 qubits: CNOT(0,1) then CNOT(1,2). Heisenberg picture,
    # U^dag P U: Z on a target picks up its control's Z, X on a control its target's X.
    spec = PQCSpec.parse({"n_qubits": 3, "channel": {"kind": "bit_flip"}})
    labels = ["IIZ", "IZI", "ZII", "IIX", "IXI", "XII"]  # qubit 0 is the rightmost
    assert heisenberg_labels(spec, labels) == ["IIZ", "IZZ", "ZZZ", "IXX", "XXI", "XII"]
    one = PQCSpec.parse({"n_qubits": 1, "channel": {"kind": "bit_flip"}})
    assert heisenberg_labels(one, ["Z", "X"]) == ["Z", "X"]
    ring = PQCSpec.parse({"n_qubits": 4, "ansatz": "hqconv"})  # identity at zero weights
    assert heisenberg_labels(ring, ["IIIZ", "XIII"]) == ["IIIZ", "XIII"]


def test_the_measured_floor_counts_each_qubit_once(tmp_path: Path) -> None:
    # <Z_2> after two layers decays with the flips of qubits 0, 1 and 2 in the first layer
    # (Z_2 -> Z_0 Z_1 Z_2 through the CNOT ladder); measuring that parity after one layer
    # leaves qubit 2's own flips: 0.0061 here, where the ratio of <Z_2> gave 0.0094
    truth = delivered_layers("manila", "bit_flip", 0.0, n_qubits=3, data_dir=tmp_path / "a")
    measured = delivered_layers(
        "manila", "bit_flip", 0.0, n_qubits=3, data_dir=tmp_path / "b", floor_method="measured"
    )
    assert np.abs(measured["floor"] - truth["delivered"]).max() < 0.001
