"""Seed 000's experiment, the statistics: per-seed values, paired differences, findings.

Everything here reads the ``runs`` list of ``results.json`` (one dict per trained model, with
its cell fields and metrics), so the HTML report and ``docs/results.md`` come from the same
numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from qldm.hybrid.config import VARIANT_CHANNEL
from qldm.hybrid.experiments.common import Diff, fmt_mean_std, mean_std, paired_bootstrap_ci

CONTROLS = ("noiseless", "classical")

PAPER: dict[str, Any] = {
    "note": (
        "The paper's numbers are FIDs on Inception-v3 features (CIFAR-10 or MNIST, 10,000 "
        "samples); ours are Fréchet distances on a small digit classifier's features (MNIST "
        "16x16, 4,000 digits): a different metric on a different scale. Only directions and "
        "relative changes can be set side by side."
    ),
    # Table 9 (MNIST, FID): baseline and worst-case PGD delta
    "mnist_fid": {
        "phase_flip": 82.20,
        "bit_flip": 82.60,
        "amp_damp": 86.10,
        "gaussian": 88.80,
        "noiseless": 90.50,
    },
    "mnist_pgd_worst_dfid": {
        "phase_flip": 0.60,
        "bit_flip": 0.66,
        "amp_damp": 0.82,
        "gaussian": 0.72,
        "noiseless": 0.75,
    },
    # Table 8 (MNIST, SSIM): worst-case delta SSIM
    "mnist_worst_dssim": {
        "amp_damp": 0.004,
        "bit_flip": 0.005,
        "phase_flip": 0.006,
        "gaussian": 0.0063,
        "noiseless": 0.007,
    },
    # Table 10 (MNIST, FID): parameter perturbation, worst-case delta
    "mnist_param_worst_dfid": {
        "phase_flip": 12.34,
        "bit_flip": 9.65,
        "amp_damp": 11.14,
        "gaussian": 16.02,
        "noiseless": 17.19,
    },
    # Table 4 (CIFAR-10, FID) at 1K / 5K / 10K training samples
    "cifar_data_fid": {
        "bit_flip": [196.2, 64.6, 20.42],
        "amp_damp": [226.6, 71.7, 22.66],
        "gaussian": [242.4, 76.7, 24.24],
        "phase_flip": [248.3, 78.6, 24.83],
        "noiseless": [251.2, 79.5, 25.12],
    },
    # Table 12 (CIFAR-10, FID, called "hypothetical data" by the paper) at L = 4, 6, 8, 10
    "cifar_depth_fid_hypothetical": {
        "amp_damp": [22.51, 22.43, 22.36, 22.30],
        "bit_flip": [20.15, 20.03, 19.92, 19.82],
        "phase_flip": [24.50, 24.36, 24.22, 24.09],
        "noiseless": [22.61, 25.12, 27.63, 30.14],
    },
    "headline": "FID -18.7% for bit flip against noiseless (CIFAR-10, 20.42 vs 25.12)",
}
"""The paper's numbers that have a counterpart here (variant names mapped to ours)."""


def per_seed(
    runs: Sequence[dict[str, Any]], metric: str, **match: Any
) -> dict[str, dict[int, float]]:
    """``variant -> seed -> value`` of ``metric`` over the runs whose fields equal ``match``."""
    out: dict[str, dict[int, float]] = {}
    for r in runs:
        if metric not in r or any(r.get(k) != v for k, v in match.items()):
            continue
        out.setdefault(r["variant"], {})[int(r["seed"])] = float(r[metric])
    return out


def paired(a: dict[int, float], b: dict[int, float]) -> Diff | None:
    """The paired bootstrap interval of ``a - b`` over their common seeds (None if none or
    a value is NaN)."""
    seeds = sorted(set(a) & set(b))
    xa, xb = [a[s] for s in seeds], [b[s] for s in seeds]
    if not seeds or any(math.isnan(v) for v in xa + xb):
        return None
    return paired_bootstrap_ci(xa, xb)


