"""Unbiased SPSA Jacobians: two circuits per random direction, whatever the number of columns.

The full parameter-shift plan (:mod:`qldm.backends._shift`) runs ``1 + T`` parameter sets per
sample (``T`` = 2 per rx/ry/rz/p column, 4 per crx/crz column). SPSA runs ``1 + 2 n``: the
forward value and, for each of ``n`` random directions, two points on the line through the
sample's parameters.

The maths, for one sample with parameters ``theta`` (``C`` columns: inputs then weights, in
:meth:`qldm.circuits.qiskit_builder.QiskitCircuit.parameter_order` order) and one direction
``D in {-1, +1}^C`` (Rademacher):

1. ``g(t) = f(theta + t D)``. Every column drives one gate; a column with scale ``a`` on a gate
   whose expectation has frequencies ``Omega`` (``{1}`` for rx/ry/rz/p, ``{1/2, 1}`` for
   crx/crz) contributes frequencies ``|a| Omega``, so ``g`` is a trigonometric polynomial
   whose frequencies are sums of one frequency (or 0) per column. When all ``|a| omega`` are
   integer multiples of a unit ``u``, those are ``k u`` with ``0 <= k <= R``,
   ``R = sum_j max(|a_j| Omega_j) / u``.
2. The equidistant general parameter-shift rule (Wierichs et al., Quantum 6, 677 (2022)) is
   exact for such a ``g``::

       g'(0) = u sum_{mu=1..R} w_mu [g(x_mu / u) - g(-x_mu / u)]
       x_mu = (2 mu - 1) pi / (2 R),   w_mu = (-1)^(mu-1) / (4 R sin^2(x_mu / 2))

   (``R = 1``, ``u = 1``: the usual ``pi/2`` rule with ``w = 1/2``).
3. ``g'(0) = D . grad f`` and ``E[D_i D_j] = delta_ij``, so ``E_D[D g'(0)] = grad f``.
4. Importance sampling: draw ONE ``mu`` with probability ``|w_mu| / W``, ``W = sum |w_mu|``,
   and use ``u W sign(w_mu) [g(x_mu / u) - g(-x_mu / u)]`` for ``g'(0)``; its expectation
   over ``mu`` is ``g'(0)``. So ``D u W sign(w_mu) [g(+) - g(-)]`` is an unbiased estimate of
   the whole gradient (inputs and weights) from two circuits. ``n`` directions are averaged.

Cost and variance: ``B (1 + 2 n)`` rows instead of ``B (1 + T)``. Every entry of one
direction's estimate has the same second moment, ``(u W)^2 E[(g(+) - g(-))^2]``, and
``W = R / 2`` exactly, so the scale factor is ``u W = sum_j max(|a_j| Omega_j) / 2`` (39 for
the reference spec, ``R = 78``): a bound of ``(2 u W)^2`` on the variance of an entry. Most
draws pick ``mu = 1`` (probability about ``8 / pi^2``), a short step along ``D``, so the
measured variance is far below the bound but still grows with ``R`` (docs/hardware.md has
the numbers). Shot noise in ``g(+) - g(-)`` is multiplied by ``u W`` too.

Not covered (refused, field ``spsa_directions``): the ``amplitude`` encoding (its inputs are
not gate angles) and specs whose columns' frequencies have no common unit (``basis`` encodes
``RX(pi x)``, frequency ``pi``, next to weights of frequency 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from qldm.backends._shift import ShiftPlan, ShiftResult
from qldm.circuits import PQCSpec
from qldm.circuits.program import compile_spec
from qldm.errors import BackendError, InvalidSpecError

MAX_DIRECTIONS = 1000
"""Most directions per sample a job may ask for (each costs two parameter sets per sample)."""

GATE_FREQUENCIES: dict[str, tuple[float, ...]] = {
    "rx": (1.0,),
    "ry": (1.0,),
    "rz": (1.0,),
    "p": (1.0,),
    "crx": (0.5, 1.0),
    "crz": (0.5, 1.0),
}
"""Positive frequencies of an expectation value as a function of each gate's angle: the
differences of its generator's eigenvalues (``{+-1/2}``; ``{0, +-1/2}`` when controlled)."""

_MAX_DENOMINATOR = 64
"""Largest denominator accepted when expressing one column frequency as a rational multiple
of another (``crx`` next to ``rx`` needs 2; ``pi`` next to 1 has none)."""


