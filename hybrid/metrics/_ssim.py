"""Mean structural similarity (SSIM) of image batches, computed by scikit-image."""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity
from torch import Tensor

from qldm.hybrid.metrics._errors import MetricError

DEFAULT_WIN_SIZE = 7


def ssim_win_size(height: int, width: int) -> int:
    """The SSIM window side: 7 (scikit-image's default) or the largest odd side that fits.

    Raises:
        MetricError: an image side is smaller than 3.
    """
    side = min(DEFAULT_WIN_SIZE, height, width)
    if side % 2 == 0:
        side -= 1
    if side < 3:
        raise MetricError(f"images of {height}x{width} are too small for SSIM", field="x")
    return side


def ssim(x: Tensor, y: Tensor, *, data_range: float = 1.0) -> float:
    """Mean SSIM over a batch of image pairs.

    Each pair is scored by ``skimage.metrics.structural_similarity`` with its defaults (a
    uniform window, sample covariances, K1 = 0.01, K2 = 0.03) and window side
    :func:`ssim_win_size`; colour images use ``channel_axis`` (mean over channels). Per window:

        SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)),
        C1 = (K1 L)^2, C2 = (K2 L)^2, L = data_range.

    Args:
        x: ``(N, C, H, W)`` images.
        y: ``(N, C, H, W)`` images of the same shape.
        data_range: ``L``, the span of the pixel values (1 for ``[0, 1]``).

    Returns:
        The mean of the ``N`` per-image SSIMs, in ``[-1, 1]``.

    Raises:
        MetricError: shapes differ or are not 4-D, the batch is empty, an image is too small,
            a value is not finite, or ``data_range`` is not positive.
    """
    if x.ndim != 4 or tuple(x.shape) != tuple(y.shape):
        raise MetricError(
            f"x and y must both be (N, C, H, W) of one shape, got {tuple(x.shape)} and "
            f"{tuple(y.shape)}",
            field="y",
        )
    if x.shape[0] == 0:
        raise MetricError("the batch is empty", field="x")
    if not data_range > 0:
        raise MetricError(f"must be positive, got {data_range}", field="data_range")
    win_size = ssim_win_size(int(x.shape[2]), int(x.shape[3]))
    xs = x.detach().cpu().double().numpy()
    ys = y.detach().cpu().double().numpy()
    for field, values in (("x", xs), ("y", ys)):
        if not np.isfinite(values).all():
            raise MetricError("the images hold NaN or infinite values", field=field)
    scores = []
    for a, b in zip(xs, ys, strict=True):
        if a.shape[0] == 1:
            score = structural_similarity(a[0], b[0], win_size=win_size, data_range=data_range)
        else:
            score = structural_similarity(
                np.moveaxis(a, 0, -1),
                np.moveaxis(b, 0, -1),
                win_size=win_size,
                data_range=data_range,
                channel_axis=-1,
            )
        scores.append(float(score))
    return float(np.mean(scores))
