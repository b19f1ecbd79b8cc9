"""The ``aer`` backend: Qiskit Aer's ``EstimatorV2``, one ``run`` per workload.

Every parameter set a workload needs (forward values and every parameter-shift term, see
:mod:`qldm.backends._shift`) travels in ONE ``EstimatorV2.run`` call, through PUB parameter
broadcasting: one PUB per (circuit, noise level), since the channel strength is baked into the
circuit (Aer ``QuantumError`` instructions placed by :func:`qldm.circuits.qiskit_builder.build`).
A PUB is ``(circuit, observables (1, O), parameter values (S, 1, C))``, broadcast to ``(S, O)``.
For angle-type encodings that is K PUBs (K noise levels) of ``B (1 + T)`` parameter sets each;
for the ``amplitude`` encoding every sample and every input-perturbed state is its own circuit.

Exact values (``shots=None``): Aer's ``EstimatorV2`` with precision 0 adds one
``save_expectation_value`` per Pauli term to the circuit and returns the simulator's exact
expectation (read in ``qiskit_aer/primitives/estimator_v2.py``); noisy circuits run on the
``density_matrix`` method (a channel is applied as a superoperator, no trajectory sampling),
noiseless ones on ``statevector`` (same numbers, several times faster).

Sampled values (``shots=N``): Aer's ``EstimatorV2`` does not sample shots. Its ``precision``
adds Gaussian noise ``N(ev, precision)`` to the exact value, with a generator re-seeded from
``seed_simulator`` for every PUB (so all noise levels would get the same draws), and
``shots`` in the run options does not change a saved expectation value of a density-matrix or
noiseless statevector simulation (it averages identical exact values). Neither is the
statistics of N shots, so this backend samples them itself, from the exact values: each
observable is a Pauli string ``P`` with outcomes ±1, so the mean of ``N`` shots is exactly
``2 k / N - 1`` with ``k ~ Binomial(N, (1 + <P>) / 2)``. Every (parameter set, observable)
gets its own ``N`` shots (:func:`qldm.backends._shots.pauli_shot_means`), drawn from
``numpy.random.default_rng(seed)`` in PUB order, and the Jacobians are combined from those
sampled shift terms, as on hardware. (Each estimate has the exact N-shot distribution; the
correlation between commuting observables that share shots on hardware is not reproduced.)

``crx``/``crz`` are not Aer instructions either; they are decomposed into Qiskit's exact
definitions (``rz``/``ry``/``cx`` with angle expressions of the same parameters).

The ``amplitude`` encoding's ``StatePreparation`` is not an Aer instruction. It is the first
operation and acts on ``|0...0>``, so it is replaced by Aer's ``set_statevector`` of the same
normalised state (exact, no synthesis; also valid on the density-matrix method).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np

from qldm.backends._aer_paths import aer_path
from qldm.backends._aer_pubs import pubs_for
from qldm.backends._shift import combine_levels, plan_shifts
from qldm.backends._shots import pauli_shot_means
from qldm.backends.base import (
    NO_CONTEXT,
    SIMULATOR,
    Capabilities,
    Context,
    Evaluation,
    NoiseSampling,
    Workload,
)
from qldm.backends.outputs import check_state_support, needs_state_engine
from qldm.circuits import PQCSpec
from qldm.errors import BackendError, BackendLimitError, InvalidSpecError

MAX_BOUND_AMPLITUDES = 2**25
"""Most state amplitudes an ``amplitude``-encoded workload may bind into its circuits (one
state per sample and per input perturbation and noise level; 2^25 complex numbers = 512 MiB)."""

Method = Literal["density_matrix", "statevector"]
METHODS: tuple[str, ...] = ("density_matrix", "statevector")


class AerBackend:
    """Qiskit Aer, exact or with sampled shots; all work of a workload in one ``run``.

    Args:
        method: how noisy circuits are simulated: ``density_matrix`` (exact channels).
            ``statevector`` refuses noisy workloads (it could only sample channel
            trajectories). Noiseless workloads always run on ``statevector``.
        max_parallel_experiments: Aer runs this many parameter sets at once (0: as many as
            there are cores). Parallel experiments beat parallel state updates on the small
            states (<= 12 qubits) qldm simulates.
        max_parallel_threads: Aer's thread cap (0: all cores).
        backend_options: further ``AerSimulator`` options (``fusion_enable``,
            ``blocking_enable``, ...), passed through unchanged.

    Raises:
        InvalidSpecError: an unknown ``method``, a negative parallelism option, or
            ``method``/``device`` among ``backend_options``.
    """

    name = "aer"
    capabilities: ClassVar[Capabilities] = SIMULATOR

    def __init__(
        self,
        *,
        method: str = "density_matrix",
        max_parallel_experiments: int = 0,
        max_parallel_threads: int = 0,
        backend_options: Mapping[str, Any] | None = None,
    ) -> None:
        if method not in METHODS:
            raise InvalidSpecError(
                f"unknown Aer method {method!r}, use one of {', '.join(METHODS)}", field="method"
            )
        for field, value in (
            ("max_parallel_experiments", max_parallel_experiments),
            ("max_parallel_threads", max_parallel_threads),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidSpecError(f"must be an integer >= 0, got {value!r}", field=field)
        reserved = {"method", "device"} & set(backend_options or {})
        if reserved:
            name = sorted(reserved)[0]
            raise InvalidSpecError(
                f"{name} is chosen by the backend (method= for the noisy-circuit method)",
                field=f"backend_options.{name}",
            )
        self.method = method
        self._options: dict[str, Any] = {
            "max_parallel_experiments": max_parallel_experiments,
            "max_parallel_threads": max_parallel_threads,
            **dict(backend_options or {}),
        }
        self._estimators: dict[str, Any] = {}

    def estimator(self, method: str) -> Any:
        """The (cached) ``qiskit_aer.primitives.EstimatorV2`` that runs ``method``."""
        if method not in self._estimators:
            from qiskit_aer.primitives import EstimatorV2

            self._estimators[method] = EstimatorV2(
                options={
                    "default_precision": 0.0,
                    "backend_options": {"method": method, **self._options},
                    "run_options": {"shots": 1},
                }
            )
        return self._estimators[method]

    def trajectory_estimator(self, seed: int | None) -> Any:
        """A ``statevector`` ``EstimatorV2`` with one shot per parameter set and the simulator
        seed ``seed``: it samples the Kraus instructions of a circuit as trajectories."""
        from qiskit_aer.primitives import EstimatorV2

        backend_options = {"method": "statevector", **self._options}
        if seed is not None:
            backend_options["seed_simulator"] = seed
        return EstimatorV2(
            options={
                "default_precision": 0.0,
                "backend_options": backend_options,
                "run_options": {"shots": 1},
            }
        )

    def run(self, work: Workload, context: Context = NO_CONTEXT) -> Evaluation:
        """Evaluate ``work`` in one ``EstimatorV2.run`` (the ``counts`` task and QPY circuits
        in one Aer run of their own path; ``context`` offers nothing this backend uses).

        With ``noise_sampling="trajectory"`` a noisy spec draws every channel per (noise
        level, sample) instead (:mod:`qldm.backends._aer_trajectory`). State-level work
        (``probabilities``, ``fidelity``, the block-diagonal ``metric_tensor``, ``timestep`` and
        ``complex_amplitude`` specs) runs in one Aer call of :mod:`qldm.backends._aer_states`.

        Returns:
            :class:`Evaluation` with ``values (K, B, O)`` and, for task ``jacobian``,
            ``d_inputs (K, B, O, I)`` and ``d_weights (K, B, O, P)``; metadata
            ``{"submissions": 1, "pubs", "parameter_sets", "seconds", "method", "shots", ...}``.

        Raises:
            BackendLimitError: a noisy workload with ``method="statevector"``, or an
                ``amplitude``-encoded one that binds more than :data:`MAX_BOUND_AMPLITUDES`.
            BackendError: Aer failed.
        """
        self.capabilities.check(self.name, work.task, work.kind, work.noise_sampling)
        other = aer_path(self.name, work)
        if other is not None:
            return other.run(work, context)
        if work.noise_sampling is NoiseSampling.TRAJECTORY and work.spec.noisy:
            from qldm.backends._aer_trajectory import run_trajectories

            return run_trajectories(self, work)
        check_state_support(self.name, work)
        if needs_state_engine(work):  # probabilities, fidelity, metric, timestep, complex
            from qldm.backends._aer_states import run_states

            method = self._method_for(work.spec, work.level_values())
            return run_states(self, work, method=method, options=self._options)
        start = time.perf_counter()
        spec = work.spec
        levels = work.level_values()
        method = self._method_for(spec, levels)
        plan = plan_shifts(spec, work.inputs, work.weights, jacobian=work.task == "jacobian")
        if spec.encoding == "amplitude":
            bound = len(plan.groups) * len(levels) * 2**spec.n_qubits
            if bound > MAX_BOUND_AMPLITUDES:
                raise BackendLimitError(
                    f"this amplitude-encoded workload binds {len(plan.groups) * len(levels)} "
                    f"states of {2**spec.n_qubits} amplitudes (more than {MAX_BOUND_AMPLITUDES} "
                    "in all); split the batch",
                    field="inputs",
                )
        pubs = [pub for level in levels for pub in pubs_for(spec, plan, level)]
        estimator = self.estimator(method)
        try:
            result = estimator.run(pubs, precision=0.0).result()
        except Exception as exc:  # Aer raises AerError, RuntimeError, ValueError, ...
            message = str(exc)
            if len(message) > 500:  # Aer repeats its message once per experiment
                message = message[:500] + " ..."
            raise BackendError(f"Aer failed: {message}") from exc
        evs = [np.asarray(pub_result.data.evs, dtype=np.float64) for pub_result in result]
        if work.shots is not None:
            rng = np.random.default_rng(work.seed)
            evs = [pauli_shot_means(ev, work.shots, rng) for ev in evs]
        values, d_inputs, d_weights = combine_levels(plan, evs, len(levels))
        return Evaluation(
            values=values,
            d_inputs=d_inputs,
            d_weights=d_weights,
            metadata={
                "backend": self.name,
                "method": method,
                "submissions": 1,
                "pubs": len(pubs),
                "parameter_sets": plan.n_parameter_sets * len(levels),
                "shots": work.shots,
                "sampling": "exact" if work.shots is None else "binomial",
                "seed": work.seed,
                "seconds": time.perf_counter() - start,
            },
        )

    def _method_for(self, spec: PQCSpec, levels: list[float | None]) -> str:
        noisy = spec.noisy and any(max(spec.layer_strengths(level)) > 0.0 for level in levels)
        if not noisy:
            return "statevector"
        if self.method == "statevector":
            raise BackendLimitError(
                "the statevector method cannot apply noise channels exactly; use density_matrix",
                field="method",
            )
        return self.method
