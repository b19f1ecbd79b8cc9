"""Noise that means what the model asked for, on hardware: realization and calibrated subtraction.

Realization (the slots are built by :func:`qldm.circuits.transpile.hardware_circuit`):

- ``bit_flip`` / ``phase_flip`` / ``depolarizing`` at strength ``s``: randomized Pauli
  insertion. Each slot independently draws a Pauli with the channel's probabilities
  (``bit_flip``: X w.p. ``s``; ``phase_flip``: Z w.p. ``s``; ``depolarizing``
  ``(1-s) rho + s I/2``: X, Y, Z w.p. ``s/4`` each, I w.p. ``1 - 3s/4``). The average over
  instances is the channel exactly (:func:`slot_distribution` enumerates it); a job runs
  ``R`` random instances with its shots split across them (:func:`slot_bindings`).
  The instances are scrambled Sobol points (see :func:`slot_bindings`): each is an exact
  draw (so the average is the channel in expectation), with far less spread than
  independent draws.
- ``amplitude_damping`` at ``gamma``: the ancilla dilation with angle
  ``t = 2 arcsin sqrt(gamma)``, exact in a single instance.

Calibrated subtraction: the device already applies its own channel per layer. From the
calibration we estimate it per data qubit at its noise slot (:func:`device_pauli_rates`,
:func:`device_damping`):

- the errors of every ISA instruction: thermal relaxation over its duration (delays included,
  none before a qubit's first gate), Pauli-twirled: ``p_x = p_y = (1 - e^{-t/T1}) / 4``,
  ``p_z = (1 - e^{-t/T2}) / 2 - (1 - e^{-t/T1}) / 4``; and the part of its reported gate error
  ``r`` that relaxation during the gate does not explain, as depolarizing noise of its qubits
  (``r/2`` per Pauli for one qubit, ``r/12`` for each of the 15 of two);
- each carried to the slot through the rest of its layer (all parameters 0: Clifford,
  :mod:`qldm.mitigation.layer_paulis`; a flip on a CNOT's control reaches the target), and
  the per-qubit marginal taken (:func:`_marginal_flips`), averaged over the layers;
- amplitude damping: ``1 - e^{-t/T1}`` over the layer's time ``t = makespan / layers`` plus
  the qubit's own gate flips (not carried).

The floor in each kind's own parameterization: ``bit_flip`` ``p_x + p_y`` (what flips Z),
``phase_flip`` ``p_y + p_z`` (what flips X), ``depolarizing`` ``1 - mean Bloch shrink``,
``amplitude_damping`` ``1 - e^{-t/T1}``. Strengths compose multiplicatively, so the injected
remainder solves ``(1 - 2 p_total) = (1 - 2 p_device)(1 - 2 p_injected)`` (bit/phase flip),
``(1 - s_total) = (1 - s_device)(1 - s_injected)`` (depolarizing, the Bloch shrink) and
``(1 - g_total) = (1 - g_device)(1 - g_injected)`` (amplitude damping). Readout error is not a
per-layer channel; M3 (:mod:`qldm.mitigation.m3`) handles it. For amplitude damping only the T1 part
of the device noise is subtracted.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from qldm.circuits.transpile import IsaCircuit, slot_width
from qldm.errors import NoiseFloorError

PAULI_KINDS = ("bit_flip", "phase_flip", "depolarizing")

_PI = math.pi
# Slot angles of each Pauli: bit_flip rx(a); phase_flip rz(b); depolarizing rx(a) rz(b).
_ANGLES: dict[str, dict[str, tuple[float, ...]]] = {
    "bit_flip": {"I": (0.0,), "X": (_PI,)},
    "phase_flip": {"I": (0.0,), "Z": (_PI,)},
    "depolarizing": {"I": (0.0, 0.0), "X": (_PI, 0.0), "Y": (_PI, _PI), "Z": (0.0, _PI)},
}


def pauli_probabilities(kind: str, strength: float) -> dict[str, float]:
    """The Pauli mixture of a channel: ``{pauli: probability}``."""
    s = float(strength)
    if kind == "bit_flip":
        return {"I": 1.0 - s, "X": s}
    if kind == "phase_flip":
        return {"I": 1.0 - s, "Z": s}
    if kind == "depolarizing":
        return {"I": 1.0 - 0.75 * s, "X": s / 4, "Y": s / 4, "Z": s / 4}
    raise ValueError(f"{kind!r} is not a Pauli channel")


def slot_distribution(kind: str, strength: float) -> list[tuple[tuple[float, ...], float]]:
    """Every slot binding of one channel location with its probability.

    For a Pauli kind: one binding per Pauli (angles of :mod:`qldm.circuits.transpile`'s slot); the
    probability-weighted average of the bound circuits is the channel. For amplitude damping:
    the single dilation angle with probability 1.
    """
    if kind == "amplitude_damping":
        return [((dilation_angle(strength),), 1.0)]
    probs = pauli_probabilities(kind, strength)
    return [(_ANGLES[kind][p], q) for p, q in probs.items() if q > 0.0]


def _sobol(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, d)`` Owen-scrambled Sobol points (each uniform on the unit cube)."""
    import warnings

    from scipy.stats import qmc

    sampler = qmc.Sobol(d, scramble=True, seed=rng)
    with warnings.catch_warnings():  # balance properties need n = 2^m; any n stays unbiased
        warnings.simplefilter("ignore", UserWarning)
        return np.asarray(sampler.random(n))


def dilation_angle(gamma: float) -> float:
    """``t = 2 arcsin sqrt(gamma)``: the ``cry`` angle whose dilation damps by ``gamma``."""
    return 2.0 * math.asin(math.sqrt(min(max(float(gamma), 0.0), 1.0)))


def slot_bindings(
    kind: str, injected: np.ndarray, *, instances: int, rng: np.random.Generator
) -> np.ndarray:
    """Noise-slot parameter values of ``R`` random instances.

    Args:
        kind: the channel kind.
        injected: ``(L, n)`` strength to inject after layer ``l`` on data qubit ``q``.
        instances: ``R`` for Pauli kinds (amplitude damping always gives 1 row).
        rng: the generator that draws the Paulis.

    Returns:
        ``(R, L * n * m)`` values in :class:`qldm.circuits.transpile.HardwareCircuit` ``noise``
        order (``m`` = :func:`qldm.circuits.transpile.slot_width`).
    """
    inj = np.asarray(injected, dtype=np.float64)
    if kind == "amplitude_damping":
        return np.array([[dilation_angle(g) for g in inj.reshape(-1)]])
    width = slot_width(kind)
    labels = list(_ANGLES[kind])
    table = np.array([_ANGLES[kind][p] for p in labels])  # (paulis, m)
    flat = inj.reshape(-1)
    out = np.empty((instances, flat.size, width))
    # Scrambled Sobol points: each row is uniform on [0, 1)^slots, so every instance is an
    # exact draw of the product channel (unbiased), while the rows fill the cube evenly:
    # every slot's Pauli frequencies are stratified (within 1/R of the probabilities for
    # R a power of two) and so are the joint frequencies of pairs of slots.
    points = _sobol(instances, flat.size, rng)
    for i, strength in enumerate(flat):
        probs = pauli_probabilities(kind, float(strength))
        cdf = np.cumsum([probs.get(label, 0.0) for label in labels])
        draws = np.searchsorted(cdf, points[:, i] * cdf[-1], side="right")
        out[:, i, :] = table[np.minimum(draws, len(labels) - 1)]
    return out.reshape(instances, -1)


# ---------------------------------------------------------------------- device floor

_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "ps": 1e-12}


