"""The classical denoising (noise-prediction) network on the latent: ``eps_theta(z_t, t)``."""

from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalEmbedding(nn.Module):
    """Transformer-style timestep embedding.

    ``emb[b, i] = sin(t_b * w_i)`` for the first half and ``cos(t_b * w_i)`` for the second,
    with ``w_i = 10000^(-i / (dim/2 - 1))``.

    Args:
        dim: embedding size (even, >= 2).
    """

    frequencies: torch.Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        half = dim // 2
        if dim < 2 or dim % 2:
            from qldm.hybrid.config import ConfigError

            raise ConfigError(
                f"time embedding size must be even and >= 2, got {dim}", field="model.time_dim"
            )
        exponent = torch.arange(half, dtype=torch.float32) / max(half - 1, 1)
        self.register_buffer("frequencies", torch.exp(-math.log(10000.0) * exponent))
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Embed ``t (B,)`` (integers or floats) into ``(B, dim)``."""
        args = t.to(self.frequencies.dtype)[:, None] * self.frequencies[None, :]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class _ResidualBlock(nn.Module):
    def __init__(self, hidden: int, time_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.time = nn.Linear(time_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        x = self.act(self.fc1(self.norm(h)) + self.time(temb))
        return h + self.fc2(x)


class LatentDenoiser(nn.Module):
    """A residual MLP that predicts the noise added to a latent.

    Args:
        latent_dim: ``D``.
        hidden: width of the residual stream.
        blocks: residual blocks (each: LayerNorm, Linear + time projection, SiLU, Linear).
        time_dim: sinusoidal embedding size.

    Shapes:
        ``forward(z (B, D), t (B,)) -> eps (B, D)``.
    """

    def __init__(
        self, latent_dim: int, *, hidden: int = 128, blocks: int = 3, time_dim: int = 32
    ) -> None:
        super().__init__()
        self.embed = SinusoidalEmbedding(time_dim)
        self.time_mlp = nn.Sequential(
            nn.Linear(time_dim, time_dim * 2), nn.SiLU(), nn.Linear(time_dim * 2, time_dim * 2)
        )
        self.inp = nn.Linear(latent_dim, hidden)
        self.blocks = nn.ModuleList(_ResidualBlock(hidden, time_dim * 2) for _ in range(blocks))
        last = nn.Linear(hidden, latent_dim)
        nn.init.zeros_(last.weight)  # start by predicting eps = 0 (loss 1): a calm first step
        nn.init.zeros_(last.bias)
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), last)

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Predict ``eps`` from ``z_t (B, D)`` at timesteps ``t (B,)``."""
        temb = self.time_mlp(self.embed(t))
        h = self.inp(z)
        for block in self.blocks:
            h = block(h, temb)
        out: torch.Tensor = self.out(h)
        return out
