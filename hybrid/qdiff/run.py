"""Build, train, checkpoint, sample and evaluate a quantum diffusion model from its config.

What ``qldm train|sample|evaluate`` run for configs with a ``kind`` (see
:mod:`qldm.hybrid.qdiff.config`). A checkpoint (``<run>/last.pt``) holds the config, the state
dict, the loss history and the parameter counts; loading rebuilds the model from the config.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qldm.hybrid.qdiff.common import QDiffModel, count_parameters
from qldm.hybrid.qdiff.config import QDiffConfig, parse_qdiff_config
from qldm.hybrid.qdiff.data import AmplitudeData, load_amplitude_digits
from qldm.hybrid.qdiff.depolarizing import DepolarizingDiffusion
from qldm.hybrid.qdiff.qdm_denoiser import ClassicalStepOperator, QDMDenoiser, StepDiffusion
from qldm.hybrid.qdiff.quantum_unet import PQCDenoiser, QuantumUNet
from qldm.hybrid.qdiff.training import FitResult, evaluate, fit

__all__ = [
    "Trained",
    "build_model",
    "load_data",
    "load_run",
    "parameter_counts",
    "quantum_budget",
    "train_config",
]


def load_data(cfg: QDiffConfig, *, split: str, data_dir: Path | None) -> AmplitudeData:
    """The config's digits (``train`` split subset per ``data.subset``)."""
    d = cfg.data
    return load_amplitude_digits(
        dataset=d.dataset,
        split="train" if split == "train" else "test",
        classes=d.classes,
        side=d.side,
        subset=d.subset if split == "train" else None,
        data_dir=data_dir,
    )


def _layer_options(
    cfg: QDiffConfig, url: str | None, api_key: str | None, run_id: str | None
) -> dict[str, Any]:
    q = cfg.quantum
    opts: dict[str, Any] = {"backend": q.backend, "shots": q.shots, "seed": q.seed}
    hardware: dict[str, Any] = {}
    if q.gradient_budget is not None:
        hardware["gradient_budget"] = q.gradient_budget
    if q.allow_noise_floor:
        hardware["allow_noise_floor"] = True
    if url is not None:
        opts.update(url=url, api_key=api_key, run_id=run_id, job_options=hardware)
    elif hardware:
        opts["backend_options"] = hardware
    return opts


def _quantum(cfg: QDiffConfig, d: int, opts: dict[str, Any]) -> QDiffModel:
    m = cfg.model
    if cfg.kind == "quantum_unet":
        return QuantumUNet(
            d,
            m.timesteps,
            n_qubits=m.n_qubits,
            layers=m.layers,
            hidden=m.hidden,
            ansatz=m.ansatz,
            init_scale=m.init_scale,
            metric_samples=m.metric_samples,
            layer_options=opts,
        )
    if cfg.kind == "qdm_denoiser":
        return QDMDenoiser(
            d,
            m.timesteps,
            layers=m.layers,
            latent=m.latent,
            conditioned=m.conditioned,
            ansatz=m.ansatz,
            init_scale=m.init_scale,
            layer_options=opts,
        )
    return DepolarizingDiffusion(
        d,
        m.timesteps,
        layers=m.layers,
        hidden=m.hidden,
        readout=m.readout,
        shots=m.born_shots,
        levels_per_step=m.levels_per_step,
        a_min=m.a_min,
        min_strength=m.min_strength,
        init_scale=m.init_scale,
        encoding=m.encoding,
        n_qubits=m.angle_qubits,
        circuit_timestep=m.circuit_timestep,
        layer_options=opts,
    )


def quantum_budget(cfg: QDiffConfig) -> int:
    """Trainable parameters of the config's quantum model (what its control matches).

    ``qdm_denoiser`` matches the PQC's weights (the autoencoder is shared by both); the other
    kinds match the whole model (encoder, PQC and decoder). Builds the model on ``exact``.
    """
    d = cfg.data.side**2
    model = _quantum(
        cfg.with_overrides(**{"quantum.backend": "exact", "quantum.shots": None}),
        d,
        {"backend": "exact"},
    )
    if cfg.kind == "qdm_denoiser":
        return sum(p.numel() for p in model.quantum_parameters())
    return count_parameters(model)


