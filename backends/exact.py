"""The ``exact`` backend: a batched torch simulator, exact to float precision, CPU or GPU.

Two engines walk the same :func:`qldm.circuits.program.compile_spec` program:

**Heisenberg (density) engine** — any spec up to 10 qubits. Data enters only through the
encoding, so the observables are evolved backwards once through the noisy ansatz::

    A_{k,o} = Phi_k^dagger(O_o),        values[k, b, o] = <psi_b| A_{k,o} |psi_b>

with ``Phi_k`` the ansatz channel at noise level ``k``. Operators live in the Pauli basis
(``A = sum_s a_s P_s``, real ``a`` of shape ``(K, O, 4**n)``) where every gate and channel is a
real local Pauli transfer matrix (see :mod:`qldm.backends._torch_ops`); the encoded pure states
become ``r_b[s] = <psi_b|P_s|psi_b>``, a Kronecker product of Bloch vectors for the angle
encodings, so ``values = a @ r^T`` and the circuit's cost does not grow with the batch.
Consecutive one-qubit ops on a qubit (rotations and the channel after a layer) fuse into one
4x4 map; consecutive CNOTs fuse into one signed permutation of Pauli strings.

Jacobians (task ``jacobian``):

- by weights, forward mode specialised to the circuit: walking the stages backwards, a stage
  with parametric gates spawns one derivative row per weight,
  ``D_p = Phi_{<g}^dagger(dR_p A)``, ``dR_p = R_1..(s_p C_p R_p)..R_m`` where
  ``C_p A = i[H_p, A]`` for the gate ``exp(-i t H_p)``; the rows are carried through the
  earlier stages (depth first, in cache-sized chunks) and contracted with ``r`` in real GEMMs
  ``(B, S) @ (S, K G O)`` over the support ``S`` of ``r`` (``3**n`` Pauli strings for the
  one-axis angle encodings; the last stage computes only those components);
- by inputs, ``2 Re(dpsi_b^dagger A psi_b)`` with ``dpsi`` from closed-form derivatives of
  the per-qubit encoded states (``(e_i - psi psi_i) / |x|`` for ``amplitude``).

Operators are stored rows-last, ``(K, 4**n, M)``: contracting a qubit's digit is a batched GEMM
and a Clifford stage copies whole rows.

**Statevector engine** — noiseless specs when it is cheaper (``n > 10`` or very large ``B``):
``psi_b -> U(w) psi_b`` and ``<psi|P|psi>``; Jacobians by forward-mode dual numbers
(``torch.autograd.forward_ad``, one pass per input and per weight).

:func:`expectation` is the torch-level entry point (autograd flows to inputs, weights and
noise levels); :class:`ExactBackend` runs :class:`Workload` s. The ``counts`` task and QPY
circuits are computed with Aer on this backend too (:mod:`qldm.backends.counts`,
:mod:`qldm.backends.qpy_aer`, chosen by :func:`qldm.backends._aer_paths.aer_path`).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD

from qldm.backends import _statevector, trajectory
from qldm.backends import _torch_ops as ops
from qldm.backends._aer_paths import aer_path
from qldm.backends._limits import MAX_DENSITY_QUBITS
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
from qldm.circuits import PQCSpec, compile_spec
from qldm.circuits.program import AnsatzOp, Channel, Gate
from qldm.circuits.spec import check_noise_level
from qldm.errors import BackendLimitError, InvalidSpecError

__all__ = ["MAX_DENSITY_QUBITS", "ExactBackend", "expectation"]


_CHUNK_ELEMENTS = 36 * 4**6
"""Derivative rows carried down together (numbers): small enough to stay in cache."""

_SPAWN_ELEMENTS = 1 << 24
"""Above this many numbers a stage's derivative rows are spawned one weight at a time."""

Engine = Literal["heisenberg", "statevector"]


# ---------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class _Block:
    """Ops on one qubit (or one ordered pair) fused into one local map, forward order."""

    qubits: tuple[int, ...]
    ops: tuple[AnsatzOp, ...]


@dataclass(frozen=True)
class _Stage:
    """``product``: one-qubit blocks on distinct qubits; ``pair``: one two-qubit block;
    ``clifford``: fixed two-qubit gates as a signed permutation of Pauli strings."""

    kind: Literal["product", "pair", "clifford"]
    blocks: tuple[_Block, ...] = ()
    cliffords: tuple[tuple[str, tuple[int, ...]], ...] = ()


@dataclass(frozen=True)
class _Plan:
    spec: PQCSpec
    n: int
    stages: tuple[_Stage, ...]
    gates: tuple[Gate, ...]  # parametric ansatz gates, indexed by their weight
    labels: tuple[str, ...]


