"""Backends: ``exact`` (torch), ``aer`` / ``aer:<device>`` (Qiskit Aer), ``fake:<device>`` and
``ibm:<device>`` (qiskit-ibm-runtime primitives inside a Session or Batch)."""

from __future__ import annotations

from typing import Any

from qldm.backends.base import Backend, Evaluation, Task, Workload
from qldm.errors import UnknownBackendError

__all__ = ["Backend", "Evaluation", "Task", "Workload", "get_backend"]


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
    raise UnknownBackendError(
        f"unknown backend {name!r}: use exact, aer, aer:<device>, fake:<device> or ibm:<device>",
        field="backend",
    )
