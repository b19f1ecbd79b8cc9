"""The ``aer`` backend's state-level workloads (:mod:`qldm.backends.outputs`) in one Aer run.

Every parameter set of the workload (each sample's forward row, every parameter-shift row,
every perturbed state of an input Jacobian, at every noise level) is a row of one circuit per
noise level (:mod:`qldm.backends._state_rows`, :mod:`qldm.circuits.state_circuits`), and all
rows go to Aer in ONE call:

- ``probabilities`` and ``fidelity``: ``AerSimulator.run(circuits, parameter_binds=...)`` with
  ``save_probabilities`` (exact outcome probabilities; noisy specs on the density-matrix
  method, channels as Kraus instructions). A fidelity is the probability of the all-zero
  outcome of the compute-uncompute circuit ``V_phi^dag U(theta) V_psi`` (preparations of
  :mod:`qldm.circuits.state_prep`), which equals ``<phi|rho|phi>`` for a noisy spec;
- ``expectation`` (specs with a ``timestep`` or the ``complex_amplitude`` encoding): Aer's
  ``EstimatorV2`` on the same rows;
- ``metric_tensor`` (``block_diagonal`` only): one circuit per layer of
  :func:`qldm.circuits.metric.metric_layers`, one row per sample, its outcome probabilities
  giving the layer's block (:func:`qldm.backends._state_rows.metric_from_probabilities`).

With ``shots`` every row's outcome probabilities are replaced by ``Multinomial(shots, p) /
shots`` (expectation values by binomial Pauli means, :func:`qldm.backends._shots.pauli_shot_means`)
drawn from ``numpy.random.default_rng(seed)``, and the Jacobians are combined from the sampled
rows, as on a device.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
from qiskit import QuantumCircuit
from qiskit.primitives.containers.bindings_array import BindingsArray

from qldm.backends._aer_pubs import _aer_gates
from qldm.backends._shots import pauli_shot_means
from qldm.backends._state_rows import (
    combine_rows,
    metric_from_probabilities,
    metric_rows,
    plan_rows,
    row_values,
)
from qldm.backends.base import Evaluation, Task, Workload
from qldm.backends.outputs import Output
from qldm.circuits.state_circuits import metric_circuit, state_circuit
from qldm.circuits.transpile import HardwareCircuit
from qldm.errors import BackendError

__all__ = ["run_states", "sample_probabilities"]


class _Aer(Protocol):
    name: str

    def estimator(self, method: str) -> Any:
        """Aer's ``EstimatorV2`` for ``method``."""
        ...


