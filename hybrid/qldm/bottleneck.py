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
The ``classical`` variant has no PQC: :class:`ClassicalMap`, with exactly the PQC's parameter
count, maps the same angles to ``n`` outputs in ``(-1, 1)``, between the same affine maps.

``noise_sampling="trajectory"`` asks ``QuantumLayer`` for sampled noise: every sample of a batch
draws its own realisation of every channel at every call (training and evaluation alike), so a
noisy PQC is a random function, as on a device; ``expectation`` is the channels' exact average.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import nn

from qldm.client import QuantumLayer
from qldm.hybrid.config import ConfigError


class ClassicalMap(nn.Module):
    """The classical control of the PQC: ``y = tanh(W2 tanh(W1 a + b1) + b2)``, ``(B, n)``.

    A one-hidden-layer perceptron with exactly ``n_params`` weights: hidden width
    ``h = n_params // (2n)`` (for ``ry_rz_brickwork``, ``n_params = 2 n L``, so ``h = L`` and no
    bias), and the ``r = n_params - 2 n h`` remaining parameters as biases of the first ``r``
    pre-activations (hidden units first). No bias is needed otherwise: the affine maps around it
    (``latent_to_q``, ``q_to_latent``) carry them, as they do for the PQC. Outputs lie in
    ``(-1, 1)`` like the PQC's ``<Z_i>``.

    Args:
        n: inputs and outputs (the PQC's qubits).
        n_params: the parameter count to match (the PQC's ``n_weights``).
        init_scale: weights start uniform in ``[-s, s] / sqrt(fan_in)``; ``s = 1`` is PyTorch's
            ``Linear`` initialisation.

    Raises:
        ConfigError: ``n_params < 2n`` or a remainder that does not fit the biases.
    """

    def __init__(self, n: int, n_params: int, *, init_scale: float = 1.0) -> None:
        super().__init__()
        hidden = n_params // (2 * n)
        rest = n_params - 2 * n * hidden
        if hidden < 1 or rest > hidden + n:
            raise ConfigError(
                f"a classical map of {n_params} parameters on {n} units cannot be built",
                field="variant",
            )
        self.n, self.hidden, self.n_biases = n, hidden, rest
        bound1, bound2 = init_scale / math.sqrt(n), init_scale / math.sqrt(hidden)
        self.w1 = nn.Parameter(torch.empty(hidden, n).uniform_(-bound1, bound1))
        self.w2 = nn.Parameter(torch.empty(n, hidden).uniform_(-bound2, bound2))
        self.bias = nn.Parameter(torch.zeros(rest))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        """``a (B, n)`` -> ``(B, n)`` in ``(-1, 1)``."""
        b = torch.cat([self.bias, self.bias.new_zeros(self.hidden + self.n - self.n_biases)])
        h = torch.tanh(a @ self.w1.T + b[: self.hidden])
        return torch.tanh(h @ self.w2.T + b[self.hidden :])


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
        classical: replace the PQC by a :class:`ClassicalMap` of its parameter count (the
            ``classical`` variant); ``spec`` still fixes ``n`` and the count.
        noise_sampling: ``expectation`` or ``trajectory`` (see the module docstring).
        seed: seeds the trajectory draws (``QuantumLayer(seed=...)``).

    Raises:
        ConfigError: trajectory sampling requested from a ``QuantumLayer`` without it.

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
        classical: bool = False,
        noise_sampling: str = "expectation",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        extra: dict[str, Any] = {}
        if noise_sampling != "expectation":
            extra = {"noise_sampling": noise_sampling, "seed": seed}
        try:
            pqc = QuantumLayer(
                spec,
                backend=backend,
                init_scale=init_scale,
                url=url,
                api_key=api_key,
                run_id=run_id,
                **extra,
            )
        except TypeError as exc:  # a QuantumLayer that predates sampled noise
            raise ConfigError(
                f"this QuantumLayer cannot sample noise ({exc})", field="model.noise_sampling"
            ) from None
        s = pqc.spec
        self.noise_sampling = noise_sampling
        self.classical: ClassicalMap | None = None
        self.pqc: QuantumLayer | None = None
        if classical:
            if s.encoding != "angle_ry":
                raise ConfigError(
                    "the classical variant takes the angle_ry encoding", field="model.encoding"
                )
            self.classical = ClassicalMap(s.n_qubits, s.n_weights)
        else:
            self.pqc = pqc
        self.encoding = s.encoding
        self.latent_to_q = nn.Linear(latent_dim, s.n_inputs)
        self.q_to_latent = nn.Linear(s.n_outputs, latent_dim)
        self.gaussian_std = float(gaussian_std)

    @property
    def core(self) -> nn.Module:
        """The map between the affine maps: the PQC, or the classical map."""
        return self.pqc if self.pqc is not None else cast(nn.Module, self.classical)

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
        """``<Z_i>`` ``(B, n)`` (+ the Gaussian variant's noise in training), or the classical
        map's outputs."""
        y: torch.Tensor = self.core(self.pqc_inputs(z))
        if self.training and self.gaussian_std > 0:
            y = y + self.gaussian_std * torch.randn(y.shape, generator=generator, dtype=y.dtype)
        return y

    def forward(self, z: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``q_to_latent(PQC(latent_to_q(z)))``: ``(B, D) -> (B, D)``."""
        out: torch.Tensor = self.q_to_latent(self.quantum_features(z, generator=generator))
        return out
