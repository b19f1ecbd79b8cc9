"""Readers for the standard on-disk formats of the image data sets (numpy only, no torchvision).

- IDX (MNIST, Fashion-MNIST): a big-endian header ``0x00 0x00 <dtype> <ndim>``, then ``ndim``
  big-endian ``int32`` dimensions, then the values in C order. Images are ``0x00000803``
  (``uint8``, 3 dimensions: N, 28, 28), labels ``0x00000801`` (``uint8``, N). Files may be
  gzipped (``.gz``).
- CIFAR-10 "python version": pickled dicts with ``b"data"`` (``uint8`` (10000, 3072), each row
  the 1024 red, then green, then blue values of a 32x32 image in row-major order) and
  ``b"labels"`` (a list of ints in 0..9).
- STL-10 binary: ``*_X.bin`` is ``uint8`` images of 3x96x96 stored column-major per channel
  (so C-order reshape to (N, 3, 96, 96) gives (N, C, W, H) and the last two axes must be
  swapped, as torchvision's ``STL10.__loadfile`` does); ``*_y.bin`` is ``uint8`` labels 1..10.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from qldm.hybrid.data._errors import DatasetError

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCHES = ("test_batch",)


def _read_bytes(path: Path) -> bytes:
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as handle:
            return handle.read()
    return path.read_bytes()


def read_idx(path: Path) -> NDArray[np.generic]:
    """Read an IDX file (optionally gzipped) into an array.

    Args:
        path: the file, e.g. ``train-images-idx3-ubyte`` or ``t10k-labels-idx1-ubyte.gz``.

    Returns:
        The array with the shape stored in the header, e.g. ``(N, 28, 28)`` ``uint8`` images or
        ``(N,)`` ``uint8`` labels.

    Raises:
        DatasetError: the magic number, dtype code or length is wrong.
    """
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetError(f"{path} is not an IDX file (bad magic number)", field="root")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES or ndim == 0:
        raise DatasetError(
            f"{path} has an unknown IDX dtype code 0x{code:02x} or ndim {ndim}", field="root"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path} is truncated (IDX header)", field="root")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DatasetError(
            f"{path} holds {len(raw) - header} data bytes, its header {shape} says {expected}",
            field="root",
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _cifar_entry(batch: dict[object, object], key: str, path: Path) -> object:
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise DatasetError(f"{path} has no {key!r} entry", field="root")


def read_cifar_batches(paths: list[Path]) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Read CIFAR-10 python pickle batches.

    Args:
        paths: the batch files (``data_batch_1`` ... ``data_batch_5`` or ``test_batch``).

    Returns:
        ``images`` ``uint8`` ``(N, 3, 32, 32)`` and ``labels`` ``int64`` ``(N,)``.

    Raises:
        DatasetError: a batch lacks ``data``/``labels`` or has the wrong shape.
    """
    images, labels = [], []
    for path in paths:
        with path.open("rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
        if not isinstance(batch, dict):
            raise DatasetError(f"{path} is not a CIFAR batch (not a dict)", field="root")
        data = np.asarray(_cifar_entry(batch, "data", path), dtype=np.uint8)
        batch_labels = np.asarray(_cifar_entry(batch, "labels", path), dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(batch_labels) != len(data):
            raise DatasetError(
                f"{path}: data {data.shape} / labels {batch_labels.shape} are not CIFAR-10 shaped",
                field="root",
            )
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(batch_labels)
    return np.concatenate(images), np.concatenate(labels)


def read_stl10(images_path: Path, labels_path: Path) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Read an STL-10 binary split.

    Args:
        images_path: ``train_X.bin`` or ``test_X.bin``.
        labels_path: ``train_y.bin`` or ``test_y.bin`` (labels 1..10 on disk).

    Returns:
        ``images`` ``uint8`` ``(N, 3, 96, 96)`` (channel, row, column) and ``labels`` ``int64``
        ``(N,)`` in 0..9.

    Raises:
        DatasetError: the sizes do not fit 3x96x96 images or the label count.
    """
    flat = np.fromfile(images_path, dtype=np.uint8)
    side = 96
    if flat.size % (3 * side * side) != 0:
        raise DatasetError(f"{images_path} is not a whole number of 3x96x96 images", field="root")
    # Column-major per channel: C-order reshape yields (N, C, W, H); swap to (N, C, H, W).
    images = np.ascontiguousarray(flat.reshape(-1, 3, side, side).transpose(0, 1, 3, 2))
    labels = np.fromfile(labels_path, dtype=np.uint8).astype(np.int64) - 1
    if len(labels) != len(images):
        raise DatasetError(
            f"{labels_path} holds {len(labels)} labels for {len(images)} images", field="root"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(f"{labels_path} has labels outside 1..10", field="root")
    return images, labels
