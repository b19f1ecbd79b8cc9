"""The U-Net run configuration (``kind: unet``): one closed, validated object.

A U-Net config file starts with ``kind: unet``; :func:`load_any_config` reads a file and returns
a :class:`UNetConfig` for it, or a :class:`qldm.hybrid.config.QLDMConfig` when ``kind`` is
absent or ``qldm``. Unknown keys are errors and every error names its field.

Example (the 7HQConv QVU-Net)::

    kind: unet
    name: qvunet_7hqconv
    arch: {vertex: quantum, vertex_groups: 7, vertex_ansatz: hqconv}
    train: {epochs: 20, batch_size: 128}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from qldm.hybrid.config import (
    ConfigError,
    DataConfig,
    QLDMConfig,
    parse_config,
    read_config_file,
    validate_config,
)

__all__ = [
    "ArchConfig",
    "UNetConfig",
    "UNetDiffusionConfig",
    "UNetEvalConfig",
    "UNetTrainConfig",
    "load_any_config",
    "parse_any_config",
    "parse_unet_config",
]

IMAGE_SIZE = 28
"""The U-Net's down path (28 -> 14 -> 7 -> 2) is built for 28x28 images."""


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArchConfig(_Closed):
    """The network: the classical U-Net and where circuits replace convolutions.

    Attributes:
        dim: channels of the first level (the paper: 10).
        dim_mults: channel multipliers of the four levels (the paper: 1, 2, 3, 4; the vertex
            has ``dim * dim_mults[-1]`` channels).
        groups: GroupNorm groups.
        heads: attention heads (4).
        dim_head: features per attention head (32).
        vertex: ``classical`` (ResNet blocks) or ``quantum`` (QResNet blocks).
        vertex_groups: circuits per vertex convolution, 3 channels each (1: 1HQConv, 7:
            7HQConv, 13 of 40 channels: FullHQConv, whose last channel runs through a 4-qubit
            basic entangler).
        vertex_ansatz: ``hqconv`` or ``fqconv``.
        vertex_layers: ansatz layers (3).
        quanv: put quanvolution filters in both ResNet blocks of encoder level ``quanv_level``
            (the QuanvU-Net).
        quanv_groups: 3-channel groups filtered by circuits on that level.
        quanv_ansatz: ``hqconv`` or ``fqconv``.
        quanv_layers: ansatz layers.
        quanv_level: encoder level (0-based; 1 is the 14x14 level).
        engine: ``adjoint`` (exact backend, fused statevector engine, Jacobians in one run) or
            ``autograd`` (torch simulator in the autograd graph).
        quantum_dtype: precision of the ``adjoint`` engine.
    """

    dim: int = Field(default=10, ge=1, le=256)
    dim_mults: tuple[int, int, int, int] = (1, 2, 3, 4)
    groups: int = Field(default=10, ge=1)
    heads: int = Field(default=4, ge=1)
    dim_head: int = Field(default=32, ge=1)
    vertex: Literal["classical", "quantum"] = "classical"
    vertex_groups: int = Field(default=1, ge=1)
    vertex_ansatz: Literal["hqconv", "fqconv"] = "hqconv"
    vertex_layers: int = Field(default=3, ge=1, le=64)
    quanv: bool = False
    quanv_groups: int = Field(default=1, ge=1)
    quanv_ansatz: Literal["hqconv", "fqconv"] = "hqconv"
    quanv_layers: int = Field(default=3, ge=1, le=64)
    quanv_level: int = Field(default=1, ge=0, le=3)
    engine: Literal["adjoint", "autograd"] = "adjoint"
    quantum_dtype: Literal["float32", "float64"] = "float32"

    @model_validator(mode="after")
    def _fits(self) -> ArchConfig:
        if any(m < 1 for m in self.dim_mults):
            raise ValueError(f"dim_mults: must be positive, got {self.dim_mults}")
        widths = [self.dim, *(self.dim * m for m in self.dim_mults)]
        if any(w % self.groups for w in widths):
            raise ValueError(f"groups: {self.groups} must divide every level's width {widths}")
        mid = self.dim * self.dim_mults[-1]
        if self.vertex == "quantum" and 3 * self.vertex_groups > mid:
            raise ValueError(
                f"vertex_groups: {self.vertex_groups} groups of 3 channels exceed the vertex's "
                f"{mid} channels"
            )
        if self.quanv:
            size = level_sizes()[self.quanv_level]
            if size % 2:
                raise ValueError(
                    f"quanv_level: level {self.quanv_level} is {size}x{size}, not tiled by 2x2 "
                    "patches"
                )
            if 3 * self.quanv_groups > self.level_channels()[self.quanv_level]:
                raise ValueError(
                    f"quanv_groups: {self.quanv_groups} groups of 3 channels exceed the "
                    f"{self.level_channels()[self.quanv_level]} channels of level "
                    f"{self.quanv_level}"
                )
        return self

    @property
    def mid_channels(self) -> int:
        """Channels at the vertex."""
        return self.dim * self.dim_mults[-1]

    def level_channels(self) -> list[int]:
        """Channels of the ResNet blocks of each encoder level."""
        return [self.dim, *(self.dim * m for m in self.dim_mults[:-1])]

    @property
    def full_vertex(self) -> bool:
        """Whether every vertex channel is quantum (the last one by a basic entangler)."""
        return self.vertex == "quantum" and 3 * self.vertex_groups == self.mid_channels - 1

    @property
    def quantum(self) -> bool:
        """Whether the network holds any circuit."""
        return self.vertex == "quantum" or self.quanv