def diffs(values: dict[str, dict[int, float]]) -> dict[str, dict[str, dict[str, Any] | None]]:
    """``variant -> {"vs_noiseless": Diff dict, "vs_classical": Diff dict}`` (None when the
    control was not trained or the variant is the control)."""
    out: dict[str, dict[str, dict[str, Any] | None]] = {}
    for variant, vals in values.items():
        row: dict[str, dict[str, Any] | None] = {}
        for control in CONTROLS:
            d = paired(vals, values[control]) if control in values and control != variant else None
            row[f"vs_{control}"] = d.as_dict() if d is not None else None
        out[variant] = row
    return out


def fmt_values(vals: dict[int, float] | None) -> str:
    """``mean ± std`` over seeds, or a dash."""
    if not vals:
        return "—"
    xs = [vals[s] for s in sorted(vals)]
    return fmt_mean_std(xs, digits=4)


def fmt_diff(d: dict[str, Any] | None) -> str:
    """``+m [lo, hi]`` with a star when the interval excludes 0, or a dash."""
    if d is None:
        return "—"
    star = " *" if d["excludes_zero"] else ""
    return f"{d['mean']:+.3g} [{d['low']:+.3g}, {d['high']:+.3g}]{star}"


@dataclass(frozen=True)
class Headline:
    """One headline comparison: a metric on a slice of the runs.

    Attributes:
        key: short id (``results.json``).
        label: what it is, for people.
        metric: the run metric.
        match: the cell fields the runs must have.
        lower_is_better: direction of "better".
        one_draw: for an EOT row, the key of the same attack's one-draw row (else None).
    """

    key: str
    label: str
    metric: str
    match: dict[str, Any]
    lower_is_better: bool
    one_draw: str | None = None


ATTACK_LABELS = {
    "fgsm": "FGSM",
    "pgd": "PGD (paper: step {step:g} x {iters})",
    "pgd_ours": "PGD (ours: step eps/{inv:g} x {iters})",
}
"""How the attacks of ``_seed000_runs.ATTACKS`` are named in tables."""


def attack_label(kind: str, sizes: dict[str, Any]) -> str:
    """The attack's name with its step, e.g. ``PGD (paper: step 0.005 x 8)``."""
    return ATTACK_LABELS[kind].format(
        step=sizes["pgd_step"],
        iters=sizes["pgd_iters"],
        inv=1.0 / sizes.get("pgd_ours_step", 0.25),
    )


def _attack_headlines(settings: dict[str, Any], placement: str, eps: float) -> list[Headline]:
    """One-draw and EOT rows of the attacks at ``eps``: ΔFD for both PGDs, ΔSSIM for FGSM."""
    sz = settings["sizes"]
    g = {
        "placement": placement,
        "n_train": settings["main_train"],
        "layers": settings["main_depth"],
    }
    out = []
    for kind, q, lower in (
        ("pgd", "dfd", True),
        ("pgd_ours", "dfd", True),
        ("fgsm", "dssim", False),
    ):
        what = "change of recon FD" if q == "dfd" else "change of recon SSIM"
        key = f"{placement}_{kind}_{q}"
        name = f"{attack_label(kind, sz)} {eps:g}: {what} ({placement})"
        out.append(Headline(key, f"{name}, one draw", f"{kind}_{q}_{eps:g}", g, lower))
        out.append(
            Headline(
                f"{placement}_eot_{kind}_{q}",
                f"{name}, EOT {sz.get('eot_draws', 1)} draws",
                f"eot_{kind}_{q}_{eps:g}",
                g,
                lower,
                one_draw=key,
            )
        )
    return out


