"""The diffusion U-Net of De Falco et al. (2024) and its hybrid variants.

``UNet(arch)`` is ``eps_theta(x_t (B, 1, 28, 28), t (B,)) -> (B, 1, 28, 28)``:

- an initial 7x7 convolution to ``dim`` channels and a sinusoidal time embedding
  (``dim`` -> Dense(4 dim) -> GELU -> Dense(4 dim));
- four encoder levels (28, 14, 7 and 2 pixels; ``dim``, ``dim``, ``2 dim``, ``3 dim``
  channels with the paper's multipliers): two ResNet blocks and linear attention each, then a
  strided convolution (4x4; 7x7 for 7 -> 2);
- a 3x3 convolution to the vertex's ``4 dim`` channels (2x2x40 in the paper), and the vertex:
  ResNet block, full 4-head attention, ResNet block (:class:`Vertex`);
- the mirrored decoder with skip connections, a 3x3 convolution, the first feature map
  concatenated, a last ResNet block and a 1x1 convolution.

Hybrid variants (``arch.vertex == "quantum"``): the vertex's two ResNet blocks become QResNet
blocks, whose two convolutions are :class:`qldm.hybrid.unet.quantum.QuantumConv`; with
``arch.quanv`` both ResNet blocks of encoder level ``quanv_level`` become QuanResNet blocks
(quanvolution over 2x2 patches of 3 channels). The parameter names of everything outside the
vertex are the same in every variant, which is what transfer learning relies on
(:func:`transfer_weights`).
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from qldm.hybrid.config import ConfigError
from qldm.hybrid.qldm.denoiser import SinusoidalEmbedding
from qldm.hybrid.unet.blocks import (
    AttnBlock,
    Downsample,
    ResnetBlock,
    TimeScaleShift,
    Upsample,
)
from qldm.hybrid.unet.config import ArchConfig, level_sizes
from qldm.hybrid.unet.quantum import QuantumConv

__all__ = [
    "PAPER_PARAMETERS",
    "QuantumResnetBlock",
    "UNet",
    "Vertex",
    "paper_variant",
    "transfer_weights",
]

PAPER_PARAMETERS: dict[str, int] = {
    "classical": 483_321,
    "1HQConv": 475_329,
    "7HQConv": 440_985,
    "FullHQConv": 429_993,
    "QuanvU-Net": 474_293,
}
"""Parameter counts the paper reports (Table 2, Fig. 10)."""


def paper_variant(arch: ArchConfig) -> str | None:
    """The paper's name of ``arch`` when the paper reports its parameter count (HQConv, 3
    layers, the paper's widths), else ``None``."""
    if arch.dim != 10 or arch.dim_mults != (1, 2, 3, 4):
        return None
    if arch.vertex == "classical":
        return None if arch.quanv else "classical"
    if arch.vertex_ansatz != "hqconv" or arch.vertex_layers != 3:
        return None
    if arch.quanv:
        hq = arch.quanv_ansatz == "hqconv" and arch.quanv_layers == 3 and arch.quanv_groups == 1
        return "QuanvU-Net" if hq and arch.vertex_groups == 1 else None
    return {1: "1HQConv", 7: "7HQConv", 13: "FullHQConv"}.get(arch.vertex_groups)


VERTEX_PREFIX = "vertex."
"""Parameters under this prefix are not transferred."""


class QuantumResnetBlock(nn.Module):
    """A ResNet block (same channels in and out) whose convolutions are
    :class:`QuantumConv`: QuantumConv - GroupNorm - time scale/shift - swish - QuantumConv -
    GroupNorm - swish, plus the input.

    Args:
        channels: ``C``.
        time_dim: ``D_t``.
        groups: GroupNorm groups.
        **quantum: keyword arguments of :class:`QuantumConv` (``groups`` is ``qgroups``).
    """

    def __init__(self, channels: int, time_dim: int, *, groups: int, **quantum: Any) -> None:
        super().__init__()
        qgroups = quantum.pop("qgroups")
        self.conv0 = QuantumConv(channels, qgroups, **quantum)
        self.norm0 = nn.GroupNorm(groups, channels, eps=1e-6)
        self.time = TimeScaleShift(time_dim, channels)
        self.conv1 = QuantumConv(channels, qgroups, **quantum)
        self.norm1 = nn.GroupNorm(groups, channels, eps=1e-6)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.time(self.norm0(self.conv0(x)), temb))
        return x + F.silu(self.norm1(self.conv1(h)))


