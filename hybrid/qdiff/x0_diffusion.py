"""Gaussian diffusion in amplitude space with an x0-predicting network.

The data are unit amplitude vectors ``u0 (B, d)``, stretched to ``x0 = sqrt(d) u0`` so each
component has unit scale; ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``. A network predicts
the unit vector ``u0`` from ``(x_t, t)``; the loss is the infidelity ``1 - <u_hat|u0>^2`` (seed
001's loss: the prediction read as a state). Sampling is DDPM's ancestral chain with the x0
estimate plugged into the posterior ``q(x_{t-1} | x_t, x0)``.

Two networks fill it: :class:`qldm.hybrid.qdiff.quantum_unet.QuantumUNet` (seed 001) and
:class:`ClassicalX0Denoiser`, the classical control of the same parameter count (also seed
004's classical DDPM baseline).
"""

from __future__ import annotations

import math

import torch

from qldm.hybrid.qdiff.common import (
    GaussianSchedule,
    QDiffModel,
    ancestral_sample,
    infidelity,
    mlp,
    mlp_width_for,
    unit,
)

__all__ = ["ClassicalX0Denoiser", "X0Diffusion"]


class X0Diffusion(QDiffModel):
    """Loss and sampler of an x0-predictor; subclasses implement :meth:`predict_x0`.

    Args:
        d: amplitudes per sample.
        timesteps: ``T``.
    """

    def __init__(self, d: int, timesteps: int) -> None:
        super().__init__()
        self.d = d
        self.schedule = GaussianSchedule(timesteps)
        self.scale = math.sqrt(d)

    def predict_x0(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``(B, d)``, ``(B,)`` -> ``(B, d)`` unit estimate of ``u0``."""
        raise NotImplementedError

    def loss(
        self, u0: torch.Tensor, labels: torch.Tensor, *, generator: torch.Generator
    ) -> torch.Tensor:
        """Mean infidelity of the x0 estimate at uniformly drawn ``t`` (``labels`` unused)."""
        b = u0.shape[0]
        t = torch.randint(1, self.schedule.T + 1, (b,), generator=generator)
        eps = torch.randn(u0.shape, generator=generator)
        xt = self.schedule.add_noise(self.scale * u0, t, eps)
        return infidelity(self.predict_x0(xt, t), u0).mean()

    @torch.no_grad()
    def sample(
        self, n: int, *, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(n, d)`` unit amplitude vectors by ancestral sampling (``labels`` unused)."""
        return ancestral_sample(
            self.predict_x0, self.schedule, n=n, d=self.d, generator=generator, scale=self.scale
        )


class ClassicalX0Denoiser(X0Diffusion):
    """An MLP ``[x_t, t/T] -> h -> h -> d`` whose width is chosen to match a parameter budget.

    Args:
        d: amplitudes per sample.
        timesteps: ``T``.
        budget: the parameter count to match (the quantum model's).
    """

    def __init__(self, d: int, timesteps: int, *, budget: int) -> None:
        super().__init__(d, timesteps)
        self.hidden = mlp_width_for(budget, n_in=d + 1, n_out=d)
        self.net = mlp([d + 1, self.hidden, self.hidden, d])

    def predict_x0(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tau = (t.float() / self.schedule.T).unsqueeze(1)
        return unit(self.net(torch.cat([xt, tau], dim=1)))
