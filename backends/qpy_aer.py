"""QPY circuits on Aer: expectation values and parameter-shift Jacobians in one ``run``.

A :class:`qldm.circuits.qpy.QpyCircuit` is any parameterized Qiskit circuit, so the shift rules of
:mod:`qldm.circuits.program` (one gate per parameter) do not apply as they are. The circuit is
first rewritten into its *gradient form* (cached per circuit):

1. Translate it, with Qiskit's basis translator (``optimization_level=0`` style: nothing is
   merged or cancelled), into :data:`SHIFT_BASIS`: the Pauli rotations with a known shift rule
   (``rx ry rz p cp rxx ryy rzz rzx``: two terms; ``crx cry crz``: four terms, see
   :mod:`qldm.circuits.shifts`) plus fixed gates and Aer's noise instructions. ``u``, ``r``,
   ``PauliEvolutionGate`` and the like become rotations whose angles are expressions of the
   original parameters (``u(t, s, l)`` gives ``rz(s + 3 pi)``, ``rz(t + pi)``, ...). A gate
   runs as Qiskit's translator defines it, exactly as ``transpile`` would run it: a
   ``PauliEvolutionGate`` of non-commuting terms is its (Lie-Trotter) synthesis, not the exact
   exponential.
2. Give every parameterized gate OCCURRENCE ``k`` its own fresh parameter ``phi_k``. Its angle
   must be affine in the circuit's parameters, ``phi_k = sum_j A[k, j] theta_j + b_k``
   (checked with ``ParameterExpression.gradient``: every partial derivative a real
   constant); anything else (``sin(t)``, ``t * s``, a complex coefficient) or a parameter on a
   gate without a shift rule is an :class:`InvalidSpecError` on ``circuit.qpy`` naming the
   gate. The global phase is dropped (it does not change an expectation value).
3. Decompose what Aer lacks or mis-binds (``crx cry crz``; ``cp``, see :data:`AER_BASIS`)
   into gates Aer runs; the fresh parameters stay the only parameters.

Then, for ``theta = [x_b, w]`` (inputs, then weights) and ``phi = A theta + b``, the chain rule
over occurrences gives::

    df/dtheta_j = sum_k A[k, j] df/dphi_k,   df/dphi_k = sum_r c_r f(phi + s_r e_k)

with ``(s_r, c_r)`` the occurrence's shift rule. Every sample's forward row and all its
shifted rows (``B (1 + T)`` rows, ``T = sum_k terms_k``) go to Aer's ``EstimatorV2`` as ONE
PUB in ONE ``run``, through parameter broadcasting. The observables are split into their
distinct Pauli terms, so each term is evaluated once per row and recombined with its
coefficients.

Simulation: ``statevector`` when the circuit is unitary, ``density_matrix`` when it holds Aer
noise instructions (``quantum_channel`` / ``kraus`` / ``superop``) or ``reset``.
Exact values for ``shots=None``; with ``shots=N`` each (row, Pauli term) is the mean of ``N``
±1 outcomes drawn from the exact value, ``2 k / N - 1`` with ``k ~ Binomial(N, (1 + <P>)/2)``
(:func:`qldm.backends._shots.pauli_shot_means`, ``numpy.random.default_rng(seed)``), and the
Jacobians are combined from those sampled rows, as on hardware (Aer's own ``precision`` adds
Gaussian noise, not shot statistics).

Values only (task ``expectation``) need none of this: the translated circuit keeps its own
parameters, any expression of them (``sin(t)``, ``t * s``) is fine, and each sample is one row.

QPY circuits have no noise levels: their noise, if any, is in the circuit (``K = 1``).

:class:`QpyAerBackend` is this path behind the backend contract; the ``exact`` and ``aer``
backends hand it their QPY workloads. :func:`evaluate_qpy` is the same as a function.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter, ParameterExpression
from qiskit.primitives.containers.bindings_array import BindingsArray
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler.preset_passmanagers.common import generate_translation_passmanager

from qldm.backends._shots import pauli_shot_means
from qldm.backends.base import (
    NO_CONTEXT,
    Capabilities,
    CircuitKind,
    Context,
    Evaluation,
    Task,
    Workload,
)
from qldm.circuits.qpy import QpyCircuit
from qldm.circuits.shifts import FOUR_TERM, TWO_TERM, ShiftRule
from qldm.errors import BackendError, BackendLimitError, InvalidSpecError

SHIFT_RULES: dict[str, ShiftRule] = {
    **dict.fromkeys(("rx", "ry", "rz", "p", "cp", "rxx", "ryy", "rzz", "rzx"), TWO_TERM),
    **dict.fromkeys(("crx", "cry", "crz"), FOUR_TERM),
}
"""Parameterized gates a gradient form may hold, and their shift rules in terms of the angle.

