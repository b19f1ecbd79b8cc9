"""Seed 000's theoretical claims (section 4), measured on the circuits qldm runs.

The paper states that its noise channels are strictly contractive in trace distance, with
Lipschitz constants ``1 - p`` (bit flip, phase flip) and ``1 - γ`` (amplitude damping), that
the contraction compounds over the layers of a PQC (Theorem 2), and that the quantum Fisher
information matrix (QFIM) of the noisy circuit shrinks with depth (Theorem 4), at the price of
noise-induced barren plateaus. This module measures each quantity instead of assuming it:

- :func:`contraction`: ``sup ‖E(ρ) - E(σ)‖₁ / ‖ρ - σ‖₁`` by optimisation over pairs of pure
  states (the supremum of the trace-norm contraction is attained on orthogonal pure pairs), for
  one channel or a whole noisy layer stack, as Qiskit super-operators of the spec's own circuit;
- :func:`qfim`: the QFIM of ``ρ(θ)`` from Qiskit density matrices, via the symmetric logarithmic
  derivative, with exact parameter-shift derivatives of ``ρ``;
- :func:`gradient_variance`: ``Var_θ[∂⟨Z_0⟩/∂θ_0]`` over random weights, through
  :class:`qldm.client.QuantumLayer` on the exact engine.

:data:`ANALYTIC_CONTRACTION` holds the true one-qubit coefficients (the Bloch ball is scaled by
``(1, 1-2p, 1-2p)`` under bit flip, ``(1-2p, 1-2p, 1)`` under phase flip, ``√(1-γ)`` across and
``1-γ`` along Z under amplitude damping, ``1-p`` everywhere under depolarizing) and
:data:`PAPER_CONTRACTION` the paper's claims, so reports can put them side by side.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from qiskit.quantum_info import DensityMatrix, SuperOp
from scipy.optimize import minimize

from qldm.circuits import ChannelSpec, PQCSpec
from qldm.circuits.qiskit_builder import build
from qldm.errors import InvalidSpecError

__all__ = [
    "ANALYTIC_CONTRACTION",
    "PAPER_CONTRACTION",
    "contraction",
    "gradient_variance",
    "layer_channel",
    "qfim",
    "single_qubit_channel",
]

ANALYTIC_CONTRACTION: dict[str, Callable[[float], float]] = {
    "bit_flip": lambda p: 1.0,
    "phase_flip": lambda p: 1.0,
    "amplitude_damping": lambda g: math.sqrt(1.0 - g),
    "depolarizing": lambda p: 1.0 - p,
}
"""The trace-distance contraction coefficient of each one-qubit channel at strength ``s``."""

PAPER_CONTRACTION: dict[str, Callable[[float], float]] = {
    "bit_flip": lambda p: 1.0 - p,
    "phase_flip": lambda p: 1.0 - p,
    "amplitude_damping": lambda g: 1.0 - g,
}
"""What seed 000 (section 4.1) states for the same coefficients."""


def _zero_input_circuit(spec: PQCSpec, weights: np.ndarray) -> Any:
    """The spec's circuit with every input 0 (``angle_ry``/``angle_rx``: the identity)."""
    if spec.encoding not in ("angle_ry", "angle_rx"):
        raise InvalidSpecError(
            "the contraction is measured on the ansatz alone: use angle_ry or angle_rx, whose "
            "zero input is the identity",
            field="encoding",
        )
    built = build(spec)
    values = dict.fromkeys(built.inputs, 0.0) | dict(zip(built.weights, weights, strict=True))
    return built.circuit.assign_parameters(values)


def single_qubit_channel(kind: str, strength: float) -> SuperOp:
    """The spec's channel ``kind`` at ``strength`` on one qubit, as Qiskit builds it."""
    spec = PQCSpec(
        n_qubits=1,
        layers=1,
        ansatz="basic_entangler",
        channel=ChannelSpec(kind=kind, strength=strength),  # type: ignore[arg-type]
    )
    return SuperOp(_zero_input_circuit(spec, np.zeros(spec.n_weights)))


def layer_channel(spec: PQCSpec, weights: np.ndarray) -> SuperOp:
    """Every ansatz layer of ``spec`` with its channel, as one super-operator (inputs at 0)."""
    return SuperOp(_zero_input_circuit(spec, np.asarray(weights, dtype=np.float64)))


def _pure(params: np.ndarray, dim: int) -> np.ndarray:
    vec = params[:dim] + 1j * params[dim:]
    return vec / np.linalg.norm(vec)


def _trace_norm(matrix: np.ndarray) -> float:
    return float(np.abs(np.linalg.eigvalsh(matrix)).sum())