def headlines(settings: dict[str, Any]) -> list[Headline]:
    """The comparisons of the headline table, built from the run's settings."""
    n, depth = settings["main_train"], settings["main_depth"]
    eps = max(settings["sizes"]["eps"])
    main = {"n_train": n, "layers": depth}
    out = []
    for placement in settings["placements"]:
        g = {"placement": placement, **main}
        out += [
            Headline(f"{placement}_sample_fd", f"sample FD ({placement})", "sample_fd", g, True),
            Headline(f"{placement}_recon_fd", f"AE floor FD ({placement})", "recon_fd", g, True),
            Headline(
                f"{placement}_recon_ssim", f"recon SSIM ({placement})", "recon_ssim", g, False
            ),
        ]
        out += _attack_headlines(settings, placement, eps)
    if "generation" in settings["placements"]:
        out.append(
            Headline(
                "param_dfd",
                f"PQC weights +{eps:g} rel. L2: change of sample FD (generation)",
                f"param_dfd_{eps:g}",
                {"placement": "generation", **main},
                True,
            )
        )
    small = min(settings["data_sizes"])
    if small != n:
        out.append(
            Headline(
                "data_small_sample_fd",
                f"sample FD with {small} training digits (generation)",
                "sample_fd",
                {"placement": "generation", "n_train": small, "layers": depth},
                True,
            )
        )
    deep = max(settings["depths"])
    if deep != depth:
        out.append(
            Headline(
                "depth_deep_sample_fd",
                f"sample FD at L = {deep} (generation)",
                "sample_fd",
                {"placement": "generation", "n_train": n, "layers": deep},
                True,
            )
        )
    return out


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """The headline comparisons and findings, for ``results.json``.

    Returns:
        ``{"headline": [...], "findings": [...]}``; each headline row has ``key``, ``label``,
        ``lower_is_better``, ``values`` (variant -> ``mean``, ``std``, ``n``) and ``diffs``.
    """
    runs = results["runs"]
    rows = []
    for h in headlines(results["settings"]):
        vals = per_seed(runs, h.metric, **h.match)
        if not vals:
            continue
        rows.append(
            {
                "key": h.key,
                "label": h.label,
                "metric": h.metric,
                "match": h.match,
                "lower_is_better": h.lower_is_better,
                "one_draw": h.one_draw,
                "values": {
                    v: dict(zip(("mean", "std"), mean_std([x[s] for s in sorted(x)]), strict=True))
                    | {"n": len(x)}
                    for v, x in vals.items()
                },
                "per_seed": {v: {str(s): x[s] for s in sorted(x)} for v, x in vals.items()},
                "diffs": diffs(vals),
            }
        )
    notes = findings(rows) + eot_findings(rows)
    sz = results["settings"]["sizes"]
    if any(r["one_draw"] for r in rows):
        notes.append(
            f"EOT: each attack step follows the gradient averaged over {sz['eot_draws']} noise "
            f"draws per image and the attacked metrics are averaged over {sz['eot_draws']} "
            f"draws, on the first {sz['n_eot']} of the {sz['n_attack']} attacked test images. "
            "A deterministic model (noiseless, classical, and gaussian, whose noise is "
            "training-only) gets the same attack either way, so its one-draw and EOT figures "
            + (
                "differ only by that image subset."
                if sz["n_eot"] != sz["n_attack"]
                else "agree up to floating point."
            )
        )
    for placement in results["settings"]["placements"]:
        mine = [
            r
            for r in runs
            if r["placement"] == placement and r["section"] == "main" and "sample_fd" in r
        ]
        below = sum(1 for r in mine if r["sample_fd"] < r["recon_fd"])
        if mine:
            notes.append(
                f"{placement} placement: the sample FD lies below the AE floor in {below} of "
                f"{len(mine)} models"
                + (
                    " — the reconstruction FD is not a lower bound of this metric (generated "
                    "latents gather where the decoder is sharp; reconstructions carry every "
                    "test digit's encoding error, and with sampled noise one drawn trajectory)."
                    if below
                    else "."
                )
            )
    return {"headline": rows, "findings": notes}


def _direction(d: dict[str, Any] | None, lower_is_better: bool) -> str | None:
    """``better`` / ``worse`` when the interval excludes 0, ``unclear`` when not, or None."""
    if d is None:
        return None
    if not d["excludes_zero"]:
        return "unclear"
    return "better" if (d["mean"] < 0) == lower_is_better else "worse"


EOT_OUTCOMES = (
    (("better", "better"), "advantage survives EOT"),
    (("better", "unclear"), "advantage with one draw only, EOT interval includes 0"),
    (("better", "worse"), "advantage with one draw only, reversed under EOT"),
    (("unclear", "better"), "advantage under EOT only"),
    (("worse", "worse"), "worse under both"),
    (("unclear", "worse"), "worse under EOT only"),
    (("worse", "unclear"), "worse with one draw only"),
    (("worse", "better"), "worse with one draw, better under EOT"),
)
"""(one-draw direction, EOT direction) -> what the pair of intervals supports."""


