"""Torch building blocks of the exact engine: gate matrices, Pauli transfer matrices, local
maps, and the encoded pure states.

Two representations of ``n`` qubits are used, both in Qiskit's little-endian order (bit ``q``
of a basis index is qubit ``q``, so qubit ``n - 1`` is the most significant digit):

- state vectors ``psi``: ``(..., 2**n)`` complex;
- Hermitian operators in the Pauli basis: ``A = sum_s a_s P_s`` with real coefficients
  ``a`` of shape ``(..., 4**n)``, ``s = sum_q s_q 4**q`` and ``s_q`` in ``0=I, 1=X, 2=Y, 3=Z``.
  A density matrix is stored as ``r_s = Tr(P_s rho)``, so ``Tr(rho A) = sum_s r_s a_s``.

A channel's Heisenberg map ``A -> Phi^dagger(A)`` acts on Pauli coefficients through its
real Pauli transfer matrix (PTM) ``R[t, s] = Tr(P_t Phi^dagger(P_s)) / 2**k`` on the ``k``
qubits it touches: ``a'_t = sum_s R[t, s] a_s``.

Local ``k``-qubit matrices on qubits ``(q0, q1)`` use the local index ``i0 * base + i1``: the
first listed qubit is the major digit (``kron(M0, M1)``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch

from qldm.circuits.spec import PQCSpec
from qldm.errors import InvalidSpecError

# ---------------------------------------------------------------------------- constants

_PAULI_NP = np.stack(
    [
        np.eye(2, dtype=np.complex128),
        np.array([[0, 1], [1, 0]], dtype=np.complex128),
        np.array([[0, -1j], [1j, 0]], dtype=np.complex128),
        np.array([[1, 0], [0, -1]], dtype=np.complex128),
    ]
)
"""``(4, 2, 2)``: I, X, Y, Z."""


def _pauli_basis_np(k: int) -> np.ndarray:
    """``(4**k, 2**k, 2**k)``: the k-qubit Pauli products, first factor major."""
    basis = _PAULI_NP
    for _ in range(k - 1):
        basis = np.einsum("aij,bkl->abikjl", basis, _PAULI_NP).reshape(
            basis.shape[0] * 4, basis.shape[1] * 2, basis.shape[2] * 2
        )
    return basis


@functools.lru_cache(maxsize=64)
def _constant(name: str, dtype: torch.dtype, device: str) -> torch.Tensor:
    """Small constant tensors, cached per dtype and device."""
    if name == "pauli1":
        arr: np.ndarray = _pauli_basis_np(1)
    elif name == "pauli2":
        arr = _pauli_basis_np(2)
    elif name == "to_matrix":  # (4 pairs (i,j), 4 paulis): M[(i,j), s] = (P_s)_ij
        arr = _PAULI_NP.reshape(4, 4).T.copy()
    elif name == "to_pauli":  # (4 paulis, 4 pairs): M[s, (i,j)] = (P_s)_ji
        arr = _PAULI_NP.transpose(0, 2, 1).reshape(4, 4).copy()
    else:  # pragma: no cover - internal names only
        raise KeyError(name)
    return torch.as_tensor(arr, dtype=dtype, device=device)


def complex_dtype(real: torch.dtype) -> torch.dtype:
    """The complex dtype matching a real one."""
    return torch.complex64 if real == torch.float32 else torch.complex128


# ---------------------------------------------------------------------------- gates

ONE_QUBIT_GATES = frozenset({"h", "rx", "ry", "rz", "p"})
TWO_QUBIT_GATES = frozenset({"cx", "crx", "crz"})


def gate_unitaries(name: str, angles: torch.Tensor) -> torch.Tensor:
    """Batched gate matrices in Qiskit's conventions.

    Args:
        name: ``rx``, ``ry``, ``rz``, ``p`` (``(G, 2, 2)``), ``crx``, ``crz`` (``(G, 4, 4)``,
            control = first qubit = major digit), or a fixed gate ``h``/``cx`` (angles ignored,
            ``G`` copies).
        angles: ``(G,)`` real.

    Returns:
        ``(G, 2**k, 2**k)`` complex, ``k`` the number of qubits of the gate.
    """
    cdt = complex_dtype(angles.dtype)
    g = angles.shape[0]
    c = torch.cos(angles / 2).to(cdt)
    s = torch.sin(angles / 2).to(cdt)
    zero = torch.zeros_like(c)
    one = torch.ones_like(c)
    if name == "rx":
        m = torch.stack([c, -1j * s, -1j * s, c], -1)
    elif name == "ry":
        m = torch.stack([c, -s, s, c], -1)
    elif name == "rz":
        e = torch.exp(-0.5j * angles.to(cdt))
        m = torch.stack([e, zero, zero, e.conj()], -1)
    elif name == "p":
        m = torch.stack([one, zero, zero, torch.exp(1j * angles.to(cdt))], -1)
    elif name == "h":
        r = 1 / math.sqrt(2)
        m = torch.stack([one * r, one * r, one * r, -one * r], -1)
    elif name in ("crx", "crz", "cx"):
        if name == "cx":
            inner = torch.stack([zero, one, one, zero], -1).reshape(g, 2, 2)
        else:
            inner = gate_unitaries(name[1:], angles)
        eye = torch.stack([one, zero, zero, one], -1).reshape(g, 2, 2)
        zeros = torch.zeros_like(eye)
        top = torch.cat([eye, zeros], -1)
        bottom = torch.cat([zeros, inner], -1)
        return torch.cat([top, bottom], -2)
    else:
        raise KeyError(f"no matrix for gate {name!r}")
    return m.reshape(g, 2, 2)


def generator(name: str, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """``H`` with ``G(t) = exp(-i t H)`` (up to a global phase) for a parametric gate.

    ``p(t) = diag(1, e^{it}) = exp(-i t (-|1><1|))``.
    """
    cdt = complex_dtype(dtype)
    one = torch.tensor([[0, 0], [0, 1]], dtype=cdt, device=device)
    paulis = _constant("pauli1", cdt, str(device))
    if name in ("rx", "ry", "rz"):
        return paulis["xyz".index(name[1]) + 1] / 2
    if name == "p":
        return -one
    if name in ("crx", "crz"):
        return torch.kron(one, paulis["xyz".index(name[2]) + 1] / 2)
    raise KeyError(f"gate {name!r} has no parameter")


def unitary_ptm(u: torch.Tensor) -> torch.Tensor:
    """Heisenberg PTM of conjugation by ``u``: ``R[t, s] = Re Tr(P_t u^dag P_s u) / 2**k``.

    Args:
        u: ``(G, 2**k, 2**k)`` complex, ``k`` in {1, 2}.

    Returns:
        ``(G, 4**k, 4**k)`` real.
    """
    k = 1 if u.shape[-1] == 2 else 2
    paulis = _constant(f"pauli{k}", u.dtype, str(u.device))
    conj = torch.einsum("gji,sjk,gkl->gsil", u.conj(), paulis, u)  # u^dag P_s u
    r = torch.einsum("tli,gsil->gts", paulis, conj)  # Tr(P_t X) = sum P_t[l,i] X[i,l]
    return r.real / 2**k


def commutator_ptm(h: torch.Tensor) -> torch.Tensor:
    """PTM of ``A -> i [h, A]`` (derivative of the Heisenberg map of ``exp(-i t h)``).

    Args:
        h: ``(2**k, 2**k)`` Hermitian.

    Returns:
        ``(4**k, 4**k)`` real.
    """
    k = 1 if h.shape[-1] == 2 else 2
    paulis = _constant(f"pauli{k}", h.dtype, str(h.device))
    comm = 1j * (h @ paulis - paulis @ h)  # (S, d, d)
    return torch.einsum("tij,sji->ts", paulis, comm).real / 2**k


def channel_ptm(kind: str, strength: torch.Tensor) -> torch.Tensor:
    """Heisenberg PTM of a single-qubit channel (Kraus forms of :class:`ChannelSpec`).

    - amplitude damping ``g``: ``I -> I``, ``X, Y -> sqrt(1-g) X, Y``, ``Z -> g I + (1-g) Z``;
    - bit flip ``p``: ``diag(1, 1, 1-2p, 1-2p)``;
    - phase flip ``p``: ``diag(1, 1-2p, 1-2p, 1)``;
    - depolarizing ``p`` (``(1-p) rho + p I/2 Tr rho``): ``diag(1, 1-p, 1-p, 1-p)``.

    Args:
        kind: the channel kind.
        strength: ``(K,)`` strengths.

    Returns:
        ``(K, 4, 4)``.
    """
    one = torch.ones_like(strength)
    zero = torch.zeros_like(strength)
    if kind == "amplitude_damping":
        root = torch.sqrt(torch.clamp(1 - strength, min=0.0))
        rows = [
            [one, zero, zero, strength],
            [zero, root, zero, zero],
            [zero, zero, root, zero],
            [zero, zero, zero, 1 - strength],
        ]
    else:
        if kind == "bit_flip":
            diag = [one, one, 1 - 2 * strength, 1 - 2 * strength]
        elif kind == "phase_flip":
            diag = [one, 1 - 2 * strength, 1 - 2 * strength, one]
        elif kind == "depolarizing":
            diag = [one, 1 - strength, 1 - strength, 1 - strength]
        else:
            raise KeyError(f"unknown channel {kind!r}")
        rows = [[diag[i] if i == j else zero for j in range(4)] for i in range(4)]
    return torch.stack([torch.stack(row, -1) for row in rows], -2)


@functools.lru_cache(maxsize=256)
def signed_permutation(
    n: int, gates: tuple[tuple[str, tuple[int, ...]], ...]
) -> tuple[np.ndarray, np.ndarray]:
    """The Heisenberg map of a sequence of Clifford gates as a signed permutation.

    ``a'[t] = sign[t] * a[index[t]]`` for the Pauli coefficients of ``G^dag A G`` where
    ``G`` applies ``gates`` in order (forward time).

    Returns:
        ``(index, sign)``, both ``(4**n,)``.
    """
    size = 4**n
    index = np.arange(size)
    sign = np.ones(size)
    for name, qubits in reversed(gates):  # Heisenberg order: last gate first
        local = unitary_ptm(gate_unitaries(name, torch.zeros(1, dtype=torch.float64)))[0].numpy()
        k = len(qubits)
        src = np.abs(local).argmax(axis=1)  # a'_t = R[t, src[t]] a_src[t]
        sgn = local[np.arange(4**k), src]
        if not np.allclose(np.abs(sgn), 1.0):  # pragma: no cover - only Clifford gates here
            raise ValueError(f"{name} is not a signed permutation of Paulis")
        digits = [(np.arange(size) // 4**q) % 4 for q in qubits]
        loc = digits[0] if k == 1 else 4 * digits[0] + digits[1]
        new_loc = src[loc]
        other = np.arange(size) - sum(d * 4**q for d, q in zip(digits, qubits, strict=True))
        new_digits = [new_loc] if k == 1 else [new_loc // 4, new_loc % 4]
        gather = other + sum(d * 4**q for d, q in zip(new_digits, qubits, strict=True))
        # compose: a_new = sgn * a_prev[gather], a_prev = sign * a[index]
        index, sign = index[gather], sgn[loc] * sign[gather]
    return index, sign


# ---------------------------------------------------------------------------- local maps


def apply_local(
    x: torch.Tensor, m: torch.Tensor, qubits: Sequence[int], n: int, base: int
) -> torch.Tensor:
    """Apply a local matrix on ``qubits`` to the last axis of ``x``.

    Args:
        x: ``(*lead, base**n)``.
        m: ``(*lead_m, base**k, base**k)`` with ``lead_m`` broadcastable to ``lead``.
        qubits: the ``k`` qubits, first = major local digit.
        n: number of qubits.
        base: 2 for state vectors, 4 for Pauli coefficients.

    Returns:
        ``(*lead, base**n)``: ``x'[.., t] = sum_s m[.., t, s] x[.., s]`` on those digits.
    """
    lead = x.shape[:-1]
    k = len(qubits)
    if k == 1:
        q = qubits[0]
        xv = x.reshape(*lead, base ** (n - 1 - q), base, base**q)
        if q == 0:
            out = xv.squeeze(-1) @ m.transpose(-1, -2)
            return out.reshape(*out.shape[:-2], base**n)
        out = torch.einsum("...ts,...asc->...atc", m, xv)
        return out.reshape(*out.shape[:-3], base**n)
    axes = [len(lead) + n - 1 - q for q in qubits]
    xt = x.reshape(*lead, *([base] * n))
    xt = torch.movedim(xt, axes, list(range(-k, 0)))
    moved_shape = xt.shape
    flat = xt.reshape(*lead, base ** (n - k), base**k)
    out = flat @ m.transpose(-1, -2)
    out_lead = out.shape[:-2]
    out = out.reshape(*out_lead, *moved_shape[len(lead) :])
    return torch.movedim(out, list(range(-k, 0)), axes).reshape(*out_lead, base**n)


def apply_product(x: torch.Tensor, maps: Sequence[torch.Tensor | None], n: int) -> torch.Tensor:
    """Apply one 4x4 map per qubit (``None`` = identity) to Pauli coefficients.

    The cyclic scheme: each step contracts the last digit through a batched GEMM that reads it
    transposed and writes it as the first digit, so after ``n`` steps the layout is back to the
    original with no separate permutation copies; runs of identity maps are one rotation copy.

    Args:
        x: ``(*lead, 4**n)``.
        maps: ``n`` entries, entry ``q`` a ``(*lead_m, 4, 4)`` map (broadcastable) or ``None``.
        n: number of qubits.

    Returns:
        ``(*lead, 4**n)``.
    """
    size = 4**n
    q = 0
    while q < n:
        lead = x.shape[:-1]
        m = maps[q]
        if m is None:
            run = 1
            while q + run < n and maps[q + run] is None:
                run += 1
            if run < n:
                x = x.reshape(*lead, 4 ** (n - run), 4**run).transpose(-1, -2).reshape(*lead, size)
            q += run
            continue
        xt = x.reshape(*lead, 4 ** (n - 1), 4).transpose(-1, -2)  # (*lead, 4, 4**(n-1))
        out = torch.matmul(m, xt)
        x = out.reshape(*out.shape[:-2], size)
        q += 1
    return x


# ---------------------------------------------------------------------------- conversions


def _pair_transform(x: torch.Tensor, m: torch.Tensor, n: int) -> torch.Tensor:
    """Apply the same 4x4 ``m`` to every base-4 digit of ``x`` (``(*lead, 4**n)``)."""
    return apply_product(x, [m] * n, n)


def pauli_to_matrix(a: torch.Tensor, n: int) -> torch.Tensor:
    """``A = sum_s a_s P_s`` as a matrix.

    Args:
        a: ``(*lead, 4**n)`` real.

    Returns:
        ``(*lead, 2**n, 2**n)`` complex.
    """
    lead = a.shape[:-1]
    cdt = complex_dtype(a.dtype)
    pairs = _pair_transform(a.to(cdt), _constant("to_matrix", cdt, str(a.device)), n)
    # digits (i_{n-1} j_{n-1}) ... (i_0 j_0) -> rows i_{n-1}..i_0, cols j_{n-1}..j_0
    t = pairs.reshape(*lead, *([2] * (2 * n)))
    nl = len(lead)
    order = list(range(nl)) + [nl + 2 * j for j in range(n)] + [nl + 2 * j + 1 for j in range(n)]
    return t.permute(order).reshape(*lead, 2**n, 2**n)


def state_to_pauli(psi: torch.Tensor, n: int) -> torch.Tensor:
    """``r_s = <psi| P_s |psi>`` for pure states.

    Args:
        psi: ``(*lead, 2**n)`` real or complex.

    Returns:
        ``(*lead, 4**n)`` real.
    """
    lead = psi.shape[:-1]
    cdt = complex_dtype(psi.real.dtype if psi.is_complex() else psi.dtype)
    psi = psi.to(cdt)
    rho = psi[..., :, None] * psi.conj()[..., None, :]
    t = rho.reshape(*lead, *([2] * (2 * n)))
    nl = len(lead)
    order = list(range(nl))
    for j in range(n):
        order += [nl + j, nl + n + j]
    pairs = t.permute(order).reshape(*lead, 4**n)
    return _pair_transform(pairs, _constant("to_pauli", cdt, str(psi.device)), n).real


# ---------------------------------------------------------------------------- rows-last layout


def apply_local_last(
    x: torch.Tensor, m: torch.Tensor, qubits: Sequence[int], n: int
) -> torch.Tensor:
    """Apply a local map to Pauli coefficients stored rows-last.

    Args:
        x: ``(*lead, 4**n, M)``: ``M`` operators, coefficient index first (so that contracting
            a digit is a plain batched GEMM and a permutation of Pauli strings copies whole
            rows); ``lead`` is ``(K,)`` or, for one qubit or two neighbouring ones, any shape.
        m: ``(*lead_m, 4**k, 4**k)``, ``lead_m`` broadcastable to ``lead``.
        qubits: ``k`` qubits, first = major local digit.
        n: number of qubits.

    Returns:
        ``(*lead', 4**n, M)`` with ``lead'`` the broadcast of both leading shapes.
    """
    lead, rows = x.shape[:-2], x.shape[-1]
    if len(qubits) == 1 or qubits[0] == qubits[1] + 1:
        # one digit, or two neighbouring digits major first: batched GEMMs over the digits above
        q, d = qubits[-1], 4 ** len(qubits)
        xv = x.reshape(*lead, 4**n // (d * 4**q), d, 4**q * rows)
        out = torch.matmul(m.unsqueeze(-3), xv)
        return out.reshape(*out.shape[:-3], 4**n, rows)
    k_lead = x.shape[0]
    axes = [1 + n - 1 - q for q in qubits]
    xt = torch.movedim(x.reshape(k_lead, *([4] * n), rows), axes, [1, 2])
    moved = xt.shape
    out = torch.matmul(m, xt.reshape(k_lead, 16, -1))
    out = out.reshape(out.shape[0], *moved[1:])
    return torch.movedim(out, [1, 2], axes).reshape(out.shape[0], 4**n, rows)


def apply_projected_product(
    x: torch.Tensor, maps: Sequence[torch.Tensor], n: int, rows: int
) -> torch.Tensor:
    """Apply one map per qubit, keeping only some output Pauli components of each qubit.

    Used for the last Heisenberg stage, whose result is only ever contracted with encoded
    states that have no weight on the dropped components (a ``3**n`` instead of ``4**n``
    support for the one-axis angle encodings), so the stage and the final gather fuse.

    Args:
        x: ``(K, 4**n * rows)`` flattened rows-last operators (``rows`` operators).
        maps: entry ``q`` a ``(K|1, s_q, 4)`` map (the rows of a 4x4 map that are kept).
        n: number of qubits.
        rows: number of operators ``M``.

    Returns:
        ``(K', prod(s_q), M)``, qubit ``n-1`` the most significant digit.
    """
    done = rows  # product of the reduced digit sizes of qubits < q, times M
    for q in range(n):
        m = maps[q]
        xv = x.reshape(x.shape[0], 4 ** (n - 1 - q), 4, done)
        x = torch.matmul(m[:, None], xv)
        done *= m.shape[-2]
    return x.reshape(x.shape[0], -1, rows)


BLOCH_SUPPORT = {
    "angle_ry": (0, 1, 3),
    "angle_rx": (0, 2, 3),
    "basis": (0, 2, 3),
    "phase": (0, 1, 2),
    "dense_angle": (0, 1, 2, 3),
}
"""Pauli components (0=I, 1=X, 2=Y, 3=Z) a one-qubit encoded state can have."""


# ------------------------------------------------------------------- encodings (pure states)


def qubit_states(spec: PQCSpec, x: torch.Tensor) -> torch.Tensor:
    """Per-qubit encoded states ``(B, n, 2)`` complex for the product encodings."""
    n = spec.n_qubits
    cdt = complex_dtype(x.dtype)
    if spec.encoding == "dense_angle":
        a, b = x[:, 0::2], x[:, 1::2]
        ph = torch.exp(-0.5j * b.to(cdt))
        return torch.stack([torch.cos(a / 2) * ph, torch.sin(a / 2) * ph.conj()], -1)
    if spec.encoding == "phase":
        r = 1 / math.sqrt(2)
        return torch.stack([torch.full_like(x, r).to(cdt), r * torch.exp(1j * x.to(cdt))], -1)
    angle = math.pi * x if spec.encoding == "basis" else x
    c, s = torch.cos(angle[:, :n] / 2).to(cdt), torch.sin(angle[:, :n] / 2).to(cdt)
    if spec.encoding == "angle_ry":
        return torch.stack([c, s], -1)
    return torch.stack([c, -1j * s], -1)  # angle_rx, basis: RX


def qubit_state_derivatives(spec: PQCSpec, x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """``d phi_q / d x_i`` for every input ``i``: ``(B, I, 2)`` and the qubit of each input."""
    n = spec.n_qubits
    cdt = complex_dtype(x.dtype)
    if spec.encoding == "dense_angle":
        a, b = x[:, 0::2], x[:, 1::2]
        ph = torch.exp(-0.5j * b.to(cdt))
        ca, sa = torch.cos(a / 2), torch.sin(a / 2)
        d_a = torch.stack([-0.5 * sa * ph, 0.5 * ca * ph.conj()], -1)
        d_b = torch.stack([-0.5j * ca * ph, 0.5j * sa * ph.conj()], -1)
        return torch.stack([d_a, d_b], 2).reshape(x.shape[0], 2 * n, 2), [
            i // 2 for i in range(2 * n)
        ]
    if spec.encoding == "phase":
        e = torch.exp(1j * x.to(cdt)) / math.sqrt(2)
        return torch.stack([torch.zeros_like(e), 1j * e], -1), list(range(n))
    scale = math.pi if spec.encoding == "basis" else 1.0
    angle = scale * x
    c, s = torch.cos(angle / 2).to(cdt), torch.sin(angle / 2).to(cdt)
    if spec.encoding == "angle_ry":
        return torch.stack([-0.5 * s, 0.5 * c], -1), list(range(n))
    return torch.stack([-0.5 * scale * s, -0.5j * scale * c], -1), list(range(n))


def kron_states(phi: torch.Tensor) -> torch.Tensor:
    """``(..., n, 2)`` per-qubit states -> ``(..., 2**n)``, qubit ``n-1`` most significant."""
    psi = phi[..., 0, :]
    for q in range(1, phi.shape[-2]):
        psi = (phi[..., q, :, None] * psi[..., None, :]).reshape(*phi.shape[:-2], -1)
    return psi


def bloch(spec: PQCSpec, x: torch.Tensor) -> torch.Tensor:
    """Per-qubit ``(<I>, <X>, <Y>, <Z>)`` of the encoded product state, ``(B, n, 4)`` real."""
    one = torch.ones_like(x[:, : spec.n_qubits])
    zero = torch.zeros_like(one)
    if spec.encoding == "dense_angle":
        a, b = x[:, 0::2], x[:, 1::2]
        return torch.stack(
            [one, torch.sin(a) * torch.cos(b), torch.sin(a) * torch.sin(b), torch.cos(a)], -1
        )
    if spec.encoding == "phase":
        return torch.stack([one, torch.cos(x), torch.sin(x), zero], -1)
    if spec.encoding == "angle_ry":
        return torch.stack([one, torch.sin(x), zero, torch.cos(x)], -1)
    angle = math.pi * x if spec.encoding == "basis" else x
    return torch.stack([one, zero, -torch.sin(angle), torch.cos(angle)], -1)


def statevectors(spec: PQCSpec, x: torch.Tensor) -> torch.Tensor:
    """Encoded states ``(B, 2**n)`` complex, Qiskit order (qubit ``n-1`` most significant).

    Raises:
        InvalidSpecError: ``amplitude`` encoding of a zero vector (field ``inputs``).
    """
    if spec.encoding == "amplitude":
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        if bool((norm == 0).any()):
            raise InvalidSpecError("amplitude encoding of a zero vector", field="inputs")
        return (x / norm).to(complex_dtype(x.dtype))
    return kron_states(qubit_states(spec, x))


def pauli_states(spec: PQCSpec, x: torch.Tensor, support: torch.Tensor | None) -> torch.Tensor:
    """``r[b, s] = <psi_b|P_s|psi_b>`` restricted to ``support`` (``(B, S)``; all ``4**n``
    strings when ``support`` is ``None``)."""
    n = spec.n_qubits
    if spec.encoding == "amplitude":
        psi = statevectors(spec, x)
        chunk = max(1, (1 << 22) // 4**n)
        return torch.cat([state_to_pauli(p, n) for p in psi.split(chunk)])
    beta = bloch(spec, x)[:, :, list(BLOCH_SUPPORT[spec.encoding])]
    r = beta[:, 0]
    for q in range(1, n):
        r = (beta[:, q, :, None] * r[:, None, :]).reshape(x.shape[0], -1)
    return r


@functools.lru_cache(maxsize=128)
def observable_groups(
    spec: PQCSpec, device: str
) -> list[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """Observables grouped by X/Y flip mask: ``(output indices, gather (d,), phases (d, O_m))``
    with ``<psi|P|psi> = Re sum_i conj(psi_i) c_i psi[i ^ m]``."""
    n = spec.n_qubits
    d = 2**n
    basis = np.arange(d)
    groups: dict[int, tuple[list[int], list[np.ndarray]]] = {}
    for o, label in enumerate(spec.pauli_labels()):
        mask = 0
        coeff = np.ones(d, dtype=np.complex128)
        for q, c in enumerate(reversed(label)):
            bit = (basis >> q) & 1  # bit of i; P acts on j = i ^ mask
            if c in "XY":
                mask |= 1 << q
            jbit = bit ^ (1 if c in "XY" else 0)
            if c == "Z":
                coeff *= 1 - 2 * jbit
            elif c == "Y":  # Y|0> = i|1>, Y|1> = -i|0>
                coeff *= 1j * (1 - 2 * jbit)
        entry = groups.setdefault(mask, ([], []))
        entry[0].append(o)
        entry[1].append(coeff)
    return [
        (
            outs,
            torch.as_tensor(basis ^ m, device=device),
            torch.as_tensor(np.stack(cs, 1), device=device),
        )
        for m, (outs, cs) in groups.items()
    ]
