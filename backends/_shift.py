"""Parameter-shift gradients as one batch: preprocess (every parameter set), run once, combine.

Any backend that evaluates expectation values of bound circuits (Aer, IBM Runtime) gets values
and both Jacobians from the same plan:

1. :func:`plan_shifts` lays out every parameter set the task needs, grouped by circuit
   (:class:`CircuitGroup`): the forward value and every shift term of every sample.
2. The backend evaluates each group's parameter sets, ``(S_g, O)`` values per group, once per
   noise level (the noise strength is baked into the circuit, the plan does not depend on it).
3. :meth:`ShiftPlan.combine` turns one level's values back into ``values (B, O)``,
   ``d_inputs (B, O, I)`` and ``d_weights (B, O, P)``; :func:`combine_levels` does it for all
   K levels at once (``(K, B, O)``, ...).

Sketch of a backend::

    plan = plan_shifts(spec, x, w, jacobian=True)
    pubs = [(circuit_for(group, level), observables, group.parameter_sets)  # bound by
            for level in levels for group in plan.groups]                    # parameter_order()
    values, d_inputs, d_weights = combine_levels(plan, [r.data.evs for r in run(pubs)], K)

Angle-type encodings (``angle_ry``, ``angle_rx``, ``dense_angle``, ``phase``, ``basis``): there
is one circuit, and its parameters are ``[x_0..x_{I-1}, w_0..w_{P-1}]``
(:meth:`qldm.circuits.qiskit_builder.QiskitCircuit.parameter_order`). For sample ``b`` the rows are
``[x_b, w]`` followed by one row per shift term: every input and every weight drives exactly
one gate (:mod:`qldm.circuits.program`), whose rule (:func:`qldm.circuits.shifts.shift_rule`) gives
``df/dt = sum_j c_j f(t + s_j)``. A :class:`qldm.circuits.program.Param` with ``scale`` ``a``
(``angle = a * value``; ``basis`` uses ``RX(pi x)``) shifts the value by ``s_j / a`` and the
derivative by the value is ``a * sum_j c_j f(...)``. So ``S = B (1 + T)`` rows,
``T = sum over inputs and weights of the rule's terms`` (2 for rx/ry/rz/p, 4 for crx/crz).

Amplitude encoding: the state is not a circuit parameter, so every sample is its own circuit
(the state ``psi_b = x_b / |x_b|`` bound in) whose rows are ``[w]`` and the weight shifts. The
input Jacobian uses that, for a real state, ``f(psi) = psi^T A psi`` with ``A`` the real
(symmetric) part of the Heisenberg-evolved observable, extended to any real ``v`` as
``g(v) = v^T A v = |v|^2 E(v / |v|)``, where ``E`` is the measured expectation. Then
``df/dpsi = 2 A psi`` and ``(A psi)_k = [g(psi + e_k) - g(psi - e_k)] / 4``: two more circuits
per sample and basis state (a vector that is exactly zero contributes ``g = 0`` and is not
run). Finally the chain rule through ``psi = x / |x|`` gives
``df/dx = (I - psi psi^T)(2 A psi) / |x|``.

Complex amplitude encoding (``z = a + i b``, ``psi = z / |z|``): ``g(v) = v^H A v`` with ``A``
Hermitian, so ``dg/da_k = 2 Re(A psi)_k`` and ``dg/db_k = 2 Im(A psi)_k``, with
``Re(A psi)_k = [g(psi + e_k) - g(psi - e_k)] / 4`` and
``Im(A psi)_k = [g(psi + i e_k) - g(psi - i e_k)] / 4`` (four circuits per basis state); the
same projection with ``psi`` read as the real vector ``[Re psi, Im psi]`` gives ``df/d[a, b]``.
Any quantity linear in the density matrix combines like an observable (``width`` of
:meth:`ShiftPlan.combine`): probabilities, a fidelity.

Standard errors: every output above is a linear combination of the rows, and each of its
entries takes every row along one path (a shift term feeds one column; a perturbed state one
``(A psi)_k``, and the ``(A psi)_k`` are made of disjoint rows). When the rows are independent
estimates (each its own shots), ``var(sum_i c_i f_i) = sum_i c_i^2 var(f_i)``, so the same
combination with every coefficient squared (``variances=True`` of :meth:`ShiftPlan.combine`
and :func:`combine_levels`) turns the rows' variances into those of the values and Jacobians.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qldm.circuits import PQCSpec
from qldm.circuits.program import AmplitudeEncoding, Gate, compile_spec
from qldm.circuits.shifts import shift_rule
from qldm.circuits.spec import STATE_ENCODINGS
from qldm.errors import BackendError


@dataclass(frozen=True)
class CircuitGroup:
    """Parameter sets that share one circuit.

    Attributes:
        amplitudes: for the ``amplitude`` (``complex_amplitude``) encoding, the real (complex)
            state ``(2^n,)`` (normalised) the circuit prepares; ``None`` for every other
            encoding (one circuit for all groups).
        parameter_sets: ``(S, C)`` values, columns in
            :meth:`qldm.circuits.qiskit_builder.QiskitCircuit.parameter_order` (inputs then weights;
            weights only for ``amplitude``).
    """

    amplitudes: np.ndarray | None
    parameter_sets: np.ndarray


@dataclass(frozen=True)
class ShiftResult:
    """Combined values and derivatives for one noise level.

    Attributes:
        values: ``(B, O)``.
        d_inputs: ``(B, O, I)`` or ``None`` (task ``expectation``).
        d_weights: ``(B, O, P)`` or ``None`` (task ``expectation``).
    """

    values: np.ndarray
    d_inputs: np.ndarray | None
    d_weights: np.ndarray | None


@dataclass(frozen=True)
class ShiftPlan:
    """Every parameter set of one workload, and how to combine their values.

    Attributes:
        spec: the circuit.
        groups: the circuits to evaluate, each with its parameter sets.
        jacobian: whether derivatives were planned.
        n_samples: ``B``.
        terms: ``(T, C)`` derivative coefficients: row ``t`` is one shift term, its nonzero
            entry ``c_t * scale`` sits in the column of the parameter it shifts.
        states: ``(B, 2^n)`` the unit states ``psi_b`` (``amplitude`` encoding), else empty.
        amplitude_norms: ``(B,)`` ``|x_b|`` (``amplitude`` encoding), else empty.
        perturbations: ``amplitude`` encoding: for each perturbation group (the groups after
            the ``B`` sample groups), ``(b, k, c)``: its value ``E`` adds ``c * E`` to
            ``(A psi_b)_k``, where ``c = sign * |psi_b + sign e_k|^2 / 4``. Empty otherwise.
    """

    spec: PQCSpec
    groups: tuple[CircuitGroup, ...]
    jacobian: bool
    n_samples: int
    terms: np.ndarray
    states: np.ndarray
    amplitude_norms: np.ndarray
    perturbations: tuple[tuple[int, int, float], ...]

    @property
    def n_parameter_sets(self) -> int:
        """Total parameter sets over all groups (per noise level)."""
        return sum(int(g.parameter_sets.shape[0]) for g in self.groups)

    def combine(
        self,
        values: Sequence[np.ndarray],
        *,
        width: int | None = None,
        variances: bool = False,
    ) -> ShiftResult:
        """Combine evaluated values into values and Jacobians.

        Args:
            values: one array per group, in :attr:`groups` order, each ``(S_g, W)``.
            width: ``W``, what each parameter set measured (``None``: the spec's ``O``
                observables; any quantity linear in the state's density matrix combines the
                same way: probabilities ``2**n``, a fidelity 1).
            variances: ``values`` are the variances of independent row estimates: combine
                them with every coefficient squared, giving the variances of the values and
                Jacobians (``sum_i c_i^2 var(f_i)``; the module docstring).

        Returns:
            The :class:`ShiftResult` of this noise level (variances with ``variances``).

        Raises:
            BackendError: the number or the shapes of ``values`` do not match the plan.
        """
        n_out = self.spec.n_outputs if width is None else width
        if len(values) != len(self.groups):
            raise BackendError(f"expected values for {len(self.groups)} groups, got {len(values)}")
        arrays = []
        for group, v in zip(self.groups, values, strict=True):
            arr = np.asarray(v, dtype=np.float64)
            if arr.shape != (group.parameter_sets.shape[0], n_out):
                raise BackendError(
                    f"group values have shape {arr.shape}, expected "
                    f"{(group.parameter_sets.shape[0], n_out)}"
                )
            arrays.append(arr)
        power = 2 if variances else 1  # every coefficient squared for variances
        if self.spec.encoding in STATE_ENCODINGS:
            return self._combine_amplitude(arrays, power)
        return self._combine_parametric(arrays[0], power)

    def _combine_parametric(self, flat: np.ndarray, power: int) -> ShiftResult:
        b, n_terms = self.n_samples, self.terms.shape[0]
        rows = flat.reshape(b, 1 + (n_terms if self.jacobian else 0), -1)
        values = rows[:, 0, :]
        if not self.jacobian:
            return ShiftResult(values, None, None)
        # (B, T, O) x (T, C) -> (B, O, C)
        grads = np.einsum("bto,tc->boc", rows[:, 1:, :], self.terms**power)
        n_in = self.spec.n_inputs
        return ShiftResult(values, grads[:, :, :n_in], grads[:, :, n_in:])

    def _combine_amplitude(self, arrays: list[np.ndarray], power: int) -> ShiftResult:
        b = self.n_samples
        values = np.stack([arrays[i][0] for i in range(b)])
        if not self.jacobian:
            return ShiftResult(values, None, None)
        terms = self.terms**power
        d_weights = np.stack([np.einsum("to,tc->oc", arrays[i][1:], terms) for i in range(b)])
        n_in, n_out = self.spec.n_inputs, arrays[0].shape[1]
        a_psi = np.zeros((b, n_out, n_in))  # (A psi)_k per sample and observable
        for (sample, k, coefficient), arr in zip(self.perturbations, arrays[b:], strict=True):
            a_psi[sample, :, k] += coefficient**power * arr[0]
        d_inputs = np.empty((b, n_out, n_in))
        for sample in range(b):
            psi = _real_view(self.states[sample])
            projector = np.eye(psi.size) - np.outer(psi, psi)  # symmetric
            grad_psi = 2.0**power * a_psi[sample]  # (O, I)
            projected = grad_psi @ projector**power
            d_inputs[sample] = projected / self.amplitude_norms[sample] ** power
        return ShiftResult(values, d_inputs, d_weights)


def combine_levels(
    plan: ShiftPlan,
    values: Sequence[np.ndarray],
    n_levels: int,
    *,
    width: int | None = None,
    variances: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Combine the values of ``n_levels`` noise levels evaluated group by group.

    Args:
        plan: the plan the values were evaluated from.
        values: ``n_levels * len(plan.groups)`` arrays, level-major (all groups of level 0,
            then of level 1, ...), each ``(S_g, O)``.
        n_levels: ``K``.
        width: ``W`` of each value row (``None``: the spec's ``O``; :meth:`ShiftPlan.combine`).
        variances: ``values`` are the rows' variances; the results are the variances of the
            values and Jacobians (:meth:`ShiftPlan.combine`).

    Returns:
        ``values (K, B, O)``, ``d_inputs (K, B, O, I)`` and ``d_weights (K, B, O, P)`` (both
        ``None`` unless the plan has a Jacobian), ready for :class:`qldm.backends.base.Evaluation`.

    Raises:
        BackendError: the number of value arrays does not match.
    """
    per_level = len(plan.groups)
    if len(values) != n_levels * per_level:
        raise BackendError(f"expected {n_levels} x {per_level} value arrays, got {len(values)}")
    combined = [
        plan.combine(values[k * per_level : (k + 1) * per_level], width=width, variances=variances)
        for k in range(n_levels)
    ]
    d_inputs = [c.d_inputs for c in combined if c.d_inputs is not None]
    d_weights = [c.d_weights for c in combined if c.d_weights is not None]
    return (
        np.stack([c.values for c in combined]),
        np.stack(d_inputs) if plan.jacobian else None,
        np.stack(d_weights) if plan.jacobian else None,
    )