def eot_findings(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Which robustness conclusions the one-draw attack supports and whether EOT keeps them:
    for every EOT headline row, each variant against each control, from the two intervals."""
    by_key = {r["key"]: r for r in rows}
    out = []
    tally: dict[str, list[str]] = {"one": [], "both": [], "eot": []}
    for row in rows:
        single = by_key.get(row.get("one_draw") or "")
        if single is None:
            continue
        parts = []
        for control in CONTROLS:
            groups: dict[str, list[str]] = {}
            for variant, ds in row["diffs"].items():
                d_eot = ds.get(f"vs_{control}")
                d_one = single["diffs"].get(variant, {}).get(f"vs_{control}")
                pair = (
                    _direction(d_one, row["lower_is_better"]),
                    _direction(d_eot, row["lower_is_better"]),
                )
                outcome = dict(EOT_OUTCOMES).get(pair)  # type: ignore[arg-type]
                if VARIANT_CHANNEL.get(variant, "none") != "none":
                    what = f"{variant} vs {control} on {single['key']}"
                    if pair[0] == "better":
                        tally["one"].append(what)
                    if pair == ("better", "better"):
                        tally["both"].append(what)
                    if pair[0] != "better" and pair[1] == "better":
                        tally["eot"].append(what)
                if outcome is not None and d_one is not None and d_eot is not None:
                    groups.setdefault(outcome, []).append(
                        f"{variant} (one draw {d_one['mean']:+.3g}, EOT {d_eot['mean']:+.3g})"
                    )
            text = "; ".join(f"{o}: {', '.join(vs)}" for o, vs in groups.items())
            parts.append(f"against {control}: " + (text or "no interval excludes 0 in either"))
        out.append(f"{single['label']} vs EOT — " + "; ".join(parts) + ".")
    if out:
        out.insert(
            0,
            "Robustness advantages of the quantum-noise variants over a control (interval "
            f"excluding 0 in the robust direction): the one-draw attacks show {len(tally['one'])}"
            + (f" ({'; '.join(tally['one'])})" if tally["one"] else "")
            + f", of which {len(tally['both'])} survive EOT"
            + (f" ({'; '.join(tally['both'])})" if tally["both"] else "")
            + f"; EOT alone shows {len(tally['eot'])}"
            + (f" ({'; '.join(tally['eot'])})" if tally["eot"] else "")
            + ".",
        )
    return out


def findings(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Plain sentences: which differences have intervals that exclude zero, and which not."""
    out = []
    ns = [
        d["n"] for row in rows for ds in row["diffs"].values() for d in ds.values() if d is not None
    ]
    if ns and min(ns) < 5:
        out.append(
            f"Only {min(ns)} seeds: a percentile bootstrap over so few pairs cannot be wider "
            "than the spread of the per-seed differences, so 'excludes 0' below is weak "
            "evidence."
        )
    for row in rows:
        better, worse, unclear = [], [], []
        for variant, ds in row["diffs"].items():
            d = ds.get("vs_noiseless")
            if d is None:
                continue
            if not d["excludes_zero"]:
                unclear.append(variant)
            elif (d["mean"] < 0) == row["lower_is_better"]:
                better.append(f"{variant} ({d['mean']:+.3g})")
            else:
                worse.append(f"{variant} ({d['mean']:+.3g})")
        parts = []
        if better:
            parts.append("better than noiseless: " + ", ".join(better))
        if worse:
            parts.append("worse than noiseless: " + ", ".join(worse))
        if unclear:
            parts.append("interval includes 0: " + ", ".join(unclear))
        if parts:
            out.append(f"{row['label']}: " + "; ".join(parts) + ".")
        cls = []
        for variant, ds in row["diffs"].items():
            d = ds.get("vs_classical")
            if d is not None and d["excludes_zero"]:
                good = (d["mean"] < 0) == row["lower_is_better"]
                cls.append(f"{variant} {'better' if good else 'worse'} ({d['mean']:+.3g})")
        out.append(
            f"{row['label']}, against the classical control: "
            + (", ".join(cls) if cls else "no variant differs with an interval excluding 0")
            + "."
        )
    return out
