"""``qldm experiments seed000``, tiny: the report's structure, its intervals and its figures."""

from __future__ import annotations

import dataclasses
import html
import json
from pathlib import Path

import pytest

from qldm.hybrid.experiments import seed000
from qldm.hybrid.experiments._seed000_markdown import render_markdown
from qldm.hybrid.experiments._seed000_runs import Sizes, affine_r2
from qldm.hybrid.experiments._seed000_theory import TheorySizes
from qldm.hybrid.experiments.common import bar_plot

TINY = seed000.Settings(
    label="tiny",
    sizes=Sizes(
        steps=3, batch_size=32, n_eval=40, n_attack=16, timesteps=10, ddim_steps=3, pgd_iters=2
    ),
    theory=TheorySizes(
        strengths=(0.1,),
        restarts=1,
        layer_depths=(1, 2),
        qfim_draws=1,
        bp_qubits=2,
        bp_depths=(1, 2),
        bp_draws=3,
    ),
    variants=("noiseless", "bit_flip", "classical"),
    seeds=2,
    data_sizes=(64, 128),
    depths=(1, 2),
    main_train=128,
    main_depth=2,
    feature_epochs=1,
)


def test_tiny_run_writes_the_whole_report(tmp_path: Path) -> None:
    lines: list[str] = []
    out = tmp_path / "report"
    results = seed000.run_settings(out, TINY, data_dir=tmp_path / "data", progress=lines.append)
    # every model trained once: 2 placements x 3 variants x 2 seeds + one extra size and depth
    assert len(results["runs"]) == 2 * 3 * 2 + 3 * 2 + 3 * 2
    assert any("[1/" in line for line in lines) and "done" in lines[-1]
    page = (out / "index.html").read_text()
    data = json.loads((out / "results.json").read_text())
    for section in (
        "Setup and budgets",
        "Headline: variant minus noiseless and minus classical",
        "Sample quality and the autoencoder floor",
        "How much of each channel the affine maps absorb",
        "Input robustness: FGSM and PGD on the encoder input",
        "Parameter robustness (generation placement)",
        "Training-set size (generation placement)",
        "PQC depth (generation placement)",
        "Theory: section 4's claims, measured",
        "What this shows (computed from the intervals above)",
    ):
        assert section in data["sections"] and html.escape(section) in page
    for key in ("runs", "summary", "theory", "feature_net", "paper", "wall_seconds", "tables"):
        assert key in data
    assert len(data["feature_net"]["weights_sha256"]) == 64
    # intervals against both controls, with both ends and the seed count
    row = next(r for r in data["summary"]["headline"] if r["key"] == "generation_sample_fd")
    d = row["diffs"]["bit_flip"]
    for control in ("vs_noiseless", "vs_classical"):
        assert (
            d[control]["n"] == 2 and d[control]["low"] <= d[control]["mean"] <= d[control]["high"]
        )
    assert row["diffs"]["noiseless"]["vs_noiseless"] is None
    assert "minus noiseless" in page and "[" in page
    # noisy runs carry the absorption R² and the robustness deltas
    noisy = next(r for r in data["runs"] if r["variant"] == "bit_flip" and r["section"] == "main")
    assert {"r2_expectation", "r2_trajectory", "pgd_dfd_0.1", "fgsm_dssim_0.01"} <= set(noisy)
    assert noisy["r2_expectation"] > noisy["r2_trajectory"]
    gen = next(r for r in data["runs"] if r["placement"] == "generation" and r["section"] == "main")
    assert "param_dfd_0.05" in gen
    for png in (
        "sample_fd_generation.png",
        "sample_fd_latent.png",
        "absorption_r2.png",
        "pgd_dfd_generation.png",
        "param_dfd.png",
        "data_size.png",
        "depth.png",
        "theory_contraction.png",
        "theory_qfim.png",
        "theory_gradient_variance.png",
    ):
        assert (out / png).stat().st_size > 1000, png
        assert f'src="{png}"' in page
    claims = data["theory"]["claims"]
    assert any("Section 4.1" in c["claim"] for c in claims) and all(c["verdict"] for c in claims)
    md = render_markdown(data, figures="img/seed000")
    assert (
        "minus noiseless" in md and "not FID" in md and "img/seed000/sample_fd_generation.png" in md
    )


def test_affine_r2_against_numpy() -> None:
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    y0 = rng.normal(size=(50, 3))
    y = y0 @ rng.normal(size=(3, 3)) + 0.5
    assert affine_r2(torch.tensor(y), torch.tensor(y0)) == pytest.approx(1.0, abs=1e-12)
    noise = rng.normal(size=(50, 3))
    target = y + noise
    design = np.hstack([y0, np.ones((50, 1))])
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    expected = 1 - ((target - design @ coef) ** 2).sum() / ((target - target.mean(0)) ** 2).sum()
    assert affine_r2(torch.tensor(target), torch.tensor(y0)) == pytest.approx(expected, rel=1e-10)


def test_bar_plot_writes_a_png(tmp_path: Path) -> None:
    path = bar_plot(
        tmp_path / "b.png", ["a", "b"], {"s": [[1.0, 2.0], [3.0, 4.0]]}, ylabel="y", title="t"
    )
    assert path.stat().st_size > 1000


def test_settings_list_each_model_once() -> None:
    cells = [c for _, c in seed000.FULL.cells()]
    assert len(cells) == len(set(cells))
    # 5 seeds x (6 variants x 2 placements + 3 sweep variants x (3 more sizes + 3 more depths))
    assert len(cells) == 5 * (6 * 2 + 3 * (3 + 3))
    assert dataclasses.replace(seed000.QUICK, seeds=1).cells()[0][0] == "main"
