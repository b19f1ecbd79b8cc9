"""Seed 004 on a device through a qldm server: train a few steps, sample, and say what it cost.

Every evaluation of the model's ``QuantumLayer`` (``url=`` a server) is one job: a training step
is one ``jacobian`` job holding all ``K`` noise levels of the step (one runtime submission on a
``fake:``/``ibm:`` backend), a sampling step one ``expectation`` job. The jobs are filed under
one server run (one runtime Session); afterwards their results' metadata give the cost table.
The server runs M3 readout mitigation and subtracts the device's noise floor from the
depolarizing strength it injects (:mod:`qldm.mitigation.noise`); both happen server-side.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from qldm.hybrid.qdiff.config import QDiffConfig
from qldm.hybrid.qdiff.data import AmplitudeData, to_images
from qldm.hybrid.qdiff.run import train_config

__all__ = ["COST_COLUMNS", "device_run"]

COST_COLUMNS = (
    "phase",
    "task",
    "circuits",
    "shots",
    "submissions",
    "seconds",
    "readout_mitigation",
    "m3_age_s",
    "gradient",
    "floor_max",
    "floor_subtracted",
)
"""The columns of the cost table, one row per job."""


def _row(phase: str, job: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    inside = meta.get("seconds_in_session")
    outside = meta.get("seconds_outside")
    seconds = (
        inside + outside if inside is not None and outside is not None else meta.get("seconds")
    )
    gradient = meta.get("gradient")
    kept = {k: v for k, v in meta.items() if k not in ("raw_values", "transpile_cache")}
    raw_noise = meta.get("noise")
    noise: dict[str, Any] = raw_noise if isinstance(raw_noise, dict) else {}
    floor = noise.get("device_floor")
    return {
        "phase": phase,
        "task": job.get("task"),
        "circuits": meta.get("circuits"),
        "shots": meta.get("shots"),
        "submissions": meta.get("submissions"),
        "seconds": seconds,
        "readout_mitigation": meta.get("readout_mitigation"),
        "m3_age_s": meta.get("m3_calibration_age_s"),
        "gradient": (
            " ".join(f"{k}={v}" for k, v in gradient.items())
            if isinstance(gradient, dict)
            else gradient
        ),
        "floor_max": max(floor) if floor else None,
        "floor_subtracted": noise.get("floor_subtracted"),
        "metadata": kept,
    }


def device_run(
    cfg: QDiffConfig,
    *,
    url: str,
    data: AmplitudeData,
    n_samples: int | None = None,
    api_key: str | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train ``cfg`` (a ``depolarizing_diffusion`` config on a device backend) through ``url``,
    sample, and collect each job's cost.

    Args:
        cfg: the config (``quantum.backend`` names the server-side backend).
        url: the server.
        data: training digits.
        n_samples: samples (default: ``eval.n_samples``).
        api_key: the server's key.
        progress: progress lines.

    Returns:
        ``{"rows": [...one per job...], "train_losses", "images" (N, 1, s, s),
        "train_seconds", "sample_seconds", "run_id", "backend"}``.
    """
    from qldm.client import ServiceClient

    with ServiceClient(url, api_key=api_key) as client:
        run = client.create_run(name=cfg.name, backend=cfg.quantum.backend)
        t0 = time.perf_counter()
        trained = train_config(
            cfg, data=data, url=url, api_key=api_key, run_id=run["id"], save=False
        )
        train_seconds = time.perf_counter() - t0
        progress(f"device: {trained.fit.steps} training steps in {train_seconds:.1f} s")
        model = trained.model
        n = n_samples or cfg.eval.n_samples
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        t1 = time.perf_counter()
        vectors = model.sample(n, generator=gen)
        sample_seconds = time.perf_counter() - t1
        progress(f"device: sampled {n} in {sample_seconds:.1f} s")
        jobs = client.list_jobs(run_id=run["id"], limit=1000)["data"]
        jobs.sort(key=lambda j: j["created_at"])
        rows = []
        n_train = trained.fit.steps
        for i, job in enumerate(jobs):
            meta = dict(client.result(job["id"]).metadata)
            phase = f"train step {i + 1}" if i < n_train else f"sample step {i - n_train + 1}"
            rows.append(_row(phase, job, meta))
        client.close_run(run["id"])
    return {
        "backend": cfg.quantum.backend,
        "run_id": run["id"],
        "rows": rows,
        "train_losses": trained.fit.losses,
        "train_seconds": train_seconds,
        "sample_seconds": sample_seconds,
        "images": to_images(vectors, side=cfg.data.side),
    }
