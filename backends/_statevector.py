"""Noiseless batched statevector evaluation with adjoint Jacobians, for product encodings.

For a noiseless spec whose encoding prepares a product state (``angle_ry``, ``angle_rx``,
``dense_angle``, ``phase``, ``basis``) or a normalised real vector (``amplitude``), this module
computes values ``(B, O)`` and, when asked, both Jacobians ``(B, O, I)`` and ``(B, O, P)`` in
complex128 (or complex64 for float32 inputs) without autograd. The structure it uses:

- **Components.** Qubits joined by a multi-qubit ansatz gate or by one observable's support
  form a component; a product input state stays a product across components, so each is
  simulated on its own ``2**m`` amplitudes (``fqconv`` on 12 qubits is four 3-qubit systems).
- **Blocks.** Consecutive ansatz gates whose qubits together number at most
  :data:`MAX_BLOCK_QUBITS` are fused into one ``2**k x 2**k`` unitary ``M`` (an ``hqconv``
  channel is one 16x16 matrix), applied to the whole batch as one GEMM over the block's digits.
  Built from the weights once per call: the ansatz does not depend on the sample.
- **Encoding.** The encoded state is a Kronecker product of per-qubit states; no gates.
- **Adjoint Jacobians, batched over observables.** With ``psi_k`` the state before block ``k``
  and ``lam_o = U^dag P_o U psi_0`` carried backwards block by block
  (``lam <- M_k^dag lam``), the derivative by the weight of gate ``j`` of block ``k`` is
  ``2 Re tr(K_j R)``, where ``R[o, a, c] = sum_r conj(lam_o[a, r]) psi_k[c, r]`` is the
  cross density on the block's digits (one batched GEMM per block) and
  ``K_j = P_{j+1}^dag (-i s_j H_j) P_{j+1}`` (``P_{j+1}`` the product of the block's gates up
  to ``j``, ``H_j`` the generator, ``s_j`` the parameter's scale) is small and
  batch-independent. By inputs, ``2 Re <lam_o(0)| d psi_0 / d x_i>``, a contraction of
  ``lam(0)`` with the other qubits' states (product encodings) or closed form (amplitude).

Conventions are those of :mod:`qldm.circuits.program` (Qiskit's, qubit ``q`` is bit ``q`` of a
basis index); gate matrices come from :mod:`qldm.backends._torch_ops`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from qldm.backends import _torch_ops as ops
from qldm.circuits import PQCSpec, compile_spec
from qldm.circuits.program import Gate
from qldm.errors import InvalidSpecError

__all__ = ["MAX_BLOCK_QUBITS", "SUPPORTED_ENCODINGS", "StatevectorResult", "evaluate", "supports"]

MAX_BLOCK_QUBITS = 4
"""Most qubits one fused block acts on (a 16x16 unitary)."""

SUPPORTED_ENCODINGS = frozenset(
    {"angle_ry", "angle_rx", "dense_angle", "phase", "basis", "amplitude"}
)
"""Encodings this evaluator takes (every product-state encoding, and ``amplitude``)."""

_CHUNK_AMPLITUDES = 1 << 20
"""Samples are evaluated in chunks of about this many amplitudes of ``lam`` (all observables)."""


@dataclass(frozen=True)
class StatevectorResult:
    """Values ``(B, O)``; with Jacobians, ``d_inputs (B, O, I)`` and ``d_weights (B, O, P)``."""

    values: torch.Tensor
    d_inputs: torch.Tensor | None = None
    d_weights: torch.Tensor | None = None


def supports(spec: PQCSpec) -> bool:
    """Whether :func:`evaluate` takes ``spec``: noiseless, with a supported encoding."""
    return not spec.noisy and spec.encoding in SUPPORTED_ENCODINGS


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
        outputs = tuple(by_output.get(find(qs[0]), []))
        sub_labels = ["".join(labels[o][n - 1 - q] for q in reversed(qs)) for o in outputs]
        gather, phase = _pauli_tables(sub_labels, len(qs))
        inputs = tuple(i for i, q in enumerate(input_qubit) if q in local)
        if spec.encoding == "amplitude":
            inputs = tuple(range(spec.n_inputs))
        blocks = _blocks(comp_gates)
        prefix, factors = _product_prefix(blocks, len(qs), spec.encoding != "amplitude")
        components.append(
            _Component(tuple(qs), blocks, outputs, gather, phase, inputs, prefix, factors)
        )
    return _Plan(spec, tuple(components), input_qubit)


# ---------------------------------------------------------------------------- block maps


def _apply(x: torch.Tensor, m: torch.Tensor, qubits: tuple[int, ...], n: int) -> torch.Tensor:
    """``m`` (``(2**k, 2**k)``) on ``qubits`` (first = major digit) of ``x`` ``(*lead, 2**n)``."""
    return ops.apply_local(x, m, qubits, n, 2)


def _relayout(x: torch.Tensor, src: tuple[int, ...], dst: tuple[int, ...]) -> torch.Tensor:
    """Reorder the qubit digits of ``x`` ``(*lead, 2**m)`` from order ``src`` to ``dst``
    (each lists the qubits from the most significant digit down); no copy when equal."""
    if src == dst:
        return x
    lead = x.shape[:-1]
    m = len(src)
    nl = len(lead)
    perm = list(range(nl)) + [nl + src.index(q) for q in dst]
    return x.reshape(*lead, *([2] * m)).permute(perm).reshape(*lead, 2**m)


def _permute_axes(x: torch.Tensor, src: tuple[int, ...], dst: tuple[int, ...]) -> torch.Tensor:
    """``x`` ``(Bc, *axes)`` with its axes labelled ``src``, reordered to ``dst`` (contiguous;
    no copy when equal). Runs of axes that stay neighbours are merged first, so the copy
    walks a few large axes instead of many of size 2."""
    if src == dst:
        return x
    runs: list[list[int]] = []
    for a in src:
        if runs and dst.index(a) == dst.index(runs[-1][-1]) + 1:
            runs[-1].append(a)
        else:
            runs.append([a])
    sizes = dict(zip(src, x.shape[1:], strict=True))
    merged = x.reshape(x.shape[0], *[int(np.prod([sizes[a] for a in run])) for run in runs])
    firsts = [run[0] for run in runs]
    perm = sorted(range(len(runs)), key=lambda j: dst.index(firsts[j]))
    out = merged.permute(0, *[1 + j for j in perm]).contiguous()
    return out.reshape(x.shape[0], *[sizes[a] for a in dst])


def _block_last(order: tuple[int, ...], qubits: tuple[int, ...]) -> tuple[int, ...]:
    """The digit order with ``qubits`` (in block order) last and the others as they were."""
    return tuple(q for q in order if q not in qubits) + qubits


def _block_maps(
    block: _Block, w: torch.Tensor, cdt: torch.dtype, *, derivs: bool
) -> tuple[torch.Tensor, list[tuple[int, torch.Tensor]]]:
    """The block's unitary ``M`` and, per parametric gate, ``(weight, K_j)`` with
    ``dM/dw = M K_j`` (see the module docstring)."""
    k = len(block.qubits)
    local = {q: j for j, q in enumerate(block.qubits)}
    eye = torch.eye(2**k, dtype=cdt, device=w.device)
    prefix = eye  # rows of prefix^T: apply each gate to the columns of the running product
    ks: list[tuple[int, torch.Tensor]] = []
    for g in block.gates:
        qs = tuple(local[q] for q in g.qubits)
        pos = tuple(k - 1 - j for j in qs)  # local digit position (0 = least significant)
        if g.param is None:
            u = ops.gate_unitaries(g.name, w.new_zeros(1))[0]
        else:
            angle = w[g.param.index : g.param.index + 1] * g.param.scale
            u = ops.gate_unitaries(g.name, angle)[0]
        prefix = _apply(prefix.transpose(0, 1), u, pos, k).transpose(0, 1)
        if derivs and g.param is not None:
            h = ops.generator(g.name, w.dtype, w.device).to(cdt)
            gen = _apply(eye, h, pos, k).transpose(0, 1)  # embedded H (H^T rows -> H)
            ks.append((g.param.index, prefix.conj().T @ (-1j * g.param.scale * gen) @ prefix))
    return prefix, ks


# ---------------------------------------------------------------------------- evaluation


def evaluate(
    spec: PQCSpec, inputs: torch.Tensor, weights: torch.Tensor, *, jacobian: bool = False
) -> StatevectorResult:
    """Values and (with ``jacobian``) both Jacobians of a noiseless spec.

    Args:
        spec: a spec :func:`supports` accepts.
        inputs: ``(B, I)`` float64 (or float32); sets dtype and device.
        weights: ``(P,)``.
        jacobian: also compute ``d_inputs (B, O, I)`` and ``d_weights (B, O, P)``.

    Returns:
        A :class:`StatevectorResult` of real tensors in the inputs' dtype (no autograd graph).

    Raises:
        InvalidSpecError: a noisy spec or an encoding outside :data:`SUPPORTED_ENCODINGS`
            (field ``spec``), wrong shapes (``inputs``, ``weights``), or an amplitude-encoded
            zero vector (``inputs``).
    """
    if not supports(spec):
        raise InvalidSpecError(
            "the statevector evaluator needs a noiseless spec with a product (or amplitude) "
            f"encoding, got encoding {spec.encoding!r}, channel {spec.channel.kind!r}",
            field="spec",
        )
    if inputs.dim() != 2 or inputs.shape[1] != spec.n_inputs or inputs.shape[0] < 1:
        raise InvalidSpecError(
            f"expected (B, {spec.n_inputs}), got {tuple(inputs.shape)}", field="inputs"
        )
    if tuple(weights.shape) != (spec.n_weights,):
        raise InvalidSpecError(
            f"expected ({spec.n_weights},), got {tuple(weights.shape)}", field="weights"
        )
    x = inputs.detach()
    w = weights.detach().to(dtype=x.dtype, device=x.device)
    plan = _plan(spec)
    with torch.no_grad():
        return _evaluate(plan, x, w, jacobian)


def _evaluate(plan: _Plan, x: torch.Tensor, w: torch.Tensor, jacobian: bool) -> StatevectorResult:
    spec = plan.spec
    b = x.shape[0]
    values = x.new_zeros(b, spec.n_outputs)
    d_inputs = x.new_zeros(b, spec.n_outputs, spec.n_inputs) if jacobian else None
    d_weights = x.new_zeros(b, spec.n_outputs, spec.n_weights) if jacobian else None
    if spec.encoding == "amplitude":
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        if bool((norm == 0).any()):
            raise InvalidSpecError("amplitude encoding of a zero vector", field="inputs")
        phi = dphi = None
    else:
        phi = ops.qubit_states(spec, x)  # (B, n, 2)
        dphi = ops.qubit_state_derivatives(spec, x)[0] if jacobian else None  # (B, I, 2)
    out = _Out(values, d_inputs, d_weights)
    for comp in plan.components:
        if not comp.outputs:
            continue
        m = len(comp.qubits)
        maps = [
            _block_maps(blk, w, ops.complex_dtype(x.dtype), derivs=jacobian) for blk in comp.blocks
        ]
        chunk = max(1, _CHUNK_AMPLITUDES // (len(comp.outputs) * 2**m))
        for s in range(0, b, chunk):
            sl = slice(s, min(b, s + chunk))
            _run_chunk(plan, comp, maps, x[sl], sl, phi, dphi, out)
    return StatevectorResult(values, d_inputs, d_weights)


@dataclass
class _Out:
    values: torch.Tensor
    d_inputs: torch.Tensor | None
    d_weights: torch.Tensor | None


def _kron(vectors: list[torch.Tensor]) -> torch.Tensor:
    """``(Bc, d_1), (Bc, d_2), ...`` -> ``(Bc, d_1 d_2 ...)``, the first most significant."""
    out = vectors[0]
    for v in vectors[1:]:
        out = (out[:, :, None] * v[:, None, :]).reshape(out.shape[0], -1)
    return out


def _run_chunk(
    plan: _Plan,
    comp: _Component,
    maps: list[tuple[torch.Tensor, list[tuple[int, torch.Tensor]]]],
    x: torch.Tensor,
    sl: slice,
    phi: torch.Tensor | None,
    dphi: torch.Tensor | None,
    out: _Out,
) -> None:
    """One chunk of samples through one component: fill its rows of ``out``."""
    m = len(comp.qubits)
    natural = tuple(range(m - 1, -1, -1))
    device = x.device
    outs = torch.tensor(comp.outputs, dtype=torch.long, device=device)
    jacobian = out.d_weights is not None
    # the encoded state after the product prefix, in the factors' digit order
    vecs: list[torch.Tensor] = []
    local_phi = None
    if phi is None:
        psi = (x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)).to(maps[0][0].dtype)
        vecs = [psi]
    else:
        local_phi = phi[sl][:, list(comp.qubits)]  # (Bc, m, 2), local qubit j = comp.qubits[j]
        for f, qubits in enumerate(comp.factors):
            v = ops.kron_states(local_phi[:, list(reversed(qubits))])
            if f < comp.prefix:
                v = v @ maps[f][0].T
            vecs.append(v)
        psi = _kron(vecs)
    order = tuple(q for qubits in comp.factors for q in qubits)
    start_order = order
    # forward through the other blocks; states[i] is the input of block i, block digits last
    states: dict[int, torch.Tensor] = {}
    orders: dict[int, tuple[int, ...]] = {}
    for i in range(comp.prefix, len(comp.blocks)):
        blk = comp.blocks[i]
        target = _block_last(order, blk.qubits)
        psi = _relayout(psi, order, target)
        order = target
        k = len(blk.qubits)
        states[i] = psi.reshape(psi.shape[0], 2 ** (m - k), 2**k)
        orders[i] = order
        psi = (states[i] @ maps[i][0].T).reshape(psi.shape)
    psi = _relayout(psi, order, natural)
    gather = torch.as_tensor(comp.gather, device=device)
    phase = torch.as_tensor(comp.phase, device=device).to(psi.dtype)
    lam = psi[:, gather] * phase  # (Bc, O_c, 2**m): P_o psi
    vals = torch.einsum("bj,boj->bo", psi.conj(), lam).real
    out.values[sl, outs] = vals
    if not jacobian:
        return
    d_weights, d_inputs = out.d_weights, out.d_inputs
    assert d_weights is not None and d_inputs is not None
    bc, n_out = lam.shape[0], lam.shape[1]
    # lam's digits: the block's "rest" digits, then the observable axis (label -1), then the
    # block's digits, so that M^dag is one GEMM and the cross density one batched GEMM
    sizes = dict.fromkeys(range(m), 2)
    sizes[-1] = n_out
    lam = lam.reshape(bc, *([n_out] + [2] * m))
    order = (-1, *natural)
    for i in range(len(comp.blocks) - 1, comp.prefix - 1, -1):
        blk = comp.blocks[i]
        k = len(blk.qubits)
        target = (*orders[i][: m - k], -1, *blk.qubits)
        lam = _permute_axes(lam, order, target)
        order = target
        mat, ks = maps[i]
        flat = lam.reshape(-1, 2**k) @ mat.conj()  # rows: M^dag applied to each lam
        lam = flat.reshape(lam.shape)
        if ks:
            # crossc[b, c, (o, a)] = sum_r conj(psi[b, r, c]) lam[b, r, o, a]
            crossc = states[i].conj().transpose(-1, -2) @ flat.reshape(bc, 2 ** (m - k), -1)
            crossc = crossc.reshape(bc, 2**k, n_out, 2**k)
            kmat = torch.stack([kj for _, kj in ks])  # (G, A, C)
            d = 2 * torch.einsum("bcoa,gac->bog", crossc.conj(), kmat).real
            idx = torch.tensor([p for p, _ in ks], dtype=torch.long, device=device)
            d_weights[sl, outs[:, None], idx[None, :]] = d
    lam = _permute_axes(lam, order, (-1, *start_order)).reshape(bc, n_out, 2**m)
    order = start_order
    lam = _relayout(lam, order, start_order)
    if local_phi is None:
        # psi0 = x / |x|: d psi0_j / d x_i = (delta_ij - psi0_i psi0_j) / |x|
        norm = torch.linalg.vector_norm(x, dim=-1)
        grad = 2 * (lam.real - vals[..., None] * vecs[0].real[:, None, :])
        d_inputs[sl, outs] = grad / norm[:, None, None]
        return
    assert dphi is not None
    opened = _leave_one_out(lam, vecs)  # per factor (Bc, O, d_f)
    for f, qubits in enumerate(comp.factors):
        if f < comp.prefix:
            mat, ks = maps[f]
            if ks:
                # d(M phi_f) / d w_j = M K_j phi_f
                raw = ops.kron_states(local_phi[:, list(reversed(qubits))])
                kmat = torch.stack([mat @ kj for _, kj in ks])  # (G, A, C)
                moved = torch.einsum("gac,bc->bga", kmat, raw)
                d = 2 * torch.einsum("boa,bga->bog", opened[f], moved).real
                idx = torch.tensor([p for p, _ in ks], dtype=torch.long, device=device)
                d_weights[sl, outs[:, None], idx[None, :]] = d
        for i in comp.inputs:
            q = comp.qubits.index(plan.input_qubit[i])
            if q not in qubits:
                continue
            parts = [
                dphi[sl, i] if qq == q else local_phi[:, qq] for qq in qubits
            ]  # descending qubits: most significant first
            dv = _kron(parts)
            if f < comp.prefix:
                dv = dv @ maps[f][0].T
            d_inputs[sl, outs, i] = 2 * (opened[f] * dv[:, None, :]).sum(-1).real


def _leave_one_out(lam: torch.Tensor, vecs: list[torch.Tensor]) -> list[torch.Tensor]:
    """``<lam|`` contracted with every factor but one: ``[(Bc, O, d_f)]``.

    Args:
        lam: ``(Bc, O, prod d_f)``, digits in factor order (the first most significant).
        vecs: the factors' states ``(Bc, d_f)``.
    """
    bc, o, _ = lam.shape
    dims = [v.shape[1] for v in vecs]
    t = lam.conj().reshape(bc, o, *dims)
    if len(vecs) == 1:
        return [t]
    letters = "cdefghijklmnpqrstuvwxyz"[: len(vecs)]
    outs = []
    for f in range(len(vecs)):
        others = [g for g in range(len(vecs)) if g != f]
        equation = f"bo{letters}," + ",".join(f"b{letters[g]}" for g in others)
        outs.append(torch.einsum(f"{equation}->bo{letters[f]}", t, *[vecs[g] for g in others]))
    return outs