def _relaxation_rates(duration: float, t1: float, t2: float) -> tuple[float, float]:
    """Pauli-twirled thermal relaxation over ``duration``: ``(p_x = p_y, p_z)``."""
    relax = 1.0 - math.exp(-duration / t1)
    dephase = 1.0 - math.exp(-duration / t2)
    return relax / 4, max(dephase / 2 - relax / 4, 0.0)


def _relaxation_infidelity(duration: float, qubits: list[tuple[float, float]]) -> float:
    """Average gate infidelity of thermal relaxation on ``qubits`` ((T1, T2) each) over
    ``duration``: ``d / (d + 1)`` times the process infidelity, which to first order is the sum
    of each qubit's ``p_x + p_y + p_z`` (``d = 2^k``)."""
    process = 0.0
    for t1, t2 in qubits:
        pxy, pz = _relaxation_rates(duration, t1, t2)
        process += 2 * pxy + pz
    d = 2 ** len(qubits)
    return d / (d + 1) * process


def _durations(isa: IsaCircuit, target: Any) -> tuple[float, dict[int, float], dict[int, float]]:
    """ASAP makespan (s), and per physical qubit the one- and two-qubit gate errors *beyond*
    thermal relaxation during the gate (reported errors include it; it is counted once, over
    the whole layer, in :func:`device_pauli_rates`)."""
    clock: dict[int, float] = {}
    err1: dict[int, float] = {}
    err2: dict[int, float] = {}
    circuit = isa.circuit
    for inst in circuit.data:
        name = inst.operation.name
        if name in ("measure", "barrier"):
            continue
        qargs = tuple(circuit.find_bit(q).index for q in inst.qubits)
        duration, error = 0.0, 0.0
        if name == "delay":  # idle time made explicit by the scheduling pass
            op = inst.operation
            scale = _UNITS.get(op.unit, 1.0) if op.unit != "dt" else float(target.dt or 0.0)
            duration = float(op.duration) * scale
        elif name in target.operation_names:
            props = target[name].get(qargs)
            if props is not None:
                duration = float(props.duration or 0.0)
                error = float(props.error or 0.0)
                relax = _relaxation_infidelity(duration, [_t1_t2(target, q) for q in qargs])
                error = max(error - relax, 0.0)
        start = max((clock.get(q, 0.0) for q in qargs), default=0.0)
        for q in qargs:
            clock[q] = start + duration
            if name != "reset":
                bucket = err1 if len(qargs) == 1 else err2
                bucket[q] = bucket.get(q, 0.0) + error
    return max(clock.values(), default=0.0), err1, err2


