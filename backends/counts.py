"""The ``counts`` task: measured bitstrings of a circuit, for the ``exact`` and ``aer`` backends.

Measuring every qubit of a circuit in the computational basis, ``shots`` times, gives counts
distributed as ``Multinomial(shots, p)`` with ``p`` the circuit's outcome distribution. This
module computes ``p`` exactly with Aer (``save_probabilities``; the ``density_matrix`` method
when channels act, so channels are exact superoperators, ``statevector`` otherwise), all
circuits of the job in ONE ``AerSimulator.run`` (parameter broadcasting: one circuit per noise
level and ``B`` parameter sets each; the ``amplitude`` encoding binds its state per sample, so
there it is one circuit per sample and level), and then draws the counts from
``numpy.random.default_rng(seed)`` (:func:`qldm.backends._shots.draw_counts`), level by level
and sample by sample. That is the exact statistics of ``shots`` measurements, seeded and
reproducible, and it needs no ``measure`` instructions in the circuit.

:class:`CountsBackend` is this path behind the backend contract; the ``exact`` and ``aer``
backends hand it their ``counts`` workloads. :func:`sample_counts` is the same as a function.

Bitstrings are in Qiskit's order: character ``n - 1 - i`` is qubit ``i`` (qubit 0 rightmost);
outcomes that were never drawn are left out of a dict. Every qubit is measured: a QPY
circuit's own final measurements were removed when it was decoded, so a circuit that measured
only some qubits, or into permuted classical bits, still gets one character per qubit here.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.circuit.library import StatePreparation

from qldm.backends._shots import draw_counts
from qldm.backends.base import (
    NO_CONTEXT,
    Capabilities,
    CircuitKind,
    Context,
    Counts,
    Evaluation,
    Task,
    Workload,
)
from qldm.backends.qpy_aer import MAX_SHOTS, aer_ready, check_shots, is_unitary
from qldm.circuits import PQCSpec
from qldm.circuits.qiskit_builder import build
from qldm.circuits.qpy import QpyCircuit
from qldm.errors import BackendError, BackendLimitError, InvalidSpecError

__all__ = ["MAX_SHOTS", "CountsBackend", "sample_counts"]

MAX_OUTCOMES = 50_000_000
"""Most probabilities (``2^n`` per circuit, summed over circuits) one job may compute."""


class CountsBackend:
    """The ``counts`` task on Aer, for the simulator called ``name`` (``exact`` or ``aer``).

    Args:
        name: the backend the workload was sent to (reported in the metadata).
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        tasks=frozenset({Task.COUNTS}),
        circuits=frozenset({CircuitKind.SPEC, CircuitKind.QPY}),
    )

    def __init__(self, name: str = "aer") -> None:
        self.name = name

    def run(self, work: Workload, context: Context = NO_CONTEXT) -> Evaluation:
        """Measurement counts of every qubit, for every noise level and sample.

        A :class:`PQCSpec` runs with its channels at the spec's strength, or at each of the
        workload's noise levels; a :class:`QpyCircuit`'s noise, if any, is in the circuit.
        ``context`` offers nothing this path uses.

        Returns:
            :class:`Evaluation` with ``counts``: ``K * B`` dicts from bitstring (qubit 0
            rightmost) to count, sample ``b`` of level ``k`` at ``k * B + b``, each summing to
            ``shots``; ``values`` is ``None``.

        Raises:
            InvalidSpecError: ``shots`` above :data:`MAX_SHOTS`.
            BackendLimitError: another task (``field="task"``), or too many outcomes
                (``field="inputs"``).
            BackendError: Aer failed.
        """
        self.capabilities.check(self.name, work.task, work.kind)
        start = time.perf_counter()
        check_shots(work.shots, required=True)
        shots = int(work.shots or 0)
        if isinstance(work.circuit, QpyCircuit):
            circuits, binds, method, n_levels = _qpy_circuits(work.circuit, work)
        else:
            circuits, binds, method, n_levels = _spec_circuits(work.spec, work)
        n_qubits = circuits[0].num_qubits
        n_experiments = sum(len(next(iter(b.values()), [None])) for b in binds)
        if n_experiments * 2**n_qubits > MAX_OUTCOMES:
            raise BackendLimitError(
                f"{n_experiments} circuits of {n_qubits} qubits exceed this backend's limit of "
                f"{MAX_OUTCOMES} outcome probabilities: send fewer samples per job",
                field="inputs",
            )
        probabilities = _run(circuits, binds, method)  # (K * B, 2^n), level-major
        rng = np.random.default_rng(work.seed)
        counts = [draw_counts(p, shots, n_qubits, rng) for p in probabilities]
        return Evaluation(
            values=None,
            counts=counts,
            metadata={
                "backend": self.name,
                "engine": "aer",
                "method": method,
                "levels": n_levels,
                "submissions": 1,
                "experiments": n_experiments,
                "shots": shots,
                "seed": work.seed,
                "seconds": time.perf_counter() - start,
            },
        )


