"""Seed 001's hybrid quantum U-Net as an x0-predicting diffusion denoiser.

::

    [x_t, t/T] --ComplexLinear--> z (2^n complex) --complex amplitude encoding--> |z/|z|>
        --PQC U(θ)--> Born probabilities p (2^n) --> decoder MLP([d·p, x_t, t/T]) --> u_hat

The skip connection is the decoder's direct view of the (flattened) input ``x_t``. The loss is
the infidelity of ``u_hat`` against the clean state (:class:`X0Diffusion`). The PQC's weights can
be trained by QNGD (:meth:`QuantumUNet.metric`: the Fubini-Study metric of ``U(θ)|z>`` averaged
over a few of the batch's encoded states), the classical parts by Adam.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from qldm.client import QuantumLayer
from qldm.hybrid.config import ConfigError
from qldm.hybrid.qdiff.common import ComplexLinear, mlp, step_operator_layers, unit
from qldm.hybrid.qdiff.x0_diffusion import X0Diffusion
from qldm.hybrid.qngd import layer_metric

__all__ = ["PQCDenoiser", "QuantumUNet"]


class QuantumUNet(X0Diffusion):
    """The hybrid U-Net denoiser.

    Args:
        d: amplitudes (pixels) per sample.
        timesteps: ``T``.
        n_qubits: qubits of the bottleneck (``2^n`` complex latent amplitudes).
        layers: ansatz layers.
        hidden: decoder width.
        ansatz: the PQC's ansatz.
        init_scale: PQC weights start in ``U(-s, s)``.
        metric_samples: encoded states the QNGD metric is averaged over.
        layer_options: further ``QuantumLayer`` keywords (``backend``, ``url``, ``shots``...).
    """

    def __init__(
        self,
        d: int,
        timesteps: int,
        *,
        n_qubits: int,
        layers: int,
        hidden: int,
        ansatz: str = "ry_rz_brickwork",
        init_scale: float = 0.5,
        metric_samples: int = 4,
        layer_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(d, timesteps)
        q = 2**n_qubits
        self.encoder = ComplexLinear(d + 1, q)
        self.pqc = QuantumLayer(
            {
                "n_qubits": n_qubits,
                "encoding": "complex_amplitude",
                "ansatz": ansatz,
                "layers": layers,
            },
            output="probabilities",
            init_scale=init_scale,
            **(layer_options or {}),
        )
        self.decoder = mlp([q + d + 1, hidden, hidden, d])
        self.q = q
        self.metric_samples = metric_samples
        self._last_z: torch.Tensor | None = None

    def predict_x0(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tau = (t.float() / self.schedule.T).unsqueeze(1)
        z = self.encoder(torch.cat([xt, tau], dim=1))
        zr = torch.cat([z.real, z.imag], dim=1)
        self._last_z = zr.detach()
        p = self.pqc(zr)
        out = self.decoder(torch.cat([self.q * p, xt, tau], dim=1))
        return unit(out)

    def quantum_parameters(self) -> list[torch.nn.Parameter]:
        """The PQC's weights (what QNGD updates)."""
        return [self.pqc.weight]

    def metric(self, *, block_diagonal: bool = False) -> Callable[[], torch.Tensor]:
        """The QNGD metric callable: mean over the last batch's first encoded states."""

        def inputs() -> torch.Tensor:
            if self._last_z is None:
                raise ConfigError("metric: run a forward pass first", field="metric")
            return self._last_z[: self.metric_samples].double()

        return layer_metric(self.pqc, inputs, block_diagonal=block_diagonal)


class PQCDenoiser(X0Diffusion):
    """The U-Net's quantum bottleneck alone: the PQC maps ``|x_t>`` to the clean state.

    The ablation behind seed 001's QNGD argument: with the classical encoder, decoder and skip
    connection gone, every bit of the loss is the circuit's, so the optimiser of its weights is
    what is compared. ``x_t`` (``d = 2^n`` real amplitudes) is loaded by the
    ``complex_amplitude`` encoding, ``t/T`` enters every angle (timestep embedding), and the loss
    is ``1 - |<u0|U(θ, t)|x_t>|^2`` (the layer's ``fidelity`` output). The x0 estimate for
    sampling is the square root of the Born probabilities of ``U(θ, t)|x_t>``.

    Args:
        d: amplitudes per sample (``2^n``).
        timesteps: ``T``.
        layers: ansatz layers.
        ansatz: the ansatz.
        init_scale: weights start in ``U(-s, s)``.
        metric_samples: states the QNGD metric averages over.
        layer_options: further ``QuantumLayer`` keywords.
    """

    def __init__(
        self,
        d: int,
        timesteps: int,
        *,
        layers: int,
        ansatz: str = "ry_rz_brickwork",
        init_scale: float = 0.1,
        metric_samples: int = 4,
        layer_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(d, timesteps)
        n = round(math.log2(d))
        self.pqc, self.readout = step_operator_layers(
            n,
            layers=layers,
            ansatz=ansatz,
            features=1,
            init_scale=init_scale,
            layer_options=layer_options,
        )
        self.metric_samples = metric_samples
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def _inputs(self, xt: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([xt, torch.zeros_like(xt)], dim=1)
        tau = (t.float() / self.schedule.T).unsqueeze(1)
        self._last = (x.detach(), tau.detach())
        return x, tau

    def loss(
        self, u0: torch.Tensor, labels: torch.Tensor, *, generator: torch.Generator
    ) -> torch.Tensor:
        """Mean ``1 - |<u0|U(θ, t)|x_t>|^2`` at uniformly drawn ``t`` (``labels`` unused)."""
        b = u0.shape[0]
        t = torch.randint(1, self.schedule.T + 1, (b,), generator=generator)
        xt = self.schedule.add_noise(self.scale * u0, t, torch.randn(u0.shape, generator=generator))
        x, tau = self._inputs(xt, t)
        target = torch.cat([u0, torch.zeros_like(u0)], dim=1)
        return (1.0 - self.pqc(x, target=target, t=tau)).mean()

    def predict_x0(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x, tau = self._inputs(xt, t)
        return unit(self.readout(x, t=tau).clamp_min(0.0).sqrt())

    def quantum_parameters(self) -> list[torch.nn.Parameter]:
        """The PQC's weights."""
        return [self.pqc.weight]

    def metric(self, *, block_diagonal: bool = False) -> Callable[[], torch.Tensor]:
        """The QNGD metric callable: mean over the last batch's first states."""

        def last() -> tuple[torch.Tensor, torch.Tensor]:
            if self._last is None:
                raise ConfigError("metric: run a forward pass first", field="metric")
            x, tau = self._last
            return x[: self.metric_samples].double(), tau[: self.metric_samples].double()

        def inputs() -> torch.Tensor:
            return last()[0]

        def times() -> torch.Tensor:
            return last()[1]

        return layer_metric(self.pqc, inputs, t=times, block_diagonal=block_diagonal)
