"""The state-level torch engine: final states, probabilities, fidelities and the metric tensor.

Used by the ``exact`` backend and by :class:`qldm.client.QuantumLayer` in the autograd graph
for what the Heisenberg and statevector evaluators of :mod:`qldm.backends.exact` do not give:
the ``probabilities`` and ``fidelity`` outputs, the ``metric_tensor`` task, specs with a
``timestep`` embedding (every sample has its own ansatz angles) and the
``complex_amplitude`` encoding (:mod:`qldm.backends.outputs`).

The simulation is direct and differentiable end to end:

- the encoded states ``psi_b`` ``(B, 2**n)`` (product encodings as Kronecker products,
  ``amplitude``/``complex_amplitude`` as the normalised vector, ``z = x[:d] + i x[d:]``);
- every sample's ansatz angles ``theta_b = w + tau_b V`` (:mod:`qldm.circuits.timestep`);
- gates applied with per-sample matrices ``(B, 2**k, 2**k)``; noiseless specs as state
  vectors, noisy ones as density matrices ``(K, B, d, d)`` with the channel's Kraus operators
  after each layer (one per noise level);
- outputs: ``<P>`` by Pauli flip masks, ``p_j = |psi_j|^2`` (``rho_jj``), ``|<phi|psi>|^2``.

Jacobians for the backend (task ``jacobian``) are forward-mode (``torch.func.jacfwd`` over
one sample's inputs and the weights, ``vmap`` over samples). The metric tensor is
``g = Re(J^dag J) - Re(J^dag psi psi^dag J)`` with ``J = d psi / d theta`` ``(d, P_a)`` per
sample (forward mode), masked to the layers of :mod:`qldm.circuits.metric` for the block
diagonal, and pulled back to the weights with ``d theta / d weights = [I, tau_1 I, ...]``.
"""

from __future__ import annotations

from typing import Any

import torch

from qldm.backends import _torch_ops as ops
from qldm.backends.outputs import Output
from qldm.circuits import PQCSpec, compile_spec
from qldm.circuits.metric import block_mask
from qldm.circuits.program import Channel, Gate
from qldm.errors import InvalidSpecError

__all__ = [
    "angles",
    "check_states_finite",
    "encoded_states",
    "final_densities",
    "final_states",
    "metric_tensor",
    "state_jacobians",
    "state_values",
]


def encoded_states(spec: PQCSpec, data: torch.Tensor) -> torch.Tensor:
    """``(B, 2**n)`` complex encoded states from the data inputs ``(B, I - m)`` (no checks:
    callers validate zero vectors first)."""
    cdt = ops.complex_dtype(data.dtype)
    if spec.encoding == "complex_amplitude":
        d = 2**spec.n_qubits
        z = torch.complex(data[..., :d], data[..., d:]).to(cdt)
        return z / torch.linalg.vector_norm(z, dim=-1, keepdim=True)
    if spec.encoding == "amplitude":
        return (data / torch.linalg.vector_norm(data, dim=-1, keepdim=True)).to(cdt)
    return ops.kron_states(ops.qubit_states(spec, data))


