"""The layers of the block-diagonal Fubini-Study metric (Stokes et al. 2020).

For ``|psi(theta)> = U(theta)|psi_0>`` the metric of the ansatz angles is
``g_ij = Re<d_i psi|d_j psi> - Re(<d_i psi|psi><psi|d_j psi>)``. Group the parametric gates
into *layers*: sets of gates that commute and can be moved next to each other. If the ansatz
equals ``V_after L V_before`` (a valid reordering of its gates) with
``L = prod_{k in layer} exp(-i theta_k G_k)``, then for ``i, j`` in the layer

    g_ij = <G_i G_j> - <G_i><G_j>     on the state  V_before |psi_0>,

where ``G_k = scale_k H_k`` (``H_k`` the gate's generator: ``X/2`` for ``rx``, ``-|1><1|`` for
``p``, ``|1><1| (x) X/2`` for ``crx``, ...). The block-diagonal approximation keeps these
blocks and sets the entries between layers to 0.

:func:`metric_layers` finds the layers by peeling the circuit's front: the ops that are the
first not yet placed on each of their qubits. Fixed gates of the front are placed first (they
become part of ``V_before`` of every later layer); then all parametric gates of the front form
one layer. Front gates act on disjoint qubits, so they commute, and each generator is
diagonal after a fixed basis change on its qubits (``X``: ``H``; ``Y``: ``S^dagger`` then
``H``; ``Z``: nothing), so one measured circuit per layer (the prefix, the basis change, all
qubits measured) gives the whole block: :func:`layer_eigenvalues` are the generators'
eigenvalues on each measured outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from qldm.circuits.program import Gate, compile_spec
from qldm.circuits.spec import PQCSpec
from qldm.errors import InvalidSpecError

__all__ = ["MetricLayer", "block_mask", "layer_eigenvalues", "metric_layers"]

_LETTERS: dict[str, tuple[str, ...]] = {
    "rx": ("X",),
    "ry": ("Y",),
    "rz": ("Z",),
    "p": ("Z",),
    "crx": ("Z", "X"),
    "crz": ("Z", "Z"),
}
"""The Pauli axis each generator uses on each of the gate's qubits (control first)."""

_I = np.eye(2, dtype=np.complex128)
_X = np.array([[0, 1], [1, 0]], dtype=np.complex128)
_Y = np.array([[0, -1j], [1j, 0]], dtype=np.complex128)
_Z = np.diag([1.0, -1.0]).astype(np.complex128)
_ONE = np.diag([0.0, 1.0]).astype(np.complex128)
_H = np.array([[1, 1], [1, -1]], dtype=np.complex128) / np.sqrt(2)
_SDG = np.diag([1.0, -1j])
_ROTATION = {"X": _H, "Y": _H @ _SDG, "Z": _I}
"""Basis change before a computational-basis measurement: ``R P R^dagger = Z``."""


@dataclass(frozen=True)
class MetricLayer:
    """One block of the block-diagonal metric.

    Attributes:
        before: the ansatz gates applied before the layer, in a valid order (``V_before``).
        gates: the layer's parametric gates (pairwise qubit-disjoint, so commuting).
    """

    before: tuple[Gate, ...]
    gates: tuple[Gate, ...]

    @property
    def weights(self) -> tuple[int, ...]:
        """The ansatz angle of each gate of the layer."""
        return tuple(g.param.index for g in self.gates if g.param is not None)

    @property
    def basis(self) -> dict[int, str]:
        """The Pauli axis to measure each qubit of the layer in (``X``, ``Y`` or ``Z``)."""
        out: dict[int, str] = {}
        for g in self.gates:
            for q, letter in zip(g.qubits, _LETTERS[g.name], strict=True):
                out[q] = letter
        return out


