"""Figures and the HTML page of a QLDM evaluation: image grids, the loss curve, ``index.html``.

Everything is written with matplotlib's non-interactive ``Agg`` backend; the HTML page refers
to its images by relative paths, so the folder can be moved or zipped as a whole.
"""

from __future__ import annotations

import html
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


def write_index(
    out: str | Path,
    *,
    title: str,
    metrics: dict[str, Any],
    images: Sequence[tuple[str, str]],
    notes: Sequence[str] = (),
) -> Path:
    """Write a self-contained ``index.html`` (images by relative path).

    Args:
        out: the report folder (the images must be inside it).
        title: page title.
        metrics: flat name -> value table (nested dicts are shown as JSON).
        images: ``(file name relative to out, caption)`` pairs.
        notes: paragraphs shown under the title (plain text, escaped).
    """
    folder = Path(out)
    rows = "\n".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in metrics.items()
    )
    figs = "\n".join(
        f'<figure><img src="{html.escape(name)}" alt="{html.escape(cap)}">'
        f"<figcaption>{html.escape(cap)}</figcaption></figure>"
        for name, cap in images
    )
    paras = "\n".join(f"<p>{html.escape(n)}</p>" for n in notes)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: left; font-size: 14px; }}
th {{ background: #f4f4f4; }}
figure {{ display: inline-block; margin: 0.5em 1em 1em 0; vertical-align: top; }}
img {{ max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }}
figcaption {{ font-size: 13px; color: #555; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{paras}
<h2>Metrics</h2>
<table>
{rows}
</table>
<h2>Figures</h2>
{figs}
</body></html>
"""
    path = folder / "index.html"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=jsonable)
    return str(value)


RESULT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("variant", "variant", "{}"),
    ("ssim_reconstruction", "SSIM recon ↑", "{:.3f}"),
    ("classifier_frechet_distance", "classifier Fréchet ↓", "{:.1f}"),
    ("classifier_kid_mean", "classifier KID ↓", "{:.2f}"),
    ("classifier_kid_std", "KID std", "{:.2f}"),
    ("final_score_loss", "final score loss", "{:.3f}"),
    ("final_recon_nll", "final recon NLL", "{:.1f}"),
    ("steps", "steps", "{}"),
    ("train_seconds", "train wall s", "{:.0f}"),
    ("train_cpu_seconds", "train CPU s", "{:.0f}"),
)
"""``(metrics key, column title, format)`` of :func:`results_table`."""


def results_table(paths: Sequence[str | Path]) -> str:
    """A Markdown table of several ``metrics.json`` files (one row each, in the given order)."""
    head = "| " + " | ".join(title for _, title, _ in RESULT_COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in RESULT_COLUMNS) + "|"
    lines = [head, rule]
    for path in paths:
        m = json.loads(Path(path).read_text(encoding="utf-8"))
        cells = []
        for key, _, fmt in RESULT_COLUMNS:
            value = m.get(key)
            cells.append("—" if value is None else fmt.format(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
