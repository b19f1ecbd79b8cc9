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

Calibrating runs mthree's ``cals_from_system`` on the backend (``independent`` method on
simulators and fake devices, ``balanced`` on hardware), inside the given runtime
``Batch``/``Session`` when there is one.

:func:`z_expectations` turns measured counts into Z-type expectation values, raw and
M3-corrected side by side: ``<P> = sum_b q(b) (-1)^{popcount(b & mask(P))}`` where ``q`` is the
counts' frequencies (raw) or M3's quasi-probabilities (mitigated). Only diagonal observables
(``I``/``Z`` strings) are supported.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from qldm.errors import MitigationError

DEFAULT_MAX_AGE_S = 6 * 3600.0
"""Recalibrate after six hours (the calibration cycle of IBM devices is about a day)."""

_CALIBRATING = threading.Lock()
"""Held while this process looks up or measures a calibration (one measurement at a time)."""


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
    """

    device: str
    qubits: tuple[int, ...]
    matrices: np.ndarray
    created_at: float
    shots: int
    method: str = "independent"
    device_calibration: str | None = None

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
        with _CALIBRATING:
            cal = self.storage.latest_m3_calibration(
                device, qs, max_age_s, device_calibration=device_calibration
            )
            if cal is not None:
                return cal
            cal = self._calibrate(backend, qs, mode, device_calibration)
            self.storage.save_m3_calibration(cal)
            return cal

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
        self.calibrations_run += 1
        return ReadoutCalibration(
            device=str(backend.name),
            qubits=qubits,
            matrices=matrices,
            created_at=time.time(),
            shots=self.shots,
            method=str(mit.cal_method),
            device_calibration=device_calibration,
        )


def _parities(counts: dict[str, int], labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(2^k... keys)`` as ±1 parities ``(n_keys, O)`` and weights ``(n_keys,)``."""
    keys = list(counts)
    weights = np.array([float(counts[k]) for k in keys])
    bits = np.array([[c == "1" for c in k] for k in keys], dtype=bool)  # (n_keys, n)
    masks = np.array([[c == "Z" for c in label] for label in labels], dtype=bool)  # (O, n)
    odd = (bits[:, None, :] & masks[None, :, :]).sum(axis=2) % 2
    return 1.0 - 2.0 * odd, weights


def raw_expectations(counts: dict[str, int], labels: Sequence[str]) -> np.ndarray:
    """``(O,)`` Z-type expectations straight from counts (bit order as in the labels)."""
    signs, weights = _parities(counts, labels)
    return (weights @ signs) / weights.sum()


def z_expectations(
    counts: Sequence[dict[str, int]],
    labels: Sequence[str],
    *,
    calibration: ReadoutCalibration | None,
    backend: Any,
    qubits: Sequence[int],
) -> tuple[np.ndarray, np.ndarray]:
    """M3-mitigated and raw expectation values of diagonal observables (in that order).

    Args:
        counts: ``N`` counts dicts over the measured qubits (bitstring character ``-1 - i`` is
            classical bit ``i``, which measured ``qubits[i]``).
        labels: ``O`` Pauli strings of ``I``/``Z`` in the same order as the bitstrings.
        calibration: the readout calibration of ``qubits`` (``None``: no correction, the
            mitigated values equal the raw ones).
        backend: the device (mthree needs it).
        qubits: physical qubit of each classical bit.

    Returns:
        ``(mitigated (N, O), raw (N, O))``.

    Raises:
        MitigationError: a label is not diagonal, or mthree failed.
    """
    for label in labels:
        if set(label) - {"I", "Z"}:
            raise MitigationError(f"M3 expectation values need I/Z observables, got {label!r}")
    raw = np.array([raw_expectations(c, labels) for c in counts])
    if calibration is None:
        return raw.copy(), raw
    mit = calibration.mitigator(backend)
    try:
        quasis = mit.apply_correction(list(counts), list(qubits))
    except Exception as exc:
        raise MitigationError(f"M3 correction failed: {exc}") from exc
    ops = ["".join("Z" if c == "Z" else "I" for c in label) for label in labels]
    mitigated = np.array([[float(q.expval(op)) for op in ops] for q in quasis], dtype=np.float64)
    return mitigated, raw
