"""Trajectory sampling of the channels against Qiskit density matrices, analytic variances and
finite differences.

The statistics tests take one qubit and one channel, where a draw's output is a random
variable with a few values known in closed form (from Qiskit's ``Statevector`` of the circuit
before the channel): its mean must lie within 4 standard errors of Qiskit's ``DensityMatrix``
with the channel's Kraus operators, and its sample variance within 4 standard deviations (of
the sample variance, from the exact fourth central moment) of the analytic variance.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from qiskit.quantum_info import DensityMatrix, Kraus, SparsePauliOp, Statevector

from qldm.backends import _torch_ops as ops
from qldm.backends.base import Task, Workload
from qldm.backends.exact import ExactBackend, expectation
from qldm.backends.trajectory import draw_uniforms, pauli_codes, sample, simulate, with_score
from qldm.circuits import PQCSpec
from qldm.circuits.qiskit_builder import build
from qldm.errors import InvalidSpecError

DRAWS = 4000
CHANNELS = ("bit_flip", "phase_flip", "depolarizing", "amplitude_damping")
STRENGTH = {"bit_flip": 0.2, "phase_flip": 0.3, "depolarizing": 0.4, "amplitude_damping": 0.35}
PAULIS = ("X", "Y", "Z")


def one_qubit_spec(kind: str, strength: float) -> PQCSpec:
    return PQCSpec.parse(
        {
            "n_qubits": 1,
            "layers": 1,
            "encoding": "angle_ry",
            "ansatz": "ry_rz_brickwork",
            "channel": {"kind": kind, "strength": strength},
            "observables": list(PAULIS),
        }
    )


def kraus(kind: str, s: float) -> list[np.ndarray]:
    """The Kraus operators of :class:`qldm.circuits.spec.ChannelSpec`, written out here."""
    eye = np.eye(2)
    x = np.array([[0, 1], [1, 0]])
    y = np.array([[0, -1j], [1j, 0]])
    z = np.diag([1.0, -1.0])
    if kind == "bit_flip":
        return [math.sqrt(1 - s) * eye, math.sqrt(s) * x]
    if kind == "phase_flip":
        return [math.sqrt(1 - s) * eye, math.sqrt(s) * z]
    if kind == "depolarizing":
        return [math.sqrt(1 - 3 * s / 4) * eye] + [math.sqrt(s / 4) * p for p in (x, y, z)]
    return [np.array([[1, 0], [0, math.sqrt(1 - s)]]), np.array([[0, math.sqrt(s)], [0, 0]])]


def bloch_of(psi: np.ndarray) -> np.ndarray:
    sv = Statevector(psi)
    return np.array([sv.expectation_value(SparsePauliOp(p)).real for p in PAULIS])


def outcome_distribution(kind: str, s: float, psi: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """``[(probability, (<X>, <Y>, <Z>))]`` of one draw of the channel on the pure state psi."""
    out = []
    if kind == "amplitude_damping":
        for k in kraus(kind, s):
            phi = k @ psi
            p = float(np.vdot(phi, phi).real)
            if p > 0:
                out.append((p, bloch_of(phi / math.sqrt(p))))
        return out
    paulis = {"I": np.eye(2), "X": np.array([[0, 1], [1, 0]]), "Z": np.diag([1.0, -1.0])}
    paulis["Y"] = np.array([[0, -1j], [1j, 0]])
    probs = {
        "bit_flip": {"I": 1 - s, "X": s},
        "phase_flip": {"I": 1 - s, "Z": s},
        "depolarizing": {"I": 1 - 3 * s / 4, "X": s / 4, "Y": s / 4, "Z": s / 4},
    }[kind]
    return [(p, bloch_of(paulis[name] @ psi)) for name, p in probs.items() if p > 0]


def moments(dist: list[tuple[float, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, variance and fourth central moment per component."""
    p = np.array([q for q, _ in dist])
    v = np.stack([b for _, b in dist])
    mean = p @ v
    var = p @ (v - mean) ** 2
    mu4 = p @ (v - mean) ** 4
    return mean, var, mu4


