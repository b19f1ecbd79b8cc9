"""The M3 readout calibration of a runtime workload: found in the store, or measured in its job.

:func:`plan_calibration` runs before the submission and touches no device: the calibration of
the chosen data qubits is the stored one while it is younger than the job's ``m3_max_age_s``
(else the backend's) and was measured under the device's current calibration date. When there
is none, the step's own ``SamplerV2`` job carries mthree's balanced calibration circuits as
extra PUBs (:class:`qldm.mitigation.m3.CalibrationCircuits`), so a calibration is never a
separate runtime job (on the Open plan that was a second queue wait) and no lock is held while
the job waits. :meth:`M3Step.finish` turns those PUBs' counts into the calibration, keeps it
in the store with the runtime job id it came from, and gives the metadata.

Two workers that miss the same calibration at once both measure it in their own jobs (a few
extra circuits each) and the store keeps both; nothing waits for the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from qldm.backends.base import Context
from qldm.errors import BackendError, MitigationError
from qldm.mitigation.m3 import CalibrationCache, CalibrationCircuits, ReadoutCalibration

__all__ = ["M3Step", "plan_calibration"]


@dataclass
class M3Step:
    """The calibration a workload uses, or the circuits that measure it in its own job.

    Attributes:
        cache: where calibrations are found and kept.
        source: ``store`` (the job store) or ``file`` (the backend's files).
        calibration: the stored calibration found, or (after :meth:`finish`) the measured one.
        circuits: the calibration circuits riding in the step's job, or ``None``.
        device_calibration: the device's calibration date the job runs under.
    """

    cache: CalibrationCache
    source: str
    calibration: ReadoutCalibration | None
    circuits: CalibrationCircuits | None
    device_calibration: str | None

    def without_circuits(self, backend: Any, *, ibm: bool) -> None:
        """A re-attached job carried no calibration circuits (a stored calibration was fresh
        when it was submitted): use the newest stored one, whatever its age (the one it was
        submitted with), else measure one apart (in a ``Batch`` on ``ibm:``)."""
        if self.circuits is None:
            return
        qubits = self.circuits.qubits
        self.circuits = None
        self.calibration = self.cache.lookup(str(backend.name), qubits, math.inf)
        if self.calibration is not None:
            return
        if not ibm:
            self.calibration = self.cache.get_or_calibrate(backend, qubits, 0.0)
            return
        from qiskit_ibm_runtime import Batch

        with Batch(backend=backend) as batch:
            self.calibration = self.cache.get_or_calibrate(
                backend, qubits, 0.0, mode=batch, device_calibration=self.device_calibration
            )

    def pubs(self) -> list[tuple[Any, None, int]]:
        """The extra ``SamplerV2`` PUBs of the step's job (none when a stored one is used)."""
        return [] if self.circuits is None else self.circuits.pubs()

    def finish(
        self, extra_results: list[Any], runtime_job_id: str | None
    ) -> tuple[ReadoutCalibration, dict[str, Any]]:
        """The calibration the post-processing uses and its metadata.

        Args:
            extra_results: the PUB results of :meth:`pubs`, in order (empty when a stored
                calibration is used).
            runtime_job_id: the runtime job they ran in (saved with the calibration).

        Raises:
            BackendError: the calibration PUBs are missing or mthree's faulty-qubit check
                failed.
        """
        measured = self.circuits is not None
        if self.circuits is not None:
            if len(extra_results) != len(self.circuits.circuits):
                raise BackendError(
                    f"the job returned {len(extra_results)} of the "
                    f"{len(self.circuits.circuits)} M3 calibration PUBs it carried"
                )
            counts = [r.join_data().get_counts() for r in extra_results]
            try:
                self.calibration = self.circuits.calibration(
                    counts,
                    device_calibration=self.device_calibration,
                    runtime_job_id=runtime_job_id,
                )
            except MitigationError as exc:
                raise BackendError(str(exc)) from exc
            self.cache.save(self.calibration)
            self.circuits = None
        if self.calibration is None:
            raise BackendError("no M3 calibration was found or measured")
        meta = self.calibration.summary(measured=measured, source=self.source)
        meta["in_job"] = measured
        return self.calibration, meta


def plan_calibration(backend: Any, prepared: Any, context: Context) -> M3Step | None:
    """Find the stored calibration of the workload's qubits, else plan to measure it in the
    step's own job (``None`` without M3).

    Args:
        backend: the :class:`qldm.backends.runtime.RuntimeBackend`.
        prepared: the prepared workload (its ISA circuit and whether M3 runs).
        context: ``m3_store`` (the job store; ``None``: the backend's files) and the job's
            options (``m3_max_age_s``).
    """
    if not prepared.use_m3:
        return None
    store = context.m3_store
    cache = (
        backend.calibrations if store is None else CalibrationCache(store, shots=backend.m3_shots)
    )
    max_age = getattr(context.options, "m3_max_age_s", None)
    max_age_s = backend.m3_max_age_s if max_age is None else float(max_age)
    isa = prepared.isa
    qubits = tuple(isa.layout[: isa.hardware.n_data])
    device_cal = None if isa.calibration == "unknown" else isa.calibration
    found = cache.lookup(
        str(backend.backend.name), qubits, max_age_s, device_calibration=device_cal
    )
    circuits = (
        None
        if found is not None
        else CalibrationCircuits.build(backend.backend, qubits, shots=backend.m3_shots)
    )
    return M3Step(
        cache=cache,
        source="store" if store is not None else "file",
        calibration=found,
        circuits=circuits,
        device_calibration=device_cal,
    )
