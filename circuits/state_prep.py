"""State preparation as a parameterized circuit: one circuit for every sample's state.

Qiskit's ``StatePreparation`` synthesizes a circuit per state, so a batch of amplitude-encoded
samples would need one transpilation per sample on a device. Here the preparation of Möttönen
et al. (2004, "Transformation of quantum states using uniformly controlled rotations") is
written once with its rotation angles as circuit parameters; a state is a binding
(:func:`prep_angles`), so every sample, every perturbed state of an input Jacobian and every
target of a fidelity share one (transpiled) circuit.

The state ``psi`` of ``n`` qubits (Qiskit order: bit ``q`` of index ``j`` is qubit ``q``) is
disentangled one qubit at a time, qubit 0 first: the amplitudes ``(psi_{2k}, psi_{2k+1})``
(bits 1.. equal to ``k``) are ``r e^{i t} (cos(a/2), e^{i f/2} sin(a/2))`` up to the common
phase ``e^{-i f/2}`` on the first, with ``a = 2 atan2(|psi_{2k+1}|, |psi_{2k}|)`` and
``f = arg psi_{2k+1} - arg psi_{2k}``; ``r e^{i t}`` with ``t`` the mean of the two phases is
the amplitude of ``k`` in the state of qubits 1.. . Preparing reverses it: for target qubit
``l = n-1 .. 0``, a rotation ``RY(a^l_k)`` then ``RZ(f^l_k)`` on qubit ``l`` controlled by the
value ``k`` of qubits ``l+1 .. n-1`` (uniformly controlled rotations). It prepares ``psi`` up
to a global phase, which no probability, fidelity or expectation value sees.

A uniformly controlled rotation with ``c`` controls is ``2^c`` rotations and ``2^c`` CNOTs
(Gray-code order): rotation ``i`` sees control value ``k`` with the sign
``(-1)^{popcount(k & gray(i))}``, so the circuit's angles are ``beta = M^T alpha / 2^c`` with
``M_{k,i} = (-1)^{popcount(k & gray(i))}`` (``M M^T = 2^c I``). The circuit has
``2 (2^n - 1)`` parameters and ``2 (2^n - 2)`` CNOTs (fewer when ``n = 1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector

from qldm.errors import InvalidSpecError

__all__ = ["n_prep_angles", "prep_angles", "prep_circuit"]


def n_prep_angles(n_qubits: int) -> int:
    """Parameters of the preparation of ``n_qubits`` qubits: ``2 (2^n - 1)``."""
    return 2 * (2**n_qubits - 1)


def prep_circuit(n_qubits: int, params: Sequence[Any] | None = None) -> QuantumCircuit:
    """The preparation circuit of ``n_qubits`` qubits.

    Args:
        n_qubits: ``n``.
        params: its :func:`n_prep_angles` parameters (or numbers); ``None``: a fresh
            ``ParameterVector("s", ...)``.

    Returns:
        The circuit: bound with :func:`prep_angles` of a state, ``circuit |0..0>`` is the
        state up to a global phase. Gates: ``ry``, ``rz``, ``cx``.

    Raises:
        InvalidSpecError: ``params`` of the wrong length (field ``circuit``).
    """
    values = ParameterVector("s", n_prep_angles(n_qubits)) if params is None else params
    if len(values) != n_prep_angles(n_qubits):
        raise InvalidSpecError(
            f"a preparation of {n_qubits} qubits has {n_prep_angles(n_qubits)} angles, "
            f"got {len(values)}",
            field="circuit",
        )
    qc = QuantumCircuit(n_qubits)
    col = 0
    for level in range(n_qubits - 1, -1, -1):
        controls = list(range(level + 1, n_qubits))
        size = 2 ** len(controls)
        for gate in ("ry", "rz"):
            _multiplexed(qc, gate, level, controls, [values[col + i] for i in range(size)])
            col += size
    return qc


def _multiplexed(
    qc: QuantumCircuit, gate: str, target: int, controls: list[int], betas: list[Any]
) -> None:
    """A rotation on ``target`` uniformly controlled by ``controls`` (Gray-code CNOTs)."""
    size = len(betas)
    for i in range(size):
        getattr(qc, gate)(betas[i], target)
        if size == 1:
            break
        flipped = _gray(i) ^ _gray((i + 1) % size)
        qc.cx(controls[flipped.bit_length() - 1], target)


def _gray(i: int) -> int:
    return i ^ (i >> 1)


@lru_cache(maxsize=16)
def _transform(c: int) -> np.ndarray:
    """``M^T / 2^c`` (``(2^c, 2^c)``): multiplexed angles to circuit angles."""
    size = 2**c
    k = np.arange(size)
    g = np.array([_gray(i) for i in range(size)])
    parity = np.vectorize(lambda v: bin(int(v)).count("1") % 2)(k[:, None] & g[None, :])
    m = 1.0 - 2.0 * parity  # (k, i)
    return m.T / size


def prep_angles(states: np.ndarray) -> np.ndarray:
    """The binding of :func:`prep_circuit` for each state.

    Args:
        states: ``(B, 2^n)`` complex (or real) states; normalised here.

    Returns:
        ``(B, 2 (2^n - 1))`` float64, in the circuit's parameter order.

    Raises:
        InvalidSpecError: a zero or non-finite state (field ``inputs``), or a length that is
            not a power of two.
    """
    psi = np.asarray(states, dtype=np.complex128)
    if psi.ndim != 2 or psi.shape[1] < 2 or psi.shape[1] & (psi.shape[1] - 1):
        raise InvalidSpecError(f"expected (B, 2**n) states, got {psi.shape}", field="inputs")
    norms = np.linalg.norm(psi, axis=1)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0.0):
        raise InvalidSpecError("a state is the zero (or a non-finite) vector", field="inputs")
    n = psi.shape[1].bit_length() - 1
    amps = psi / norms[:, None]
    per_level: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(n):  # qubit 0 first
        low, high = amps[:, 0::2], amps[:, 1::2]
        mag = np.hypot(np.abs(low), np.abs(high))
        a = 2.0 * np.arctan2(np.abs(high), np.abs(low))
        ph_low, ph_high = np.angle(low), np.angle(high)
        f = ph_high - ph_low
        per_level.append((a, f))
        amps = mag * np.exp(0.5j * (ph_low + ph_high))
    columns = []
    for level in range(n - 1, -1, -1):
        a, f = per_level[level]  # (B, 2^(n-1-level)), indexed by the controls' value
        t = _transform(n - 1 - level)
        columns += [a @ t.T, f @ t.T]
    return np.concatenate(columns, axis=1)
