"""Evaluating a trained QLDM: metrics JSON, sample and reconstruction grids, loss curve, HTML.

The metrics come from :mod:`qldm.hybrid.metrics`:

- ``ssim_reconstruction``: mean SSIM between test images and their reconstructions through the
  quantum bottleneck (``D(PQC(mu(x)))``);
- ``classifier_frechet_distance`` and ``classifier_kid_mean/std``: Fréchet and kernel
  distances between generated and test images **on the features of a small digit
  classifier**. They are not FID/KID (no Inception weights offline) and are comparable only
  with each other.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from qldm.hybrid import report
from qldm.hybrid.qldm.model import QLDM
from qldm.hybrid.qldm.report_page import sample_failures, write_report

if TYPE_CHECKING:
    from qldm.hybrid.metrics import FeatureNet


def sample_generator(seed: int) -> torch.Generator:
    """The generator ``qldm sample``/``evaluate`` draw samples from (seeded from the run)."""
    return torch.Generator().manual_seed(seed + 12_345)


def evaluate_model(
    model: QLDM,
    ckpt: dict[str, Any],
    *,
    test_images: torch.Tensor,
    out: Path,
    n_samples: int | None = None,
    n_recon: int | None = None,
    title: str | None = None,
    net: FeatureNet | None = None,
) -> dict[str, Any]:
    """Measure a trained model and write the report folder.

    Args:
        model: the trained model (put in ``eval()`` mode here).
        ckpt: its checkpoint dict (for the history and training time).
        test_images: ``(N, C, H, W)`` in [0, 1].
        out: report folder: ``metrics.json``, ``samples.png``, ``reconstructions.png``,
            ``loss.png``, ``index.html``.
        n_samples: generated images (default: the config's ``eval.n_samples``).
        n_recon: reconstructed test images (default: ``eval.n_recon``).
        title: page title.
        net: the metrics' digit classifier (default
            :func:`qldm.hybrid.metrics.get_feature_net`, cached in the default data folder).

    Returns:
        The metrics dict (also in ``metrics.json``).
    """
    from qldm.hybrid.metrics import metrics_report

    cfg = model.config
    model.eval()
    n_samples = n_samples or cfg.eval.n_samples
    n_recon = min(n_recon or cfg.eval.n_recon, test_images.shape[0])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    fake = model.sample(n_samples, generator=sample_generator(cfg.seed))
    sample_seconds = time.perf_counter() - t0
    originals = test_images[:n_recon]
    t0 = time.perf_counter()
    recon = model.reconstruct(originals)
    recon_seconds = time.perf_counter() - t0
    real = test_images[: max(n_samples, n_recon)]
    # KID subsets of half the smaller set, so that the 100 subsets differ and the std means
    # something (subsets of all rows would all be the same).
    kid_size = max(2, min(real.shape[0], fake.shape[0]) // 2)
    measured = metrics_report(
        real, fake, recon=recon, originals=originals, net=net, kid_subset_size=kid_size
    )
    reference = reference_metrics(real, recon, net=net)

    history = ckpt.get("history", [])
    tail = history[-max(1, len(history) // 20) :] if history else []
    metrics: dict[str, Any] = {
        "variant": cfg.variant,
        "channel": cfg.pqc_spec()["channel"],
        "gaussian_std": cfg.gaussian_std,
        "n_qubits": cfg.model.n_qubits,
        "layers": cfg.model.layers,
        "encoding": cfg.model.encoding,
        "steps": int(ckpt.get("step", 0)),
        "batch_size": cfg.train.batch_size,
        "seed": cfg.seed,
        "train_seconds": round(float(ckpt.get("elapsed", 0.0)), 2),
        "train_cpu_seconds": round(float(ckpt.get("cpu_elapsed", 0.0)), 2),
        "final_loss": _mean(tail, "loss"),
        "final_score_loss": _mean(tail, "score"),
        "final_recon_nll": _mean(tail, "recon"),
        "sampler": cfg.diffusion.sampler,
        "n_samples": n_samples,
        "n_recon": n_recon,
        "n_real": int(real.shape[0]),
        "kid_subset_size": kid_size,
        "sample_seconds": round(sample_seconds, 2),
        "recon_seconds": round(recon_seconds, 2),
    }
    metrics.update(measured)
    metrics["reference"] = reference
    metrics["failure_modes"] = {"samples": sample_failures(fake, real)}

    grid = min(cfg.eval.grid, n_samples)
    report.save_grid(fake[:grid], out / "samples.png")
    report.save_recon_grid(
        originals[: min(32, n_recon)], recon[: min(32, n_recon)], out / "reconstructions.png"
    )
    if history:
        report.save_loss_curve(history, out / "loss.png", title=f"{cfg.name} ({cfg.variant})")
    report.write_json(metrics, out / "metrics.json")
    images = [
        ("samples.png", f"{grid} generated samples ({cfg.diffusion.sampler})"),
        (
            "reconstructions.png",
            "test images (odd rows) and their reconstructions "
            "through the quantum bottleneck (even rows)",
        ),
    ]
    if history:
        images.append(("loss.png", "training loss"))
    write_report(
        out,
        title=title or f"QLDM {cfg.variant}: {cfg.name}",
        metrics=metrics,
        images=images,
        notes=[
            "classifier_frechet_distance and classifier_kid are computed on the features "
            "of a small digit classifier, not Inception: they are not FID/KID and compare "
            "only with each other."
        ],
    )
    return metrics


def reference_metrics(
    real: torch.Tensor, recon: torch.Tensor, *, net: FeatureNet | None = None
) -> dict[str, Any]:
    """The reference values of the report, on the same classifier as the model's metrics.

    Args:
        real: ``(N, C, H, W)`` test images, ``N >= 4``.
        recon: ``(K, C, H, W)`` the model's reconstructions of ``real[:K]``.
        net: the metrics' digit classifier.

    Returns:
        ``real_vs_real`` (the Fréchet distance and KID between the two halves of ``real``),
        ``autoencoder`` (the same between ``recon`` and ``real``, and the reconstructions'
        SSIM), and ``sizes``.
    """
    from qldm.hybrid.metrics import metrics_report

    half = real.shape[0] // 2
    a, b = real[:half], real[half : 2 * half]
    kid = max(2, half // 2)
    real_vs_real = metrics_report(a, b, net=net, kid_subset_size=kid)
    kid = max(2, min(real.shape[0], recon.shape[0]) // 2)
    auto = metrics_report(real, recon, net=net, kid_subset_size=kid)
    keys = ("classifier_frechet_distance", "classifier_kid_mean", "classifier_kid_std")
    return {
        "real_vs_real": {k: real_vs_real[k] for k in keys},
        "autoencoder": {k: auto[k] for k in keys},
        "sizes": {"real_half": half, "recon": int(recon.shape[0])},
    }


def _mean(records: list[dict[str, float]], key: str) -> float | None:
    values = [r[key] for r in records if key in r]
    return float(sum(values) / len(values)) if values else None