``rx ry rz rxx ryy rzz rzx`` are ``exp(-i t P / 2)`` for a Pauli string ``P`` (generator
eigenvalues ±1/2); ``p`` and ``cp`` equal ``exp(i t Pi)`` for a projector ``Pi``, the same up to
a global phase. The controlled rotations have eigenvalues {0, ±1/2}: four terms."""

FIXED_GATES: tuple[str, ...] = (
    "id", "x", "y", "z", "h", "s", "sdg", "t", "tdg", "sx", "sxdg",
    "cx", "cy", "cz", "swap", "ecr", "ccx", "unitary", "diagonal", "pauli",
)  # fmt: skip
"""Unparameterized gates Aer runs as they are."""

NON_UNITARY: tuple[str, ...] = ("kraus", "superop", "reset")
"""Instructions that need the density-matrix method (Aer's noise instructions unroll to
``kraus``)."""

SHIFT_BASIS: tuple[str, ...] = (*SHIFT_RULES, *FIXED_GATES, *NON_UNITARY)
AER_BASIS: tuple[str, ...] = tuple(g for g in SHIFT_BASIS if g not in ("cp", "crx", "cry", "crz"))
"""What :func:`aer_ready` leaves for Aer. Aer has no ``crx cry crz``, and it binds a
parameterized ``cp`` wrongly through primitive parameter broadcasting (qiskit-aer issue #2403,
still in 0.18: the angle is ignored), so controlled rotations are decomposed into ``p``/``rz``/
``ry``/``rx`` and ``cx`` with the same fresh parameters; the parameterized gates Aer keeps are
checked against bound circuits in ``tests/jobs/test_qpy_aer.py``."""

MAX_SHOTS = 1_000_000
"""Most shots per circuit (QPY jobs and the counts task)."""

MAX_ROWS = 200_000
"""Most parameter sets (rows) one evaluation may send to Aer."""

MAX_CELLS = 20_000_000
"""Most numbers (rows x fresh parameters) in one evaluation's parameter array (160 MB)."""


@dataclass(frozen=True)
class GradientForm:
    """A QPY circuit rewritten for per-occurrence parameter shifts.

    Attributes:
        circuit: Aer-ready circuit whose only parameters are ``fresh``.
        fresh: ``(M,)`` one parameter per parameterized gate occurrence (for values only: the
            circuit's own parameters that survived translation).
        affine: ``(M, C)`` with ``C = I + P`` (inputs then weights): ``phi = affine @ theta
            + offset``.
        offset: ``(M,)``.
        rules: ``(M,)`` the shift rule of each occurrence.
        gates: ``(M,)`` the gate name of each occurrence (for messages and metadata).
        method: ``statevector`` or ``density_matrix``.
        terms: ``(U,)`` the distinct Pauli labels of all observables.
        coefficients: ``(O, U)`` real: observable ``o`` is ``sum_u coefficients[o, u] terms[u]``.
    """

    circuit: QuantumCircuit
    fresh: tuple[Parameter, ...]
    affine: np.ndarray
    offset: np.ndarray
    rules: tuple[ShiftRule, ...]
    gates: tuple[str, ...]
    method: str
    terms: tuple[str, ...]
    coefficients: np.ndarray


