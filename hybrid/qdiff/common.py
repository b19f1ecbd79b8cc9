"""What the quantum diffusion models share: noise schedules, ComplexLinear, the infidelity
loss, MLPs sized to a parameter budget and the ancestral sampler of an x0-predictor.

Shapes: ``d = 2^n`` amplitudes per sample, ``B`` samples; timesteps ``t`` are integers in
``1..T`` and enter networks and circuits as ``t / T``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from qldm.client import QuantumLayer
from qldm.hybrid.config import ConfigError

__all__ = [
    "ComplexLinear",
    "DepolarizingSchedule",
    "GaussianSchedule",
    "QDiffModel",
    "ancestral_sample",
    "born_sample",
    "complex_noise",
    "count_parameters",
    "infidelity",
    "mlp",
    "mlp_width_for",
    "step_operator_layers",
    "unit",
]

_EPS = 1e-12


class QDiffModel(nn.Module):
    """What the training loop and the reports need of a model.

    Subclasses implement :meth:`loss` and :meth:`sample`; quantum models also override
    :meth:`quantum_parameters` (and :class:`QuantumUNet` has ``metric`` for QNGD).
    """

    def loss(
        self, u0: torch.Tensor, labels: torch.Tensor, *, generator: torch.Generator
    ) -> torch.Tensor:
        """Scalar training loss of a batch ``u0 (B, d)`` with ``labels (B,)``."""
        raise NotImplementedError

    def sample(
        self, n: int, *, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(n, d)`` generated unit amplitude vectors."""
        raise NotImplementedError

    def quantum_parameters(self) -> list[nn.Parameter]:
        """The PQC's weights (none for a classical model)."""
        return []


def unit(z: torch.Tensor) -> torch.Tensor:
    """``(B, d)`` rows divided by their norms (real or complex)."""
    return z / z.abs().pow(2).sum(dim=-1, keepdim=True).sqrt().clamp_min(_EPS)


def infidelity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(B,)`` ``1 - |<a|b>|^2 / (|a|^2 |b|^2)`` of two batches of vectors (real or complex)."""
    inner = (a.conj() * b).sum(dim=-1) if a.is_complex() or b.is_complex() else (a * b).sum(-1)
    na = a.abs().pow(2).sum(dim=-1).clamp_min(_EPS)
    nb = b.abs().pow(2).sum(dim=-1).clamp_min(_EPS)
    return 1.0 - inner.abs().pow(2) / (na * nb)


def complex_noise(shape: tuple[int, ...], *, generator: torch.Generator) -> torch.Tensor:
    """Complex Gaussian noise ``(e_r + i e_i) / sqrt(2)``: unit variance per component."""
    re = torch.randn(shape, generator=generator)
    im = torch.randn(shape, generator=generator)
    return torch.complex(re, im) / math.sqrt(2.0)


def count_parameters(module: nn.Module) -> int:
    """Trainable scalars (a complex parameter counts as two)."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in module.parameters())


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers of the given sizes with SiLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


def mlp_width_for(
    budget: int, *, n_in: int, n_out: int, hidden_layers: int = 2, extra: int = 0
) -> int:
    """The hidden width ``h`` whose MLP ``n_in -> h (x hidden_layers) -> n_out`` has the
    parameter count closest to ``budget - extra`` (at least 1)."""
    target = budget - extra

    def count(h: int) -> int:
        return (n_in + 1) * h + (hidden_layers - 1) * (h + 1) * h + (h + 1) * n_out

    best = min(range(1, 4097), key=lambda h: abs(count(h) - target))
    return int(best)


