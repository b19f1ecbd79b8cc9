"""State-level work as rows of one circuit, for Aer and the devices: plan, then combine.

A state-level workload (:mod:`qldm.backends.outputs`: ``probabilities``, ``fidelity``, a
``timestep`` or ``complex_amplitude`` spec, the block-diagonal ``metric_tensor``) runs as
bindings of one circuit per noise level (:func:`qldm.circuits.state_circuits.state_circuit`):

1. :func:`plan_rows`: every sample's ansatz angles ``theta_b`` (a timestep embedding gives
   each sample its own, :func:`qldm.circuits.timestep.effective_angles`), the parameter-shift
   plan of the spec without its timestep over ``(data, theta)``
   (:func:`qldm.backends._shift.plan_shifts`: shift terms of the data inputs and the angles;
   for state encodings the perturbed states of the input Jacobian), and one row of circuit
   parameters per parameter set: ``[encoding columns, target angles, theta]`` (a state
   encoding's and a target's states as preparation angles,
   :func:`qldm.circuits.state_prep.prep_angles`).
2. The backend measures every row: outcome probabilities ``(S, 2**n)`` (exact on Aer, M3
   quasi-probabilities from counts on a device), turned into the output's values
   ``(S, W)`` by :func:`row_values`.
3. :func:`combine_rows`: shift rules (any quantity linear in the state combines like an
   observable), then the timestep chain rule
   (:func:`qldm.circuits.timestep.chain_rule`: ``df/dw = df/dtheta``,
   ``df/dv_j = tau_j df/dtheta``, ``df/dtau_j = sum_k v_jk df/dtheta_k``).

The block-diagonal metric: :func:`metric_rows` (one row per sample for each layer's circuit,
:func:`qldm.circuits.state_circuits.metric_circuit`) and :func:`metric_from_probabilities`
(``g_ij = <G_i G_j> - <G_i><G_j>`` from the outcome distribution and
:func:`qldm.circuits.metric.layer_eigenvalues`, zero between layers, pulled back to the
weights through the timestep embedding as on the exact engine).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qldm.backends._shift import ShiftPlan, plan_shifts
from qldm.backends.base import Workload
from qldm.backends.outputs import Output, output_width, target_states
from qldm.circuits.metric import MetricLayer, layer_eigenvalues, metric_layers
from qldm.circuits.spec import STATE_ENCODINGS, PQCSpec
from qldm.circuits.state_prep import prep_angles
from qldm.circuits.timestep import chain_rule, effective_angles
from qldm.errors import InvalidSpecError

__all__ = [
    "StateRows",
    "combine_rows",
    "metric_from_probabilities",
    "metric_rows",
    "plan_rows",
    "row_values",
    "row_variances",
    "simplex_projection",
]


@dataclass(frozen=True)
class StateRows:
    """Every parameter set of a state-level workload, as rows of its circuit.

    Attributes:
        work: the workload.
        shift: the shift plan of the spec without its timestep over ``(data, theta)``.
        rows: ``(S, C)`` circuit parameters per row, ordered as the circuit's
            ``parameter_order()`` without noise slots.
        group_sizes: rows of each group of ``shift``, in order.
        width: ``W``, values per row of the output.
    """

    work: Workload
    shift: ShiftPlan
    rows: np.ndarray
    group_sizes: tuple[int, ...]
    width: int


def plan_rows(work: Workload, *, jacobian: bool) -> StateRows:
    """The rows of ``work`` (task ``expectation`` or ``jacobian``).

    Raises:
        InvalidSpecError: a state encoding of a zero vector (field ``inputs``).
    """
    spec = work.spec
    base = spec.without_timestep()
    data, theta = effective_angles(spec, work.inputs, work.weights)
    _check_states(spec, data)
    shift = plan_shifts(base, data, theta, jacobian=jacobian)
    b = data.shape[0]
    targets = None
    if work.output is Output.FIDELITY and work.targets is not None:
        targets = prep_angles(target_states(spec, work.targets))  # (B, A)
    blocks: list[np.ndarray] = []
    if spec.encoding not in STATE_ENCODINGS:
        sets = shift.groups[0].parameter_sets  # (B (1 + T), I_d + P_a)
        per_sample = sets.shape[0] // b
        cols = [sets[:, : base.n_inputs]]
        if targets is not None:
            cols.append(np.repeat(targets, per_sample, axis=0))
        cols.append(sets[:, base.n_inputs :])
        blocks.append(np.concatenate(cols, axis=1))
    else:
        states = np.stack([g.amplitudes for g in shift.groups])  # type: ignore[misc]
        angles = prep_angles(states)
        for g, group in enumerate(shift.groups):
            sample = g if g < b else shift.perturbations[g - b][0]
            s = group.parameter_sets.shape[0]
            cols = [np.repeat(angles[g : g + 1], s, axis=0)]
            if targets is not None:
                cols.append(np.repeat(targets[sample : sample + 1], s, axis=0))
            cols.append(group.parameter_sets)
            blocks.append(np.concatenate(cols, axis=1))
    sizes = tuple(int(g.parameter_sets.shape[0]) for g in shift.groups)
    width = output_width(spec, work.output)
    return StateRows(work, shift, np.concatenate(blocks), sizes, width)


def combine_rows(
    plan: StateRows, level_values: list[np.ndarray], *, variances: bool = False
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Values and Jacobians from every level's row values.

    Args:
        plan: the rows.
        level_values: ``K`` arrays ``(S, W)`` (rows in :attr:`StateRows.rows` order).
        variances: ``level_values`` are the rows' variances (independent estimates): every
            coefficient of the shift rules and the chain rule squared, the results are the
            variances of the values and Jacobians (:meth:`qldm.backends._shift.ShiftPlan.combine`).

    Returns:
        ``values (K, B, W)`` and, when planned, ``d_inputs (K, B, W, I)``,
        ``d_weights (K, B, W, P)``.
    """
    work = plan.work
    bounds = np.cumsum((0, *plan.group_sizes))
    values, d_in, d_w = [], [], []
    for rows in level_values:
        groups = [rows[bounds[i] : bounds[i + 1]] for i in range(len(plan.group_sizes))]
        result = plan.shift.combine(groups, width=plan.width, variances=variances)
        values.append(result.values)
        if result.d_inputs is not None and result.d_weights is not None:
            di, dw = chain_rule(
                work.spec,
                work.inputs,
                work.weights,
                result.d_inputs,
                result.d_weights,
                variances=variances,
            )
            d_in.append(di)
            d_w.append(dw)
    if not plan.shift.jacobian:
        return np.stack(values), None, None
    return np.stack(values), np.stack(d_in), np.stack(d_w)


