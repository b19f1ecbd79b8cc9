"""Shot-frugal gradients: shift only a random subset of the parameters, unbiasedly.

The full parameter-shift plan (:mod:`qldm.backends._shift`) evaluates every shift term of every
input and weight for every sample: ``S = B (1 + T)`` rows. With a budget of ``m`` of the ``C``
columns (inputs and weights) per sample, each sample's rows keep the forward value and the
shift terms of ``m`` columns drawn uniformly without replacement; the kept terms are weighted
by ``C / m`` and the others by 0 before the usual combination. For every column ``j``,
``P(j kept) = m / C``, so the estimate of ``df/d theta_j`` is unbiased (Horvitz-Thompson):
``E[1{j kept} (C/m) g_j] = g_j``.

Antithetic pairs: samples ``(0, 1), (2, 3), ...`` share one random permutation of the columns;
the first takes its first ``m`` entries, the second the next ``m`` (the last ``m`` when
``2m > C``). Each subset is still marginally uniform (unbiased), but the pair's subsets do not
overlap, so the batch-summed gradient, what training uses, covers twice as many parameters.

Cost: ``B (1 + m T / C)`` rows instead of ``B (1 + T)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qldm.backends._shift import ShiftPlan
from qldm.errors import InvalidSpecError


@dataclass(frozen=True)
class SubsetSelection:
    """Which rows of a full shift plan to run, and how to weight them.

    Attributes:
        columns: ``(B, C)`` bool, the columns differentiated for each sample.
        rows: ``(S_kept,)`` indices into the plan's ``S = B (1 + T)`` rows (sorted).
        weights: ``(S,)`` factor per full row: 1 for forward rows, ``C / m`` for kept shift
            rows, 0 for dropped ones.
    """

    columns: np.ndarray
    rows: np.ndarray
    weights: np.ndarray

    def expand(self, kept: np.ndarray, n_rows: int) -> np.ndarray:
        """Values of the kept rows ``(..., S_kept, O)`` back to full, weighted ``(..., S, O)``."""
        shape = (*kept.shape[:-2], n_rows, kept.shape[-1])
        full = np.zeros(shape)
        full[..., self.rows, :] = kept
        return full * self.weights[:, None]


def choose_subsets(plan: ShiftPlan, budget: int, rng: np.random.Generator) -> SubsetSelection:
    """Draw the antithetic column subsets of a parametric (non-amplitude) Jacobian plan.

    Args:
        plan: a plan made with ``jacobian=True``.
        budget: ``m``, columns differentiated per sample (``1 <= m``; ``m >= C`` keeps all).
        rng: the generator.

    Raises:
        InvalidSpecError: ``budget`` below 1 (field ``gradient_budget``), or an
            ``amplitude``-encoded plan.
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise InvalidSpecError("must be a positive integer", field="gradient_budget")
    if plan.spec.encoding == "amplitude" or not plan.jacobian:
        raise InvalidSpecError(
            "subset gradients need a Jacobian of an angle-encoded spec", field="gradient_budget"
        )
    b = plan.n_samples
    term_cols = np.argmax(plan.terms != 0.0, axis=1)  # (T,) the column each term shifts
    n_cols = plan.terms.shape[1]
    m = min(budget, n_cols)
    columns = np.zeros((b, n_cols), dtype=bool)
    for first in range(0, b, 2):
        perm = rng.permutation(n_cols)
        columns[first, perm[:m]] = True
        if first + 1 < b:
            second = perm[m : 2 * m] if 2 * m <= n_cols else perm[-m:]
            columns[first + 1, second] = True
    n_terms = term_cols.size
    per_sample = 1 + n_terms
    weights = np.zeros(b * per_sample)
    for s in range(b):
        weights[s * per_sample] = 1.0
        kept = columns[s, term_cols]
        weights[s * per_sample + 1 : (s + 1) * per_sample] = np.where(kept, n_cols / m, 0.0)
    rows = np.flatnonzero(weights != 0.0)
    return SubsetSelection(columns, rows, weights)
