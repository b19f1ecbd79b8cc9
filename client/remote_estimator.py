"""``RemoteEstimatorV2``: Qiskit's ``BaseEstimatorV2`` over a qldm server.

One ``run(pubs)`` sends as few jobs as it can: the PUBs ``(circuit, observables,
parameter_values, precision)`` that share a circuit and a precision go together as one
QPY-circuit job with task ``expectation``: every parameter set of every such PUB is one row of
the job's ``inputs`` (all circuit parameters are inputs, in ``circuit.parameters`` order; there
are no weights), and the job measures every distinct Pauli string of their observables. An
``EstimatorQNN`` step whose gradient has 257 PUBs of one circuit thus costs one job, not 257
(each was about 14 ms). The client then recombines the rows per Qiskit's broadcasting rules:
``evs[idx] = sum_j c_j <P_j>`` with ``idx`` running over
``broadcast(observables.shape, parameter_values.shape)``. A PUB with no parameter sets has
empty ``evs``, as in Qiskit, and sends nothing.

Precision 0 (the default) asks the server for exact expectation values (``shots=None``;
``stds`` are 0). A precision ``p > 0`` asks for ``ceil(1 / p^2)`` shots per circuit, and
``stds`` is ``sqrt(sum_j c_j^2 s_j^2)`` (covariances between the Paulis are neglected), with
``s_j`` the standard error the server reports for ``<P_j>`` (the result's ``values_std``:
mthree's after M3 readout mitigation, the runtime estimator's ``stds``) or, where it reports
none, the binomial ``sqrt((1 - <P_j>^2) / shots)``.

The jobs of one ``run`` are submitted at once, so they queue on the server in parallel; the
returned job's ``result()`` waits for them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from qiskit.primitives import BaseEstimatorV2, PrimitiveJob
from qiskit.primitives.containers import DataBin, EstimatorPubLike, PrimitiveResult, PubResult
from qiskit.primitives.containers.estimator_pub import EstimatorPub

from qldm.client._qpy_jobs import ServerPrimitive, qpy_bytes, submit_rows
from qldm.client.service_client import ServiceClient

__all__ = ["RemoteEstimatorV2"]


class RemoteEstimatorV2(ServerPrimitive, BaseEstimatorV2):
    """Estimator primitive (V2) whose circuits run as jobs on a qldm server.

    Args:
        url: the server's base URL, or ``None`` when ``client`` is given.
        api_key: the tenant's API key.
        backend: the server-side backend (``aer`` by default; ``aer:<device>`` for a noisy
            device model).
        default_precision: precision of PUBs that set none (0: exact).
        seed: seed for shot sampling (``precision > 0``).
        run_id: the run the jobs belong to.
        client: an existing :class:`ServiceClient` to use instead of ``url``/``api_key``.
        timeout: seconds to wait for each job (``None``: no limit).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        backend: str = "aer",
        default_precision: float = 0.0,
        seed: int | None = None,
        run_id: str | None = None,
        client: ServiceClient | None = None,
        timeout: float | None = None,
    ) -> None:
        if default_precision < 0:
            raise ValueError("default_precision must be >= 0")
        super().__init__(
            url,
            api_key=api_key,
            backend=backend,
            seed=seed,
            run_id=run_id,
            client=client,
            timeout=timeout,
        )
        self._default_precision = default_precision

    def run(
        self, pubs: Iterable[EstimatorPubLike], *, precision: float | None = None
    ) -> PrimitiveJob[PrimitiveResult[PubResult]]:
        """Submit the PUBs now, one job per circuit and precision; the returned job's
        ``result()`` collects them.

        Raises:
            ValueError: a PUB's precision is negative.
            QldmError subclass: the server refused a job.
        """
        if precision is None:
            precision = self._default_precision
        coerced = [EstimatorPub.coerce(pub, precision) for pub in pubs]
        for i, pub in enumerate(coerced):
            if pub.precision < 0:
                raise ValueError(f"pub {i} has a negative precision ({pub.precision})")
        groups: dict[tuple[bytes, float], list[int]] = {}
        dumps: dict[int, bytes] = {}
        for i, pub in enumerate(coerced):
            if pub.parameter_values.size == 0:
                continue  # no parameter sets: empty evs, nothing to run
            key = (qpy_bytes(pub.circuit, dumps), float(pub.precision))
            groups.setdefault(key, []).append(i)
        submitted = [
            self._submit([coerced[i] for i in members], circuit_qpy)
            for (circuit_qpy, _), members in groups.items()
        ]
        job: PrimitiveJob[PrimitiveResult[PubResult]] = PrimitiveJob(
            self._collect, coerced, list(groups.values()), submitted
        )
        job._submit()
        return job

    # ------------------------------------------------------------------ one job per group

    def _submit(self, pubs: list[EstimatorPub], circuit_qpy: bytes) -> _Submitted:
        """One job for ``pubs`` (one circuit, one precision): their parameter sets one after
        the other as ``inputs`` rows, the union of their Paulis as observables."""
        circuit = pubs[0].circuit
        paulis = sorted({p for pub in pubs for obs in pub.observables.ravel() for p in obs})
        if not paulis:  # all-zero observables: still one circuit to evaluate
            paulis = ["I" * circuit.num_qubits]
        precision = pubs[0].precision
        shots = None if precision == 0 else math.ceil(1.0 / precision**2)
        sent = submit_rows(
            self._client,
            circuit,
            circuit_qpy,
            [pub.parameter_values for pub in pubs],
            task="expectation",
            observables=paulis,
            backend=self._backend,
            shots=shots,
            seed=self._seed,
            run_id=self._run_id,
        )
        return _Submitted(paulis, shots, sent.job_id, sent.offsets)

    def _collect(
        self,
        pubs: list[EstimatorPub],
        groups: list[list[int]],
        submitted: list[_Submitted],
    ) -> PrimitiveResult[PubResult]:
        results: list[PubResult | None] = [None] * len(pubs)
        for members, sent in zip(groups, submitted, strict=True):
            result = self._client.wait(sent.job_id, timeout=self._timeout)
            if result.values is None:
                raise RuntimeError(f"job {sent.job_id} returned no values")
            values = result.values[0]
            stds = None if result.values_std is None else result.values_std[0]
            for k, i in enumerate(members):
                part = slice(sent.offsets[k], sent.offsets[k + 1])
                results[i] = _pub_result(
                    pubs[i],
                    sent.paulis,
                    sent.shots,
                    values[part],
                    sent.job_id,
                    stds=None if stds is None else stds[part],
                )
        for i, pub in enumerate(pubs):
            if results[i] is None:  # a PUB with no parameter sets
                results[i] = _pub_result(pub, [], None, np.zeros((0, 0)), None)
        return PrimitiveResult([r for r in results if r is not None], metadata={"version": 2})


