"""Shared pieces of the QLDM tests: the tiny config and small real images."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import torch

from qldm.hybrid.config import QLDMConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "qldm_tiny.yaml"


def tiny_config(**overrides: Any) -> QLDMConfig:
    """``configs/qldm_tiny.yaml`` with ``section.key`` overrides."""
    return load_config(TINY).with_overrides(**overrides)


@lru_cache(maxsize=1)
def digits(n: int = 256) -> torch.Tensor:
    """The first ``n`` images of sklearn's 8x8 digits (train split): ``(n, 1, 8, 8)``."""
    from qldm.hybrid.data import load_dataset

    return load_dataset("digits", split="train", subset=n, seed=0).images.float()


@pytest.fixture(autouse=False)
def one_thread() -> Iterator[None]:
    """Run a test on one torch thread (two threads on a loaded 2-core box are ~10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
