"""FID proper: the Inception-v3 network of TensorFlow's FID code, re-implemented in torch.

torchvision does not import beside this torch build, and no weights can be fetched offline, so
this module holds its own copy of the architecture that pytorch-fid builds (torchvision's
``Inception3`` with 1008 classes, no auxiliary head, and the FID patches: the average pools of
the A, C and first E blocks exclude the zero padding, and the last E block max-pools). Module
names match torchvision's, so the weights file of pytorch-fid,
``pt_inception-2015-12-05-6726825d.pth`` (a state dict ported from TensorFlow's
``inception-2015-12-05``), loads strictly. Without that file there is no FID: callers skip it.

Pipeline, as pytorch-fid's ``fid_score``: images in ``[0, 1]`` (quantised to 8 bits, as the PNG
files that pytorch-fid reads would be; grayscale repeated to RGB), bilinear resize to 299x299
(``align_corners=False``), scaled to ``[-1, 1]``, the 2048-d output of the final average pool,
then the Fréchet distance of Gaussian fits (``eps = 1e-6``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qldm.hybrid.metrics._distances import feature_statistics, frechet_distance_from_features
from qldm.hybrid.metrics._errors import MetricError

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_FEATURE_DIM = 2048
_Pool = Literal["avg", "avg_exclude_pad", "max"]


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3), ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        *,
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _pool_3x3_same(x: Tensor, mode: _Pool) -> Tensor:
    if mode == "max":
        return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=mode == "avg")


class InceptionA(nn.Module):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | pool-1x1 (64 + 64 + 96 + pool_features)."""

    def __init__(self, in_channels: int, pool_features: int, *, pool: _Pool) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_pool_3x3_same(x, self.pool)),
            ],
            1,
        )


class InceptionB(nn.Module):
    """35x35 -> 17x17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2 (384 + 96 + in)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(
            [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, kernel_size=3, stride=2),
            ],
            1,
        )


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (4 x 192 channels out)."""

    def __init__(self, in_channels: int, channels_7x7: int, *, pool: _Pool) -> None:
        super().__init__()
        c7 = channels_7x7
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        seven = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = self.branch7x7dbl_1(x)
        for layer in (
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            double = layer(double)
        pooled = self.branch_pool(_pool_3x3_same(x, self.pool))
        return torch.cat([self.branch1x1(x), seven, double, pooled], 1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2 (320 + 192 + in)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        three = self.branch3x3_2(self.branch3x3_1(x))
        seven = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            seven = layer(seven)
        return torch.cat([three, seven, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3/3x1 outputs (320 + 768 + 768 + 192 = 2048 channels)."""

    def __init__(self, in_channels: int, *, pool: _Pool) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        three = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(three),
                self.branch3x3_2b(three),
                self.branch3x3dbl_3a(double),
                self.branch3x3dbl_3b(double),
                self.branch_pool(_pool_3x3_same(x, self.pool)),
            ],
            1,
        )


class FIDInceptionV3(nn.Module):
    """The Inception-v3 of TensorFlow's FID (``inception-2015-12-05``), as pytorch-fid builds it.

    ``forward`` maps ``(N, 3, H, W)`` images in ``[0, 1]`` to the ``(N, 2048)`` final-pool
    features. ``fc`` (2048 -> 1008) exists only so the weights file loads strictly.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32, pool="avg_exclude_pad")
        self.Mixed_5c = InceptionA(256, 64, pool="avg_exclude_pad")
        self.Mixed_5d = InceptionA(288, 64, pool="avg_exclude_pad")
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128, pool="avg_exclude_pad")
        self.Mixed_6c = InceptionC(768, 160, pool="avg_exclude_pad")
        self.Mixed_6d = InceptionC(768, 160, pool="avg_exclude_pad")
        self.Mixed_6e = InceptionC(768, 192, pool="avg_exclude_pad")
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg_exclude_pad")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(FID_FEATURE_DIM, 1008)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = 2.0 * x - 1.0
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (
            self.Mixed_5b,
            self.Mixed_5c,
            self.Mixed_5d,
            self.Mixed_6a,
            self.Mixed_6b,
            self.Mixed_6c,
            self.Mixed_6d,
            self.Mixed_6e,
            self.Mixed_7a,
            self.Mixed_7b,
            self.Mixed_7c,
        ):
            x = block(x)
        return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)


def load_fid_inception(weights_path: Path) -> FIDInceptionV3:
    """Build :class:`FIDInceptionV3` and load pytorch-fid's weights file into it (strictly).

    Raises:
        MetricError: the file is missing or its state dict does not fit the architecture.
    """
    path = Path(weights_path)
    if not path.is_file():
        raise MetricError(
            f"no Inception weights at {path} (expected pytorch-fid's {FID_WEIGHTS_FILE})",
            field="weights_path",
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise MetricError(f"{path} does not hold a state dict", field="weights_path")
    model = FIDInceptionV3()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise MetricError(
            f"{path} is not an FID Inception state dict: {exc}", field="weights_path"
        ) from exc
    return model.eval()


def _as_fid_input(images: Tensor, field: str) -> Tensor:
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise MetricError("must be an (N, 1 or 3, H, W) tensor in [0, 1]", field=field)
    x = (images.detach().float().clamp(0, 1) * 255).round() / 255
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


@torch.no_grad()
def inception_features(
    images: Tensor, model: FIDInceptionV3, *, batch_size: int = 50, field: str = "images"
) -> Tensor:
    """``(N, 2048)`` FID Inception features of ``(N, 1 or 3, H, W)`` images in ``[0, 1]``."""
    x = _as_fid_input(images, field)
    device = next(model.parameters()).device
    chunks = [
        model(x[i : i + batch_size].to(device)).double().cpu() for i in range(0, len(x), batch_size)
    ]
    return torch.cat(chunks) if chunks else torch.zeros(0, FID_FEATURE_DIM, dtype=torch.float64)


def inception_fid(
    real: Tensor,
    fake: Tensor,
    *,
    weights_path: Path,
    batch_size: int = 50,
    device: str | torch.device = "cpu",
) -> float:
    """FID between two image sets with the FID Inception-v3 (pytorch-fid's weights file).

    Args:
        real: ``(N, 1 or 3, H, W)`` images in ``[0, 1]``, ``N >= 2`` (use thousands for a
            meaningful value: FID is strongly biased for small sets).
        fake: ``(M, 1 or 3, H, W)`` images in ``[0, 1]``.
        weights_path: ``pt_inception-2015-12-05-6726825d.pth`` from pytorch-fid's releases.
        batch_size: images per forward pass.
        device: where the network runs.

    Returns:
        The FID (Fréchet distance² of Gaussian fits of the 2048-d pool features).

    Raises:
        MetricError: no weights file, a state dict that does not fit, or invalid images.
    """
    model = load_fid_inception(weights_path).to(device)
    mu1, s1 = feature_statistics(
        inception_features(real, model, batch_size=batch_size, field="real").numpy()
    )
    mu2, s2 = feature_statistics(
        inception_features(fake, model, batch_size=batch_size, field="fake").numpy()
    )
    return frechet_distance_from_features(mu1, s1, mu2, s2)
