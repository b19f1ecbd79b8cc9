"""Expectation values of diagonal observables from measured counts, raw and M3-corrected.

Re-exported by :mod:`qldm.mitigation.m3`. ``<P> = sum_b q(b) (-1)^{popcount(b & mask(P))}``
where ``q`` is the counts' frequencies (raw) or M3's quasi-probabilities (mitigated). Standard
errors: raw, ``sqrt((1 - <P>^2) / shots)`` (the binomial standard error of a mean of ``±1``
outcomes); mitigated, mthree's ``QuasiDistribution.stddev()``, ``sqrt(overhead / shots)`` with
the mitigation overhead ``gamma^2`` of the inverted assignment matrix (an upper bound for any
observable of norm 1; mthree's documentation of ``stddev``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from qldm.errors import MitigationError


class ReadoutCorrection(Protocol):
    """What the correction needs of a calibration
    (:class:`qldm.mitigation.m3.ReadoutCalibration`)."""

    def mitigator(self, backend: Any) -> Any:
        """An ``mthree.M3Mitigation`` loaded with the calibration."""
        ...


__all__ = ["ZEstimates", "raw_expectations", "z_estimates", "z_expectations"]


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


@dataclass(frozen=True)
class ZEstimates:
    """Z-type expectation values of ``N`` counts and their standard errors, ``(N, O)`` each.

    Attributes:
        mitigated: M3-corrected values (equal to ``raw`` without a calibration).
        raw: values straight from the counts.
        mitigated_std: mthree's standard deviation ``sqrt(overhead / shots)`` (``raw_std``
            without a calibration).
        raw_std: ``sqrt((1 - raw^2) / shots)``.
    """

    mitigated: np.ndarray
    raw: np.ndarray
    mitigated_std: np.ndarray
    raw_std: np.ndarray


def z_estimates(
    counts: Sequence[dict[str, int]],
    labels: Sequence[str],
    *,
    calibration: ReadoutCorrection | None,
    backend: Any,
    qubits: Sequence[int],
) -> ZEstimates:
    """M3-mitigated and raw expectation values of diagonal observables, with standard errors.

    Args:
        counts: ``N`` counts dicts over the measured qubits (bitstring character ``-1 - i`` is
            classical bit ``i``, which measured ``qubits[i]``).
        labels: ``O`` Pauli strings of ``I``/``Z`` in the same order as the bitstrings.
        calibration: the readout calibration of ``qubits`` (``None``: no correction, the
            mitigated values equal the raw ones).
        backend: the device (mthree needs it).
        qubits: physical qubit of each classical bit.

    Returns:
        :class:`ZEstimates`, every array ``(N, O)``.

    Raises:
        MitigationError: a label is not diagonal, or mthree failed.
    """
    for label in labels:
        if set(label) - {"I", "Z"}:
            raise MitigationError(f"M3 expectation values need I/Z observables, got {label!r}")
    raw = np.array([raw_expectations(c, labels) for c in counts])
    shots = np.array([float(sum(c.values())) for c in counts])[:, None]
    raw_std = np.sqrt(np.clip(1.0 - raw**2, 0.0, None) / shots)
    if calibration is None:
        return ZEstimates(raw.copy(), raw, raw_std.copy(), raw_std)
    mit = calibration.mitigator(backend)
    try:
        quasis = mit.apply_correction(list(counts), list(qubits), return_mitigation_overhead=True)
        ops = ["".join("Z" if c == "Z" else "I" for c in label) for label in labels]
        mitigated = np.array([[float(q.expval(op)) for op in ops] for q in quasis])
        spread = np.array([float(q.stddev()) for q in quasis])
    except Exception as exc:
        raise MitigationError(f"M3 correction failed: {exc}") from exc
    mitigated_std = np.repeat(spread[:, None], len(labels), axis=1)
    return ZEstimates(mitigated, raw, mitigated_std, raw_std)


def z_expectations(
    counts: Sequence[dict[str, int]],
    labels: Sequence[str],
    *,
    calibration: ReadoutCorrection | None,
    backend: Any,
    qubits: Sequence[int],
) -> tuple[np.ndarray, np.ndarray]:
    """``(mitigated (N, O), raw (N, O))`` of :func:`z_estimates` (no standard errors).

    Raises:
        MitigationError: a label is not diagonal, or mthree failed.
    """
    est = z_estimates(counts, labels, calibration=calibration, backend=backend, qubits=qubits)
    return est.mitigated, est.raw
