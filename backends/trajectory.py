"""Noise as a device delivers it: one drawn realization of every channel per sample.

With ``noise_sampling="trajectory"`` every (noise level, sample) row of a workload is one
*quantum trajectory*: a pure state ``psi`` (``2**n`` amplitudes, so noisy circuits of 11-12
qubits run where a density matrix would need ``4**n``) carried through the ansatz, and after
every layer each qubit's channel is replaced by one draw of its unravelling:

- ``bit_flip`` ``p``: ``X`` with probability ``p``;
- ``phase_flip`` ``p``: ``Z`` with probability ``p``;
- ``depolarizing`` ``p`` (``(1-p) rho + p I/2``, i.e. ``(1 - 3p/4) rho + p/4 (X.X + Y.Y +
  Z.Z)``): ``X``, ``Y``, ``Z`` with probability ``p/4`` each (``Y`` applied as ``X Z``: the
  global phase does not change an expectation value);
- ``amplitude_damping`` ``g`` (``K0 = |0><0| + sqrt(1-g)|1><1|``, ``K1 = sqrt(g)|0><1|``): the
  quantum-jump draw, Kraus operator ``k`` with probability ``||K_k psi||^2`` and
  ``psi <- K_k psi / ||K_k psi||``; qubits are drawn one after the other, which gives the
  joint distribution of the product channel by the chain rule.

Averaged over draws, ``E[|psi><psi|] = Phi(rho)`` after every channel, so the mean of a row's
output is the density-matrix expectation value; a single row is what one circuit execution on
a device with randomized noise injection delivers (before shot noise).

**Draws.** Every channel op of every row takes one uniform number ``u`` in ``[0, 1)`` from
:func:`draw_uniforms` (a NumPy generator: the same seed gives the same trajectories on CPU and
GPU, and on the Aer backend, which uses the same draws for the Pauli channels). A Pauli code is
a function of ``u`` and the strength only; the amplitude-damping jump happens when
``u < g ||P_1 psi||^2``.

**Gradients.** :func:`simulate` is an ordinary torch program, so autograd differentiates the
drawn trajectory with the draws held fixed (the renormalisation ``1 / ||K_k psi||`` is
differentiable, the discrete choice is not): the *pathwise* gradient ``grad f``. For the Pauli
channels the draw probabilities do not depend on the inputs or weights, so its mean over draws
is the gradient of the density-matrix expectation. For amplitude damping the draw probability
``||K_k psi||^2`` depends on the state, and ``grad E[f] = E[grad f + f grad log p]``: the
pathwise gradient alone leaves out the score term and is biased (13-44 % relative L2 at 1-3
qubits, ``g = 0.1-0.3``). :func:`simulate` therefore also returns each row's
``log p = sum log ||K_k psi||^2`` over its draws, in the graph, and the entry points return
:func:`with_score`'s ``f + (f - b).detach() * (log p - (log p).detach())``: the same values,
with gradient ``grad f + (f - b) grad log p``, whose mean over draws is the density-matrix
gradient (for any cotangent that does not depend on the draws, i.e. a loss linear in the
outputs; a non-linear loss of one draw is, as with any sampled output, not the loss of the
mean). The baseline ``b`` is the leave-one-out mean of the other rows' values at the same noise
level (in the same chunk), which does not depend on the row's own draw: 1.4-2.4x less
variance than no baseline, for one repeated input and for a batch of different inputs alike;
the unbiased estimator's variance is still 1.5-3x the pathwise one's
(``python -m qldm.bench.trajectory_gradient``). Gradients by the noise strength are not
available (for the Pauli channels the strength only moves the draw's thresholds).

**Jacobians** (task ``jacobian``): each row gets its own copy of the weights as an autograd
leaf, so ``O`` backward passes over the whole batch give every row's ``d/dx`` and ``d/dw`` of
the same estimator (score term and baseline included) as autograd through :func:`sample`.

**Shots.** With ``shots=N`` every row's values are Born-rule estimates from ``N`` shots of its
own trajectory (``2 k / N - 1``, ``k ~ Binomial(N, (1 + v) / 2)``, drawn from the same
generator after the channel draws); the Jacobians stay those of the trajectory's exact value
(straight-through), see :func:`run`.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from qldm.backends import _torch_ops as ops
from qldm.backends._score import with_score
from qldm.backends._shots import pauli_shot_means
from qldm.backends._statevector import _Block as Block
from qldm.backends._statevector import _blocks
from qldm.backends.base import Evaluation, Workload
from qldm.circuits import PQCSpec, compile_spec
from qldm.circuits.program import Channel, Gate
from qldm.errors import BackendLimitError, InvalidSpecError

__all__ = [
    "check_supported",
    "draw_uniforms",
    "pauli_codes",
    "run",
    "sample",
    "simulate",
    "strength_rows",
    "with_score",
]

_CHUNK_AMPLITUDES = 1 << 22
"""Rows simulated together: about this many amplitudes (64 MiB complex128) per chunk."""


# ---------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class _Layer:
    """One ansatz layer's gates fused into blocks, then (``channel``) its channel."""

    blocks: tuple[Block, ...]
    channel: bool