def contraction(channel: SuperOp, *, restarts: int = 16, seed: int = 0, tol: float = 1e-9) -> float:
    """``sup_{ρ≠σ} ‖E(ρ) - E(σ)‖₁ / ‖ρ - σ‖₁`` over pure pairs, by multi-start optimisation.

    The value is a lower bound of the supremum that the optimiser reaches; on one qubit it
    meets :data:`ANALYTIC_CONTRACTION` to about 1e-6.

    Args:
        channel: a CPTP map on ``n`` qubits.
        restarts: random starting pairs (the best result is kept).
        seed: seed of the starting pairs.
        tol: the optimiser's tolerance.

    Returns:
        The contraction coefficient, in ``[0, 1]``.
    """
    dim = channel.input_dims()
    d = int(np.prod(dim))
    rng = np.random.default_rng(seed)

    def ratio(x: np.ndarray) -> float:
        psi, phi = _pure(x[: 2 * d], d), _pure(x[2 * d :], d)
        delta = np.outer(psi, psi.conj()) - np.outer(phi, phi.conj())
        before = _trace_norm(delta)
        if before < 1e-9:
            return 0.0
        after = DensityMatrix(np.outer(psi, psi.conj())).evolve(channel).data
        after = after - DensityMatrix(np.outer(phi, phi.conj())).evolve(channel).data
        return -_trace_norm(after) / before

    best = 0.0
    for _ in range(restarts):
        result = minimize(ratio, rng.normal(size=4 * d), method="BFGS", options={"gtol": tol})
        best = max(best, -float(result.fun))
    return min(best, 1.0)


def _density(spec: PQCSpec, inputs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    built = build(spec)
    values = dict(zip(built.inputs, inputs, strict=True)) | dict(
        zip(built.weights, weights, strict=True)
    )
    return DensityMatrix(built.circuit.assign_parameters(values)).data


def qfim(spec: PQCSpec, inputs: Sequence[float], weights: Sequence[float]) -> np.ndarray:
    """The QFIM ``F_ij = 2 Σ_{λk+λl>0} Re(⟨k|∂_iρ|l⟩⟨l|∂_jρ|k⟩) / (λk + λl)`` of ``ρ(θ)``.

    ``ρ`` is the spec's state (channels included) for one input; ``∂_iρ`` comes from the
    two-term shift rule ``(ρ(θ + π/2 e_i) - ρ(θ - π/2 e_i)) / 2``, exact because every weight
    drives one Pauli rotation (``RY``, ``RZ``, ``RX``). Controlled rotations (``hqconv``,
    ``fqconv``) need four terms and are refused.

    Args:
        spec: the circuit.
        inputs: ``(I,)`` one sample.
        weights: ``(P,)``.

    Returns:
        ``(P, P)`` real symmetric positive semi-definite matrix.
    """
    if spec.ansatz in ("hqconv", "fqconv"):
        raise InvalidSpecError("qfim takes ansätze of Pauli rotations only", field="ansatz")
    x = np.asarray(inputs, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    rho = _density(spec, x, w)
    derivatives = []
    for i in range(w.size):
        shift = np.zeros_like(w)
        shift[i] = math.pi / 2
        derivatives.append((_density(spec, x, w + shift) - _density(spec, x, w - shift)) / 2)
    lam, vecs = np.linalg.eigh(rho)
    in_basis = [vecs.conj().T @ d @ vecs for d in derivatives]
    sums = lam[:, None] + lam[None, :]
    keep = sums > 1e-12
    weight = np.where(keep, 2.0 / np.where(keep, sums, 1.0), 0.0)
    f = np.empty((w.size, w.size))
    for i in range(w.size):
        for j in range(i, w.size):
            value = float(np.real(np.sum(weight * in_basis[i] * in_basis[j].T)))
            f[i, j] = f[j, i] = value
    return f


def gradient_variance(
    spec: PQCSpec, *, draws: int, seed: int = 0, init_scale: float = math.pi
) -> float:
    """``Var_θ[∂⟨Z_0⟩/∂θ_0]`` over ``draws`` weight vectors ``θ ~ U(-init_scale, init_scale)``.

    One input (all zeros) per draw; gradients by autograd through the exact engine.
    """
    import torch

    from qldm.client import QuantumLayer

    if draws < 2:
        raise InvalidSpecError("draws must be at least 2", field="draws")
    layer = QuantumLayer(spec, seed=seed, init_scale=init_scale)
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(1, spec.n_inputs, dtype=torch.float64)
    grads = []
    for _ in range(draws):
        with torch.no_grad():
            layer.weight.copy_((torch.rand(spec.n_weights, generator=gen) * 2 - 1) * init_scale)
        (grad,) = torch.autograd.grad(layer(x)[0, 0], layer.weight)
        grads.append(float(grad[0]))
    return float(np.var(grads, ddof=1))
