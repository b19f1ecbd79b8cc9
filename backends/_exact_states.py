"""The ``exact`` backend's state-level workloads (:mod:`qldm.backends.outputs`) on the torch
engine of :mod:`qldm.backends._states`: the ``probabilities`` and ``fidelity`` outputs, the
``metric_tensor`` task, specs with a ``timestep`` and the ``complex_amplitude`` encoding.

With ``shots``, values are replaced by sampled estimates as on the other paths (Jacobians stay
exact): probabilities by ``Multinomial(shots, p) / shots``, a fidelity by
``Binomial(shots, F) / shots`` (the all-zero outcome of a compute-uncompute circuit),
expectation values by binomial Pauli means (:func:`qldm.backends._shots.pauli_shot_means`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from qldm.backends import _states
from qldm.backends._shots import pauli_shot_means
from qldm.backends.base import Evaluation, Task, Workload
from qldm.backends.outputs import Metric, Output, target_states

__all__ = ["run_states"]

_CHUNK_NUMBERS = 1 << 22
"""Complex numbers per chunk of samples (states times tangents of the Jacobian)."""


def run_states(work: Workload, *, device: torch.device, dtype: torch.dtype) -> Evaluation:
    """Evaluate a state-level workload on the torch engine.

    Returns:
        :class:`Evaluation`: ``values (K, B, W)`` (and ``d_inputs (K, B, W, I)``,
        ``d_weights (K, B, W, P)`` for ``jacobian``), or ``values (1, B, P, P)`` for
        ``metric_tensor``; float64 numpy arrays.

    Raises:
        InvalidSpecError: an amplitude-encoded zero vector (field ``inputs``).
    """
    start = time.perf_counter()
    spec = work.spec
    x = torch.as_tensor(work.inputs, dtype=dtype, device=device)
    w = torch.as_tensor(work.weights, dtype=dtype, device=device)
    _states.check_states_finite(spec, x)
    metadata: dict[str, Any] = {
        "engine": "states",
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "output": work.output.value,
    }
    d = 2**spec.n_qubits
    if work.task is Task.METRIC_TENSOR:
        block = work.metric is Metric.BLOCK_DIAGONAL
        chunk = max(1, _CHUNK_NUMBERS // (d * (spec.n_ansatz_weights + 1)))
        g = torch.cat(
            [_states.metric_tensor(spec, c, w, block_diagonal=block) for c in x.split(chunk)]
        )
        metadata.update(metric=work.metric.value, seconds=time.perf_counter() - start)
        return Evaluation(_numpy(g)[None], metadata=metadata)
    targets = None
    if work.targets is not None:
        cdt = torch.complex64 if dtype == torch.float32 else torch.complex128
        targets = torch.as_tensor(target_states(spec, work.targets), dtype=cdt, device=device)
    strengths = None
    if spec.noisy:
        rows = [spec.layer_strengths(level) for level in work.level_values()]
        strengths = torch.tensor(rows, dtype=dtype, device=device)
    with torch.no_grad():
        if work.task is Task.JACOBIAN:
            tangents = spec.n_inputs + spec.n_weights + 1
            chunk = max(1, _CHUNK_NUMBERS // (d * d * tangents if spec.noisy else d * tangents))
            parts = [
                _states.state_jacobians(
                    spec,
                    xc,
                    w,
                    output=work.output,
                    targets=None if targets is None else targets[i : i + xc.shape[0]],
                    strengths=strengths,
                )
                for i, xc in zip(range(0, x.shape[0], chunk), x.split(chunk), strict=True)
            ]
            values = torch.cat([p[0] for p in parts], 1)
            d_in: np.ndarray | None = _numpy(torch.cat([p[1] for p in parts], 1))
            d_w: np.ndarray | None = _numpy(torch.cat([p[2] for p in parts], 1))
        else:
            values = _states.state_values(
                spec, x, w, output=work.output, targets=targets, strengths=strengths
            )
            d_in = d_w = None
    vals: np.ndarray = _numpy(values)
    if work.shots is not None:
        vals = _sampled(vals, work.output, work.shots, np.random.default_rng(work.seed))
        metadata.update(
            shots=work.shots, seed=work.seed, shot_noise="values sampled; Jacobians are exact"
        )
    metadata["seconds"] = time.perf_counter() - start
    return Evaluation(vals, d_in, d_w, metadata)


def _sampled(values: np.ndarray, output: Output, shots: int, rng: np.random.Generator) -> Any:
    """Shot estimates of exact values ``(K, B, W)``."""
    if output is Output.EXPECTATION:
        return pauli_shot_means(values, shots, rng)
    if output is Output.FIDELITY:
        return rng.binomial(shots, np.clip(values, 0.0, 1.0)) / shots
    p = np.clip(values, 0.0, None)
    p = p / p.sum(-1, keepdims=True)
    flat = p.reshape(-1, p.shape[-1])
    draws = np.stack([rng.multinomial(shots, row) for row in flat])
    return (draws / shots).reshape(values.shape)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu", torch.float64).numpy())