class ComplexLinear(nn.Module):
    """``z = x W^T + b`` with complex ``W (out, in)`` and ``b (out,)``, real or complex ``x``.

    The real and imaginary parts are two real parameter tensors each (optimizers, state dicts
    and QNGD see real numbers). Initialisation: each part ``U(-1/sqrt(in), 1/sqrt(in))``.
    """

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(n_in)
        self.weight_re = nn.Parameter(torch.empty(n_out, n_in).uniform_(-bound, bound))
        self.weight_im = nn.Parameter(torch.empty(n_out, n_in).uniform_(-bound, bound))
        self.bias_re = nn.Parameter(torch.empty(n_out).uniform_(-bound, bound))
        self.bias_im = nn.Parameter(torch.empty(n_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in)`` -> ``(B, out)`` complex."""
        w = torch.complex(self.weight_re, self.weight_im)
        b = torch.complex(self.bias_re, self.bias_im)
        xc = x if x.is_complex() else torch.complex(x, torch.zeros_like(x))
        return xc @ w.T + b


class GaussianSchedule(nn.Module):
    """DDPM's linear beta schedule: ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``.

    Buffers ``alpha (T+1,)`` and ``abar (T+1,)`` (index 0: no noise).

    Args:
        timesteps: ``T >= 1``.
        beta_start: ``beta_1``.
        beta_end: ``beta_T`` (scaled by ``1000 / T`` so short chains reach noise too).
    """

    alpha: torch.Tensor
    abar: torch.Tensor

    def __init__(self, timesteps: int, *, beta_start: float = 1e-4, beta_end: float = 0.02):
        super().__init__()
        if timesteps < 1:
            raise ConfigError(f"timesteps: must be >= 1, got {timesteps}")
        scale = 1000.0 / timesteps
        betas = torch.linspace(beta_start * scale, min(beta_end * scale, 0.999), timesteps)
        alpha = torch.cat([torch.ones(1), 1.0 - betas])
        self.T = timesteps
        self.register_buffer("alpha", alpha)
        self.register_buffer("abar", torch.cumprod(alpha, dim=0))

    def add_noise(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """``x_t`` for ``x0 (B, d)``, ``t (B,)`` and noise ``eps (B, d)`` (real or complex)."""
        ab = self.abar[t].unsqueeze(1)
        return ab.sqrt() * x0 + (1.0 - ab).sqrt() * eps

    def step_noise(self, x_prev: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """One forward step: ``x_t = sqrt(alpha_t) x_{t-1} + sqrt(1 - alpha_t) eps``."""
        a = self.alpha[t].unsqueeze(1)
        return a.sqrt() * x_prev + (1.0 - a).sqrt() * eps

    def posterior(self, xt: torch.Tensor, x0: torch.Tensor, t: int) -> tuple[torch.Tensor, float]:
        """Mean and std of ``q(x_{t-1} | x_t, x_0)`` for one integer ``t >= 1``."""
        a, ab, ab_prev = float(self.alpha[t]), float(self.abar[t]), float(self.abar[t - 1])
        beta = 1.0 - a
        c0 = math.sqrt(ab_prev) * beta / (1.0 - ab)
        ct = math.sqrt(a) * (1.0 - ab_prev) / (1.0 - ab)
        var = beta * (1.0 - ab_prev) / (1.0 - ab)
        return c0 * x0 + ct * xt, math.sqrt(max(var, 0.0))


class DepolarizingSchedule:
    """Seed 004's forward process ``rho_t = a_t rho_0 + (1 - a_t) I/d``, as channel strengths.

    ``a_t`` falls linearly from 1 (``t = 0``) to ``a_min`` (``t = T``). The circuits realise it
    with the spec's depolarizing channel after each of the ``L`` ansatz layers: a per-layer,
    per-qubit strength ``s_t = 1 - a_t^(1/L)`` shrinks each qubit's Bloch vector by ``a_t`` in
    all (a global depolarizing channel commutes with every unitary, so "after every layer"
    and "once on the input" are the same channel; the per-qubit channel is its local,
    device-native version: it shrinks a weight-w Pauli component by ``a_t^w``, not ``a_t``).
    ``min_strength`` raises every per-layer strength to at least that value (on a device: the
    device's own floor, which the backend subtracts from what it injects).

    Args:
        timesteps: ``T``.
        layers: ansatz layers ``L``.
        a_min: ``a_T`` in ``(0, 1)``.
        min_strength: lowest per-layer strength.
    """

    def __init__(
        self, timesteps: int, *, layers: int, a_min: float = 0.02, min_strength: float = 0.0
    ) -> None:
        if timesteps < 1:
            raise ConfigError(f"timesteps: must be >= 1, got {timesteps}")
        if not 0.0 < a_min < 1.0:
            raise ConfigError(f"a_min: must lie in (0, 1), got {a_min}")
        self.T = timesteps
        self.layers = layers
        self.a = torch.linspace(1.0, a_min, timesteps + 1, dtype=torch.float64)
        s = 1.0 - self.a.pow(1.0 / layers)
        self.strength = s.clamp_min(min_strength).clamp_max(1.0)

    def levels(self, t: torch.Tensor) -> torch.Tensor:
        """``(K,)`` per-layer strengths of the integer timesteps ``t (K,)``."""
        return self.strength[t]


def born_sample(
    probs: torch.Tensor, shots: int | None, *, generator: torch.Generator
) -> torch.Tensor:
    """Frequencies of ``shots`` Born-rule draws from ``probs (B, d)``, straight-through.

    Returns ``probs`` unchanged when ``shots`` is ``None``; otherwise ``counts / shots`` in the
    forward pass with the gradient of ``probs`` (the draw's noise is a constant).
    """
    if shots is None:
        return probs
    p = probs.detach().clamp_min(0.0)
    p = p / p.sum(dim=1, keepdim=True).clamp_min(_EPS)
    draws = torch.multinomial(p.float(), shots, replacement=True, generator=generator)
    freq = torch.zeros_like(p).scatter_add_(1, draws, torch.ones_like(draws, dtype=p.dtype)) / shots
    return probs + (freq - probs).detach()


def ancestral_sample(
    predict_x0: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    schedule: GaussianSchedule,
    *,
    n: int,
    d: int,
    generator: torch.Generator,
    scale: float,
) -> torch.Tensor:
    """DDPM ancestral sampling with an x0-predictor, in the ``scale``-stretched space.

    Args:
        predict_x0: ``(x_t (n, d), t (n,)) -> unit x0 estimate (n, d)``.
        schedule: the Gaussian schedule.
        n: samples.
        d: dimension.
        generator: seeds the start and every step's noise.
        scale: data live at ``scale * u0`` (``sqrt(d)``: unit-variance components).

    Returns:
        ``(n, d)`` the last x0 estimate (unit rows).
    """
    x = torch.randn(n, d, generator=generator)
    x0 = unit(x)
    for t in range(schedule.T, 0, -1):
        tt = torch.full((n,), t, dtype=torch.long)
        x0 = predict_x0(x, tt)
        mean, std = schedule.posterior(x, scale * x0, t)
        x = mean + (std * torch.randn(n, d, generator=generator) if t > 1 else 0.0)
    return x0


def step_operator_layers(
    n_qubits: int,
    *,
    layers: int,
    ansatz: str,
    features: int,
    init_scale: float,
    layer_options: dict[str, Any] | None,
) -> tuple[QuantumLayer, QuantumLayer]:
    """One PQC ``U(θ, τ)`` on ``complex_amplitude`` states with a timestep embedding of
    ``features`` inputs, as two layers sharing one ``weight``: the ``fidelity`` output (training)
    and the ``probabilities`` output (Born-rule readout for sampling)."""
    spec = {
        "n_qubits": n_qubits,
        "encoding": "complex_amplitude",
        "ansatz": ansatz,
        "layers": layers,
        "timestep": {"features": features},
    }
    opts = layer_options or {}
    fidelity = QuantumLayer(spec, output="fidelity", init_scale=init_scale, **opts)
    readout = QuantumLayer(spec, output="probabilities", **opts)
    readout.weight = fidelity.weight  # one set of weights, two outputs
    return fidelity, readout