@dataclass(frozen=True)
class EquidistantRule:
    """The equidistant shift rule of a trig polynomial with frequencies in ``u {1..R}``.

    Attributes:
        unit: ``u``.
        order: ``R``.
    """

    unit: float
    order: int

    @property
    def shifts(self) -> np.ndarray:
        """``(R,)`` the shifts ``x_mu / u`` of ``t``."""
        mu = np.arange(1, self.order + 1)
        return (2 * mu - 1) * math.pi / (2 * self.order) / self.unit

    @property
    def coefficients(self) -> np.ndarray:
        """``(R,)`` ``u w_mu``: ``g'(0) = sum_mu u w_mu [g(shift_mu) - g(-shift_mu)]``."""
        mu = np.arange(1, self.order + 1)
        x = (2 * mu - 1) * math.pi / (2 * self.order)
        signs = np.where(mu % 2 == 1, 1.0, -1.0)
        return self.unit * signs / (4 * self.order * np.sin(x / 2) ** 2)

    @property
    def probabilities(self) -> np.ndarray:
        """``(R,)`` ``|w_mu| / W``, the importance-sampling distribution of ``mu``."""
        magnitudes = np.abs(self.coefficients)
        return magnitudes / magnitudes.sum()

    @property
    def scale(self) -> float:
        """``u W``: one sampled term is ``u W sign(w_mu) [g(+) - g(-)]``."""
        return float(np.abs(self.coefficients).sum())


def spsa_rule(spec: PQCSpec) -> EquidistantRule:
    """The rule for ``g(t) = f(theta + t D)`` of ``spec``, any sign vector ``D``.

    Raises:
        InvalidSpecError: ``amplitude`` encoding, or column frequencies with no common unit
            (field ``spsa_directions``).
    """
    if spec.encoding == "amplitude":
        raise InvalidSpecError(
            "SPSA needs every input to be a gate angle; the amplitude encoding prepares a "
            "state instead (use the full parameter-shift Jacobian)",
            field="spsa_directions",
        )
    program = compile_spec(spec)
    per_column: list[tuple[float, ...]] = []
    for gate in program.gates:
        if gate.param is not None:
            per_column.append(tuple(abs(gate.param.scale) * w for w in GATE_FREQUENCIES[gate.name]))
    frequencies = sorted({f for column in per_column for f in column})
    unit = _common_unit(frequencies)
    if unit is None:
        raise InvalidSpecError(
            f"the columns' frequencies {_short(frequencies)} have no common unit (the "
            f"{spec.encoding} encoding next to the {spec.ansatz} weights), so no equidistant "
            "shift rule is exact along a random direction; use the full parameter-shift "
            "Jacobian or gradient_budget",
            field="spsa_directions",
        )
    order = round(sum(max(column) for column in per_column) / unit)
    return EquidistantRule(unit, order)


