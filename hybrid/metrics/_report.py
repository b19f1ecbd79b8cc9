"""One call that computes the metrics qldm reports for a generative model."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from qldm.hybrid.metrics._distances import (
    feature_statistics,
    frechet_distance_from_features,
    kernel_distance_from_features,
)
from qldm.hybrid.metrics._errors import MetricError
from qldm.hybrid.metrics._feature_net import FeatureNet, get_feature_net
from qldm.hybrid.metrics._inception import inception_fid
from qldm.hybrid.metrics._ssim import ssim


def metrics_report(
    real: Tensor,
    fake: Tensor,
    *,
    recon: Tensor | None = None,
    originals: Tensor | None = None,
    net: FeatureNet | None = None,
    inception_weights: Path | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Sample-quality (and optionally reconstruction) metrics with honest names.

    Args:
        real: ``(N, 1, H, W)`` real images in ``[0, 1]``, ``N >= 2``.
        fake: ``(M, 1, H, W)`` generated images in ``[0, 1]``, ``M >= 2``.
        recon: ``(K, C, H, W)`` reconstructions of ``originals`` (both or neither).
        originals: ``(K, C, H, W)`` images that were reconstructed.
        net: the digit feature net (default :func:`get_feature_net`).
        inception_weights: pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``; when given,
            the report adds ``inception_fid`` (FID proper; slow on CPU).
        kid_subsets: subsets of the KID estimate.
        kid_subset_size: rows per KID subset (capped at ``min(N, M)``).
        seed: seed of the KID subsets.

    Returns:
        ``classifier_frechet_distance``, ``classifier_kid_mean``, ``classifier_kid_std``,
        ``feature_net_accuracy`` (the classifier's test accuracy), and
        ``ssim_reconstruction`` when ``recon`` and ``originals`` are given, ``inception_fid``
        when ``inception_weights`` is given.

    Raises:
        MetricError: only one of ``recon``/``originals`` given, or invalid images.
    """
    if (recon is None) != (originals is None):
        raise MetricError("give both recon and originals, or neither", field="recon")
    model = net if net is not None else get_feature_net()
    for field, images in (("real", real), ("fake", fake)):
        if not isinstance(images, Tensor) or images.ndim != 4:
            raise MetricError("must be an (N, C, H, W) tensor", field=field)
    real_features = model.embed(real).numpy()
    fake_features = model.embed(fake).numpy()
    mu1, s1 = feature_statistics(real_features)
    mu2, s2 = feature_statistics(fake_features)
    kid_mean, kid_std = kernel_distance_from_features(
        real_features, fake_features, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed
    )
    report: dict[str, float] = {}
    if recon is not None and originals is not None:
        report["ssim_reconstruction"] = ssim(recon, originals)
    report["classifier_frechet_distance"] = frechet_distance_from_features(mu1, s1, mu2, s2)
    report["classifier_kid_mean"] = kid_mean
    report["classifier_kid_std"] = kid_std
    report["feature_net_accuracy"] = float(model.test_accuracy)
    if inception_weights is not None:
        report["inception_fid"] = inception_fid(real, fake, weights_path=inception_weights)
    return report
