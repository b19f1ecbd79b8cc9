"""Quantum natural gradient descent (QNGD) as a torch optimizer.

One step moves the parameters against the gradient preconditioned by the Fubini-Study metric
of the circuit's state (Stokes et al. 2020)::

    θ ← θ - η (g(θ) + λ I)^{-1} ∇L(θ)

``g`` is ``(P, P)`` for the ``P`` parameters of the optimizer's (single) parameter group,
flattened in the order the parameters were given. It comes from a callable evaluated at the
current parameters (for a :class:`qldm.client.QuantumLayer`: :func:`layer_metric`, the batch
mean of ``layer.metric_tensor(x)``). The damping ``λ`` keeps the solve well posed where the
metric is singular (a gate whose generator leaves the state invariant). With ``blocks``, the
metric is cut to its block diagonal (entries across blocks set to zero) before the solve: the
cheap approximation measured on devices, also available for a full metric computed exactly.

Convention: the metric of :meth:`QuantumLayer.metric_tensor` is PennyLane's quarter
convention (``RY(a)|0>`` has ``g = 1/4``); papers that write ``G = 4 g`` need a learning rate
four times smaller for the same step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from qldm.hybrid.config import ConfigError

if TYPE_CHECKING:
    from qldm.client import QuantumLayer

__all__ = ["QNGD", "block_mask", "layer_metric", "natural_direction"]

MetricFn = Callable[[], torch.Tensor]


def block_mask(blocks: Sequence[int], *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(P, P)`` mask with ones on the diagonal blocks of the given sizes, ``P = sum(blocks)``.

    Raises:
        ConfigError: an empty list or a block size below 1 (field ``blocks``).
    """
    if not blocks or any(int(b) < 1 for b in blocks):
        raise ConfigError(f"blocks: need positive block sizes, got {list(blocks)!r}")
    n = int(sum(blocks))
    mask = torch.zeros(n, n, dtype=dtype)
    start = 0
    for b in blocks:
        mask[start : start + b, start : start + b] = 1.0
        start += b
    return mask


def natural_direction(
    metric: torch.Tensor,
    grad: torch.Tensor,
    *,
    damping: float,
    blocks: Sequence[int] | None = None,
) -> torch.Tensor:
    """``(g + λI)^{-1} ∇``, optionally with ``g`` cut to its block diagonal.

    Args:
        metric: ``(P, P)`` symmetric positive semi-definite.
        grad: ``(P,)``.
        damping: ``λ >= 0``.
        blocks: block sizes summing to ``P``, or ``None`` for the full metric.

    Returns:
        ``(P,)`` in ``grad``'s dtype.

    Raises:
        ConfigError: shapes that do not match (field ``metric``) or blocks that do not sum to
            ``P`` (field ``blocks``).
    """
    p = grad.numel()
    if metric.shape != (p, p):
        raise ConfigError(f"metric: expected shape ({p}, {p}), got {tuple(metric.shape)}")
    g = metric.detach().to(torch.float64)
    g = 0.5 * (g + g.T)
    if blocks is not None:
        if int(sum(blocks)) != p:
            raise ConfigError(f"blocks: sizes {list(blocks)!r} do not sum to P = {p}")
        g = g * block_mask(blocks)
    a = g + damping * torch.eye(p, dtype=torch.float64)
    d = torch.linalg.solve(a, grad.detach().to(torch.float64).reshape(p, 1)).reshape(p)
    return d.to(grad.dtype)


def layer_metric(
    layer: QuantumLayer,
    inputs: torch.Tensor | Callable[[], torch.Tensor],
    *,
    t: torch.Tensor | Callable[[], torch.Tensor | None] | None = None,
    block_diagonal: bool = False,
) -> MetricFn:
    """A metric callable for :class:`QNGD`: the batch mean of ``layer.metric_tensor``.

    Args:
        layer: the quantum layer whose ``weight`` the optimizer updates.
        inputs: ``(B, I)`` the states the metric is averaged over, or a callable returning
            the current batch's inputs (evaluated at every step).
        t: timestep features for specs with a timestep embedding (tensor or callable).
        block_diagonal: ask the backend for the block-diagonal approximation (the only one
            measured devices give).

    Returns:
        A callable returning ``(P, P)`` float64.
    """

    def metric() -> torch.Tensor:
        x = inputs() if callable(inputs) else inputs
        tt = t() if callable(t) else t
        kwargs: dict[str, Any] = {"block_diagonal": block_diagonal}
        if tt is not None:
            kwargs["t"] = tt
        g = layer.metric_tensor(x.detach(), **kwargs)
        return g.to(torch.float64).mean(dim=0)

    return metric


class QNGD(torch.optim.Optimizer):
    """Quantum natural gradient descent on one group of circuit parameters.

    Args:
        params: the parameters the metric is taken of (e.g. ``[layer.weight]``); one group.
        metric: callable returning the ``(P, P)`` metric at the current parameters.
        lr: step size ``η > 0``.
        damping: Tikhonov damping ``λ >= 0`` added to the metric's diagonal.
        blocks: block sizes for the block-diagonal approximation (``None``: full metric).

    Raises:
        ConfigError: a bad ``lr``, ``damping`` or ``blocks``, or more than one group.

    Example:
        >>> opt = QNGD([layer.weight], metric=layer_metric(layer, x), lr=0.05)  # doctest: +SKIP
        >>> loss = f(layer(x)); opt.zero_grad(); loss.backward(); opt.step()  # doctest: +SKIP
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        *,
        metric: MetricFn,
        lr: float = 0.05,
        damping: float = 1e-3,
        blocks: Sequence[int] | None = None,
    ) -> None:
        if not lr > 0:
            raise ConfigError(f"lr: must be > 0, got {lr}")
        if not damping >= 0:
            raise ConfigError(f"damping: must be >= 0, got {damping}")
        if blocks is not None:
            block_mask(blocks)  # validates
        super().__init__(params, {"lr": lr, "damping": damping})
        if len(self.param_groups) != 1:
            raise ConfigError("params: QNGD takes one parameter group (the metric's parameters)")
        n = sum(p.numel() for p in self.param_groups[0]["params"])
        if blocks is not None and int(sum(blocks)) != n:
            raise ConfigError(f"blocks: sizes {list(blocks)!r} do not sum to P = {n}")
        self.metric = metric
        self.blocks = None if blocks is None else [int(b) for b in blocks]
        self.last_metric: torch.Tensor | None = None

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One natural-gradient step; parameters without a gradient count as zero gradient.

        Args:
            closure: re-evaluates the loss (optional, as for every torch optimizer).

        Returns:
            The closure's loss, or ``None``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        params: list[torch.Tensor] = group["params"]
        grads = [
            torch.zeros_like(p).reshape(-1) if p.grad is None else p.grad.reshape(-1)
            for p in params
        ]
        flat = torch.cat(grads)
        g = self.metric()
        self.last_metric = g.detach()
        d = natural_direction(g, flat, damping=group["damping"], blocks=self.blocks)
        start = 0
        for p in params:
            n = p.numel()
            p.add_(d[start : start + n].reshape(p.shape).to(p.dtype), alpha=-group["lr"])
            start += n
        return loss
