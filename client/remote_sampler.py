"""``RemoteSamplerV2``: Qiskit's ``BaseSamplerV2`` over a qldm server's ``counts`` task.

One ``run(pubs)`` sends as few jobs as it can: the PUBs ``(circuit, parameter_values, shots)``
that share a circuit and a number of shots go together as one QPY-circuit job with task
``counts``: every parameter set of every such PUB is one row of the job's ``inputs`` (all
circuit parameters are inputs, in ``circuit.parameters`` order; there are no weights). So a
``run`` costs at most one job per distinct circuit (and shots), however many PUBs and parameter
sets it holds. A PUB with no parameter sets, or a circuit without classical registers, sends
nothing: its ``BitArray`` s are empty (``shape`` with a 0) or its ``DataBin`` has no field, as
with Qiskit's ``StatevectorSampler``.

The server measures every qubit at the end of the circuit (it drops the circuit's final
measurements; a measurement before the end, or a classical condition, is refused with a 400
naming ``circuit.qpy``) and returns counts per parameter set. The client maps them onto the
circuit's classical registers: a clbit that a ``measure`` wrote gets that qubit's outcome (the
last ``measure`` into it wins), an unwritten clbit is 0. The counts carry no shot order, so each
row's shots are the outcomes repeated by their counts and then shuffled with
``numpy.random.default_rng(seed)``: ``BitArray.get_counts()`` is exactly the server's counts.

The jobs of one ``run`` are submitted at once, so they queue on the server in parallel; the
returned job's ``result()`` waits for them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np
from qiskit import QuantumCircuit
from qiskit.primitives import BaseSamplerV2, PrimitiveJob
from qiskit.primitives.containers import (
    BitArray,
    DataBin,
    PrimitiveResult,
    SamplerPubLike,
    SamplerPubResult,
)
from qiskit.primitives.containers.sampler_pub import SamplerPub

from qldm.client._qpy_jobs import ServerPrimitive, Submitted, qpy_bytes, submit_rows
from qldm.client.service_client import ServiceClient

__all__ = ["RemoteSamplerV2"]


class RemoteSamplerV2(ServerPrimitive, BaseSamplerV2):
    """Sampler primitive (V2) whose circuits run as ``counts`` jobs on a qldm server.

    Args:
        url: the server's base URL, or ``None`` when ``client`` is given.
        api_key: the tenant's API key.
        backend: the server-side backend (``aer`` by default, or ``exact``).
        default_shots: shots of PUBs that set none.
        seed: seed of the server's draws and of the client's shot order.
        run_id: the run the jobs belong to.
        client: an existing :class:`ServiceClient` to use instead of ``url``/``api_key``.
        timeout: seconds to wait for each job (``None``: no limit).

    Raises:
        ValueError: neither ``url`` nor ``client``, or ``default_shots`` below 1.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        backend: str = "aer",
        default_shots: int = 1024,
        seed: int | None = None,
        run_id: str | None = None,
        client: ServiceClient | None = None,
        timeout: float | None = None,
    ) -> None:
        if default_shots < 1:
            raise ValueError(f"default_shots must be >= 1, got {default_shots}")
        super().__init__(
            url,
            api_key=api_key,
            backend=backend,
            seed=seed,
            run_id=run_id,
            client=client,
            timeout=timeout,
        )
        self._default_shots = int(default_shots)

    def run(
        self, pubs: Iterable[SamplerPubLike], *, shots: int | None = None
    ) -> PrimitiveJob[PrimitiveResult[SamplerPubResult]]:
        """Submit the PUBs now, one ``counts`` job per circuit and shots; the returned job's
        ``result()`` collects them.

        Args:
            pubs: sampler PUBs (a circuit, or ``(circuit, parameter_values[, shots])``).
            shots: shots of PUBs that set none (default: ``default_shots``).

        Returns:
            A job whose ``result()`` is a ``PrimitiveResult`` with one ``SamplerPubResult`` per
            PUB: a ``DataBin`` with one ``BitArray`` of shape ``pub.shape`` per classical
            register, and metadata ``shots``, ``circuit_metadata`` and ``job_id``.

        Raises:
            ValueError: a PUB is malformed (Qiskit's coercion, e.g. shots below 1).
            QldmError subclass: the server refused a job (e.g. a mid-circuit measurement).
        """
        if shots is None:
            shots = self._default_shots
        coerced = [SamplerPub.coerce(pub, shots) for pub in pubs]
        if any(not pub.circuit.cregs for pub in coerced):
            warnings.warn(
                "One of your circuits has no output classical registers and so the result "
                "will be empty. Did you mean to add measurement instructions?",
                UserWarning,
                stacklevel=2,
            )
        groups: dict[tuple[bytes, int], list[int]] = {}
        dumps: dict[int, bytes] = {}
        for i, pub in enumerate(coerced):
            if pub.parameter_values.size == 0 or not pub.circuit.cregs:
                continue  # nothing to measure: empty result, no job
            groups.setdefault((qpy_bytes(pub.circuit, dumps), int(pub.shots)), []).append(i)
        submitted = [
            submit_rows(
                self._client,
                coerced[members[0]].circuit,
                circuit_qpy,
                [coerced[i].parameter_values for i in members],
                task="counts",
                # the counts task reads no observable, but a QPY circuit names at least one
                observables=["Z" * coerced[members[0]].circuit.num_qubits],
                backend=self._backend,
                shots=n_shots,
                seed=self._seed,
                run_id=self._run_id,
            )
            for (circuit_qpy, n_shots), members in groups.items()
        ]
        job: PrimitiveJob[PrimitiveResult[SamplerPubResult]] = PrimitiveJob(
            self._collect, coerced, list(groups.values()), submitted
        )
        job._submit()
        return job

    def _collect(
        self,
        pubs: list[SamplerPub],
        groups: list[list[int]],
        submitted: list[Submitted],
    ) -> PrimitiveResult[SamplerPubResult]:
        results: list[SamplerPubResult | None] = [None] * len(pubs)
        rng = np.random.default_rng(self._seed)
        for members, sent in zip(groups, submitted, strict=True):
            result = self._client.wait(sent.job_id, timeout=self._timeout)
            if result.counts is None:
                raise RuntimeError(f"job {sent.job_id} returned no counts")
            for k, i in enumerate(members):
                rows = result.counts[sent.offsets[k] : sent.offsets[k + 1]]
                results[i] = _pub_result(pubs[i], rows, sent.job_id, rng)
        for i, pub in enumerate(pubs):
            if results[i] is None:  # no parameter sets or no classical register
                results[i] = _pub_result(pub, [], None, rng)
        return PrimitiveResult([r for r in results if r is not None], metadata={"version": 2})