def gradient_form(circuit: QpyCircuit, *, shifts: bool = True) -> GradientForm:
    """The (cached) gradient form of ``circuit``.

    Args:
        circuit: the circuit.
        shifts: ``False`` gives the form for values only: the translated circuit keeps its
            own parameters (any expression, affine or not) and has no shift rules.

    Raises:
        InvalidSpecError: ``circuit.qpy`` when a gate cannot be translated, or (``shifts``) a
            parameterized gate has no shift rule or an angle is not affine in the parameters.
    """
    key = (*circuit.cache_key(), shifts)
    form = _FORMS.get(key)
    if form is None:
        loaded = circuit.load()
        columns = (*loaded.inputs, *loaded.weights)
        if shifts:
            form = _build_form(loaded.circuit, columns, loaded.observables)
        else:
            form = _values_form(loaded.circuit, columns, loaded.observables)
        if len(_FORMS) >= _MAX_FORMS:
            _FORMS.pop(next(iter(_FORMS)))
        _FORMS[key] = form
    return form


def check_shots(shots: Any, *, required: bool) -> None:
    """Raise :class:`InvalidSpecError` on ``shots`` unless it is an int in 1..``MAX_SHOTS``
    (or ``None`` when not ``required``)."""
    if shots is None:
        if required:
            raise InvalidSpecError("a number of shots is required", field="shots")
        return
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)):
        raise InvalidSpecError(f"shots must be an integer, got {shots!r}", field="shots")
    if not 1 <= int(shots) <= MAX_SHOTS:
        raise InvalidSpecError(f"shots must lie in 1..{MAX_SHOTS}, got {shots}", field="shots")


