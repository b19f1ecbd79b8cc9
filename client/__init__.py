"""The torch client: :class:`QuantumLayer`, and (lazily) the HTTP client and Qiskit adapters.

``ServiceClient``, ``RemoteEstimatorV2`` and ``RemoteSamplerV2`` are imported on first use, so
``from client import QuantumLayer`` never needs the HTTP stack, and a missing optional module
breaks only its name.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from qldm.client.quantum_layer import QuantumLayer

__all__ = ["QuantumLayer", "RemoteEstimatorV2", "RemoteSamplerV2", "ServiceClient"]

_LAZY = {
    "ServiceClient": "qldm.client.service_client",
    "RemoteEstimatorV2": "qldm.client.remote_estimator",
    "RemoteSamplerV2": "qldm.client.remote_sampler",
}
"""Lazily exported names and the modules that define them."""


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'client' has no attribute {name!r}")
    try:
        module = import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise AttributeError(f"module 'client' has no attribute {name!r} ({exc})") from None
    value = getattr(module, name)
    globals()[name] = value
    return value