def row_values(probabilities: np.ndarray, output: Output, labels: list[str]) -> np.ndarray:
    """The output's values of rows measured as outcome probabilities.

    Args:
        probabilities: ``(S, 2**n)`` (quasi-)probabilities (Qiskit order).
        output: ``probabilities`` (themselves), ``fidelity`` (the all-zero outcome of the
            compute-uncompute circuit) or ``expectation`` (``I``/``Z`` labels only:
            ``<Z_M> = sum_j p_j (-1)^{|j & M|}``).
        labels: the spec's Pauli labels (for ``expectation``).

    Returns:
        ``(S, W)``.

    Raises:
        InvalidSpecError: ``expectation`` with a label that is not ``I``/``Z``.
    """
    if output is Output.PROBABILITIES:
        return probabilities
    if output is Output.FIDELITY:
        return probabilities[:, :1]
    return probabilities @ z_signs(labels, probabilities.shape[1]).T


def row_variances(
    values: np.ndarray, output: Output, unit: np.ndarray, *, bound: bool
) -> np.ndarray:
    """Shot-noise variances ``(S, W)`` of row values ``(S, W)`` (:func:`row_values`).

    An expectation value is the mean of ``+-1`` outcomes, a probability (also a fidelity) the
    mean of ``0/1`` ones, so per row ``var = (1 - v^2) u`` or ``p (1 - p) u`` with
    ``u = sum_r 1 / (n_r R^2)`` over ``R`` instances of ``n_r`` shots (binomial; exact for one
    instance, an upper bound over several, whose own values are averaged first). With M3
    (``bound``) ``u = sum_r gamma_r^2 / (n_r R^2)``, ``gamma_r^2`` mthree's mitigation
    overhead, and the variance is mthree's upper bound for an observable of norm 1: ``u`` for
    an expectation value, ``u / 4`` for a probability (``P = (1 + (2P - 1)) / 2``).

    Args:
        values: ``(S, W)``.
        output: what the values are.
        unit: ``(S,)`` ``u`` per row.
        bound: M3 ran (mthree's bound) or not (binomial).
    """
    u = np.asarray(unit, dtype=np.float64)[:, None]
    v = np.clip(np.asarray(values, dtype=np.float64), -1.0, 1.0)
    if output is Output.EXPECTATION:
        return np.broadcast_to(u, v.shape).copy() if bound else (1.0 - v**2) * u
    if bound:
        return np.broadcast_to(u / 4.0, v.shape).copy()
    p = np.clip(v, 0.0, 1.0)
    return p * (1.0 - p) * u


