"""``qldm experiments seed000``, tiny: the report's structure, its intervals and its figures."""

from __future__ import annotations

import dataclasses
import html
import json
from pathlib import Path

import pytest
import torch

from qldm.hybrid.experiments import seed000
from qldm.hybrid.experiments._seed000_markdown import render_markdown
from qldm.hybrid.experiments._seed000_runs import Sizes, affine_r2, attack
from qldm.hybrid.experiments._seed000_theory import TheorySizes
from qldm.hybrid.experiments.common import bar_plot

TINY = seed000.Settings(
    label="tiny",
    sizes=Sizes(
        steps=3,
        batch_size=32,
        n_eval=40,
        n_attack=16,
        timesteps=10,
        ddim_steps=3,
        pgd_iters=2,
        eot_draws=2,
        n_eot=8,
        eot_eps=(0.1,),
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
    for prefix in ("", "eot_"):
        assert {
            f"{prefix}{k}_{q}_0.1" for k in ("fgsm", "pgd", "pgd_ours") for q in ("dfd", "dssim")
        } <= set(noisy)
    # one-draw and EOT rows side by side in the headline, and a computed verdict per pair
    keys = [r["key"] for r in data["summary"]["headline"]]
    assert keys.index("generation_eot_pgd_dfd") == keys.index("generation_pgd_dfd") + 1
    eot = [f for f in data["summary"]["findings"] if " vs EOT — " in f]
    assert len(eot) == 2 * 3 and all(
        "against noiseless" in f and "against classical" in f for f in eot
    )
    assert "EOT 2" in page and "PGD (ours: step eps/4 x 2)" in page
    assert any(
        f.startswith("Robustness advantages of the quantum-noise")
        for f in data["summary"]["findings"]
    )
    assert noisy["r2_expectation"] > noisy["r2_trajectory"]
    gen = next(r for r in data["runs"] if r["placement"] == "generation" and r["section"] == "main")
    assert "param_dfd_0.05" in gen
    for png in (
        "sample_fd_generation.png",
        "sample_fd_latent.png",
        "absorption_r2.png",
        "pgd_dfd_generation.png",
        "eot_dfd_generation.png",
        "eot_dssim_latent.png",
        "pgd_ours_dfd_latent.png",
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
    assert "PGD ours 0.1 ΔFD EOT 2" in md and "FGSM 0.1 ΔSSIM one draw" in md


def _tiny_model(variant: str) -> tuple[object, torch.Tensor]:
    from qldm.hybrid.experiments._seed000_runs import Cell, train_cell
    from qldm.hybrid.experiments.seed000 import _load

    sizes = dataclasses.replace(TINY.sizes, steps=2)
    model, _ = train_cell(Cell("generation", variant, 0, 64, 2), sizes, _load(64, "train", 16))
    return model, _load(6, "test", 16)


def test_eot_attack_equals_the_plain_attack_on_a_deterministic_model() -> None:
    model, x = _tiny_model("noiseless")
    plain = attack(model, x, eps=0.1, step=0.025, iters=3)  # type: ignore[arg-type]
    eot = attack(model, x, eps=0.1, step=0.025, iters=3, draws=4)  # type: ignore[arg-type]
    assert torch.allclose(plain, eot, atol=1e-6)
    assert (plain - x).abs().max() <= 0.1 + 1e-6 and (plain - x).abs().max() > 0.05
    with pytest.raises(ValueError, match="draws"):
        attack(model, x, eps=0.1, step=None, iters=1, draws=0)  # type: ignore[arg-type]


def test_eot_draws_are_independent_trajectories() -> None:
    # EOT repeats the batch: a sampled-noise model must draw anew for every copy, and the
    # EOT gradient must be the mean of the per-copy gradients (the loss is a batch mean)
    from qldm.hybrid.experiments._seed000_runs import _recon_logits
    from qldm.hybrid.qldm import ConvVAE

    model, x = _tiny_model("bit_flip")
    with torch.no_grad():
        rec = model.reconstruct(x.repeat(4, 1, 1, 1)).split(x.shape[0])  # type: ignore[attr-defined]
    assert any(not torch.allclose(rec[0], r) for r in rec[1:])
    adv = x.clone().requires_grad_(True)
    logits = _recon_logits(model, adv.repeat(4, 1, 1, 1))  # type: ignore[arg-type]
    loss = ConvVAE.recon_loss(logits, x.repeat(4, 1, 1, 1))
    (g_all,) = torch.autograd.grad(loss, adv, retain_graph=True)
    # the EOT loss is the mean of the per-draw losses, so its gradient is their gradients' mean
    same = [
        torch.autograd.grad(ConvVAE.recon_loss(chunk, x), adv, retain_graph=True)[0]
        for chunk in logits.split(x.shape[0])
    ]
    assert torch.allclose(g_all, torch.stack(same).mean(0), atol=1e-6)


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


@pytest.mark.parametrize("n", [300, 60])
def test_frechet_to_matches_the_metrics_frechet_distance(n: int, tmp_path: Path) -> None:
    # against scipy.linalg.sqrtm's formula (qldm.hybrid.metrics), also with N < 128 features
    from qldm.hybrid.experiments._seed000_runs import FrechetTo
    from qldm.hybrid.experiments.seed000 import _load
    from qldm.hybrid.metrics import frechet_distance, get_feature_net

    net = get_feature_net(cache_dir=tmp_path / "feature_net", epochs=1)
    images = _load(2 * n, "test", 16)
    real, fake = images[:n], (images[n:] + 0.2 * torch.rand(n, 1, 16, 16)).clamp(0, 1)
    fd = FrechetTo(real, net)
    assert fd(fake) == pytest.approx(frechet_distance(real, fake, net=net), rel=1e-4, abs=1e-6)
    assert fd(real) == pytest.approx(0.0, abs=1e-4)


def test_eot_findings_say_which_attacker_supports_an_advantage() -> None:
    from qldm.hybrid.experiments._seed000_stats import eot_findings

    def d(mean: float, excludes: bool) -> dict[str, object]:
        return {"mean": mean, "low": mean - 1, "high": mean + 1, "excludes_zero": excludes, "n": 5}

    def row(key: str, one_draw: str | None, bit: dict, amp: dict) -> dict[str, object]:
        return {
            "key": key,
            "label": f"PGD ΔFD ({key})",
            "match": {"placement": "generation"},
            "lower_is_better": True,
            "one_draw": one_draw,
            "diffs": {
                "bit_flip": {"vs_noiseless": bit, "vs_classical": None},
                "amp_damp": {"vs_noiseless": amp, "vs_classical": None},
            },
        }

    rows = [
        row("g_pgd", None, d(-3.0, True), d(-2.0, True)),
        row("g_eot_pgd", "g_pgd", d(-0.5, False), d(-2.5, True)),
    ]
    out = eot_findings(rows)
    assert out[0].startswith("Robustness advantages") and "show 2" in out[0]
    assert "1 survive EOT (amp_damp vs noiseless on g_pgd)" in out[0]
    text = out[1]
    assert "advantage with one draw only, EOT interval includes 0: bit_flip" in text
    assert "advantage survives EOT: amp_damp" in text
    assert "against classical: no interval excludes 0 in either" in text