def run_states(
    backend: _Aer, work: Workload, *, method: str, options: Mapping[str, Any]
) -> Evaluation:
    """Evaluate a state-level workload on Aer (one run).

    Args:
        backend: the :class:`qldm.backends.aer.AerBackend`.
        work: the workload.
        method: the simulation method (``statevector`` for noiseless work).
        options: further ``AerSimulator`` options (the backend's parallelism).

    Returns:
        :class:`Evaluation`: ``values (K, B, W)`` (``d_inputs (K, B, W, I)``,
        ``d_weights (K, B, W, P)`` for ``jacobian``) or ``values (1, B, P, P)`` for
        ``metric_tensor``; metadata ``submissions`` (1), ``circuits``, ``parameter_sets``,
        ``method``, ``shots``, ``seconds``.

    Raises:
        BackendLimitError: a noisy workload with ``method="statevector"``.
        InvalidSpecError: a state encoding of a zero vector (field ``inputs``).
        BackendError: Aer failed.
    """
    start = time.perf_counter()
    spec = work.spec
    levels = work.level_values()
    rng = np.random.default_rng(work.seed)
    meta: dict[str, Any] = {"backend": backend.name, "method": method, "submissions": 1}
    if work.task is Task.METRIC_TENSOR:
        layers, rows = metric_rows(work)
        circuits = [metric_circuit(spec, layer) for layer in layers]
        probs = _probabilities(method, options, [(c, rows) for c in circuits])
        if work.shots is not None:
            probs = [sample_probabilities(p, work.shots, rng) for p in probs]
        g = metric_from_probabilities(work, layers, probs)
        meta.update(metric=work.metric.value, circuits=len(circuits))
        meta.update(parameter_sets=len(circuits) * rows.shape[0], shots=work.shots)
        meta.update(seed=work.seed, seconds=time.perf_counter() - start)
        return Evaluation(g[None], metadata=meta)
    plan = plan_rows(work, jacobian=work.task is Task.JACOBIAN)
    fidelity = work.output is Output.FIDELITY
    hws = [state_circuit(spec, fidelity=fidelity, noise="aer", noise_level=lv) for lv in levels]
    labels = spec.pauli_labels()
    if work.output is Output.EXPECTATION:
        pubs = [(_aer_ready(hw.circuit), [labels], _bindings(hw, plan.rows)) for hw in hws]
        try:
            result = backend.estimator(method).run(pubs, precision=0.0).result()
        except Exception as exc:  # Aer raises AerError, RuntimeError, ValueError, ...
            raise BackendError(f"Aer failed: {str(exc)[:500]}") from exc
        level_values = [np.asarray(r.data.evs, dtype=np.float64) for r in result]
        if work.shots is not None:
            level_values = [pauli_shot_means(v, work.shots, rng) for v in level_values]
    else:
        probs = _probabilities(method, options, [(hw, plan.rows) for hw in hws])
        if work.shots is not None:
            probs = [sample_probabilities(p, work.shots, rng) for p in probs]
        level_values = [row_values(p, work.output, labels) for p in probs]
    values, d_inputs, d_weights = combine_rows(plan, level_values)
    meta.update(output=work.output.value, circuits=len(hws))
    meta.update(parameter_sets=len(hws) * plan.rows.shape[0], shots=work.shots, seed=work.seed)
    meta.update(seconds=time.perf_counter() - start)
    return Evaluation(values, d_inputs, d_weights, meta)


def sample_probabilities(p: np.ndarray, shots: int, rng: np.random.Generator) -> np.ndarray:
    """``Multinomial(shots, p_s) / shots`` for every row of ``p (S, D)``."""
    clipped = np.clip(p, 0.0, None)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    return np.stack([rng.multinomial(shots, row) for row in clipped]) / shots


def _probabilities(
    method: str, options: Mapping[str, Any], jobs: list[tuple[HardwareCircuit, np.ndarray]]
) -> list[np.ndarray]:
    """Exact outcome probabilities of the data qubits, ``(S_i, 2**n)`` for every
    ``(circuit, rows (S_i, C))``, in one ``AerSimulator.run``."""
    from qiskit_aer import AerSimulator

    circuits, binds = [], []
    for hw, rows in jobs:
        circuit = _aer_ready(hw.circuit).copy()
        circuit.save_probabilities(list(range(hw.n_data)))
        present = set(circuit.parameters)
        order = hw.parameter_order()
        binds.append({p: rows[:, i].tolist() for i, p in enumerate(order) if p in present})
        circuits.append(circuit)
    simulator = AerSimulator(method=method, **options)
    try:
        result = simulator.run(circuits, parameter_binds=binds).result()
    except Exception as exc:  # Aer raises AerError, RuntimeError, ValueError, ...
        raise BackendError(f"Aer failed: {str(exc)[:500]}") from exc
    out, index = [], 0
    for _, rows in jobs:
        s = rows.shape[0]
        out.append(
            np.array([result.data(index + i)["probabilities"] for i in range(s)], dtype=float)
        )
        index += s
    return out


def _aer_ready(circuit: QuantumCircuit) -> QuantumCircuit:
    return _aer_gates(circuit)


def _bindings(hw: HardwareCircuit, rows: np.ndarray) -> BindingsArray:
    params = tuple(hw.parameter_order())
    return BindingsArray(data={params: rows[:, None, : len(params)]})
