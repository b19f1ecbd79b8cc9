"""Training a QLDM: reproducible, checkpointed, resumable.

``Trainer(config, images=...).run()`` trains for ``config.train.steps`` optimiser steps (or
until ``max_seconds`` of wall time), writing ``<out_dir>/last.pt`` every ``checkpoint_every``
steps and at the end. If ``last.pt`` exists when a run starts, it resumes from it.

Reproducibility: model initialisation draws from ``torch.manual_seed(seed)``; the batch order
of epoch ``e`` is a permutation drawn from a generator seeded with ``(seed, e)``, and every
random draw of step ``s`` (VAE noise, timesteps, diffusion noise, Gaussian-variant noise) comes
from a generator seeded with ``(seed, s)``. No draw depends on how many steps ran before in
this process, so the same seed gives the same run bitwise on CPU (same thread count), and a
resumed run continues exactly as the uninterrupted one would have.

Checkpoint contents (``torch.save`` of a dict): ``format``, ``config`` (the run config),
``model`` and ``optimizer`` state dicts, ``rng`` (torch, Python and NumPy global states),
``step`` (steps done), ``history`` (one dict per step: ``step, loss, score, recon, kl,
seconds, cpu_seconds``), ``elapsed`` (training wall seconds so far), ``cpu_elapsed`` (CPU
seconds of this process in training steps; on a shared machine the fairer cost),
``image_shape`` ``(C, H, W)``.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qldm.client import QuantumLayer
from qldm.hybrid.config import ConfigError, QLDMConfig, parse_config
from qldm.hybrid.qldm.model import QLDM
from qldm.hybrid.run_losses import RunLossReporter

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "qldm-checkpoint/1"
CHECKPOINT_NAME = "last.pt"

_RESUMABLE_CHANGES = {"train", "eval", "out_dir", "name"}
"""Top-level config sections that may differ between a checkpoint and the resuming config."""


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or time-limited) run produced.

    Attributes:
        checkpoint: path of ``last.pt``.
        steps: steps done in total (including resumed ones).
        history: per-step records.
        elapsed: training wall seconds in total.
        resumed_from: the step the run resumed at (0 for a fresh run).
    """

    checkpoint: Path
    steps: int
    history: list[dict[str, float]]
    elapsed: float
    resumed_from: int


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of every random draw of training step ``step``."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The batch order of epoch ``epoch``: a permutation of ``n`` indices."""
    g = torch.Generator().manual_seed(seed * 7_919 + 1_000_000_007 + epoch)
    return torch.randperm(n, generator=g)


class EpochBatches:
    """The training batches of a trainer: each epoch in its :func:`epoch_permutation` order,
    the last partial batch dropped (the permutation kept while the epoch lasts).

    Args:
        images: ``(N, ...)`` the training set.
        batch_size: ``B``.
        seed: the run's seed.
    """

    def __init__(self, images: torch.Tensor, batch_size: int, seed: int) -> None:
        self.images, self.batch_size, self.seed = images, batch_size, seed
        self._epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    @property
    def per_epoch(self) -> int:
        """Steps per epoch."""
        return int(self.images.shape[0]) // self.batch_size

    def __call__(self, step: int, *, epoch_offset: int = 0) -> torch.Tensor:
        """The batch of step ``step`` (epochs counted from ``epoch_offset``)."""
        epoch, i = divmod(step, self.per_epoch)
        epoch += epoch_offset
        if epoch != self._epoch:
            self._perm = epoch_permutation(self.seed, epoch, int(self.images.shape[0]))
            self._epoch = epoch
        b = self.batch_size
        return self.images[self._perm[i * b : (i + 1) * b]]


