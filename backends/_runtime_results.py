"""Finished runtime results, cached per runtime job id so a restarted server can re-attach.

Every finished result of the runtime path is written to
``<data_dir>/runtime_results/<job id>.npz`` with the :func:`fingerprint` of the workload that
produced it: for expectation values the per-level rows ``(K, S, O)``, mitigated and raw, and
their standard errors; for state-level work (:mod:`qldm.backends._runtime_states`) the outcome
distributions of every PUB ``(K, S, 2**n)``, M3-mitigated (or frequencies without M3) and raw.
A job resumed with that runtime job id reads the file instead of submitting again, and refuses
it when the fingerprint differs (the id belongs to another workload, or to the other engine).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from qldm.backends.base import Workload
from qldm.errors import BackendError


def fingerprint(
    work: Workload,
    name: str,
    shots: int,
    instances: int,
    m3: bool,
    *,
    budget: int | None = None,
    spsa: int | None = None,
    states: bool = False,
) -> str:
    """SHA-256 hex digest of everything that determines a runtime result.

    Also seeds the random draws of subset and SPSA Jacobians, so a resumed job draws the same
    rows as the submission it re-attaches to.

    Args:
        work: the workload (spec, inputs, weights, noise levels, task, seed).
        name: the backend name.
        shots: shots per parameter set.
        instances: random Pauli-insertion instances per level.
        m3: whether M3 readout mitigation ran.
        budget: ``gradient_budget`` of a subset Jacobian.
        spsa: ``spsa_directions`` of an SPSA Jacobian.
        states: the state-level engine's result (outcome distributions): adds the output, the
            targets and the metric, and keeps it apart from expectation rows.
    """
    h = hashlib.sha256()
    h.update(work.spec.model_dump_json().encode())
    for arr in (work.inputs, work.weights):
        h.update(np.ascontiguousarray(arr, dtype=np.float64).tobytes())
    if work.noise_levels is not None:
        h.update(np.ascontiguousarray(work.noise_levels, dtype=np.float64).tobytes())
    h.update(f"{name}|{work.task}|{shots}|{work.seed}|{instances}|{m3}|{budget}".encode())
    if spsa is not None:  # absent otherwise, so the fingerprints of other jobs do not change
        h.update(f"|spsa={spsa}".encode())
    if states:  # likewise absent from expectation-path fingerprints
        if work.targets is not None:
            h.update(np.ascontiguousarray(work.targets, dtype=np.float64).tobytes())
        h.update(f"|states|{work.output.value}|{work.metric.value}".encode())
    return h.hexdigest()


class ResultCache:
    """The ``runtime_results`` folder under a backend's data dir.

    Args:
        data_dir: the backend's data dir; results go to ``<data_dir>/runtime_results/``.
    """

    def __init__(self, data_dir: Path) -> None:
        self.directory = data_dir / "runtime_results"

    def path(self, job_id: str) -> Path:
        """``<job id>.npz``, keeping only the id's letters, digits, ``-`` and ``_``."""
        safe = "".join(c for c in job_id if c.isalnum() or c in "-_")
        return self.directory / f"{safe}.npz"

    def store(
        self,
        job_id: str,
        fingerprint: str,
        mitigated: np.ndarray,
        raw: np.ndarray,
        std: np.ndarray | None,
    ) -> None:
        """Write a finished result atomically (a temporary file, then a rename); ``std``
        ``None``: a result without standard errors (state-level distributions)."""
        path = self.path(job_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        arrays: dict[str, Any] = {"mitigated": mitigated, "raw": raw}
        if std is not None:
            arrays["std"] = std
        np.savez(tmp, fingerprint=fingerprint, **arrays)
        tmp.replace(path)

    def load(
        self, job_id: str | None, fingerprint: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
        """``(mitigated, raw, std)`` cached for ``job_id`` (``std`` ``None`` in files written
        without standard errors); ``None`` without an id or a file.

        Raises:
            BackendError: the file was written for a workload with another fingerprint.
        """
        if job_id is None:
            return None
        path = self.path(job_id)
        if not path.exists():
            return None
        with np.load(path) as data:
            if str(data["fingerprint"]) != fingerprint:
                raise BackendError(
                    f"runtime job {job_id} was submitted for a different workload; "
                    "refusing to re-attach"
                )
            std = np.array(data["std"]) if "std" in data.files else None
            return np.array(data["mitigated"]), np.array(data["raw"]), std
