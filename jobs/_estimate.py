"""What a job would cost on a runtime device, without submitting it (``POST /v1/estimate``).

The same price as ``qldm estimate`` and a runtime job's ``cost`` metadata
(:meth:`qldm.backends.runtime.RuntimeBackend.estimate`, :mod:`qldm.backends._runtime_cost`):
the job's workload is prepared (transpiled, noise floor, PUBs) by the backend a worker would
use, and nothing runs.
"""

from __future__ import annotations

from typing import Any

from qldm.backends._runtime_devices import RuntimeConfig
from qldm.errors import BackendLimitError
from qldm.jobs.model import JobRequest
from qldm.jobs.runner import _backend

__all__ = ["RUNTIME_PREFIXES", "estimate_request"]

RUNTIME_PREFIXES = ("fake:", "ibm:", "aer:")
"""Backends that run on (a model of) a device and so have a runtime price."""


def estimate_request(request: JobRequest, runtime_config: RuntimeConfig | None) -> dict[str, Any]:
    """The runtime cost of ``request``'s workload: primitive, circuits, shots, executions,
    payload bytes, one shot's seconds, repetition delay, QPU seconds (a lower bound: IBM's
    per-job overhead left out), the per-job limit and the runtime jobs it needs.

    Args:
        request: a validated job.
        runtime_config: the server's runtime settings (data folder, IBM credentials).

    Raises:
        BackendLimitError: a backend with no device behind it (``exact``, ``aer``,
            ``field="backend"``), or a task or circuit the runtime path does not run.
        NoiseFloorError, InvalidSpecError: as the job itself would be refused.
    """
    name = request.backend
    if not name.startswith(RUNTIME_PREFIXES) or name.endswith(":"):
        raise BackendLimitError(
            f"{name!r} runs no device: estimates price fake:, ibm: and aer:<device> backends",
            field="backend",
        )
    backend: Any = _backend(name, runtime_config)
    work = request.workload()
    backend.capabilities.check(backend.name, work.task, work.kind)
    cost = backend.estimate(work, request.options)
    return {"backend": name, **cost.as_dict()}