def level_sizes() -> list[int]:
    """Map sizes of the four encoder levels (28, 14, 7, 2)."""
    return [28, 14, 7, 2]


class UNetDiffusionConfig(_Closed):
    """The pixel-space diffusion process.

    Attributes:
        schedule: a registered schedule (``cosine``, ``linear``).
        timesteps: ``T`` (the paper: 1000).
        p2_gamma: P2 weighting exponent (Choi et al. 2022): the loss of timestep ``t`` is
            weighted by ``1 / (p2_k + SNR_t)^p2_gamma``; 0 turns it off.
        p2_k: the P2 offset.
        sampler: ``ddpm`` (all ``T`` steps) or ``ddim``.
        ddim_steps: steps of the DDIM sampler.
        clip_x0: clamp every step's prediction of ``x_0`` to ``[-clip_x0, clip_x0]`` (the
            data lie in ``[-1, 1]``); ``None``: no clamp.
    """

    schedule: str = "cosine"
    timesteps: int = Field(default=1000, ge=1, le=10000)
    p2_gamma: float = Field(default=1.0, ge=0.0)
    p2_k: float = Field(default=1.0, gt=0.0)
    sampler: Literal["ddpm", "ddim"] = "ddim"
    ddim_steps: int = Field(default=20, ge=1)
    clip_x0: float | None = Field(default=1.0, gt=0.0)

    @model_validator(mode="after")
    def _steps_fit(self) -> UNetDiffusionConfig:
        if self.ddim_steps > self.timesteps:
            raise ValueError(f"ddim_steps: {self.ddim_steps} exceeds timesteps = {self.timesteps}")
        return self


class UNetTrainConfig(_Closed):
    """The optimisation budget (the paper: Adam, lr 1e-3, betas 0.9/0.99, 20 epochs, B=128).

    Attributes:
        epochs: passes over the training images.
        batch_size: images per step (epochs drop the last partial batch).
        lr: Adam learning rate.
        beta1: Adam beta1.
        beta2: Adam beta2.
        ema_max_decay: cap of the EMA decay; the decay at update ``n`` is
            ``min(ema_max_decay, 1 - (1 + n)^-ema_power)`` (the paper's step-dependent rate).
        ema_power: see ``ema_max_decay``.
        ema_every: update the EMA every this many steps.
        checkpoint_every: write ``last.pt`` every this many steps (and at every epoch's end).
        max_seconds: stop early (and checkpoint) after this much wall time.
        threads: torch CPU threads.
        transfer_from: a classical U-Net checkpoint: a fresh run starts from its weights, all
            but the vertex's, and continues its epoch count (transfer learning).
        keep_epochs: after these epochs (1-based), also keep the checkpoint as
            ``epoch_<k>.pt`` (a transfer source).
    """

    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=128, ge=1)
    lr: float = Field(default=1e-3, gt=0.0)
    beta1: float = Field(default=0.9, ge=0.0, lt=1.0)
    beta2: float = Field(default=0.99, ge=0.0, lt=1.0)
    ema_max_decay: float = Field(default=0.995, ge=0.0, lt=1.0)
    ema_power: float = Field(default=2.0 / 3.0, gt=0.0)
    ema_every: int = Field(default=1, ge=1)
    checkpoint_every: int = Field(default=50, ge=1)
    max_seconds: float | None = Field(default=None, gt=0.0)
    threads: int | None = Field(default=None, ge=1)
    transfer_from: str | None = None
    keep_epochs: tuple[int, ...] = ()