def plan_shifts(
    spec: PQCSpec, inputs: np.ndarray, weights: np.ndarray, *, jacobian: bool
) -> ShiftPlan:
    """Lay out every parameter set of a workload.

    Args:
        spec: the circuit.
        inputs: ``(B, I)`` samples (validated, e.g. by :meth:`qldm.backends.base.Workload.build`).
        weights: ``(P,)``, or ``(B, P)`` for per-sample weights (the ansatz angles of a
            timestep embedding, :mod:`qldm.circuits.timestep`).
        jacobian: also plan the shift terms of both Jacobians.

    Returns:
        The :class:`ShiftPlan`; evaluate its groups, then call :meth:`ShiftPlan.combine`.
    """
    x = np.asarray(inputs, dtype=np.float64)
    program = compile_spec(spec)
    b = x.shape[0]
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64), (b, spec.n_weights))
    encodings = [op for op in program.encoding if isinstance(op, AmplitudeEncoding)]
    n_in = 0 if encodings else spec.n_inputs
    n_cols = n_in + spec.n_weights
    offsets, terms = _shift_terms(program.gates, n_in, n_cols) if jacobian else _no_terms(n_cols)
    if not encodings:
        base = np.concatenate([x, w], axis=1)  # (B, C)
        deltas = np.concatenate([np.zeros((1, n_cols)), offsets])  # (1 + T, C)
        sets = (base[:, None, :] + deltas[None, :, :]).reshape(-1, n_cols)
        empty = np.empty(0)
        return ShiftPlan(spec, (CircuitGroup(None, sets),), jacobian, b, terms, empty, empty, ())
    d = 2**spec.n_qubits
    z = x[:, :d] + 1j * x[:, d:] if encodings[0].complex else x
    norms = np.linalg.norm(z, axis=1)
    psis = z / norms[:, None]
    deltas = np.concatenate([np.zeros((1, n_cols)), offsets])
    groups = [CircuitGroup(psis[i], w[i][None, :] + deltas) for i in range(b)]
    perturbations: list[tuple[int, int, float]] = []
    if jacobian:
        for i in range(b):
            for k in range(spec.n_inputs):  # complex: k < d shifts Re psi_k, k >= d Im psi_k-d
                for sign in (1, -1):
                    v = psis[i].copy()
                    v[k % d] += sign * (1j if k >= d else 1)
                    norm = float(np.linalg.norm(v))
                    if norm < 1e-12:  # psi = -sign e_k: g(0) = 0 contributes nothing
                        continue
                    groups.append(CircuitGroup(v / norm, w[i][None, :].copy()))
                    perturbations.append((i, k, sign * norm**2 / 4.0))
    return ShiftPlan(spec, tuple(groups), jacobian, b, terms, psis, norms, tuple(perturbations))


