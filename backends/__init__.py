"""Backends: ``exact`` (torch), ``aer`` / ``aer:<device>`` (Qiskit Aer), ``fake:<device>`` and
``ibm:<device>`` (qiskit-ibm-runtime primitives inside a Session or Batch).

Every backend is called the same way, ``get_backend(name).run(workload, context)``
(:mod:`qldm.backends.base`); :func:`capabilities` tells, without building one, which tasks and
circuit kinds a name runs.
"""

from __future__ import annotations

from typing import Any

from qldm.backends._limits import MAX_DENSITY_QUBITS
from qldm.backends.base import (
    DEVICE,
    NO_CONTEXT,
    SIMULATOR,
    Backend,
    Capabilities,
    CircuitKind,
    Context,
    Evaluation,
    NoiseSampling,
    Task,
    Workload,
)
from qldm.errors import BackendLimitError, UnknownBackendError

__all__ = [
    "NO_CONTEXT",
    "Backend",
    "Capabilities",
    "CircuitKind",
    "Context",
    "Evaluation",
    "Task",
    "Workload",
    "admit",
    "capabilities",
    "get_backend",
]

_UNKNOWN = "use exact, aer, aer:<device>, fake:<device> or ibm:<device>"


def capabilities(name: str) -> Capabilities:
    """What the backend called ``name`` runs (the ``capabilities`` of its class), without
    building it: ``exact`` and ``aer`` every task on specs and QPY circuits, the device
    backends values and Jacobians of specs.

    Raises:
        UnknownBackendError: no backend has this name (``field="backend"``).
    """
    kind, _, device = name.partition(":")
    if name in ("exact", "aer"):
        return SIMULATOR
    if kind in ("aer", "fake", "ibm") and device:
        return DEVICE
    raise UnknownBackendError(f"unknown backend {name!r}: {_UNKNOWN}", field="backend")


def admit(name: str, work: Workload) -> None:
    """Refuse, before anything runs, work the backend called ``name`` would refuse for its
    shape: a task, circuit kind or noise sampling it lacks (:func:`capabilities`), or a noisy
    spec too large for the ``exact`` backend's density engine. Builds no backend (no torch).

    Raises:
        UnknownBackendError: no backend has this name (``field="backend"``).
        BackendLimitError: ``field="task"``, ``"circuit"`` or ``"noise_sampling"`` (see
            :meth:`Capabilities.check`), or ``"circuit.n_qubits"``: a noisy spec on more than
            :data:`MAX_DENSITY_QUBITS` qubits on ``exact`` with expectation sampling (what it
            would fail with when it runs).
    """
    capabilities(name).check(name, work.task, work.kind, work.noise_sampling)
    if (
        name == "exact"
        and work.kind is CircuitKind.SPEC
        and work.task in (Task.EXPECTATION, Task.JACOBIAN)
        and work.noise_sampling is NoiseSampling.EXPECTATION
        and work.spec.noisy
        and work.spec.n_qubits > MAX_DENSITY_QUBITS
    ):
        raise BackendLimitError(
            f"the exact backend simulates noisy circuits (density matrices) on at most "
            f"{MAX_DENSITY_QUBITS} qubits, got {work.spec.n_qubits}; use a noiseless spec, "
            "noise_sampling='trajectory', or the aer backend",
            field="circuit.n_qubits",
        )


def get_backend(name: str, **options: Any) -> Backend:
    """The backend called ``name``.

    Args:
        name: ``exact``, ``aer``, ``aer:<device>``, ``fake:<device>`` or ``ibm:<device>``.
        **options: backend-specific keyword options.

    Raises:
        UnknownBackendError: no backend has this name (``field="backend"``).
    """
    kind, _, device = name.partition(":")
    if name == "exact":
        from qldm.backends.exact import ExactBackend

        return ExactBackend(**options)
    if name == "aer":
        from qldm.backends.aer import AerBackend

        return AerBackend(**options)
    if kind == "aer" and device:
        from qldm.backends.aer_device import AerDeviceBackend

        return AerDeviceBackend(device, **options)
    if kind in ("fake", "ibm") and device:
        from qldm.backends.runtime import RuntimeBackend

        return RuntimeBackend(name, **options)
    raise UnknownBackendError(f"unknown backend {name!r}: {_UNKNOWN}", field="backend")
