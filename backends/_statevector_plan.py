"""The static plan of :mod:`qldm.backends._statevector`: components, fused blocks, digit
orders and light cones of a noiseless spec (cached per spec; no tensors).

- **Components.** Qubits joined by a multi-qubit ansatz gate or by one observable's support.
- **Blocks.** Consecutive gates on at most :data:`MAX_BLOCK_QUBITS` qubits, fused.
- **Digit orders.** Each block after the product prefix is applied with its qubits as the
  state's leading digits (one batched GEMM); the order before each block is fixed here.
- **Light cones.** An observable's adjoint pass starts at the last block that touches its
  support; the blocks after it cancel in ``<psi| U^dag P U |psi>``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from qldm.circuits import PQCSpec, compile_spec
from qldm.circuits.program import Gate

MAX_BLOCK_QUBITS = 4
"""Most qubits one fused block acts on (a 16x16 unitary)."""


# ---------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class _Block:
    """Gates fused into one unitary on ``qubits`` (component-local, descending: the first is
    the block's most significant digit)."""

    qubits: tuple[int, ...]
    gates: tuple[Gate, ...]  # qubits relabelled component-local


@dataclass(frozen=True)
class _Component:
    qubits: tuple[int, ...]  # global qubits, ascending: local qubit j is qubits[j]
    blocks: tuple[_Block, ...]
    outputs: tuple[int, ...]  # indices of its observables
    gather: np.ndarray  # (O_c, 2**m) int64: (P psi)[j] = phase[j] psi[gather[j]]
    phase: np.ndarray  # (O_c, 2**m) complex128
    inputs: tuple[int, ...]  # global input indices whose qubit lies here (product encodings)
    prefix: int  # leading blocks on disjoint qubits: they act on a product state
    factors: tuple[tuple[int, ...], ...]  # the product's factors after them (descending qubits)
    orders: tuple[tuple[int, ...], ...]  # digit order at the input of block prefix + i; last:
    # the final state's (each block's qubits lead its order: a block is one batched GEMM)
    joins: tuple[int, ...]  # per output: the last block its observable's light cone meets
    # (prefix - 1 if none); outputs are sorted by it, latest first
    join_gather: np.ndarray  # (O_c, 2**m): gather/phase tables in the digit order of the state
    join_phase: np.ndarray  # after block joins[o] (the adjoint pass starts there)
    diagonal: bool  # every observable a Z string (gather is the identity)


def _product_prefix(
    blocks: tuple[_Block, ...], m: int, product: bool
) -> tuple[int, tuple[tuple[int, ...], ...]]:
    """How many leading blocks act on pairwise disjoint qubits of a product state, and the
    factors of the state after them (those blocks' qubits, then every other qubit alone)."""
    if not product:
        return 0, (tuple(range(m - 1, -1, -1)),)
    used: set[int] = set()
    prefix = 0
    for blk in blocks:
        if used & set(blk.qubits):
            break
        used |= set(blk.qubits)
        prefix += 1
    rest = tuple((q,) for q in range(m - 1, -1, -1) if q not in used)
    return prefix, tuple(blk.qubits for blk in blocks[:prefix]) + rest


@dataclass(frozen=True)
class _Plan:
    spec: PQCSpec
    components: tuple[_Component, ...]
    input_qubit: tuple[int, ...]  # qubit of each input (product encodings; empty otherwise)


def _input_qubits(spec: PQCSpec) -> tuple[int, ...]:
    if spec.encoding == "amplitude":
        return ()
    if spec.encoding == "dense_angle":
        return tuple(i // 2 for i in range(spec.n_inputs))
    return tuple(range(spec.n_inputs))


def _pauli_tables(labels: list[str], m: int) -> tuple[np.ndarray, np.ndarray]:
    """Gather indices and phases with ``(P psi)[j] = phase[j] psi[j ^ xmask]`` per label
    (``m`` characters, Qiskit order: the rightmost acts on qubit 0)."""
    idx = np.arange(2**m, dtype=np.int64)
    if not labels:
        return np.zeros((0, 2**m), dtype=np.int64), np.zeros((0, 2**m), dtype=np.complex128)
    gathers, phases = [], []
    for label in labels:
        xmask = zmask = ny = 0
        for q, ch in enumerate(reversed(label)):
            if ch in "XY":
                xmask |= 1 << q
            if ch in "YZ":
                zmask |= 1 << q
            ny += ch == "Y"
        parity = np.array([bin(v).count("1") & 1 for v in (idx & zmask)], dtype=np.int64)
        phases.append(((-1j) ** ny) * (1.0 - 2.0 * parity))
        gathers.append(idx ^ xmask)
    return np.stack(gathers), np.stack(phases).astype(np.complex128)


_BLOCK_OVERHEAD = 8
"""Cost of one block besides its GEMM, in multiply-adds per amplitude (the layout copy)."""


def _blocks(gates: list[Gate]) -> tuple[_Block, ...]:
    """Split the gates into runs on at most :data:`MAX_BLOCK_QUBITS` qubits, minimising
    ``sum(2**k + overhead)`` over the runs (dynamic programming over the split points), so
    that an ``hqconv`` layer becomes its channels (16x16) and one 8x8 inter-channel block."""
    best = [0] + [1 << 62] * len(gates)
    start = [0] * (len(gates) + 1)
    for i in range(1, len(gates) + 1):
        qubits: set[int] = set()
        for j in range(i - 1, -1, -1):
            qubits |= set(gates[j].qubits)
            if len(qubits) > MAX_BLOCK_QUBITS:
                break
            cost = best[j] + 2 ** len(qubits) + _BLOCK_OVERHEAD
            if cost < best[i]:
                best[i], start[i] = cost, j
    out: list[_Block] = []
    i = len(gates)
    while i > 0:
        run = gates[start[i] : i]
        qubits = {q for g in run for q in g.qubits}
        out.append(_Block(tuple(sorted(qubits, reverse=True)), tuple(run)))
        i = start[i]
    return tuple(reversed(out))


def _orders(
    blocks: tuple[_Block, ...], prefix: int, start: tuple[int, ...]
) -> tuple[tuple[int, ...], ...]:
    """The digit order at the input of each block after the product prefix, then the final
    state's: the block's qubits first (in block order), the others as they were, so that the
    block is one batched GEMM over its leading digits (faster than on middle or trailing
    digits, and the layout copy that moves them is cheaper than the difference)."""
    out: list[tuple[int, ...]] = []
    order = start
    for blk in blocks[prefix:]:
        order = blk.qubits + tuple(q for q in order if q not in blk.qubits)
        out.append(order)
    out.append(order)
    return tuple(out)


def _light_cone_end(blocks: tuple[_Block, ...], prefix: int, label: str) -> int:
    """The last block (at least ``prefix``) on a qubit of ``label`` (component-local, Qiskit
    order), else ``prefix - 1``. The blocks after it commute with the observable and cancel in
    ``<psi| U^dag P U |psi>``: its adjoint pass starts there, from ``P`` on the forward state."""
    support = {q for q, ch in enumerate(reversed(label)) if ch != "I"}
    for i in range(len(blocks) - 1, prefix - 1, -1):
        if support & set(blocks[i].qubits):
            return i
    return prefix - 1


def _natural_index(order: tuple[int, ...]) -> np.ndarray:
    """``(2**m,)``: the natural basis index (qubit ``q`` is bit ``q``) of each index of a state
    whose digits are in ``order`` (the first most significant)."""
    m = len(order)
    y = np.arange(2**m, dtype=np.int64)
    nat = np.zeros_like(y)
    for pos, q in enumerate(order):
        nat |= ((y >> (m - 1 - pos)) & 1) << q
    return nat


def _relabel_tables(
    gather: np.ndarray, phase: np.ndarray, orders: list[tuple[int, ...]]
) -> tuple[np.ndarray, np.ndarray]:
    """Row ``o`` of the natural-order Pauli tables re-expressed in digit order ``orders[o]``:
    ``(P psi)[y] = phase'[y] psi[gather'[y]]`` with ``psi`` in that order."""
    g_out, p_out = np.empty_like(gather), np.empty_like(phase)
    for o, order in enumerate(orders):
        nat = _natural_index(order)
        lay = np.argsort(nat)
        g_out[o] = lay[gather[o][nat]]
        p_out[o] = phase[o][nat]
    return g_out, p_out


@functools.lru_cache(maxsize=64)
def _plan(spec: PQCSpec) -> _Plan:
    program = compile_spec(spec)
    n = spec.n_qubits
    parent = list(range(n))

    def find(q: int) -> int:
        while parent[q] != q:
            parent[q] = parent[parent[q]]
            q = parent[q]
        return q

    def join(qubits: list[int]) -> None:
        for a in qubits[1:]:
            parent[find(a)] = find(qubits[0])

    gates = [op for op in program.ansatz if isinstance(op, Gate)]
    labels = spec.pauli_labels()
    if spec.encoding == "amplitude":
        join(list(range(n)))
    for g in gates:
        join(list(g.qubits))
    for label in labels:
        join([q for q, ch in enumerate(reversed(label)) if ch != "I"])
    groups: dict[int, list[int]] = {}
    for q in range(n):
        groups.setdefault(find(q), []).append(q)
    members = sorted(groups.values())
    input_qubit = _input_qubits(spec)
    by_output: dict[int, list[int]] = {}
    for o, label in enumerate(labels):
        support = [q for q, ch in enumerate(reversed(label)) if ch != "I"]
        home = find(support[0]) if support else find(0)
        by_output.setdefault(home, []).append(o)
    components = []
    for qs in members:
        local = {q: j for j, q in enumerate(qs)}
        comp_gates = [
            Gate(g.name, tuple(local[q] for q in g.qubits), g.param)
            for g in gates
            if g.qubits[0] in local
        ]
        outputs = by_output.get(find(qs[0]), [])
        sub_labels = ["".join(labels[o][n - 1 - q] for q in reversed(qs)) for o in outputs]
        inputs = tuple(i for i, q in enumerate(input_qubit) if q in local)
        if spec.encoding == "amplitude":
            inputs = tuple(range(spec.n_inputs))
        blocks = _blocks(comp_gates)
        prefix, factors = _product_prefix(blocks, len(qs), spec.encoding != "amplitude")
        orders = _orders(blocks, prefix, tuple(q for f in factors for q in f))
        joins = [_light_cone_end(blocks, prefix, label) for label in sub_labels]
        rank = sorted(range(len(outputs)), key=lambda o: -joins[o])  # latest join first
        sub_labels = [sub_labels[o] for o in rank]
        gather, phase = _pauli_tables(sub_labels, len(qs))
        joins = [joins[o] for o in rank]
        join_gather, join_phase = _relabel_tables(
            gather, phase, [orders[j + 1 - prefix] for j in joins]
        )
        components.append(
            _Component(
                tuple(qs),
                blocks,
                tuple(outputs[o] for o in rank),
                gather,
                phase,
                inputs,
                prefix,
                factors,
                orders,
                tuple(joins),
                join_gather,
                join_phase,
                all(set(label) <= {"I", "Z"} for label in sub_labels),
            )
        )
    return _Plan(spec, tuple(components), input_qubit)