@functools.lru_cache(maxsize=128)
def _plan(spec: PQCSpec) -> _Plan:
    """Group the ansatz into stages (forward order); see :class:`_Stage`."""
    program = compile_spec(spec)
    stages: list[_Stage] = []
    pending: dict[int, list[AnsatzOp]] = {}

    def flush() -> None:
        if pending:
            blocks = tuple(_Block((q,), tuple(pending[q])) for q in sorted(pending))
            stages.append(_Stage("product", blocks))
            pending.clear()

    for op in program.ansatz:
        if isinstance(op, Channel):
            pending.setdefault(op.qubit, []).append(op)
        elif len(op.qubits) == 1:
            pending.setdefault(op.qubits[0], []).append(op)
        else:
            if any(q in pending for q in op.qubits):
                flush()
            last = stages[-1] if stages else None
            if op.param is None:
                if last is not None and last.kind == "clifford":
                    stages[-1] = _Stage(
                        "clifford", cliffords=(*last.cliffords, (op.name, op.qubits))
                    )
                else:
                    stages.append(_Stage("clifford", cliffords=((op.name, op.qubits),)))
            elif last is not None and last.kind == "pair" and last.blocks[0].qubits == op.qubits:
                stages[-1] = _Stage("pair", (_Block(op.qubits, (*last.blocks[0].ops, op)),))
            else:
                stages.append(_Stage("pair", (_Block(op.qubits, (op,)),)))
    flush()
    gates = sorted(
        (op for op in program.ansatz if isinstance(op, Gate) and op.param is not None),
        key=lambda g: g.param.index if g.param else 0,
    )
    return _Plan(spec, spec.n_qubits, tuple(stages), tuple(gates), tuple(spec.pauli_labels()))


@dataclass
class _Maps:
    """Runtime maps of every stage: ``maps[i]`` holds per-block ``(K|1, d, d)`` matrices and
    ``derivs[i]`` the ``(weight, block position, d(map)/d(weight))`` of its parametric gates."""

    maps: list[list[torch.Tensor]]
    derivs: list[list[tuple[int, int, torch.Tensor]]]
    fused: list[list[tuple[tuple[int, ...], torch.Tensor]]]
    """Per product stage, neighbouring qubits' maps fused into 16x16 maps (half the passes)."""


def _fuse_pairs(
    plan: _Plan, i: int, maps: list[torch.Tensor]
) -> list[tuple[tuple[int, ...], torch.Tensor]]:
    """``[(qubits, map)]`` for product stage ``i``: ``kron(m_{q+1}, m_q)`` on ``(q+1, q)``
    where both qubits have a map, the single map otherwise."""
    stage = plan.stages[i]
    if stage.kind != "product":
        return []
    per_qubit = {blk.qubits[0]: m for blk, m in zip(stage.blocks, maps, strict=True)}
    out: list[tuple[tuple[int, ...], torch.Tensor]] = []
    q = 0
    while q < plan.n:
        if q in per_qubit and q + 1 in per_qubit:
            hi, lo = per_qubit[q + 1], per_qubit[q]
            kron = hi[..., :, None, :, None] * lo[..., None, :, None, :]
            kron = kron.reshape(*kron.shape[:-4], 16, 16)
            out.append(((q + 1, q), kron))
            q += 2
            continue
        if q in per_qubit:
            out.append(((q,), per_qubit[q]))
        q += 1
    return out


