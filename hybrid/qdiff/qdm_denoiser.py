"""Seed 003 (Cacioppo et al.'s QDM): the PQC as the denoising operator ``P(θ, t)|x_t> = |x_{t-1}>``.

Forward process, classical and complex (the seed's finding: complex noise helps)::

    x_{t-1} = sqrt(abar_{t-1}) sqrt(d) u0 + sqrt(1 - abar_{t-1}) eps,   eps complex Gaussian
    x_t     = sqrt(alpha_t) x_{t-1} + sqrt(1 - alpha_t) eps'

Both are loaded as states (``complex_amplitude`` encoding normalises them). The PQC, with the
timestep (and, conditioned, the class) entering every rotation angle, is trained on the
infidelity ``1 - |<x_{t-1}|P(θ, t)|x_t>|^2`` (the layer's ``fidelity`` output).

Sampling (a deviation, stated in the report): the seed's simulator chains the unitaries on
state vectors. A device returns no state, only Born-rule statistics, so each reverse step here
measures the probabilities of ``P(θ, t)|x_t>`` and re-prepares ``|x_{t-1}> = sqrt(p)`` (the
magnitudes; the phases are lost). The last state's magnitudes are the generated sample.

Variants: ``pixels`` (the 8x8 image itself, 6 qubits, conditioned on ``t`` only) and the small
conditioned ``latent`` model (a classical autoencoder to ``2^n`` non-negative amplitudes;
timestep features ``[t/T, four class bits]``; at ``n = 4`` with 23 ``ry_rz_brickwork`` layers the
PQC has 1,104 weights, next to the seed's 1,110 parameters).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from qldm.hybrid.qdiff.common import (
    GaussianSchedule,
    QDiffModel,
    complex_noise,
    infidelity,
    mlp,
    mlp_width_for,
    step_operator_layers,
    unit,
)

__all__ = ["ClassicalStepOperator", "LatentCodec", "QDMDenoiser", "StepDiffusion"]

CLASS_BITS = 4
"""Class features of the conditioned model: the label's four binary digits."""


def _class_bits(labels: torch.Tensor) -> torch.Tensor:
    bits = [(labels >> k) & 1 for k in range(CLASS_BITS)]
    return torch.stack(bits, dim=1).float()


class LatentCodec(nn.Module):
    """A small autoencoder between images ``(B, d)`` and non-negative unit latents ``(B, k)``.

    ``encode``: Linear + softplus, normalised; ``decode``: Linear + softplus, normalised. It is
    trained alone first (:meth:`fit`), on the reconstruction infidelity, then frozen.
    """

    def __init__(self, d: int, k: int) -> None:
        super().__init__()
        self.enc = nn.Linear(d, k)
        self.dec = nn.Linear(k, d)

    def encode(self, u: torch.Tensor) -> torch.Tensor:
        """``(B, d)`` -> ``(B, k)`` unit, non-negative."""
        return unit(F.softplus(self.enc(u)) + 1e-4)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, k)`` -> ``(B, d)`` unit, non-negative."""
        return unit(F.softplus(self.dec(z)) + 1e-4)

    def fit(
        self, vectors: torch.Tensor, *, steps: int, generator: torch.Generator, lr: float = 1e-2
    ) -> float:
        """Adam on the reconstruction infidelity; returns the last batch's loss, then freezes."""
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        loss = torch.tensor(float("nan"))
        for _ in range(steps):
            idx = torch.randint(0, vectors.shape[0], (64,), generator=generator)
            u = vectors[idx]
            loss = infidelity(self.decode(self.encode(u)), u).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.requires_grad_(False)
        return float(loss.detach())


