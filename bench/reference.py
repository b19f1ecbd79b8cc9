"""The reference work every benchmark measures (issue: 'the reference work')."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

REFERENCE_SPEC = {
    "n_qubits": 6,
    "encoding": "angle_ry",
    "ansatz": "ry_rz_brickwork",
    "layers": 6,
    "channel": {"kind": "amplitude_damping", "strength": 0.01},
    "observables": "z_each",
}
"""6 qubits, ``ry_rz_brickwork``, 6 layers, amplitude damping 0.01, ``angle_ry``, Z on each."""

REFERENCE_BATCH = 128
"""Samples per job in the reference work."""


def per_sample_jacobians(out: Any, xt: Any, wt: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values and full per-sample Jacobians of a torch peer's ``out (B, O)``, one backward pass
    per output (the peers have no Jacobian of their own): ``(B, O)``, ``(B, O, I)``,
    ``(B, O, P)``; ``wt`` holds one copy of the weights per sample."""
    import torch

    d_inputs, d_weights = [], []
    for o in range(out.shape[1]):
        gx, gw = torch.autograd.grad(out[:, o].sum(), (xt, wt), retain_graph=True)
        d_inputs.append(gx)
        d_weights.append(gw)
    return (
        out.detach().numpy(),
        torch.stack(d_inputs, dim=1).numpy(),
        torch.stack(d_weights, dim=1).numpy(),
    )


def median_seconds(call: Callable[[], object], repeats: int, *, warm: bool = True) -> float:
    """Median seconds of ``repeats`` calls, after one untimed warm-up call unless ``warm`` is
    false (the caller has made it)."""
    if warm:
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