def channel_statistics(kind: str, *, draws: int = DRAWS, seed: int = 11) -> dict[str, Any]:
    """Draw ``draws`` trajectories of the one-qubit circuit and compare with the references.

    Returns:
        Per component (X, Y, Z): the trajectory mean, its standard error, the density-matrix
        value, the z-score, the sample and analytic variances, their ratio and the variance's
        z-score.
    """
    s = STRENGTH[kind]
    spec = one_qubit_spec(kind, s)
    x = np.array([[0.7]])
    w = np.array([0.4, 0.9])
    # the state before the channel, and the density matrix after it, by Qiskit
    noiseless = build(spec, channels=False)
    bound = noiseless.circuit.assign_parameters(
        dict(zip([*noiseless.inputs, *noiseless.weights], [*x[0], *w], strict=True))
    )
    psi = Statevector(bound).data
    rho = DensityMatrix(psi).evolve(Kraus(kraus(kind, s)))
    reference = np.array([rho.expectation_value(SparsePauliOp(p)).real for p in PAULIS])
    mean_a, var_a, mu4 = moments(outcome_distribution(kind, s, psi))
    np.testing.assert_allclose(mean_a, reference, atol=1e-12)  # the unravelling is exact
    xt = torch.tensor(np.repeat(x, draws, 0))
    values = sample(spec, xt, torch.tensor(w), noise_levels=None, rng=np.random.default_rng(seed))[
        0
    ].numpy()
    mean = values.mean(0)
    var = values.var(0, ddof=1)
    se = np.sqrt(var / draws)
    var_sd = np.sqrt(np.maximum(mu4 - var_a**2, 0.0) / draws)
    out = {}
    for j, name in enumerate(PAULIS):
        out[name] = {
            "mean": float(mean[j]),
            "se": float(se[j]),
            "density": float(reference[j]),
            "z": float((mean[j] - reference[j]) / se[j]) if var_a[j] > 1e-12 else 0.0,
            "var": float(var[j]),
            "var_analytic": float(var_a[j]),
            "var_ratio": float(var[j] / var_a[j]) if var_a[j] > 1e-12 else float("nan"),
            "var_z": float((var[j] - var_a[j]) / var_sd[j]) if var_sd[j] > 1e-12 else 0.0,
        }
    return out


@pytest.mark.parametrize("kind", CHANNELS)
def test_mean_and_variance_match_the_density_matrix_and_the_analytic_variance(kind: str) -> None:
    stats = channel_statistics(kind)
    for name, row in stats.items():
        assert abs(row["z"]) < 4, (name, row)
        if row["var_analytic"] > 1e-12:
            assert abs(row["var_z"]) < 4, (name, row)
        else:  # a component the channel cannot change: every draw gives the same value
            assert row["var"] < 1e-20, (name, row)
            assert abs(row["mean"] - row["density"]) < 1e-12
    # every channel here moves at least one component
    assert any(row["var_analytic"] > 1e-3 for row in stats.values())


@pytest.mark.parametrize("kind", CHANNELS)
def test_several_qubits_and_layers_average_to_the_density_engine(kind: str) -> None:
    spec = PQCSpec.parse(
        {
            "n_qubits": 3,
            "layers": 2,
            "ansatz": "ry_rz_brickwork",
            "channel": {"kind": kind, "strength": 0.25},
            "observables": "z_each",
        }
    )
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, dtype=torch.float64, generator=gen) * 3
    w = torch.rand(spec.n_weights, dtype=torch.float64, generator=gen) * 3
    draws = 2000
    values = sample(spec, x.repeat(draws, 1), w, noise_levels=None, rng=np.random.default_rng(5))[
        0
    ].reshape(draws, 2, 3)
    reference = expectation(spec, x, w)[0]
    z = (values.mean(0) - reference) / (values.std(0) / math.sqrt(draws))
    assert float(z.abs().max()) < 4


def test_noise_levels_draw_each_level_and_level_zero_is_noiseless() -> None:
    spec = PQCSpec.parse(
        {"n_qubits": 2, "layers": 2, "channel": {"kind": "bit_flip", "strength": 0.1}}
    )
    x = torch.tensor([[0.3, 1.1]], dtype=torch.float64).repeat(500, 1)
    w = torch.linspace(-1, 1, spec.n_weights, dtype=torch.float64)
    levels = torch.tensor([0.0, 0.5, 0.2], dtype=torch.float64)
    out = sample(spec, x, w, noise_levels=levels, rng=np.random.default_rng(0))
    assert out.shape == (3, 500, 2)
    noiseless = PQCSpec.parse({"n_qubits": 2, "layers": 2})
    torch.testing.assert_close(out[0], expectation(noiseless, x[:1], w)[0].expand(500, 2))
    reference = expectation(spec, x[:1], w, noise_levels=levels)[:, 0]
    for k in (1, 2):
        se = out[k].std(0) / math.sqrt(500)
        assert float(((out[k].mean(0) - reference[k]) / se).abs().max()) < 4
    # levels 1 and 2 are drawn independently of each other
    assert not torch.equal(out[1] == out[1][0], out[2] == out[2][0])