def sample_counts(
    spec: PQCSpec | QpyCircuit,
    inputs: Any,
    weights: Any,
    *,
    noise_levels: Any = None,
    shots: int | None = None,
    seed: int | None = None,
    backend: str = "aer",
) -> list[list[Counts]]:
    """:class:`CountsBackend` as a function: counts of every qubit, per level and sample.

    Args:
        spec: the circuit: a :class:`PQCSpec` (channels at the spec's strength, or at each
            of ``noise_levels``) or a :class:`QpyCircuit` (its noise, if any, is in the
            circuit; no ``noise_levels``).
        inputs: ``(B, I)``.
        weights: ``(P,)``.
        noise_levels: ``(K,)`` channel strengths replacing the spec's, or ``None`` (``K = 1``).
        shots: measurements per circuit, 1..:data:`MAX_SHOTS` (required).
        seed: seed of the draws; the same seed gives the same counts.
        backend: ``exact`` or ``aer`` (both compute the distribution exactly with Aer).

    Returns:
        ``[K][B]`` dicts from bitstring (qubit 0 rightmost) to count; each sums to ``shots``.

    Raises:
        InvalidSpecError: naming ``shots`` (missing or out of range), ``inputs``,
            ``weights``, ``noise_levels``, ``seed`` or ``circuit``.
        BackendLimitError: another backend (``field="backend"``), or too many outcomes.
        BackendError: Aer failed.
    """
    if shots is None:
        raise InvalidSpecError("the counts task needs a number of shots", field="shots")
    check_shots(shots, required=True)
    if backend not in ("exact", "aer"):
        raise BackendLimitError(
            f"the counts task runs on the 'exact' and 'aer' backends, not {backend!r}",
            field="backend",
        )
    work = Workload.build(
        spec, inputs, weights, noise_levels=noise_levels, task=Task.COUNTS, shots=shots, seed=seed
    )
    flat = CountsBackend(backend).run(work).counts or []
    n_batch = work.inputs.shape[0]
    return [flat[k * n_batch : (k + 1) * n_batch] for k in range(len(flat) // n_batch)]


# ---------------------------------------------------------------------- circuits

Binds = dict[Parameter, list[float]]


def _spec_circuits(
    spec: PQCSpec, work: Workload
) -> tuple[list[QuantumCircuit], list[Binds], str, int]:
    levels = work.level_values()
    noisy = spec.noisy and any(max(spec.layer_strengths(level)) > 0.0 for level in levels)
    method = "density_matrix" if noisy else "statevector"
    circuits: list[QuantumCircuit] = []
    binds: list[Binds] = []
    x, w = work.inputs, work.weights
    for level in levels:
        if spec.encoding != "amplitude":
            template = build(spec, noise_level=level)
            circuits.append(_with_probabilities(aer_ready(template.circuit)))
            columns = np.hstack([x, np.broadcast_to(w, (x.shape[0], w.size))])
            binds.append(
                {p: columns[:, j].tolist() for j, p in enumerate(template.parameter_order())}
            )
            continue
        template = build(spec, noise_level=level, amplitudes=x[0])
        head, rest = template.circuit.data[0], template.circuit.copy_empty_like()
        if not isinstance(head.operation, StatePreparation):  # pragma: no cover - builder
            raise BackendError("an amplitude-encoded circuit must start with its state")
        for inst in template.circuit.data[1:]:
            rest.append(inst)
        ansatz = aer_ready(rest)
        for b in range(x.shape[0]):
            circuits.append(_with_probabilities(_with_state(ansatz, x[b])))
            binds.append({p: [float(w[j])] for j, p in enumerate(template.weights)})
    return circuits, binds, method, len(levels)


def _qpy_circuits(
    circuit: QpyCircuit, work: Workload
) -> tuple[list[QuantumCircuit], list[Binds], str, int]:
    x, w = work.inputs, work.weights
    loaded = circuit.load()
    ready = aer_ready(loaded.circuit)
    present = set(ready.parameters)  # a parameter only in the global phase is gone
    bind: Binds = {}
    for j, p in enumerate(loaded.inputs):
        if p in present:
            bind[p] = x[:, j].tolist()
    for j, p in enumerate(loaded.weights):
        if p in present:
            bind[p] = [float(w[j])] * x.shape[0]
    method = "statevector" if is_unitary(ready) else "density_matrix"
    if not bind:  # nothing to broadcast over: one circuit per sample
        probe = _with_probabilities(ready)
        return [probe] * x.shape[0], [{} for _ in range(x.shape[0])], method, 1
    return [_with_probabilities(ready)], [bind], method, 1


def _with_probabilities(circuit: QuantumCircuit) -> QuantumCircuit:
    # the instruction itself: ``QuantumCircuit.save_probabilities`` exists only once
    # qiskit_aer was imported, which a fresh server process may not have done yet
    from qiskit_aer.library import SaveProbabilities

    out = circuit.copy()
    out.append(SaveProbabilities(out.num_qubits), out.qubits)
    return out


def _with_state(ansatz: QuantumCircuit, amplitudes: np.ndarray) -> QuantumCircuit:
    """``ansatz`` preceded by Aer's exact ``set_statevector`` of the normalised sample."""
    from qiskit.quantum_info import Statevector
    from qiskit_aer.library import SetStatevector

    state = amplitudes / np.linalg.norm(amplitudes)
    out = ansatz.copy_empty_like()
    out.append(SetStatevector(Statevector(state.astype(complex))), out.qubits)
    out.compose(ansatz, inplace=True)
    return out


# ---------------------------------------------------------------------- running


def _run(circuits: list[QuantumCircuit], binds: list[Binds], method: str) -> np.ndarray:
    """Outcome probabilities of every experiment, ``(E, 2^n)``, from ONE Aer run."""
    import qiskit_aer  # noqa: F401  (registers save_probabilities on QuantumCircuit)
    from qiskit_aer import AerSimulator

    simulator = AerSimulator(method=method, max_parallel_experiments=0)
    try:
        if any(binds):
            job = simulator.run(circuits, parameter_binds=binds, shots=1)
        else:
            job = simulator.run(circuits, shots=1)
        result = job.result()
    except Exception as exc:  # AerError, RuntimeError, ...
        raise BackendError(f"Aer failed: {str(exc)[:500]}") from exc
    if not result.success:
        raise BackendError(f"Aer failed: {str(result.status)[:500]}")
    n_experiments = len(result.results)
    probabilities = np.stack(
        [
            np.asarray(result.data(i)["probabilities"], dtype=np.float64)
            for i in range(n_experiments)
        ]
    )
    return probabilities