class StepDiffusion(QDiffModel):
    """Training pairs, loss and the measure-and-re-prepare sampler of a step operator.

    Subclasses implement :meth:`fidelity` and :meth:`step_probabilities`.

    Args:
        d: data amplitudes (pixels).
        timesteps: ``T``.
        latent: ``None`` (pixels) or the latent size ``k`` (a :class:`LatentCodec`).
        conditioned: the class enters the timestep features.
    """

    def __init__(self, d: int, timesteps: int, *, latent: int | None, conditioned: bool) -> None:
        super().__init__()
        self.d = d
        self.k = latent or d
        self.schedule = GaussianSchedule(timesteps)
        self.codec = LatentCodec(d, latent) if latent else None
        self.conditioned = conditioned
        self.n_tau = 1 + (CLASS_BITS if conditioned else 0)

    def tau(self, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(B, m)`` timestep features ``[t/T (, class bits)]``."""
        f = (t.float() / self.schedule.T).unsqueeze(1)
        return torch.cat([f, _class_bits(labels)], dim=1) if self.conditioned else f

    def fidelity(self, xt: torch.Tensor, target: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """``(B,)`` ``|<target|P(t)|x_t>|^2`` for complex ``x_t``, ``target (B, k)``."""
        raise NotImplementedError

    def step_probabilities(self, xt: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """``(B, k)`` Born probabilities of ``P(t)|x_t>``."""
        raise NotImplementedError

    def prepare(self, vectors: torch.Tensor, *, steps: int, generator: torch.Generator) -> None:
        """Fit the latent codec (no-op for pixels)."""
        if self.codec is not None:
            self.codec.fit(vectors, steps=steps, generator=generator)

    def _to_latent(self, u0: torch.Tensor) -> torch.Tensor:
        if self.codec is None:
            return u0
        with torch.no_grad():
            return self.codec.encode(u0)

    def loss(
        self, u0: torch.Tensor, labels: torch.Tensor, *, generator: torch.Generator
    ) -> torch.Tensor:
        """Mean step infidelity ``1 - |<x_{t-1}|P(t)|x_t>|^2`` at uniformly drawn ``t``."""
        z0 = self._to_latent(u0).to(torch.complex64)
        b, k = z0.shape
        t = torch.randint(1, self.schedule.T + 1, (b,), generator=generator)
        scale = math.sqrt(k)
        x_prev = self.schedule.add_noise(
            scale * z0, t - 1, complex_noise((b, k), generator=generator)
        )
        xt = self.schedule.step_noise(x_prev, t, complex_noise((b, k), generator=generator))
        return (1.0 - self.fidelity(unit(xt), unit(x_prev), self.tau(t, labels))).mean()

    @torch.no_grad()
    def sample(
        self, n: int, *, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(n, d)`` samples: measure-and-re-prepare through ``T`` steps from complex noise.

        Args:
            n: samples.
            generator: seeds the start states (and the classes when ``labels`` is None).
            labels: ``(n,)`` classes of a conditioned model (default: uniform over 0-9).
        """
        if labels is None:
            labels = torch.randint(0, 10, (n,), generator=generator)
        x = unit(complex_noise((n, self.k), generator=generator))
        for t in range(self.schedule.T, 0, -1):
            tt = torch.full((n,), t, dtype=torch.long)
            p = self.step_probabilities(x, self.tau(tt, labels))
            x = unit(p.clamp_min(0.0).sqrt()).to(torch.complex64)
        z = x.real.float()
        return self.codec.decode(z) if self.codec is not None else unit(z)


class QDMDenoiser(StepDiffusion):
    """The PQC ``P(θ, t)`` with a timestep embedding, on ``log2(k)`` qubits.

    Args:
        d: data amplitudes.
        timesteps: ``T``.
        layers: ansatz layers.
        latent: latent size (a power of two) or ``None`` for pixels.
        conditioned: class features in the timestep embedding.
        ansatz: the ansatz.
        init_scale: PQC weights start in ``U(-s, s)``.
        layer_options: further ``QuantumLayer`` keywords.
    """

    def __init__(
        self,
        d: int,
        timesteps: int,
        *,
        layers: int,
        latent: int | None = None,
        conditioned: bool = False,
        ansatz: str = "ry_rz_brickwork",
        init_scale: float = 0.1,
        layer_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(d, timesteps, latent=latent, conditioned=conditioned)
        n = round(math.log2(self.k))
        self.pqc, self.readout = step_operator_layers(
            n,
            layers=layers,
            ansatz=ansatz,
            features=self.n_tau,
            init_scale=init_scale,
            layer_options=layer_options,
        )

    @staticmethod
    def _real(z: torch.Tensor) -> torch.Tensor:
        return torch.cat([z.real, z.imag], dim=1).float()

    def fidelity(self, xt: torch.Tensor, target: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        return self.pqc(self._real(xt), target=self._real(target), t=tau)

    def step_probabilities(self, xt: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        return self.readout(self._real(xt), t=tau)

    def quantum_parameters(self) -> list[nn.Parameter]:
        """The PQC's weights."""
        return [self.pqc.weight]


class ClassicalStepOperator(StepDiffusion):
    """The classical control: an MLP ``[Re x_t, Im x_t, tau] -> h -> h -> [Re, Im]`` read as a
    state, of the PQC's parameter count; same loss, same measure-and-re-prepare sampler."""

    def __init__(
        self,
        d: int,
        timesteps: int,
        *,
        budget: int,
        latent: int | None = None,
        conditioned: bool = False,
    ) -> None:
        super().__init__(d, timesteps, latent=latent, conditioned=conditioned)
        n_in, n_out = 2 * self.k + self.n_tau, 2 * self.k
        self.hidden = mlp_width_for(budget, n_in=n_in, n_out=n_out)
        self.net = mlp([n_in, self.hidden, self.hidden, n_out])

    def _out(self, xt: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        h = self.net(torch.cat([xt.real, xt.imag, tau], dim=1).float())
        return unit(torch.complex(h[:, : self.k], h[:, self.k :]))

    def fidelity(self, xt: torch.Tensor, target: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        return 1.0 - infidelity(target, self._out(xt, tau))

    def step_probabilities(self, xt: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        return self._out(xt, tau).abs().pow(2)