def layer_makespan(isa: IsaCircuit, target: Any) -> float:
    """The scheduled duration (s) of the ISA circuit, measurements excluded."""
    return _durations(isa, target)[0]


def _t1_t2(target: Any, q: int) -> tuple[float, float]:
    props = target.qubit_properties[q] if target.qubit_properties else None
    t1 = getattr(props, "t1", None) or math.inf
    t2 = getattr(props, "t2", None) or math.inf
    return float(t1), float(min(t2, 2 * t1))


def _gate_rates(isa: IsaCircuit, target: Any, *, layers: int) -> tuple[float, np.ndarray]:
    """The layer time (s) and ``(n, 3)`` per-layer Pauli rates of the gate errors beyond
    relaxation on each data qubit: a one-qubit gate of average error ``r`` adds ``r/2`` to
    each of ``p_x, p_y, p_z``; a two-qubit gate ``r/3`` (the one-qubit marginal of two-qubit
    depolarizing)."""
    makespan, err1, err2 = _durations(isa, target)
    rates = np.zeros((isa.hardware.n_data, 3))
    for q in range(isa.hardware.n_data):
        phys = isa.layout[q]
        rates[q] = err1.get(phys, 0.0) / layers / 2 + err2.get(phys, 0.0) / layers / 3
    return makespan / layers, rates


Pauli = dict[int, str]
"""A Pauli error on physical qubits: ``{qubit: "X" | "Y" | "Z"}``."""


def _error_paulis(
    name: str, qargs: tuple[int, ...], target: Any, seconds: float
) -> list[tuple[Pauli, float]]:
    """The Pauli errors of one instruction, ``(pauli, probability)``: thermal relaxation over
    its duration on each qubit (Pauli-twirled), and the gate error beyond it as depolarizing
    noise of its qubits (process infidelity ``(d + 1) / d * r`` spread over the ``4^k - 1``
    Paulis: ``r/2`` each for one qubit, ``r/12`` for two)."""
    error = 0.0
    if name != "delay":
        props = target[name].get(qargs) if name in target.operation_names else None
        if props is None:
            return []
        seconds = float(props.duration or 0.0)
        relax = _relaxation_infidelity(seconds, [_t1_t2(target, q) for q in qargs])
        error = max(float(props.error or 0.0) - relax, 0.0)
    out: list[tuple[Pauli, float]] = []
    for q in qargs:
        pxy, pz = _relaxation_rates(seconds, *_t1_t2(target, q))
        out += [({q: "X"}, pxy), ({q: "Y"}, pxy), ({q: "Z"}, pz)]
    if error > 0.0:
        k = len(qargs)
        each = (2**k + 1) / 2**k * error / (4**k - 1)
        for letters in itertools.product("IXYZ", repeat=k):
            pauli = {q: c for q, c in zip(qargs, letters, strict=True) if c != "I"}
            if pauli:
                out.append((pauli, each))
    return out


def _anticommute(a: Pauli, b: Pauli) -> bool:
    return sum(1 for q, c in a.items() if b.get(q, c) != c) % 2 == 1


def _heisenberg_step(observable: Pauli, qargs: tuple[int, ...], table: dict[str, str]) -> None:
    """``G^dag O G`` in place, ``table`` the forward map ``P -> G P G^dag`` of ``G``."""
    local = "".join(observable.get(q, "I") for q in reversed(qargs))
    back = next(p for p, image in table.items() if image == local)
    for q, c in zip(reversed(qargs), back, strict=True):
        if c == "I":
            observable.pop(q, None)
        else:
            observable[q] = c


