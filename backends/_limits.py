"""Size limits of the backends' engines, importable without torch (the server checks them at
submission, :func:`qldm.backends.admit`)."""

from __future__ import annotations

__all__ = ["MAX_DENSITY_QUBITS"]

MAX_DENSITY_QUBITS = 10
"""Largest noisy circuit the ``exact`` backend's Heisenberg (density) engine takes: a row of
Pauli coefficients is ``4**n`` numbers (8 MiB at 10 qubits)."""
