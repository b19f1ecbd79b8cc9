"""The pixel-space DDPM objective with P2 weighting, the EMA of the weights, and sampling.

Images live in ``[0, 1]`` outside and in ``[-1, 1]`` inside the diffusion. The loss of a batch
is the P2-weighted L2 noise-prediction loss (Choi et al. 2022)::

    L = mean_b  w(t_b) * mean_pixels (eps_theta(x_t, t_b) - eps)^2,
    w(t) = 1 / (k + SNR(t))^gamma,  SNR(t) = alpha_bar_t / (1 - alpha_bar_t)

(``gamma = 0`` gives the plain loss). The EMA decay at update ``n`` is
``min(max_decay, 1 - (1 + n)^-power)``, the step-dependent rate of the paper's code
(``inv_gamma = 1``, ``power = 2/3``, capped at 0.995).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from qldm.hybrid.qldm.sampler import DDIMSampler, DDPMSampler
from qldm.hybrid.qldm.schedule import NoiseSchedule
from qldm.hybrid.unet.config import UNetConfig

__all__ = ["EMA", "DiffusionObjective", "sample_images"]


class DiffusionObjective(nn.Module):
    """The noise schedule and the P2-weighted loss.

    Args:
        config: the run config (its ``diffusion`` section).
    """

    p2_weights: torch.Tensor

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        d = config.diffusion
        self.schedule = NoiseSchedule(d.schedule, d.timesteps)
        ab = self.schedule.alpha_bars
        snr = ab / (1 - ab)
        self.register_buffer("p2_weights", (1.0 / (d.p2_k + snr) ** d.p2_gamma).float())

    def loss(
        self, model: nn.Module, images: torch.Tensor, *, generator: torch.Generator
    ) -> torch.Tensor:
        """The P2-weighted loss of ``images (B, C, H, W)`` in ``[0, 1]`` (scalar)."""
        x0 = images * 2 - 1
        b = x0.shape[0]
        t = torch.randint(0, self.schedule.timesteps, (b,), generator=generator)
        eps = torch.randn(x0.shape, generator=generator)
        xt = self.schedule.add_noise(x0, t, eps).float()
        err = (model(xt, t) - eps).pow(2).mean(dim=(1, 2, 3))
        return (self.p2_weights[t] * err).mean()


class EMA:
    """An exponential moving average of a model's floating parameters and buffers.

    Args:
        model: the trained model; its copy (``self.model``) holds the average.
        max_decay: cap of the decay.
        power: the decay at update ``n`` is ``min(max_decay, 1 - (1 + n)^-power)``.
    """

    def __init__(self, model: nn.Module, *, max_decay: float, power: float) -> None:
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.max_decay, self.power = max_decay, power
        self.updates = 0

    def decay(self) -> float:
        """The decay of the next update."""
        return min(self.max_decay, 1.0 - (1.0 + self.updates) ** -self.power)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """``avg <- d avg + (1 - d) current`` for every floating tensor."""
        d = self.decay()
        src = model.state_dict()
        for name, avg in self.model.state_dict().items():
            if avg.is_floating_point():
                avg.mul_(d).add_(src[name].detach(), alpha=1.0 - d)
            else:
                avg.copy_(src[name])
        self.updates += 1


@torch.no_grad()
def sample_images(
    model: nn.Module,
    config: UNetConfig,
    n: int,
    *,
    generator: torch.Generator,
    batch_size: int = 50,
    shape: tuple[int, int, int] = (1, 28, 28),
) -> torch.Tensor:
    """Generate ``n`` images with the config's sampler: ``(n, C, H, W)`` in ``[0, 1]``.

    Every step's prediction of ``x_0`` is clamped to ``[-diffusion.clip_x0, clip_x0]`` (the
    DDPM reference implementations clamp to the data range ``[-1, 1]``).

    Args:
        model: the noise-prediction network (usually the EMA copy).
        config: the run config (schedule and sampler).
        n: images.
        generator: a CPU generator for every draw.
        batch_size: images per sampler pass.
        shape: ``(C, H, W)``.
    """
    d = config.diffusion
    schedule = NoiseSchedule(d.schedule, d.timesteps)
    sampler: DDPMSampler | DDIMSampler = (
        DDIMSampler(schedule, steps=d.ddim_steps, clip=d.clip_x0)
        if d.sampler == "ddim"
        else DDPMSampler(schedule, clip=d.clip_x0)
    )
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        x = sampler.sample(lambda x, t: model(x.float(), t), (b, *shape), generator=generator)
        out.append(((x.clamp(-1, 1) + 1) / 2).float())
    model.train(was_training)
    return torch.cat(out)
