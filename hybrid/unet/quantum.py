"""Variational circuits in place of convolutions: the QResNet vertex and the quanvolution filter.

:class:`QuantumConv` replaces a 3x3 convolution ``C -> C`` on a map ``(B, C, H, W)`` (``H``, ``W``
even) by a 12-qubit circuit on the first ``3G`` channels and a classical convolution on the
rest, as in De Falco et al. (2024):

- the ``3G`` channels form ``G`` groups of 3 consecutive channels; every group and every 2x2
  patch is one circuit evaluation: 3 channels x 4 pixels = 12 inputs, qubit ``4c + 2dy + dx``
  holding channel ``c`` at pixel ``(dy, dx)`` of the patch (the ``hqconv``/``fqconv`` ansätze
  treat each 4 consecutive qubits as one channel), RX angle encoding, 3 ansatz layers, ``<Z>``
  on every qubit, written back to the same channel and pixel;
- at the 2x2 vertex there is one patch per image (QVU-Net); on the 14x14 encoder level the
  patches tile the map without overlap (the QuanvU-Net's quanvolution, stride 2);
- the remaining ``C - 3G`` channels go through a weight-standardised 3x3 convolution, except
  when exactly one channel remains and ``entangler_last`` is set (the FullHQConv vertex): then
  that channel's 2x2 patches run through a 4-qubit basic entangler (RX on every qubit, a CNOT
  ring; 4 layers, as the paper's code).

All groups and patches of one stage are ONE :class:`qldm.client.QuantumLayer` call: the
``B * G * (H/2) * (W/2)`` circuits are rows of one batch, so the circuit weights are shared
across the groups of a stage, as a convolution kernel is shared across positions. (The paper's
code gives every group its own weights and evaluates it separately; see
:meth:`QuantumConv.paper_layout_parameters` for the parameter count that layout would have.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

from qldm.client import QuantumLayer
from qldm.hybrid.config import ConfigError
from qldm.hybrid.unet.blocks import WSConv2d

__all__ = ["QuantumConv", "QuantumEngine", "circuit_spec"]

QuantumEngine = Literal["adjoint", "autograd"]
"""``adjoint``: the exact backend returns values and Jacobians (fused statevector engine);
``autograd``: the torch simulator runs inside the autograd graph."""

QUBITS = 12
GROUP_CHANNELS = 3
ENTANGLER_LAYERS = 4


def circuit_spec(ansatz: str, layers: int) -> dict[str, Any]:
    """The 12-qubit PQC spec of one group: RX encoding, ``ansatz`` x ``layers``, Z on each."""
    return {
        "n_qubits": QUBITS,
        "encoding": "angle_rx",
        "ansatz": ansatz,
        "layers": layers,
        "observables": "z_each",
    }


def _layer(spec: Mapping[str, Any], engine: QuantumEngine, dtype: str) -> QuantumLayer:
    if engine == "adjoint":
        return QuantumLayer(dict(spec), autograd=False, backend_options={"dtype": dtype})
    return QuantumLayer(dict(spec))


def _to_patches(x: torch.Tensor, channels: int) -> torch.Tensor:
    """``(B, k*channels, H, W) -> (B * k * H/2 * W/2, channels * 4)``."""
    b, c, h, w = x.shape
    k = c // channels
    p = x.reshape(b, k, channels, h // 2, 2, w // 2, 2)
    return p.permute(0, 1, 3, 5, 2, 4, 6).reshape(-1, channels * 4)


def _from_patches(v: torch.Tensor, b: int, channels: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`_to_patches`: ``(B * k * H/2 * W/2, channels * 4) -> (B, k*channels,
    H, W)``."""
    p = v.reshape(b, -1, h // 2, w // 2, channels, 2, 2)
    return p.permute(0, 1, 4, 2, 5, 3, 6).reshape(b, -1, h, w)


class QuantumConv(nn.Module):
    """A 3x3 convolution ``C -> C`` whose first ``3G`` channels are 12-qubit circuits.

    Args:
        channels: ``C``.
        groups: ``G`` (``3G <= C``).
        ansatz: ``hqconv`` or ``fqconv``.
        layers: ansatz layers.
        entangler_last: with ``C - 3G == 1``, run the last channel through a 4-qubit basic
            entangler instead of a convolution.
        engine: see :data:`QuantumEngine`.
        dtype: the exact backend's precision for ``engine="adjoint"``.

    Shapes:
        ``forward(x (B, C, H, W)) -> (B, C, H, W)``, ``H`` and ``W`` even.

    Raises:
        ConfigError: ``3G > C``, ``G < 1``, or ``entangler_last`` with ``C - 3G != 1``
            (at construction); ``x`` of the wrong shape (in :meth:`forward`).
    """

    def __init__(
        self,
        channels: int,
        groups: int,
        *,
        ansatz: str = "hqconv",
        layers: int = 3,
        entangler_last: bool = False,
        engine: QuantumEngine = "adjoint",
        dtype: str = "float32",
    ) -> None:
        super().__init__()
        if groups < 1 or GROUP_CHANNELS * groups > channels:
            raise ConfigError(
                f"{groups} groups of {GROUP_CHANNELS} channels do not fit {channels}",
                field="groups",
            )
        rest = channels - GROUP_CHANNELS * groups
        if entangler_last and rest != 1:
            raise ConfigError(
                f"needs exactly one channel left over, got {rest}", field="entangler_last"
            )
        self.channels, self.groups = channels, groups
        self.circuit = _layer(circuit_spec(ansatz, layers), engine, dtype)
        self.entangler: QuantumLayer | None = None
        self.conv: WSConv2d | None = None
        if entangler_last:
            spec = {
                "n_qubits": 4,
                "encoding": "angle_rx",
                "ansatz": "basic_entangler",
                "layers": ENTANGLER_LAYERS,
            }
            self.entangler = _layer(spec, engine, dtype)
        elif rest:
            self.conv = WSConv2d(rest, rest, 3, padding=1)
        self.calls = 0
        self.circuits = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if c != self.channels or h % 2 or w % 2:
            raise ConfigError(
                f"expected (B, {self.channels}, H, W) with even H, W, got {tuple(x.shape)}",
                field="x",
            )
        q = GROUP_CHANNELS * self.groups
        rows = _to_patches(x[:, :q], GROUP_CHANNELS)
        parts = [_from_patches(self._run(self.circuit, rows), b, GROUP_CHANNELS, h, w)]
        rest = x[:, q:]
        if self.entangler is not None:
            out = self._run(self.entangler, _to_patches(rest, 1))
            parts.append(_from_patches(out, b, 1, h, w))
        elif self.conv is not None:
            parts.append(self.conv(rest))
        return torch.cat(parts, dim=1)

    def _run(self, layer: QuantumLayer, rows: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.circuits += rows.shape[0]
        return layer(rows)

    def circuits_per_image(self, height: int, width: int) -> int:
        """Circuit evaluations of one forward pass per image on an ``height x width`` map."""
        patches = (height // 2) * (width // 2)
        return patches * (self.groups + (1 if self.entangler is not None else 0))

    def paper_layout_parameters(self) -> int:
        """Parameters if every group had its own circuit weights (the paper's code)."""
        own = sum(p.numel() for p in self.parameters())
        return own + (self.groups - 1) * self.circuit.weight.numel()
