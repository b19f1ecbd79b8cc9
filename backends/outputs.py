"""What a workload's ``values`` hold beyond expectation values, and which backend gives what.

A workload (:class:`qldm.backends.base.Workload`) names an :class:`Output` for the
``expectation`` and ``jacobian`` tasks:

- ``expectation``: ``values (K, B, O)``, the spec's observables;
- ``probabilities``: ``values (K, B, 2**n)``, Born-rule probabilities of every outcome
  (Qiskit order: bit ``q`` of outcome ``j`` is qubit ``q``);
- ``fidelity``: ``values (K, B, 1)``, ``|<phi_b|U(w)|psi(x_b)>|^2`` (``<phi_b|rho_b|phi_b>``
  when channels act) against a per-sample target ``phi_b``, given as ``targets (B, 2 * 2**n)``
  (real parts, then imaginary parts; normalised here).

The Jacobians of the ``jacobian`` task have the same middle axis (``(K, B, W, I)``,
``(K, B, W, P)`` with ``W`` the width above). The ``metric_tensor`` task returns the
Fubini-Study metric of the weights, ``values (1, B, P, P)`` (a :class:`Metric`: the full matrix
or its block diagonal, :mod:`qldm.circuits.metric`).

:class:`StateCapabilities` says which outputs, metrics and spec features (``timestep``,
``complex_amplitude``) a backend runs; :func:`check_state_support` refuses the rest with
:class:`qldm.errors.BackendLimitError` naming ``output``, ``metric`` or ``circuit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from qldm.circuits.spec import PQCSpec
from qldm.errors import BackendLimitError, InvalidSpecError

__all__ = [
    "MAX_NOISY_PROBABILITY_QUBITS",
    "Metric",
    "Output",
    "StateCapabilities",
    "check_state_request",
    "check_state_support",
    "needs_state_engine",
    "output_width",
    "state_capabilities",
    "target_states",
]

MAX_NOISY_PROBABILITY_QUBITS = 8
"""The exact backend's noisy ``probabilities``/``fidelity`` run a density matrix per sample."""


class Output(StrEnum):
    """What ``values`` hold for the ``expectation`` and ``jacobian`` tasks."""

    EXPECTATION = "expectation"
    PROBABILITIES = "probabilities"
    FIDELITY = "fidelity"


class Metric(StrEnum):
    """The ``metric_tensor`` task's matrix: ``full``, or its ``block_diagonal`` approximation."""

    FULL = "full"
    BLOCK_DIAGONAL = "block_diagonal"


def output_width(spec: PQCSpec, output: Output | str) -> int:
    """``W``: ``O`` for ``expectation``, ``2**n`` for ``probabilities``, 1 for ``fidelity``."""
    chosen = Output(output)
    if chosen is Output.PROBABILITIES:
        return 2**spec.n_qubits
    if chosen is Output.FIDELITY:
        return 1
    return spec.n_outputs


