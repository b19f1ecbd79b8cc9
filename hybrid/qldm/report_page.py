"""The report a person who did not run the model can read: ``index.html`` of ``qldm demo`` and
``qldm evaluate``.

Settings apart from results; each result with its direction (lower or higher is better) and
two reference values measured in the same run on the same classifier:

- **real against real**: the metric between two disjoint halves of the test images, what a
  generator indistinguishable from the data would score at this sample size;
- **autoencoder**: the metric of the model's own reconstructions ``D(PQC(mu(x)))`` against
  the test images: what the decoder gives back for real digits' latents. Samples go through
  the same decoder, so a diffusion prior that matched those latents exactly would score about
  this.

Failure modes are counted: saturated samples (more bright pixels than any real test image has)
and blank ones (fewer than any real test image has).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["RESULTS", "Result", "sample_failures", "write_report"]

BRIGHT = 0.5
"""A pixel is bright above this value (images in [0, 1])."""


@dataclass(frozen=True)
class Result:
    """How one metric is read.

    Attributes:
        key: its name in ``metrics.json``.
        label: what it is, in words.
        better: ``lower`` or ``higher``.
        meaning: one sentence for the reader.
    """

    key: str
    label: str
    better: str
    meaning: str


RESULTS: tuple[Result, ...] = (
    Result(
        "classifier_frechet_distance",
        "Fréchet distance on digit-classifier features (not FID)",
        "lower",
        "distance between the feature distributions of samples and test digits",
    ),
    Result(
        "classifier_kid_mean",
        "kernel distance (KID) on digit-classifier features (not Inception KID)",
        "lower",
        "unbiased MMD² between samples and test digits; about 0 when indistinguishable",
    ),
    Result(
        "ssim_reconstruction",
        "SSIM of test digits against their reconstructions through the PQC",
        "higher",
        "structural similarity, 1 = identical",
    ),
    Result(
        "final_loss",
        "training objective at the end (mean of the last 5% of steps)",
        "lower",
        "score loss + 0.1 x (reconstruction NLL + KL)",
    ),
)
"""The results the page lists, in order."""

SETTINGS = (
    "variant",
    "channel",
    "gaussian_std",
    "n_qubits",
    "layers",
    "encoding",
    "sampler",
    "steps",
    "batch_size",
    "seed",
    "n_samples",
    "n_recon",
    "n_real",
    "kid_subset_size",
)
"""The run's settings shown apart from its results."""

TIMINGS = ("train_seconds", "train_cpu_seconds", "sample_seconds", "recon_seconds")


