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

from collections.abc import Callable
from typing import Any

import torch

from qldm.client import QuantumLayer
from qldm.hybrid.qdiff.common import ComplexLinear, mlp, unit
from qldm.hybrid.qdiff.x0_diffusion import X0Diffusion
from qldm.hybrid.qngd import layer_metric

__all__ = ["QuantumUNet"]


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
                raise RuntimeError("metric: run a forward pass first")
            return self._last_z[: self.metric_samples].double()

        return layer_metric(self.pqc, inputs, block_diagonal=block_diagonal)