def _marginal_flips(isa: IsaCircuit, target: Any, *, layers: int) -> np.ndarray | None:
    """``(L, n, 3)`` per layer, the probability that the layer's errors flip ``X_q, Y_q, Z_q``
    of data qubit ``q`` at its noise slot (first order in the error rates).

    Layer ``l`` holds the ISA instructions after the previous layer's slot on their qubit up
    to its own slot (:func:`qldm.mitigation.layer_paulis.layer_of`). Each instruction's
    errors (:func:`_error_paulis`, idle delays included) count where they anticommute with
    the slot's ``P_q`` carried back to them through the ISA circuit bound at zero, from the
    circuit's end, where it is ``V P_q V^dag`` (``V`` the later layers): an X on a CNOT's
    control before the CNOT reaches its target, a dephasing of its target the control, a
    one-qubit gate turns a dephasing into a flip. ``None`` where that cannot be done (no
    noise slots, a gate that is not Clifford at zero weights).
    """
    from qiskit.quantum_info import Pauli as QiskitPauli

    from qldm.mitigation.layer_paulis import (
        after_slots,
        layer_ends,
        layer_of,
        pauli_map,
        zero_angle_clifford,
    )

    hw = isa.hardware
    n = hw.n_data
    ends = layer_ends(isa, layers)
    if any(len(e) != n for e in ends):
        return None
    circuit = isa.circuit.assign_parameters(dict.fromkeys(isa.circuit.parameters, 0.0))
    steps: list[tuple[tuple[int, ...], dict[str, str] | None, list[tuple[Pauli, float]], int]]
    steps = []
    started: set[int] = set()  # a qubit still in |0> does not relax
    for index, inst in enumerate(circuit.data):
        op = inst.operation
        qargs = tuple(circuit.find_bit(q).index for q in inst.qubits)
        layer = layer_of(index, qargs, ends)
        if op.name in ("barrier", "measure"):
            continue
        if op.name == "delay":
            scale = _UNITS.get(op.unit, 1.0) if op.unit != "dt" else float(target.dt or 0.0)
            idle = tuple(q for q in qargs if q in started)
            errors = _error_paulis("delay", idle, target, float(op.duration) * scale)
            steps.append(((), None, errors, layer))
            continue
        started.update(qargs)
        table = pauli_map(op)
        if table is None:
            return None
        steps.append((qargs, table, _error_paulis(op.name, qargs, target, 0.0), layer))
    flips = np.zeros((layers, n, 3))
    for layer in range(layers):
        later = zero_angle_clifford(after_slots(hw, layer, layers))
        for q in range(n):
            for axis, letter in enumerate("XYZ"):
                label = ["I"] * hw.circuit.num_qubits
                label[-1 - q] = letter
                text = QiskitPauli("".join(label)).evolve(later, frame="s").to_label()
                observable = {
                    isa.layout[k]: c for k, c in enumerate(reversed(text.lstrip("-i"))) if c != "I"
                }
                for qargs, table, errors, where in reversed(steps):
                    if where == layer:
                        flips[layer, q, axis] += sum(
                            p for e, p in errors if _anticommute(e, observable)
                        )
                    if table is not None and any(k in observable for k in qargs):
                        _heisenberg_step(observable, qargs, table)
    return flips


def device_pauli_rates(isa: IsaCircuit, backend: Any, *, layers: int) -> np.ndarray:
    """``(n, 3)`` estimated ``p_x, p_y, p_z`` per ansatz layer on each data qubit, at its
    noise slot: the marginal Pauli probabilities of the layer's errors carried there
    (:func:`_marginal_flips`, averaged over the layers; from the flips ``f`` of ``X, Y, Z``:
    ``p_x = (f_y + f_z - f_x) / 2`` and so on). Where the ISA circuit cannot be walked so (no
    noise slots, a non-Clifford gate at zero weights) the earlier per-qubit estimate: thermal
    relaxation over the layer's time plus the gate errors beyond it on the qubit itself."""
    target = backend.target
    flips = _marginal_flips(isa, target, layers=layers)
    if flips is not None:
        f = flips.mean(axis=0)
        fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
        return np.stack([fy + fz - fx, fx + fz - fy, fx + fy - fz], axis=1) / 2
    t, rates = _gate_rates(isa, target, layers=layers)
    for q in range(isa.hardware.n_data):
        pxy, pz = _relaxation_rates(t, *_t1_t2(target, isa.layout[q]))
        rates[q] += (pxy, pxy, pz)
    return rates


