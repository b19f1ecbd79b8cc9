"""Shot statistics drawn from exact simulation: the one place every simulator samples them.

- :func:`pauli_shot_means`: the estimate of a Pauli expectation value from ``N`` shots. Each shot
  of a Pauli string ``P`` gives ``+1`` with probability ``(1 + <P>) / 2`` (Born rule), so the
  mean of ``N`` shots is exactly ``2 k / N - 1`` with ``k ~ Binomial(N, (1 + <P>) / 2)``:
  unbiased, with variance ``(1 - <P>^2) / N``. Every entry gets its own ``N`` shots.
- :func:`draw_counts`: ``N`` measurements of every qubit, ``Multinomial(N, p)`` over the
  ``2^n`` outcomes of a circuit's exact distribution ``p``.

Both draw from a caller's ``numpy.random.Generator`` (seeded from the workload), so a seed
reproduces the same shots.
"""

from __future__ import annotations

import numpy as np

__all__ = ["draw_counts", "pauli_shot_means"]


def pauli_shot_means(values: np.ndarray, shots: int, rng: np.random.Generator) -> np.ndarray:
    """The mean of ``shots`` ±1 outcomes of Pauli strings with exact expectations ``values``.

    Args:
        values: exact expectation values in ``[-1, 1]``, any shape.
        shots: ``N >= 1``.
        rng: the generator (one ``binomial`` draw of ``values.shape``).

    Returns:
        ``2 k / N - 1`` with ``k ~ Binomial(N, (1 + values) / 2)``, the shape of ``values``.
    """
    p_plus = np.clip((1.0 + np.asarray(values, dtype=np.float64)) / 2.0, 0.0, 1.0)
    return 2.0 * rng.binomial(shots, p_plus) / shots - 1.0


def draw_counts(
    probabilities: np.ndarray, shots: int, n_qubits: int, rng: np.random.Generator
) -> dict[str, int]:
    """``shots`` measurements of every qubit from outcome probabilities ``(2^n,)``.

    Returns:
        Bitstring (Qiskit's order, qubit 0 rightmost) to count, outcomes never drawn left out;
        the counts sum to ``shots``.
    """
    p = np.clip(probabilities, 0.0, None)
    p = p / p.sum()
    counts = rng.multinomial(shots, p)
    return {format(int(i), f"0{n_qubits}b"): int(counts[i]) for i in np.flatnonzero(counts)}