def _block(
    arch: ArchConfig, channels: int, time_dim: int, *, quantum: dict[str, Any] | None
) -> nn.Module:
    if quantum is None:
        return ResnetBlock(channels, channels, time_dim, groups=arch.groups)
    return QuantumResnetBlock(channels, time_dim, groups=arch.groups, **quantum)


class Vertex(nn.Module):
    """ResNet (or QResNet) block, full attention, ResNet (or QResNet) block on the 2x2 map."""

    def __init__(self, arch: ArchConfig, time_dim: int) -> None:
        super().__init__()
        mid = arch.mid_channels
        quantum = None
        if arch.vertex == "quantum":
            quantum = {
                "qgroups": arch.vertex_groups,
                "ansatz": arch.vertex_ansatz,
                "layers": arch.vertex_layers,
                "entangler_last": arch.full_vertex,
                "engine": arch.engine,
                "dtype": arch.quantum_dtype,
            }
        self.block0 = _block(arch, mid, time_dim, quantum=quantum)
        self.attn = AttnBlock(mid, heads=arch.heads, dim_head=arch.dim_head, linear=False)
        self.block1 = _block(arch, mid, time_dim, quantum=quantum)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return self.block1(self.attn(self.block0(h, temb)), temb)


class UNet(nn.Module):
    """The noise-prediction U-Net (classical, QVU-Net or QuanvU-Net by ``arch``).

    Args:
        arch: the architecture.
        in_channels: image channels (1).

    Shapes:
        ``forward(x (B, C, 28, 28), t (B,)) -> (B, C, 28, 28)``.
    """

    def __init__(self, arch: ArchConfig, *, in_channels: int = 1) -> None:
        super().__init__()
        self.arch = arch
        dim = arch.dim
        time_dim = 4 * dim
        self.embed = SinusoidalEmbedding(dim)
        self.time_mlp = nn.Sequential(
            nn.Linear(dim, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim)
        )
        self.init_conv = nn.Conv2d(in_channels, dim, 7, padding=3)
        widths = arch.level_channels()
        n = len(arch.dim_mults)
        self.down = nn.ModuleList()
        for ind, ch in enumerate(widths):
            quantum = None
            if arch.quanv and ind == arch.quanv_level:
                quantum = {
                    "qgroups": arch.quanv_groups,
                    "ansatz": arch.quanv_ansatz,
                    "layers": arch.quanv_layers,
                    "engine": arch.engine,
                    "dtype": arch.quantum_dtype,
                }
            level = nn.ModuleDict(
                {
                    "block0": _block(arch, ch, time_dim, quantum=quantum),
                    "block1": _block(arch, ch, time_dim, quantum=quantum),
                    "attn": AttnBlock(ch, heads=arch.heads, dim_head=arch.dim_head),
                }
            )
            if ind < n - 1:
                kernel = 7 if ind == n - 2 else 4
                level["down"] = Downsample(ch, dim * arch.dim_mults[ind], kernel=kernel)
            self.down.append(level)
        mid = arch.mid_channels
        self.to_mid = nn.Conv2d(widths[-1], mid, 3, padding=1)
        self.vertex = Vertex(arch, time_dim)
        self.up = nn.ModuleList()
        for ind in reversed(range(n)):
            dim_in = dim * arch.dim_mults[ind]
            skip = widths[ind]
            level = nn.ModuleDict(
                {
                    "block0": ResnetBlock(dim_in + skip, dim_in, time_dim, groups=arch.groups),
                    "block1": ResnetBlock(dim_in + skip, dim_in, time_dim, groups=arch.groups),
                    "attn": AttnBlock(dim_in, heads=arch.heads, dim_head=arch.dim_head),
                }
            )
            if ind > 0:
                level["up"] = Upsample(dim_in, dim * arch.dim_mults[ind - 1] if ind > 1 else dim)
            self.up.append(level)
        self.out_conv = nn.Conv2d(dim, dim, 3, padding=1)
        self.final = ResnetBlock(2 * dim, dim, time_dim, groups=arch.groups)
        self.final_conv = nn.Conv2d(dim, in_channels, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[-2:]) != (28, 28):
            raise ConfigError(f"expected (B, C, 28, 28), got {tuple(x.shape)}", field="x")
        temb = self.time_mlp(self.embed(t))
        h = self.init_conv(x)
        first = h
        hs = [h]
        for level in cast(list[nn.ModuleDict], list(self.down)):
            h = level["block0"](h, temb)
            hs.append(h)
            h = level["attn"](level["block1"](h, temb))
            hs.append(h)
            if "down" in level:
                h = level["down"](h)
        h = self.vertex(self.to_mid(h), temb)
        sizes = level_sizes()
        n = len(self.up)
        for i, level in enumerate(cast(list[nn.ModuleDict], list(self.up))):
            ind = n - 1 - i
            h = level["block0"](torch.cat([h, hs.pop()], dim=1), temb)
            h = level["block1"](torch.cat([h, hs.pop()], dim=1), temb)
            h = level["attn"](h)
            if "up" in level:
                h = level["up"](h, (sizes[ind - 1], sizes[ind - 1]))
        h = self.out_conv(h)
        h = self.final(torch.cat([h, first], dim=1), temb)
        return self.final_conv(h)

    # ------------------------------------------------------------------ quantum bookkeeping

    def quantum_convs(self) -> list[QuantumConv]:
        """Every :class:`QuantumConv` of the network, in forward order."""
        return [m for m in self.modules() if isinstance(m, QuantumConv)]

    def quantum_calls_per_forward(self) -> int:
        """``QuantumLayer`` calls of one forward pass (one per circuit spec per stage)."""
        return sum(1 + (q.entangler is not None) for q in self.quantum_convs())

    def circuits_per_image(self) -> int:
        """Circuit evaluations of one forward pass per image."""
        total = 0
        sizes = level_sizes()
        for name, module in self.named_modules():
            if isinstance(module, QuantumConv):
                size = 2 if name.startswith(VERTEX_PREFIX) else sizes[self.arch.quanv_level]
                total += module.circuits_per_image(size, size)
        return total

    def parameter_count(self) -> int:
        """Trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def paper_layout_parameter_count(self) -> int:
        """Parameters if every channel group had its own circuit weights (the paper's code)."""
        extra = sum(
            q.paper_layout_parameters() - sum(p.numel() for p in q.parameters())
            for q in self.quantum_convs()
        )
        return self.parameter_count() + extra


def transfer_weights(source: dict[str, torch.Tensor], target: nn.Module) -> list[str]:
    """Copy every weight but the vertex's from a (classical) U-Net state dict into ``target``.

    Args:
        source: a :class:`UNet` ``state_dict`` (e.g. a classical run's).
        target: the network to fine-tune (hybrid or classical).

    Returns:
        The names of the copied tensors.

    Raises:
        ConfigError: a non-vertex tensor of ``target`` is missing from ``source`` or has
            another shape (the two networks differ outside the vertex).
    """
    own = target.state_dict()
    copied: list[str] = []
    for name, value in own.items():
        if name.startswith(VERTEX_PREFIX):
            continue
        if name not in source:
            raise ConfigError(f"{name} is missing from the source network", field="transfer")
        if tuple(source[name].shape) != tuple(value.shape):
            raise ConfigError(
                f"{name} has shape {tuple(source[name].shape)} in the source, "
                f"{tuple(value.shape)} here",
                field="transfer",
            )
        copied.append(name)
    with torch.no_grad():
        for name in copied:
            own[name].copy_(source[name])
    return copied