def _stage_maps(plan: _Plan, w: torch.Tensor, strengths: torch.Tensor, *, derivs: bool) -> _Maps:
    """Build every stage's Pauli transfer matrices from weights ``(P,)`` and strengths
    ``(K, layers)`` (differentiable; one batched PTM computation per gate name)."""
    gate_ptm: dict[int, torch.Tensor] = {}
    gate_dptm: dict[int, torch.Tensor] = {}
    by_name: dict[str, list[Gate]] = {}
    for g in plan.gates:
        by_name.setdefault(g.name, []).append(g)
    for name, gates in by_name.items():
        idx = torch.tensor([g.param.index for g in gates if g.param], device=w.device)
        scale = torch.tensor(
            [g.param.scale for g in gates if g.param], dtype=w.dtype, device=w.device
        )
        ptm = ops.unitary_ptm(ops.gate_unitaries(name, w[idx] * scale))
        dptm = None
        if derivs:
            comm = ops.commutator_ptm(ops.generator(name, w.dtype, w.device))
            dptm = scale[:, None, None] * (comm @ ptm)
        for j, g in enumerate(gates):
            gate_ptm[g.param.index if g.param else -1] = ptm[j]
            if dptm is not None:
                gate_dptm[g.param.index if g.param else -1] = dptm[j]
    channels = None
    if plan.spec.noisy:
        k, layers = strengths.shape
        channels = ops.channel_ptm(plan.spec.channel.kind, strengths.reshape(-1)).reshape(
            k, layers, 4, 4
        )

    def factor(op: AnsatzOp) -> torch.Tensor:
        if isinstance(op, Channel):
            assert channels is not None
            return channels[:, op.layer]
        if op.param is None:  # pragma: no cover - fixed one-qubit gates are not in ansätze
            return ops.unitary_ptm(ops.gate_unitaries(op.name, w.new_zeros(1)))[0]
        return gate_ptm[op.param.index]

    maps: list[list[torch.Tensor]] = []
    all_derivs: list[list[tuple[int, int, torch.Tensor]]] = []
    for stage in plan.stages:
        stage_maps: list[torch.Tensor] = []
        stage_derivs: list[tuple[int, int, torch.Tensor]] = []
        for pos, block in enumerate(stage.blocks):
            factors = [factor(op) for op in block.ops]
            prefix = [factors[0]]
            for f in factors[1:]:
                prefix.append(prefix[-1] @ f)
            stage_maps.append(prefix[-1] if prefix[-1].dim() == 3 else prefix[-1][None])
            if not derivs:
                continue
            suffix: list[torch.Tensor | None] = [None] * len(factors)
            acc: torch.Tensor | None = None
            for j in range(len(factors) - 1, -1, -1):
                suffix[j] = acc
                acc = factors[j] if acc is None else factors[j] @ acc
            for j, op in enumerate(block.ops):
                if isinstance(op, Gate) and op.param is not None:
                    d = gate_dptm[op.param.index]
                    if j > 0:
                        d = prefix[j - 1] @ d
                    sfx = suffix[j]
                    if sfx is not None:
                        d = d @ sfx
                    stage_derivs.append((op.param.index, pos, d if d.dim() == 3 else d[None]))
        maps.append(stage_maps)
        all_derivs.append(stage_derivs)
    return _Maps(maps, all_derivs, [_fuse_pairs(plan, i, m) for i, m in enumerate(maps)])


@functools.lru_cache(maxsize=128)
def _constants(spec: PQCSpec, dtype: torch.dtype, device: str) -> dict[str, Any]:
    """Per-spec tensors: observable rows, Clifford permutations, the support of ``r``."""
    plan = _plan(spec)
    n = plan.n
    code = {"I": 0, "X": 1, "Y": 2, "Z": 3}
    obs_index = [
        sum(code[c] * 4**q for q, c in enumerate(reversed(label))) for label in plan.labels
    ]
    out: dict[str, Any] = {"obs_index": torch.tensor(obs_index, device=device)}
    if n <= MAX_DENSITY_QUBITS:
        perms: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        for stage in plan.stages:
            if stage.kind == "clifford":
                index, sign = ops.signed_permutation(n, stage.cliffords)
                perms.append(
                    (
                        torch.as_tensor(index, device=device),
                        torch.as_tensor(sign, dtype=dtype, device=device),
                    )
                )
            else:
                perms.append(None)
        out["perms"] = perms
        if spec.encoding in ops.BLOCH_SUPPORT:
            support = np.array([0])
            for q in range(n):
                digits = np.array(ops.BLOCH_SUPPORT[spec.encoding])
                support = (digits[:, None] * 4**q + support[None, :]).reshape(-1)
            out["support"] = torch.as_tensor(support, device=device)
            keep = list(ops.BLOCH_SUPPORT[spec.encoding])
            out["support_digits"] = torch.as_tensor(keep, device=device)
            out["support_eye"] = torch.eye(4, dtype=dtype, device=device)[keep][None]
    return out


# ---------------------------------------------------------------------------- Heisenberg


def _apply_stage_last(
    plan: _Plan,
    i: int,
    rows: torch.Tensor,
    maps: list[torch.Tensor],
    consts: dict[str, Any],
    fused: list[tuple[tuple[int, ...], torch.Tensor]] | None = None,
) -> torch.Tensor:
    """Heisenberg map of stage ``i`` on rows-last operators ``(K|1, 4**n, M)``; maps
    ``(K|1, 4^k, 4^k)`` per block (or ``fused``, the same product stage as 16x16 pair maps)."""
    stage = plan.stages[i]
    if stage.kind == "clifford":
        index, sign = consts["perms"][i]
        return rows.index_select(1, index) * sign[:, None]
    if fused:
        for qubits, m in fused:
            rows = ops.apply_local_last(rows, m, qubits, plan.n)
        return rows
    for block, m in zip(stage.blocks, maps, strict=True):
        rows = ops.apply_local_last(rows, m, block.qubits, plan.n)
    return rows