def _real_view(psi: np.ndarray) -> np.ndarray:
    """A state as the real vector of its inputs: ``psi`` itself, or ``[Re psi, Im psi]``."""
    return np.concatenate([psi.real, psi.imag]) if np.iscomplexobj(psi) else psi


def _no_terms(n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, n_cols)), np.zeros((0, n_cols))


def _shift_terms(gates: tuple[Gate, ...], n_in: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Value offsets ``(T, C)`` and derivative coefficients ``(T, C)`` of every shift term.

    Columns: inputs ``0..n_in-1`` then weights; terms ordered inputs first, then weights, each
    by index. Input gates are skipped when ``n_in`` is 0 (amplitude encoding).
    """
    by_column: dict[int, Gate] = {}
    for gate in gates:
        if gate.param is None:
            continue
        if gate.param.source == "input":
            if n_in == 0:
                continue
            by_column[gate.param.index] = gate
        else:
            by_column[n_in + gate.param.index] = gate
    if sorted(by_column) != list(range(n_cols)):
        raise BackendError("every input and weight must drive exactly one gate")
    offsets: list[np.ndarray] = []
    coeffs: list[np.ndarray] = []
    for col in range(n_cols):
        gate = by_column[col]
        scale = gate.param.scale if gate.param is not None else 1.0
        for shift, coefficient in shift_rule(gate.name):
            offset = np.zeros(n_cols)
            offset[col] = shift / scale
            coeff = np.zeros(n_cols)
            coeff[col] = coefficient * scale
            offsets.append(offset)
            coeffs.append(coeff)
    return np.array(offsets).reshape(-1, n_cols), np.array(coeffs).reshape(-1, n_cols)