def z_signs(labels: list[str], d: int) -> np.ndarray:
    """``(O, 2**n)``: the eigenvalue of each ``I``/``Z`` label on every outcome.

    Raises:
        InvalidSpecError: a label with ``X`` or ``Y`` (field ``circuit.observables``).
    """
    outcomes = np.arange(d)
    rows = []
    for label in labels:
        if set(label) - {"I", "Z"}:
            raise InvalidSpecError(
                f"observable {label!r} is not diagonal; measured outcome probabilities give "
                "I/Z observables only",
                field="circuit.observables",
            )
        mask = sum(1 << (len(label) - 1 - i) for i, c in enumerate(label) if c == "Z")
        parity = np.array([bin(int(v)).count("1") % 2 for v in outcomes & mask])
        rows.append(1.0 - 2.0 * parity)
    return np.array(rows)


def metric_rows(work: Workload) -> tuple[tuple[MetricLayer, ...], np.ndarray]:
    """The layers of the block-diagonal metric and the rows ``(B, C)`` every layer's circuit
    binds: ``[encoding columns, theta_b]`` (the same for every layer).

    Raises:
        InvalidSpecError: a noisy spec (field ``circuit.channel``), a state encoding of a zero
            vector (field ``inputs``).
    """
    spec = work.spec
    layers = metric_layers(spec)
    data, theta = effective_angles(spec, work.inputs, work.weights)
    _check_states(spec, data)
    enc = data
    if spec.encoding in STATE_ENCODINGS:
        enc = prep_angles(_states(spec, data))
    return layers, np.concatenate([enc, theta], axis=1)


def metric_from_probabilities(
    work: Workload, layers: tuple[MetricLayer, ...], probabilities: list[np.ndarray]
) -> np.ndarray:
    """The block-diagonal Fubini-Study metric of the weights, ``(B, P, P)``.

    Args:
        work: the workload.
        layers: :func:`qldm.circuits.metric.metric_layers` of its spec.
        probabilities: per layer ``(B, 2**n)`` outcome (quasi-)probabilities of its circuit.
    """
    spec = work.spec
    pa, m, n = spec.n_ansatz_weights, spec.timestep_features, spec.n_qubits
    b = work.inputs.shape[0]
    g = np.zeros((b, pa, pa))
    for layer, p in zip(layers, probabilities, strict=True):
        eig = layer_eigenvalues(layer, n)  # (G, 2**n)
        first = p @ eig.T  # (B, G)
        second = np.einsum("bx,gx,hx->bgh", p, eig, eig)
        idx = np.array(layer.weights)
        g[:, idx[:, None], idx[None, :]] = second - first[:, :, None] * first[:, None, :]
    if not m:
        return g
    tau = work.inputs[:, spec.n_data_inputs :]
    factors = np.concatenate([np.ones((b, 1)), tau], axis=1)  # (B, 1 + m)
    pulled = np.einsum("ba,bc,bkl->bakcl", factors, factors, g)
    return pulled.reshape(b, (1 + m) * pa, (1 + m) * pa)


def simplex_projection(values: np.ndarray) -> np.ndarray:
    """The Euclidean projection of each row of ``values (..., D)`` onto the probability
    simplex (the nearest probability vector to a quasi-probability vector)."""
    flat = values.reshape(-1, values.shape[-1])
    u = -np.sort(-flat, axis=1)
    css = np.cumsum(u, axis=1) - 1.0
    k = np.arange(1, flat.shape[1] + 1)
    rho = (u - css / k > 0).sum(axis=1)
    shift = css[np.arange(flat.shape[0]), rho - 1] / rho
    return np.maximum(flat - shift[:, None], 0.0).reshape(values.shape)


def _states(spec: PQCSpec, data: np.ndarray) -> np.ndarray:
    d = 2**spec.n_qubits
    return data[:, :d] + 1j * data[:, d:] if spec.encoding == "complex_amplitude" else data


def _check_states(spec: PQCSpec, data: np.ndarray) -> None:
    if spec.encoding in STATE_ENCODINGS and np.any(
        np.linalg.norm(_states(spec, data), axis=1) == 0.0
    ):
        raise InvalidSpecError("amplitude encoding of a zero vector", field="inputs")