class QpyAerBackend:
    """QPY circuits on Aer, for the simulator called ``name`` (``exact`` or ``aer``: both
    simulate QPY circuits with Aer, exactly).

    Args:
        name: the backend the workload was sent to (reported in the metadata).
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        tasks=frozenset({Task.EXPECTATION, Task.JACOBIAN}),
        circuits=frozenset({CircuitKind.QPY}),
    )

    def __init__(self, name: str = "aer") -> None:
        self.name = name

    def run(self, work: Workload, context: Context = NO_CONTEXT) -> Evaluation:
        """Evaluate a QPY workload in one ``EstimatorV2.run`` (``context`` offers nothing this
        path uses).

        ``work.inputs (B, I)`` bind ``circuit.input_params`` column by column and
        ``work.weights (P,)`` bind ``circuit.weight_params``; ``shots=None`` gives exact
        values, else shots per (row, Pauli term), 1..``MAX_SHOTS``.

        Returns:
            :class:`Evaluation` with ``values (1, B, O)`` and, for ``jacobian``,
            ``d_inputs (1, B, O, I)`` and ``d_weights (1, B, O, P)``; metadata
            ``{"submissions": 1, "parameter_sets", "occurrences", "method", "shots", ...}``.

        Raises:
            InvalidSpecError: ``shots`` above ``MAX_SHOTS``; see :func:`gradient_form`.
            BackendLimitError: a task or circuit kind it does not run (``field="task"`` or
                ``"circuit"``), or more than :data:`MAX_ROWS` rows.
            BackendError: Aer failed.
        """
        self.capabilities.check(self.name, work.task, work.kind)
        if not isinstance(work.circuit, QpyCircuit):  # pragma: no cover - the check above
            raise BackendLimitError("this path takes QPY circuits only", field="circuit")
        check_shots(work.shots, required=False)
        return _evaluate(self.name, work.circuit, work)


def evaluate_qpy(
    circuit: QpyCircuit,
    inputs: np.ndarray,
    weights: np.ndarray,
    *,
    task: Task | str = Task.EXPECTATION,
    shots: int | None = None,
    seed: int | None = None,
    backend: str = "aer",
    noise_levels: Any = None,
) -> Evaluation:
    """:class:`QpyAerBackend` as a function: a QPY circuit on a batch, with Aer.

    Args:
        circuit: the circuit, its observables and parameter roles.
        inputs: ``(B, I)`` values of ``circuit.input_params``, column by column.
        weights: ``(P,)`` values of ``circuit.weight_params``.
        task: ``expectation`` (values) or ``jacobian`` (values and both Jacobians).
        shots: ``None`` for exact values, else shots per (row, Pauli term), 1..``MAX_SHOTS``.
        seed: seed of the shot sampling.
        backend: ``aer`` or ``exact`` (both simulate with Aer, exactly).
        noise_levels: must be ``None`` (QPY circuits carry their noise).

    Raises:
        InvalidSpecError: naming ``circuit``, ``inputs``, ``weights``, ``noise_levels``,
            ``task``, ``shots`` or ``seed``; see :func:`gradient_form`.
        BackendLimitError: ``backend`` is not ``aer`` or ``exact`` (``field="backend"``), or
            more than :data:`MAX_ROWS` rows.
        BackendError: Aer failed.
    """
    if task not in (Task.EXPECTATION, Task.JACOBIAN):
        raise InvalidSpecError(
            f"unknown task {task!r} for a QPY circuit: use expectation or jacobian", field="task"
        )
    if backend not in ("aer", "exact"):
        raise BackendLimitError(
            f"QPY circuits run on the 'aer' and 'exact' backends (both Aer), not {backend!r}",
            field="backend",
        )
    work = Workload.build(
        circuit, inputs, weights, noise_levels=noise_levels, task=task, shots=shots, seed=seed
    )
    return QpyAerBackend(backend).run(work)


def _evaluate(name: str, circuit: QpyCircuit, work: Workload) -> Evaluation:
    """Values and (task ``jacobian``) Jacobians of a validated QPY workload."""
    start = time.perf_counter()
    x, w, shots, seed = work.inputs, work.weights, work.shots, work.seed
    jacobian = work.task is Task.JACOBIAN
    form = gradient_form(circuit, shifts=jacobian)
    n_batch, n_in = x.shape
    theta = np.hstack([x, np.broadcast_to(w, (n_batch, w.size))])  # (B, C)
    phi = theta @ form.affine.T + form.offset  # (B, M)
    shift_index, shift_value, shift_coeff = _shift_table(form) if jacobian else _NO_SHIFTS
    n_rows_per = 1 + shift_index.size
    n_rows = n_batch * n_rows_per
    n_fresh = len(form.fresh)
    if n_rows > MAX_ROWS or n_rows * n_fresh > MAX_CELLS:
        raise BackendLimitError(
            f"{n_rows} parameter sets of {n_fresh} parameters exceed this backend's limit "
            f"({MAX_ROWS} sets, {MAX_CELLS} numbers): send fewer samples per job",
            field="inputs",
        )
    rows = np.repeat(phi[:, None, :], n_rows_per, axis=1)  # (B, 1 + T, M)
    if shift_index.size:
        t = np.arange(shift_index.size)
        rows[:, 1 + t, shift_index] += shift_value
    evs = _run_estimator(form, rows.reshape(n_rows, n_fresh))  # (N, U)
    if shots is not None:
        evs = pauli_shot_means(evs, int(shots), np.random.default_rng(seed))
    f = (evs @ form.coefficients.T).reshape(n_batch, n_rows_per, -1)  # (B, 1 + T, O)
    values = f[:, 0]
    d_inputs = d_weights = None
    if jacobian:
        # rows of one occurrence are contiguous (occurrence-major), each occurrence has >= 2
        weighted = f[:, 1:] * shift_coeff[None, :, None]  # (B, T, O)
        d_phi = np.zeros((n_batch, values.shape[1], n_fresh))  # (B, O, M)
        if n_fresh:
            starts = np.flatnonzero(np.r_[True, np.diff(shift_index) != 0])
            d_phi = np.add.reduceat(weighted, starts, axis=1).transpose(0, 2, 1)
        d_theta = d_phi @ form.affine  # (B, O, C)
        d_inputs = d_theta[..., :n_in][None]
        d_weights = d_theta[..., n_in:][None]
    return Evaluation(
        values=values[None],
        d_inputs=d_inputs,
        d_weights=d_weights,
        metadata={
            "backend": name,
            "engine": "aer",
            "circuit": "qpy",
            "method": form.method,
            "submissions": 1,
            "parameter_sets": n_rows,
            "occurrences": len(form.gates),
            "pauli_terms": len(form.terms),
            "shots": shots,
            "sampling": "exact" if shots is None else "binomial",
            "seed": seed,
            "seconds": time.perf_counter() - start,
        },
    )


def aer_ready(circuit: QuantumCircuit) -> QuantumCircuit:
    """``circuit`` translated into :data:`AER_BASIS` (no optimisation), global phase dropped.

    Raises:
        InvalidSpecError: the translator cannot express a gate (``field="circuit.qpy"``).
    """
    out = _translate(circuit, AER_BASIS)
    out.global_phase = 0.0
    return out


def is_unitary(circuit: QuantumCircuit) -> bool:
    """Whether ``circuit`` (in :data:`AER_BASIS`) holds no noise instruction and no reset."""
    return not any(inst.operation.name in NON_UNITARY for inst in circuit.data)


# ---------------------------------------------------------------------- internals

_NO_SHIFTS = (np.zeros(0, dtype=int), np.zeros(0), np.zeros(0))


def _shift_table(form: GradientForm) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(T,)`` occurrence index, shift and coefficient of every shifted row."""
    index, value, coeff = [], [], []
    for k, rule in enumerate(form.rules):
        for shift, c in rule:
            index.append(k)
            value.append(shift)
            coeff.append(c)
    return np.asarray(index, dtype=int), np.asarray(value), np.asarray(coeff)


