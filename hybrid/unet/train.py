"""Training a U-Net diffusion model: reproducible, checkpointed, resumable, transferable.

``UNetTrainer(config, images=...).run()`` trains ``config.train.epochs`` epochs, writing
``<out_dir>/last.pt`` every ``checkpoint_every`` steps and at the end of every epoch; a run
that finds ``last.pt`` resumes from it (as ``qldm train`` does for the QLDM). Randomness
follows :mod:`qldm.hybrid.train`: the batch order of epoch ``e`` and every draw of step ``s``
come from generators seeded by ``(seed, e)`` and ``(seed, s)``, so a resumed run continues
exactly as the uninterrupted one.

Transfer learning (``train.transfer_from``): a fresh run loads the classical checkpoint,
copies every weight but the vertex's (:func:`qldm.hybrid.unet.model.transfer_weights`) into
the model and its EMA, and continues the source's epoch count: its epoch ``e`` uses the batch
order of epoch ``n + e`` of the source (``n`` epochs done there), so classical-then-hybrid sees
the same images in the same order as a run of ``n + m`` epochs. The optimiser starts afresh.

Checkpoint (``torch.save`` of a dict): ``format``, ``config``, ``model``, ``ema``,
``ema_updates``, ``optimizer``, ``rng``, ``step``, ``epoch_offset``, ``history`` (one record per
step: ``step, epoch, loss, seconds, circuits``), ``elapsed``, ``circuits``, ``image_shape``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qldm.hybrid.config import ConfigError
from qldm.hybrid.train import (
    EpochBatches,
    check_resumable,
    read_checkpoint,
    restore_rng,
    rng_state,
    save_checkpoint,
    step_generator,
)
from qldm.hybrid.unet.config import UNetConfig, parse_unet_config
from qldm.hybrid.unet.diffusion import EMA, DiffusionObjective
from qldm.hybrid.unet.model import UNet, transfer_weights

__all__ = [
    "CHECKPOINT_FORMAT",
    "UNetTrainResult",
    "UNetTrainer",
    "load_unet",
    "read_unet_checkpoint",
]

CHECKPOINT_FORMAT = "qldm-unet-checkpoint/1"
CHECKPOINT_NAME = "last.pt"


@dataclass(frozen=True)
class UNetTrainResult:
    """A finished (or time-limited) run.

    Attributes:
        checkpoint: path of ``last.pt``.
        steps: steps done in total.
        epochs: whole epochs done (of this run, without the transfer offset).
        history: per-step records.
        elapsed: training wall seconds.
        resumed_from: the step the run resumed at (0 for a fresh run).
    """

    checkpoint: Path
    steps: int
    epochs: int
    history: list[dict[str, float]]
    elapsed: float
    resumed_from: int


class UNetTrainer:
    """Builds the U-Net, its EMA and Adam from a config and runs the epochs.

    Args:
        config: the run configuration.
        images: ``(N, 1, 28, 28)`` float training images in ``[0, 1]``.
        out_dir: checkpoint folder (default ``config.output_dir``).
        progress: called with a progress line (step, epoch, loss, circuits per second) every
            ``log_every`` steps; ``None`` prints nothing.
        log_every: steps between progress lines.
        on_epoch: called as ``on_epoch(trainer, epoch)`` after every epoch (1-based, without
            the transfer offset), after the checkpoint is written.

    Raises:
        ConfigError: images of the wrong shape or fewer than one batch; a transfer source that
            is not a U-Net checkpoint or does not fit.
    """

    def __init__(
        self,
        config: UNetConfig,
        *,
        images: torch.Tensor,
        out_dir: Path | None = None,
        progress: Callable[[str], None] | None = print,
        log_every: int = 10,
        on_epoch: Callable[[UNetTrainer, int], None] | None = None,
    ) -> None:
        if images.ndim != 4 or tuple(images.shape[1:]) != (1, 28, 28):
            raise ConfigError(
                f"expected images (N, 1, 28, 28), got {tuple(images.shape)}", field="images"
            )
        if images.shape[0] < config.train.batch_size:
            raise ConfigError(
                f"{images.shape[0]} images is fewer than one batch of {config.train.batch_size}",
                field="train.batch_size",
            )
        self.config = config
        self.images = images.float().contiguous()
        self.out_dir = Path(out_dir) if out_dir is not None else config.output_dir
        self.progress = progress
        self.log_every = max(1, log_every)
        self.on_epoch = on_epoch
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
        torch.manual_seed(config.seed)
        self.model = UNet(config.arch)
        self.objective = DiffusionObjective(config)
        self.ema = EMA(
            self.model, max_decay=config.train.ema_max_decay, power=config.train.ema_power
        )
        tc = config.train
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=tc.lr, betas=(tc.beta1, tc.beta2)
        )
        self.step = 0
        self.epoch_offset = 0
        self.elapsed = 0.0
        self.circuits = 0
        self.history: list[dict[str, float]] = []
        self._batches = EpochBatches(self.images, tc.batch_size, config.seed)

    # ------------------------------------------------------------------ sizes

    @property
    def steps_per_epoch(self) -> int:
        return self._batches.per_epoch

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.train.epochs

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME

    # ------------------------------------------------------------------ checkpoints

    def state(self) -> dict[str, Any]:
        """The checkpoint dict."""
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.model_dump(mode="json"),
            "model": self.model.state_dict(),
            "ema": self.ema.model.state_dict(),
            "ema_updates": self.ema.updates,
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(),
            "step": self.step,
            "epoch_offset": self.epoch_offset,
            "history": self.history,
            "elapsed": self.elapsed,
            "circuits": self.circuits,
            "image_shape": tuple(int(v) for v in self.images.shape[1:]),
        }

    def save(self, path: Path | None = None) -> Path:
        """Write the checkpoint atomically (``last.pt`` unless ``path`` is given)."""
        return save_checkpoint(self.state(), path or self.checkpoint_path)

    def resume(self) -> bool:
        """Load ``last.pt`` if it exists; return whether it did.

        Raises:
            ConfigError: the checkpoint belongs to a different model, data or seed.
        """
        if not self.checkpoint_path.is_file():
            return False
        ckpt = read_unet_checkpoint(self.checkpoint_path)
        check_resumable(ckpt["config"], self.config.model_dump(mode="json"), self.checkpoint_path)
        self.model.load_state_dict(ckpt["model"])
        self.ema.model.load_state_dict(ckpt["ema"])
        self.ema.updates = int(ckpt["ema_updates"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        restore_rng(ckpt["rng"])
        self.step = int(ckpt["step"])
        self.epoch_offset = int(ckpt["epoch_offset"])
        self.history = list(ckpt["history"])
        self.elapsed = float(ckpt["elapsed"])
        self.circuits = int(ckpt["circuits"])
        return True

    def start_from_transfer(self, source: str | Path) -> list[str]:
        """Copy every non-vertex weight of the U-Net checkpoint ``source`` into the model and
        its EMA, and continue the source's epoch count.

        Returns:
            The names of the copied tensors.

        Raises:
            ConfigError: ``source`` is not a U-Net checkpoint of the same network outside the
                vertex, or ended inside an epoch.
        """
        ckpt = read_unet_checkpoint(source)
        src_cfg = parse_unet_config(ckpt["config"])
        per_epoch = int(self.images.shape[0]) // src_cfg.train.batch_size
        if per_epoch < 1 or int(ckpt["step"]) % per_epoch:
            raise ConfigError(
                f"{source} stopped inside an epoch (step {ckpt['step']}); transfer from an "
                "epoch's end",
                field="train.transfer_from",
            )
        try:
            copied = transfer_weights(ckpt["model"], self.model)
            transfer_weights(ckpt["model"], self.ema.model)
        except ConfigError as exc:
            raise ConfigError(str(exc), field="train.transfer_from") from None
        self.epoch_offset = int(ckpt["epoch_offset"]) + int(ckpt["step"]) // per_epoch
        return copied

    # ------------------------------------------------------------------ loop

    def batch(self, step: int) -> torch.Tensor:
        """The images of step ``step``: ``(B, 1, 28, 28)``."""
        return self._batches(step, epoch_offset=self.epoch_offset)

    def train_step(self) -> dict[str, float]:
        """One optimiser step (and an EMA update every ``ema_every`` steps)."""
        t0 = time.perf_counter()
        before = self._circuit_count()
        self.model.train()
        x = self.batch(self.step)
        global_step = self.step + self.epoch_offset * self.steps_per_epoch
        loss = self.objective.loss(
            self.model, x, generator=step_generator(self.config.seed, global_step)
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if (self.step + 1) % self.config.train.ema_every == 0:
            self.ema.update(self.model)
        self.step += 1
        self.elapsed += time.perf_counter() - t0
        self.circuits += self._circuit_count() - before
        record = {
            "step": float(self.step),
            "epoch": self.step / self.steps_per_epoch,
            "loss": float(loss.detach()),
            "seconds": self.elapsed,
            "circuits": float(self.circuits),
        }
        self.history.append(record)
        return record

    def _circuit_count(self) -> int:
        return sum(q.circuits for q in self.model.quantum_convs())

    def run(self, *, max_seconds: float | None = None) -> UNetTrainResult:
        """Train to ``config.train.epochs`` (resuming or transferring first).

        Args:
            max_seconds: stop after this many seconds in this call (overrides
                ``config.train.max_seconds``); the checkpoint is written either way.
        """
        resumed = self.resume()
        if not resumed and self.config.train.transfer_from:
            self.start_from_transfer(self.config.train.transfer_from)
        start = self.step
        limit = max_seconds if max_seconds is not None else self.config.train.max_seconds
        began = time.perf_counter()
        total = self.total_steps
        while self.step < total:
            record = self.train_step()
            if self.progress is not None and (
                self.step % self.log_every == 0 or self.step == total
            ):
                rate = record["circuits"] / max(record["seconds"], 1e-9)
                self.progress(
                    f"{self.config.name}: step {self.step}/{total} epoch "
                    f"{record['epoch']:.2f} loss {record['loss']:.4f} "
                    f"{rate:.0f} circuits/s {record['seconds']:.1f} s"
                )
            if self.step % self.steps_per_epoch == 0:
                self.save()
                epoch = self.step // self.steps_per_epoch
                if epoch in self.config.train.keep_epochs:
                    self.keep(f"epoch_{epoch}.pt")
                if self.on_epoch is not None:
                    self.on_epoch(self, epoch)
            elif self.step % self.config.train.checkpoint_every == 0:
                self.save()
            if limit is not None and time.perf_counter() - began >= limit:
                break
        path = self.save()
        return UNetTrainResult(
            checkpoint=path,
            steps=self.step,
            epochs=self.step // self.steps_per_epoch,
            history=self.history,
            elapsed=self.elapsed,
            resumed_from=start if resumed else 0,
        )

    def keep(self, name: str) -> Path:
        """Copy ``last.pt`` to ``name`` in the run folder (e.g. the state after an epoch)."""
        target = self.out_dir / name
        shutil.copyfile(self.checkpoint_path, target)
        return target


def read_unet_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :class:`UNetTrainer`.

    Raises:
        ConfigError: not a file, or not a U-Net checkpoint.
    """
    return read_checkpoint(path, fmt=CHECKPOINT_FORMAT)


def load_unet(path: str | Path, *, ema: bool = True) -> tuple[UNet, UNetConfig, dict[str, Any]]:
    """Rebuild a trained U-Net (eval mode) from a checkpoint: its EMA weights by default.

    Returns:
        ``(model, config, checkpoint_dict)``.
    """
    ckpt = read_unet_checkpoint(path)
    config = parse_unet_config(ckpt["config"])
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    model = UNet(config.arch)
    model.load_state_dict(ckpt["ema" if ema else "model"])
    model.eval()
    return model, config, ckpt