@functools.lru_cache(maxsize=64)
def _layers(spec: PQCSpec) -> tuple[_Layer, ...]:
    out: list[_Layer] = []
    gates: list[Gate] = []
    seen: set[int] = set()
    for op in compile_spec(spec).ansatz:
        if isinstance(op, Channel):
            if op.layer not in seen:
                seen.add(op.layer)
                out.append(_Layer(_blocks(gates) if gates else (), True))
                gates = []
            continue
        gates.append(op)
    if gates:
        out.append(_Layer(_blocks(gates), False))
    return tuple(out)


@functools.lru_cache(maxsize=16)
def _parity(n: int) -> np.ndarray:
    """``popcount(j) mod 2`` for ``j < 2**n``."""
    j = np.arange(2**n, dtype=np.int64)
    out = np.zeros_like(j)
    while np.any(j):
        out ^= j & 1
        j >>= 1
    return out


# ---------------------------------------------------------------------------- draws


def draw_uniforms(spec: PQCSpec, rows: int, rng: np.random.Generator) -> np.ndarray:
    """One uniform number in ``[0, 1)`` per row, layer and qubit: ``(rows, layers, n)``.

    Row ``k * B + b`` is sample ``b`` at noise level ``k``.
    """
    return rng.random((rows, spec.layers, spec.n_qubits))


