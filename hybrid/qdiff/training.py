"""Training and evaluation of the quantum diffusion models (one loop for all of them).

A model here is an ``nn.Module`` with ``loss(u0, labels, *, generator) -> scalar`` and
``sample(n, *, generator, labels=None) -> (n, d)`` unit vectors; quantum models also have
``quantum_parameters()`` (and, for QNGD, ``metric(block_diagonal=...)``).

Optimisers: ``adam`` (every parameter), or ``qngd``: QNGD on the PQC's weights, Adam on the
classical parameters, both stepping on the same loss and batch. Every step's loss and wall
time are recorded, so two optimisers are compared after the same number of steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from qldm.hybrid.config import ConfigError
from qldm.hybrid.qdiff.common import QDiffModel
from qldm.hybrid.qdiff.data import AmplitudeData, to_images
from qldm.hybrid.qdiff.quantum_unet import PQCDenoiser, QuantumUNet
from qldm.hybrid.qngd import QNGD

__all__ = ["FitResult", "evaluate", "fit", "test_loss"]

Optimizer = Literal["adam", "qngd"]


@dataclass
class FitResult:
    """What one training run did.

    Attributes:
        losses: ``(steps,)`` training loss of every step.
        seconds: ``(steps,)`` wall time since the start after every step.
        optimizer: ``adam`` or ``qngd``.
    """

    losses: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    optimizer: str = "adam"

    @property
    def steps(self) -> int:
        """Steps taken."""
        return len(self.losses)

    @property
    def elapsed(self) -> float:
        """Wall time of the whole run."""
        return self.seconds[-1] if self.seconds else 0.0

    def final_loss(self, *, window: int = 10) -> float:
        """Mean loss of the last ``window`` steps."""
        tail = self.losses[-window:]
        return float(sum(tail) / len(tail)) if tail else float("nan")


def _optimizers(
    model: QDiffModel,
    optimizer: Optimizer,
    *,
    lr: float,
    qngd_lr: float,
    damping: float,
    block_diagonal: bool,
) -> list[torch.optim.Optimizer]:
    if optimizer == "adam":
        return [torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)]
    if optimizer != "qngd":
        raise ConfigError(f"optimizer: must be 'adam' or 'qngd', got {optimizer!r}")
    if not isinstance(model, QuantumUNet | PQCDenoiser):
        raise ConfigError(f"optimizer: {type(model).__name__} has no QNGD metric")
    quantum = list(model.quantum_parameters())
    ids = {id(p) for p in quantum}
    classical = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    opts: list[torch.optim.Optimizer] = [
        QNGD(
            quantum, metric=model.metric(block_diagonal=block_diagonal), lr=qngd_lr, damping=damping
        )
    ]
    if classical:
        opts.append(torch.optim.Adam(classical, lr=lr))
    return opts


def fit(
    model: QDiffModel,
    data: AmplitudeData,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    optimizer: Optimizer = "adam",
    qngd_lr: float = 0.05,
    damping: float = 1e-2,
    block_diagonal: bool = False,
    max_seconds: float | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``data`` for ``steps`` minibatch steps.

    Args:
        model: the model (see the module docstring).
        data: training vectors and labels.
        steps: optimiser steps.
        batch_size: samples per step.
        lr: Adam's learning rate.
        seed: seeds the batch order and every noise draw (same seed: same batches for every
            optimiser and model).
        optimizer: ``adam`` or ``qngd``.
        qngd_lr: QNGD's step size.
        damping: QNGD's damping ``λ``.
        block_diagonal: QNGD with the block-diagonal metric.
        max_seconds: stop after this much wall time.
        on_step: called with ``(step, loss)`` after every step.

    Returns:
        The :class:`FitResult`.
    """
    gen = torch.Generator().manual_seed(seed)
    opts = _optimizers(
        model, optimizer, lr=lr, qngd_lr=qngd_lr, damping=damping, block_diagonal=block_diagonal
    )
    result = FitResult(optimizer=optimizer)
    start = time.perf_counter()
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(data), (batch_size,), generator=gen)
        loss = model.loss(data.vectors[idx], data.labels[idx], generator=gen)
        for opt in opts:
            opt.zero_grad()
        loss.backward()
        for opt in opts:
            opt.step()
        result.losses.append(float(loss.detach()))
        result.seconds.append(time.perf_counter() - start)
        if on_step is not None:
            on_step(step, result.losses[-1])
        if max_seconds is not None and result.elapsed > max_seconds:
            break
    model.eval()
    return result


@torch.no_grad()
def test_loss(model: QDiffModel, data: AmplitudeData, *, seed: int, batch_size: int = 256) -> float:
    """The training loss on held-out data, with fixed draws (``seed``); mean over batches."""
    gen = torch.Generator().manual_seed(seed)
    total, n = 0.0, 0
    for start in range(0, len(data), batch_size):
        u = data.vectors[start : start + batch_size]
        lab = data.labels[start : start + batch_size]
        total += float(model.loss(u, lab, generator=gen)) * u.shape[0]
        n += u.shape[0]
    return total / max(n, 1)


def evaluate(
    model: QDiffModel,
    test: AmplitudeData,
    *,
    n_samples: int,
    seed: int,
    net: Any,
    labels: torch.Tensor | None = None,
    test_images: int | None = None,
) -> tuple[dict[str, float], torch.Tensor]:
    """Held-out loss, samples and the classifier Fréchet distance of the samples.

    Args:
        model: a trained model.
        test: held-out data (the same classes as training).
        n_samples: generated images.
        seed: seeds the test draws and the sampler.
        net: the metrics' digit classifier (:func:`qldm.hybrid.metrics.get_feature_net`).
        labels: classes to generate (conditioned models); default: as the model chooses.
        test_images: measure the test loss on the first this many test images (``None``: all);
            the Fréchet distance always uses all of them.

    Returns:
        ``({"test_loss", "classifier_frechet_distance", "sample_seconds"}, images (N, 1, s, s))``.
    """
    from qldm.hybrid.metrics import frechet_distance

    held = test
    if test_images is not None and test_images < len(test):
        held = AmplitudeData(
            test.vectors[:test_images],
            test.images[:test_images],
            test.labels[:test_images],
            test.side,
        )
    metrics = {"test_loss": test_loss(model, held, seed=seed)}
    gen = torch.Generator().manual_seed(seed + 1)
    t0 = time.perf_counter()
    vectors = model.sample(n_samples, generator=gen, labels=labels)
    metrics["sample_seconds"] = time.perf_counter() - t0
    images = to_images(vectors, side=test.side)
    metrics["classifier_frechet_distance"] = frechet_distance(test.images, images, net=net)
    return metrics, images