def build_model(
    cfg: QDiffConfig,
    *,
    url: str | None = None,
    api_key: str | None = None,
    run_id: str | None = None,
) -> QDiffModel:
    """The config's model, seeded by ``cfg.seed`` (same seed, same initialisation).

    ``variant: classical``: :class:`ClassicalX0Denoiser` for ``quantum_unet`` and
    ``depolarizing_diffusion`` (the latter is seed 004's classical DDPM baseline, same ``T``),
    :class:`ClassicalStepOperator` for ``qdm_denoiser``; each sized to :func:`quantum_budget`.
    """
    from qldm.hybrid.qdiff.x0_diffusion import ClassicalX0Denoiser

    d = cfg.data.side**2
    m = cfg.model
    if cfg.variant == "classical":
        budget = quantum_budget(cfg)
        torch.manual_seed(cfg.seed)
        if cfg.kind == "qdm_denoiser":
            return ClassicalStepOperator(
                d, m.timesteps, budget=budget, latent=m.latent, conditioned=m.conditioned
            )
        return ClassicalX0Denoiser(d, m.timesteps, budget=budget)
    torch.manual_seed(cfg.seed)
    opts = _layer_options(cfg, url, api_key, run_id)
    if cfg.variant == "pqc_only":
        return PQCDenoiser(
            d,
            m.timesteps,
            layers=m.layers,
            ansatz=m.ansatz,
            init_scale=m.init_scale,
            metric_samples=m.metric_samples,
            layer_options=opts,
        )
    return _quantum(cfg, d, opts)


def parameter_counts(model: QDiffModel) -> dict[str, int]:
    """``{"total", "quantum", "codec"}`` trainable scalars (codec: qdm's autoencoder)."""
    quantum = sum(p.numel() for p in getattr(model, "quantum_parameters", list)())
    codec = getattr(model, "codec", None)
    n_codec = count_parameters(codec) if codec is not None else 0
    return {"total": count_parameters(model), "quantum": quantum, "codec": n_codec}


@dataclass
class Trained:
    """A trained run: the model, its fit and where its checkpoint went."""

    model: QDiffModel
    fit: FitResult
    checkpoint: Path | None
    counts: dict[str, int]


def train_config(
    cfg: QDiffConfig,
    *,
    data: AmplitudeData,
    url: str | None = None,
    api_key: str | None = None,
    run_id: str | None = None,
    save: bool = True,
) -> Trained:
    """Build and train the config's model (autoencoder first for the latent qdm).

    Args:
        cfg: the config.
        data: the training digits.
        url: a qldm server for the PQC (``None``: in-process).
        api_key: the server's key.
        run_id: the server run the jobs belong to.
        save: write ``<run>/last.pt``.
    """
    if cfg.train.threads is not None:
        torch.set_num_threads(cfg.train.threads)
    model = build_model(cfg, url=url, api_key=api_key, run_id=run_id)
    if isinstance(model, StepDiffusion):
        model.prepare(
            data.vectors,
            steps=cfg.model.codec_steps,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
    t = cfg.train
    result = fit(
        model,
        data,
        steps=t.steps,
        batch_size=t.batch_size,
        lr=t.lr,
        seed=cfg.seed,
        optimizer=t.optimizer,
        qngd_lr=t.qngd_lr,
        damping=t.damping,
        block_diagonal=t.block_diagonal,
        max_seconds=t.max_seconds,
    )
    counts = parameter_counts(model)
    path = None
    if save:
        folder = cfg.output_dir
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "last.pt"
        torch.save(
            {
                "qdiff_config": cfg.model_dump(mode="json"),
                "state_dict": model.state_dict(),
                "losses": result.losses,
                "seconds": result.seconds,
                "counts": counts,
            },
            path,
        )
    return Trained(model, result, path, counts)


def load_run(checkpoint: Path) -> tuple[QDiffModel, QDiffConfig, dict[str, Any]]:
    """Rebuild a model from its checkpoint (in-process ``exact`` unless the config says
    otherwise)."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = parse_qdiff_config(ckpt["qdiff_config"])
    model = build_model(cfg)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, cfg, ckpt


def evaluate_run(checkpoint: Path, *, out: Path, data_dir: Path | None, net: Any) -> dict[str, Any]:
    """Samples grid, loss curve and ``metrics.json`` of a checkpoint, into ``out``."""
    from qldm.hybrid import report

    model, cfg, ckpt = load_run(checkpoint)
    test = load_data(cfg, split="test", data_dir=data_dir)
    t0 = time.perf_counter()
    metrics, images = evaluate(
        model,
        test,
        n_samples=cfg.eval.n_samples,
        seed=cfg.seed,
        net=net,
        test_images=cfg.eval.test_images,
    )
    out.mkdir(parents=True, exist_ok=True)
    report.save_grid(images[:64], out / "samples.png")
    result = {
        "name": cfg.name,
        "kind": cfg.kind,
        "variant": cfg.variant,
        **metrics,
        "train_loss_final": float(sum(ckpt["losses"][-10:]) / max(len(ckpt["losses"][-10:]), 1)),
        "train_seconds": ckpt["seconds"][-1] if ckpt["seconds"] else 0.0,
        "parameters": ckpt["counts"],
        "eval_seconds": time.perf_counter() - t0,
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result
