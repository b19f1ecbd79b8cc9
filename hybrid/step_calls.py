"""The quantum circuit calls of one training step of a shipped config, without a device.

``qldm estimate`` prices a training step on a runtime device. For the QLDM configs the step is
one PQC batch (``config.pqc_spec()``, ``B`` rows); the seed-model configs build their
``QuantumLayer`` objects inside the model (``kind: unet``: :mod:`qldm.hybrid.unet.quantum`, one
call per quantum stage with ``B * G * (H/2) * (W/2)`` rows; ``qdiff`` kinds:
:mod:`qldm.hybrid.qdiff`, one call per PQC with ``B`` rows, ``K`` noise levels for the
depolarizing model, a metric-tensor call per step with QNGD). Rather than re-deriving each
model's call pattern, :func:`step_calls` builds the config's model on the exact simulator, runs
one training loss on a synthetic batch (the U-Nets: ``probe`` samples, rows then tiled to the
config's batch size, their rows being proportional to it; the qdiff models: the full batch),
and records what every ``QuantumLayer`` receives.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qldm.client import QuantumLayer
from qldm.hybrid.config import ConfigError

__all__ = ["StepCall", "StepCalls", "step_calls"]


@dataclass(frozen=True)
class StepCall:
    """One ``QuantumLayer`` evaluation of a training step at the config's batch size.

    Attributes:
        spec: the layer's PQC spec (``PQCSpec``).
        inputs: ``(N, I)`` complete inputs (timestep features appended), real or complex.
        weights: ``(P,)`` the layer's weights.
        noise_levels: ``(K,)`` strengths of this call, or ``None``.
        output: ``expectation``, ``probabilities`` or ``fidelity`` (the metric: ``expectation``).
        targets: ``(N, 2**n)`` complex targets (``fidelity`` only), else ``None``.
        shots: the layer's own shots (``None``: the caller's default).
        task: ``jacobian`` (a training forward and its gradient) or ``metric_tensor`` (QNGD).
        block_diagonal: ``metric_tensor`` only: the block-diagonal metric.
    """

    spec: Any
    inputs: np.ndarray
    weights: np.ndarray
    noise_levels: np.ndarray | None
    output: str
    targets: np.ndarray | None
    shots: int | None
    task: str
    block_diagonal: bool = False


@dataclass(frozen=True)
class StepCalls:
    """The config's name, batch size, calls (empty: no quantum circuit) and the Jacobian
    subset its hardware runs use (``quantum.gradient_budget``; ``None``: all shifts)."""

    name: str
    batch_size: int
    calls: list[StepCall]
    gradient_budget: int | None = None


def _tile(a: np.ndarray | None, reps: int) -> np.ndarray | None:
    return None if a is None else np.concatenate([a] * reps, axis=0)


class _Recorder:
    """Forward pre-hooks and metric-tensor wrappers on every ``QuantumLayer`` of a model."""

    def __init__(self, model: torch.nn.Module, *, shots: int | None = None) -> None:
        self.shots = shots
        self.raw: list[tuple[QuantumLayer, np.ndarray, Any, Any, str, bool]] = []
        self.layers = [m for m in model.modules() if isinstance(m, QuantumLayer)]
        for layer in self.layers:
            layer.register_forward_pre_hook(self._forward, with_kwargs=True)
            layer.metric_tensor = self._metric(layer, layer.metric_tensor)  # type: ignore[method-assign]

    def _inputs(self, layer: QuantumLayer, inputs: Any, t: Any) -> np.ndarray:
        from qldm.client._states import complete_inputs

        x = layer._check_inputs(complete_inputs(layer.spec, inputs, t))
        return np.asarray(x.detach().cpu().numpy())

    def _forward(
        self, layer: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        assert isinstance(layer, QuantumLayer)
        inputs = args[0] if args else kwargs["inputs"]
        x = self._inputs(layer, inputs, kwargs.get("t"))
        levels = kwargs.get("noise_levels")
        if levels is None:
            levels = layer.noise_levels
        lv = None if levels is None else np.asarray(torch.as_tensor(levels).detach().double())
        target = kwargs.get("target")
        tg = None if target is None else np.asarray(torch.as_tensor(target).detach())
        self.raw.append((layer, x, lv, tg, "jacobian", False))

    def _metric(self, layer: QuantumLayer, inner: Any) -> Any:
        def metric_tensor(
            inputs: torch.Tensor, *, t: Any = None, block_diagonal: bool = False
        ) -> torch.Tensor:
            x = self._inputs(layer, inputs, t)
            self.raw.append((layer, x, None, None, "metric_tensor", block_diagonal))
            return inner(inputs, t=t, block_diagonal=block_diagonal)

        return metric_tensor

    def calls(self, reps: int) -> list[StepCall]:
        out = []
        for layer, x, lv, tg, task, bd in self.raw:
            out.append(
                StepCall(
                    spec=layer.spec,
                    inputs=np.concatenate([x] * reps, axis=0),
                    weights=layer.weight.detach().cpu().double().numpy(),
                    noise_levels=lv,
                    output="expectation" if task == "metric_tensor" else layer.output.value,
                    targets=_tile(tg, reps),
                    shots=self.shots if self.shots is not None else layer.shots,
                    task=task,
                    block_diagonal=bd,
                )
            )
        return out


def _qdiff_step(path: Path) -> tuple[str, int, _Recorder | None, int]:
    """The qdiff models run at their full batch size (4-6 qubits: cheap): the depolarizing
    model's noise levels per step, ``min(levels_per_step, B)``, depend on the batch."""
    from qldm.hybrid.qdiff.config import load_qdiff_config
    from qldm.hybrid.qdiff.quantum_unet import PQCDenoiser, QuantumUNet
    from qldm.hybrid.qdiff.run import build_model

    cfg = load_qdiff_config(path)
    shots = cfg.quantum.shots
    exact = cfg.with_overrides(**{"quantum.backend": "exact", "quantum.shots": None})
    model = build_model(exact)
    batch = cfg.train.batch_size
    if not model.quantum_parameters():
        return cfg.name, batch, None, batch
    probe = batch
    rec = _Recorder(model, shots=shots)
    gen = torch.Generator().manual_seed(0)
    d = cfg.data.side**2
    u = torch.randn(probe, d, generator=gen, dtype=torch.float64).float()
    u = u / u.norm(dim=1, keepdim=True)
    labels = torch.randint(0, 10, (probe,), generator=gen)
    prepare = getattr(model, "prepare", None)
    if prepare is not None:  # qdm_denoiser: fit its codec (one step: only shapes matter here)
        prepare(u, steps=1, generator=gen)
    model.loss(u, labels, generator=gen)
    if cfg.train.optimizer == "qngd" and isinstance(model, QuantumUNet | PQCDenoiser):
        model.metric(block_diagonal=cfg.train.block_diagonal)()  # once per QNGD step
    return cfg.name, batch, rec, probe


