"""``qldm train``, ``qldm sample`` and ``qldm evaluate`` for ``kind: unet`` configs and U-Net
checkpoints (:mod:`qldm.hybrid.cli` hands them over here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch

from qldm.hybrid.unet.config import UNetConfig, load_any_config
from qldm.hybrid.unet.model import PAPER_PARAMETERS, paper_variant

__all__ = ["evaluate", "is_unet_checkpoint", "is_unet_config", "load_images", "sample", "train"]


def is_unet_config(path: Path) -> bool:
    """Whether the config file at ``path`` says ``kind: unet`` (unreadable files: False; the
    regular loader then reports them)."""
    try:
        return isinstance(load_any_config(path), UNetConfig)
    except Exception:  # any error is reported by the loader the caller falls back to
        return False


def is_unet_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a checkpoint written by :class:`qldm.hybrid.unet.UNetTrainer`."""
    from qldm.hybrid.unet.train import CHECKPOINT_FORMAT

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # not ours; the caller's loader reports it
        return False
    return isinstance(ckpt, dict) and ckpt.get("format") == CHECKPOINT_FORMAT


def load_images(
    config: UNetConfig, *, split: Literal["train", "test"], data_dir: Path
) -> torch.Tensor:
    """The config's data split as ``(N, 1, 28, 28)`` float32 in ``[0, 1]``."""
    from qldm.hybrid.data import load_dataset

    d = config.data
    ds = load_dataset(
        d.dataset,
        split=split,
        subset=d.subset if split == "train" else d.test_subset,
        root=Path(d.root) if d.root else Path(data_dir) / "datasets",
        download=d.download,
        image_size=d.image_size,
        seed=config.seed,
    )
    return ds.images.float()


def train(config: Path, *, data_dir: Path) -> None:
    """Train (or resume) the U-Net run of CONFIG, printing progress lines."""
    from qldm.hybrid.unet.train import UNetTrainer

    cfg = load_any_config(config)
    if not isinstance(cfg, UNetConfig):
        raise TypeError(f"{config} is not a kind: unet config")
    images = load_images(cfg, split="train", data_dir=data_dir)
    trainer = UNetTrainer(cfg, images=images)
    model = trainer.model
    known = paper_variant(cfg.arch)
    paper = (
        f" (paper, {known}: {PAPER_PARAMETERS[known]:,}; with one circuit weight vector per "
        f"channel group: {model.paper_layout_parameter_count():,})"
        if known
        else ""
    )
    print(
        f"{cfg.name}: {model.parameter_count():,} parameters{paper}, "
        f"{model.quantum_calls_per_forward()} QuantumLayer calls and "
        f"{model.circuits_per_image()} circuits per image per forward pass"
    )
    result = trainer.run()
    last = result.history[-1] if result.history else {}
    resumed = f" (resumed at step {result.resumed_from})" if result.resumed_from else ""
    print(
        f"{cfg.name}: {result.steps} steps, {result.epochs} epochs{resumed}, "
        f"{result.elapsed:.1f} s training, last loss {last.get('loss', float('nan')):.4f}; "
        f"checkpoint {result.checkpoint}"
    )


def sample(checkpoint: Path, *, n: int, out: Path | None) -> None:
    """Write a PNG grid of ``n`` samples of the EMA weights (default ``<run>/samples.png``)."""
    from qldm.hybrid import report
    from qldm.hybrid.unet.diffusion import sample_images
    from qldm.hybrid.unet.train import load_unet

    model, cfg, _ = load_unet(checkpoint)
    images = sample_images(model, cfg, n, generator=torch.Generator().manual_seed(cfg.seed + 1))
    path = report.save_grid(images, out or Path(checkpoint).parent / "samples.png")
    print(f"{n} samples -> {path}")


def evaluate(checkpoint: Path, *, out: Path | None, data_dir: Path) -> None:
    """Write ``metrics.json`` and a sample grid: classifier Fréchet distance, classifier KID
    and the classifier score of ``eval.n_samples`` EMA samples against the test split."""
    from qldm.hybrid import report
    from qldm.hybrid.metrics import get_feature_net
    from qldm.hybrid.unet.diffusion import sample_images
    from qldm.hybrid.unet.evaluate import sample_metrics
    from qldm.hybrid.unet.train import load_unet

    model, cfg, ckpt = load_unet(checkpoint)
    folder = out or Path(checkpoint).parent / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    fake = sample_images(
        model, cfg, cfg.eval.n_samples, generator=torch.Generator().manual_seed(cfg.seed + 1)
    )
    real = load_images(cfg, split="test", data_dir=data_dir)
    metrics: dict[str, object] = dict(
        sample_metrics(
            fake,
            real,
            get_feature_net(cache_dir=Path(data_dir) / "feature_net"),
            kid_subset=min(cfg.eval.kid_subset, len(fake), len(real)),
            splits=cfg.eval.score_splits,
        )
    )
    metrics.update(
        name=cfg.name,
        parameters=model.parameter_count(),
        steps=int(ckpt["step"]),
        train_seconds=float(ckpt["elapsed"]),
        n_samples=len(fake),
    )
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    report.save_grid(fake[: cfg.eval.grid], folder / "samples.png")
    shown = ", ".join(
        f"{k}={metrics[k]:.4g}"
        for k in ("classifier_frechet_distance", "classifier_kid_mean", "classifier_score_mean")
    )
    print(f"{cfg.name}: {shown}; report in {folder}")