def _run_estimator(form: GradientForm, rows: np.ndarray) -> np.ndarray:
    """Exact expectation of every Pauli term on every row, ``(N, U)``, in one ``run``."""
    estimator = _estimator(form.method)
    n_rows = rows.shape[0]
    if form.fresh:
        bindings = BindingsArray(data={form.fresh: rows[:, None, :]})
        pub: tuple[Any, ...] = (form.circuit, [list(form.terms)], bindings)
    else:
        pub = (form.circuit, list(form.terms))
    try:
        result = estimator.run([pub], precision=0.0).result()
    except Exception as exc:  # Aer raises AerError, RuntimeError, ValueError, ...
        message = str(exc)
        raise BackendError(f"Aer failed: {message[:500]}") from exc
    evs = np.asarray(result[0].data.evs, dtype=np.float64)
    return np.broadcast_to(evs.reshape(-1, len(form.terms)), (n_rows, len(form.terms))).copy()


@lru_cache(maxsize=4)
def _estimator(method: str) -> Any:
    from qiskit_aer.primitives import EstimatorV2

    # parallel experiments (0: as many as cores) beat parallel state updates on <= 12 qubits
    options = {"method": method, "max_parallel_experiments": 0}
    return EstimatorV2(options={"default_precision": 0.0, "backend_options": options})


_MAX_FORMS = 64
_FORMS: dict[tuple[Any, ...], GradientForm] = {}
"""Gradient forms by :meth:`QpyCircuit.cache_key` (oldest dropped first)."""


def _build_form(
    circuit: QuantumCircuit,
    columns: tuple[Parameter, ...],
    observables: tuple[SparsePauliOp, ...],
) -> GradientForm:
    column_of = {p: j for j, p in enumerate(columns)}
    unrolled = _translate(circuit, SHIFT_BASIS)
    fresh_circuit = unrolled.copy_empty_like()
    fresh_circuit.global_phase = 0.0
    fresh: list[Parameter] = []
    affine: list[np.ndarray] = []
    offset: list[float] = []
    rules: list[ShiftRule] = []
    gates: list[str] = []
    for inst in unrolled.data:
        op = inst.operation
        symbolic = [p for p in op.params if isinstance(p, ParameterExpression) and p.parameters]
        if not symbolic:
            fresh_circuit.append(inst)
            continue
        where = (
            f"gate {len(gates) + 1} with parameters, {op.name}{tuple(str(p) for p in op.params)}"
        )
        if op.name not in SHIFT_RULES or len(op.params) != 1:
            raise InvalidSpecError(
                f"{where}: only the rotations {sorted(SHIFT_RULES)} may carry parameters "
                "(after translation into that basis)",
                field="circuit.qpy",
            )
        row, b = _affine(op.params[0], column_of, where)
        phi = Parameter(f"phi_{len(fresh)}")
        new_op = op.to_mutable()
        new_op.params = [phi]
        fresh_circuit.append(new_op, inst.qubits, inst.clbits)
        fresh.append(phi)
        affine.append(row)
        offset.append(b)
        rules.append(SHIFT_RULES[op.name])
        gates.append(op.name)
    ready = aer_ready(fresh_circuit)
    terms, coefficients = _pauli_terms(observables)
    return GradientForm(
        circuit=ready,
        fresh=tuple(fresh),
        affine=np.asarray(affine, dtype=np.float64).reshape(len(fresh), len(columns)),
        offset=np.asarray(offset, dtype=np.float64),
        rules=tuple(rules),
        gates=tuple(gates),
        method="statevector" if is_unitary(ready) else "density_matrix",
        terms=terms,
        coefficients=coefficients,
    )


