"""The noise-regularized quantum latent diffusion model (QLDM).

How the paper's Algorithm 1 (``000_…``, appendix) maps onto this code, and where we chose:

==========================================  =================================================
Algorithm 1                                  here
==========================================  =================================================
line 4: ``z_0 <- E_phi(x_0)``                :meth:`ConvVAE.encode` + reparameterisation
                                             (the paper's section 3 VAE: recon + KL). The
                                             CIFAR U-Net skips of Table 6 are not used.
lines 6-8: ``latent_to_q``, normalise,       :class:`QuantumBottleneck`: ``angle_ry`` (section
AmplitudeEmbedding                           3's angle encoding, ``pi * tanh``) or ``amplitude``
                                             (Algorithm 1's normalised embedding).
lines 9-11: ``rho_l = E_gamma(U_l rho U_l^+)``  ``QuantumLayer``: ``ry_rz_brickwork`` (RY, RZ,
                                             even/odd CNOTs, Table 6), ``L`` layers, the
                                             variant's channel on every qubit after each layer.
lines 12-13: ``<Z_i>``, ``q_to_latent``      ``z~ = q_to_latent(y)``; the diffusion data.
line 15-16: ``t``, ``eps``, ``z_t``          :meth:`NoiseSchedule.add_noise` on the
                                             standardised ``z~`` (running mean/std buffers).
lines 17-26: a second PQC ``xi_dec`` on      **not built.** Its output ``z_den`` enters no loss
``z_t`` giving ``z_den``                     in Algorithm 1 (Table 6 uses it, differently), and
                                             sampling starts from Gaussian noise, not from an
                                             encoded image, so it has no role at generation.
line 27-28: ``eps_hat = S(z_t, t)``,         :class:`LatentDenoiser` (an MLP with a sinusoidal
``L_score``                                  time embedding); DDPM's ``||eps_hat - eps||^2``.
line 29: ``L_recon = ||x_0 - x_hat||^2``     ``x_hat = D_psi(z~)``: the reconstruction passes
                                             **through the quantum bottleneck**; Bernoulli NLL
                                             (summed over pixels) + ``kl_weight`` * KL.
line 30: ``L = L_score + 0.1 L_recon``       same, ``recon_weight = 0.1`` (config).
line 31: update all parameters               one Adam over all of them. ``train.score_grad``:
                                             ``standardized`` (default): ``L_score`` sees the
                                             latent standardised by its batch mean and std,
                                             with gradient, so it trains the PQC weights, the
                                             maps and the encoder too, and shrinking the
                                             latent to 0 gains nothing (no collapse).
                                             ``detached``: the old behaviour, the denoiser
                                             alone learns from ``L_score``.
==========================================  =================================================

Placements (``model.placement``):

- ``latent`` (Algorithm 1): the diffusion models the standardised bottleneck output
  ``z~ = q_to_latent(PQC(latent_to_q(z0)))``; generation: ``z_T ~ N(0, I)`` -> DDPM/DDIM ->
  un-standardise -> ``D_psi``. The PQC shapes the latent space but does not run at generation.
- ``generation``: the diffusion models the standardised VAE latent ``z0`` (before the PQC);
  generation: DDPM/DDIM -> un-standardise -> ``q_to_latent(PQC(latent_to_q(.)))`` -> ``D_psi``,
  so every generated image passes through the (noisy) circuit, on whatever backend runs it.

Sampling uses an exponential moving average of the denoiser's weights, as DDPM does.
Reconstruction (``x -> mu -> bottleneck -> D``) runs the bottleneck in both placements.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from qldm.hybrid.config import QLDMConfig
from qldm.hybrid.qldm.bottleneck import QuantumBottleneck
from qldm.hybrid.qldm.denoiser import LatentDenoiser
from qldm.hybrid.qldm.sampler import DDIMSampler, DDPMSampler, make_sampler
from qldm.hybrid.qldm.schedule import NoiseSchedule
from qldm.hybrid.qldm.vae import ConvVAE


@dataclass(frozen=True)
class LossTerms:
    """The loss of one training step and its parts (scalars; ``total`` carries the graph)."""

    total: torch.Tensor
    score: float
    recon: float
    kl: float


class LatentStandardizer(nn.Module):
    """Running per-dimension mean and std of the diffusion latent (like LDM's scale factor).

    Updated with momentum from each training batch (the first batch sets them), frozen in
    ``eval()`` mode; stored as buffers, so they are saved with the model.
    """

    mean: torch.Tensor
    std: torch.Tensor
    count: torch.Tensor

    def __init__(self, dim: int, *, momentum: float = 0.05) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, z: torch.Tensor) -> None:
        """Fold a batch ``(B, D)`` into the running statistics."""
        if z.shape[0] < 2:
            return
        m, s = z.mean(dim=0), z.std(dim=0).clamp_min(1e-4)
        if int(self.count) == 0:
            self.mean.copy_(m)
            self.std.copy_(s)
        else:
            self.mean.lerp_(m, self.momentum)
            self.std.lerp_(s, self.momentum)
        self.count += 1

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.mean) / self.std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std + self.mean


class QLDM(nn.Module):
    """VAE + quantum bottleneck + latent DDPM.

    Args:
        config: the run configuration (variant, sizes, schedule).
        in_channels: image channels.
        image_size: ``(H, W)``.
        url: evaluate the PQC on this qldm server (``QuantumLayer(url=...)``).
        api_key: the server's API key.
        run_id: the server-side run its jobs are filed under (``None``: none).
    """

    def __init__(
        self,
        config: QLDMConfig,
        *,
        in_channels: int = 1,
        image_size: tuple[int, int] = (28, 28),
        url: str | None = None,
        api_key: str | None = None,
        run_id: str | None = None,
    ) -> None:
        super().__init__()
        m = config.model
        self.config = config
        self.vae = ConvVAE(
            in_channels=in_channels,
            image_size=image_size,
            latent_dim=m.latent_dim,
            channels=m.vae_channels,
            hidden=m.vae_hidden,
        )
        self.bottleneck = QuantumBottleneck(
            m.latent_dim,
            config.pqc_spec(),
            gaussian_std=config.gaussian_std,
            init_scale=m.pqc_init_scale,
            backend=config.backend,
            url=url,
            api_key=api_key,
            run_id=run_id if url else None,
            classical=config.variant == "classical",
            noise_sampling=m.noise_sampling,
            seed=config.seed,
        )
        self.standardizer = LatentStandardizer(m.latent_dim)
        self.schedule = NoiseSchedule(config.diffusion.schedule, config.diffusion.timesteps)
        self.denoiser = LatentDenoiser(
            m.latent_dim, hidden=m.denoiser_hidden, blocks=m.denoiser_blocks, time_dim=m.time_dim
        )
        # The moving average of the denoiser that sampling uses (not trained by the optimiser).
        self.denoiser_ema = copy.deepcopy(self.denoiser).requires_grad_(False)

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        """``ema <- decay * ema + (1 - decay) * denoiser`` (``decay = 0`` copies)."""
        for e, p in zip(self.denoiser_ema.parameters(), self.denoiser.parameters(), strict=True):
            e.lerp_(p, 1.0 - decay)

    @property
    def latent_dim(self) -> int:
        return self.config.model.latent_dim

    @property
    def placement(self) -> str:
        """``latent`` or ``generation`` (see the module docstring)."""
        return self.config.model.placement

    def encode_latent(
        self, x: torch.Tensor, *, sample: bool, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x (B, C, H, W)`` -> ``(z0 (B, D), mu, log_var)``: the VAE latent before the PQC."""
        mu, log_var = self.vae.encode(x)
        if sample:
            noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
            return ConvVAE.reparameterize(mu, log_var, noise), mu, log_var
        return mu, mu, log_var

    def quantum_latent(
        self, x: torch.Tensor, *, sample: bool, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x (B, C, H, W)`` -> ``(z~ (B, D), mu, log_var)``: encode, then the PQC path."""
        z0, mu, log_var = self.encode_latent(x, sample=sample, generator=generator)
        return self.bottleneck(z0, generator=generator), mu, log_var

    def decode_diffusion_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` from un-standardised diffusion latents ``z (B, D)``.

        ``latent``: ``D(z)``; ``generation``: ``D(bottleneck(z))`` (the PQC runs here).
        """
        if self.placement == "generation":
            z = self.bottleneck(z)
        return self.vae.decode(z)

    def loss(
        self,
        x: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        recon_weight: float = 0.1,
        kl_weight: float = 1.0,
        score_repeats: int = 1,
    ) -> LossTerms:
        """One training objective: ``L_score + recon_weight * (NLL + kl_weight * KL)``.

        Args:
            x: ``(B, C, H, W)`` images in [0, 1].
            generator: source of every random draw of this step.
            recon_weight: the paper's 0.1.
            kl_weight: weight of the KL inside the reconstruction term.
            score_repeats: ``R``: the score loss averages over ``R`` draws of ``(t, eps)`` per
                latent (``R * B`` rows).
        """
        z_pre, mu, log_var = self.encode_latent(x, sample=True, generator=generator)
        z_q = self.bottleneck(z_pre, generator=generator)
        recon = ConvVAE.recon_loss(self.vae.decode_logits(z_q), x)
        kl = ConvVAE.kl(mu, log_var)
        z_diff = z_q if self.placement == "latent" else z_pre
        if self.training:
            self.standardizer.update(z_diff.detach())
        if self.config.train.score_grad == "standardized" and z_diff.shape[0] > 1:
            centred = z_diff - z_diff.mean(dim=0)
            z_std = centred / z_diff.std(dim=0).clamp_min(1e-4)
        else:
            z_std = self.standardizer.normalize(z_diff.detach())
        z0 = z_std.repeat(score_repeats, 1)
        t = torch.randint(0, self.schedule.timesteps, (z0.shape[0],), generator=generator)
        eps = torch.randn(z0.shape, generator=generator, dtype=z0.dtype)
        z_t = self.schedule.add_noise(z0, t, eps)
        score = F.mse_loss(self.denoiser(z_t, t), eps)
        total = score + recon_weight * (recon + kl_weight * kl)
        return LossTerms(
            total=total,
            score=float(score.detach()),
            recon=float(recon.detach()),
            kl=float(kl.detach()),
        )

    def make_sampler(self, kind: str | None = None) -> DDPMSampler | DDIMSampler:
        """The configured sampler (or ``ddpm``/``ddim`` by name)."""
        d = self.config.diffusion
        return make_sampler(kind or d.sampler, self.schedule, ddim_steps=d.ddim_steps, eta=d.eta)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        sampler: DDPMSampler | DDIMSampler | None = None,
        batch_size: int = 500,
    ) -> torch.Tensor:
        """Generate ``n`` images ``(n, C, H, W)`` in [0, 1]."""
        sampler = sampler or self.make_sampler()
        out = []
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            z = sampler.sample(self.denoiser_ema, (b, self.latent_dim), generator=generator)
            out.append(self.decode_diffusion_latent(self.standardizer.denormalize(z)))
        return torch.cat(out)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
        """Deterministic reconstruction through the quantum bottleneck: ``D(PQC(mu(x)))``."""
        out = []
        for start in range(0, x.shape[0], batch_size):
            z_q, _, _ = self.quantum_latent(x[start : start + batch_size], sample=False)
            out.append(self.vae.decode(z_q))
        return torch.cat(out)
