"""The quantum hybrid diffusion U-Nets of De Falco et al. (2024): classical U-Net, QVU-Net
(1HQConv, 7HQConv, FullHQConv and FQConv vertices), QuanvU-Net, and classical-to-hybrid
transfer learning.

- :class:`UNet` (:mod:`.model`) and its blocks (:mod:`.blocks`); the circuits that replace
  convolutions (:class:`QuantumConv`, :mod:`.quantum`), all through
  :class:`qldm.client.QuantumLayer`;
- :class:`UNetConfig` (``kind: unet``) and :func:`load_any_config` (:mod:`.config`);
- the P2-weighted DDPM objective, the EMA and sampling (:mod:`.diffusion`);
- :class:`UNetTrainer` (:mod:`.train`): checkpointed, resumable, transfer learning;
- the sample metrics, named for what they are (:mod:`.evaluate`).
"""

from qldm.hybrid.unet.config import (
    ArchConfig,
    UNetConfig,
    load_any_config,
    parse_any_config,
    parse_unet_config,
)
from qldm.hybrid.unet.diffusion import EMA, DiffusionObjective, sample_images
from qldm.hybrid.unet.evaluate import classifier_score, sample_metrics
from qldm.hybrid.unet.model import PAPER_PARAMETERS, UNet, transfer_weights
from qldm.hybrid.unet.quantum import QuantumConv
from qldm.hybrid.unet.train import UNetTrainer, load_unet, read_unet_checkpoint

__all__ = [
    "EMA",
    "PAPER_PARAMETERS",
    "ArchConfig",
    "DiffusionObjective",
    "QuantumConv",
    "UNet",
    "UNetConfig",
    "UNetTrainer",
    "classifier_score",
    "load_any_config",
    "load_unet",
    "parse_any_config",
    "parse_unet_config",
    "read_unet_checkpoint",
    "sample_images",
    "sample_metrics",
    "transfer_weights",
]