def sample_failures(fake: torch.Tensor, real: torch.Tensor) -> dict[str, Any]:
    """Count samples whose share of bright pixels lies outside every real image's.

    Args:
        fake: ``(M, C, H, W)`` generated images in [0, 1].
        real: ``(N, C, H, W)`` real images in [0, 1].

    Returns:
        ``saturated`` (samples with a larger share of bright pixels than any real image),
        ``blank`` (a smaller share than any real image), ``of`` (``M``), and
        ``bright_share`` (``real_min``, ``real_median``, ``real_max``, ``samples_median``).
    """
    fake_share = (fake > BRIGHT).flatten(1).float().mean(1)
    real_share = (real > BRIGHT).flatten(1).float().mean(1)
    low, high = float(real_share.min()), float(real_share.max())
    return {
        "saturated": int((fake_share > high).sum()),
        "blank": int((fake_share < low).sum()),
        "of": int(fake.shape[0]),
        "bright_share": {
            "real_min": low,
            "real_median": float(real_share.median()),
            "real_max": high,
            "samples_median": float(fake_share.median()),
        },
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return str(value)


def _rows(cells: Sequence[Sequence[Any]], *, header: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in cells
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def write_report(
    out: str | Path,
    *,
    title: str,
    metrics: dict[str, Any],
    images: Sequence[tuple[str, str]],
    notes: Sequence[str] = (),
) -> Path:
    """Write ``out/index.html`` from an :func:`~qldm.hybrid.qldm.evaluate.evaluate_model`
    metrics dict (with its ``reference`` and ``failure_modes`` entries).

    Args:
        out: the report folder (images inside it, by relative path).
        title: the page's title.
        metrics: the metrics dict (also written to ``metrics.json``).
        images: ``(file name, caption)`` pairs.
        notes: paragraphs under the results (plain text, escaped).

    Returns:
        The page's path.
    """
    reference = metrics.get("reference", {})
    real_ref = reference.get("real_vs_real", {})
    ae_ref = reference.get("autoencoder", {})
    results = [
        (
            r.label,
            metrics.get(r.key),
            f"{r.better} is better",
            real_ref.get(r.key),
            ae_ref.get(r.key),
            r.meaning,
        )
        for r in RESULTS
        if metrics.get(r.key) is not None
    ]
    found = metrics.get("failure_modes", {}).get("samples")
    failures = []
    if found is not None:
        pct = {k: f"{100 * v:.1f}%" for k, v in found["bright_share"].items()}
        how = (
            f"share of bright pixels (> {BRIGHT}): real test digits {pct['real_min']} to "
            f"{pct['real_max']} (median {pct['real_median']}); samples' median "
            f"{pct['samples_median']}"
        )
        failures = [
            ("saturated (more bright pixels than any real digit)", found["saturated"], how),
            ("blank (fewer bright pixels than any real digit)", found["blank"], how),
        ]
        failures = [(w, f"{n} of {found['of']}", h) for w, n, h in failures]
    result_table = _rows(
        results,
        header=("metric", "this model", "direction", "real vs real", "autoencoder", "what"),
    )
    failure_table = (
        _rows(failures, header=("what", "count", "how it is counted"))
        if failures
        else "<p>none counted</p>"
    )
    summary = (
        f"A {metrics.get('variant', '?')} model with a {metrics.get('n_qubits', '?')}-qubit "
        f"circuit, trained {metrics.get('steps', '?')} steps "
        f"({_fmt(metrics.get('train_seconds'))} s), then measured on "
        f"{metrics.get('n_samples', '?')} samples against {metrics.get('n_real', '?')} test "
        "digits. Reference columns were measured in the same run, on the same classifier."
    )
    figs = "\n".join(
        f'<figure><img src="{html.escape(name)}" alt="{html.escape(cap)}">'
        f"<figcaption>{html.escape(cap)}</figcaption></figure>"
        for name, cap in images
    )
    sizes = reference.get("sizes", {})
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1040px; color: #222; }}
table {{ border-collapse: collapse; margin: .6em 0 1.2em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: left; font-size: 14px; }}
th {{ background: #f4f4f4; }}
figure {{ display: inline-block; margin: .5em 1em 1em 0; vertical-align: top; }}
img {{ max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }}
figcaption, .small {{ font-size: 13px; color: #555; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(summary)}</p>
<h2>Results</h2>
{result_table}
<p class="small">real vs real: two disjoint halves of the test digits
({html.escape(_fmt(sizes.get("real_half")))} each): what a generator indistinguishable from the
data scores at this sample size. Autoencoder: the model's reconstructions of
{html.escape(_fmt(sizes.get("recon")))} test digits against the test digits; samples go through the
same decoder, so a prior that matched the encoder's latents exactly would score about this.</p>
<h2>Failure modes</h2>
{failure_table}
{"".join(f"<p>{html.escape(n)}</p>" for n in notes)}
<h2>Figures</h2>
{figs}
<h2>Settings</h2>
{_rows([(k, metrics.get(k)) for k in SETTINGS if k in metrics], header=("setting", "value"))}
<h2>Timings</h2>
{_rows([(k, metrics.get(k)) for k in TIMINGS if k in metrics], header=("what", "seconds"))}
<p class="small">Every number is in metrics.json beside this page.</p>
</body></html>
"""
    path = Path(out) / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
