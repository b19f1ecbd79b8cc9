"""qldm: a Qiskit execution service for hybrid quantum-classical generative models.

The public names::

    from qldm import PQCSpec, QuantumLayer, ServiceClient, RemoteEstimatorV2, RemoteSamplerV2
    from qldm import QldmError

They load on first use, so ``import qldm.errors`` (which every layer does) imports neither torch
nor Qiskit. The subpackages, lowest layer first: ``qldm.circuits``, ``qldm.mitigation``,
``qldm.backends``, ``qldm.jobs``, ``qldm.service``; ``qldm.client`` and ``qldm.hybrid`` above
them; ``qldm.cli`` is the composition root (see ``docs/architecture.md``).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from qldm.errors import QldmError

if TYPE_CHECKING:
    from qldm.circuits.spec import PQCSpec
    from qldm.client.quantum_layer import QuantumLayer
    from qldm.client.remote_estimator import RemoteEstimatorV2
    from qldm.client.remote_sampler import RemoteSamplerV2
    from qldm.client.service_client import ServiceClient

__version__ = "0.2.0"

__all__ = [
    "PQCSpec",
    "QldmError",
    "QuantumLayer",
    "RemoteEstimatorV2",
    "RemoteSamplerV2",
    "ServiceClient",
]

_WHERE = {
    "PQCSpec": "qldm.circuits.spec",
    "QuantumLayer": "qldm.client.quantum_layer",
    "RemoteEstimatorV2": "qldm.client.remote_estimator",
    "RemoteSamplerV2": "qldm.client.remote_sampler",
    "ServiceClient": "qldm.client.service_client",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'qldm' has no attribute {name!r}")
