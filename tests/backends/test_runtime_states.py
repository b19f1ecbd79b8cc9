"""State-level work on the runtime path: ``fake:manila`` in local testing mode (Aer with the
device's noise model) and ``aer:fake_manila``, a few thousand shots, checked for shapes,
normalisation and statistical agreement (generous bounds: device noise and shot noise) with
the exact engine; and the refusals of what no device path computes, raised by
``RuntimeBackend.run`` itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qldm.backends import Workload, get_backend
from qldm.backends.runtime import RuntimeBackend
from qldm.circuits import PQCSpec
from qldm.errors import BackendLimitError

EXACT = get_backend("exact")
SHOTS = 3000

TIMESTEP = PQCSpec.parse(
    {"n_qubits": 2, "ansatz": "ry_rz_brickwork", "layers": 1, "timestep": {"features": 1}}
)
COMPLEX = PQCSpec.parse({"n_qubits": 2, "encoding": "complex_amplitude", "ansatz": "mps"})


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> RuntimeBackend:
    data = tmp_path_factory.mktemp("runtime_states")
    return RuntimeBackend("fake:manila", data_dir=data, instances=4)


def _work(spec: PQCSpec, *, batch: int = 2, seed: int = 0, **kw: Any) -> Workload:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, spec.n_inputs))
    w = 0.7 * rng.normal(size=spec.n_weights)
    if kw.get("output") == "fidelity":
        kw["targets"] = rng.normal(size=(batch, 2 * 2**spec.n_qubits))
    return Workload.build(spec, x, w, shots=SHOTS, seed=seed, **kw)


def test_probabilities_and_jacobians_with_a_timestep(fake: RuntimeBackend) -> None:
    work = _work(TIMESTEP, task="jacobian", output="probabilities")
    got, want = fake.run(work), EXACT.run(work)
    assert got.values is not None and want.values is not None
    b, i, p = 2, TIMESTEP.n_inputs, TIMESTEP.n_weights
    assert got.values.shape == (1, b, 4)
    assert got.d_inputs is not None and got.d_inputs.shape == (1, b, 4, i)
    assert got.d_weights is not None and got.d_weights.shape == (1, b, 4, p)
    np.testing.assert_allclose(got.values.sum(-1), 1.0, atol=1e-9)
    assert np.all(got.values >= 0.0)
    assert np.abs(got.values - want.values).max() < 0.08
    assert np.abs(got.d_weights - want.d_weights).max() < 0.15  # type: ignore[operator]
    meta = got.metadata
    assert meta["submissions"] == 1 and meta["primitive"] == "sampler"
    assert meta["readout_mitigation"] == "m3"
    # shifts of the data inputs and the ansatz angles only: w, v and tau by the chain rule
    assert meta["circuits"] == b * (1 + 2 * (TIMESTEP.n_data_inputs + TIMESTEP.n_ansatz_weights))


def test_compute_uncompute_fidelity_of_complex_states(fake: RuntimeBackend) -> None:
    work = _work(COMPLEX, batch=3, output="fidelity")
    got, want = fake.run(work), EXACT.run(work)
    assert got.values is not None and want.values is not None
    assert got.values.shape == (1, 3, 1)
    assert np.all((got.values >= 0.0) & (got.values <= 1.0))
    assert np.abs(got.values - want.values).max() < 0.1


def test_block_diagonal_metric_from_measured_layers(fake: RuntimeBackend) -> None:
    work = _work(TIMESTEP, task="metric_tensor", metric="block_diagonal")
    got = fake.run(work).values
    want = EXACT.run(work).values
    assert got is not None and want is not None
    assert got.shape == (1, 2, TIMESTEP.n_weights, TIMESTEP.n_weights)
    np.testing.assert_allclose(got, np.swapaxes(got, -1, -2), atol=1e-12)
    assert np.abs(got - want).max() < 0.05


def test_aer_device_backend_takes_the_same_path(tmp_path: Path) -> None:
    backend = get_backend("aer:fake_manila", data_dir=tmp_path, instances=2)
    work = _work(TIMESTEP, output="probabilities")
    got, want = backend.run(work), EXACT.run(work)
    assert got.values is not None and want.values is not None
    assert got.metadata["execution_mode"] == "direct"
    assert np.abs(got.values - want.values).max() < 0.08


@pytest.mark.parametrize(
    ("spec", "kw", "field"),
    [
        (TIMESTEP, {"task": "metric_tensor"}, "metric"),  # the full metric: exact only
        (
            PQCSpec.parse(
                {"n_qubits": 2, "observables": ["XI", "ZZ"], "timestep": {"features": 1}}
            ),
            {"task": "expectation"},
            "circuit.observables",
        ),
    ],
)
def test_run_refuses_what_no_device_path_computes(
    fake: RuntimeBackend, spec: PQCSpec, kw: dict[str, Any], field: str
) -> None:
    with pytest.raises(BackendLimitError) as err:
        fake.run(_work(spec, **kw))
    assert err.value.field == field


@pytest.mark.parametrize(
    ("options", "spec", "field"),
    [
        ({"gradient_budget": 2}, COMPLEX, "options.gradient_budget"),
        ({"spsa_directions": 2}, TIMESTEP, "options.spsa_directions"),
    ],
)
def test_jacobian_estimators_it_cannot_take_are_refused(
    tmp_path: Path, options: dict[str, Any], spec: PQCSpec, field: str
) -> None:
    backend = RuntimeBackend("fake:manila", data_dir=tmp_path, **options)  # type: ignore[arg-type]
    with pytest.raises(BackendLimitError) as err:
        backend.run(_work(spec, task="jacobian", output="probabilities"))
    assert err.value.field == field


def test_subset_jacobian_shifts_m_columns_weighted_c_over_m(tmp_path: Path) -> None:
    budget = 2
    backend = RuntimeBackend("fake:manila", data_dir=tmp_path, gradient_budget=budget)
    work = _work(TIMESTEP, task="jacobian", output="probabilities")
    got, want = backend.run(work), EXACT.run(work)
    assert got.metadata["gradient"] == {"method": "subset", "budget": budget}
    n_data, pa = TIMESTEP.n_data_inputs, TIMESTEP.n_ansatz_weights
    columns = n_data + pa  # shifted: the data inputs and the ansatz angles
    assert got.metadata["circuits"] == 2 * (1 + 2 * budget)
    assert got.d_inputs is not None and got.d_weights is not None
    assert want.d_inputs is not None and want.d_weights is not None
    for b in range(2):  # per sample: the angle columns (w part) and the data inputs
        est = np.concatenate([got.d_inputs[0, b, :, :n_data], got.d_weights[0, b, :, :pa]], 1)
        ref = np.concatenate([want.d_inputs[0, b, :, :n_data], want.d_weights[0, b, :, :pa]], 1)
        kept = np.flatnonzero(np.abs(est).max(axis=0) > 0.0)
        assert 0 < kept.size <= budget
        scaled = columns / budget * ref[:, kept]
        assert np.abs(est[:, kept] - scaled).max() < 0.15 * columns / budget


def test_noisy_probabilities_inject_what_the_floor_leaves(fake: RuntimeBackend) -> None:
    spec = PQCSpec.parse(
        {
            "n_qubits": 2,
            "ansatz": "mps",
            "channel": {"kind": "amplitude_damping", "strength": 0.1},
            "timestep": {"features": 1},
        }
    )
    work = _work(spec, task="jacobian", output="probabilities", noise_levels=[0.2])
    got, want = fake.run(work), EXACT.run(work)  # exact: the density matrix of the channel
    assert got.values is not None and want.values is not None
    assert np.abs(got.values - want.values).max() < 0.08
    assert np.abs(got.d_weights - want.d_weights).max() < 0.15  # type: ignore[operator]
    injected = np.array(got.metadata["noise"]["injected"])
    floor = np.array(got.metadata["noise"]["device_floor"])
    assert np.all(injected < 0.2) and np.all(floor > 0.0)  # the device supplies part of it
