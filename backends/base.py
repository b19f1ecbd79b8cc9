"""The contract every backend fulfils: a :class:`Workload` in, an :class:`Evaluation` out.

Shapes: ``B`` samples, ``I`` inputs, ``P`` weights, ``O`` observables, ``K`` noise levels
(``K = 1`` when no noise levels are given: the spec's own channel strength is used).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from qldm.circuits import PQCSpec
from qldm.circuits.spec import check_noise_level
from qldm.errors import InvalidSpecError

Task = Literal["expectation", "jacobian"]


@dataclass(frozen=True)
class Workload:
    """One evaluation of a spec on a batch.

    Attributes:
        spec: the circuit.
        inputs: ``(B, I)`` float64.
        weights: ``(P,)`` float64.
        noise_levels: ``(K,)`` float64, each replacing the channel strength, or ``None``.
        task: ``expectation`` (values only) or ``jacobian`` (values and both Jacobians).
        shots: shots per circuit; ``None`` means exact expectation values.
        seed: seed for shot sampling.
    """

    spec: PQCSpec
    inputs: np.ndarray
    weights: np.ndarray
    noise_levels: np.ndarray | None = None
    task: Task = "expectation"
    shots: int | None = None
    seed: int | None = None

    @classmethod
    def build(
        cls,
        spec: PQCSpec,
        inputs: Any,
        weights: Any,
        *,
        noise_levels: Any = None,
        task: Task = "expectation",
        shots: int | None = None,
        seed: int | None = None,
    ) -> Workload:
        """Validate shapes and values and build a workload.

        Raises:
            InvalidSpecError: naming ``inputs``, ``weights``, ``noise_levels``, ``task`` or
                ``shots``.
        """
        x = _as_matrix(inputs, spec.n_inputs, "inputs")
        w = _as_vector(weights, spec.n_weights, "weights")
        levels = None
        if noise_levels is not None:
            levels = _as_vector(noise_levels, None, "noise_levels")
            if levels.size == 0:
                raise InvalidSpecError(
                    "give at least one noise level, or none", field="noise_levels"
                )
            for level in levels:
                check_noise_level(spec, float(level))
        if spec.encoding == "amplitude" and np.any(np.linalg.norm(x, axis=1) == 0.0):
            raise InvalidSpecError("amplitude encoding of a zero vector", field="inputs")
        if task not in ("expectation", "jacobian"):
            raise InvalidSpecError(f"unknown task {task!r}", field="task")
        if shots is not None and (not isinstance(shots, int) or shots < 1):
            raise InvalidSpecError(
                f"shots must be a positive integer or null, got {shots!r}", field="shots"
            )
        return cls(spec, x, w, levels, task, shots, seed)

    @property
    def n_levels(self) -> int:
        """``K``."""
        return 1 if self.noise_levels is None else int(self.noise_levels.size)

    def level_values(self) -> list[float | None]:
        """The noise level of each of the K evaluations (``None``: the spec's own strength)."""
        if self.noise_levels is None:
            return [None]
        return [float(v) for v in self.noise_levels]


@dataclass(frozen=True)
class Evaluation:
    """What a backend returns.

    Attributes:
        values: ``(K, B, O)`` expectation values.
        d_inputs: ``(K, B, O, I)`` derivatives by inputs (task ``jacobian``), else ``None``.
        d_weights: ``(K, B, O, P)`` derivatives by weights (task ``jacobian``), else ``None``.
        metadata: backend facts (circuits run, submissions, shots, timings, ...).
    """

    values: np.ndarray
    d_inputs: np.ndarray | None = None
    d_weights: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """Anything that evaluates workloads."""

    name: str

    def run(self, work: Workload) -> Evaluation:
        """Evaluate ``work``; raises :class:`qldm.errors.BackendLimitError` when it cannot."""
        ...


def _as_vector(value: Any, size: int | None, name: str) -> np.ndarray:
    arr = _finite_array(value, name)
    if arr.ndim != 1 or (size is not None and arr.shape[0] != size):
        want = f"({size},)" if size is not None else "(K,)"
        raise InvalidSpecError(f"expected shape {want}, got {arr.shape}", field=name)
    return arr


def _as_matrix(value: Any, width: int, name: str) -> np.ndarray:
    arr = _finite_array(value, name)
    if arr.ndim != 2 or arr.shape[1] != width or arr.shape[0] < 1:
        raise InvalidSpecError(
            f"expected shape (B, {width}) with B >= 1, got {arr.shape}", field=name
        )
    return arr


def _finite_array(value: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidSpecError(f"not an array of numbers ({exc})", field=name) from None
    if not np.all(np.isfinite(arr)):
        raise InvalidSpecError("contains NaN or Inf", field=name)
    return arr
