"""M3 readout mitigation (mthree): calibrations cached per (device, physical qubits).

A :class:`CalibrationCache` keeps one calibration per device and qubit set in an ``.npz`` file
(the single-qubit assignment matrices, when they were measured and with how many shots) in its
directory, and recalibrates when the file is older than ``max_age_s``. Calibrating runs
mthree's ``cals_from_system`` on the backend (``independent`` method on simulators and fake
devices, ``balanced`` on hardware), inside the given runtime ``Batch``/``Session`` when there is
one.

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
from typing import Any

import numpy as np

from mitigation._errors import MitigationError

DEFAULT_MAX_AGE_S = 6 * 3600.0
"""Recalibrate after six hours (the calibration cycle of IBM devices is about a day)."""


@dataclass(frozen=True)
class ReadoutCalibration:
    """Single-qubit readout assignment matrices of some qubits of one device.

    Attributes:
        device: backend name.
        qubits: physical qubits, ``(n,)``.
        matrices: ``(n, 2, 2)``; column ``j`` is the distribution measured after preparing ``j``.
        created_at: UNIX time of the calibration.
        shots: shots per calibration circuit.
    """

    device: str
    qubits: tuple[int, ...]
    matrices: np.ndarray
    created_at: float
    shots: int

    def age_s(self) -> float:
        """Seconds since the calibration."""
        return time.time() - self.created_at

    def mitigator(self, backend: Any) -> Any:
        """An ``mthree.M3Mitigation`` loaded with this calibration."""
        import mthree

        mit = mthree.M3Mitigation(backend)
        cals: list[Any] = [None] * int(backend.num_qubits)
        for q, matrix in zip(self.qubits, self.matrices, strict=True):
            cals[q] = np.asarray(matrix, dtype=np.float32)
        mit.cals_from_matrices(cals)
        return mit


class CalibrationCache:
    """M3 calibrations on disk, one ``.npz`` per (device, qubits).

    Args:
        directory: where the files live (created on first write).
        shots: shots per calibration circuit.
    """

    def __init__(self, directory: str | Path, *, shots: int = 4000) -> None:
        self.directory = Path(directory)
        self.shots = int(shots)
        self.calibrations_run = 0
        self._lock = threading.Lock()

    def path(self, device: str, qubits: Sequence[int]) -> Path:
        """The file of one calibration."""
        key = "-".join(str(int(q)) for q in sorted(qubits))
        return self.directory / f"m3_{device}_{key}.npz"

    def load(self, device: str, qubits: Sequence[int]) -> ReadoutCalibration | None:
        """The stored calibration, or ``None``."""
        path = self.path(device, qubits)
        if not path.exists():
            return None
        with np.load(path) as data:
            return ReadoutCalibration(
                device=device,
                qubits=tuple(int(q) for q in data["qubits"]),
                matrices=np.array(data["matrices"]),
                created_at=float(data["created_at"]),
                shots=int(data["shots"]),
            )

    def get_or_calibrate(
        self,
        backend: Any,
        qubits: Sequence[int],
        max_age_s: float = DEFAULT_MAX_AGE_S,
        *,
        mode: Any = None,
    ) -> ReadoutCalibration:
        """A calibration of ``qubits`` no older than ``max_age_s``, measuring one if needed.

        Args:
            backend: the device (``BackendV2``).
            qubits: physical qubits.
            max_age_s: accept a stored calibration at most this old.
            mode: a runtime ``Batch``/``Session`` to calibrate in (hardware), or ``None``.

        Raises:
            MitigationError: mthree failed to calibrate.
        """
        device = str(backend.name)
        qs = tuple(sorted(int(q) for q in qubits))
        with self._lock:
            cal = self.load(device, qs)
            if cal is not None and cal.age_s() <= max_age_s:
                return cal
            cal = self._calibrate(backend, qs, mode)
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.path(device, qs).with_suffix(".tmp.npz")
            np.savez(
                tmp,
                qubits=np.array(qs),
                matrices=cal.matrices,
                created_at=cal.created_at,
                shots=cal.shots,
            )
            tmp.replace(self.path(device, qs))
            return cal

    def _calibrate(self, backend: Any, qubits: tuple[int, ...], mode: Any) -> ReadoutCalibration:
        import mthree

        mit = mthree.M3Mitigation(backend)
        try:
            mit.cals_from_system(list(qubits), shots=self.shots, async_cal=False, runtime_mode=mode)
        except Exception as exc:  # mthree raises M3Error and backend errors
            raise MitigationError(f"M3 calibration on {backend.name} failed: {exc}") from exc
        matrices = np.array([mit.single_qubit_cals[q] for q in qubits], dtype=np.float64)
        self.calibrations_run += 1
        return ReadoutCalibration(str(backend.name), qubits, matrices, time.time(), self.shots)


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
    """Raw and M3-mitigated expectation values of diagonal observables.

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
