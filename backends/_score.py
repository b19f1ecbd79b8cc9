"""The score-function (likelihood-ratio) gradient estimator of sampled trajectories.

Used by :mod:`qldm.backends.trajectory`, where the amplitude-damping draw probabilities
depend on the state, so the pathwise gradient of a drawn trajectory alone is biased.
"""

from __future__ import annotations

import torch

__all__ = ["with_score"]


def with_score(values: torch.Tensor, log_prob: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """The score-function (likelihood-ratio) estimator: values unchanged, gradients unbiased.

    Returns ``f' = f + (f - b).detach() * (log p - (log p).detach())``: equal to ``f`` in value,
    with gradient ``grad f + (f - b) grad log p``. For a cotangent ``c`` that does not depend
    on the draws, ``E[grad (c . f')] = grad (c . E[f])``, the gradient of the density-matrix
    expectation (the pathwise part alone, ``grad f``, leaves out ``E[f grad log p]``, which is
    not zero when the draw probabilities depend on the state, as amplitude damping's do).

    The baseline ``b`` of row ``r`` and output ``o`` is the leave-one-out mean of ``f[:, o]``
    over the other rows of the same group (the same noise level): independent of row ``r``'s
    draws and detached, so ``E[b grad log p] = b E[grad log p] = 0`` and the estimator stays
    unbiased; a row alone in its group gets ``b = 0``.

    Args:
        values: ``(R, O)`` trajectory expectation values (with their pathwise graph).
        log_prob: ``(R,)`` log-probability of each row's draws (:func:`simulate`).
        groups: ``(R,)`` int64 group of each row (its noise level).

    Returns:
        ``(R, O)``, ``values`` itself when ``log_prob`` carries no gradient.
    """
    if not log_prob.requires_grad:
        return values
    f = values.detach()
    _, inverse, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    sums = f.new_zeros(counts.shape[0], f.shape[1]).index_add(0, inverse, f)
    others = (counts[inverse] - 1).to(f.dtype)[:, None]
    baseline = torch.where(others > 0, (sums[inverse] - f) / others.clamp_min(1), 0.0)
    score = log_prob - log_prob.detach()
    return values + (f - baseline) * score[:, None]
