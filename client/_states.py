"""``QuantumLayer``'s state-level surface: complex inputs, the timestep ``t``, fidelity
targets, the ``probabilities``/``fidelity`` outputs and the metric tensor.

The layer calls these helpers; the maths lives in :mod:`qldm.backends._states` (in the autograd
graph on ``exact``) and behind the backends' ``output``/``metric_tensor`` work
(:mod:`qldm.backends.outputs`) on every other path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from qldm.backends.base import Evaluation, Task
from qldm.backends.outputs import Metric, Output
from qldm.circuits import PQCSpec
from qldm.errors import BackendError, InvalidSpecError

__all__ = [
    "BoundTargets",
    "complete_inputs",
    "in_graph_values",
    "metric_from_evaluator",
    "target_array",
]


def complete_inputs(spec: PQCSpec, inputs: Any, t: Any) -> Any:
    """The layer's ``(B, I)`` real inputs from ``inputs`` and the timestep features ``t``.

    A complex ``(B, 2**n)`` tensor (``complex_amplitude``) becomes ``[Re, Im]`` (differentiable);
    ``t`` ``(B,)`` or ``(B, m)`` is appended as the last ``m`` columns.

    Raises:
        InvalidSpecError: a complex tensor for another encoding, or ``t`` of the wrong shape,
            or given for a spec without ``timestep`` (field ``inputs`` or ``t``).
    """
    x = inputs
    if isinstance(x, torch.Tensor) and x.is_complex():
        if spec.encoding != "complex_amplitude":
            raise InvalidSpecError(
                "complex inputs need the complex_amplitude encoding", field="inputs"
            )
        x = torch.cat([x.real, x.imag], dim=-1)
    m = spec.timestep_features
    if t is None:
        return x
    if not m:
        raise InvalidSpecError("t is for specs with a timestep embedding", field="t")
    if not isinstance(t, torch.Tensor) or not isinstance(x, torch.Tensor):
        raise InvalidSpecError("t must be a torch.Tensor (B,) or (B, m)", field="t")
    tt = t[:, None] if t.dim() == 1 else t
    if tt.dim() != 2 or tt.shape != (x.shape[0], m):
        raise InvalidSpecError(
            f"expected t of shape ({x.shape[0]},) or ({x.shape[0]}, {m}), got {tuple(t.shape)}",
            field="t",
        )
    if x.dim() != 2 or x.shape[1] != spec.n_data_inputs:
        raise InvalidSpecError(
            f"with t given, inputs are the {spec.n_data_inputs} data inputs, got {tuple(x.shape)}",
            field="inputs",
        )
    dtype = torch.promote_types(x.dtype, tt.dtype) if x.is_floating_point() else tt.dtype
    return torch.cat([x.to(dtype), tt.to(device=x.device, dtype=dtype)], dim=1)


def target_array(spec: PQCSpec, output: Output, target: Any, batch: int) -> np.ndarray | None:
    """``(B, 2 * 2**n)`` float64 targets (``[Re, Im]``) for ``output="fidelity"``, else ``None``.

    Raises:
        InvalidSpecError: a missing, misshaped or zero target, or one given for another output
            (field ``target``).
    """
    if output is not Output.FIDELITY:
        if target is not None:
            raise InvalidSpecError("target is for output='fidelity' only", field="target")
        return None
    if target is None:
        raise InvalidSpecError("output='fidelity' needs a target (B, 2**n)", field="target")
    d = 2**spec.n_qubits
    arr = target.detach().cpu().numpy() if isinstance(target, torch.Tensor) else np.asarray(target)
    if np.iscomplexobj(arr):
        arr = np.concatenate([arr.real, arr.imag], axis=-1)
    arr = np.asarray(arr, dtype=np.float64)
    if arr.shape != (batch, 2 * d):
        raise InvalidSpecError(
            f"expected a target of shape ({batch}, {d}) complex or ({batch}, {2 * d}) real, got "
            f"{arr.shape}",
            field="target",
        )
    if not np.all(np.isfinite(arr)) or np.any(np.linalg.norm(arr, axis=1) == 0.0):
        raise InvalidSpecError("a target is zero, NaN or infinite", field="target")
    return arr


def in_graph_values(
    spec: PQCSpec,
    x: torch.Tensor,
    w: torch.Tensor,
    *,
    output: Output,
    targets: np.ndarray | None,
    levels: torch.Tensor | None,
) -> torch.Tensor:
    """``(K, B, W)`` on the torch engine, in the autograd graph (to ``x``, ``w``, ``levels``)."""
    from qldm.backends import _states
    from qldm.backends.outputs import target_states

    _states.check_states_finite(spec, x)
    t = None
    if targets is not None:
        cdt = torch.complex64 if x.dtype == torch.float32 else torch.complex128
        t = torch.as_tensor(target_states(spec, targets), dtype=cdt, device=x.device)
    strengths = None
    if spec.noisy:
        if levels is None:
            strengths = torch.tensor([spec.layer_strengths()], dtype=x.dtype, device=x.device)
        else:
            strengths = levels.to(device=x.device, dtype=x.dtype)[:, None].expand(-1, spec.layers)
    return _states.state_values(spec, x, w, output=output, targets=t, strengths=strengths)


class BoundTargets:
    """An evaluator with one call's fidelity targets bound (what
    :class:`qldm.client._autograd.BackendFunction` calls).

    Args:
        inner: a :class:`qldm.client._autograd.LocalEvaluator` or ``RemoteEvaluator``.
        targets: ``(B, 2 * 2**n)`` or ``None``.
    """

    def __init__(self, inner: Any, targets: np.ndarray | None) -> None:
        self.inner = inner
        self.targets = targets
        self.output = inner.output

    def __call__(
        self,
        inputs: np.ndarray,
        weights: np.ndarray,
        *,
        noise_levels: np.ndarray | None,
        task: Task,
        seed: int | None,
    ) -> Evaluation:
        result: Evaluation = self.inner(
            inputs, weights, noise_levels=noise_levels, task=task, seed=seed, targets=self.targets
        )
        return result


def metric_from_evaluator(
    evaluator: Any, x: np.ndarray, w: np.ndarray, *, metric: Metric, spec: PQCSpec
) -> np.ndarray:
    """``(B, P, P)`` from a backend or server through the ``metric_tensor`` task.

    Raises:
        BackendError: the backend returned another shape (field ``values``).
    """
    result = evaluator(x, w, noise_levels=None, task=Task.METRIC_TENSOR, seed=None, metric=metric)
    p = spec.n_weights
    values = None if result.values is None else np.asarray(result.values, dtype=np.float64)
    if values is None or values.shape != (1, x.shape[0], p, p):
        shape = None if values is None else values.shape
        raise BackendError(
            f"the backend returned shape {shape}, expected (1, {x.shape[0]}, {p}, {p})",
            field="values",
        )
    return values[0]