def pauli_codes(kind: str, u: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """The Pauli drawn for each uniform: 0 = I, 1 = X, 2 = Y, 3 = Z.

    Args:
        kind: ``bit_flip``, ``phase_flip`` or ``depolarizing``.
        u: uniforms in ``[0, 1)``, any shape.
        strength: the channel strength of each entry (broadcastable to ``u``).

    Returns:
        ``int64`` codes, the shape of ``u``: ``X`` (bit flip) or ``Z`` (phase flip) when
        ``u < p``; for depolarizing ``X``, ``Y``, ``Z`` when ``u`` falls in ``[0, p/4)``,
        ``[p/4, p/2)``, ``[p/2, 3p/4)``, else ``I``.

    Raises:
        InvalidSpecError: ``kind`` is not a Pauli channel (``field="channel.kind"``).
    """
    s = strength.to(u.dtype).expand_as(u)
    zero = torch.zeros_like(u, dtype=torch.int64)
    if kind == "bit_flip":
        return torch.where(u < s, 1, zero)
    if kind == "phase_flip":
        return torch.where(u < s, 3, zero)
    if kind == "depolarizing":
        code = torch.where(u < 3 * s / 4, 3, zero)
        code = torch.where(u < s / 2, 2, code)
        return torch.where(u < s / 4, 1, code)
    raise InvalidSpecError(f"{kind!r} is not a Pauli channel", field="channel.kind")


# ---------------------------------------------------------------------------- simulation


def _left_multiply(m: torch.Tensor, u: torch.Tensor, pos: tuple[int, ...], k: int) -> torch.Tensor:
    """``U_embedded @ m`` for a gate ``u`` on local digits ``pos`` of a ``k``-qubit block;
    ``m`` ``(D, D)`` or ``(R, D, D)``, ``u`` ``(d, d)`` or ``(R, d, d)``."""
    if u.dim() == 3:
        u = u[:, None]
    out = ops.apply_local(m.transpose(-1, -2), u, pos, k, 2)
    return out.transpose(-1, -2)


def _block_unitary(block: Block, w: torch.Tensor, cdt: torch.dtype) -> torch.Tensor:
    """The block's unitary from weights ``(P,)`` (``(D, D)``) or per-row ``(R, P)``
    (``(R, D, D)``)."""
    k = len(block.qubits)
    pos_of = {q: k - 1 - j for j, q in enumerate(block.qubits)}
    m = torch.eye(2**k, dtype=cdt, device=w.device)
    if w.dim() == 2:
        m = m.expand(w.shape[0], -1, -1)
    for g in block.gates:
        pos = tuple(pos_of[q] for q in g.qubits)
        if g.param is None:
            u = ops.gate_unitaries(g.name, w.new_zeros(1))[0]
        else:
            angle = w[..., g.param.index] * g.param.scale
            u = ops.gate_unitaries(g.name, angle.reshape(-1))
            if w.dim() == 1:
                u = u[0]
        m = _left_multiply(m, u, pos, k)
    return m


def _apply_paulis(psi: torch.Tensor, codes: torch.Tensor, n: int) -> torch.Tensor:
    """Apply ``X^x Z^z`` per row (``codes`` ``(R, n)``, 0..3): one sign and one gather for
    all qubits of a layer."""
    weights = 2 ** torch.arange(n, device=psi.device)
    xmask = (((codes == 1) | (codes == 2)).long() * weights).sum(-1)
    zmask = (((codes == 3) | (codes == 2)).long() * weights).sum(-1)
    idx = torch.arange(2**n, device=psi.device)
    if bool(zmask.any()):
        parity = torch.as_tensor(_parity(n), device=psi.device)
        sign = 1 - 2 * parity[idx[None, :] & zmask[:, None]]
        psi = psi * sign.to(psi.real.dtype)
    if bool(xmask.any()):
        psi = psi.gather(1, idx[None, :] ^ xmask[:, None])
    return psi


def _damp(
    psi: torch.Tensor, q: int, n: int, g: torch.Tensor, u: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One amplitude-damping draw on qubit ``q`` of every row (``g``, ``u``: ``(R,)``).

    The drawn Kraus operator, renormalised, is one ``2x2`` map per row:
    ``K1 / ||K1 psi|| = [[0, 1], [0, 0]] / ||P_1 psi||`` after a jump, else
    ``K0 / ||K0 psi|| = diag(1, sqrt(1 - g)) / sqrt(1 - g ||P_1 psi||^2)``.

    Returns:
        The new states ``(R, 2**n)`` and the log-probability of each row's draw ``(R,)``,
        ``log(g ||P_1 psi||^2)`` after a jump, else ``log(1 - g ||P_1 psi||^2)``
        (differentiable: the score of the draw).
    """
    r = psi.shape[0]
    one = psi.reshape(r, 2 ** (n - 1 - q), 2, 2**q)[:, :, 1]
    p_one = (one.real**2 + one.imag**2).sum((1, 2))  # ||P_1 psi||^2
    g = g.to(p_one.dtype)
    jump_p = g * p_one
    jump = u < jump_p.detach()
    tiny = torch.finfo(p_one.dtype).tiny
    kept_p = (1 - jump_p).clamp_min(tiny)
    kept = torch.rsqrt(kept_p)
    zero = torch.zeros_like(p_one)
    c00 = torch.where(jump, zero, kept)
    c01 = torch.where(jump, torch.rsqrt(p_one.clamp_min(tiny)), zero)
    c11 = torch.where(jump, zero, torch.sqrt(1 - g) * kept)
    m = torch.stack([c00, c01, zero, c11], -1).reshape(r, 2, 2).to(psi.dtype)
    log_p = torch.where(jump, jump_p.clamp_min(tiny).log(), kept_p.log())
    return ops.apply_local(psi, m, (q,), n, 2), log_p


def _observe(spec: PQCSpec, psi: torch.Tensor) -> torch.Tensor:
    """``<psi_r|P_o|psi_r>``: ``(R, O)``."""
    out = psi.real.new_zeros(psi.shape[0], spec.n_outputs)
    for outs, gather, coeff in ops.observable_groups(spec, str(psi.device)):
        prod = psi.conj() * psi.index_select(-1, gather)
        index = torch.tensor(outs, device=psi.device)
        out = out.index_add(1, index, (prod @ coeff.to(psi.dtype)).real)
    return out


def simulate(
    spec: PQCSpec,
    psi: torch.Tensor,
    weights: torch.Tensor,
    strengths: torch.Tensor,
    uniforms: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Carry encoded states through the ansatz, drawing every channel; differentiable.

    Args:
        spec: the circuit.
        psi: ``(R, 2**n)`` complex encoded states, one per row (trajectory).
        weights: ``(P,)`` shared, or ``(R, P)`` one copy per row (per-row Jacobians).
        strengths: ``(R, layers)`` float64 channel strengths (not differentiated).
        uniforms: ``(R, layers, n)`` float64 draws in ``[0, 1)``.

    Returns:
        ``values (R, O)``, the expectation values of each row's trajectory (autograd gives
        their pathwise gradient, draws held fixed), and ``log_prob (R,)``, the log-probability
        of each row's draws given its inputs and weights: the sum of ``log ||K_k psi||^2``
        over the amplitude-damping draws (autograd gives the score), zeros without a graph
        for the Pauli channels, whose draw probabilities do not depend on the state.
    """
    n = spec.n_qubits
    kind = spec.channel.kind
    cdt = psi.dtype
    strengths = strengths.detach()
    log_prob = psi.real.new_zeros(psi.shape[0])
    for layer_index, layer in enumerate(_layers(spec)):
        for block in layer.blocks:
            m = _block_unitary(block, weights, cdt)
            psi = ops.apply_local(psi, m, block.qubits, n, 2)
        if not layer.channel:
            continue
        s = strengths[:, layer_index]
        u = uniforms[:, layer_index]
        if kind == "amplitude_damping":
            for q in range(n):
                psi, log_p = _damp(psi, q, n, s, u[:, q])
                log_prob = log_prob + log_p
        else:
            psi = _apply_paulis(psi, pauli_codes(kind, u, s[:, None]), n)
    return _observe(spec, psi), log_prob


def _estimate(
    spec: PQCSpec,
    psi: torch.Tensor,
    weights: torch.Tensor,
    strengths: torch.Tensor,
    uniforms: torch.Tensor,
    groups: torch.Tensor,
) -> torch.Tensor:
    """:func:`simulate`, then :func:`with_score`: ``(R, O)`` values with unbiased gradients."""
    values, log_prob = simulate(spec, psi, weights, strengths, uniforms)
    return with_score(values, log_prob, groups)


# ---------------------------------------------------------------------------- entry points


def check_supported(spec: PQCSpec, output: object = "expectation") -> None:
    """Refuse what trajectory sampling does not cover: expectation values of the observables
    of specs without a timestep embedding.

    Raises:
        BackendLimitError: another output, or a spec with a timestep (``noise_sampling``).
    """
    if str(output) != "expectation":
        raise BackendLimitError(
            f"trajectory sampling computes expectation values, not output={output}",
            field="noise_sampling",
        )
    if getattr(spec, "timestep", None) is not None:
        raise BackendLimitError(
            "trajectory sampling does not take specs with a timestep embedding yet",
            field="noise_sampling",
        )


def strength_rows(spec: PQCSpec, levels: np.ndarray | None, b: int) -> np.ndarray:
    """``(K B, layers)``: the strengths of every row (level-major)."""
    if levels is None:
        per_level = np.array([spec.layer_strengths()], dtype=np.float64)
    else:
        per_level = np.array([spec.layer_strengths(float(v)) for v in levels], dtype=np.float64)
    return np.repeat(per_level, b, axis=0)


def sample(
    spec: PQCSpec,
    inputs: torch.Tensor,
    weights: torch.Tensor,
    *,
    noise_levels: torch.Tensor | None,
    rng: np.random.Generator,
) -> torch.Tensor:
    """One drawn trajectory per (noise level, sample), differentiable by autograd.

    Autograd gives :func:`with_score`'s estimator (pathwise plus score term, leave-one-out
    baseline per noise level): unbiased for the density-matrix gradient, amplitude damping
    included.

    Args:
        spec: a noisy spec.
        inputs: ``(B, I)`` float32 or float64 (sets dtype and device).
        weights: ``(P,)``.
        noise_levels: ``(K,)`` strengths, each replacing the spec's in every layer, or
            ``None`` (the spec's per-layer strengths, ``K = 1``). Not differentiated.
        rng: the generator of the draws.

    Returns:
        ``(K, B, O)``: each entry the expectation value of its own trajectory.

    Raises:
        InvalidSpecError: an amplitude-encoded zero vector (``inputs``).
        BackendLimitError: see :func:`check_supported`.
    """
    check_supported(spec)
    b = inputs.shape[0]
    levels = None if noise_levels is None else noise_levels.detach().cpu().double().numpy()
    k = 1 if levels is None else levels.size
    strengths = strength_rows(spec, levels, b)
    uniforms = draw_uniforms(spec, k * b, rng)
    psi0 = ops.statevectors(spec, inputs)
    w = weights.to(dtype=inputs.dtype, device=inputs.device)
    chunk = _chunk_rows(spec)
    parts = []
    for start in range(0, k * b, chunk):
        rows = slice(start, min(k * b, start + chunk))
        index = torch.arange(rows.start, rows.stop, device=inputs.device) % b
        parts.append(
            _estimate(
                spec,
                psi0.index_select(0, index),
                w,
                torch.as_tensor(strengths[rows], dtype=torch.float64, device=inputs.device),
                torch.as_tensor(uniforms[rows], dtype=torch.float64, device=inputs.device),
                torch.arange(rows.start, rows.stop, device=inputs.device) // b,
            )
        )
    return torch.cat(parts).reshape(k, b, spec.n_outputs)


def _chunk_rows(spec: PQCSpec) -> int:
    return max(1, _CHUNK_AMPLITUDES // 2**spec.n_qubits)


def run(work: Workload, *, device: torch.device, dtype: torch.dtype) -> Evaluation:
    """Evaluate a trajectory workload (a noisy :class:`PQCSpec`) with torch.

    Values ``(K, B, O)``: one trajectory per row, draws from
    ``numpy.random.default_rng(work.seed)``; with ``shots`` each value is then the mean of
    ``shots`` Born-rule outcomes of its trajectory (drawn from the same generator).

    Jacobians (task ``jacobian``): ``d_inputs (K, B, O, I)`` and ``d_weights (K, B, O, P)``,
    each row's :func:`with_score` estimator, the same as autograd through :func:`sample` with
    the same draws: the exact derivatives of the drawn trajectory (draws held fixed), plus for
    amplitude damping the score term ``(f - b) grad log p``, so their mean over draws is the
    density-matrix gradient. With shots they are taken of the trajectory's exact value, whose
    shot estimate's mean it is (straight-through): a parameter-shift rule does not hold for a
    renormalised amplitude-damping trajectory, and on the Pauli channels this gradient is what
    shifts of the same realization would estimate, without their shot noise.

    Returns:
        An :class:`Evaluation` of float64 arrays; metadata names the engine, the sampling and
        the seed.

    Raises:
        InvalidSpecError: an amplitude-encoded zero vector (``inputs``).
        BackendLimitError: see :func:`check_supported`.
    """
    start_time = time.perf_counter()
    spec = work.spec
    check_supported(spec, getattr(work, "output", "expectation"))
    if spec.encoding == "amplitude" and np.any(np.linalg.norm(work.inputs, axis=1) == 0.0):
        raise InvalidSpecError("amplitude encoding of a zero vector", field="inputs")
    rng = np.random.default_rng(work.seed)
    b, k = work.inputs.shape[0], work.n_levels
    strengths = strength_rows(spec, work.noise_levels, b)
    uniforms = draw_uniforms(spec, k * b, rng)
    x = torch.as_tensor(work.inputs, dtype=dtype, device=device)
    w = torch.as_tensor(work.weights, dtype=dtype, device=device)
    jacobian = work.task == "jacobian"
    o, i, p = spec.n_outputs, spec.n_inputs, spec.n_weights
    values = np.empty((k * b, o))
    d_in = np.empty((k * b, o, i)) if jacobian else None
    d_w = np.empty((k * b, o, p)) if jacobian else None
    chunk = _chunk_rows(spec)
    for start in range(0, k * b, chunk):
        rows = slice(start, min(k * b, start + chunk))
        xr = x[torch.arange(rows.start, rows.stop, device=device) % b]
        s = torch.as_tensor(strengths[rows], dtype=torch.float64, device=device)
        u = torch.as_tensor(uniforms[rows], dtype=torch.float64, device=device)
        if not jacobian:
            with torch.no_grad():
                values[rows] = _numpy(simulate(spec, ops.statevectors(spec, xr), w, s, u)[0])
            continue
        level = torch.arange(rows.start, rows.stop, device=device) // b
        assert d_in is not None and d_w is not None
        with torch.enable_grad():
            xl = xr.detach().clone().requires_grad_(True)
            wl = w.detach().expand(xl.shape[0], p).clone().requires_grad_(True)
            out = _estimate(spec, ops.statevectors(spec, xl), wl, s, u, level)
            values[rows] = _numpy(out)
            for j in range(o):
                gx, gw = torch.autograd.grad(
                    out[:, j].sum(), (xl, wl), retain_graph=j < o - 1, allow_unused=True
                )
                d_in[rows, j] = 0.0 if gx is None else _numpy(gx)
                d_w[rows, j] = 0.0 if gw is None else _numpy(gw)
    metadata: dict[str, Any] = {
        "engine": "trajectory",
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "noise_sampling": "trajectory",
        "seed": work.seed,
    }
    if work.shots is not None:
        values = pauli_shot_means(values, work.shots, rng)
        metadata.update(
            shots=work.shots,
            shot_noise="values (binomial, per trajectory); Jacobians are the trajectory's exact",
        )
    metadata["seconds"] = time.perf_counter() - start_time
    return Evaluation(
        values.reshape(k, b, o),
        None if d_in is None else d_in.reshape(k, b, o, i),
        None if d_w is None else d_w.reshape(k, b, o, p),
        metadata,
    )


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()
