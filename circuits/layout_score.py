"""How good a transpiled circuit's placement is, from the device's reported error rates.

:func:`expected_fidelity` is the product of ``1 - error`` over every instruction of an ISA
circuit (the target's error of that operation on those qubits), times the readout fidelity
``1 - error(measure)`` of every measured qubit, times the average fidelity of every scheduled
``delay`` under relaxation (T1, T2). It is the "estimated success probability" that Qiskit's
own layout passes (``VF2Layout``/``VF2PostLayout``) score placements by, extended by idle time
(which they do not see) and readout. Two placements of one circuit on one device compare by
it: :func:`qldm.circuits.transpile.transpile_spec` keeps whichever of its own chain layout
and Qiskit's error-aware layout scores higher.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = ["expected_fidelity", "target_error"]


def expected_fidelity(
    circuit: Any, target: Any, *, measured: Iterable[int] = (), dt: float | None = None
) -> float:
    """The estimated success probability of ``circuit`` on the device ``target``.

    Args:
        circuit: an ISA ``QuantumCircuit`` over the device's qubits.
        target: the device's ``Target`` (errors, durations, T1 and T2).
        measured: physical qubits measured at the end (their readout error counts once
            each, in addition to any ``measure`` in the circuit).
        dt: the device's ``dt`` in seconds, for delays given in ``dt`` (``None``: the
            target's).

    Returns:
        A number in ``[0, 1]``; higher is better.
    """
    log_f = 0.0
    dt = dt if dt is not None else getattr(target, "dt", None)
    props = target.qubit_properties or []
    for inst in circuit.data:
        op = inst.operation
        qargs = tuple(circuit.find_bit(q).index for q in inst.qubits)
        if op.name == "barrier":
            continue
        if op.name == "delay":
            seconds = _seconds(op, dt)
            for q in qargs:
                log_f += _idle_log_survival(props[q] if q < len(props) else None, seconds)
            continue
        log_f += _log1m(target_error(target, op.name, qargs))
    for q in measured:
        log_f += _log1m(target_error(target, "measure", (int(q),)))
    return math.exp(log_f)


def target_error(target: Any, name: str, qargs: tuple[int, ...]) -> float:
    """The ``Target``'s reported error of operation ``name`` on ``qargs`` (0 when it has none)."""
    if name not in target.operation_names:
        return 0.0
    props = target[name].get(qargs)
    if props is None or props.error is None:
        return 0.0
    return float(props.error)


def _log1m(error: float) -> float:
    return math.log(max(1.0 - error, 1e-12))


def _seconds(op: Any, dt: float | None) -> float:
    unit = getattr(op, "unit", "dt")
    duration = float(op.duration or 0.0)
    if unit == "dt":
        return duration * (dt or 0.0)
    return duration * {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "ps": 1e-12}[unit]


def _idle_log_survival(props: Any, seconds: float) -> float:
    """``log`` of the average gate fidelity of one qubit idle for ``seconds``: relaxation has
    process fidelity ``F_p = (1 + e^{-t/T1} + 2 e^{-t/T2}) / 4`` and average fidelity
    ``(2 F_p + 1) / 3`` (``T2`` capped at ``2 T1``; no T1 reported: no decay counted)."""
    t1 = getattr(props, "t1", None)
    t2 = getattr(props, "t2", None)
    if not seconds or not t1:
        return 0.0
    t2 = min(float(t2), 2.0 * float(t1)) if t2 else 2.0 * float(t1)
    process = (1.0 + math.exp(-seconds / t1) + 2.0 * math.exp(-seconds / t2)) / 4.0
    return math.log(max((2.0 * process + 1.0) / 3.0, 1e-12))