@dataclass(frozen=True)
class _Submitted:
    """A submitted job: its Paulis (the columns of its values), shots, id, and where each of
    its PUBs' rows start and end (``offsets[k]:offsets[k + 1]`` for its ``k``-th PUB)."""

    paulis: list[str]
    shots: int | None
    job_id: str
    offsets: list[int]


def _pub_result(
    pub: EstimatorPub,
    paulis: list[str],
    shots: int | None,
    values: np.ndarray,
    job_id: str | None,
    *,
    stds: np.ndarray | None = None,
) -> PubResult:
    """Combine per-Pauli values ``(N, O)`` into the PUB's broadcast ``evs`` and ``stds``.

    Args:
        pub: the PUB.
        paulis: the ``O`` Pauli strings the job measured.
        shots: shots per circuit (``None``: exact values, ``stds`` 0).
        values: ``(N, O)`` the PUB's rows of the job's values.
        job_id: the job (``None``: nothing was sent).
        stds: ``(N, O)`` the standard errors the server reported for those rows, or ``None``
            (binomial ones from ``values`` and ``shots``).
    """
    shape = pub.parameter_values.shape
    index_of = {label: j for j, label in enumerate(paulis)}
    param_index = np.arange(int(np.prod(shape, dtype=int))).reshape(shape)
    bc_param, bc_obs = np.broadcast_arrays(param_index, pub.observables)
    evs = np.zeros(bc_param.shape, dtype=np.float64)
    variance = np.zeros(bc_param.shape, dtype=np.float64)
    for idx in np.ndindex(*bc_param.shape):
        row = values[int(bc_param[idx])]
        std_row = None if stds is None else stds[int(bc_param[idx])]
        observable: dict[str, float] = bc_obs[idx]  # type: ignore[assignment]
        for label, coeff in observable.items():
            value = float(row[index_of[label]])
            evs[idx] += float(np.real(coeff)) * value
            if std_row is not None:
                var_j = float(std_row[index_of[label]]) ** 2
            elif shots is not None:
                var_j = max(0.0, 1.0 - value**2) / shots
            else:
                var_j = 0.0
            variance[idx] += float(np.real(coeff)) ** 2 * var_j
    out_stds = np.zeros_like(evs) if shots is None else np.sqrt(variance)
    return PubResult(
        DataBin(evs=evs, stds=out_stds, shape=evs.shape),
        metadata={
            "target_precision": pub.precision,
            "shots": shots,
            "circuit_metadata": pub.circuit.metadata,
            "job_id": job_id,
        },
    )
