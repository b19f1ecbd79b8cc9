"""The noise-regularized quantum latent diffusion model (QLDM) and its parts."""

from qldm.hybrid.qldm.bottleneck import QuantumBottleneck
from qldm.hybrid.qldm.denoiser import LatentDenoiser, SinusoidalEmbedding
from qldm.hybrid.qldm.model import QLDM, LossTerms
from qldm.hybrid.qldm.sampler import DDIMSampler, DDPMSampler, make_sampler
from qldm.hybrid.qldm.schedule import NoiseSchedule, register_schedule, schedule_names
from qldm.hybrid.qldm.vae import ConvVAE

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