def angles(spec: PQCSpec, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Data inputs ``(B, I - m)`` and ansatz angles ``(B, P_a)`` (``(1, P_a)`` without a
    timestep): ``theta = w[:P_a] + tau @ V`` with ``V = w[P_a:].reshape(m, P_a)``."""
    pa, m = spec.n_ansatz_weights, spec.timestep_features
    data = x[..., : spec.n_data_inputs]
    if not m:
        return data, w[None, :pa]
    tau = x[..., spec.n_data_inputs :]
    return data, w[None, :pa] + tau @ w[pa:].reshape(m, pa)


def _gate(op: Gate, theta: torch.Tensor) -> torch.Tensor:
    """``(B|1, 2**k, 2**k)`` matrices of ``op`` at each sample's angle."""
    if op.param is None:
        return ops.gate_unitaries(op.name, theta.new_zeros(1))
    return ops.gate_unitaries(op.name, theta[:, op.param.index] * op.param.scale)


def _kraus(kind: str, s: torch.Tensor) -> list[torch.Tensor]:
    """Kraus operators ``(K, 2, 2)`` of the channel at strengths ``s (K,)`` (differentiable)."""
    cdt = ops.complex_dtype(s.dtype)
    z, one = torch.zeros_like(s), torch.ones_like(s)

    def mat(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return torch.stack([a, b, c, d], -1).reshape(-1, 2, 2).to(cdt)

    if kind == "amplitude_damping":
        return [mat(one, z, z, torch.sqrt(1 - s)), mat(z, torch.sqrt(s), z, z)]
    keep, flip = torch.sqrt(1 - s), torch.sqrt(s)
    if kind == "bit_flip":
        return [mat(keep, z, z, keep), mat(z, flip, flip, z)]
    if kind == "phase_flip":
        return [mat(keep, z, z, keep), mat(flip, z, z, -flip)]
    if kind == "depolarizing":  # (1-s) rho + s I/2 = (1 - 3s/4) rho + s/4 (X.X + Y.Y + Z.Z)
        a, b = torch.sqrt(1 - 3 * s / 4), torch.sqrt(s / 4)
        y = torch.stack([z, -b, b, z], -1).reshape(-1, 2, 2).to(cdt) * 1j
        return [mat(a, z, z, a), mat(z, b, b, z), y, mat(b, z, z, -b)]
    raise ValueError(f"no Kraus operators for {kind!r}")  # pragma: no cover


def final_states(spec: PQCSpec, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``U(theta_b)|psi(x_b)>``, ``(B, 2**n)``, for a noiseless spec."""
    data, theta = angles(spec, x, w)
    psi = encoded_states(spec, data)
    n = spec.n_qubits
    for op in compile_spec(spec).ansatz:
        if isinstance(op, Gate):
            psi = ops.apply_local(psi, _gate(op, theta), op.qubits, n, 2)
    return psi


def final_densities(
    spec: PQCSpec, x: torch.Tensor, w: torch.Tensor, strengths: torch.Tensor
) -> torch.Tensor:
    """``(K, B, d, d)`` density matrices after the noisy ansatz, ``strengths (K, layers)``."""
    data, theta = angles(spec, x, w)
    psi = encoded_states(spec, data)
    n, k = spec.n_qubits, strengths.shape[0]
    rho = (psi[:, :, None] * psi.conj()[:, None, :])[None].expand(k, -1, -1, -1)

    def conjugate(rho: torch.Tensor, m: torch.Tensor, qubits: tuple[int, ...]) -> torch.Tensor:
        # m: (K|1, B|1, 2^q, 2^q); rho -> m rho m^dagger
        mm = m[:, :, None]
        half = ops.apply_local(rho, mm.conj(), qubits, n, 2)  # rho m^dagger
        return ops.apply_local(half.transpose(-1, -2), mm, qubits, n, 2).transpose(-1, -2)

    for op in compile_spec(spec).ansatz:
        if isinstance(op, Gate):
            rho = conjugate(rho, _gate(op, theta)[None], op.qubits)
        elif isinstance(op, Channel):
            kraus = _kraus(spec.channel.kind, strengths[:, op.layer])
            rho = sum(conjugate(rho, kk[:, None], (op.qubit,)) for kk in kraus)  # type: ignore[assignment]
    return rho


def _pauli_values(spec: PQCSpec, psi: torch.Tensor | None, rho: torch.Tensor | None) -> Any:
    """``<P_o>`` for every observable: ``(B, O)`` from states, ``(K, B, O)`` from densities."""
    src = psi if psi is not None else rho
    assert src is not None
    lead = src.shape[:-1] if psi is not None else src.shape[:-2]
    out = src.real.new_zeros(*lead, spec.n_outputs)
    d = 2**spec.n_qubits
    ar = torch.arange(d, device=src.device)
    for outs, gather, coeff in ops.observable_groups(spec.without_timestep(), str(src.device)):
        c = coeff.to(src.dtype)
        if psi is not None:
            prod = psi.conj() * psi.index_select(-1, gather)
        else:
            assert rho is not None
            prod = rho[..., gather, ar]  # rho[i ^ m, i]
        out = out.index_add(-1, torch.tensor(outs, device=src.device), (prod @ c).real)
    return out


def state_values(
    spec: PQCSpec,
    x: torch.Tensor,
    w: torch.Tensor,
    *,
    output: Output | str = Output.EXPECTATION,
    targets: torch.Tensor | None = None,
    strengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Differentiable values ``(K, B, W)``.

    Args:
        spec: the circuit.
        x: ``(B, I)`` real (data inputs, then timestep features).
        w: ``(P,)``, same dtype.
        output: ``expectation`` (``W = O``), ``probabilities`` (``2**n``), ``fidelity`` (1).
        targets: ``(B, 2**n)`` complex normalised target states (``fidelity``).
        strengths: ``(K, layers)`` channel strengths (noisy specs; ``K = 1`` otherwise).

    Raises:
        InvalidSpecError: ``fidelity`` of a noisy spec (field ``output``).
    """
    chosen = Output(output)
    if not spec.noisy:
        psi = final_states(spec, x, w)
        if chosen is Output.PROBABILITIES:
            return (psi.real**2 + psi.imag**2)[None]
        if chosen is Output.FIDELITY:
            if targets is None:
                raise InvalidSpecError("output=fidelity needs targets", field="targets")
            overlap = (targets.conj() * psi).sum(-1)
            return (overlap.real**2 + overlap.imag**2)[None, :, None]
        return _pauli_values(spec, psi, None)[None]
    if strengths is None:
        strengths = torch.tensor([spec.layer_strengths()], dtype=x.dtype, device=x.device)
    if chosen is Output.FIDELITY:
        raise InvalidSpecError(
            "the exact engine computes the fidelity of noiseless circuits", field="output"
        )
    rho = final_densities(spec, x, w, strengths)
    if chosen is Output.PROBABILITIES:
        return torch.diagonal(rho, dim1=-2, dim2=-1).real
    return _pauli_values(spec, None, rho)


def state_jacobians(
    spec: PQCSpec,
    x: torch.Tensor,
    w: torch.Tensor,
    *,
    output: Output | str,
    targets: torch.Tensor | None,
    strengths: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Values ``(K, B, W)`` and Jacobians ``(K, B, W, I)``, ``(K, B, W, P)`` (forward mode,
    vectorised over samples)."""

    def one(xb: torch.Tensor, wv: torch.Tensor, tb: torch.Tensor | None) -> torch.Tensor:
        t = None if tb is None else torch.view_as_complex(tb)[None]
        return state_values(spec, xb[None], wv, output=output, targets=t, strengths=strengths)[:, 0]

    jac = torch.func.jacfwd(one, argnums=(0, 1))
    in_dims = (0, None, None if targets is None else 0)
    real_targets = None if targets is None else torch.view_as_real(targets)
    # (B, K, W, I) and (B, K, W, P)
    d_x, d_w = torch.func.vmap(jac, in_dims=in_dims)(x, w, real_targets)
    values = state_values(spec, x, w, output=output, targets=targets, strengths=strengths)
    return values, d_x.transpose(0, 1), d_w.transpose(0, 1)


def metric_tensor(
    spec: PQCSpec, x: torch.Tensor, w: torch.Tensor, *, block_diagonal: bool = False
) -> torch.Tensor:
    """The Fubini-Study metric of the weights per sample, ``(B, P, P)`` (no autograd graph).

    ``g_ij = Re<d_i psi|d_j psi> - Re(<d_i psi|psi><psi|d_j psi>)`` of
    ``|psi> = U(theta(w, tau))|psi(x)>``; with ``block_diagonal`` the metric of the ansatz
    angles keeps only the blocks of :func:`qldm.circuits.metric.block_mask` before the pull
    back to the weights.

    Raises:
        InvalidSpecError: a noisy spec (field ``circuit.channel``).
    """
    if spec.noisy:
        raise InvalidSpecError(
            "the Fubini-Study metric is defined for noiseless circuits (pure states)",
            field="circuit.channel",
        )
    base = spec.without_timestep()
    pa, m = spec.n_ansatz_weights, spec.timestep_features
    with torch.no_grad():
        data, theta = angles(spec, x, w)
        theta = theta.expand(x.shape[0], pa)

        def state(db: torch.Tensor, tb: torch.Tensor) -> torch.Tensor:
            return torch.view_as_real(final_states(base, db[None], tb)[0])

        jac = torch.func.vmap(torch.func.jacfwd(state, argnums=1))(data, theta)  # (B, d, 2, Pa)
        psi = torch.func.vmap(state)(data, theta)  # (B, d, 2)
        j = torch.complex(jac[:, :, 0], jac[:, :, 1])  # (B, d, Pa)
        s = torch.complex(psi[..., 0], psi[..., 1])  # (B, d)
        overlap = torch.einsum("bdp,bd->bp", j.conj(), s)  # <d_i psi|psi>
        g = torch.einsum("bdi,bdj->bij", j.conj(), j).real
        g = g - (overlap[:, :, None] * overlap.conj()[:, None, :]).real
        if block_diagonal:
            g = g * torch.as_tensor(block_mask(base), dtype=g.dtype, device=g.device)
        if not m:
            return g
        tau = x[:, spec.n_data_inputs :]  # (B, m)
        eye = torch.eye(pa, dtype=g.dtype, device=g.device)
        factors = torch.cat([torch.ones_like(tau[:, :1]), tau], dim=1)  # (B, 1 + m)
        pull = (factors[:, :, None, None] * eye).permute(0, 2, 1, 3).reshape(-1, pa, pa * (1 + m))
        return pull.transpose(1, 2) @ g @ pull


def check_states_finite(spec: PQCSpec, x: torch.Tensor) -> None:
    """Raise :class:`InvalidSpecError` (field ``inputs``) for a zero amplitude vector."""
    if spec.encoding in ("amplitude", "complex_amplitude"):
        norm = torch.linalg.vector_norm(x[..., : spec.n_data_inputs], dim=-1)
        if bool((norm == 0).any()):
            raise InvalidSpecError("amplitude encoding of a zero vector", field="inputs")
