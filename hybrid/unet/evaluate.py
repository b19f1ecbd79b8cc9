"""Sample metrics of a U-Net run, named for what they are.

The paper measures FID, KID and Inception Score with InceptionV3. No Inception weights can be
fetched here, so the same formulas run on the features and logits of qldm's small digit
classifier (:func:`qldm.hybrid.metrics.get_feature_net`):

- ``classifier_frechet_distance``: the FID formula on the classifier's 128 features;
- ``classifier_kid_mean`` / ``_std``: the KID formula (cubic polynomial kernel, subsets of
  ``kid_subset`` images, the paper's 100);
- ``classifier_score_mean`` / ``_std``: the Inception-Score formula
  ``exp(E_x KL(p(y|x) || p(y)))`` on the classifier's softmax, over ``splits`` splits (the
  paper's 10). Between 1 and 10 (the number of digit classes).

None of them is comparable with the paper's Inception-based numbers.
"""

from __future__ import annotations

import math

import torch

from qldm.hybrid.metrics import FeatureNet, frechet_distance, kernel_distance
from qldm.hybrid.metrics._errors import MetricError

__all__ = ["classifier_score", "sample_metrics"]


@torch.no_grad()
def classifier_score(
    images: torch.Tensor, net: FeatureNet, *, splits: int = 10
) -> tuple[float, float]:
    """The Inception-Score formula on the digit classifier's softmax.

    Args:
        images: ``(N, 1, H, W)`` in ``[0, 1]``, ``N >= splits``.
        net: the classifier.
        splits: the images are cut into this many equal parts; the score is computed on each.

    Returns:
        ``(mean, std)`` over the splits (``std`` with ``ddof = 0``, as torchmetrics).

    Raises:
        MetricError: fewer images than splits, or ``splits < 1``.
    """
    if splits < 1 or images.shape[0] < splits:
        raise MetricError(
            f"need at least {splits} images for {splits} splits, got {images.shape[0]}",
            field="splits",
        )
    net.eval()
    probs = torch.cat([net(images[i : i + 256]).softmax(dim=1) for i in range(0, len(images), 256)])
    probs = probs.double()
    scores = []
    for part in probs.chunk(splits):
        marginal = part.mean(dim=0, keepdim=True)
        kl = (part * (torch.log(part + 1e-12) - torch.log(marginal + 1e-12))).sum(dim=1)
        scores.append(math.exp(float(kl.mean())))
    t = torch.tensor(scores, dtype=torch.float64)
    return float(t.mean()), float(t.std(unbiased=False))


def sample_metrics(
    fake: torch.Tensor,
    real: torch.Tensor,
    net: FeatureNet,
    *,
    kid_subset: int = 100,
    splits: int = 10,
    seed: int = 0,
) -> dict[str, float]:
    """Classifier Fréchet distance, classifier KID and the classifier score of ``fake``.

    Args:
        fake: ``(M, 1, 28, 28)`` generated images in ``[0, 1]``.
        real: ``(N, 1, 28, 28)`` test images in ``[0, 1]``.
        net: the digit classifier.
        kid_subset: KID subset size.
        splits: splits of the classifier score.
        seed: seed of the KID subsets.

    Returns:
        ``classifier_frechet_distance``, ``classifier_kid_mean``, ``classifier_kid_std``,
        ``classifier_score_mean``, ``classifier_score_std``.
    """
    fd = frechet_distance(real, fake, net=net)
    kid_mean, kid_std = kernel_distance(
        real, fake, net=net, subsets=100, subset_size=kid_subset, seed=seed
    )
    score_mean, score_std = classifier_score(fake, net, splits=splits)
    return {
        "classifier_frechet_distance": float(fd),
        "classifier_kid_mean": float(kid_mean),
        "classifier_kid_std": float(kid_std),
        "classifier_score_mean": score_mean,
        "classifier_score_std": score_std,
    }