def metric_layers(spec: PQCSpec) -> tuple[MetricLayer, ...]:
    """The layers of ``spec``'s ansatz (cached), covering every ansatz angle once.

    Raises:
        InvalidSpecError: a noisy spec (field ``circuit.channel``): the metric is that of a
            pure state.
    """
    if spec.noisy:
        raise InvalidSpecError(
            "the Fubini-Study metric is defined for noiseless circuits (pure states)",
            field="circuit.channel",
        )
    return _layers(spec.without_timestep())


@lru_cache(maxsize=64)
def _layers(spec: PQCSpec) -> tuple[MetricLayer, ...]:
    ops = [op for op in compile_spec(spec).ansatz if isinstance(op, Gate)]
    queues: dict[int, list[int]] = {}
    for i, op in enumerate(ops):
        for q in op.qubits:
            queues.setdefault(q, []).append(i)
    heads = dict.fromkeys(queues, 0)
    placed: list[Gate] = []
    layers: list[MetricLayer] = []

    def front() -> list[int]:
        out = []
        for i, op in enumerate(ops):
            if all(heads[q] < len(queues[q]) and queues[q][heads[q]] == i for q in op.qubits):
                out.append(i)
        return out

    def place(i: int) -> None:
        placed.append(ops[i])
        for q in ops[i].qubits:
            heads[q] += 1

    while True:
        current = front()
        fixed = [i for i in current if ops[i].param is None]
        if fixed:
            for i in fixed:
                place(i)
            continue
        if not current:
            break
        layers.append(MetricLayer(tuple(placed), tuple(ops[i] for i in current)))
        for i in current:
            place(i)
    return tuple(layers)


def _local_generator(gate: Gate) -> np.ndarray:
    """``scale * H`` on the gate's qubits (control = major digit)."""
    scale = 1.0 if gate.param is None else gate.param.scale
    h: np.ndarray
    if gate.name in ("rx", "ry", "rz"):
        h = {"rx": _X, "ry": _Y, "rz": _Z}[gate.name] / 2
    elif gate.name == "p":
        h = -_ONE
    elif gate.name in ("crx", "crz"):
        h = np.kron(_ONE, (_X if gate.name == "crx" else _Z) / 2)
    else:  # pragma: no cover - fixed gates are never in a layer
        raise ValueError(f"no generator for {gate.name!r}")
    return scale * h


def layer_eigenvalues(layer: MetricLayer, n_qubits: int) -> np.ndarray:
    """``(G, 2**n)``: the eigenvalue of each layer generator ``G_k`` on every basis outcome
    measured after the layer's basis change (Qiskit order: bit ``q`` of an outcome is qubit
    ``q``). With ``p`` the outcome distribution, ``<G_i G_j> = sum_x p_x e_i(x) e_j(x)``."""
    outcomes = np.arange(2**n_qubits)
    rows = []
    for gate in layer.gates:
        rotation = np.array([[1.0]], dtype=np.complex128)
        for q, letter in zip(gate.qubits, _LETTERS[gate.name], strict=True):
            del q
            rotation = np.kron(rotation, _ROTATION[letter])
        rotated = rotation @ _local_generator(gate) @ rotation.conj().T
        diagonal = np.real(np.diag(rotated))
        if not np.allclose(rotated, np.diag(diagonal), atol=1e-12):  # pragma: no cover
            raise RuntimeError(f"the basis change does not diagonalise {gate.name}")
        local = np.zeros_like(outcomes)
        for q in gate.qubits:  # the first listed qubit is the major local digit
            local = 2 * local + ((outcomes >> q) & 1)
        rows.append(diagonal[local])
    return np.stack(rows)


def block_mask(spec: PQCSpec) -> np.ndarray:
    """``(P_a, P_a)`` bool: ``True`` where two ansatz angles share a layer."""
    p = spec.n_ansatz_weights
    mask = np.zeros((p, p), dtype=bool)
    for layer in metric_layers(spec):
        idx = np.array(layer.weights)
        mask[np.ix_(idx, idx)] = True
    return mask
