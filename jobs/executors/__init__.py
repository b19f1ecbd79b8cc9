"""Executors run jobs away from the dispatcher's thread: a local process pool or a Ray cluster
(the contract they share is :mod:`qldm.jobs.executors.base`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qldm.jobs.executors.base import Executor, WorkerLostError

if TYPE_CHECKING:
    from qldm.backends.runtime import RuntimeConfig

__all__ = ["Executor", "WorkerLostError", "make_executor"]


def make_executor(
    kind: str,
    *,
    max_workers: int | None = None,
    address: str | None = None,
    runtime_config: RuntimeConfig | None = None,
) -> Executor:
    """An executor by name: ``local`` (process pool) or ``ray`` (``address``: a cluster, or
    ``None`` for a local Ray instance). ``runtime_config`` (the server's data folder and IBM
    credentials) goes with every job to the runtime backends its workers build.

    Raises:
        InvalidSpecError: an unknown ``kind`` (``field="executor"``).
    """
    if kind == "local":
        from qldm.jobs.executors.local import LocalExecutor

        return LocalExecutor(max_workers, runtime_config=runtime_config)
    if kind == "ray":
        from qldm.jobs.executors.ray import RayExecutor

        return RayExecutor(address, num_cpus=max_workers, runtime_config=runtime_config)
    from qldm.errors import InvalidSpecError

    raise InvalidSpecError(f"unknown executor {kind!r}: use local or ray", field="executor")
