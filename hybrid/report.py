"""Figures and files of a report: image grids, the loss curve, JSON.

Everything is written with matplotlib's non-interactive ``Agg`` backend. The QLDM evaluation
page is :func:`qldm.hybrid.qldm.report_page.write_report`; the experiments write theirs with
:class:`qldm.hybrid.experiments.common.ExperimentReport`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


def pyplot() -> Any:
    """matplotlib's pyplot on the non-interactive ``Agg`` backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def image_grid(images: torch.Tensor, *, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile ``(N, C, H, W)`` images in [0, 1] into one ``(rows*(H+pad)+pad, ...)`` array.

    Returns:
        ``(GH, GW)`` for one channel, ``(GH, GW, 3)`` for three; float in [0, 1].
    """
    x = images.detach().cpu().float().clamp(0, 1).numpy()
    n, c, h, w = x.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = np.ones((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), dtype=np.float32)
    for k in range(n):
        r, col = divmod(k, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top : top + h, left : left + w] = x[k]
    return grid[0] if c == 1 else np.transpose(grid, (1, 2, 0))


def save_grid(
    images: torch.Tensor, path: str | Path, *, nrow: int | None = None, scale: int = 2
) -> Path:
    """Write ``images (N, C, H, W)`` as a PNG grid (each pixel ``scale`` x ``scale``)."""
    plt = pyplot()
    grid = image_grid(images, nrow=nrow)
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if grid.ndim == 2:
        plt.imsave(p, grid, cmap="gray", vmin=0.0, vmax=1.0)
    else:
        plt.imsave(p, grid)
    return p


def save_recon_grid(
    originals: torch.Tensor, recon: torch.Tensor, path: str | Path, *, per_row: int = 8
) -> Path:
    """Originals and reconstructions in alternating rows (``per_row`` pairs per row pair)."""
    n = min(originals.shape[0], recon.shape[0])
    rows = []
    for start in range(0, n, per_row):
        rows.append(originals[start : start + per_row])
        rows.append(recon[start : start + per_row])
    return save_grid(torch.cat(rows), path, nrow=per_row)


def save_loss_curve(
    history: Sequence[dict[str, float]], path: str | Path, *, title: str = "training loss"
) -> Path:
    """Plot the total loss and the score loss per step (moving average over ~2% of steps)."""
    plt = pyplot()
    steps = np.array([r["step"] for r in history])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, key, label in (
        (axes[0], "loss", "total (score + 0.1 recon)"),
        (axes[1], "score", "score (noise prediction)"),
    ):
        values = np.array([r[key] for r in history])
        ax.plot(steps, values, lw=0.5, alpha=0.35, color="tab:blue")
        k = max(1, len(values) // 50)
        if k > 1 and len(values) >= k:
            smooth = np.convolve(values, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1 :], smooth, lw=1.5, color="tab:blue")
        ax.set_xlabel("step")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)


def save_figure(fig: Any, path: str | Path) -> Path:
    """Lay out, write as PNG (90 dpi, folders created) and close a matplotlib figure."""
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=90)
    pyplot().close(fig)
    return p


def write_json(data: dict[str, Any], path: str | Path) -> Path:
    """Write ``data`` as indented JSON."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(
        json.dumps(data, indent=2, sort_keys=True, default=jsonable) + "\n", encoding="utf-8"
    )
    return p


def jsonable(value: Any) -> Any:
    """``json.dumps``' ``default``: NumPy scalars and arrays, tensors, paths, ``as_dict()`` objects.

    Raises:
        TypeError: anything else (as ``json`` expects).
    """
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if callable(getattr(value, "as_dict", None)):
        return value.as_dict()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
