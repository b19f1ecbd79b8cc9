"""Trajectory sampling (``noise_sampling="trajectory"``) on the ``aer`` backend.

Every (noise level, sample) row draws its own realization of the spec's channels, as on the
``exact`` backend (:mod:`qldm.backends.trajectory`); how depends on the channel:

- **Pauli channels** (bit flip, phase flip, depolarizing): the backend draws each row's Paulis
  itself, from ``numpy.random.default_rng(seed)`` with the same layout as the exact backend
  (:func:`qldm.backends.trajectory.draw_uniforms`, :func:`~qldm.backends.trajectory.pauli_codes`),
  and inserts them as gates where the channels stand. The realized circuit is unitary, so Aer
  runs it on the ``statevector`` method and the forward values and every parameter-shift term
  of a row run on that row's realization: values and Jacobians are those of the drawn
  trajectory, the same numbers as the exact backend's for the same seed. Rows with the same
  realization share one PUB; every PUB travels in one ``EstimatorV2.run``.
- **Amplitude damping**: the jump probability depends on the state, which only the simulation
  knows, so Aer samples it: the circuit keeps its Kraus instructions and runs on the
  ``statevector`` method with one shot per parameter set, which draws Kraus operator ``k``
  with probability ``||K_k psi||^2`` and renormalises (Aer's quantum-trajectory method). Each
  parameter set is its own experiment with its own draw; every noise level runs with its own
  simulator seed (from ``SeedSequence([seed, k])``; Aer re-seeds every PUB from the same seed,
  which would correlate the levels). The values are one trajectory per row; the Jacobians are
  parameter-shift combinations of *independently drawn* trajectories: an unbiased estimate of
  the gradient of the density-matrix expectation (the shift rule holds for the noisy circuit's
  mean), not the derivative of the row's own trajectory as on the exact backend (which a shift
  rule cannot give: a renormalised trajectory is not a trigonometric function of the angle).
  With a seed the draws are reproducible on this backend, but they are not the exact
  backend's draws.

With ``shots`` every parameter set's values are Born-rule estimates from ``shots`` shots
(:func:`qldm.backends._shots.pauli_shot_means`, drawn from the same generator), and the
Jacobians are combined from those estimates, as on hardware.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import numpy as np
import torch
from qiskit.circuit import QuantumCircuit

from qldm.backends._aer_pubs import pubs_for
from qldm.backends._shift import ShiftPlan, combine_levels, plan_shifts
from qldm.backends._shots import pauli_shot_means
from qldm.backends.base import Evaluation, Workload
from qldm.backends.trajectory import check_supported, draw_uniforms, pauli_codes, strength_rows
from qldm.errors import BackendError


class AerBackend(Protocol):
    """What trajectory sampling needs of :class:`qldm.backends.aer.AerBackend`."""

    name: str

    def trajectory_estimator(self, seed: int | None) -> Any:
        """A one-shot statevector ``EstimatorV2`` seeded with ``seed``."""


__all__ = ["run_trajectories"]

_MARKER_LEVEL = 0.5
"""Strength the template is built with, so that every channel slot is in the circuit (a zero
strength leaves its instruction out); the Paulis placed there come from the drawn codes."""


def run_trajectories(backend: AerBackend, work: Workload) -> Evaluation:
    """Evaluate a trajectory workload of a noisy spec on Aer (see the module docstring).

    Returns:
        ``values (K, B, O)`` and, for ``jacobian``, ``d_inputs (K, B, O, I)`` and
        ``d_weights (K, B, O, P)``; metadata says how the trajectories were drawn.

    Raises:
        BackendError: Aer failed.
        BackendLimitError: see :func:`qldm.backends.trajectory.check_supported`.
    """
    start = time.perf_counter()
    spec = work.spec
    check_supported(spec, getattr(work, "output", "expectation"))
    rng = np.random.default_rng(work.seed)
    jacobian = work.task == "jacobian"
    if spec.channel.kind == "amplitude_damping":
        groups = _damping_groups(work)
        how = "aer statevector Kraus sampling (one shot per parameter set)"
    else:
        groups = _pauli_groups(work, rng)
        how = "pauli insertion (the exact backend's draws)"
    evs: list[np.ndarray] = []
    for seed in dict.fromkeys(g.seed for g in groups):
        pubs = [pub for g in groups if g.seed == seed for pub in g.pubs]
        try:
            result = backend.trajectory_estimator(seed).run(pubs, precision=0.0).result()
        except Exception as exc:  # Aer raises AerError, RuntimeError, ValueError, ...
            raise BackendError(f"Aer failed: {str(exc)[:500]}") from exc
        evs.extend(np.asarray(r.data.evs, dtype=np.float64) for r in result)
    b, k, o = work.inputs.shape[0], work.n_levels, spec.n_outputs
    values = np.empty((k, b, o))
    d_in = np.empty((k, b, o, spec.n_inputs)) if jacobian else None
    d_w = np.empty((k, b, o, spec.n_weights)) if jacobian else None
    at = 0
    for seed in dict.fromkeys(g.seed for g in groups):  # the order the PUBs were run in
        for g in (g for g in groups if g.seed == seed):
            group_evs = evs[at : at + len(g.pubs)]
            at += len(g.pubs)
            if work.shots is not None:
                group_evs = [pauli_shot_means(ev, work.shots, rng) for ev in group_evs]
            v, di, dw = combine_levels(g.plan, group_evs, 1)
            values[g.level, g.samples] = v[0]
            if d_in is not None and d_w is not None and di is not None and dw is not None:
                d_in[g.level, g.samples] = di[0]
                d_w[g.level, g.samples] = dw[0]
    return Evaluation(
        values=values,
        d_inputs=d_in,
        d_weights=d_w,
        metadata={
            "backend": backend.name,
            "method": "statevector",
            "noise_sampling": "trajectory",
            "trajectories": how,
            "submissions": len({g.seed for g in groups}),
            "pubs": len(evs),
            "parameter_sets": sum(g.plan.n_parameter_sets for g in groups),
            "shots": work.shots,
            "seed": work.seed,
            "seconds": time.perf_counter() - start,
        },
    )


@dataclass(frozen=True)
class _Group:
    """Samples of one noise level evaluated together: their shift plan and PUBs, and the Aer
    seed of the run they go in (``None``: the unseeded run)."""

    seed: int | None
    level: int
    samples: np.ndarray
    plan: ShiftPlan
    pubs: list[tuple[Any, ...]]


def _pauli_groups(work: Workload, rng: np.random.Generator) -> list[_Group]:

    spec = work.spec
    b = work.inputs.shape[0]
    k = work.n_levels
    strengths = strength_rows(spec, work.noise_levels, b)  # (K B, layers)
    u = draw_uniforms(spec, k * b, rng)
    codes = pauli_codes(
        spec.channel.kind, torch.from_numpy(u), torch.from_numpy(strengths)[:, :, None]
    ).numpy()  # (K B, layers, n)
    jacobian = work.task == "jacobian"
    groups: list[_Group] = []
    for level in range(k):
        patterns: dict[bytes, list[int]] = {}
        for sample in range(b):
            patterns.setdefault(codes[level * b + sample].tobytes(), []).append(sample)
        for rows in patterns.values():
            samples = np.array(rows)
            realized = codes[level * b + rows[0]]
            plan = plan_shifts(spec, work.inputs[samples], work.weights, jacobian=jacobian)
            pubs = pubs_for(spec, plan, _MARKER_LEVEL, transform=partial(_insert, codes=realized))
            groups.append(_Group(None, level, samples, plan, pubs))
    return groups


def _damping_groups(work: Workload) -> list[_Group]:

    spec = work.spec
    b = work.inputs.shape[0]
    plan = plan_shifts(spec, work.inputs, work.weights, jacobian=work.task == "jacobian")
    groups: list[_Group] = []
    for index, level in enumerate(work.level_values()):
        seed = (
            None
            if work.seed is None
            else int(np.random.SeedSequence([work.seed, index]).generate_state(1)[0])
        )
        groups.append(_Group(seed, index, np.arange(b), plan, pubs_for(spec, plan, level)))
    return groups


def _insert(circuit: QuantumCircuit, codes: np.ndarray) -> QuantumCircuit:
    """``circuit`` with its channel instructions replaced by the drawn Paulis:
    ``codes[layer, qubit]`` (0 = I, 1 = X, 2 = Y, 3 = Z); the c-th channel on a qubit is
    that qubit's channel after layer c."""
    out = circuit.copy_empty_like()
    seen: dict[int, int] = {}
    for inst in circuit.data:
        if inst.operation.name != "quantum_channel":
            out.append(inst)
            continue
        q = circuit.find_bit(inst.qubits[0]).index
        layer = seen.get(q, 0)
        seen[q] = layer + 1
        code = int(codes[layer, q])
        if code == 1:
            out.x(q)
        elif code == 2:
            out.y(q)
        elif code == 3:
            out.z(q)
    if sum(seen.values()) != codes.size:
        raise BackendError("the circuit's channel slots do not match the drawn Paulis")
    return out
