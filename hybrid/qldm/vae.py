"""A small convolutional VAE: images ``(B, C, H, W)`` in [0, 1] <-> latents ``(B, D)``.

Two stride-2 convolutions take ``H x W`` to ``H/4 x W/4`` (so ``H`` and ``W`` must be
multiples of 4; MNIST's 28 x 28 becomes 7 x 7), a dense layer gives ``mu`` and ``log_var``; the
decoder mirrors it with transposed convolutions and returns logits (``sigmoid`` gives the image).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qldm.hybrid.config import ConfigError


class ConvVAE(nn.Module):
    """Encoder ``E_phi`` and decoder ``D_psi`` of the latent diffusion model.

    Args:
        in_channels: image channels ``C``.
        image_size: ``(H, W)``, both multiples of 4.
        latent_dim: ``D``.
        channels: channels of the first conv (the second has ``2 * channels``).
        hidden: width of the dense layer.

    Raises:
        ConfigError: an image size that is not a multiple of 4.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        image_size: tuple[int, int],
        latent_dim: int,
        channels: int = 16,
        hidden: int = 128,
    ) -> None:
        super().__init__()
        h, w = image_size
        if h % 4 or w % 4 or h < 4 or w < 4:
            raise ConfigError(f"image size must be a multiple of 4, got {h}x{w}", field="data")
        self.in_channels = in_channels
        self.image_size = (h, w)
        self.latent_dim = latent_dim
        c1, c2 = channels, 2 * channels
        self._feat = (c2, h // 4, w // 4)
        flat = c2 * (h // 4) * (w // 4)
        self.enc = nn.Sequential(
            nn.Conv2d(in_channels, c1, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(flat, hidden),
            nn.SiLU(),
        )
        self.to_stats = nn.Linear(hidden, 2 * latent_dim)
        self.dec_fc = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, flat), nn.SiLU()
        )
        self.dec = nn.Sequential(
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.ConvTranspose2d(c1, in_channels, 4, stride=2, padding=1),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, C, H, W)`` -> ``mu (B, D)``, ``log_var (B, D)``."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.in_channels, *self.image_size):
            raise ConfigError(
                f"expected images (B, {self.in_channels}, {self.image_size[0]}, "
                f"{self.image_size[1]}), got {tuple(x.shape)}",
                field="images",
            )
        mu, log_var = self.to_stats(self.enc(x)).chunk(2, dim=1)
        return mu, log_var.clamp(-12.0, 8.0)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """``z (B, D)`` -> pixel logits ``(B, C, H, W)``."""
        h = self.dec_fc(z).reshape(z.shape[0], *self._feat)
        out: torch.Tensor = self.dec(h)
        return out

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``z (B, D)`` -> images ``(B, C, H, W)`` in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    @staticmethod
    def reparameterize(
        mu: torch.Tensor, log_var: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """``z = mu + exp(log_var / 2) * noise``."""
        return mu + (0.5 * log_var).exp() * noise

    @staticmethod
    def kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """``KL(N(mu, sigma^2) || N(0, I))`` summed over latent dims, averaged over the batch."""
        return (-0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum(dim=1)).mean()

    @staticmethod
    def recon_loss(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Bernoulli negative log-likelihood summed over pixels, averaged over the batch."""
        return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
