"""State-level work on Aer against the exact engine (an independent torch implementation,
itself tested against Qiskit's Statevector): outcome probabilities, the compute-uncompute
fidelity, timestep and complex amplitude specs, their parameter-shift Jacobians, and the
block-diagonal metric from measured circuits; with shots, within shot-noise bounds. Noisy
fidelities against Qiskit's DensityMatrix."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from qiskit.quantum_info import DensityMatrix

from qldm.backends import Workload, get_backend
from qldm.circuits import PQCSpec
from qldm.circuits.qiskit_builder import build
from qldm.errors import BackendLimitError

EXACT = get_backend("exact")
AER = get_backend("aer")

SPECS: dict[str, dict[str, Any]] = {
    "angle": {"n_qubits": 2, "ansatz": "ry_rz_brickwork", "layers": 2},
    "timestep": {
        "n_qubits": 2,
        "ansatz": "ry_rz_brickwork",
        "layers": 2,
        "timestep": {"features": 2},
    },
    "complex": {"n_qubits": 2, "encoding": "complex_amplitude", "ansatz": "mps", "layers": 2},
    "complex_timestep": {
        "n_qubits": 2,
        "encoding": "complex_amplitude",
        "ansatz": "ry_rz_brickwork",
        "layers": 1,
        "timestep": {"features": 1},
    },
    "amplitude_hqconv": {"n_qubits": 4, "encoding": "amplitude", "ansatz": "hqconv", "layers": 1},
    "noisy": {
        "n_qubits": 2,
        "encoding": "dense_angle",
        "ansatz": "basic_entangler",
        "layers": 2,
        "channel": {"kind": "depolarizing", "strength": 0.1},
    },
}


def _work(name: str, *, seed: int = 0, batch: int = 3, **kw: Any) -> Workload:
    spec = PQCSpec.parse(SPECS[name])
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, spec.n_inputs))
    w = rng.normal(size=spec.n_weights)
    if kw.get("output") == "fidelity":
        kw["targets"] = rng.normal(size=(batch, 2 * 2**spec.n_qubits))
    return Workload.build(spec, x, w, **kw)


@pytest.mark.parametrize(
    ("name", "output"),
    [
        ("angle", "probabilities"),
        ("timestep", "probabilities"),
        ("complex", "probabilities"),
        ("complex_timestep", "probabilities"),
        ("complex_timestep", "fidelity"),
        ("complex_timestep", "expectation"),
        ("timestep", "expectation"),
        ("angle", "fidelity"),
        ("amplitude_hqconv", "fidelity"),
        ("noisy", "probabilities"),
    ],
)
def test_values_and_jacobians_match_the_exact_engine(name: str, output: str) -> None:
    levels = [0.05, 0.3] if name == "noisy" else None
    work = _work(name, task="jacobian", output=output, noise_levels=levels)
    got, want = AER.run(work), EXACT.run(work)
    assert got.values is not None and want.values is not None
    assert got.values.shape == want.values.shape
    np.testing.assert_allclose(got.values, want.values, atol=1e-6)
    np.testing.assert_allclose(got.d_inputs, want.d_inputs, atol=1e-6)  # type: ignore[arg-type]
    np.testing.assert_allclose(got.d_weights, want.d_weights, atol=1e-6)  # type: ignore[arg-type]
    assert got.metadata["submissions"] == 1
    if output == "probabilities":
        np.testing.assert_allclose(got.values.sum(-1), 1.0, atol=1e-9)


@pytest.mark.parametrize("name", ["timestep", "complex_timestep", "amplitude_hqconv"])
def test_block_diagonal_metric_matches_the_exact_engine(name: str) -> None:
    work = _work(name, task="metric_tensor", metric="block_diagonal")
    got, want = AER.run(work), EXACT.run(work)
    assert got.values is not None and want.values is not None
    assert got.values.shape == (1, 3, work.spec.n_weights, work.spec.n_weights)
    np.testing.assert_allclose(got.values, want.values, atol=1e-6)


def test_full_metric_is_refused_naming_metric() -> None:
    with pytest.raises(BackendLimitError) as err:
        AER.run(_work("angle", task="metric_tensor"))
    assert err.value.field == "metric"


def test_noisy_fidelity_is_the_density_matrix_overlap() -> None:
    work = _work("noisy", output="fidelity", noise_levels=[0.0, 0.2])
    got = AER.run(work).values
    assert got is not None
    spec, d = work.spec, 2**work.spec.n_qubits
    for k, level in enumerate((0.0, 0.2)):
        template = build(spec, noise_level=level)
        for b in range(work.inputs.shape[0]):
            values = dict(
                zip(template.parameter_order(), [*work.inputs[b], *work.weights], strict=True)
            )
            rho = DensityMatrix(template.circuit.assign_parameters(values)).data
            phi = work.targets[b, :d] + 1j * work.targets[b, d:]  # type: ignore[index]
            phi = phi / np.linalg.norm(phi)
            assert got[k, b, 0] == pytest.approx(float(np.real(phi.conj() @ rho @ phi)), abs=1e-9)


def test_shots_stay_within_shot_noise() -> None:
    shots = 4000
    work = _work("timestep", task="jacobian", output="probabilities")
    exact = EXACT.run(work)
    sampled = AER.run(
        Workload.build(
            work.spec,
            work.inputs,
            work.weights,
            task="jacobian",
            output="probabilities",
            shots=shots,
            seed=3,
        )
    )
    assert sampled.values is not None and exact.values is not None
    np.testing.assert_allclose(sampled.values.sum(-1), 1.0, atol=1e-12)
    sigma = np.sqrt(exact.values * (1 - exact.values) / shots) + 1e-3
    assert np.all(np.abs(sampled.values - exact.values) < 6 * sigma)
    # a two-term shift derivative: 0.5 (f+ - f-), each row's frequency sd <= 0.5 / sqrt(N);
    # d/dv_j and d/dtau scale it by |tau_j| and sum over angles: bound by the largest factor
    tau = np.abs(work.inputs[:, work.spec.n_data_inputs :]).max()
    slopes = np.abs(work.weights).sum()
    bound = 6 * np.sqrt(0.5) * 0.5 / np.sqrt(shots)
    assert np.abs(sampled.d_weights - exact.d_weights).max() < bound * max(1.0, tau)  # type: ignore[operator]
    assert np.abs(sampled.d_inputs - exact.d_inputs).max() < bound * max(1.0, slopes)  # type: ignore[operator]


def test_shot_fidelity_and_metric_within_bounds() -> None:
    shots = 4000
    work = _work("complex_timestep", output="fidelity")
    exact = EXACT.run(work).values
    spec, x, w = work.spec, work.inputs, work.weights
    sampled = AER.run(
        Workload.build(spec, x, w, output="fidelity", targets=work.targets, shots=shots, seed=1)
    ).values
    assert sampled is not None and exact is not None
    assert np.all(np.abs(sampled - exact) < 6 * np.sqrt(exact * (1 - exact) / shots) + 1e-3)
    metric = Workload.build(spec, x, w, task="metric_tensor", metric="block_diagonal")
    g_exact = EXACT.run(metric).values
    g_shots = AER.run(
        Workload.build(
            spec, x, w, task="metric_tensor", metric="block_diagonal", shots=shots, seed=2
        )
    ).values
    assert g_exact is not None and g_shots is not None
    # entries are covariances of generators with eigenvalues +-1/2 (times tau^2 <= max tau^2)
    tau2 = max(1.0, float(np.max(x[:, spec.n_data_inputs :] ** 2)))
    assert np.abs(g_shots - g_exact).max() < 6 * 0.25 * tau2 / np.sqrt(shots) * 2


@pytest.mark.parametrize("name", ["timestep", "complex_timestep", "noisy"])
@pytest.mark.parametrize("engine", ["heisenberg", "statevector"])
def test_exact_expectation_function_reads_timesteps_and_complex_states(
    name: str, engine: str
) -> None:
    """``qldm.backends.exact.expectation`` (the autograd function, any forced engine) gives
    Aer's values for specs its Pauli engines cannot read (it gave wrong numbers)."""
    import torch

    from qldm.backends.exact import expectation

    if name == "noisy" and engine == "statevector":  # a plain noisy spec keeps its engine
        pytest.skip("the statevector engine is for noiseless specs")
    work = _work(name)
    got = expectation(
        work.spec,
        torch.tensor(work.inputs),
        torch.tensor(work.weights),
        engine=engine,  # type: ignore[arg-type]
    )
    want = AER.run(work).values
    np.testing.assert_allclose(got.detach().numpy(), want, atol=1e-9)  # type: ignore[arg-type]