def target_states(spec: PQCSpec, targets: np.ndarray) -> np.ndarray:
    """``(B, 2**n)`` complex128 normalised target states from ``targets (B, 2 * 2**n)``."""
    d = 2**spec.n_qubits
    z = targets[:, :d] + 1j * targets[:, d:]
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def check_state_request(
    circuit: Any,
    *,
    task: str,
    inputs: np.ndarray,
    output: Any,
    targets: Any,
    metric: Any,
    noise_levels: np.ndarray | None,
) -> tuple[Output, np.ndarray | None, Metric]:
    """Validate the output, targets and metric of a workload.

    Args:
        circuit: the workload's circuit (a :class:`PQCSpec` or a QPY circuit).
        task: the (validated) task.
        inputs: ``(B, I)`` (validated).
        output: an :class:`Output` value.
        targets: ``(B, 2 * 2**n)`` or ``None``.
        metric: a :class:`Metric` value.
        noise_levels: ``(K,)`` or ``None``.

    Returns:
        The output, the targets as float64 (``None`` unless ``fidelity``) and the metric.

    Raises:
        InvalidSpecError: naming ``output``, ``targets``, ``metric``, ``noise_levels`` or
            ``circuit.channel``.
    """
    chosen = _enum(Output, output, "output")
    kind = _enum(Metric, metric, "metric")
    is_spec = isinstance(circuit, PQCSpec)
    if chosen is not Output.EXPECTATION and task not in ("expectation", "jacobian"):
        raise InvalidSpecError(
            f"output={chosen} is for the expectation and jacobian tasks, not {task}",
            field="output",
        )
    if chosen is not Output.EXPECTATION and not is_spec:
        raise InvalidSpecError(f"output={chosen} needs a PQCSpec circuit", field="output")
    if kind is not Metric.FULL and task != "metric_tensor":
        raise InvalidSpecError("metric is for the metric_tensor task only", field="metric")
    if task == "metric_tensor":
        if not is_spec:
            raise InvalidSpecError("the metric_tensor task needs a PQCSpec circuit", field="task")
        if circuit.noisy:
            raise InvalidSpecError(
                "the Fubini-Study metric is defined for noiseless circuits (pure states)",
                field="circuit.channel",
            )
        if noise_levels is not None:
            raise InvalidSpecError(
                "the metric_tensor task takes no noise levels", field="noise_levels"
            )
    if chosen is not Output.FIDELITY:
        if targets is not None:
            raise InvalidSpecError("targets are for output=fidelity only", field="targets")
        return chosen, None, kind
    if targets is None:
        raise InvalidSpecError("output=fidelity needs targets (B, 2 * 2**n)", field="targets")
    d = 2**circuit.n_qubits
    try:
        arr = np.asarray(targets, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidSpecError(f"not an array of numbers ({exc})", field="targets") from None
    if arr.shape != (inputs.shape[0], 2 * d):
        raise InvalidSpecError(
            f"expected shape ({inputs.shape[0]}, {2 * d}) (B, real parts then imaginary parts "
            f"of 2**n amplitudes), got {arr.shape}",
            field="targets",
        )
    if not np.all(np.isfinite(arr)):
        raise InvalidSpecError("contains NaN or Inf", field="targets")
    if np.any(np.linalg.norm(arr, axis=1) == 0.0):
        raise InvalidSpecError("a target state is the zero vector", field="targets")
    return chosen, arr, kind


def _enum(cls: Any, value: Any, field: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        known = ", ".join(v.value for v in cls)
        raise InvalidSpecError(f"unknown {field} {value!r}: use {known}", field=field) from None


@dataclass(frozen=True)
class StateCapabilities:
    """The outputs, metrics and spec features a backend runs.

    Attributes:
        outputs: the :class:`Output` values of the ``expectation``/``jacobian`` tasks.
        metrics: the :class:`Metric` values of the ``metric_tensor`` task (empty: no task).
        timestep: specs with a ``timestep`` embedding.
        complex_amplitude: the ``complex_amplitude`` encoding.
    """

    outputs: frozenset[Output]
    metrics: frozenset[Metric]
    timestep: bool
    complex_amplitude: bool


EXACT_STATES = StateCapabilities(frozenset(Output), frozenset(Metric), True, True)
AER_STATES = StateCapabilities(frozenset(Output), frozenset({Metric.BLOCK_DIAGONAL}), True, True)
"""Aer (:mod:`qldm.backends._aer_states`): outcome probabilities, the compute-uncompute
fidelity (noisy specs too: density matrix), the block-diagonal metric from measured circuits,
timestep and complex amplitude specs, all with parameter-shift Jacobians."""
DEVICE_STATES = StateCapabilities(frozenset(Output), frozenset({Metric.BLOCK_DIAGONAL}), True, True)
"""``aer:``/``fake:``/``ibm:`` (:mod:`qldm.backends._runtime_states`): the same from counts
(``SamplerV2``, M3 quasi-probabilities where the backend mitigates readout); ``expectation``
of ``timestep``/``complex_amplitude`` specs for ``I``/``Z`` observables."""


def state_capabilities(name: str) -> StateCapabilities:
    """The :class:`StateCapabilities` of the backend called ``name`` (a known name)."""
    if name == "exact":
        return EXACT_STATES
    if name == "aer":
        return AER_STATES
    return DEVICE_STATES


def check_state_support(name: str, work: Any) -> None:
    """Refuse an output, metric or spec feature the backend ``name`` does not run.

    Args:
        name: the backend's name.
        work: a :class:`qldm.backends.base.Workload`.

    Raises:
        BackendLimitError: naming ``output``, ``metric``, ``task`` or ``circuit``.
    """
    caps = state_capabilities(name)
    if work.output not in caps.outputs:
        raise BackendLimitError(
            f"the {name} backend does not compute output={work.output}; exact does",
            field="output",
        )
    if work.task == "metric_tensor" and work.metric not in caps.metrics:
        if not caps.metrics:
            raise BackendLimitError(
                f"the {name} backend does not run the metric_tensor task; exact does",
                field="task",
            )
        raise BackendLimitError(
            f"the {name} backend computes metric={', '.join(sorted(caps.metrics))} only "
            f"(from measured circuits); exact computes the full metric",
            field="metric",
        )
    spec = work.circuit
    if not isinstance(spec, PQCSpec):
        return
    if spec.timestep is not None and not caps.timestep:
        raise BackendLimitError(
            f"the {name} backend does not run specs with a timestep; exact does",
            field="circuit.timestep",
        )
    if spec.timestep is not None and work.task == "counts":
        raise BackendLimitError(
            "the counts task does not take a timestep spec: ask for output=probabilities "
            "with shots (frequencies) instead",
            field="task",
        )
    if spec.encoding == "complex_amplitude" and work.task == "counts":
        raise BackendLimitError(
            "the counts task does not take the complex_amplitude encoding yet: ask for "
            "output=probabilities with shots (frequencies) instead",
            field="task",
        )
    if spec.encoding == "complex_amplitude" and not caps.complex_amplitude:
        raise BackendLimitError(
            f"the {name} backend does not run the complex_amplitude encoding; exact does",
            field="circuit.encoding",
        )
    noisy_state = work.output is not Output.EXPECTATION and spec.noisy
    if name == "exact" and noisy_state and spec.n_qubits > MAX_NOISY_PROBABILITY_QUBITS:
        raise BackendLimitError(
            f"the exact backend computes noisy {work.output} on at most "
            f"{MAX_NOISY_PROBABILITY_QUBITS} qubits (a density matrix per sample); use aer",
            field="circuit",
        )
    if name == "exact" and work.output is Output.FIDELITY and spec.noisy:
        raise BackendLimitError(
            "the exact backend computes the fidelity of noiseless circuits; aer takes noisy "
            "ones (density matrix)",
            field="output",
        )


def needs_state_engine(work: Any) -> bool:
    """Whether a spec workload needs the state-level path (a non-default output, the
    ``metric_tensor`` task, a timestep or the complex amplitude encoding)."""
    spec = work.circuit
    if not isinstance(spec, PQCSpec) or work.task == "counts":
        return False
    return (
        work.output is not Output.EXPECTATION
        or work.task == "metric_tensor"
        or spec.timestep is not None
        or spec.encoding == "complex_amplitude"
    )
