"""M3 readout calibrations in the job store, shared by every worker and replica.

The ``qldm_m3_calibrations`` table keeps, per device and qubit set (the canonical text of
:func:`qldm.mitigation.m3.qubits_key`), the newest :data:`KEEP_PER_KEY` calibrations: when they
were measured, under which device calibration, with which mthree method and how many shots,
and their ``(n, 2, 2)`` assignment matrices as an ``.npz`` blob. :class:`M3CalibrationStore`
is a :class:`~qldm.mitigation.m3.CalibrationStorage`, so a :class:`CalibrationCache`
built on the store reuses a calibration until it is older than the job's ``m3_max_age_s``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import delete, insert, or_, select

from qldm.errors import InvalidSpecError
from qldm.jobs import db
from qldm.jobs._sql import SqlBase, new_id, pack, require, unpack, utc
from qldm.jobs._sql import now as utcnow
from qldm.mitigation.m3 import ReadoutCalibration, qubits_key

__all__ = ["KEEP_PER_KEY", "M3CalibrationStore"]

KEEP_PER_KEY = 8
"""Calibrations kept per (device, qubits); older ones are deleted when a new one is saved."""

_MAX_QUBITS_KEY = 2048
_NO_AGE_LIMIT_S = 1e9  # about 30 years; larger ages would overflow a timedelta


def _key(qubits: Sequence[int]) -> str:
    if len(qubits) == 0:
        raise InvalidSpecError("must name at least one qubit", field="qubits")
    key = qubits_key(qubits)
    if len(key) > _MAX_QUBITS_KEY:
        raise InvalidSpecError(
            f"too many qubits for one calibration ({len(qubits)})", field="qubits"
        )
    return key


class M3CalibrationStore(SqlBase):
    """The M3 calibrations part of :class:`qldm.jobs.store.JobStore`."""

    def save_m3_calibration(self, calibration: ReadoutCalibration) -> None:
        """Keep ``calibration``; only the newest :data:`KEEP_PER_KEY` of its (device, qubits)
        stay.

        Raises:
            InvalidSpecError: empty device name, no qubits, or matrices that are not
                ``(n_qubits, 2, 2)``.
        """
        require(calibration.device, "device")
        key = _key(calibration.qubits)
        matrices = np.asarray(calibration.matrices, dtype=np.float64)
        if matrices.shape != (len(calibration.qubits), 2, 2):
            raise InvalidSpecError(
                f"must have shape ({len(calibration.qubits)}, 2, 2), got {matrices.shape}",
                field="matrices",
            )
        where = (
            db.m3_calibrations.c.device == calibration.device,
            db.m3_calibrations.c.qubits == key,
        )
        with self._write() as conn:
            conn.execute(
                insert(db.m3_calibrations).values(
                    id=new_id(),
                    device=calibration.device,
                    qubits=key,
                    method=calibration.method,
                    shots=int(calibration.shots),
                    device_calibration=calibration.device_calibration,
                    created_at=datetime.fromtimestamp(calibration.created_at, UTC),
                    matrices=pack({"matrices": matrices}),
                    runtime_job_id=calibration.runtime_job_id,
                )
            )
            stale = (
                conn.execute(
                    select(db.m3_calibrations.c.id)
                    .where(*where)
                    .order_by(db.m3_calibrations.c.created_at.desc())
                    .offset(KEEP_PER_KEY)
                )
                .scalars()
                .all()
            )
            if stale:
                conn.execute(delete(db.m3_calibrations).where(db.m3_calibrations.c.id.in_(stale)))

    def latest_m3_calibration(
        self,
        device: str,
        qubits: Sequence[int],
        max_age_s: float,
        *,
        device_calibration: str | None = None,
    ) -> ReadoutCalibration | None:
        """The newest calibration of ``qubits`` on ``device`` at most ``max_age_s`` seconds old.

        Args:
            device: the backend name.
            qubits: physical qubits (any order).
            max_age_s: the oldest acceptable age; ``0`` (or less) finds none, so the caller
                measures a new one.
            device_calibration: when given, only calibrations measured under this device
                calibration (or under an unknown one) qualify.

        Raises:
            InvalidSpecError: ``max_age_s`` is NaN, no qubits.
        """
        if math.isnan(max_age_s):
            raise InvalidSpecError("must be a number of seconds", field="m3_max_age_s")
        if max_age_s <= 0:
            return None
        require(device, "device")
        table = db.m3_calibrations
        conds = [table.c.device == device, table.c.qubits == _key(qubits)]
        if max_age_s < _NO_AGE_LIMIT_S:  # beyond it (or infinite): any age
            conds.append(table.c.created_at >= utcnow() - timedelta(seconds=max_age_s))
        if device_calibration is not None:
            conds.append(
                or_(
                    table.c.device_calibration.is_(None),
                    table.c.device_calibration == device_calibration,
                )
            )
        with self._read() as conn:
            row = conn.execute(
                select(table).where(*conds).order_by(table.c.created_at.desc()).limit(1)
            ).first()
        if row is None:
            return None
        return ReadoutCalibration(
            device=row.device,
            qubits=tuple(int(q) for q in row.qubits.split(",")),
            matrices=unpack(row.matrices)["matrices"],
            created_at=utc(row.created_at).timestamp(),  # type: ignore[union-attr]
            shots=int(row.shots),
            method=row.method,
            device_calibration=row.device_calibration,
            runtime_job_id=row.runtime_job_id,
        )
