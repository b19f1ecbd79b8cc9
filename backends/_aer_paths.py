"""Which Aer path a simulator backend (``exact``, ``aer``) takes for a workload its own engine
does not run: the ``counts`` task (:class:`qldm.backends.counts.CountsBackend`) and QPY
circuits (:class:`qldm.backends.qpy_aer.QpyAerBackend`). Both compute exactly, with Aer, on
either backend name."""

from __future__ import annotations

from qldm.backends.base import Backend, CircuitKind, Task, Workload


def aer_path(name: str, work: Workload) -> Backend | None:
    """The backend that runs ``work`` for the simulator called ``name``, or ``None`` when the
    simulator's own engine (torch, Aer's estimator on a spec) runs it."""
    if work.task is Task.COUNTS:
        from qldm.backends.counts import CountsBackend

        return CountsBackend(name)
    if work.kind is CircuitKind.QPY:
        from qldm.backends.qpy_aer import QpyAerBackend

        return QpyAerBackend(name)
    return None
