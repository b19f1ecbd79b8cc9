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

The circuits run through a given ``EstimatorV2`` (exact on a simulator; in a hardware session,
the job's own); results are cached per (device, calibration date, ISA key: spec structure,
layout, optimization level).
"""

from __future__ import annotations

import itertools
import threading
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
from qldm.mitigation.noise import device_floor

__all__ = ["FLOOR_METHODS", "cache_clear", "measured_floor"]

FLOOR_METHODS = ("calibration", "measured")
"""How the backend obtains the device floor (``floor`` option)."""

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


def measured_floor(
    spec: PQCSpec, isa: IsaCircuit, backend: Any, *, estimator: Any, use_cache: bool = True
) -> np.ndarray:
    """``(n,)`` the device's measured per-layer strength of ``spec.channel.kind`` per data qubit.

    Args:
        spec: the job's circuit (its channel kind, ansatz, qubits).
        isa: its ISA circuit on ``backend`` (the layout to pin).
        backend: the device (its target, name, calibration; the calibration floor of qubits
            that cannot be measured).
        estimator: an ``EstimatorV2`` that runs ISA circuits on the device (or its exact noisy
            simulation).
        use_cache: reuse a floor measured for the same device, calibration and ISA key.

    Returns:
        ``(n,)`` strengths, clipped to [0, 1].

    Raises:
        ValueError: channel kind ``none``.
    """
    from qiskit.quantum_info import SparsePauliOp

    kind = spec.channel.kind
    if kind == "none":
        raise ValueError("no floor for channel kind 'none'")
    key = (
        str(backend.name),
        calibration_date(backend),
        structure_key(spec),
        tuple(isa.layout),
        isa.optimization_level,
    )
    if use_cache:
        with _lock:
            if key in _cache:
                return _cache[key].copy()
    n = spec.n_qubits
    measured, ideal = [], []
    for layers in (1, 2):
        circuit, hw, values = _circuits(spec, isa, backend, layers)
        labels = _labels(n, hw.n_ancillas)
        if layers == 1 and kind != "amplitude_damping":  # the parity layer 2 sees there
            labels = heisenberg_labels(spec, labels)
        observables = [[SparsePauliOp(lab).apply_layout(circuit.layout) for lab in labels]]
        bound = _bound(circuit, hw.parameter_order(), values)
        result = estimator.run([(circuit, observables, bound[:, None, :])]).result()
        evs = np.asarray(result[0].data.evs, dtype=np.float64)
        measured.append(evs.reshape(values.shape[0], len(labels)))
        ideal.append(_ideal(hw, values, labels))
    lz, lx = _factors(measured, ideal, n)
    if kind == "bit_flip":
        value = (1 - lz) / 2
    elif kind == "phase_flip":
        value = (1 - lx) / 2
    elif kind == "depolarizing":
        value = 1 - (2 * lx + lz) / 3
    else:  # amplitude_damping: the decay of the excited population
        value = _excited(measured, ideal, n)
    fallback = device_floor(kind, isa, backend, layers=spec.layers)
    floor = np.clip(np.where(np.isfinite(value), value, fallback), 0.0, 1.0)
    with _lock:
        _cache[key] = floor.copy()
    return floor
