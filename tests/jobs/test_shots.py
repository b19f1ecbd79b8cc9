"""Shot sampling: one function, the binomial law of N shots of a Pauli string, used by every
simulator (exact, aer, QPY on Aer)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter

from qldm.backends._shots import draw_counts, pauli_shot_means
from qldm.backends.aer import AerBackend
from qldm.backends.base import Workload
from qldm.backends.exact import ExactBackend
from qldm.backends.qpy_aer import QpyAerBackend
from qldm.circuits import PQCSpec
from qldm.circuits.qpy import QpyCircuit


@pytest.mark.parametrize("v", [-1.0, -0.6, 0.0, 0.3, 0.95, 1.0])
@pytest.mark.parametrize("shots", [1, 7, 100])
def test_shot_means_have_the_binomial_mean_and_variance(v: float, shots: int) -> None:
    """The mean of N ±1 outcomes with P(+1) = (1 + v) / 2: E = v, Var = (1 - v^2) / N."""
    n = 200_000
    draws = pauli_shot_means(np.full(n, v), shots, np.random.default_rng(7))
    assert draws.shape == (n,)
    # every draw is 2 k / N - 1 for an integer k in 0..N
    k = (draws + 1.0) * shots / 2.0
    np.testing.assert_allclose(k, np.round(k), atol=1e-9)
    assert np.all((k > -1e-9) & (k < shots + 1e-9))
    variance = (1.0 - v * v) / shots
    assert abs(draws.mean() - v) <= 5.0 * math.sqrt(variance / n) + 1e-12
    if variance == 0.0:
        np.testing.assert_array_equal(draws, v)
    else:
        # the sample variance of n draws has standard error ~ sqrt(2 / n) Var (kurtosis aside)
        assert draws.var() == pytest.approx(variance, rel=0.03)


def test_shot_means_keep_the_shape_clip_and_reproduce() -> None:
    values = np.array([[0.2, -0.4], [1.0 + 1e-12, -1.0 - 1e-12]])  # round-off outside [-1, 1]
    a = pauli_shot_means(values, 50, np.random.default_rng(3))
    b = pauli_shot_means(values, 50, np.random.default_rng(3))
    assert a.shape == values.shape
    np.testing.assert_array_equal(a, b)
    assert a[1, 0] == 1.0 and a[1, 1] == -1.0


def test_counts_are_multinomial_draws_of_the_distribution() -> None:
    p = np.array([0.1, 0.2, 0.3, 0.4])
    shots = 100_000
    counts = draw_counts(p, shots, 2, np.random.default_rng(1))
    assert sum(counts.values()) == shots and set(counts) == {"00", "01", "10", "11"}
    for i, label in enumerate(("00", "01", "10", "11")):
        sd = math.sqrt(p[i] * (1 - p[i]) / shots)
        assert abs(counts[label] / shots - p[i]) < 5 * sd
    assert draw_counts(np.array([0.0, 1.0]), 10, 1, np.random.default_rng(0)) == {"1": 10}


def test_every_simulator_samples_shots_with_the_one_function() -> None:
    """exact, aer and QPY on Aer draw their shots from the same generator the same way: the
    values they return are ``pauli_shot_means`` of their exact values, seeded by the job."""
    spec = PQCSpec.parse({"n_qubits": 1, "layers": 1})
    x, w = np.array([[0.3], [1.1], [2.0]]), np.array([0.2, -0.4])
    exact = ExactBackend().run(Workload.build(spec, x, w)).values
    sampled = ExactBackend().run(Workload.build(spec, x, w, shots=64, seed=9)).values
    np.testing.assert_array_equal(sampled, pauli_shot_means(exact, 64, np.random.default_rng(9)))

    aer_exact = AerBackend().run(Workload.build(spec, x, w)).values
    aer_sampled = AerBackend().run(Workload.build(spec, x, w, shots=64, seed=9)).values
    assert aer_exact is not None and aer_sampled is not None
    want = pauli_shot_means(aer_exact[0], 64, np.random.default_rng(9))  # one PUB
    np.testing.assert_array_equal(aer_sampled[0], want)

    t = Parameter("t")
    qc = QuantumCircuit(1)
    qc.ry(t, 0)
    circuit = QpyCircuit.from_circuit(qc, ["Z"], input_params=[t])
    angles = np.array([[0.3], [1.1], [2.0]])
    qpy_exact = QpyAerBackend().run(Workload.build(circuit, angles, [])).values
    assert qpy_exact is not None
    np.testing.assert_allclose(qpy_exact[0], np.cos(angles), atol=1e-12)
    qpy = QpyAerBackend().run(Workload.build(circuit, angles, [], shots=64, seed=9)).values
    want_qpy = pauli_shot_means(qpy_exact[0], 64, np.random.default_rng(9))  # one Pauli term
    np.testing.assert_array_equal(qpy, want_qpy[None])
