"""The quantum bottleneck in the latent path: ``latent_to_q -> PQC (+ channels) -> q_to_latent``.

``z (B, D) -> v = latent_to_q(z) -> PQC -> y = <Z_i> (B, n) -> q_to_latent(y) (B, D)``.

- ``angle_ry`` encoding: ``latent_to_q: R^D -> R^n`` and angles ``pi * tanh(v)``, so every
  angle stays in ``(-pi, pi)``.
- ``amplitude`` encoding: ``latent_to_q: R^D -> R^(2^n)`` and ``v / ||v||`` (Algorithm 1,
  lines 6-8); the backend prepares that real state.

The PQC is a :class:`qldm.client.QuantumLayer` (``ry_rz_brickwork``, ``L`` layers, the variant's
channel on every qubit after every layer); it is the only quantum part of the model, and the
only way ``hybrid`` reaches a backend. The ``gaussian`` variant runs the noiseless PQC and adds
``N(0, std^2)`` to its outputs ``y`` while training (the classical stand-in for the channels).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from qldm.client import QuantumLayer


class QuantumBottleneck(nn.Module):
    """Maps a latent through the PQC and back.

    Args:
        latent_dim: ``D``.
        spec: the PQC spec (dict or ``PQCSpec``), ``encoding`` ``angle_ry`` or ``amplitude``.
        gaussian_std: std of the classical output noise (training only); 0 disables it.
        init_scale: PQC weights start uniform in ``[-init_scale, init_scale]``.
        backend: ``QuantumLayer`` backend.
        url: evaluate the PQC on this qldm server (one job per forward).
        api_key: the server's API key.
        run_id: the run the server files the jobs under.

    Shapes:
        ``forward(z (B, D)) -> (B, D)``; :meth:`quantum_features` ``(B, D) -> (B, n)``.
    """

    def __init__(
        self,
        latent_dim: int,
        spec: Mapping[str, Any] | Any,
        *,
        gaussian_std: float = 0.0,
        init_scale: float = 0.5,
        backend: str = "exact",
        url: str | None = None,
        api_key: str | None = None,
        run_id: str | None = None,
    ) -> None:
        super().__init__()
        self.pqc = QuantumLayer(
            spec, backend=backend, init_scale=init_scale, url=url, api_key=api_key, run_id=run_id
        )
        s = self.pqc.spec
        self.encoding = s.encoding
        self.latent_to_q = nn.Linear(latent_dim, s.n_inputs)
        self.q_to_latent = nn.Linear(s.n_outputs, latent_dim)
        self.gaussian_std = float(gaussian_std)

    def pqc_inputs(self, z: torch.Tensor) -> torch.Tensor:
        """The PQC inputs for latents ``z (B, D)``: ``(B, n)`` angles or ``(B, 2^n)`` amplitudes."""
        v = self.latent_to_q(z)
        if self.encoding == "amplitude":
            # A tiny constant keeps the all-zero vector (not a state) out of reach.
            v = v + 1e-6
            return v / v.norm(dim=1, keepdim=True)
        return math.pi * torch.tanh(v)

    def quantum_features(
        self, z: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Expectation values ``<Z_i>`` ``(B, n)`` (+ the Gaussian variant's noise in training)."""
        y = self.pqc(self.pqc_inputs(z))
        if self.training and self.gaussian_std > 0:
            y = y + self.gaussian_std * torch.randn(y.shape, generator=generator, dtype=y.dtype)
        return y

    def forward(self, z: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``q_to_latent(PQC(latent_to_q(z)))``: ``(B, D) -> (B, D)``."""
        out: torch.Tensor = self.q_to_latent(self.quantum_features(z, generator=generator))
        return out
