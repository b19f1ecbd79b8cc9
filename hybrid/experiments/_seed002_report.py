"""Seed 002's report: ``index.html`` + ``results.json`` + figures, and its ``docs/results.md``
part, rendered from ``results.json``.

``python -m qldm.hybrid.experiments._seed002_report REPORT_DIR DOCS_RESULTS_MD`` replaces the
part between ``<!-- seed002:begin -->`` and ``<!-- seed002:end -->`` (appends it the first
time) with :func:`render_markdown`'s text and copies the report's grids to
``docs/img/seed002/``. Nothing in the part is typed by hand.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

from qldm.hybrid.experiments.common import (
    ExperimentReport,
    fmt_mean_std,
    line_plot,
    mean_std,
    paired_bootstrap_ci,
)

__all__ = ["METRICS", "render_markdown", "summarize", "write_report"]

METRICS: dict[str, str] = {
    "classifier_frechet_distance": "classifier Fréchet distance (lower is better)",
    "classifier_kid_mean": "classifier KID, subsets of 100 (lower is better)",
    "classifier_score_mean": "inception-style score on the digit classifier, 10 splits (higher)",
}
PAPER_KEYS = {"classifier_frechet_distance": "fid", "classifier_kid_mean": "kid",
              "classifier_score_mean": "is"}  # fmt: skip
DIGITS_4000 = 4000
PAPER_BATCH = 128
BEGIN, END = "<!-- seed002:begin -->", "<!-- seed002:end -->"

DEVIATIONS = (
    "Data and budget: the shipped 4,000 MNIST training digits (a subset of them, n_train) and "
    "a few epochs at a small batch, instead of 60,000 digits, 20 epochs, batch 128; the same "
    "for every variant. The 12-qubit HQConv circuits (values and Jacobians) dominate the "
    "cost on one shared CPU core here, which sets the budget (see the cost table).",
    "Metrics: FID, KID and IS formulas on qldm's digit classifier (features and logits), not "
    "InceptionV3 (no Inception weights can be fetched here); the paper's numbers are shown "
    "beside ours as a different metric, on a different budget.",
    "Circuit weights: one weight vector per quantum stage, shared by the channel groups of the "
    "stage (all groups run as one QuantumLayer call); the paper's code gives every group its "
    "own weights. Both counts are reported; the per-group counts equal the paper's.",
    "QuanvU-Net: FQConv quanvolution filters (HQConv would make ~200 full 12-qubit "
    "statevector evaluations per image per step); the quanvolution sits on the 14x14 level "
    "with 10 channels, as in the paper's code (the text says 14x14x20).",
    "Qubit layout: qubit 4c + 2dy + dx holds channel c at pixel (dy, dx) of the 2x2 patch, "
    "the paper's text (4 qubits per channel); the paper's code interleaves channels.",
    "Sampling: DDIM with few steps (ddim_steps) from the EMA weights, not 1,000 DDPM steps.",
    "Transfer: classical for E-1 epochs then 1 epoch of a 1FQConv QVU-Net (the paper's 19 + 1); "
    "the classical run's own epoch E-1 checkpoint is the source, so the data order matches.",
)


def summarize(results: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Per variant: mean ± std of every metric, paired differences with the classical U-Net,
    parameters, time per epoch and circuit evaluations per step."""
    control = results.get("classical")
    out: dict[str, Any] = {}
    for name, entry in results.items():
        rows = entry["seeds"]
        first = rows[0]
        s: dict[str, Any] = {
            "label": entry["variant"]["label"],
            "parameters": first["parameters"],
            "paper_layout_parameters": first["paper_layout_parameters"],
            "paper": entry["variant"]["paper"],
            "quantum_calls_per_step": first["quantum_calls_per_step"],
            "circuits_per_step": first["circuits_per_step"],
            "circuits_per_image": first["circuits_per_image"],
            "seconds_per_image": mean_std([r["seconds_per_image"] for r in rows]),
            "epoch_seconds_4000_extrapolated": mean_std(
                [r["seconds_per_image"] * DIGITS_4000 for r in rows]
            ),
            "epoch_seconds_measured": mean_std(
                [r["train_seconds"] / max(r["epochs"], 1) for r in rows]
            ),
            "metrics": {},
            "vs_classical": {},
        }
        for key in (*METRICS, "classifier_kid_std", "classifier_score_std"):
            values = [r["metrics"][key] for r in rows]
            s["metrics"][key] = {"values": values, "mean_std": mean_std(values)}
        if control is not None and name != "classical":
            for key in METRICS:
                a = [r["metrics"][key] for r in rows]
                b = [r["metrics"][key] for r in control["seeds"]][: len(a)]
                s["vs_classical"][key] = paired_bootstrap_ci(a, b).as_dict()
        out[name] = s
    return out


def _fmt(values: list[float]) -> str:
    return fmt_mean_std(values, digits=4)