def _values_form(
    circuit: QuantumCircuit,
    columns: tuple[Parameter, ...],
    observables: tuple[SparsePauliOp, ...],
) -> GradientForm:
    """The translated circuit with its own parameters, selected from the columns."""
    ready = aer_ready(circuit)
    present = set(ready.parameters)  # a parameter only in the global phase is gone
    kept = [j for j, p in enumerate(columns) if p in present]
    selection = np.zeros((len(kept), len(columns)))
    selection[np.arange(len(kept)), kept] = 1.0
    terms, coefficients = _pauli_terms(observables)
    return GradientForm(
        circuit=ready,
        fresh=tuple(columns[j] for j in kept),
        affine=selection,
        offset=np.zeros(len(kept)),
        rules=(),
        gates=(),
        method="statevector" if is_unitary(ready) else "density_matrix",
        terms=terms,
        coefficients=coefficients,
    )


def _pauli_terms(observables: tuple[SparsePauliOp, ...]) -> tuple[tuple[str, ...], np.ndarray]:
    """The distinct Pauli labels ``(U,)`` and the real coefficients ``(O, U)``."""
    terms = tuple(dict.fromkeys(label for obs in observables for label in obs.paulis.to_labels()))
    coefficients = np.zeros((len(observables), len(terms)))
    for o, obs in enumerate(observables):
        for label, coeff in obs.to_list():
            coefficients[o, terms.index(label)] += complex(coeff).real
    return terms, coefficients


def _affine(
    expr: ParameterExpression, column_of: dict[Parameter, int], where: str
) -> tuple[np.ndarray, float]:
    """``(A_row (C,), b)`` with ``expr = A_row @ theta + b``, or an error naming ``where``."""
    row = np.zeros(len(column_of))
    for param in expr.parameters:
        grad = expr.gradient(param)
        if isinstance(grad, ParameterExpression):
            if grad.parameters:
                raise InvalidSpecError(
                    f"{where}: the angle is not affine in {param.name} (its derivative "
                    f"{grad} depends on the parameters); use a·θ + b angles",
                    field="circuit.qpy",
                )
            grad = complex(grad)
        grad = complex(grad)
        if grad.imag != 0.0:
            raise InvalidSpecError(
                f"{where}: the angle has a complex coefficient for {param.name}",
                field="circuit.qpy",
            )
        if param not in column_of:  # cannot happen: every parameter has a role
            raise InvalidSpecError(f"{where}: {param.name} has no role", field="circuit.qpy")
        row[column_of[param]] += grad.real
    bound = complex(expr.bind({p: 0.0 for p in expr.parameters}))
    if bound.imag != 0.0:
        raise InvalidSpecError(f"{where}: the angle has a complex offset", field="circuit.qpy")
    return row, bound.real


def _translate(circuit: QuantumCircuit, basis: Sequence[str]) -> QuantumCircuit:
    try:
        return generate_translation_passmanager(None, basis_gates=list(basis)).run(circuit)
    except Exception as exc:  # TranspilerError, QiskitError, ...
        raise InvalidSpecError(
            f"the circuit cannot be translated into the gates Aer and the shift rules "
            f"support ({type(exc).__name__}: {str(exc)[:300]})",
            field="circuit.qpy",
        ) from None
