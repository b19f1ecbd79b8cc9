"""Seed 000's theory, measured: checked against analytic values and independent formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from qiskit.quantum_info import Kraus, Statevector, SuperOp

from qldm.circuits import PQCSpec
from qldm.circuits.qiskit_builder import build
from qldm.errors import InvalidSpecError
from qldm.hybrid.theory import (
    ANALYTIC_CONTRACTION,
    PAPER_CONTRACTION,
    contraction,
    gradient_variance,
    layer_channel,
    qfim,
    single_qubit_channel,
)

I2 = np.eye(2)
X = np.array([[0, 1], [1, 0]])
Y = np.array([[0, -1j], [1j, 0]])
Z = np.diag([1.0, -1.0])


def _kraus(kind: str, s: float) -> list[np.ndarray]:
    """The Kraus forms documented on ``ChannelSpec``, written out independently."""
    if kind == "amplitude_damping":
        return [np.array([[1, 0], [0, math.sqrt(1 - s)]]), np.array([[0, math.sqrt(s)], [0, 0]])]
    if kind == "bit_flip":
        return [math.sqrt(1 - s) * I2, math.sqrt(s) * X]
    if kind == "phase_flip":
        return [math.sqrt(1 - s) * I2, math.sqrt(s) * Z]
    # depolarizing: (1-s) rho + s I/2 = (1 - 3s/4) rho + s/4 (X rho X + Y rho Y + Z rho Z)
    return [math.sqrt(1 - 3 * s / 4) * I2] + [math.sqrt(s / 4) * P for P in (X, Y, Z)]


KINDS = ("amplitude_damping", "bit_flip", "phase_flip", "depolarizing")


@pytest.mark.parametrize("kind", KINDS)
def test_the_channel_is_the_documented_kraus_map(kind: str) -> None:
    got = single_qubit_channel(kind, 0.3)
    assert np.allclose(got.data, SuperOp(Kraus(_kraus(kind, 0.3))).data, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("strength", [0.1, 0.4])
def test_one_qubit_contraction_is_the_analytic_coefficient(kind: str, strength: float) -> None:
    measured = contraction(single_qubit_channel(kind, strength), restarts=6, seed=1)
    assert measured == pytest.approx(ANALYTIC_CONTRACTION[kind](strength), abs=1e-5)


def test_the_papers_lipschitz_constants_are_not_the_contraction() -> None:
    for kind in ("bit_flip", "phase_flip", "amplitude_damping"):
        measured = contraction(single_qubit_channel(kind, 0.3), restarts=6, seed=2)
        assert measured > PAPER_CONTRACTION[kind](0.3) + 0.1, kind


def test_a_noiseless_layer_stack_preserves_trace_distance_and_a_noisy_one_does_not_grow_it() -> (
    None
):
    rng = np.random.default_rng(3)
    clean = PQCSpec(n_qubits=2, layers=2)
    w = rng.uniform(-math.pi, math.pi, clean.n_weights)
    assert contraction(layer_channel(clean, w), restarts=3) == pytest.approx(1.0, abs=1e-6)
    noisy = PQCSpec(n_qubits=2, layers=2, channel={"kind": "depolarizing", "strength": 0.2})
    value = contraction(layer_channel(noisy, w), restarts=3)
    assert 0.0 < value <= 0.8 + 1e-6  # the last layer's depolarizing alone contracts by 1 - s


def test_contraction_refuses_an_encoding_without_a_zero_identity() -> None:
    with pytest.raises(InvalidSpecError) as info:
        layer_channel(PQCSpec(n_qubits=1, encoding="phase"), np.zeros(2))
    assert info.value.field == "encoding"


@pytest.mark.parametrize("strength", [0.0, 0.25])
def test_qfim_of_one_rotated_qubit_is_the_bloch_formula(strength: float) -> None:
    """After RY(x + w0) RZ(w1) and depolarizing s the Bloch vector has length r = 1 - s and
    turns on circles of radius r and r sin(a): F = diag(r², r² sin²(a)), a = x + w0."""
    channel = {"kind": "depolarizing", "strength": strength} if strength else {}
    spec = PQCSpec(n_qubits=1, layers=1, channel=channel)
    x, w = 0.4, np.array([0.7, -0.3])
    f = qfim(spec, [x], w)
    r, a = 1 - strength, x + w[0]
    assert f == pytest.approx(np.diag([r**2, r**2 * math.sin(a) ** 2]), abs=1e-9)


def test_qfim_of_a_pure_state_is_the_fubini_study_metric() -> None:
    """Noiseless: F_ij = 4 Re(<d_i psi|d_j psi> - <d_i psi|psi><psi|d_j psi>), from Qiskit
    statevectors and central differences."""
    rng = np.random.default_rng(4)
    spec = PQCSpec(n_qubits=3, layers=2)
    x, w = rng.uniform(-1, 1, 3), rng.uniform(-math.pi, math.pi, spec.n_weights)
    built = build(spec)

    def psi(weights: np.ndarray) -> np.ndarray:
        values = dict(zip(built.inputs, x, strict=True)) | dict(
            zip(built.weights, weights, strict=True)
        )
        return Statevector(built.circuit.assign_parameters(values)).data

    h, state = 1e-5, psi(w)
    d = [(psi(w + h * e) - psi(w - h * e)) / (2 * h) for e in np.eye(w.size)]
    fs = np.array(
        [[4 * np.real(np.vdot(a, b) - np.vdot(a, state) * np.vdot(state, b)) for b in d] for a in d]
    )
    assert qfim(spec, x, w) == pytest.approx(fs, abs=1e-7)


def test_noise_shrinks_the_qfim() -> None:
    rng = np.random.default_rng(5)
    clean = PQCSpec(n_qubits=2, layers=2)
    x, w = rng.uniform(-1, 1, 2), rng.uniform(-math.pi, math.pi, clean.n_weights)
    f_clean = qfim(clean, x, w)
    for kind in KINDS:
        noisy = PQCSpec(n_qubits=2, layers=2, channel={"kind": kind, "strength": 0.2})
        f_noisy = qfim(noisy, x, w)
        # Theorem 3's monotonicity covers a channel after the whole circuit; with channels
        # between the layers this checks the trace and positivity only
        assert np.trace(f_noisy) < np.trace(f_clean), kind
        assert np.linalg.eigvalsh(f_noisy).min() > -1e-9


@pytest.mark.parametrize("strength", [0.0, 0.3])
def test_gradient_variance_of_one_qubit_is_analytic(strength: float) -> None:
    """<Z> = (1 - s) cos(w0) at x = 0: Var[-(1 - s) sin w0] = (1 - s)² / 2 for w0 ~ U(-pi, pi)."""
    channel = {"kind": "depolarizing", "strength": strength} if strength else {}
    spec = PQCSpec(n_qubits=1, layers=1, channel=channel)
    measured = gradient_variance(spec, draws=400, seed=6)
    want = (1 - strength) ** 2 / 2
    # the sample variance's standard error: (1 - s)² sqrt(Var[sin²]) / sqrt(400) ~ 0.018 (1-s)²
    assert abs(measured - want) < 4 * 0.0177 * (1 - strength) ** 2