def _unet_step(config: Any, probe: int) -> tuple[str, int, _Recorder | None, int]:
    from qldm.hybrid.unet.diffusion import DiffusionObjective
    from qldm.hybrid.unet.model import UNet

    torch.manual_seed(0)
    model = UNet(config.arch)
    rec = _Recorder(model)
    batch = config.train.batch_size
    if not rec.layers:
        return config.name, batch, None, probe
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(probe, 1, 28, 28, generator=gen)
    DiffusionObjective(config).loss(model, images, generator=gen)
    return config.name, batch, rec, probe


def step_calls(path: str | Path, *, probe: int = 2) -> StepCalls:
    """The ``QuantumLayer`` calls of one training step of the ``qdiff_*`` or ``unet_*`` config
    at ``path``, at its configured batch size.

    Args:
        path: a ``kind: unet`` or qdiff-kind config (``depolarizing_diffusion``,
            ``quantum_unet``, ``qdm_denoiser``).
        probe: ``kind: unet``: samples of the synthetic batch actually run (exact simulator,
            seconds; 12-qubit circuits); qdiff kinds run their full batch.

    Returns:
        The calls; ``calls == []`` when the config has no quantum circuit (a classical
        control).

    Raises:
        ConfigError: an invalid config, a QLDM config (price it with its ``pqc_spec()``), or a
            batch size that is not a multiple of ``probe`` (field ``probe``).
    """
    from qldm.hybrid.qdiff.config import is_qdiff_config, load_qdiff_config
    from qldm.hybrid.unet.config import UNetConfig, load_any_config

    path = Path(path)
    if is_qdiff_config(path):
        name, batch, rec, probe = _qdiff_step(path)
        budget = load_qdiff_config(path).quantum.gradient_budget
    else:
        config = load_any_config(path)
        if not isinstance(config, UNetConfig):
            raise ConfigError(
                f"{path} is a QLDM config: its step is config.pqc_spec() on the batch",
                field="kind",
            )
        name, batch, rec, probe = _unet_step(config, probe)
        budget = None
    if rec is None:
        return StepCalls(name, batch, [], budget)
    if batch % probe:
        raise ConfigError(
            f"batch size {batch} is not a multiple of the probe batch {probe}", field="probe"
        )
    return StepCalls(name, batch, rec.calls(batch // probe), budget)