def _paper(summary: dict[str, Any], key: str) -> str:
    paper = summary["paper"]
    return "—" if not paper else f"{paper[PAPER_KEYS[key]]:g}"


def _rows(summary: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for s in summary.values():
        m = s["metrics"]
        rows.append(
            [
                s["label"],
                f"{s['parameters']:,}",
                f"{s['paper_layout_parameters']:,}",
                "—" if not s["paper"] else f"{int(s['paper']['params']):,}",
                _fmt(m["classifier_frechet_distance"]["values"]),
                _paper(s, "classifier_frechet_distance"),
                _fmt(m["classifier_kid_mean"]["values"]),
                _paper(s, "classifier_kid_mean"),
                _fmt(m["classifier_score_mean"]["values"]),
                _paper(s, "classifier_score_mean"),
            ]
        )
    return rows


HEADERS = [
    "variant",
    "params (ours, shared circuit weights)",
    "params (one weight vector per group)",
    "params (paper)",
    "classifier Fréchet distance",
    "paper FID (InceptionV3, different metric)",
    "classifier KID",
    "paper KID (InceptionV3)",
    "classifier score",
    "paper IS (InceptionV3)",
]


def _timing_rows(summary: dict[str, Any], settings: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for s in summary.values():
        rows.append(
            [
                s["label"],
                s["quantum_calls_per_step"],
                s["circuits_per_step"],
                s["circuits_per_image"] * PAPER_BATCH,
                f"{s['epoch_seconds_measured'][0]:.1f}",
                "{:.0f} ± {:.0f}".format(*s["epoch_seconds_4000_extrapolated"]),
            ]
        )
    return rows


TIMING_HEADERS = [
    "variant",
    "QuantumLayer calls per forward pass",
    "circuit evaluations per training step at our batch (forward; Jacobians in the same run)",
    "the same at the paper's batch of 128",
    "seconds per epoch (measured, n_train digits)",
    "seconds per epoch on 4,000 digits (extrapolated from the measured s/image, mean ± std "
    "over seeds; the load of the shared machine varied)",
]


def _diff_rows(summary: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for s in summary.values():
        if not s["vs_classical"]:
            continue
        rows.append(
            [s["label"]]
            + [
                f"{d['mean']:+.4g} [{d['low']:+.4g}, {d['high']:+.4g}]"
                for d in (s["vs_classical"][k] for k in METRICS)
            ]
        )
    return rows


def write_report(
    out: Path,
    *,
    settings: dict[str, Any],
    results: dict[str, Any],
    wall_seconds: float,
    command: str,
) -> dict[str, Any]:
    """Write ``index.html``, ``results.json`` and the loss figure; return the results dict."""
    summary = summarize(results, settings)  # in the order of ``results`` (VARIANTS)
    report = ExperimentReport(
        out, title="Seed 002: quantum hybrid diffusion U-Nets (De Falco et al. 2024)",
        command=command,
    )  # fmt: skip
    report.section(
        "Setup",
        f"Settings (the same for every variant): {json.dumps(settings)}.",
        f"Wall time of the whole run: {wall_seconds / 60:.1f} min on {platform.machine()} "
        "with one torch thread (a 2-core machine shared with other work).",
        *(f"Deviation: {d}" for d in DEVIATIONS),
    )
    report.section(
        "Results (mean ± std over seeds)",
        "Our metrics are computed on the digit classifier, not InceptionV3: the paper's "
        "columns are a different metric on a different budget and are shown for orientation.",
    )
    report.table(HEADERS, _rows(summary))
    report.section(
        "Difference from the classical U-Net (paired by seed, 95% bootstrap interval)",
        "Variant minus classical; with 3 seeds the interval is coarse.",
    )
    report.table(["variant", *METRICS.values()], _diff_rows(summary))
    report.section("Cost per architecture")
    report.table(TIMING_HEADERS, _timing_rows(summary, settings))
    some = next(iter(results.values()))["seeds"][0]["losses"]
    if some:
        series = {}
        for name, entry in results.items():
            losses = [r["losses"] for r in entry["seeds"]]
            n = min(len(v) for v in losses)
            if n == len(some):
                series[summary[name]["label"]] = [[v[i] for v in losses] for i in range(n)]
        path = line_plot(
            out / "loss.png", list(range(1, len(some) + 1)), series,
            xlabel="step", ylabel="P2-weighted loss", title="training loss (mean ± std)",
        )  # fmt: skip
        report.figure(path, "Training loss per step (variants with the full step count).")
    report.section("Sample grids (seed 0, EMA weights, the same start noise for every variant)")
    for name, entry in results.items():
        for epoch, rel in sorted(entry["seeds"][0]["grids"].items(), key=lambda kv: int(kv[0])):
            report.figure(out / rel, f"{summary[name]['label']}, after epoch {epoch}")
    data = {
        "experiment": "seed002",
        "settings": settings,
        "deviations": list(DEVIATIONS),
        "wall_seconds": wall_seconds,
        "results": results,
        "summary": summary,
        "order": list(results),
    }
    report.write(data)
    return data


def findings(summary: dict[str, Any]) -> list[str]:
    """Sentences read off the paired intervals (no number typed by hand)."""
    out = []
    for s in summary.values():
        for key, d in s["vs_classical"].items():
            if d["low"] > 0 or d["high"] < 0:
                out.append(
                    f"{s['label']}: {METRICS[key].split(' (')[0]} differs from the classical "
                    f"U-Net by {d['mean']:+.4g} (95% interval [{d['low']:+.4g}, "
                    f"{d['high']:+.4g}], {d['n']} seeds)."
                )
    if not out:
        out.append("No difference from the classical U-Net has an interval that excludes 0.")
    control = summary.get("transfer_classical", {}).get("vs_classical", {})
    hybrid = summary.get("transfer", {}).get("vs_classical", {})
    for key in METRICS:
        c, h = control.get(key), hybrid.get(key)
        if c and h and (h["low"] > 0 or h["high"] < 0) and (c["low"] > 0 or c["high"] < 0):
            out.append(
                f"Transfer to the 1FQConv vertex and the classical -> classical control differ "
                f"from the classical U-Net alike on {METRICS[key].split(' (')[0]} "
                f"({h['mean']:+.4g} and {c['mean']:+.4g}): the gain comes from restarting "
                "(fresh Adam state, EMA restarted from the transferred weights), not from the "
                "circuit."
            )
    return out


def render_markdown(data: dict[str, Any], *, quick: dict[str, Any] | None = None) -> str:
    """The ``docs/results.md`` part of a ``results.json`` (and the quick run's, if given)."""
    settings = data["settings"]
    summary = {name: data["summary"][name] for name in data["order"]}  # json sorts keys
    lines = [
        BEGIN,
        "# Seed 002: quantum hybrid diffusion U-Nets (De Falco et al. 2024)",
        "",
        "Generated from `results.json` by `python -m qldm.hybrid.experiments._seed002_report "
        "REPORT_DIR docs/results.md [QUICK_DIR]`; do not edit by hand.",
        "",
        f"Command: `{data['command']}`; wall time {data['wall_seconds'] / 60:.1f} min "
        "(one torch thread on a shared 2-core machine).",
        "",
        f"Settings, the same for every variant: `{json.dumps(settings)}`.",
        "",
    ]
    if quick is not None:
        lines += [
            f"The small version, `{quick['command']}`, took {quick['wall_seconds'] / 60:.1f} "
            f"min (settings `{json.dumps(quick['settings'])}`).",
            "",
        ]
    lines += [
        "## Results (mean ± std over seeds; the paper's columns are a different metric)",
        "",
    ]
    lines += _md_table(HEADERS, _rows(summary))
    lines += ["", "## Difference from the classical U-Net (paired by seed, 95% bootstrap)", ""]
    lines += _md_table(["variant", *METRICS.values()], _diff_rows(summary))
    lines += ["", "## What the intervals say", ""]
    lines += [f"- {f}" for f in findings(summary)]
    lines += [
        "",
        "At this budget every variant's samples are still far from digits (see the grids), "
        "so these are early-training comparisons, not the paper's converged ones.",
    ]
    lines += ["", "## Cost per architecture", ""]
    lines += _md_table(TIMING_HEADERS, _timing_rows(summary, settings))
    lines += ["", "## Deviations from the paper", ""]
    lines += [f"- {d}" for d in data["deviations"]]
    grids = [
        (summary[name]["label"], epoch, rel)
        for name in data["order"]
        for epoch, rel in data["results"][name]["seeds"][0]["grids"].items()
        if int(epoch) == settings["epochs"]
    ]
    if grids:
        lines += ["", "## Samples after the last epoch (seed 0)", ""]
        lines += [f"![{label}, epoch {e}](img/seed002/{Path(rel).name})" for label, e, rel in grids]
    lines += ["", END]
    return "\n".join(lines) + "\n"


def _md_table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def update_docs(report_dir: Path, docs: Path, quick_dir: Path | None = None) -> None:
    """Replace (or append) the seed-002 part of ``docs`` and copy the grids next to it."""
    data = json.loads((report_dir / "results.json").read_text(encoding="utf-8"))
    quick = None
    if quick_dir is not None:
        quick = json.loads((quick_dir / "results.json").read_text(encoding="utf-8"))
    part = render_markdown(data, quick=quick)
    text = docs.read_text(encoding="utf-8") if docs.is_file() else ""
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + part.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + part
    docs.write_text(text, encoding="utf-8")
    img = docs.parent / "img" / "seed002"
    img.mkdir(parents=True, exist_ok=True)
    for png in (report_dir / "grids").glob("*.png"):
        if png.stem.endswith(f"epoch{data['settings']['epochs']}"):
            shutil.copyfile(png, img / png.name)


if __name__ == "__main__":  # pragma: no cover - a documentation helper
    update_docs(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]) if sys.argv[3:] else None)