@dataclass(frozen=True)
class SpsaSelection:
    """The parameter sets of an SPSA Jacobian and how to combine their values.

    Rows, per sample ``b``: its forward set ``theta_b``, then for each direction ``d`` the
    pair ``theta_b + s_{b,d} D_{b,d}``, ``theta_b - s_{b,d} D_{b,d}`` (``s`` the drawn shift).

    Attributes:
        rule: the equidistant rule the shifts come from.
        directions: ``(B, n, C)`` the signs ``D``.
        picks: ``(B, n)`` the drawn ``mu - 1`` of each direction.
        parameter_sets: ``(B (1 + 2 n), C)`` in the row order above.
        n_inputs: ``I``, the first ``I`` columns are inputs.
    """

    rule: EquidistantRule
    directions: np.ndarray
    picks: np.ndarray
    parameter_sets: np.ndarray
    n_inputs: int

    @property
    def factors(self) -> np.ndarray:
        """``(B, n)`` ``u W sign(w_mu) / n`` per direction."""
        signs = np.sign(self.rule.coefficients)[self.picks]
        return self.rule.scale * signs / self.picks.shape[1]

    def combine(self, values: np.ndarray, *, variances: bool = False) -> ShiftResult:
        """Values ``(S, O)`` of :attr:`parameter_sets` to values ``(B, O)`` and the estimated
        ``d_inputs (B, O, I)`` and ``d_weights (B, O, P)``.

        ``variances``: ``values`` are the variances of independent row estimates; the same
        combination with every coefficient squared gives the variances of the values and
        Jacobians (every row enters one direction's difference: ``var = sum_d factor_d^2
        D_d^2 (var(+) + var(-))``). The draw of the directions is not in them, only the
        rows' own (shot) noise.

        Raises:
            BackendError: ``values`` has the wrong number of rows.
        """
        arr = np.asarray(values, dtype=np.float64)
        b, n = self.picks.shape
        if arr.ndim != 2 or arr.shape[0] != self.parameter_sets.shape[0]:
            raise BackendError(
                f"SPSA values have shape {arr.shape}, expected ({self.parameter_sets.shape[0]}, O)"
            )
        rows = arr.reshape(b, 1 + 2 * n, -1)
        power = 2 if variances else 1  # g(+) - g(-): coefficients +1, -1; squared +1, +1
        differences = rows[:, 1::2, :] + (-1.0) ** power * rows[:, 2::2, :]  # (B, n, O)
        grads = np.einsum(
            "bno,bn,bnc->boc", differences, self.factors**power, self.directions**power
        )
        return ShiftResult(
            rows[:, 0, :], grads[:, :, : self.n_inputs], grads[:, :, self.n_inputs :]
        )

    def combine_levels(
        self, values: Sequence[np.ndarray], *, variances: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`combine` for ``K`` noise levels: ``values`` ``K`` arrays ``(S, O)`` to
        ``values (K, B, O)``, ``d_inputs (K, B, O, I)`` and ``d_weights (K, B, O, P)``
        (their variances with ``variances``)."""
        combined = [self.combine(v, variances=variances) for v in values]
        return (
            np.stack([c.values for c in combined]),
            np.stack([c.d_inputs for c in combined if c.d_inputs is not None]),
            np.stack([c.d_weights for c in combined if c.d_weights is not None]),
        )


def spsa_selection(
    plan: ShiftPlan, rule: EquidistantRule, directions: np.ndarray, picks: np.ndarray
) -> SpsaSelection:
    """Lay out the rows for given directions and shift picks (no randomness).

    Args:
        plan: a plan of an angle-type spec (its forward rows give ``theta_b``).
        rule: :func:`spsa_rule` of the plan's spec.
        directions: ``(B, n, C)`` entries +-1.
        picks: ``(B, n)`` indices into ``rule.shifts``.

    Raises:
        InvalidSpecError: shapes that do not match the plan (field ``spsa_directions``).
    """
    b, n_cols = plan.n_samples, plan.terms.shape[1]
    directions = np.asarray(directions, dtype=np.float64)
    picks = np.asarray(picks, dtype=np.int64)
    n = directions.shape[1] if directions.ndim == 3 else -1
    if directions.shape[::2] != (b, n_cols) or picks.shape != (b, n):
        raise InvalidSpecError(
            f"directions {directions.shape} and picks {picks.shape} do not fit "
            f"{b} samples of {n_cols} columns",
            field="spsa_directions",
        )
    full = plan.groups[0].parameter_sets
    theta = full.reshape(b, -1, n_cols)[:, 0, :]  # (B, C) the forward rows
    steps = rule.shifts[picks][:, :, None] * directions  # (B, n, C)
    pairs = np.stack([theta[:, None, :] + steps, theta[:, None, :] - steps], axis=2)
    sets = np.concatenate([theta[:, None, :], pairs.reshape(b, -1, n_cols)], axis=1)
    n_inputs = plan.spec.n_inputs
    return SpsaSelection(rule, directions, picks, sets.reshape(-1, n_cols), n_inputs)


def choose_directions(
    plan: ShiftPlan, n_directions: int, rng: np.random.Generator
) -> SpsaSelection:
    """Draw ``n_directions`` Rademacher directions and shift picks per sample.

    Args:
        plan: a Jacobian plan (``jacobian=True``) of an angle-type spec.
        n_directions: ``n >= 1``.
        rng: the generator (seeded from the job, so a re-run draws the same rows).

    Raises:
        InvalidSpecError: ``n_directions`` not in ``1..MAX_DIRECTIONS``, or a spec
            :func:`spsa_rule` refuses (field ``spsa_directions``).
    """
    check_directions(n_directions)
    rule = spsa_rule(plan.spec)
    if not plan.jacobian:
        raise InvalidSpecError("SPSA is a Jacobian option", field="spsa_directions")
    b, n_cols = plan.n_samples, plan.terms.shape[1]
    directions = rng.choice(np.array([-1.0, 1.0]), size=(b, n_directions, n_cols))
    picks = rng.choice(rule.order, size=(b, n_directions), p=rule.probabilities)
    return spsa_selection(plan, rule, directions, picks)


def check_directions(directions: int | None, *, budget: int | None = None) -> None:
    """Refuse a ``spsa_directions`` outside ``1..MAX_DIRECTIONS``, or one given together with
    a ``gradient_budget`` (two estimators of the same Jacobian); ``None`` passes.

    Raises:
        InvalidSpecError: field ``spsa_directions``.
    """
    if directions is None:
        return
    if (
        isinstance(directions, bool)
        or not isinstance(directions, int)
        or not 1 <= directions <= MAX_DIRECTIONS
    ):
        raise InvalidSpecError(
            f"must be an integer from 1 to {MAX_DIRECTIONS} or null", field="spsa_directions"
        )
    if budget is not None:
        raise InvalidSpecError(
            "SPSA and gradient_budget are two different Jacobian estimators; choose one",
            field="spsa_directions",
        )


def _common_unit(frequencies: list[float]) -> float | None:
    """The largest ``u`` with every frequency an integer multiple of it, or ``None``."""
    top = max(frequencies)
    ratios = []
    for f in frequencies:
        ratio = Fraction(f / top).limit_denominator(_MAX_DENOMINATOR)
        if abs(float(ratio) - f / top) > 1e-9:
            return None
        ratios.append(ratio)
    common = math.lcm(*(r.denominator for r in ratios))
    divisor = math.gcd(*(r.numerator * (common // r.denominator) for r in ratios))
    return top * divisor / common


def _short(values: list[float]) -> str:
    return "{" + ", ".join(f"{v:.6g}" for v in values) + "}"
