"""Image metrics of qldm's seed models, with honest names.

- :func:`ssim`: mean SSIM (scikit-image) of image pairs.
- :func:`frechet_distance` / :func:`kernel_distance`: the FID / KID formulas on the features of
  a small digit classifier (:class:`FeatureNet`, :func:`get_feature_net`), reported as
  ``classifier_frechet_distance`` and ``classifier_kid_*``. They are not FID or KID.
- :func:`inception_fid`: FID proper, with :class:`FIDInceptionV3` (TensorFlow's FID network,
  re-implemented) and pytorch-fid's weights file; only when that file is given.
- :func:`metrics_report`: all of the above as one ``dict[str, float]``.
"""

from qldm.hybrid.metrics._distances import (
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
    kernel_distance,
    kernel_distance_from_features,
)
from qldm.hybrid.metrics._errors import MetricError
from qldm.hybrid.metrics._feature_net import (
    FeatureNet,
    default_cache_dir,
    get_feature_net,
    weights_sha256,
)
from qldm.hybrid.metrics._inception import (
    FID_WEIGHTS_FILE,
    FIDInceptionV3,
    inception_features,
    inception_fid,
    load_fid_inception,
)
from qldm.hybrid.metrics._report import metrics_report
from qldm.hybrid.metrics._ssim import ssim

__all__ = [
    "FID_WEIGHTS_FILE",
    "FIDInceptionV3",
    "FeatureNet",
    "MetricError",
    "default_cache_dir",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_features",
    "get_feature_net",
    "inception_features",
    "inception_fid",
    "kernel_distance",
    "kernel_distance_from_features",
    "load_fid_inception",
    "metrics_report",
    "ssim",
    "weights_sha256",
]
