"""Fréchet distance and kernel (MMD) distance between feature distributions.

The formulas are those of FID (Heusel et al. 2017, as computed by pytorch-fid) and KID
(Bińkowski et al. 2018, as computed by torch-fidelity), but the features here come from qldm's
small digit classifier (:mod:`qldm.hybrid.metrics._feature_net`), not Inception-v3: report them as
``classifier_frechet_distance`` and ``classifier_kid_*``, never as FID or KID.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch
from numpy.typing import ArrayLike, NDArray
from torch import Tensor

from qldm.hybrid.metrics._errors import MetricError
from qldm.hybrid.metrics._feature_net import FeatureNet, get_feature_net

_Array = NDArray[np.float64]
_KID_PRECOMPUTE_ENTRIES = 3 * 2048 * 2048  # 100 MB of float64 kernel values


def feature_statistics(features: ArrayLike) -> tuple[_Array, _Array]:
    """Mean ``(D,)`` and sample covariance ``(D, D)`` of ``features`` ``(N, D)``, ``N >= 2``.

    Raises:
        MetricError: fewer than two rows or not 2-D.
    """
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] < 2:
        raise MetricError(
            f"need (N, D) features with N >= 2, got shape {feats.shape}", field="features"
        )
    return feats.mean(axis=0), np.atleast_2d(np.cov(feats, rowvar=False))


def frechet_distance_from_features(
    mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike, *, eps: float = 1e-6
) -> float:
    """Fréchet (2-Wasserstein) distance² between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

        d² = |mu1 - mu2|² + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))

    The matrix square root is ``scipy.linalg.sqrtm``. As in pytorch-fid, when it is not finite
    (singular covariances, e.g. fewer samples than dimensions) ``eps`` is added to both
    diagonals, and a small imaginary part from round-off is dropped.

    Args:
        mu1: ``(D,)`` mean (a scalar for ``D = 1``).
        sigma1: ``(D, D)`` covariance (a scalar for ``D = 1``).
        mu2: ``(D,)`` mean.
        sigma2: ``(D, D)`` covariance.
        eps: diagonal offset used only when the plain square root is not finite.

    Returns:
        The distance² (>= 0 up to round-off).

    Raises:
        MetricError: shapes do not match, or the square root has a large imaginary part.
    """
    m1, m2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    s2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    d = m1.shape[0]
    if m1.shape != (d,) or m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise MetricError(
            f"means {m1.shape}, {m2.shape} and covariances {s1.shape}, {s2.shape} do not match",
            field="sigma2",
        )
    diff = m1 - m2
    with warnings.catch_warnings():
        # Singular products (dead feature units, N < D) are expected; finiteness is checked.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = np.eye(d) * eps
            covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            largest = float(np.max(np.abs(covmean.imag)))
            raise MetricError(
                f"sqrtm(sigma1 sigma2) has an imaginary component {largest:.3g}", field="sigma2"
            )
        covmean = covmean.real
    value = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean)
    return float(value)


def _features(images: Tensor, net: FeatureNet | None, field: str) -> _Array:
    if not isinstance(images, Tensor) or images.ndim != 4:
        raise MetricError("must be an (N, C, H, W) tensor", field=field)
    model = net if net is not None else get_feature_net()
    return model.embed(images).numpy()


def frechet_distance(real: Tensor, fake: Tensor, *, net: FeatureNet | None = None) -> float:
    """Classifier Fréchet distance: the FID formula on the digit classifier's features.

    Args:
        real: ``(N, 1, H, W)`` images in ``[0, 1]``, ``N >= 2``.
        fake: ``(M, 1, H, W)`` images in ``[0, 1]``, ``M >= 2``.
        net: the feature net (default :func:`get_feature_net`, trained and cached).

    Returns:
        The Fréchet distance² between Gaussian fits of the two 128-d feature sets. Report it as
        ``classifier_frechet_distance``: it is not comparable with Inception FID.

    Raises:
        MetricError: the images are not grayscale ``(N, 1, H, W)`` or too few.
    """
    mu1, s1 = feature_statistics(_features(real, net, "real"))
    mu2, s2 = feature_statistics(_features(fake, net, "fake"))
    return frechet_distance_from_features(mu1, s1, mu2, s2)


def kernel_distance_from_features(
    real: ArrayLike,
    fake: ArrayLike,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Unbiased MMD² with the cubic polynomial kernel, averaged over random subsets (KID).

    ``k(x, y) = (x·y / D + 1)³``. For each of ``subsets`` draws of ``m`` rows (without
    replacement) from each set,

        MMD² = Σ_{i≠j} k(x_i, x_j) / (m(m-1)) + Σ_{i≠j} k(y_i, y_j) / (m(m-1))
               - 2 Σ_{i,j} k(x_i, y_j) / m²,

    with ``m = min(subset_size, N, M)``. When ``m`` equals both ``N`` and ``M`` every subset
    is the whole of both sets, so all subsets agree and ``std`` is 0: choose ``subset_size``
    below ``min(N, M)`` for a spread.

    Args:
        real: ``(N, D)`` features.
        fake: ``(M, D)`` features.
        subsets: number of random subsets.
        subset_size: rows per subset (capped at ``min(N, M)``).
        seed: seed of the subset draws.

    Returns:
        ``(mean, std)`` of the subset MMD² values (``std`` is 0 for one subset). The mean can be
        slightly negative when the distributions are equal: the estimator is unbiased.

    Raises:
        MetricError: shapes mismatch, fewer than 2 rows, or ``subsets``/``subset_size`` < 1/2.
    """
    x = np.asarray(real, dtype=np.float64)
    y = np.asarray(fake, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise MetricError(
            f"need (N, D) and (M, D) features, got {x.shape} and {y.shape}", field="fake"
        )
    if isinstance(subsets, bool) or not isinstance(subsets, int) or subsets < 1:
        raise MetricError(f"must be a positive integer, got {subsets!r}", field="subsets")
    if isinstance(subset_size, bool) or not isinstance(subset_size, int) or subset_size < 2:
        raise MetricError(f"must be an integer >= 2, got {subset_size!r}", field="subset_size")
    m = min(subset_size, x.shape[0], y.shape[0])
    if m < 2:
        raise MetricError(
            f"need at least 2 rows in each set, got {x.shape[0]} and {y.shape[0]}", field="real"
        )
    d = x.shape[1]
    n_x, n_y = x.shape[0], y.shape[0]

    def kernel(a: _Array, b: _Array) -> _Array:
        return (a @ b.T / d + 1.0) ** 3

    # Small sets: build the three kernel matrices once and index them per subset (the same
    # numbers, ~10x faster than recomputing 3 m x m kernels for each of 100 subsets).
    full = n_x * n_x + n_y * n_y + n_x * n_y <= _KID_PRECOMPUTE_ENTRIES
    kxx_all, kyy_all, kxy_all = (
        (kernel(x, x), kernel(y, y), kernel(x, y)) if full else (None, None, None)
    )
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for s in range(subsets):
        ia = rng.choice(n_x, m, replace=False)
        ib = rng.choice(n_y, m, replace=False)
        if kxx_all is not None and kyy_all is not None and kxy_all is not None:
            kxx, kyy, kxy = (
                kxx_all[np.ix_(ia, ia)],
                kyy_all[np.ix_(ib, ib)],
                kxy_all[np.ix_(ia, ib)],
            )
        else:
            a, b = x[ia], y[ib]
            kxx, kyy, kxy = kernel(a, a), kernel(b, b), kernel(a, b)
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values[s] = within - 2.0 * kxy.mean()
    return float(values.mean()), float(values.std())


def kernel_distance(
    real: Tensor,
    fake: Tensor,
    *,
    net: FeatureNet | None = None,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Classifier KID: :func:`kernel_distance_from_features` on the digit classifier's features.

    Args:
        real: ``(N, 1, H, W)`` images in ``[0, 1]``.
        fake: ``(M, 1, H, W)`` images in ``[0, 1]``.
        net: the feature net (default :func:`get_feature_net`).
        subsets: number of random subsets.
        subset_size: rows per subset (capped at ``min(N, M)``).
        seed: seed of the subset draws.

    Returns:
        ``(mean, std)`` over subsets; report them as ``classifier_kid_mean``/``_std``.

    Raises:
        MetricError: as :func:`kernel_distance_from_features`, or non-grayscale images.
    """
    with torch.no_grad():
        fr = _features(real, net, "real")
        ff = _features(fake, net, "fake")
    return kernel_distance_from_features(
        fr, ff, subsets=subsets, subset_size=subset_size, seed=seed
    )
