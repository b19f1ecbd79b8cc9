"""What a runtime workload costs before it is submitted, and how it is split to fit a job.

:func:`estimate` counts, from the prepared PUBs (nothing runs):

- ``circuits``: bound circuits after broadcasting (``R x S`` per level for ``SamplerV2``,
  ``R x S x O`` for ``EstimatorV2``, the upper bound IBM's job-limits page gives: observables
  that commute may share a circuit);
- ``executions``: circuits x shots, the quantity IBM limits per job;
- ``payload_bytes``: the parameter bindings (float64) plus the QPY size of the circuit, once;
- ``qpu_seconds``: ``executions x (rep_delay + circuit duration)``, the time the QPU spends
  on the shots (``rep_delay`` is the device's default, 250 µs on IBM's Eagle and Heron
  devices; circuit duration from the scheduled ISA circuit plus its measurement). IBM adds a
  per-job overhead of a few seconds that this leaves out, so it is a lower bound.

IBM's documented per-job limit (https://quantum.cloud.ibm.com/docs/guides/job-limits, "Maximum
executions"): at most 10 million executions per Sampler job; Estimator jobs are split into
sub-jobs by the service, so the limit does not apply to them. :func:`split_pubs` cuts a
sampler workload's PUBs along their instance (then parameter-set) axis into pieces that each
fit, packed into as few submissions as possible; :class:`JoinedPubResult` puts a level's
pieces back together for the post-processing.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "MAX_EXECUTIONS",
    "Cost",
    "JoinedPubResult",
    "Piece",
    "estimate",
    "split_pubs",
]

MAX_EXECUTIONS = 10_000_000
"""IBM's per-job limit on circuits x shots for Sampler jobs (the job-limits guide)."""

DEFAULT_REP_DELAY_S = 250e-6
"""The repetition delay when the device reports none (IBM's default on current devices)."""


@dataclass(frozen=True)
class Cost:
    """What one workload would cost on the runtime.

    Attributes:
        primitive: ``sampler`` or ``estimator``.
        circuits: bound circuits after broadcasting, all levels.
        shots: shots per circuit (per random instance).
        executions: ``circuits x shots``.
        payload_bytes: bindings plus the circuit's QPY size.
        circuit_seconds: one shot of one circuit: scheduled duration plus measurement.
        rep_delay_s: the device's repetition delay.
        qpu_seconds: ``executions x (rep_delay + circuit_seconds)``.
        limit: the per-job execution limit that applies (``None``: none, estimator).
        submissions: runtime jobs the workload needs under that limit.
        floor_learning: what the measured floor's experiment adds before the first step
            (``circuits``, ``shots``, ``executions``, ``qpu_seconds``; ``None``: nothing to
            learn, :mod:`qldm.backends._runtime_floor`).
    """

    primitive: str
    circuits: int
    shots: int
    executions: int
    payload_bytes: int
    circuit_seconds: float
    rep_delay_s: float
    qpu_seconds: float
    limit: int | None
    submissions: int
    floor_learning: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


def _circuit_seconds(isa: Any, backend: Any) -> float:
    from qldm.mitigation.noise import layer_makespan

    measure = 0.0
    target = backend.target
    if "measure" in target.operation_names:
        durations = [
            float(p.duration or 0.0)
            for q, p in target["measure"].items()
            if p is not None and q and q[0] in isa.layout[: isa.hardware.n_data]
        ]
        measure = max(durations, default=0.0)
    return layer_makespan(isa, target) + measure


def _rep_delay(backend: Any) -> float:
    try:
        value = backend.configuration().default_rep_delay
    except Exception:  # BackendV2 without a configuration
        value = None
    return float(value) if value else DEFAULT_REP_DELAY_S


def _qpy_bytes(circuit: Any) -> int:
    from qiskit import qpy

    buffer = io.BytesIO()
    qpy.dump(circuit, buffer)
    return buffer.tell()


def pub_circuits(pub: tuple[Any, ...], use_m3: bool) -> int:
    """Bound circuits of one PUB after broadcasting (sampler ``R x S``; estimator ``R x S x O``)."""
    bindings = pub[1] if use_m3 else pub[2]
    shape = tuple(bindings.shape) if bindings is not None else ()
    n = int(np.prod(shape)) if shape else 1
    if not use_m3:
        n *= int(np.size(np.asarray(pub[1], dtype=object)))
    return n


