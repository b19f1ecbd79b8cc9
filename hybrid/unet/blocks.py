"""The classical pieces of the diffusion U-Net of De Falco et al. (2024), in NCHW torch.

They follow the paper's Flax U-Net (the "improved DDPM" U-Net of Nichol & Dhariwal with the
annotated-diffusion blocks): weight-standardised 3x3 convolutions, GroupNorm, a time embedding
that scales and shifts the first normalised convolution, linear attention on the encoder and
decoder levels and full 4-head cosine-similarity attention at the vertex.

Shapes: every block maps ``x (B, C, H, W)`` (and ``temb (B, D_t)`` where it takes time) to
``(B, C_out, H', W')``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AttnBlock",
    "ChannelLayerNorm",
    "Downsample",
    "ResnetBlock",
    "TimeScaleShift",
    "Upsample",
    "WSConv2d",
]


class WSConv2d(nn.Conv2d):
    """A convolution with weight standardisation (Qiao et al. 2019).

    Each output filter is standardised over ``(C_in, kh, kw)`` before use:
    ``w' = (w - mean) / sqrt(var + 1e-5)``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
        return F.conv2d(
            x, (w - mean) / torch.sqrt(var + 1e-5), self.bias, self.stride, self.padding
        )


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of every pixel, with a scale and no bias (Flax's
    ``LayerNorm(use_bias=False)`` on NHWC): ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = x.var(dim=1, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + 1e-5) * self.weight[None, :, None, None]


class TimeScaleShift(nn.Module):
    """``h * (1 + scale) + shift`` with ``(scale, shift) = Dense(swish(temb))``.

    Args:
        time_dim: ``D_t``.
        channels: ``C`` of ``h``.
    """

    def __init__(self, time_dim: int, channels: int) -> None:
        super().__init__()
        self.dense = nn.Linear(time_dim, 2 * channels)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.dense(F.silu(temb))[:, :, None, None].chunk(2, dim=1)
        return h * (1 + scale) + shift


class ResnetBlock(nn.Module):
    """conv - GroupNorm - time scale/shift - swish - conv - GroupNorm - swish, plus the input
    (a 1x1 convolution when the channel counts differ).

    Args:
        in_channels: ``C_in``.
        channels: ``C`` of the output.
        time_dim: ``D_t``.
        groups: GroupNorm groups.
    """

    def __init__(self, in_channels: int, channels: int, time_dim: int, *, groups: int) -> None:
        super().__init__()
        self.conv0 = WSConv2d(in_channels, channels, 3, padding=1)
        self.norm0 = nn.GroupNorm(groups, channels, eps=1e-6)
        self.time = TimeScaleShift(time_dim, channels)
        self.conv1 = WSConv2d(channels, channels, 3, padding=1)
        self.norm1 = nn.GroupNorm(groups, channels, eps=1e-6)
        self.skip = nn.Conv2d(in_channels, channels, 1) if in_channels != channels else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.time(self.norm0(self.conv0(x)), temb))
        h = F.silu(self.norm1(self.conv1(h)))
        return (x if self.skip is None else self.skip(x)) + h


class _LinearAttention(nn.Module):
    def __init__(self, channels: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.qkv = nn.Conv2d(channels, 3 * heads * dim_head, 1, bias=False)
        self.out = nn.Conv2d(heads * dim_head, channels, 1)
        self.out_norm = ChannelLayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = (
            t.reshape(b, self.heads, self.dim_head, h * w) for t in self.qkv(x).chunk(3, dim=1)
        )
        q = q.softmax(dim=2) / self.dim_head**0.5  # over the head's features
        k = k.softmax(dim=3)  # over positions
        v = v / (h * w)
        context = torch.einsum("bhdn,bhen->bhde", k, v)
        out = torch.einsum("bhde,bhdn->bhen", context, q)
        return self.out_norm(self.out(out.reshape(b, -1, h, w)))


class _Attention(nn.Module):
    def __init__(self, channels: int, heads: int, dim_head: int, scale: float = 10.0) -> None:
        super().__init__()
        self.heads, self.dim_head, self.scale = heads, dim_head, scale
        self.qkv = nn.Conv2d(channels, 3 * heads * dim_head, 1, bias=False)
        self.out = nn.Conv2d(heads * dim_head, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = (
            t.reshape(b, self.heads, self.dim_head, h * w) for t in self.qkv(x).chunk(3, dim=1)
        )
        q, k = F.normalize(q, dim=2, eps=1e-12), F.normalize(k, dim=2, eps=1e-12)
        attn = (torch.einsum("bhdi,bhdj->bhij", q, k) * self.scale).softmax(dim=-1)
        out = torch.einsum("bhij,bhdj->bhdi", attn, v)
        return self.out(out.reshape(b, -1, h, w))


class AttnBlock(nn.Module):
    """Pre-norm multi-head attention with a residual: ``x + attn(LayerNorm(x))``.

    Args:
        channels: ``C``.
        heads: attention heads (the paper: 4).
        dim_head: features per head (32).
        linear: linear attention (encoder/decoder levels) or full cosine-similarity attention
            with scale 10 (the vertex).
    """

    def __init__(
        self, channels: int, *, heads: int = 4, dim_head: int = 32, linear: bool = True
    ) -> None:
        super().__init__()
        self.norm = ChannelLayerNorm(channels)
        self.attn: nn.Module = (
            _LinearAttention(channels, heads, dim_head)
            if linear
            else _Attention(channels, heads, dim_head)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn(self.norm(x))


class Downsample(nn.Module):
    """A strided convolution that halves the size: kernel 4, stride 2, padding 1
    (28 -> 14 -> 7); ``kernel=7`` gives the paper's 7 -> 2 step."""

    def __init__(self, in_channels: int, channels: int, *, kernel: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, kernel, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour resize to ``size`` then a 3x3 convolution (2 -> 7 -> 14 -> 28)."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=size, mode="nearest"))