class UNetEvalConfig(_Closed):
    """What ``qldm evaluate`` measures.

    Attributes:
        n_samples: generated images compared with the test images.
        grid: images in each PNG grid.
        kid_subset: subset size of the classifier KID (the paper: 100).
        score_splits: splits of the inception-style score on the classifier's logits (10).
    """

    n_samples: int = Field(default=500, ge=2)
    grid: int = Field(default=36, ge=1)
    kid_subset: int = Field(default=100, ge=2)
    score_splits: int = Field(default=10, ge=1)


class UNetConfig(_Closed):
    """A U-Net diffusion run (classical, QVU-Net, QuanvU-Net or transfer).

    Attributes:
        kind: always ``unet`` (the discriminator against QLDM configs).
        name: run name (default output folder ``runs/<name>``).
        seed: seeds initialisation, batch order and every noise draw.
        out_dir: checkpoint folder (``None``: ``runs/<name>``).
        data: the images (28x28 grayscale).
        arch: the network.
        diffusion: the noise process and sampler.
        train: the budget.
        eval: the evaluation.
    """

    kind: Literal["unet"] = "unet"
    name: str = Field(default="unet", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = Field(default=0, ge=0, lt=2**31)
    out_dir: str | None = None
    data: DataConfig = DataConfig()
    arch: ArchConfig = ArchConfig()
    diffusion: UNetDiffusionConfig = UNetDiffusionConfig()
    train: UNetTrainConfig = UNetTrainConfig()
    eval: UNetEvalConfig = UNetEvalConfig()

    @model_validator(mode="after")
    def _image_size(self) -> UNetConfig:
        if self.data.image_size not in (None, IMAGE_SIZE):
            raise ValueError(
                f"data.image_size: the U-Net takes {IMAGE_SIZE}x{IMAGE_SIZE} images, got "
                f"{self.data.image_size}"
            )
        return self

    @property
    def output_dir(self) -> Path:
        """The run folder."""
        return Path(self.out_dir) if self.out_dir else Path("runs") / self.name


def parse_unet_config(data: Any) -> UNetConfig:
    """Validate a dict into a :class:`UNetConfig`.

    Raises:
        ConfigError: naming the first offending field.
    """
    return validate_config(UNetConfig, data)


def parse_any_config(data: Any) -> UNetConfig | QLDMConfig:
    """Dispatch on ``kind``: ``unet`` -> :class:`UNetConfig`; absent or ``qldm`` -> QLDM.

    Raises:
        ConfigError: an unknown ``kind`` (``field="kind"``) or an invalid config.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping, got {type(data).__name__}")
    kind = data.get("kind", "qldm")
    if kind == "unet":
        return parse_unet_config(data)
    if kind == "qldm":
        return parse_config({k: v for k, v in data.items() if k != "kind"})
    raise ConfigError(f"unknown kind {kind!r}; use 'qldm' or 'unet'", field="kind")


def load_any_config(path: str | Path) -> UNetConfig | QLDMConfig:
    """Read a YAML or JSON config file of either kind.

    Raises:
        ConfigError: a missing or unreadable file, an unknown ``kind``, invalid contents.
    """
    return parse_any_config(read_config_file(path))