def _to_inputs(
    plan: _Plan,
    start: int,
    rows: torch.Tensor,
    built: _Maps,
    consts: dict[str, Any],
    r: torch.Tensor,
) -> torch.Tensor:
    """Carry rows-last operators ``(K, 4**n, M)`` through stages ``start .. 0`` and contract
    them with the encoded states ``r`` ``(B, S)``: ``(K, B, M)``.

    When stage 0 is a product stage and ``r`` lives on a product support, that stage only
    computes the kept components (no full stage followed by a gather).
    """
    support = consts.get("support")
    last = 0 if support is None or plan.stages[0].kind != "product" else 1
    for j in range(start, last - 1, -1):
        rows = _apply_stage_last(plan, j, rows, built.maps[j], consts, built.fused[j])
    if start >= 0 and last == 1:
        keep = consts["support_digits"]
        per_qubit: list[torch.Tensor] = [consts["support_eye"]] * plan.n
        for block, m in zip(plan.stages[0].blocks, built.maps[0], strict=True):
            per_qubit[block.qubits[0]] = m[:, keep]
        rows = ops.apply_projected_product(rows, per_qubit, plan.n, rows.shape[-1])
    elif support is not None:
        rows = rows.index_select(1, support)
    return r @ rows


def _strengths(spec: PQCSpec, levels: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """``(K, layers)`` channel strengths (K = 1 without noise levels)."""
    if levels is None:
        return torch.tensor([spec.layer_strengths()], dtype=like.dtype, device=like.device)
    return levels[:, None].to(like.dtype).expand(levels.shape[0], spec.layers)


def _observable_rows(plan: _Plan, like: torch.Tensor, consts: dict[str, Any]) -> torch.Tensor:
    """``(1, 4**n, O)`` (rows-last): one-hot Pauli coefficients of the observables."""
    rows = like.new_zeros(1, 4**plan.n, len(plan.labels))
    rows[0, consts["obs_index"], torch.arange(len(plan.labels), device=like.device)] = 1.0
    return rows


def _cat_rows(a: torch.Tensor | None, b: torch.Tensor) -> torch.Tensor:
    """Concatenate rows-last operator blocks, broadcasting the noise-level axis."""
    if a is None:
        return b
    k = max(a.shape[0], b.shape[0])
    return torch.cat([a.expand(k, *a.shape[1:]), b.expand(k, *b.shape[1:])], -1)


def _heisenberg_values(
    plan: _Plan, x: torch.Tensor, w: torch.Tensor, strengths: torch.Tensor
) -> torch.Tensor:
    """Differentiable values ``(K, B, O)`` by the Heisenberg engine."""
    consts = _constants(plan.spec, x.dtype, str(x.device))
    built = _stage_maps(plan, w, strengths, derivs=False)
    rows = _observable_rows(plan, x, consts)
    r = ops.pauli_states(plan.spec, x, consts.get("support"))
    out = _to_inputs(plan, len(plan.stages) - 1, rows, built, consts, r)
    return out.expand(strengths.shape[0], x.shape[0], len(plan.labels))


def _spawn(
    plan: _Plan,
    i: int,
    main: torch.Tensor,
    maps: list[torch.Tensor],
    derivs: list[tuple[int, int, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Apply stage ``i`` to ``main`` and spawn its derivative rows.

    For a product stage the derivative by a weight on qubit ``q`` is the stage with ``q``'s map
    replaced by its derivative; walking the qubits in order, rows spawned at qubit ``q``
    already carry the maps of qubits ``< q`` (from ``main``) and then receive those of the
    qubits ``> q``.

    Returns:
        ``(main', spawned (K, 4**n, G*O), weights of the G groups)``.
    """
    n = plan.n
    stage = plan.stages[i]
    params = [p for p, _, _ in derivs]
    if stage.kind == "pair":
        pair = stage.blocks[0].qubits
        spawned: torch.Tensor | None = None
        for _, _, d in derivs:
            spawned = _cat_rows(spawned, ops.apply_local_last(main, d, pair, n))
        assert spawned is not None
        return ops.apply_local_last(main, maps[0], pair, n), spawned, params
    per_qubit: dict[int, torch.Tensor] = {
        blk.qubits[0]: m for blk, m in zip(stage.blocks, maps, strict=True)
    }
    qubits = sorted(per_qubit)
    blocks: list[torch.Tensor] = []
    order: list[int] = []
    for j, q in enumerate(qubits):
        spawned = None
        for p, pos, d in derivs:
            if stage.blocks[pos].qubits[0] == q:
                spawned = _cat_rows(spawned, ops.apply_local_last(main, d, (q,), n))
                order.append(p)
        main = ops.apply_local_last(main, per_qubit[q], (q,), n)
        if spawned is not None:
            for later in qubits[j + 1 :]:
                spawned = ops.apply_local_last(spawned, per_qubit[later], (later,), n)
            blocks.append(spawned)
    k = max(t.shape[0] for t in blocks)
    return main, torch.cat([t.expand(k, *t.shape[1:]) for t in blocks], -1), order


def _heisenberg_jacobian(
    plan: _Plan, x: torch.Tensor, w: torch.Tensor, strengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Values ``(K,B,O)``, d_inputs ``(K,B,O,I)`` and d_weights ``(K,B,O,P)`` (no autograd).

    Each stage's derivative rows are pushed down to the inputs as soon as they are spawned, in
    chunks of :data:`_CHUNK_ROWS` rows (depth first), which keeps the working set in cache:
    measured twice as fast as carrying all rows together.
    """
    consts = _constants(plan.spec, x.dtype, str(x.device))
    built = _stage_maps(plan, w, strengths, derivs=True)
    support = consts.get("support")
    r = ops.pauli_states(plan.spec, x, support)  # (B, S)
    k, b, o, p = strengths.shape[0], x.shape[0], len(plan.labels), w.shape[0]
    d_weights = x.new_zeros(k, b, o, p)
    main = _observable_rows(plan, x, consts)
    size = 4**plan.n
    per_chunk = max(1, _CHUNK_ELEMENTS // (o * size * k))
    for i in range(len(plan.stages) - 1, -1, -1):
        if not built.derivs[i]:
            main = _apply_stage_last(plan, i, main, built.maps[i], consts, built.fused[i])
            continue
        if len(built.derivs[i]) * o * size * k <= _SPAWN_ELEMENTS:
            main, spawned, params = _spawn(plan, i, main, built.maps[i], built.derivs[i])
            _push_down(plan, i, spawned, params, built, consts, r, d_weights, per_chunk)
            continue
        # large circuits: one weight at a time (the stage with one map replaced), pushed down
        # at once so that only one weight's rows are alive
        for p_index, pos, d in built.derivs[i]:
            maps = list(built.maps[i])
            maps[pos] = d
            spawned = _apply_stage_last(plan, i, main, maps, consts)
            _push_down(plan, i, spawned, [p_index], built, consts, r, d_weights, per_chunk)
        main = _apply_stage_last(plan, i, main, built.maps[i], consts, built.fused[i])
    a = main if support is None else main.index_select(1, support)
    values = (r @ a).expand(k, b, o)
    a_mat = ops.pauli_to_matrix(main.transpose(1, 2), plan.n)
    d_inputs = _input_jacobian(plan.spec, x, a_mat, values)
    return values, d_inputs.expand(k, *d_inputs.shape[1:]), d_weights


def _push_down(
    plan: _Plan,
    i: int,
    spawned: torch.Tensor,
    params: list[int],
    built: _Maps,
    consts: dict[str, Any],
    r: torch.Tensor,
    d_weights: torch.Tensor,
    per_chunk: int,
) -> None:
    """Carry derivative rows spawned at stage ``i`` (``(K, 4**n, G*O)``, group-major) through
    stages ``i-1 .. 0`` in chunks of ``per_chunk * O`` rows, contract them with the encoded
    states ``r`` ``(B, S)`` and write ``d_weights[..., params]`` ``(K, B, O, P)``.

    Rows that are exactly zero stay zero under every later (linear) map and are dropped: a
    weight outside an observable's light cone (late layers) spawns an exact zero row, since
    every derivative map sends the identity component to zero.
    """
    o = d_weights.shape[2]
    cols = torch.arange(spawned.shape[-1], device=spawned.device)
    alive = spawned.abs().amax(dim=(0, 1)) > 0
    if not bool(alive.all()):
        cols = cols[alive]
        spawned = spawned.index_select(-1, cols)
    obs_of = cols % o
    par_of = torch.tensor(params, device=spawned.device)[cols // o]
    step = per_chunk * o
    for c0 in range(0, cols.shape[0], step):
        rows = spawned[..., c0 : c0 + step].contiguous()
        done = _to_inputs(plan, i - 1, rows, built, consts, r)  # (K|1, B, M)
        d_weights[:, :, obs_of[c0 : c0 + step], par_of[c0 : c0 + step]] = done


def _input_jacobian(
    spec: PQCSpec, x: torch.Tensor, a: torch.Tensor, values: torch.Tensor
) -> torch.Tensor:
    """``d values[k,b,o] / d x[b,i] = 2 Re(dpsi_b^dagger A_{k,o} psi_b)``, ``(K, B, O, I)``.

    Args:
        a: ``(K, O, d, d)`` complex Heisenberg-evolved observables.
        values: ``(K, B, O)``.
    """
    psi = ops.statevectors(spec, x)  # (B, d)
    a_psi = torch.einsum("koij,bj->kboi", a, psi)
    if spec.encoding == "amplitude":
        # psi = x/|x|: d psi_j / d x_i = (delta_ij - psi_i psi_j) / |x|
        norm = torch.linalg.vector_norm(x, dim=-1)
        grad = 2 * (a_psi.real - values[..., None] * psi.real[None, :, None, :])
        return grad / norm[None, :, None, None]
    phi = ops.qubit_states(spec, x)  # (B, n, 2)
    dphi, qubit_of = ops.qubit_state_derivatives(spec, x)  # (B, I, 2)
    variants = phi[None].repeat(x.shape[1], 1, 1, 1)  # (I, B, n, 2)
    for i, q in enumerate(qubit_of):
        variants[i, :, q] = dphi[:, i]
    dpsi = ops.kron_states(variants)  # (I, B, d)
    return 2 * torch.einsum("ibj,kboj->kboi", dpsi.conj(), a_psi).real


# ---------------------------------------------------------------------------- statevector


def _statevector_values(plan: _Plan, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Differentiable noiseless values ``(1, B, O)``: ``<psi_b|U^dag P_o U|psi_b>``."""
    n = plan.n
    psi = ops.statevectors(plan.spec, x)
    program = compile_spec(plan.spec)
    for op in program.ansatz:
        assert isinstance(op, Gate)
        angle = (
            w[op.param.index : op.param.index + 1] * op.param.scale if op.param else w.new_zeros(1)
        )
        psi = ops.apply_local(psi, ops.gate_unitaries(op.name, angle)[0], op.qubits, n, 2)
    out = x.new_zeros(x.shape[0], len(plan.labels))
    for outs, gather, coeff in ops.observable_groups(plan.spec, str(x.device)):
        prod = psi.conj() * psi.index_select(-1, gather)
        out = out.index_add(
            1, torch.tensor(outs, device=x.device), (prod @ coeff.to(psi.dtype)).real
        )
    return out[None]


_FORWARD_AD_LOCK = threading.Lock()


def _forward_jacobian(
    f: Callable[[torch.Tensor], torch.Tensor], primal: torch.Tensor, tangents: torch.Tensor
) -> torch.Tensor:
    """``(T, *f.shape)``: directional derivatives of ``f`` along each tangent (forward-mode
    dual numbers, one pass per tangent)."""
    outs = []
    # forward-mode AD levels are process-global: one thread at a time may hold one
    with _FORWARD_AD_LOCK, torch.enable_grad():
        for t in tangents:
            with fwAD.dual_level():
                dual = fwAD.make_dual(primal, t)
                outs.append(fwAD.unpack_dual(f(dual)).tangent)
    return torch.stack(outs)


# ---------------------------------------------------------------------------- public API


def choose_engine(spec: PQCSpec, batch: int) -> Engine:
    """``statevector`` for noiseless specs with ``n > 10`` or ``B > 4 O 2**n``, else
    ``heisenberg``.

    Raises:
        BackendLimitError: a noisy spec on more than :data:`MAX_DENSITY_QUBITS` qubits.
    """
    n = spec.n_qubits
    if spec.noisy:
        if n > MAX_DENSITY_QUBITS:
            raise BackendLimitError(
                f"the exact backend simulates noisy circuits (density matrices) on at most "
                f"{MAX_DENSITY_QUBITS} qubits, got {n}; use a noiseless spec or the aer backend",
                field="n_qubits",
            )
        return "heisenberg"
    if n > MAX_DENSITY_QUBITS or batch > 4 * spec.n_outputs * 2**n:
        return "statevector"
    return "heisenberg"


def expectation(
    spec: PQCSpec,
    inputs: torch.Tensor,
    weights: torch.Tensor,
    *,
    noise_levels: torch.Tensor | None = None,
    engine: Engine | None = None,
) -> torch.Tensor:
    """Exact expectation values, differentiable by autograd.

    Args:
        spec: the circuit.
        inputs: ``(B, I)`` float64 or float32; sets dtype and device.
        weights: ``(P,)``.
        noise_levels: ``(K,)`` strengths, each replacing the channel strength in every layer;
            ``None`` uses the spec's own per-layer strengths (``K = 1``).
        engine: force ``heisenberg`` or ``statevector`` (default: :func:`choose_engine`).

    Returns:
        ``(K, B, O)`` values ``<O_o>`` for sample ``b`` at noise level ``k``.

    Raises:
        InvalidSpecError: wrong shapes (``inputs``, ``weights``, ``noise_levels``), an
            amplitude-encoded zero vector, or noise levels for a noiseless spec.
        BackendLimitError: a noisy spec on more than 10 qubits.
    """
    x, w, levels = _check(spec, inputs, weights, noise_levels)
    if spec.timestep is not None or spec.encoding == "complex_amplitude":
        # per-sample angles or complex states: the state engine, whatever ``engine`` says (the
        # Heisenberg and statevector engines read neither; they answered wrong numbers)
        from qldm.backends import _states

        strengths = _strengths(spec, levels, x) if spec.noisy else None
        return _states.state_values(spec, x, w, strengths=strengths)
    plan = _plan(spec)
    chosen = engine or choose_engine(spec, x.shape[0])
    if chosen == "statevector":
        if spec.noisy:
            raise InvalidSpecError("the statevector engine needs a noiseless spec", field="engine")
        return _statevector_values(plan, x, w)
    choose_engine(spec, 1)  # density limit
    if spec.n_qubits > MAX_DENSITY_QUBITS:
        raise BackendLimitError(
            f"the Heisenberg engine takes at most {MAX_DENSITY_QUBITS} qubits", field="n_qubits"
        )
    return _heisenberg_values(plan, x, w, _strengths(spec, levels, x))


def _check(
    spec: PQCSpec, inputs: torch.Tensor, weights: torch.Tensor, levels: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    if (
        not isinstance(inputs, torch.Tensor)
        or inputs.dim() != 2
        or inputs.shape[1] != spec.n_inputs
        or inputs.shape[0] < 1
    ):
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise InvalidSpecError(
            f"expected a tensor (B, {spec.n_inputs}), got {shape}", field="inputs"
        )
    if inputs.dtype not in (torch.float32, torch.float64):
        raise InvalidSpecError(
            f"inputs must be float32 or float64, got {inputs.dtype}", field="inputs"
        )
    if not isinstance(weights, torch.Tensor) or tuple(weights.shape) != (spec.n_weights,):
        shape = (
            tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
        )
        raise InvalidSpecError(
            f"expected a tensor ({spec.n_weights},), got {shape}", field="weights"
        )
    w = weights.to(dtype=inputs.dtype, device=inputs.device)
    if levels is not None:
        if not isinstance(levels, torch.Tensor) or levels.dim() != 1 or levels.shape[0] < 1:
            raise InvalidSpecError("expected a tensor (K,) with K >= 1", field="noise_levels")
        for value in levels.detach().cpu().tolist():
            check_noise_level(spec, float(value))
        levels = levels.to(dtype=inputs.dtype, device=inputs.device)
    return inputs, w, levels


class ExactBackend:
    """The ``exact`` backend: :func:`expectation` and its Jacobians on a torch device.

    Args:
        device: torch device (``cpu``, ``cuda``, ``cuda:1``, ...).
        dtype: ``float64`` (default) or ``float32``.
    """

    name = "exact"
    capabilities: ClassVar[Capabilities] = SIMULATOR

    def __init__(self, *, device: str = "cpu", dtype: str = "float64") -> None:
        if dtype not in ("float64", "float32"):
            raise InvalidSpecError(
                f"dtype must be float64 or float32, got {dtype!r}", field="dtype"
            )
        try:
            self.device = torch.device(device)
        except RuntimeError as exc:
            raise InvalidSpecError(
                f"unknown torch device {device!r} ({exc})", field="device"
            ) from None
        self.dtype = getattr(torch, dtype)

    def run(self, work: Workload, context: Context = NO_CONTEXT) -> Evaluation:
        """Evaluate ``work``: values ``(K,B,O)``, and for ``jacobian`` ``d_inputs (K,B,O,I)``
        and ``d_weights (K,B,O,P)``, as float64 numpy arrays.

        With ``shots``, every value is replaced by the mean of ``shots`` simulated +-1 outcomes
        (:func:`qldm.backends._shots.pauli_shot_means`, seeded by ``work.seed``); Jacobians
        stay exact. With ``noise_sampling="trajectory"`` a noisy spec runs one statevector per
        (noise level, sample) with every channel drawn (:func:`qldm.backends.trajectory.run`,
        any number of qubits the memory allows); on a noiseless spec it changes nothing. The
        ``counts`` task and QPY circuits go to Aer (exactly, as on ``aer``). ``context``
        offers nothing this backend uses.

        Raises:
            BackendLimitError: a noisy spec on more than 10 qubits (expectation sampling).
        """
        self.capabilities.check(self.name, work.task, work.kind, work.noise_sampling)
        check_state_support(self.name, work)
        if needs_state_engine(work):
            from qldm.backends._exact_states import run_states

            return run_states(work, device=self.device, dtype=self.dtype)
        other = aer_path(self.name, work)
        if other is not None:
            return other.run(work, context)
        if work.noise_sampling is NoiseSampling.TRAJECTORY and work.spec.noisy:
            return trajectory.run(work, device=self.device, dtype=self.dtype)
        start = time.perf_counter()
        spec = work.spec
        x = torch.as_tensor(work.inputs, dtype=self.dtype, device=self.device)
        w = torch.as_tensor(work.weights, dtype=self.dtype, device=self.device)
        levels = (
            None
            if work.noise_levels is None
            else torch.as_tensor(work.noise_levels, dtype=self.dtype, device=self.device)
        )
        x, w, levels = _check(spec, x, w, levels)
        engine = choose_engine(spec, x.shape[0])
        parts = [
            _evaluate(spec, engine, work.task, chunk, w, levels)
            for chunk in x.split(_batch_chunk(spec, engine))
        ]
        values = torch.cat([v for v, _, _ in parts], 1)
        d_in = d_w = None
        if work.task == "jacobian":
            d_in = _numpy(torch.cat([d for _, d, _ in parts if d is not None], 1))
            d_w = _numpy(torch.cat([d for _, _, d in parts if d is not None], 1))
        vals = _numpy(values)
        metadata: dict[str, Any] = {
            "engine": engine,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
        }
        if work.shots is not None:
            vals = pauli_shot_means(vals, work.shots, np.random.default_rng(work.seed))
            metadata.update(
                shots=work.shots,
                seed=work.seed,
                shot_noise="values (binomial); Jacobians are exact",
            )
        metadata["seconds"] = time.perf_counter() - start
        return Evaluation(vals, d_in, d_w, metadata)


def _batch_chunk(spec: PQCSpec, engine: Engine) -> int:
    """Samples evaluated together, so that the encoded states stay under ~128 MiB."""
    n = spec.n_qubits
    if engine == "statevector":
        per_sample = 2**n * 4
    elif spec.encoding in ops.BLOCH_SUPPORT:
        per_sample = len(ops.BLOCH_SUPPORT[spec.encoding]) ** n
    else:
        per_sample = 4**n
    return max(1, (1 << 24) // per_sample)


def _evaluate(
    spec: PQCSpec,
    engine: Engine,
    task: str,
    x: torch.Tensor,
    w: torch.Tensor,
    levels: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Values ``(K,B,O)`` and, for ``jacobian``, d_inputs ``(K,B,O,I)``, d_weights ``(K,B,O,P)``."""
    plan = _plan(spec)
    with torch.no_grad():
        if engine == "statevector" and spec.encoding != "amplitude" and _statevector.supports(spec):
            # noiseless product encodings: fused blocks and adjoint Jacobians (no dual numbers)
            r = _statevector.evaluate(spec, x, w, jacobian=task == "jacobian")
            d_in = None if r.d_inputs is None else r.d_inputs[None]
            d_w = None if r.d_weights is None else r.d_weights[None]
            return r.values[None], d_in, d_w
        if task == "expectation":
            return expectation(spec, x, w, noise_levels=levels, engine=engine), None, None
        if engine == "heisenberg":
            return _heisenberg_jacobian(plan, x, w, _strengths(spec, levels, x))
        eye_x = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        d_in = _forward_jacobian(
            lambda z: _statevector_values(plan, z, w),
            x,
            eye_x[:, None, :].expand(-1, x.shape[0], -1),
        )
        d_w = _forward_jacobian(
            lambda v: _statevector_values(plan, x, v),
            w,
            torch.eye(w.shape[0], dtype=w.dtype, device=w.device),
        )
        values = _statevector_values(plan, x, w)
        return values, d_in.permute(1, 2, 3, 0), d_w.permute(1, 2, 3, 0)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu", torch.float64).numpy())
