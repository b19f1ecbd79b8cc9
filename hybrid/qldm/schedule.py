"""Noise schedules of the (Gaussian) latent diffusion process, registered by name.

Timesteps are 0-based: ``t = 0 .. T-1`` stands for the paper's ``1 .. T``. With
``alpha_t = 1 - beta_t`` and ``alpha_bar_t = prod_{s <= t} alpha_s``, the forward marginal is

    q(z_t | z_0) = N(sqrt(alpha_bar_t) z_0, (1 - alpha_bar_t) I)

and :meth:`NoiseSchedule.add_noise` draws from it given the noise.

Registered schedules:

- ``linear`` (Ho et al. 2020): ``beta`` linear from ``1e-4 * 1000/T`` to ``0.02 * 1000/T``
  (the DDPM range, rescaled so that any ``T`` reaches a similar final ``alpha_bar``).
- ``cosine`` (Nichol & Dhariwal 2021): ``alpha_bar(t) = f(t) / f(0)`` with
  ``f(t) = cos(((t/T + s) / (1 + s)) * pi/2)^2``, ``s = 0.008``, and
  ``beta_t = min(1 - alpha_bar(t+1)/alpha_bar(t), 0.999)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from qldm.hybrid.config import ConfigError

BetaFn = Callable[[int], torch.Tensor]

_SCHEDULES: dict[str, BetaFn] = {}


def register_schedule(name: str) -> Callable[[BetaFn], BetaFn]:
    """Register ``fn(T) -> betas (T,) float64`` under ``name``.

    Raises:
        ConfigError: the name is taken.
    """

    def deco(fn: BetaFn) -> BetaFn:
        if name in _SCHEDULES:
            raise ConfigError(f"schedule {name!r} is already registered", field="schedule")
        _SCHEDULES[name] = fn
        return fn

    return deco


def schedule_names() -> tuple[str, ...]:
    """The registered schedule names."""
    return tuple(sorted(_SCHEDULES))


@register_schedule("linear")
def linear_betas(timesteps: int) -> torch.Tensor:
    """DDPM's linear betas, rescaled to ``T`` steps: ``(T,)`` float64."""
    scale = 1000.0 / timesteps
    return torch.linspace(1e-4 * scale, min(0.02 * scale, 0.999), timesteps, dtype=torch.float64)


COSINE_OFFSET = 0.008


def cosine_alpha_bar(t: torch.Tensor, timesteps: int) -> torch.Tensor:
    """Nichol & Dhariwal's ``alpha_bar`` at continuous times ``t`` in ``[0, T]``."""
    s = COSINE_OFFSET

    def f(u: torch.Tensor) -> torch.Tensor:
        return torch.cos((u / timesteps + s) / (1 + s) * math.pi / 2) ** 2

    return f(t) / f(torch.zeros_like(t))


@register_schedule("cosine")
def cosine_betas(timesteps: int) -> torch.Tensor:
    """Cosine betas, clipped at 0.999: ``(T,)`` float64."""
    steps = torch.arange(timesteps + 1, dtype=torch.float64)
    ab = cosine_alpha_bar(steps, timesteps)
    return (1 - ab[1:] / ab[:-1]).clamp(max=0.999)


class NoiseSchedule(nn.Module):
    """Betas and their derived products as buffers (they move with ``.to(device)``).

    Buffers (all ``(T,)``, float64 so long products stay exact):
        betas, alphas, alpha_bars, alpha_bars_prev (``alpha_bar_{t-1}``, 1 at ``t = 0``).

    Args:
        name: a registered schedule (see :func:`schedule_names`).
        timesteps: ``T >= 1``.

    Raises:
        ConfigError: unknown name or bad ``T``.
    """

    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bars: torch.Tensor
    alpha_bars_prev: torch.Tensor

    def __init__(self, name: str, timesteps: int) -> None:
        super().__init__()
        if name not in _SCHEDULES:
            raise ConfigError(
                f"unknown schedule {name!r}; registered: {', '.join(schedule_names())}",
                field="diffusion.schedule",
            )
        if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
            raise ConfigError(
                f"timesteps must be a positive integer, got {timesteps!r}",
                field="diffusion.timesteps",
            )
        self.name = name
        self.timesteps = timesteps
        betas = _SCHEDULES[name](timesteps).to(torch.float64)
        alphas = 1.0 - betas
        alpha_bars = torch.cumprod(alphas, dim=0)
        self.register_buffer("betas", betas)
        self.register_buffer("alphas", alphas)
        self.register_buffer("alpha_bars", alpha_bars)
        prev = torch.cat([alpha_bars.new_ones(1), alpha_bars[:-1]])
        self.register_buffer("alpha_bars_prev", prev)

    def _gather(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``values[t]`` shaped ``(B, 1, ..., 1)`` to broadcast against ``like``."""
        out = values.to(like.device)[t.long()].to(like.dtype)
        return out.reshape(-1, *([1] * (like.ndim - 1)))

    def add_noise(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Sample ``q(x_t | x_0)``: ``sqrt(ab_t) x0 + sqrt(1 - ab_t) noise``.

        Args:
            x0: ``(B, ...)`` clean data.
            t: ``(B,)`` integer timesteps in ``[0, T)``.
            noise: like ``x0``, standard normal.

        Returns:
            ``(B, ...)`` noised data.

        Raises:
            ConfigError: mismatched shapes or timesteps out of range.
        """
        self._check(x0, t)
        if noise.shape != x0.shape:
            raise ConfigError(
                f"noise shape {tuple(noise.shape)} != x0 shape {tuple(x0.shape)}", field="noise"
            )
        ab = self._gather(self.alpha_bars, t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def predict_x0(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Invert :meth:`add_noise` given the noise: ``(x_t - sqrt(1-ab) eps) / sqrt(ab)``."""
        ab = self._gather(self.alpha_bars, t, xt)
        return (xt - (1 - ab).sqrt() * eps) / ab.sqrt()

    def posterior(
        self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of ``q(x_{t-1} | x_t, x_0)`` (Ho et al. eq. 6-7).

        Returns:
            ``mean`` like ``xt`` and ``variance`` ``(B, 1, ...)``; the variance is 0 at ``t = 0``.
        """
        beta = self._gather(self.betas, t, xt)
        alpha = self._gather(self.alphas, t, xt)
        ab = self._gather(self.alpha_bars, t, xt)
        ab_prev = self._gather(self.alpha_bars_prev, t, xt)
        coef0 = beta * ab_prev.sqrt() / (1 - ab)
        coeft = (1 - ab_prev) * alpha.sqrt() / (1 - ab)
        var = beta * (1 - ab_prev) / (1 - ab)
        return coef0 * x0 + coeft * xt, var

    def _check(self, x: torch.Tensor, t: torch.Tensor) -> None:
        if t.ndim != 1 or t.shape[0] != x.shape[0]:
            raise ConfigError(f"t must have shape ({x.shape[0]},), got {tuple(t.shape)}", field="t")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.timesteps):
            raise ConfigError(
                f"timesteps must lie in [0, {self.timesteps}), got "
                f"[{int(t.min())}, {int(t.max())}]",
                field="t",
            )

    def extra_repr(self) -> str:
        return f"name={self.name}, timesteps={self.timesteps}"
