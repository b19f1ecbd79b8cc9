"""The seed papers' experiments, each re-run by one command: ``qldm experiments NAME --out DIR``.

Every experiment is a module of this package with one entry point::

    def run(out: Path, *, quick: bool, seeds: int | None, data_dir: Path,
            progress: Callable[[str], None]) -> dict[str, Any]

that trains its variants, writes ``out/index.html``, ``out/results.json`` and PNG figures (with
:class:`qldm.hybrid.experiments.common.ExperimentReport`) and returns the results dict.
``quick`` is a small version that finishes in at most 15 minutes on two cores; ``seeds``
overrides the number of training seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any

from qldm.hybrid.config import ConfigError

__all__ = ["EXPERIMENTS", "run_experiment"]

EXPERIMENTS: dict[str, str] = {
    "seed000": "qldm.hybrid.experiments.seed000",
    "seed002": "qldm.hybrid.experiments.seed002",
    "quantum-diffusion": "qldm.hybrid.experiments.quantum_diffusion",
}
"""Experiment name -> the module that runs it."""


def run_experiment(
    name: str,
    out: Path,
    *,
    quick: bool = False,
    seeds: int | None = None,
    data_dir: Path,
    progress: Callable[[str], None] = print,
    **options: Any,
) -> dict[str, Any]:
    """Run the experiment ``name`` and write its report into ``out``.

    ``options`` go to the experiment's ``run`` as further keywords (``quantum-diffusion``
    takes ``server_url``: a qldm server for its fake-device section).

    Raises:
        ConfigError: no experiment is called ``name``, or ``seeds`` < 1.
    """
    if name not in EXPERIMENTS:
        known = ", ".join(sorted(EXPERIMENTS))
        raise ConfigError(f"experiment: unknown name {name!r}; known: {known}")
    if seeds is not None and seeds < 1:
        raise ConfigError(f"seeds: must be at least 1, got {seeds}")
    module = import_module(EXPERIMENTS[name])
    result: dict[str, Any] = module.run(
        Path(out), quick=quick, seeds=seeds, data_dir=Path(data_dir), progress=progress, **options
    )
    return result
