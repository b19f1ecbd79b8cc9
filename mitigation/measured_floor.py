"""A measured noise floor: the device's own per-layer channel, learned in the job's session.

:func:`qldm.mitigation.noise.device_floor` estimates the floor from the calibration. With
``floor="measured"`` the backend asks :func:`measured_floor` instead: the spec's layer run at
one and two layers on the job's physical qubits (the ISA circuit's layout, pinned), all weights
and timestep features ``0`` and nothing injected (every slot the identity), with every qubit
prepared in a Z eigenstate (``x = 0`` and ``x = pi``) and an X eigenstate (``x = +-pi/2``) by an
``angle_ry`` encoding (the encoding only prepares; the decay between one and two layers cancels
it, as in :mod:`qldm.bench.noise_floor`).

Per qubit and axis, the contrast ``c_k = (e_k(b) i_k(b) + e_k(b') i_k(b')) / 2`` of the two
opposite preparations ``b, b'`` after ``k`` layers, of ``Z_q`` (``X_q``) after two layers and of
the parity ``U^dag Z_q U`` the second layer turns it into after one (Pauli kinds:
:func:`qldm.mitigation.layer_paulis.heisenberg_labels`; the first layer's noise cancels)
(``e`` measured, ``i = +-1`` the noiseless
value: a zero-weight CNOT layer maps these product states to product states; a non-unital
offset cancels where the two noiseless values have opposite signs), and the per-layer factor
``lambda = c_2 / c_1``. In each kind's parameterization (as the bench converts):
``bit_flip`` ``(1 - lambda_z) / 2``; ``phase_flip`` ``(1 - lambda_x) / 2``; ``depolarizing``
``1 - (2 lambda_x + lambda_z) / 3`` (``lambda_y = lambda_x``: no product Y eigenstate survives a
CNOT layer, and relaxation and depolarizing gate errors shrink X and Y alike);
``amplitude_damping`` ``1 - P_1(2) / P_1(1)``, the excited population from ``x = pi`` (where
the noiseless state keeps the qubit in ``|1>``). A qubit whose noiseless values are not ``+-1`` with
opposite signs for both preparations at both depths (an entangling zero-weight layer, or CNOT
parities that do not flip) keeps the calibration estimate.

:func:`experiment` builds the circuits (nothing runs) as :class:`FloorExperiment`, with a
readout reference whose affine readout map is undone on shot-based values;
:func:`measured_floor` runs them through a given ``EstimatorV2`` (an exact Aer density-matrix
one on a simulator); :mod:`qldm.backends._runtime_floor` runs them in the job's own runtime
Session or Batch. Results are cached per (device, calibration date, ISA key: spec structure,
layout, optimization level) and how they were obtained.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from qldm.circuits import PQCSpec
from qldm.circuits.transpile import (
    IsaCircuit,
    _without_idle_delays,
    calibration_date,
    hardware_circuit,
    structure_key,
)
from qldm.mitigation.layer_paulis import heisenberg_labels
from qldm.mitigation.learned_floor import strength_from_fidelities
from qldm.mitigation.noise import device_floor

__all__ = [
    "FLOOR_METHODS",
    "FloorExperiment",
    "cache_clear",
    "cached",
    "experiment",
    "floor_key",
    "measured_floor",
    "remember",
]

FLOOR_METHODS = ("calibration", "measured", "noise_learner")
"""How the backend obtains the device floor (``floor`` option; ``noise_learner``:
:mod:`qldm.mitigation.learned_floor`)."""

_cache: dict[tuple[Any, ...], np.ndarray] = {}
_lock = threading.Lock()


def cache_clear() -> None:
    """Forget every measured floor."""
    with _lock:
        _cache.clear()


def _probe_spec(spec: PQCSpec, layers: int) -> PQCSpec:
    data = spec.model_dump(mode="json")
    data.update(layers=layers, encoding="angle_ry")
    data["channel"] = {"kind": spec.channel.kind, "strength": 0.0}
    return PQCSpec.parse(data)


def _circuits(spec: PQCSpec, isa: IsaCircuit, backend: Any, layers: int) -> tuple[Any, Any, Any]:
    """The ISA circuit at ``layers`` (pinned to ``isa.layout``), its logical circuit and the
    ``(2n + 4, P)`` parameter values of the preparations (:func:`_preparations`; columns in
    the logical circuit's parameter order)."""
    from qiskit.transpiler import generate_preset_pass_manager

    probe = _probe_spec(spec, layers)
    hw = hardware_circuit(probe)
    pm = generate_preset_pass_manager(
        optimization_level=isa.optimization_level,
        backend=backend,
        initial_layout=list(isa.layout),
        scheduling_method="alap",
        seed_transpiler=11,
    )
    circuit = _without_idle_delays(pm.run(hw.circuit))
    preps = _preparations(probe.n_qubits)
    values = np.zeros((preps.shape[0], len(hw.parameter_order())))
    values[:, : probe.n_qubits] = preps  # the encoding's angles
    return circuit, hw, values


def _support(label: str, n: int) -> tuple[int, ...]:
    """The data qubits (logical indices) a Pauli label acts on (Qiskit order: qubit 0 last;
    ancillas, the high qubits, are never in these labels)."""
    return tuple(q for q in range(n) if label[len(label) - 1 - q] != "I")


def _readout_pub(n: int, isa: IsaCircuit, backend: Any) -> tuple[Any, Any, np.ndarray]:
    """The readout reference: each data qubit prepared in ``|0>`` and in ``|1>`` (an ``ry``
    on its physical qubit, nothing else) against its ``Z``: ``(circuit, observables (1, n),
    bindings (2, 1, 1))``."""
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter
    from qiskit.quantum_info import SparsePauliOp
    from qiskit.transpiler import generate_preset_pass_manager

    theta = Parameter("theta")
    logical = QuantumCircuit(n)
    for q in range(n):
        logical.ry(theta, q)
    pm = generate_preset_pass_manager(
        optimization_level=isa.optimization_level,
        backend=backend,
        initial_layout=list(isa.layout[:n]),
        seed_transpiler=11,
    )
    circuit = pm.run(logical)
    ops = [
        SparsePauliOp("".join("Z" if i == q else "I" for i in reversed(range(n)))).apply_layout(
            circuit.layout
        )
        for q in range(n)
    ]
    return circuit, [ops], np.array([[[0.0]], [[np.pi]]])


def _preparations(n: int) -> np.ndarray:
    """``(2n + 4, n)`` encoding angles: Z preparations (all ``|0>``, all ``|1>``, ``|1>`` on
    one qubit), then X preparations (all ``|+>``, all ``|->``, ``|->`` on one qubit)."""
    rows = []
    for low, high in ((0.0, np.pi), (np.pi / 2, -np.pi / 2)):
        rows += [np.full(n, low), np.full(n, high)]
        for j in range(n):
            row = np.full(n, low)
            row[j] = high
            rows.append(row)
    return np.array(rows)


def _bound(circuit: Any, order: list[Any], values: np.ndarray) -> np.ndarray:
    """``values`` (columns in ``order``) as the columns of ``circuit.parameters``."""
    column = {p: i for i, p in enumerate(order)}
    return values[:, [column[p] for p in circuit.parameters]]


def _labels(n: int, n_anc: int) -> list[str]:
    """``Z`` then ``X`` on each data qubit (Qiskit order, ancillas the high qubits)."""
    out = []
    for pauli in "ZX":
        for q in range(n):
            out.append("I" * n_anc + "".join(pauli if i == q else "I" for i in reversed(range(n))))
    return out


def _ideal(hw: Any, values: np.ndarray, labels: list[str]) -> np.ndarray:
    """``(2n + 4, 2n)`` noiseless expectation values (Statevector of the logical circuit)."""
    from qiskit.quantum_info import SparsePauliOp, Statevector

    order = hw.parameter_order()
    out = np.zeros((values.shape[0], len(labels)))
    for i, row in enumerate(values):
        state = Statevector(hw.circuit.assign_parameters(dict(zip(order, row, strict=True))))
        out[i] = [float(np.real(state.expectation_value(SparsePauliOp(lab)))) for lab in labels]
    return out


def _pair(ideal: list[np.ndarray], rows: range, col: int) -> tuple[int, int] | None:
    """Two preparations whose noiseless values in column ``col`` are ``+-1`` with opposite
    signs at both depths (``None``: no such pair)."""
    for a, b in itertools.combinations(rows, 2):
        if all(
            abs(abs(i[a, col]) - 1) < 1e-6
            and abs(abs(i[b, col]) - 1) < 1e-6
            and i[a, col] * i[b, col] < 0
            for i in ideal
        ):
            return a, b
    return None


def _factors(measured: list[np.ndarray], ideal: list[np.ndarray], n: int) -> np.ndarray:
    """``(2, n)`` per-layer factors ``lambda_z, lambda_x`` (``nan`` where not measurable).

    Args:
        measured: per depth (1, 2), ``(2n + 4, 2n)`` expectation values: preparations x
            (Z then X on each qubit).
        ideal: per depth, their noiseless values.
        n: data qubits.
    """
    lam = np.full((2, n), np.nan)
    for axis in range(2):
        rows = range(axis * (n + 2), (axis + 1) * (n + 2))
        for q in range(n):
            col = axis * n + q
            pair = _pair(ideal, rows, col)
            if pair is None:
                continue
            c = [
                sum(m[r, col] * np.sign(i[r, col]) for r in pair) / 2
                for m, i in zip(measured, ideal, strict=True)
            ]
            if abs(c[0]) > 0.5:
                lam[axis, q] = c[1] / c[0]
    return lam


def _excited(measured: list[np.ndarray], ideal: list[np.ndarray], n: int) -> np.ndarray:
    """``(n,)`` the per-layer decay of the excited population, from a Z preparation that
    keeps the qubit in ``|1>`` at both depths (``nan`` where none does)."""
    gamma = np.full(n, np.nan)
    for q in range(n):
        for r in range(n + 2):
            if all(i[r, q] < -1 + 1e-6 for i in ideal):
                p1 = [(1 - m[r, q]) / 2 for m in measured]
                gamma[q] = 1 - p1[1] / p1[0]
                break
    return gamma


@dataclass(frozen=True)
class FloorExperiment:
    """The learning experiment of one ISA key: its ``EstimatorV2`` PUBs and how to read them.

    Attributes:
        key: the cache key (device, calibration date, ISA key).
        kind: the channel kind.
        n: data qubits.
        pubs: five PUBs: for one then two layers the Z preparations against the ``Z`` of
            each data qubit, then the X preparations against each ``X`` (``(circuit,
            observables (1, n), bindings (n + 2, 1, P))``); last the readout reference
            (:func:`_readout_pub`). The observables of a PUB commute qubit-wise, so each
            binding is one measured circuit.
        ideal: per depth, the ``(2n + 4, 2n)`` noiseless values.
        circuits: measured circuits (bindings; one measurement basis each).
        fallback: ``(n,)`` the calibration estimate, kept for qubits that cannot be measured.
    """

    key: tuple[Any, ...]
    kind: str
    n: int
    pubs: list[tuple[Any, Any, np.ndarray]]
    ideal: list[np.ndarray]
    circuits: int
    fallback: np.ndarray
    supports: list[list[tuple[int, ...]]]
    single: list[np.ndarray]

    def run(self, estimator: Any, *, precision: float | None = None) -> np.ndarray:
        """:meth:`floor` of the PUBs run through ``estimator`` in one ``run`` (its readout
        corrected when ``precision`` is set: a shot-based run; ``None``: exact)."""
        result = estimator.run(self.pubs, precision=precision).result()
        return self.floor([r.data.evs for r in result], readout=precision is not None)

    def measured(self, evs: list[Any], *, readout: bool = True) -> list[np.ndarray]:
        """The PUBs' ``evs`` as per-depth ``(2n + 4, 2n)`` arrays laid out as :attr:`ideal`
        (``nan`` where a preparation was not measured on that axis).

        Args:
            evs: the five PUBs' ``evs``.
            readout: undo each qubit's readout error, the affine map ``m = a + b z`` read off
                the readout reference (``a, b`` from its ``|0>`` and ``|1>`` rows), on its Z and
                X values (both are read out on that qubit): exactly for a one-qubit
                observable, ``(m - a) / b``; for a parity over qubits ``S`` (the one-layer
                observables the next layer's CNOTs make) to first order, ``m / prod_S (a_i
                s_i + b_i)`` with ``s_i`` each qubit's noiseless value (exact in the noiseless
                product state; a relative error of about ``a_i / b_i`` on the decay).
                Shot-based runs need it: readout error does not cancel between a parity and
                a one-qubit observable, nor in the excited population of amplitude damping.
                ``False`` for an exact simulation, which has no readout error.
        """
        n = self.n
        ref = np.asarray(evs[4], dtype=np.float64).reshape(2, n)
        a, b = (ref[0] + ref[1]) / 2, (ref[0] - ref[1]) / 2
        b = np.where(np.abs(b) > 0.5, b, 1.0)  # a dead readout: leave the values alone
        out = []
        for depth in range(2):
            full = np.full((2 * n + 4, 2 * n), np.nan)
            for axis in range(2):
                rows = slice(axis * (n + 2), (axis + 1) * (n + 2))
                cols = slice(axis * n, (axis + 1) * n)
                block = np.asarray(evs[2 * depth + axis], dtype=np.float64).reshape(n + 2, n)
                if readout:
                    block = self._unread(block, depth, rows, axis, a, b)
                full[rows, cols] = block
            out.append(full)
        return out

    def _unread(
        self, block: np.ndarray, depth: int, rows: slice, axis: int, a: np.ndarray, b: np.ndarray
    ) -> np.ndarray:
        """:meth:`measured`'s readout correction of one ``(n + 2, n)`` block."""
        n = self.n
        out = np.empty_like(block)
        signs = np.sign(self.single[depth][rows, axis * n : (axis + 1) * n])
        for col in range(n):
            support = self.supports[depth][axis * n + col]
            if len(support) == 1:
                q = support[0]
                out[:, col] = (block[:, col] - a[q]) / b[q]
            else:
                scale = np.prod([a[q] * signs[:, q] + b[q] for q in support], axis=0)
                out[:, col] = block[:, col] / np.where(np.abs(scale) > 0.5, scale, 1.0)
        return out

    def floor(self, evs: list[Any], *, readout: bool = True) -> np.ndarray:
        """``(n,)`` the per-layer strengths of the channel kind from the five PUBs' ``evs``
        (``readout``: :meth:`measured`), clipped to [0, 1]; the calibration estimate where a
        qubit cannot be measured."""
        measured = self.measured(evs, readout=readout)
        if self.kind == "amplitude_damping":  # the decay of the excited population
            value = _excited(measured, self.ideal, self.n)
        else:  # lambda_y = lambda_x (module docstring)
            value = strength_from_fidelities(self.kind, *_factors(measured, self.ideal, self.n))
        return np.asarray(np.clip(np.where(np.isfinite(value), value, self.fallback), 0.0, 1.0))


def floor_key(spec: PQCSpec, isa: IsaCircuit, backend: Any) -> tuple[Any, ...]:
    """What a measured floor depends on: device, calibration date, ISA key."""
    return (
        str(backend.name),
        calibration_date(backend),
        structure_key(spec),
        tuple(isa.layout),
        isa.optimization_level,
    )


def experiment(spec: PQCSpec, isa: IsaCircuit, backend: Any) -> FloorExperiment:
    """The learning experiment of ``spec`` on ``isa``'s qubits (nothing runs).

    Raises:
        ValueError: channel kind ``none``.
    """
    from qiskit.quantum_info import SparsePauliOp

    kind = spec.channel.kind
    if kind == "none":
        raise ValueError("no floor for channel kind 'none'")
    n = spec.n_qubits
    pubs, ideal, single = [], [], []
    supports: list[list[tuple[int, ...]]] = []
    for layers in (1, 2):
        circuit, hw, values = _circuits(spec, isa, backend, layers)
        plain = _labels(n, hw.n_ancillas)
        labels = plain
        if layers == 1 and kind != "amplitude_damping":  # the parity layer 2 sees there
            labels = heisenberg_labels(spec, plain)
        bound = _bound(circuit, hw.parameter_order(), values)
        for axis in range(2):
            rows = slice(axis * (n + 2), (axis + 1) * (n + 2))
            ops = [SparsePauliOp(lab).apply_layout(circuit.layout) for lab in labels]
            pubs.append((circuit, [ops[axis * n : (axis + 1) * n]], bound[rows, None, :]))
        ideal.append(_ideal(hw, values, labels))
        single.append(ideal[-1] if labels is plain else _ideal(hw, values, plain))
        supports.append([_support(lab, n) for lab in labels])
    pubs.append(_readout_pub(n, isa, backend))
    return FloorExperiment(
        key=floor_key(spec, isa, backend),
        kind=kind,
        n=n,
        pubs=pubs,
        ideal=ideal,
        circuits=2 * (2 * n + 4) + 2,
        supports=supports,
        single=single,
        fallback=device_floor(kind, isa, backend, layers=spec.layers),
    )


def cached(key: tuple[Any, ...]) -> np.ndarray | None:
    """The floor this process measured under ``key`` (``None``: none)."""
    with _lock:
        found = _cache.get(key)
    return None if found is None else found.copy()


def remember(key: tuple[Any, ...], floor: np.ndarray) -> None:
    """Keep ``floor`` under ``key`` for this process."""
    with _lock:
        _cache[key] = np.array(floor, dtype=np.float64)


def measured_floor(
    spec: PQCSpec,
    isa: IsaCircuit,
    backend: Any,
    *,
    estimator: Any,
    use_cache: bool = True,
    precision: float | None = None,
) -> np.ndarray:
    """``(n,)`` the device's measured per-layer strength of ``spec.channel.kind`` per data qubit.

    Args:
        spec: the job's circuit (its channel kind, ansatz, qubits).
        isa: its ISA circuit on ``backend`` (the layout to pin).
        backend: the device (its target, name, calibration; the calibration floor of qubits
            that cannot be measured).
        estimator: an ``EstimatorV2`` that runs ISA circuits on the device (or its exact noisy
            simulation); both depths go in one ``run``.
        use_cache: reuse a floor measured for the same device, calibration and ISA key (and
            the same ``precision``).
        precision: the estimator's target precision (``None``: its default; exact for an Aer
            density-matrix estimator).

    Returns:
        ``(n,)`` strengths, clipped to [0, 1].

    Raises:
        ValueError: channel kind ``none``.
    """
    if spec.channel.kind == "none":
        raise ValueError("no floor for channel kind 'none'")
    key = (*floor_key(spec, isa, backend), precision)
    if use_cache and (found := cached(key)) is not None:
        return found
    floor = experiment(spec, isa, backend).run(estimator, precision=precision)
    remember(key, floor)
    return floor
