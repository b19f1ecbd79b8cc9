"""M3 readout mitigation (mthree): calibrations kept per (device, physical qubits).

A :class:`CalibrationCache` hands out one calibration per device and qubit set, reusing the
newest stored one until it is older than ``max_age_s`` (or was measured against another
device calibration), and measuring a new one otherwise. Where calibrations are kept is a
:class:`CalibrationStorage`:

- inside the server, the job store (``JobStore.save_m3_calibration`` /
  ``JobStore.latest_m3_calibration``: the ``qldm_m3_calibrations`` table, shared by every
  worker and replica);
- standalone (``RuntimeBackend(...)`` in a plain process), :class:`FileCalibrations`: one
  ``.npz`` per (device, qubits) in a directory.

Calibrating happens one of two ways:

- :class:`CalibrationCircuits`: mthree's *balanced* calibration circuits (a Hadamard set of
  bitstrings, each qubit prepared in ``|0>`` in half of them and ``|1>`` in the other half)
  built here so that they ride in the step's own ``SamplerV2`` job as extra PUBs, and the
  assignment matrices computed from their counts as mthree does (no separate calibration job,
  so nothing queues twice on hardware and nothing waits under a lock);
- :meth:`CalibrationCache.get_or_calibrate`: mthree's ``cals_from_system`` as its own job
  (``independent`` method on simulators and fake devices, ``balanced`` on hardware), inside
  the given runtime ``Batch``/``Session`` when there is one. No lock is held while it runs: two
  workers that miss the same calibration at once both measure it, and the store keeps both.

:func:`z_estimates` (:mod:`qldm.mitigation._m3_values`) turns measured counts into Z-type
expectation values and their standard errors, raw and M3-corrected side by side (only
diagonal observables, ``I``/``Z`` strings).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from qldm.errors import MitigationError
from qldm.mitigation._m3_values import (
    ZEstimates,
    raw_expectations,
    z_estimates,
    z_expectations,
)

__all__ = [
    "DEFAULT_MAX_AGE_S",
    "CalibrationCache",
    "CalibrationCircuits",
    "CalibrationStorage",
    "FileCalibrations",
    "ReadoutCalibration",
    "ZEstimates",
    "is_fresh",
    "qubits_key",
    "raw_expectations",
    "z_estimates",
    "z_expectations",
]

DEFAULT_MAX_AGE_S = 6 * 3600.0
"""Recalibrate after six hours (the calibration cycle of IBM devices is about a day)."""


@dataclass(frozen=True)
class ReadoutCalibration:
    """Single-qubit readout assignment matrices of some qubits of one device.

    Attributes:
        device: backend name.
        qubits: physical qubits, sorted, ``(n,)``.
        matrices: ``(n, 2, 2)``; column ``j`` is the distribution measured after preparing ``j``.
        created_at: UNIX time of the calibration.
        shots: shots per calibration circuit.
        method: mthree's calibration method (``independent``, ``balanced``, ``marginal``).
        device_calibration: the device's own calibration date it was measured under
            (:func:`qldm.circuits.transpile.calibration_date`), ``None`` when unknown.
        runtime_job_id: the runtime job whose counts it was computed from (the step's own
            job when the calibration rode in it), ``None`` when unknown.
    """

    device: str
    qubits: tuple[int, ...]
    matrices: np.ndarray
    created_at: float
    shots: int
    method: str = "independent"
    device_calibration: str | None = None
    runtime_job_id: str | None = None

    def age_s(self) -> float:
        """Seconds since the calibration."""
        return time.time() - self.created_at

    def summary(self, *, measured: bool, source: str) -> dict[str, Any]:
        """What a job's metadata says about the calibration it used.

        Args:
            measured: whether the job measured it (else it reused a stored one).
            source: where it is kept (``store`` or ``file``).
        """
        return {
            "age_s": self.age_s(),
            "created_at": self.created_at,
            "measured": measured,
            "source": source,
            "method": self.method,
            "shots": self.shots,
            "qubits": list(self.qubits),
            "device_calibration": self.device_calibration,
            "runtime_job_id": self.runtime_job_id,
        }

    def mitigator(self, backend: Any) -> Any:
        """An ``mthree.M3Mitigation`` loaded with this calibration."""
        import mthree

        mit = mthree.M3Mitigation(backend)
        cals: list[Any] = [None] * int(backend.num_qubits)
        for q, matrix in zip(self.qubits, self.matrices, strict=True):
            cals[q] = np.asarray(matrix, dtype=np.float32)
        mit.cals_from_matrices(cals)
        return mit


def qubits_key(qubits: Sequence[int]) -> str:
    """The canonical text of a qubit set: sorted, comma-separated (``"0,1,4"``)."""
    return ",".join(str(int(q)) for q in sorted(int(q) for q in qubits))


@runtime_checkable
class CalibrationStorage(Protocol):
    """Where M3 calibrations are kept (the job store, or :class:`FileCalibrations`)."""

    def latest_m3_calibration(
        self,
        device: str,
        qubits: Sequence[int],
        max_age_s: float,
        *,
        device_calibration: str | None = None,
    ) -> ReadoutCalibration | None:
        """The newest calibration of ``qubits`` on ``device`` at most ``max_age_s`` old
        (``max_age_s <= 0``: none), measured under ``device_calibration`` when that is given."""
        ...

    def save_m3_calibration(self, calibration: ReadoutCalibration) -> None:
        """Keep ``calibration``."""
        ...


def is_fresh(
    calibration: ReadoutCalibration | None,
    max_age_s: float,
    device_calibration: str | None,
    *,
    now: float | None = None,
) -> bool:
    """Whether a stored calibration may be reused: measured at most ``max_age_s`` ago
    (``max_age_s <= 0`` never), and under the same device calibration when both are known."""
    if calibration is None or max_age_s <= 0:
        return False
    age = (time.time() if now is None else now) - calibration.created_at
    if age > max_age_s:
        return False
    known = calibration.device_calibration is not None and device_calibration is not None
    return not known or calibration.device_calibration == device_calibration


class FileCalibrations:
    """M3 calibrations on disk, the newest one per (device, qubits) in an ``.npz`` file.

    The fallback of a :class:`RuntimeBackend` used without a job store.

    Args:
        directory: where the files live (created on first write).
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path(self, device: str, qubits: Sequence[int]) -> Path:
        """The file of one calibration."""
        key = qubits_key(qubits).replace(",", "-")
        return self.directory / f"m3_{device}_{key}.npz"

    def load(self, device: str, qubits: Sequence[int]) -> ReadoutCalibration | None:
        """The stored calibration, whatever its age, or ``None``."""
        path = self.path(device, qubits)
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as data:
            files = set(data.files)
            return ReadoutCalibration(
                device=device,
                qubits=tuple(int(q) for q in data["qubits"]),
                matrices=np.array(data["matrices"]),
                created_at=float(data["created_at"]),
                shots=int(data["shots"]),
                method=str(data["method"]) if "method" in files else "independent",
                device_calibration=(
                    str(data["device_calibration"]) or None
                    if "device_calibration" in files
                    else None
                ),
                runtime_job_id=(
                    str(data["runtime_job_id"]) or None if "runtime_job_id" in files else None
                ),
            )

    def latest_m3_calibration(
        self,
        device: str,
        qubits: Sequence[int],
        max_age_s: float,
        *,
        device_calibration: str | None = None,
    ) -> ReadoutCalibration | None:
        """See :meth:`CalibrationStorage.latest_m3_calibration`."""
        cal = self.load(device, qubits)
        return cal if is_fresh(cal, max_age_s, device_calibration) else None

    def save_m3_calibration(self, calibration: ReadoutCalibration) -> None:
        """Write ``calibration`` (atomically: a temporary file renamed over the old one)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(calibration.device, calibration.qubits)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            qubits=np.array(calibration.qubits),
            matrices=calibration.matrices,
            created_at=calibration.created_at,
            shots=calibration.shots,
            method=np.array(calibration.method),
            device_calibration=np.array(calibration.device_calibration or ""),  # "": unknown
            runtime_job_id=np.array(calibration.runtime_job_id or ""),
        )
        tmp.replace(path)


class CalibrationCache:
    """M3 calibrations reused until they are too old, measured when needed.

    Args:
        storage: where calibrations are kept: a :class:`CalibrationStorage` (the job store),
            or a directory for :class:`FileCalibrations`.
        shots: shots per calibration circuit.

    Attributes:
        calibrations_run: how many calibrations this cache measured.
    """

    def __init__(self, storage: CalibrationStorage | str | Path, *, shots: int = 4000) -> None:
        self.storage: CalibrationStorage = (
            FileCalibrations(storage) if isinstance(storage, (str, Path)) else storage
        )
        self.shots = int(shots)
        self.calibrations_run = 0

    def get_or_calibrate(
        self,
        backend: Any,
        qubits: Sequence[int],
        max_age_s: float = DEFAULT_MAX_AGE_S,
        *,
        mode: Any = None,
        device_calibration: str | None = None,
    ) -> ReadoutCalibration:
        """A calibration of ``qubits`` no older than ``max_age_s``, measuring one if needed.

        Args:
            backend: the device (``BackendV2``).
            qubits: physical qubits.
            max_age_s: accept a stored calibration at most this old (``0``: always measure).
            mode: a runtime ``Batch``/``Session`` to calibrate in (hardware), or ``None``.
            device_calibration: the device's current calibration date; a stored calibration
                measured under another one is not reused.

        Raises:
            MitigationError: mthree failed to calibrate.
        """
        device = str(backend.name)
        qs = tuple(sorted(int(q) for q in qubits))
        cal = self.lookup(device, qs, max_age_s, device_calibration=device_calibration)
        if cal is not None:
            return cal
        # no lock across the measurement: on hardware it waits in the queue
        cal = self._calibrate(backend, qs, mode, device_calibration)
        self.save(cal)
        return cal

    def lookup(
        self,
        device: str,
        qubits: Sequence[int],
        max_age_s: float,
        *,
        device_calibration: str | None = None,
    ) -> ReadoutCalibration | None:
        """The stored calibration that may be reused (:func:`is_fresh`), or ``None``."""
        qs = tuple(sorted(int(q) for q in qubits))
        return self.storage.latest_m3_calibration(
            device, qs, max_age_s, device_calibration=device_calibration
        )

    def save(self, calibration: ReadoutCalibration) -> None:
        """Keep a calibration this cache measured (counted in :attr:`calibrations_run`)."""
        self.storage.save_m3_calibration(calibration)
        self.calibrations_run += 1

    def _calibrate(
        self,
        backend: Any,
        qubits: tuple[int, ...],
        mode: Any,
        device_calibration: str | None,
    ) -> ReadoutCalibration:
        import mthree

        mit = mthree.M3Mitigation(backend)
        try:
            mit.cals_from_system(list(qubits), shots=self.shots, async_cal=False, runtime_mode=mode)
        except Exception as exc:  # mthree raises M3Error and backend errors
            raise MitigationError(f"M3 calibration on {backend.name} failed: {exc}") from exc
        matrices = np.array([mit.single_qubit_cals[q] for q in qubits], dtype=np.float64)
        return ReadoutCalibration(
            device=str(backend.name),
            qubits=qubits,
            matrices=matrices,
            created_at=time.time(),
            shots=self.shots,
            method=str(mit.cal_method),
            device_calibration=device_calibration,
        )


@dataclass(frozen=True)
class CalibrationCircuits:
    """mthree's balanced readout calibration of some qubits, as circuits for a step's own job.

    Built by :meth:`build`; the circuits run as extra ``SamplerV2`` PUBs (``(circuit, None,
    shots)``) next to the step's own, and :meth:`calibration` turns their counts into the
    assignment matrices exactly as mthree's ``cals_from_system(method="balanced")`` does: the
    probability that qubit ``k`` reads what was prepared, over the circuits that prepared
    ``0`` (column 0) and over those that prepared ``1`` (column 1).

    Attributes:
        device: the backend's name.
        qubits: physical qubits, sorted, ``(n,)``; classical bit ``k`` measures ``qubits[k]``.
        circuits: ``C`` ISA circuits over the whole device (``x`` and ``measure`` only).
        prepared: ``(C, n)`` the bit each circuit prepares on each qubit.
        shots: shots per circuit (``ceil(2 * calibration_shots / C)``, as mthree).
        calibration_shots: the calibration's nominal shots (``m3_shots``).
    """

    device: str
    qubits: tuple[int, ...]
    circuits: tuple[Any, ...]
    prepared: np.ndarray
    shots: int
    calibration_shots: int

    @classmethod
    def build(cls, backend: Any, qubits: Sequence[int], *, shots: int) -> CalibrationCircuits:
        """The balanced calibration circuits of ``qubits`` on ``backend``.

        Args:
            backend: the device (``BackendV2``; its ``num_qubits`` and ``name``).
            qubits: physical qubits to calibrate.
            shots: the calibration's nominal shots (mthree's ``shots``).

        Raises:
            MitigationError: no qubits, or ``shots`` below 1.
        """
        from mthree.generators import HadamardGenerator
        from qiskit import QuantumCircuit

        qs = tuple(sorted(int(q) for q in qubits))
        if not qs:
            raise MitigationError("a readout calibration needs at least one qubit")
        if shots < 1:
            raise MitigationError(f"calibration shots must be positive, got {shots}")
        # mthree's bit arrays are written most significant first: bit k is array[-1 - k]
        prepared = np.array([np.asarray(b)[::-1] for b in HadamardGenerator(len(qs))], dtype=int)
        circuits = []
        for row in prepared:
            qc = QuantumCircuit(int(backend.num_qubits), len(qs))
            for k, bit in enumerate(row):
                if bit:
                    qc.x(qs[k])
            qc.measure(list(qs), list(range(len(qs))))
            circuits.append(qc)
        per_circuit = math.ceil(2 * shots / len(circuits))
        return cls(str(backend.name), qs, tuple(circuits), prepared, per_circuit, int(shots))

    def pubs(self) -> list[tuple[Any, None, int]]:
        """The ``SamplerV2`` PUBs ``(circuit, None, shots)``."""
        return [(qc, None, self.shots) for qc in self.circuits]

    def calibration(
        self,
        counts: Sequence[dict[str, int]],
        *,
        device_calibration: str | None = None,
        runtime_job_id: str | None = None,
    ) -> ReadoutCalibration:
        """The calibration computed from the circuits' counts.

        Args:
            counts: one counts dict per circuit, in :attr:`circuits` order (bitstring
                character ``-1 - k`` is classical bit ``k``).
            device_calibration: the device's calibration date it was measured under.
            runtime_job_id: the job the counts came from.

        Raises:
            MitigationError: the number of counts does not match, or a qubit reads the wrong
                value more often than the right one (mthree's "faulty qubit").
        """
        if len(counts) != len(self.circuits):
            raise MitigationError(
                f"expected counts of {len(self.circuits)} calibration circuits, got {len(counts)}"
            )
        n = len(self.qubits)
        right = np.zeros((len(counts), n))  # shots in which qubit k read what was prepared
        totals = np.zeros(len(counts))
        for c, cts in enumerate(counts):
            for key, value in cts.items():
                bits = np.array([ch == "1" for ch in key[::-1][:n]], dtype=int)
                right[c] += value * (bits == self.prepared[c])
                totals[c] += value
        matrices = np.zeros((n, 2, 2))
        for j in (0, 1):
            rows = self.prepared == j  # (C, n)
            shots_j = (rows * totals[:, None]).sum(axis=0)
            matrices[:, j, j] = (rows * right).sum(axis=0) / shots_j
            matrices[:, 1 - j, j] = 1.0 - matrices[:, j, j]
        faulty = [q for q, m in zip(self.qubits, matrices, strict=True) if m[0, 1] >= m[0, 0]]
        if faulty:
            raise MitigationError(f"readout of qubits {faulty} is wrong more often than right")
        return ReadoutCalibration(
            device=self.device,
            qubits=self.qubits,
            matrices=matrices,
            created_at=time.time(),
            shots=self.calibration_shots,
            method="balanced",
            device_calibration=device_calibration,
            runtime_job_id=runtime_job_id,
        )
