"""The noise-regularized quantum latent diffusion model (QLDM) and its parts."""

from hybrid.qldm.bottleneck import QuantumBottleneck
from hybrid.qldm.denoiser import LatentDenoiser, SinusoidalEmbedding
from hybrid.qldm.model import QLDM, LossTerms
from hybrid.qldm.sampler import DDIMSampler, DDPMSampler, make_sampler
from hybrid.qldm.schedule import NoiseSchedule, register_schedule, schedule_names
from hybrid.qldm.vae import ConvVAE

__all__ = [
    "QLDM",
    "ConvVAE",
    "DDIMSampler",
    "DDPMSampler",
    "LatentDenoiser",
    "LossTerms",
    "NoiseSchedule",
    "QuantumBottleneck",
    "SinusoidalEmbedding",
    "make_sampler",
    "register_schedule",
    "schedule_names",
]
