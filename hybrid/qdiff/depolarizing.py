"""Seed 004: decoherence as the forward process, a timestep-embedded Born machine as the reverse.

Forward: the clean digit ``u0`` is loaded as ``|u0>`` (``amplitude`` encoding) and depolarized,
``rho_t = a_t rho_0 + (1 - a_t) I/d``, realised by the spec's depolarizing channel after each
ansatz layer (:class:`DepolarizingSchedule`: per-layer strength ``1 - a_t^(1/L)``).

Reverse step: the PQC (MPS-like ansatz: RY pairs and a nearest-neighbour CNOT staircase, with
``t/T`` entering every angle) acts on ``rho_t``; its Born-rule statistics, sampled with a finite
number of shots, feed a classical decoder that predicts the clean state ``u_hat``::

    features = d · p_hat   (readout "probabilities": 2^n outcome frequencies)
             | <Z_i>, <Z_i Z_{i+1}>   (readout "z_correlators": what M3 mitigates on devices)
    u_hat = unit(softplus(decoder([features, t/T])))

Loss: infidelity ``1 - <u_hat|u0>^2``. One training step evaluates ``K`` timesteps of the
schedule: the batch is split into ``K`` groups, one noise level each, and all ``K`` levels travel
in one evaluation (one job, one submission on a device); sample ``b`` reads the level of its group.

Sampling (50 steps by default): start from a random state at the noisiest level; at each step
load the current estimate ``u_hat``, depolarize it to level ``t``, measure, decode. The
randomness is the start state and the Born-rule draws.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from qldm.client import QuantumLayer
from qldm.hybrid.config import ConfigError
from qldm.hybrid.qdiff.common import (
    DepolarizingSchedule,
    QDiffModel,
    born_sample,
    infidelity,
    mlp,
    unit,
)

__all__ = ["DepolarizingDiffusion"]

Readout = Literal["probabilities", "z_correlators"]
Encoding = Literal["amplitude", "angle"]


def _z_correlators(n: int) -> list[str]:
    labels = []
    for i in range(n):
        labels.append("".join("Z" if q == i else "I" for q in reversed(range(n))))
    for i in range(n - 1):
        labels.append("".join("Z" if q in (i, i + 1) else "I" for q in reversed(range(n))))
    return labels


class DepolarizingDiffusion(QDiffModel):
    """The depolarizing diffusion model.

    Args:
        d: amplitudes per sample (``2^n``).
        timesteps: ``T`` (the seed: 50).
        layers: ansatz layers ``L`` (the seed: 15).
        hidden: decoder width.
        readout: ``probabilities`` (exact/Aer) or ``z_correlators`` (devices).
        shots: Born-rule draws per sample for the decoder's input (``None``: exact
            probabilities); with ``z_correlators`` the backend's own shots apply.
        levels_per_step: ``K`` timesteps per training step (one evaluation).
        a_min: ``a_T``.
        min_strength: lowest per-layer depolarizing strength (a device's floor).
        init_scale: PQC weights start in ``U(-s, s)``.
        encoding: ``amplitude`` (the image as a ``log2(d)``-qubit state) or ``angle`` (for
            hardware backends, which do not prepare amplitude-encoded states: the image
            average-pooled to ``n_qubits`` = g x g pixels, ``RY(pi p / max p)`` on each qubit).
        n_qubits: qubits of the ``angle`` encoding (a square: 4, 9).
        circuit_timestep: ``t/T`` enters the ansatz's angles (the seed's timestep embedding);
            ``False`` leaves it to the decoder alone (for backends without the embedding).
        layer_options: further ``QuantumLayer`` keywords (``backend``, ``url``, ``shots``...).

    Raises:
        ConfigError: ``d`` is not a power of two, or ``n_qubits`` not a square dividing the
            image side.
    """

    def __init__(
        self,
        d: int,
        timesteps: int,
        *,
        layers: int,
        hidden: int,
        readout: Readout = "probabilities",
        shots: int | None = 512,
        levels_per_step: int = 4,
        a_min: float = 0.02,
        min_strength: float = 0.0,
        init_scale: float = 0.5,
        encoding: Encoding = "amplitude",
        n_qubits: int = 4,
        circuit_timestep: bool = True,
        layer_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        n = round(math.log2(d))
        if 2**n != d:
            raise ConfigError(f"d: {d} is not a power of two")
        self.side = math.isqrt(d)
        if encoding == "angle":
            g = math.isqrt(n_qubits)
            if g * g != n_qubits or self.side % g:
                raise ConfigError(
                    f"n_qubits: the angle encoding pools the {self.side}x{self.side} image to "
                    f"g x g = n_qubits pixels; {n_qubits} is not such a square"
                )
            n = n_qubits
        self.d, self.n, self.encoding = d, n, encoding
        self.circuit_timestep = circuit_timestep
        self.schedule = DepolarizingSchedule(
            timesteps, layers=layers, a_min=a_min, min_strength=min_strength
        )
        spec: dict[str, Any] = {
            "n_qubits": n,
            "encoding": "amplitude" if encoding == "amplitude" else "angle_ry",
            "ansatz": "mps",
            "layers": layers,
            "channel": {"kind": "depolarizing", "strength": 0.1},
        }
        if circuit_timestep:
            spec["timestep"] = {"features": 1}
        if readout == "z_correlators":
            spec["observables"] = _z_correlators(n)
            output, n_feat = "expectation", 2 * n - 1
        else:
            output, n_feat = "probabilities", 2**n
        self.readout = readout
        self.shots = shots if readout == "probabilities" else None
        self.levels_per_step = levels_per_step
        self.pqc = QuantumLayer(spec, output=output, init_scale=init_scale, **(layer_options or {}))
        self.decoder = mlp([n_feat + 1, hidden, hidden, d])

    def _features(self, out: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.readout == "probabilities":
            return out.shape[-1] * born_sample(out, self.shots, generator=generator)
        return out

    def _encode(self, u: torch.Tensor) -> torch.Tensor:
        """The layer's inputs: the amplitudes, or the pooled image's RY angles."""
        if self.encoding == "amplitude":
            return u.float()
        g = math.isqrt(self.n)
        img = u.abs().float().reshape(-1, 1, self.side, self.side)
        pooled = F.avg_pool2d(img, self.side // g).reshape(-1, self.n)
        return math.pi * pooled / pooled.amax(dim=1, keepdim=True).clamp_min(1e-12)

    def _decode(self, feats: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tau = (t.float() / self.schedule.T).unsqueeze(1)
        return unit(F.softplus(self.decoder(torch.cat([feats.float(), tau], dim=1))) + 1e-6)

    def predict(
        self, u: torch.Tensor, t: torch.Tensor, *, generator: torch.Generator
    ) -> torch.Tensor:
        """``(B, d)`` estimates of the clean state from ``u (B, d)`` depolarized to level
        ``t (B,)``; the distinct levels of ``t`` go in one evaluation."""
        levels, group = torch.unique(t, return_inverse=True)
        tau = (t.float() / self.schedule.T).unsqueeze(1)
        extra = {"t": tau} if self.circuit_timestep else {}
        out = self.pqc(self._encode(u), noise_levels=self.schedule.levels(levels), **extra)
        picked = out[group, torch.arange(u.shape[0])]  # sample b at its own level
        return self._decode(self._features(picked, generator), t)

    def loss(
        self, u0: torch.Tensor, labels: torch.Tensor, *, generator: torch.Generator
    ) -> torch.Tensor:
        """Mean infidelity of the clean-state estimate over ``K`` levels (``labels`` unused)."""
        b = u0.shape[0]
        k = min(self.levels_per_step, b)
        levels = torch.randint(1, self.schedule.T + 1, (k,), generator=generator)
        t = levels[torch.arange(b) % k]
        return infidelity(self.predict(u0, t, generator=generator), u0).mean()

    @torch.no_grad()
    def sample(
        self, n: int, *, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(n, d)`` generated unit vectors after ``T`` reverse steps (``labels`` unused)."""
        u = unit(torch.rand(n, self.d, generator=generator))
        for t in range(self.schedule.T, 0, -1):
            u = self.predict(u, torch.full((n,), t, dtype=torch.long), generator=generator)
        return u

    def quantum_parameters(self) -> list[nn.Parameter]:
        """The PQC's weights."""
        return [self.pqc.weight]