class Trainer:
    """Builds the model and optimiser from a config and runs the training loop.

    Args:
        config: the run configuration.
        images: ``(N, C, H, W)`` float32 training images in [0, 1].
        url: train through this qldm server (``QuantumLayer(url=...)``).
        api_key: the server's API key.
        out_dir: checkpoint folder (default: ``config.output_dir``).
        progress: show a progress bar.
        on_step: called after every step with the step's record (e.g. a demo's own bar).
        execution_mode: with ``url``, the IBM Runtime execution mode of the server run's jobs
            (``job``, ``batch`` or ``session``; ``None``: the server's default, a Session, or
            batches where the plan refuses Sessions).

    The server run (with ``url``) is closed when :meth:`run` returns or is interrupted (an
    exception, Ctrl-C), so its runtime Session closes then, not at IBM's timeout; a later
    :meth:`run` of the same trainer opens a new one.

    Raises:
        ConfigError: images of the wrong shape, or fewer images than one batch.
    """

    def __init__(
        self,
        config: QLDMConfig,
        *,
        images: torch.Tensor,
        url: str | None = None,
        api_key: str | None = None,
        out_dir: Path | None = None,
        progress: bool = True,
        on_step: Callable[[dict[str, float]], None] | None = None,
        execution_mode: str | None = None,
    ) -> None:
        if images.ndim != 4:
            raise ConfigError(
                f"expected images (N, C, H, W), got {tuple(images.shape)}", field="images"
            )
        if images.shape[0] < config.train.batch_size:
            raise ConfigError(
                f"{images.shape[0]} images is fewer than one batch of {config.train.batch_size}",
                field="train.batch_size",
            )
        self.config = config
        self.images = images.float().contiguous()
        self.url = url
        self.api_key = api_key
        self.out_dir = Path(out_dir) if out_dir is not None else config.output_dir
        self.progress = progress
        self.on_step = on_step
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
        torch.manual_seed(config.seed)
        c, h, w = self.images.shape[1:]
        self.execution_mode = execution_mode
        self.run_id = (
            open_server_run(
                url,
                api_key=api_key,
                name=config.name,
                backend=config.backend,
                execution_mode=execution_mode,
            )
            if url
            else None
        )
        self.run_closed = False
        self.model = QLDM(
            config,
            in_channels=int(c),
            image_size=(int(h), int(w)),
            url=url,
            api_key=api_key,
            run_id=self.run_id,
        )
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=config.train.lr)
        self.step = 0
        self.elapsed = 0.0
        self.cpu_elapsed = 0.0
        self.history: list[dict[str, float]] = []
        self._batches = EpochBatches(self.images, config.train.batch_size, config.seed)

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME

    # ------------------------------------------------------------------ checkpoints

    def save(self) -> Path:
        """Write ``last.pt`` atomically (a temporary file, then a rename)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.model_dump(mode="json"),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(),
            "step": self.step,
            "history": self.history,
            "elapsed": self.elapsed,
            "cpu_elapsed": self.cpu_elapsed,
            "image_shape": tuple(int(v) for v in self.images.shape[1:]),
        }
        return save_checkpoint(state, self.checkpoint_path)

    def resume(self) -> bool:
        """Load ``last.pt`` if it exists; return whether it did.

        Raises:
            ConfigError: the checkpoint belongs to a different model, data or seed.
        """
        if not self.checkpoint_path.is_file():
            return False
        ckpt = read_checkpoint(self.checkpoint_path)
        check_resumable(ckpt["config"], self.config.model_dump(mode="json"), self.checkpoint_path)
        if tuple(ckpt["image_shape"]) != tuple(self.images.shape[1:]):
            raise ConfigError(
                f"checkpoint images {ckpt['image_shape']} differ from the data "
                f"{tuple(self.images.shape[1:])}",
                field="data",
            )
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        restore_rng(ckpt["rng"])
        self.step = int(ckpt["step"])
        self.history = list(ckpt["history"])
        self.elapsed = float(ckpt["elapsed"])
        self.cpu_elapsed = float(ckpt.get("cpu_elapsed", 0.0))
        return True

    # ------------------------------------------------------------------ loop

    def batch(self, step: int) -> torch.Tensor:
        """The images of step ``step``: ``(B, C, H, W)`` (epochs drop the last partial batch)."""
        return self._batches(step)

    def train_step(self) -> dict[str, float]:
        """Run one optimiser step and return its record."""
        t0, c0 = time.perf_counter(), time.process_time()
        tc = self.config.train
        self.model.train()
        x = self.batch(self.step)
        terms = self.model.loss(
            x,
            generator=step_generator(self.config.seed, self.step),
            recon_weight=tc.recon_weight,
            kl_weight=tc.kl_weight,
            score_repeats=tc.score_repeats,
        )
        self.optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        self.optimizer.step()
        self.model.update_ema(tc.ema_decay)
        self.step += 1
        self.elapsed += time.perf_counter() - t0
        self.cpu_elapsed += time.process_time() - c0
        record = {
            "step": float(self.step),
            "loss": float(terms.total.detach()),
            "score": terms.score,
            "recon": terms.recon,
            "kl": terms.kl,
            "seconds": self.elapsed,
            "cpu_seconds": self.cpu_elapsed,
        }
        self.history.append(record)
        return record

    def run(self, *, max_seconds: float | None = None) -> TrainResult:
        """Train to ``config.train.steps`` (resuming first), checkpointing along the way.

        Args:
            max_seconds: stop after this many training seconds in this call (overrides
                ``config.train.max_seconds``); the checkpoint is written either way.
        """
        self._reopen_run()
        try:
            return self._train(max_seconds)
        finally:  # the end, an exception or Ctrl-C: the server run and its Session close
            self.close_run()

    def close_run(self) -> None:
        """Close the server run (its runtime Session with it); a no-op without one, or when
        it is closed already. A failure to close is logged, never raised."""
        if self.url and self.run_id and not self.run_closed:
            close_server_run(self.url, api_key=self.api_key, run_id=self.run_id)
            self.run_closed = True
            # later evaluations (sampling, metrics) go as jobs of their own: a closed run takes
            # no new jobs
            self._point_layers_at(None)

    def _point_layers_at(self, run_id: str | None) -> None:
        for module in self.model.modules():
            if isinstance(module, QuantumLayer):
                module.run_id = run_id

    def _reopen_run(self) -> None:
        """A new server run for a :meth:`run` after the last one closed its run."""
        if not (self.url and self.run_closed):
            return
        self.run_id = open_server_run(
            self.url,
            api_key=self.api_key,
            name=self.config.name,
            backend=self.config.backend,
            execution_mode=self.execution_mode,
        )
        self.run_closed = False
        self._point_layers_at(self.run_id)

    def _train(self, max_seconds: float | None) -> TrainResult:
        resumed = self.resume()
        start = self.step
        total = self.config.train.steps
        limit = max_seconds if max_seconds is not None else self.config.train.max_seconds
        every = self.config.train.checkpoint_every
        began = time.perf_counter()
        bar = _ProgressBar(total, start, enabled=self.progress, label=f"train {self.config.name}")
        # the server's run gets the losses too (its dashboard draws them)
        losses = (
            RunLossReporter(self.url, api_key=self.api_key, run_id=self.run_id)
            if self.url and self.run_id
            else nullcontext()
        )
        with bar, losses:
            while self.step < total:
                record = self.train_step()
                bar.update(record)
                if isinstance(losses, RunLossReporter):
                    losses.add(record)
                if self.on_step is not None:
                    self.on_step(record)
                if self.step % every == 0:
                    self.save()
                if limit is not None and time.perf_counter() - began >= limit:
                    break
        path = self.save()
        return TrainResult(
            checkpoint=path,
            steps=self.step,
            history=self.history,
            elapsed=self.elapsed,
            resumed_from=start if resumed else 0,
        )


class _ProgressBar:
    """A rich progress bar with the running loss, or nothing."""

    def __init__(self, total: int, start: int, *, enabled: bool, label: str) -> None:
        self.enabled = enabled
        self.total, self.start, self.label = total, start, label
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _ProgressBar:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(
                self.label, total=self.total, completed=self.start, loss="-"
            )
        return self

    def update(self, record: dict[str, float]) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task,
                completed=int(record["step"]),
                loss=f"{record['loss']:.3f} (score {record['score']:.3f})",
            )

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)


def open_server_run(
    url: str,
    *,
    api_key: str | None,
    name: str,
    backend: str,
    execution_mode: str | None = None,
) -> str:
    """Open a run on the server (it groups this training's jobs); return its id."""
    from qldm.client import ServiceClient

    with ServiceClient(url, api_key=api_key) as client:
        run = client.create_run(name=name, backend=backend, execution_mode=execution_mode)
        return str(run["id"])


def close_server_run(url: str, *, api_key: str | None, run_id: str) -> None:
    """Close a run on the server (its runtime Session too); a failure is logged, not raised,
    so that it never hides why training stopped."""
    from qldm.client import ServiceClient

    try:
        with ServiceClient(url, api_key=api_key) as client:
            client.close_run(run_id)
    except Exception as exc:
        log.warning("could not close run %s on %s: %s", run_id, url, exc)


def save_checkpoint(state: dict[str, Any], path: Path) -> Path:
    """``torch.save`` atomically: a temporary file, then a rename. Returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pt.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def check_resumable(old: dict[str, Any], new: dict[str, Any], path: Path) -> None:
    """Refuse to resume from ``path`` when a config section other than ``train``, ``eval``,
    ``out_dir`` and ``name`` differs between the checkpoint (``old``) and this run (``new``).

    Raises:
        ConfigError: naming the first differing section.
    """
    for key in new:
        if key not in _RESUMABLE_CHANGES and old.get(key) != new[key]:
            raise ConfigError(
                f"{path} was written with a different {key!r}; use another out_dir or delete "
                "the checkpoint",
                field=key,
            )


def rng_state() -> dict[str, Any]:
    """torch's, Python's and NumPy's global random states (for a checkpoint)."""
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Restore the states :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


def read_checkpoint(path: str | Path, *, fmt: str = CHECKPOINT_FORMAT) -> dict[str, Any]:
    """Load a checkpoint dict written by :meth:`Trainer.save` (or another trainer's, whose
    ``format`` field is ``fmt``).

    Raises:
        ConfigError: not a file, or not a checkpoint of format ``fmt``.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no such checkpoint: {p}", field="checkpoint")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises several types for corrupt files
        raise ConfigError(f"cannot read checkpoint {p}: {exc}", field="checkpoint") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise ConfigError(f"{p} is not a qldm checkpoint ({fmt})", field="checkpoint")
    return ckpt


def load_model(
    path: str | Path, *, url: str | None = None, api_key: str | None = None
) -> tuple[QLDM, dict[str, Any]]:
    """Rebuild the trained model (in ``eval()`` mode) from a checkpoint.

    Returns:
        ``(model, checkpoint_dict)``.
    """
    ckpt = read_checkpoint(path)
    config = parse_config(ckpt["config"])
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    c, h, w = ckpt["image_shape"]
    model = QLDM(config, in_channels=int(c), image_size=(int(h), int(w)), url=url, api_key=api_key)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, ckpt
