"""What ``qldm train``, ``qldm sample`` and ``qldm evaluate`` run (see :mod:`qldm.cli`).

Each function builds from a config or a checkpoint, then runs; all the work lives in
:mod:`qldm.hybrid.train`, :mod:`qldm.hybrid.qldm` and :mod:`qldm.hybrid.report`. The CLI passes
its settings' data folder (``data_dir``): data sets are looked for in ``data_dir/datasets`` when
the config names no ``data.root``, and the metrics' classifier is cached in
``data_dir/feature_net``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from qldm.hybrid.config import QLDMConfig, load_config

if TYPE_CHECKING:
    from qldm.hybrid.metrics import FeatureNet


def load_images(
    config: QLDMConfig, *, split: Literal["train", "test"], data_dir: Path
) -> torch.Tensor:
    """The config's data set split as ``(N, C, H, W)`` float32 in [0, 1].

    Args:
        config: the run's config; its ``data.root``, when set, wins over ``data_dir``.
        split: ``train`` or ``test``.
        data_dir: the data folder; file-based sets are read from ``data_dir/datasets``.
    """
    from qldm.hybrid.data import load_dataset

    d = config.data
    subset = d.subset if split == "train" else d.test_subset
    ds = load_dataset(
        d.dataset,
        split=split,
        subset=subset,
        root=Path(d.root) if d.root else Path(data_dir) / "datasets",
        download=d.download,
        image_size=d.image_size,
        seed=config.seed,
    )
    return ds.images.float()


def feature_net(data_dir: Path) -> FeatureNet:
    """The metrics' digit classifier, cached in ``data_dir/feature_net`` (trained on first use)."""
    from qldm.hybrid.metrics import get_feature_net

    return get_feature_net(cache_dir=Path(data_dir) / "feature_net")


def train(
    config: Path,
    *,
    url: str | None,
    api_key: str | None,
    data_dir: Path,
    execution_mode: str | None = None,
) -> None:
    """Train (or resume) the run described by CONFIG; print where the checkpoint went
    (``execution_mode``: the server run's IBM Runtime mode, QLDM configs with ``url``)."""
    from qldm.hybrid.unet import cli as unet_cli

    if unet_cli.is_unet_config(config):  # kind: unet
        unet_cli.train(config, data_dir=data_dir)
        return
    from qldm.hybrid.qdiff.config import is_qdiff_config

    if is_qdiff_config(config):  # kind: quantum_unet | qdm_denoiser | depolarizing_diffusion
        _train_qdiff(config, url=url, api_key=api_key, data_dir=data_dir)
        return
    from qldm.hybrid.train import Trainer

    cfg = load_config(config)
    images = load_images(cfg, split="train", data_dir=data_dir)
    trainer = Trainer(cfg, images=images, url=url, api_key=api_key, execution_mode=execution_mode)
    result = trainer.run()
    last = result.history[-1] if result.history else {}
    resumed = f" (resumed at step {result.resumed_from})" if result.resumed_from else ""
    print(
        f"{cfg.name}: {result.steps} steps{resumed}, {result.elapsed:.1f} s training, "
        f"last loss {last.get('loss', float('nan')):.4f}; checkpoint {result.checkpoint}"
    )


def sample(checkpoint: Path, *, n: int, out: Path | None) -> None:
    """Write a PNG grid of ``n`` samples (default ``<run>/samples.png``)."""
    from qldm.hybrid.unet import cli as unet_cli

    if unet_cli.is_unet_checkpoint(checkpoint):
        unet_cli.sample(checkpoint, n=n, out=out)
        return
    if _is_qdiff_checkpoint(checkpoint):
        _sample_qdiff(checkpoint, n=n, out=out)
        return
    from qldm.hybrid import report
    from qldm.hybrid.qldm.evaluate import sample_generator
    from qldm.hybrid.train import load_model

    model, _ = load_model(checkpoint)
    images = model.sample(n, generator=sample_generator(model.config.seed))
    path = report.save_grid(images, out or Path(checkpoint).parent / "samples.png")
    print(f"{n} samples -> {path}")


def evaluate(checkpoint: Path, *, out: Path | None, data_dir: Path) -> None:
    """Write metrics JSON, sample and reconstruction grids, loss curve and index.html."""
    from qldm.hybrid.unet import cli as unet_cli

    if unet_cli.is_unet_checkpoint(checkpoint):
        unet_cli.evaluate(checkpoint, out=out, data_dir=data_dir)
        return
    if _is_qdiff_checkpoint(checkpoint):
        from qldm.hybrid.qdiff.run import evaluate_run

        folder = out or Path(checkpoint).parent / "eval"
        res = evaluate_run(checkpoint, out=folder, data_dir=data_dir, net=feature_net(data_dir))
        print(
            f"{res['name']}: test_loss={res['test_loss']:.4g}, "
            f"classifier_frechet_distance={res['classifier_frechet_distance']:.4g}; "
            f"report in {folder}"
        )
        return
    from qldm.hybrid.qldm.evaluate import evaluate_model
    from qldm.hybrid.train import load_model

    model, ckpt = load_model(checkpoint)
    test = load_images(model.config, split="test", data_dir=data_dir)
    folder = out or Path(checkpoint).parent / "eval"
    metrics = evaluate_model(model, ckpt, test_images=test, out=folder, net=feature_net(data_dir))
    keys = (
        "ssim_reconstruction",
        "classifier_frechet_distance",
        "classifier_kid_mean",
        "train_seconds",
    )
    shown = ", ".join(f"{k}={metrics[k]:.4g}" for k in keys if isinstance(metrics.get(k), float))
    print(f"{model.config.name}: {shown}; report in {folder}")


# --- the quantum diffusion models (issue 13): configs with a ``kind`` -------------------------


def _is_qdiff_checkpoint(checkpoint: Path) -> bool:
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return isinstance(ckpt, dict) and "qdiff_config" in ckpt


def _train_qdiff(config: Path, *, url: str | None, api_key: str | None, data_dir: Path) -> None:
    from qldm.hybrid.qdiff.config import load_qdiff_config
    from qldm.hybrid.qdiff.run import load_data, train_config

    cfg = load_qdiff_config(config)
    data = load_data(cfg, split="train", data_dir=data_dir)
    done = train_config(cfg, data=data, url=url, api_key=api_key)
    print(
        f"{cfg.name} ({cfg.kind}, {cfg.variant}): {done.fit.steps} steps, "
        f"{done.fit.elapsed:.1f} s training, last loss {done.fit.final_loss():.4f}, "
        f"{done.counts['total']} parameters; checkpoint {done.checkpoint}"
    )


def _sample_qdiff(checkpoint: Path, *, n: int, out: Path | None) -> None:
    from qldm.hybrid import report
    from qldm.hybrid.qdiff.data import to_images
    from qldm.hybrid.qdiff.run import load_run

    model, cfg, _ = load_run(checkpoint)
    vectors = model.sample(n, generator=torch.Generator().manual_seed(cfg.seed + 1))
    path = report.save_grid(
        to_images(vectors, side=cfg.data.side), out or Path(checkpoint).parent / "samples.png"
    )
    print(f"{n} samples -> {path}")
