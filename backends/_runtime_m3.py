"""The M3 readout calibration a runtime workload needs, found or measured before its submission.

The calibration of the chosen data qubits is the stored one while it is younger than the
job's ``m3_max_age_s`` (else the backend's) and was measured under the device's current
calibration date, else a new one, measured outside the step's submission
(:class:`qldm.mitigation.m3.CalibrationCache`). On ``ibm:``, where the runtime is the only way
to run circuits, it runs in the job's Session, or in its own ``Batch``.
"""

from __future__ import annotations

from typing import Any

from qldm.backends._sessions import ExecutionMode
from qldm.backends.base import Context
from qldm.mitigation.m3 import CalibrationCache, ReadoutCalibration

__all__ = ["readout_calibration"]


def readout_calibration(
    backend: Any, prepared: Any, mode: ExecutionMode, context: Context
) -> tuple[ReadoutCalibration | None, dict[str, Any] | None]:
    """The calibration and its metadata (``(None, None)`` without M3).

    Args:
        backend: the :class:`qldm.backends.runtime.RuntimeBackend`.
        prepared: the prepared workload (its ISA circuit and whether M3 runs).
        mode: the job's execution mode (its Session, on ``ibm:``).
        context: ``m3_store`` (the job store; ``None``: the backend's files) and the job's
            options (``m3_max_age_s``).

    Raises:
        MitigationError: mthree failed to calibrate.
    """
    if not prepared.use_m3:
        return None, None
    store = context.m3_store
    cache = (
        backend.calibrations if store is None else CalibrationCache(store, shots=backend.m3_shots)
    )
    measured_before = cache.calibrations_run
    max_age = getattr(context.options, "m3_max_age_s", None)
    max_age_s = backend.m3_max_age_s if max_age is None else float(max_age)
    isa = prepared.isa
    qubits = tuple(isa.layout[: isa.hardware.n_data])
    device_cal = None if isa.calibration == "unknown" else isa.calibration

    def get(runtime_mode: Any) -> ReadoutCalibration:
        return cache.get_or_calibrate(
            backend.backend, qubits, max_age_s, mode=runtime_mode, device_calibration=device_cal
        )

    if backend.kind != "ibm":
        calibration = get(None)
    elif (session := mode.session()) is not None:
        calibration = get(session)
    else:
        from qiskit_ibm_runtime import Batch

        with Batch(backend=backend.backend) as batch:
            calibration = get(batch)
    meta = calibration.summary(
        measured=cache.calibrations_run > measured_before,
        source="store" if store is not None else "file",
    )
    return calibration, meta