def estimate(prepared: Any, backend: Any, *, limit: int | None = MAX_EXECUTIONS) -> Cost:
    """The cost of a prepared workload (:class:`qldm.backends._runtime_steps.Prepared`).

    Args:
        prepared: the prepared workload.
        backend: the device.
        limit: the per-job execution limit of sampler jobs (``None``: none).
    """
    use_m3 = prepared.use_m3
    shots = int(prepared.shots_per_instance)
    circuits = sum(pub_circuits(pub, use_m3) for pub in prepared.pubs)
    executions = circuits * shots
    per_execution = _circuit_seconds(prepared.isa, backend)
    rep_delay = _rep_delay(backend)
    bindings = sum(
        int(np.prod((pub[1] if use_m3 else pub[2]).shape))
        * int((pub[1] if use_m3 else pub[2]).num_parameters)
        for pub in prepared.pubs
        if (pub[1] if use_m3 else pub[2]) is not None
    )
    applies = limit if use_m3 else None
    submissions = (
        1 if applies is None else len(split_pubs(prepared.pubs, shots=shots, limit=applies)[1])
    )
    return Cost(
        primitive="sampler" if use_m3 else "estimator",
        circuits=circuits,
        shots=shots,
        executions=executions,
        payload_bytes=8 * bindings + _qpy_bytes(prepared.isa.circuit),
        circuit_seconds=per_execution,
        rep_delay_s=rep_delay,
        qpu_seconds=executions * (rep_delay + per_execution),
        limit=applies,
        submissions=submissions,
    )


@dataclass(frozen=True)
class Piece:
    """A part of one level's sampler PUB: instances ``r0:r1`` and parameter sets ``s0:s1``."""

    level: int
    r0: int
    r1: int
    s0: int
    s1: int


def split_pubs(
    pubs: list[tuple[Any, ...]], *, shots: int, limit: int
) -> tuple[list[tuple[Any, ...]], list[list[int]]]:
    """Cut sampler PUBs ``(circuit, bindings (R, S))`` into pieces of at most ``limit``
    executions and pack them into submissions.

    Returns:
        ``(pieces, submissions)``: the piece PUBs, each with a :class:`Piece` as its last
        element (strip it before submitting), and the piece indices of every submission.
    """
    pieces: list[tuple[Any, ...]] = []
    for level, pub in enumerate(pubs):
        circuit, bindings = pub[0], pub[1]
        r, s = (1, 1) if bindings is None else tuple(bindings.shape)
        per_set = shots
        cs = s if s * per_set <= limit else max(1, limit // per_set)
        cr = max(1, limit // (cs * per_set)) if cs == s else 1
        for r0 in range(0, r, cr):
            for s0 in range(0, s, cs):
                part = Piece(level, r0, min(r0 + cr, r), s0, min(s0 + cs, s))
                sub = None if bindings is None else bindings[part.r0 : part.r1, part.s0 : part.s1]
                pieces.append((circuit, sub, part))
    submissions: list[list[int]] = []
    load = math.inf
    for i, (_, sub, _part) in enumerate(pieces):
        n = (1 if sub is None else int(np.prod(sub.shape))) * shots
        if load + n > limit:
            submissions.append([])
            load = 0
        submissions[-1].append(i)
        load += n
    return pieces, submissions


class JoinedPubResult:
    """One level's sampler result put back together from its pieces (what
    :func:`qldm.backends._runtime_pubs.average_results` reads: ``data.meas.get_counts((r, s))``).

    Args:
        parts: ``(Piece, piece result)`` of one level.
    """

    def __init__(self, parts: list[tuple[Piece, Any]]) -> None:
        self._parts = parts

    @property
    def data(self) -> JoinedPubResult:
        """Itself (the result's ``data``)."""
        return self

    @property
    def meas(self) -> JoinedPubResult:
        """Itself (the ``meas`` register)."""
        return self

    def get_counts(self, index: tuple[int, int]) -> dict[str, int]:
        """The counts of instance ``r``, parameter set ``s``."""
        r, s = index
        for piece, result in self._parts:
            if piece.r0 <= r < piece.r1 and piece.s0 <= s < piece.s1:
                counts: dict[str, int] = result.data.meas.get_counts((r - piece.r0, s - piece.s0))
                return counts
        raise IndexError(f"no piece holds instance {r}, parameter set {s}")