def _clbit_sources(circuit: QuantumCircuit) -> dict[tuple[str, int], int]:
    """``(register name, bit index) -> qubit index`` for every clbit a ``measure`` writes (the
    last write wins); clbits outside a register are left out (they are not returned)."""
    sources: dict[tuple[str, int], int] = {}
    for instruction in circuit.data:
        if instruction.operation.name != "measure":
            continue
        qubit = circuit.find_bit(instruction.qubits[0]).index
        for register, index in circuit.find_bit(instruction.clbits[0]).registers:
            sources[(register.name, index)] = qubit
    return sources


def _pub_result(
    pub: SamplerPub,
    rows: list[dict[str, int]],
    job_id: str | None,
    rng: np.random.Generator,
) -> SamplerPubResult:
    """The PUB's ``BitArray`` per classical register from its rows' counts.

    Args:
        pub: the PUB.
        rows: ``N = prod(pub.shape)`` dicts bitstring (every qubit, qubit 0 rightmost) ->
            count, each summing to ``pub.shots``; empty when nothing was sent.
        job_id: the job (``None``: nothing was sent).
        rng: shuffles each row's shots.

    Returns:
        ``SamplerPubResult`` whose register arrays are ``(*pub.shape, shots, ceil(bits / 8))``.
    """
    circuit, shots, shape = pub.circuit, int(pub.shots), pub.shape
    n_qubits = circuit.num_qubits
    sources = _clbit_sources(circuit)
    arrays = {
        creg.name: np.zeros((len(rows), shots, (creg.size + 7) // 8), dtype=np.uint8)
        for creg in circuit.cregs
    }
    for row, counts in enumerate(rows):
        outcomes = list(counts)
        repeats = np.fromiter(counts.values(), dtype=np.int64, count=len(outcomes))
        if int(repeats.sum()) != shots:
            raise RuntimeError(f"job {job_id} returned {repeats.sum()} shots, expected {shots}")
        order = rng.permutation(shots)
        for creg in circuit.cregs:
            packed = np.zeros((len(outcomes), arrays[creg.name].shape[-1]), dtype=np.uint8)
            for u, bitstring in enumerate(outcomes):
                value = 0
                for bit in range(creg.size):
                    qubit = sources.get((creg.name, bit))
                    if qubit is not None and bitstring[n_qubits - 1 - qubit] == "1":
                        value |= 1 << bit
                packed[u] = np.frombuffer(value.to_bytes(packed.shape[1], "big"), np.uint8)
            arrays[creg.name][row] = np.repeat(packed, repeats, axis=0)[order]
    data = {
        creg.name: BitArray(
            arrays[creg.name].reshape(*shape, shots, arrays[creg.name].shape[-1]), creg.size
        )
        for creg in circuit.cregs
    }
    return SamplerPubResult(
        DataBin(**data, shape=shape),
        metadata={"shots": shots, "circuit_metadata": circuit.metadata, "job_id": job_id},
    )
