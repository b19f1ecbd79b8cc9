"""Seed 000's experiment, one training run: train a QLDM variant, then measure it.

One :class:`Cell` is one trained model (placement, variant, seed, training-set size, depth);
:func:`run_cell` trains it on the given digits and returns a flat dict of measurements:

- ``sample_fd``: classifier Fréchet distance of generated images against the test images;
- ``recon_fd`` / ``recon_ssim``: the autoencoder floor, reconstructions ``D(bottleneck(mu(x)))``
  of the test images against those images (so decoder blur and diffusion quality separate);
- input robustness (``fgsm_*`` / ``pgd_*`` / ``pgd_ours_*``): FGSM, the paper's PGD (step
  0.005) and our PGD with step ``eps / 4`` (L-inf, on the encoder input, maximising the
  reconstruction loss) and the change they cause in SSIM and classifier Fréchet distance of the
  reconstructions; once attacking one drawn noise trajectory per step and image, and once
  (``eot_*``) with Expectation over Transformation: each step's gradient is averaged over
  ``eot_draws`` draws and the attacked metrics are averaged over as many draws;
- parameter robustness (``param_*``): relative-L2 perturbations of the PQC weights (or of the
  classical map's), the change in sample and reconstruction quality;
- ``r2_*``: how much of the channel the affine maps can absorb: R² of the noisy PQC outputs
  regressed affinely on the noiseless outputs of the same weights and inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from qldm.client import QuantumLayer
from qldm.hybrid.config import VARIANT_CHANNEL, parse_config
from qldm.hybrid.metrics import FeatureNet, feature_statistics, frechet_distance, ssim
from qldm.hybrid.qldm import QLDM, ConvVAE
from qldm.hybrid.train import Trainer


@dataclass(frozen=True)
class Sizes:
    """Model, budget and evaluation sizes shared by every cell of one experiment run.

    Attributes:
        image_size: digits are resized to ``image_size x image_size``.
        latent_dim: VAE latent size.
        n_qubits: PQC qubits.
        vae_channels: channels of the first VAE conv.
        vae_hidden: width of the VAE's dense layer.
        denoiser_hidden: width of the denoising MLP.
        timesteps: diffusion ``T``.
        ddim_steps: DDIM sampling steps.
        steps: Adam steps per model (the same for every variant and data size).
        batch_size: images per step.
        lr: Adam learning rate.
        kl_weight: weight of the KL term.
        noise_strength: ``p`` / ``gamma`` of the channels, std of the gaussian variant.
        n_eval: generated images and test images per metric.
        n_attack: test images attacked per attack (one noise draw per step).
        eps: attack and parameter-perturbation strengths.
        pgd_step: the paper's PGD step size.
        pgd_iters: PGD iterations (the paper's and ours).
        pgd_ours_step: our PGD's step as a fraction of ``eps`` (so that ``eps`` matters: the
            paper's ``pgd_step * pgd_iters`` cannot reach its larger ``eps``).
        eot_draws: noise draws per EOT gradient and per EOT evaluation.
        n_eot: test images attacked with EOT (the first of the ``n_attack``).
        eot_eps: the strengths attacked with EOT (every attack; a subset of ``eps`` to fit the
            time budget).
    """

    image_size: int = 16
    latent_dim: int = 4
    n_qubits: int = 4
    vae_channels: int = 8
    vae_hidden: int = 64
    denoiser_hidden: int = 64
    timesteps: int = 100
    ddim_steps: int = 20
    steps: int = 600
    batch_size: int = 64
    lr: float = 3e-3
    kl_weight: float = 0.1
    noise_strength: float = 0.05
    n_eval: int = 500
    n_attack: int = 200
    eps: tuple[float, ...] = (0.01, 0.05, 0.1)
    pgd_step: float = 0.005
    pgd_iters: int = 8
    pgd_ours_step: float = 0.25
    eot_draws: int = 8
    n_eot: int = 64
    eot_eps: tuple[float, ...] = (0.1,)


@dataclass(frozen=True)
class Cell:
    """One trained model.

    Attributes:
        placement: ``latent`` or ``generation``.
        variant: a config variant (``noiseless``, ``gaussian``, ``amp_damp``, ``bit_flip``,
            ``phase_flip``, ``classical``).
        seed: training seed (initialisation, batch order, every draw).
        n_train: training digits (the first ``n_train`` of one fixed shuffled order).
        layers: PQC depth ``L``.
    """

    placement: str
    variant: str
    seed: int
    n_train: int
    layers: int

    @property
    def noisy(self) -> bool:
        """Whether the variant has a quantum channel (trained with sampled trajectories)."""
        return VARIANT_CHANNEL[self.variant] != "none"


def cell_config(cell: Cell, sizes: Sizes) -> Any:
    """The validated :class:`QLDMConfig` of a cell."""
    return parse_config(
        {
            "name": f"seed000_{cell.placement}_{cell.variant}_s{cell.seed}",
            "variant": cell.variant,
            "seed": cell.seed,
            "model": {
                "latent_dim": sizes.latent_dim,
                "vae_channels": sizes.vae_channels,
                "vae_hidden": sizes.vae_hidden,
                "n_qubits": sizes.n_qubits,
                "layers": cell.layers,
                "noise_strength": sizes.noise_strength,
                "denoiser_hidden": sizes.denoiser_hidden,
                "denoiser_blocks": 2,
                "time_dim": 16,
                "placement": cell.placement,
                "noise_sampling": "trajectory" if cell.noisy else "expectation",
            },
            "diffusion": {
                "timesteps": sizes.timesteps,
                "sampler": "ddim",
                "ddim_steps": sizes.ddim_steps,
            },
            "train": {
                "steps": sizes.steps,
                "batch_size": sizes.batch_size,
                "lr": sizes.lr,
                "kl_weight": sizes.kl_weight,
                "score_repeats": 4,
                "threads": 1,
                "checkpoint_every": 10**9,
                "score_grad": "standardized",
            },
        }
    )


def train_cell(cell: Cell, sizes: Sizes, images: torch.Tensor) -> tuple[QLDM, float]:
    """Train a cell's model on ``images (N, 1, H, W)``; return it (eval mode) and its seconds."""
    cfg = cell_config(cell, sizes)
    trainer = Trainer(cfg, images=images, progress=False)
    for _ in range(cfg.train.steps):
        trainer.train_step()
    return trainer.model.eval(), trainer.elapsed


def _recon_logits(model: QLDM, x: torch.Tensor) -> torch.Tensor:
    mu, _ = model.vae.encode(x)
    return model.vae.decode_logits(model.bottleneck(mu))


def attack(
    model: QLDM,
    x: torch.Tensor,
    *,
    eps: float,
    step: float | None,
    iters: int,
    draws: int = 1,
) -> torch.Tensor:
    """FGSM (``iters == 1``, ``step = eps``) or PGD on the encoder input, L-inf ball ``eps``.

    Maximises the reconstruction loss ``BCE(D(bottleneck(mu(x + delta))), x)``; every iterate
    is projected on ``|delta|_inf <= eps`` and on images in ``[0, 1]``. PGD starts at ``x``
    (no random start), as Table 5's 8 iterations of step 0.005 suggest.

    With ``draws > 1`` this is Expectation over Transformation (Athalye et al. 2018): the batch
    is repeated ``draws`` times in one call, so a PQC with sampled noise draws an independent
    trajectory for every copy, and the step follows the sign of the loss averaged over the
    draws. A deterministic model gets ``draws`` identical copies, so the attack equals
    ``draws = 1`` (the same code for every variant).

    Args:
        model: the trained model (eval mode).
        x: ``(B, 1, H, W)`` images in [0, 1].
        eps: the L-inf radius.
        step: PGD step (``None``: FGSM, one step of ``eps``).
        iters: PGD iterations (1 for FGSM).
        draws: noise draws averaged per gradient (1: one drawn trajectory per image and step).

    Returns:
        ``(B, 1, H, W)`` adversarial images.

    Raises:
        ValueError: ``draws < 1``.
    """
    if draws < 1:
        raise ValueError(f"draws must be at least 1, not {draws}")
    target = x.repeat(draws, 1, 1, 1)
    adv = x.clone()
    for _ in range(iters):
        adv.requires_grad_(True)
        loss = ConvVAE.recon_loss(_recon_logits(model, adv.repeat(draws, 1, 1, 1)), target)
        (grad,) = torch.autograd.grad(loss, adv)
        with torch.no_grad():
            adv = adv + (eps if step is None else step) * grad.sign()
            adv = (x + (adv - x).clamp(-eps, eps)).clamp(0.0, 1.0)
    return adv.detach()


class FrechetTo:
    """Classifier Fréchet distances of many image sets to one fixed reference set.

    The FID formula of :func:`qldm.hybrid.metrics.frechet_distance`, with the reference's
    statistics and the PSD square root ``R = sigma1^(1/2)`` computed once, and
    ``tr (sigma1 sigma2)^(1/2) = sum_i sqrt(lambda_i(R sigma2 R))`` (the same eigenvalues,
    from a symmetric eigensolver): ~0.01 s per set instead of ``scipy.linalg.sqrtm``'s ~0.13 s,
    which EOT's ``draws`` sets per attack need.

    Args:
        reference: ``(N, 1, H, W)`` images.
        net: the metrics' digit classifier.
    """

    def __init__(self, reference: torch.Tensor, net: FeatureNet) -> None:
        self.net = net
        self.mu, self.sigma = feature_statistics(net.embed(reference).numpy())
        w, v = np.linalg.eigh(self.sigma)
        self.root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T

    def __call__(self, images: torch.Tensor) -> float:
        """The distance² of ``images (M, 1, H, W)``, ``M >= 2``, to the reference."""
        mu2, sigma2 = feature_statistics(self.net.embed(images).numpy())
        inner = self.root @ sigma2 @ self.root
        lam = np.linalg.eigvalsh((inner + inner.T) / 2.0)
        cross = float(np.sqrt(np.clip(lam, 0.0, None)).sum())
        diff = self.mu - mu2
        return float(diff @ diff + np.trace(self.sigma) + np.trace(sigma2) - 2.0 * cross)


@torch.no_grad()
def recon_quality(
    model: QLDM, x: torch.Tensor, clean: torch.Tensor, fd: FrechetTo, *, draws: int
) -> tuple[float, float]:
    """SSIM against ``clean (B, 1, H, W)`` and classifier FD to ``fd``'s reference of the
    reconstructions of ``x (B, 1, H, W)``, each averaged over ``draws`` noise draws (one
    batched call, so a sampled-noise PQC draws anew for every copy)."""
    recs = model.reconstruct(x.repeat(draws, 1, 1, 1)).split(x.shape[0])
    return sum(ssim(clean, r) for r in recs) / draws, sum(fd(r) for r in recs) / draws


ATTACKS = ("fgsm", "pgd", "pgd_ours")
"""FGSM, the paper's PGD (fixed step) and our PGD (step ``eps * pgd_ours_step``)."""


def input_robustness(
    model: QLDM, test: torch.Tensor, sizes: Sizes, net: FeatureNet
) -> dict[str, float]:
    """``{prefix}{attack}_{dssim|dfd}_{eps}``: the attacked minus the clean reconstruction
    quality, prefix ``""`` with one draw per step on ``n_attack`` images at every ``eps``,
    ``eot_`` with :func:`attack`'s EOT and :func:`recon_quality` over ``eot_draws`` draws on
    ``n_eot`` images at ``eot_eps``."""
    out: dict[str, float] = {}
    for prefix, draws, n, strengths in (
        ("", 1, sizes.n_attack, sizes.eps),
        ("eot_", sizes.eot_draws, sizes.n_eot, sizes.eot_eps),
    ):
        x = test[:n]
        fd = FrechetTo(x, net)
        base_ssim, base_fd = recon_quality(model, x, x, fd, draws=draws)
        for eps in strengths:
            for kind in ATTACKS:
                step = {"fgsm": None, "pgd": sizes.pgd_step, "pgd_ours": eps * sizes.pgd_ours_step}
                iters = 1 if kind == "fgsm" else sizes.pgd_iters
                adv = attack(model, x, eps=eps, step=step[kind], iters=iters, draws=draws)
                q_ssim, q_fd = recon_quality(model, adv, x, fd, draws=draws)
                out[f"{prefix}{kind}_dssim_{eps:g}"] = q_ssim - base_ssim
                out[f"{prefix}{kind}_dfd_{eps:g}"] = q_fd - base_fd
    return out


def _core_vector(model: QLDM) -> list[torch.nn.Parameter]:
    return list(model.bottleneck.core.parameters())


def perturb_core(model: QLDM, eps: float, generator: torch.Generator) -> list[torch.Tensor]:
    """Add ``eps * |theta| * u / |u|`` (``u`` standard normal) to the PQC's (or classical map's)
    parameters ``theta`` taken as one vector; return the old values to restore."""
    params = _core_vector(model)
    saved = [p.detach().clone() for p in params]
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    u = torch.randn(flat.shape, generator=generator, dtype=flat.dtype)
    delta = eps * flat.norm() * u / u.norm()
    with torch.no_grad():
        offset = 0
        for p in params:
            p.add_(delta[offset : offset + p.numel()].reshape(p.shape).to(p.dtype))
            offset += p.numel()
    return saved


def restore_core(model: QLDM, saved: Sequence[torch.Tensor]) -> None:
    """Undo :func:`perturb_core`."""
    with torch.no_grad():
        for p, old in zip(_core_vector(model), saved, strict=True):
            p.copy_(old)


def affine_r2(y: torch.Tensor, y0: torch.Tensor) -> float:
    """R² of ``y (N, n)`` regressed on ``[y0, 1] (N, n+1)`` by least squares, pooled over the
    ``n`` outputs: ``1 - SS_res / SS_tot``."""
    design = torch.cat([y0, torch.ones(y0.shape[0], 1, dtype=y0.dtype)], dim=1).double()
    target = y.double()
    coef = torch.linalg.lstsq(design, target).solution
    resid = target - design @ coef
    total = target - target.mean(dim=0)
    return float(1.0 - resid.pow(2).sum() / total.pow(2).sum().clamp_min(1e-30))


@torch.no_grad()
def absorption(model: QLDM, x: torch.Tensor, *, seed: int) -> dict[str, float]:
    """R² of the noisy PQC outputs on the noiseless ones, same weights and inputs.

    ``r2_expectation``: the channel's exact average (what the expectation mode trains on);
    ``r2_trajectory``: one sampled trajectory per input (what the sampled mode trains on).
    """
    pqc = model.bottleneck.pqc
    if pqc is None or pqc.spec.channel.kind == "none":
        return {}
    a = model.bottleneck.pqc_inputs(model.vae.encode(x)[0]).double()
    spec = pqc.spec.model_dump(mode="json")
    clean_spec = {**spec, "channel": {"kind": "none", "strength": 0.0}}
    out: dict[str, float] = {}
    layers = {
        "noiseless": QuantumLayer(clean_spec),
        "expectation": QuantumLayer(spec),
        "trajectory": QuantumLayer(spec, noise_sampling="trajectory", seed=seed),
    }
    values = {}
    for name, layer in layers.items():
        layer.weight.copy_(pqc.weight.detach())
        values[name] = layer.double()(a)
    out["r2_expectation"] = affine_r2(values["expectation"], values["noiseless"])
    out["r2_trajectory"] = affine_r2(values["trajectory"], values["noiseless"])
    return out


def _fd(real: torch.Tensor, fake: torch.Tensor, net: FeatureNet) -> float:
    return frechet_distance(real, fake, net=net)


@torch.no_grad()
def _sample(model: QLDM, n: int, seed: int) -> torch.Tensor:
    return model.sample(n, generator=torch.Generator().manual_seed(seed + 12_345))


def measure(
    model: QLDM,
    cell: Cell,
    sizes: Sizes,
    test: torch.Tensor,
    net: FeatureNet,
    *,
    robustness: bool,
    param_robustness: bool,
) -> dict[str, float]:
    """Every metric of one trained model (see the module docstring).

    Args:
        model: trained, eval mode.
        cell: its cell.
        sizes: the sizes.
        test: ``(N, 1, H, W)`` test images, ``N >= sizes.n_eval``.
        net: the metrics' digit classifier.
        robustness: run FGSM and PGD (one draw and EOT).
        param_robustness: run the parameter perturbations.

    Returns:
        Flat ``name -> value``.
    """
    real = test[: sizes.n_eval]
    out: dict[str, float] = {}
    samples = _sample(model, sizes.n_eval, cell.seed)
    out["sample_fd"] = _fd(real, samples, net)
    recon = model.reconstruct(real)
    out["recon_fd"] = _fd(real, recon, net)
    out["recon_ssim"] = ssim(real, recon)
    out.update(absorption(model, real[: sizes.n_attack], seed=cell.seed))
    if robustness:
        out.update(input_robustness(model, test, sizes, net))
    if param_robustness:
        gen = torch.Generator().manual_seed(cell.seed + 777)
        for eps in sizes.eps:
            saved = perturb_core(model, eps, gen)
            try:
                out[f"param_dfd_{eps:g}"] = (
                    _fd(real, _sample(model, sizes.n_eval, cell.seed), net) - out["sample_fd"]
                )
                out[f"param_dssim_{eps:g}"] = (
                    ssim(real, model.reconstruct(real)) - out["recon_ssim"]
                )
            finally:
                restore_core(model, saved)
    for key, value in out.items():
        if not math.isfinite(value):
            out[key] = float("nan")
    return out