def test_pauli_codes_probabilities() -> None:
    u = torch.rand(200_000, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    codes = pauli_codes("depolarizing", u, torch.tensor(0.6, dtype=torch.float64))
    freq = torch.bincount(codes, minlength=4).double() / u.numel()
    expected = torch.tensor([1 - 0.45, 0.15, 0.15, 0.15], dtype=torch.float64)
    assert float((freq - expected).abs().max()) < 4 * math.sqrt(0.25 / u.numel())
    assert int(pauli_codes("bit_flip", u, torch.tensor(0.0)).sum()) == 0
    assert int(pauli_codes("depolarizing", u, torch.tensor(0.0)).sum()) == 0
    with pytest.raises(InvalidSpecError) as err:
        pauli_codes("amplitude_damping", u, torch.tensor(0.1))
    assert err.value.field == "channel.kind"


# ---------------------------------------------------------------------------- gradients


def fixed_trajectory(
    spec: PQCSpec, uniforms: torch.Tensor
) -> Any:  # (x (B, I), w (P,)) -> (B, O + 1): values, then log-probability; draws held fixed
    strengths = torch.tensor([spec.layer_strengths()], dtype=torch.float64)

    def f(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        values, log_prob = simulate(
            spec, ops.statevectors(spec, x), w, strengths.expand(x.shape[0], -1), uniforms
        )
        return torch.cat([values, log_prob[:, None]], 1)

    return f


@pytest.mark.parametrize("kind", CHANNELS)
def test_autograd_through_a_trajectory_matches_finite_differences(kind: str) -> None:
    spec = PQCSpec.parse(
        {
            "n_qubits": 3,
            "layers": 2,
            "ansatz": "ry_rz_brickwork",
            "channel": {"kind": kind, "strength": 0.4},
            "observables": "z_each",
        }
    )
    gen = torch.Generator().manual_seed(2)
    x = (torch.rand(4, 3, dtype=torch.float64, generator=gen) * 3).requires_grad_(True)
    w = (torch.rand(spec.n_weights, dtype=torch.float64, generator=gen) * 3).requires_grad_(True)
    uniforms = torch.as_tensor(draw_uniforms(spec, 4, np.random.default_rng(8)))
    f = fixed_trajectory(spec, uniforms)
    jac_x, jac_w = torch.autograd.functional.jacobian(f, (x, w))  # (B,O+1,B,I), (B,O+1,P)
    if kind != "amplitude_damping":  # Pauli draws do not depend on the state
        assert float(f(x, w)[:, -1].detach().abs().max()) == 0.0
        assert float(jac_w[:, -1].abs().max()) == 0.0
    step = 1e-6
    with torch.no_grad():
        for p in range(spec.n_weights):
            e = torch.zeros_like(w)
            e[p] = step
            fd = (f(x, w + e) - f(x, w - e)) / (2 * step)
            torch.testing.assert_close(jac_w[..., p], fd, atol=1e-6, rtol=0)
        for i in range(3):
            e = torch.zeros_like(x)
            e[:, i] = step
            fd = (f(x + e, w) - f(x - e, w)) / (2 * step)
            torch.testing.assert_close(jac_x[:, :, :, i].diagonal(dim1=0, dim2=2).T, fd)


@pytest.mark.parametrize("kind", ["depolarizing", "amplitude_damping"])
def test_backend_jacobians_are_the_trajectory_gradients(kind: str) -> None:
    spec = PQCSpec.parse({"n_qubits": 2, "layers": 2, "channel": {"kind": kind, "strength": 0.3}})
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 3, (5, 2))
    w = rng.uniform(-2, 2, spec.n_weights)
    levels = np.array([0.3, 0.6])
    work = Workload.build(
        spec,
        x,
        w,
        noise_levels=levels,
        task=Task.JACOBIAN,
        seed=9,
        noise_sampling="trajectory",
    )
    ev = ExactBackend().run(work)
    assert ev.values.shape == (2, 5, 2) and ev.d_weights.shape == (2, 5, 2, spec.n_weights)
    # the same draws (same seed, same layout): rows k*B + b
    uniforms = torch.as_tensor(draw_uniforms(spec, 10, np.random.default_rng(9)))
    strengths = torch.tensor(np.repeat(levels, 5)[:, None].repeat(2, 1))
    xt = torch.tensor(np.tile(x, (2, 1)), requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    values, log_prob = simulate(spec, ops.statevectors(spec, xt), wt, strengths, uniforms)
    out = with_score(values, log_prob, torch.arange(10) // 5)  # baseline within each level
    np.testing.assert_allclose(ev.values.reshape(10, 2), out.detach().numpy(), atol=1e-12)
    for o in range(2):
        for r in range(10):
            gx, gw = torch.autograd.grad(out[r, o], (xt, wt), retain_graph=True)
            k, b = divmod(r, 5)
            np.testing.assert_allclose(ev.d_weights[k, b, o], gw.numpy(), atol=1e-10)
            np.testing.assert_allclose(ev.d_inputs[k, b, o], gx[r].numpy(), atol=1e-10)
    # the values-only task draws the same trajectories
    plain = ExactBackend().run(
        Workload.build(spec, x, w, noise_levels=levels, seed=9, noise_sampling="trajectory")
    )
    np.testing.assert_allclose(plain.values, ev.values, atol=1e-12)


@pytest.mark.parametrize("kind", ["bit_flip", "depolarizing"])
def test_pauli_trajectory_gradients_average_to_the_density_gradient(kind: str) -> None:
    spec = PQCSpec.parse({"n_qubits": 2, "layers": 2, "channel": {"kind": kind, "strength": 0.3}})
    x = np.array([[0.4, 2.0]])
    w = np.linspace(-1.2, 0.8, spec.n_weights)
    draws = 2000
    ev = ExactBackend().run(
        Workload.build(
            spec,
            np.repeat(x, draws, 0),
            w,
            task="jacobian",
            seed=1,
            noise_sampling="trajectory",
        )
    )
    exact = ExactBackend().run(Workload.build(spec, x, w, task="jacobian"))
    g = ev.d_weights[0]  # (draws, O, P)
    se = g.std(0) / math.sqrt(draws)
    diff = g.mean(0) - exact.d_weights[0, 0]
    random = se > 1e-9  # weights outside the light cone: zero on every trajectory
    assert np.abs(diff[random] / se[random]).max() < 4.5
    assert np.abs(diff[~random]).max() < 1e-12


# ---------------------------------------------------------------------------- engine facts


def test_shots_are_born_estimates_of_each_trajectory() -> None:
    spec = PQCSpec.parse(
        {"n_qubits": 2, "layers": 1, "channel": {"kind": "phase_flip", "strength": 0.5}}
    )
    x, w = np.full((300, 2), 0.9), np.zeros(spec.n_weights)
    exact = Workload.build(spec, x, w, seed=2, noise_sampling="trajectory")
    shot = Workload.build(spec, x, w, seed=2, shots=64, noise_sampling="trajectory")
    a, b = ExactBackend().run(exact).values, ExactBackend().run(shot).values
    assert np.all(np.abs(np.round((b + 1) * 32) - (b + 1) * 32) < 1e-9)  # k / 64 grid
    assert abs(float((b - a).mean())) < 4 * math.sqrt(1 / (64 * 600))


def test_twelve_qubit_noisy_hqconv_runs_on_statevectors() -> None:
    spec = PQCSpec.parse(
        {
            "n_qubits": 12,
            "layers": 2,
            "ansatz": "hqconv",
            "channel": {"kind": "amplitude_damping", "strength": 0.05},
            "observables": "z_each",
        }
    )
    rng = np.random.default_rng(0)
    work = Workload.build(
        spec,
        rng.uniform(0, 3, (3, 12)),
        rng.uniform(-1, 1, spec.n_weights),
        seed=0,
        noise_sampling="trajectory",
    )
    ev = ExactBackend().run(work)
    assert ev.values.shape == (1, 3, 12) and np.all(np.abs(ev.values) <= 1 + 1e-12)
    assert ev.metadata["engine"] == "trajectory"


def test_noiseless_spec_is_unchanged_by_trajectory_sampling() -> None:
    spec = PQCSpec.parse({"n_qubits": 2, "layers": 2})
    rng = np.random.default_rng(1)
    x, w = rng.uniform(0, 3, (4, 2)), rng.uniform(-1, 1, spec.n_weights)
    a = ExactBackend().run(Workload.build(spec, x, w, task="jacobian"))
    b = ExactBackend().run(Workload.build(spec, x, w, task="jacobian", noise_sampling="trajectory"))
    np.testing.assert_allclose(a.values, b.values)
    np.testing.assert_allclose(a.d_weights, b.d_weights)


def test_workload_validates_noise_sampling() -> None:
    spec = PQCSpec.parse({"n_qubits": 1, "channel": {"kind": "bit_flip", "strength": 0.1}})
    x, w = np.zeros((1, 1)), np.zeros(spec.n_weights)
    with pytest.raises(InvalidSpecError) as err:
        Workload.build(spec, x, w, noise_sampling="sampled")
    assert err.value.field == "noise_sampling"
    with pytest.raises(InvalidSpecError) as err:
        Workload.build(spec, x, w, task="counts", shots=10, noise_sampling="trajectory")
    assert err.value.field == "noise_sampling"