def device_damping(isa: IsaCircuit, backend: Any, *, layers: int) -> np.ndarray:
    """``(n,)`` estimated per-layer decay of the excited population on each data qubit:
    ``1 - e^{-t/T1}`` over the layer's time, plus the flips (``p_x + p_y``) of the gate errors
    beyond relaxation, the dilation's own gates included."""
    target = backend.target
    t, rates = _gate_rates(isa, target, layers=layers)
    return np.array(
        [
            1.0 - math.exp(-t / _t1_t2(target, isa.layout[q])[0]) + rates[q, 0] + rates[q, 1]
            for q in range(isa.hardware.n_data)
        ]
    )


def device_floor(kind: str, isa: IsaCircuit, backend: Any, *, layers: int) -> np.ndarray:
    """``(n,)`` the device's own per-layer strength of channel ``kind`` on each data qubit.

    Where it holds (``qldm bench floor``, exact density matrices of the fake devices' noise
    models): the Pauli kinds on 1 to 3 data qubits of the default ansatz on fake manila, lima
    and quito, where a job then delivers its request within 0.002 on every qubit (mean over
    the layers; the last layer, without an idle wait for a next one, gets less). Not checked:
    amplitude damping on several qubits (the per-qubit estimate), circuits routed inside a
    layer (``hqconv`` on a line: the per-qubit estimate, :func:`device_pauli_rates`),
    non-zero weights, real hardware (whose noise model is not the calibration's). The
    measured floor (``floor="measured"``) needs no noise model but has its own biases on
    several qubits (``docs/hardware.md``).
    """
    if kind == "amplitude_damping":
        return device_damping(isa, backend, layers=layers)
    rates = device_pauli_rates(isa, backend, layers=layers)
    px, py, pz = rates[:, 0], rates[:, 1], rates[:, 2]
    if kind == "bit_flip":
        return px + py
    if kind == "phase_flip":
        return py + pz
    if kind == "depolarizing":
        shrink = (3.0 - 4.0 * (px + py + pz)) / 3.0  # mean of the three Bloch shrinks
        return 1.0 - shrink
    raise ValueError(f"no floor for channel kind {kind!r}")


def _contraction(kind: str, s: np.ndarray) -> np.ndarray:
    return 1.0 - 2.0 * s if kind in ("bit_flip", "phase_flip") else 1.0 - s


def _from_contraction(kind: str, c: np.ndarray) -> np.ndarray:
    return (1.0 - c) / 2.0 if kind in ("bit_flip", "phase_flip") else 1.0 - c


def injected_strengths(
    kind: str, targets: np.ndarray, floor: np.ndarray, *, allow_floor: bool = False
) -> np.ndarray:
    """What to inject so that device + injection is the requested channel.

    Args:
        kind: the channel kind.
        targets: ``(L,)`` requested strength after each layer.
        floor: ``(n,)`` the device's own strength per layer on each data qubit.
        allow_floor: inject nothing (and accept the floor) where a target is below it.

    Returns:
        ``(L, n)`` strengths in [0, 1].

    Raises:
        NoiseFloorError: a target lies below the floor (field ``channel.strength``), unless
            ``allow_floor``.
    """
    t = np.asarray(targets, dtype=np.float64)[:, None]
    f = np.asarray(floor, dtype=np.float64)[None, :]
    if not allow_floor and np.any(t < f):
        worst = float(np.max(f))
        raise NoiseFloorError(
            f"requested {kind} strength {float(np.min(t)):.4g} is below this device's own "
            f"per-layer floor {worst:.4g} on the chosen qubits (per qubit: "
            f"{', '.join(f'{v:.4g}' for v in f[0])}); ask for at least {worst:.4g}, or set "
            "allow_noise_floor to accept the floor",
            field="channel.strength",
        )
    ct, cf = _contraction(kind, t), _contraction(kind, f)
    with np.errstate(divide="ignore", invalid="ignore"):
        ci = np.where(cf > 0, ct / cf, 1.0)
    return np.clip(_from_contraction(kind, np.clip(ci, -1.0, 1.0)), 0.0, 1.0)


def compose(kind: str, device: float, injected: float) -> float:
    """The total strength of the device channel followed by the injected one."""
    c = _contraction(kind, np.array(device)) * _contraction(kind, np.array(injected))
    return float(_from_contraction(kind, c))
