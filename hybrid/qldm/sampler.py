"""Reverse-process samplers: ancestral DDPM and few-step DDIM.

A sampler holds a :class:`qldm.hybrid.qldm.schedule.NoiseSchedule`; the noise-prediction network
``eps_theta(x_t, t)`` is passed to :meth:`sample`, so schedule, network and sampler stay
separate objects. All randomness comes from the ``generator`` argument: the same seed gives
the same samples.

- DDPM (Ho et al. 2020): ``x_{t-1} ~ q(x_{t-1} | x_t, x0_hat)`` with
  ``x0_hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)``, ``T`` steps, fresh noise each step.
- DDIM (Song et al. 2021) on ``S`` evenly spaced timesteps ``tau``:
  ``x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma^2) eps + sigma z`` with
  ``sigma = eta sqrt((1 - ab_prev)/(1 - ab_t)) sqrt(1 - ab_t/ab_prev)``; ``eta = 0`` is
  deterministic given ``x_T``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from qldm.hybrid.config import ConfigError
from qldm.hybrid.qldm.schedule import NoiseSchedule

EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``eps_theta(x_t (B, ...), t (B,) long) -> (B, ...)``."""


class DDPMSampler:
    """Ancestral sampling through all ``T`` steps.

    Args:
        schedule: the noise schedule the network was trained with.
        clip: clamp ``x0_hat`` to ``[-clip, clip]`` (``None``: no clamp).
    """

    def __init__(self, schedule: NoiseSchedule, *, clip: float | None = None) -> None:
        self.schedule = schedule
        self.clip = clip

    @torch.no_grad()
    def sample(
        self,
        model: EpsModel,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        x_t: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Draw ``shape`` samples.

        Args:
            model: the noise-prediction network.
            shape: ``(B, ...)``.
            generator: a CPU generator for every draw (start noise and step noise).
            x_t: start from this ``x_T`` instead of drawing it.

        Returns:
            ``(B, ...)`` float32 samples ``x_0``.
        """
        s = self.schedule
        x = _start(shape, generator, x_t)
        for step in reversed(range(s.timesteps)):
            t = torch.full((shape[0],), step, dtype=torch.long)
            eps = model(x, t)
            x0 = _clip(s.predict_x0(x, t, eps), self.clip)
            mean, var = s.posterior(x0, x, t)
            noise = torch.randn(x.shape, generator=generator) if step > 0 else None
            x = mean if noise is None else mean + var.sqrt() * noise
        return x


class DDIMSampler:
    """Deterministic (``eta = 0``) or stochastic few-step sampling.

    Args:
        schedule: the noise schedule the network was trained with.
        steps: ``S``, 1 to ``T``.
        eta: 0 for deterministic DDIM, 1 for DDPM-like noise.
        clip: clamp ``x0_hat`` to ``[-clip, clip]`` (``None``: no clamp).

    Raises:
        ConfigError: ``steps`` outside ``[1, T]`` or ``eta < 0``.
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        *,
        steps: int = 50,
        eta: float = 0.0,
        clip: float | None = None,
    ) -> None:
        if not 1 <= steps <= schedule.timesteps:
            raise ConfigError(
                f"steps must lie in [1, {schedule.timesteps}], got {steps}",
                field="diffusion.ddim_steps",
            )
        if eta < 0:
            raise ConfigError(f"eta must be >= 0, got {eta}", field="diffusion.eta")
        self.schedule = schedule
        self.steps = steps
        self.eta = eta
        self.clip = clip

    def timesteps(self) -> list[int]:
        """The visited timesteps, descending (always includes ``T-1`` and ``0``)."""
        t_max = self.schedule.timesteps - 1
        if self.steps == 1:
            return [t_max]
        grid = torch.linspace(0, t_max, self.steps, dtype=torch.float64).round().long()
        return sorted({int(v) for v in grid}, reverse=True)

    @torch.no_grad()
    def sample(
        self,
        model: EpsModel,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        x_t: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Draw ``shape`` samples (see :meth:`DDPMSampler.sample`)."""
        s = self.schedule
        x = _start(shape, generator, x_t)
        taus = self.timesteps()
        for i, step in enumerate(taus):
            t = torch.full((shape[0],), step, dtype=torch.long)
            eps = model(x, t)
            x0 = _clip(s.predict_x0(x, t, eps), self.clip)
            if self.clip is not None:  # keep eps consistent with the clipped x0
                ab_t = float(s.alpha_bars[step])
                eps = (x - ab_t**0.5 * x0) / (1 - ab_t) ** 0.5
            ab = float(s.alpha_bars[step])
            ab_prev = float(s.alpha_bars[taus[i + 1]]) if i + 1 < len(taus) else 1.0
            sigma = self.eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)) ** 0.5
            direction = max(1 - ab_prev - sigma**2, 0.0) ** 0.5
            x = ab_prev**0.5 * x0 + direction * eps
            if sigma > 0:
                x = x + sigma * torch.randn(x.shape, generator=generator)
        return x


def make_sampler(
    kind: str, schedule: NoiseSchedule, *, ddim_steps: int = 50, eta: float = 0.0
) -> DDPMSampler | DDIMSampler:
    """``ddpm`` or ``ddim`` by name.

    Raises:
        ConfigError: an unknown sampler name.
    """
    if kind == "ddpm":
        return DDPMSampler(schedule)
    if kind == "ddim":
        return DDIMSampler(schedule, steps=ddim_steps, eta=eta)
    raise ConfigError(f"unknown sampler {kind!r}; use 'ddpm' or 'ddim'", field="diffusion.sampler")


def _start(
    shape: tuple[int, ...], generator: torch.Generator | None, x_t: torch.Tensor | None
) -> torch.Tensor:
    if x_t is not None:
        if tuple(x_t.shape) != tuple(shape):
            raise ConfigError(
                f"x_t has shape {tuple(x_t.shape)}, expected {tuple(shape)}", field="x_t"
            )
        return x_t.float().clone()
    return torch.randn(shape, generator=generator)


def _clip(x: torch.Tensor, clip: float | None) -> torch.Tensor:
    return x if clip is None else x.clamp(-clip, clip)
