"""Standard errors of runtime Jacobians: the rows' shot noise through the shift rules (or SPSA).

Three checks, each against something the code does not compute itself:

- the variance combination (every coefficient squared) against the linear map of the rows,
  read off by combining unit rows, for every kind of plan (two- and four-term rules, a gate
  scale, amplitude and complex amplitude inputs, SPSA, state-level rows through the timestep
  chain rule);
- :meth:`RuntimeBackend.postprocess` against hand-written formulas, for rows with known standard
  errors over two Pauli-insertion instances: the full parameter-shift rule, a shot-frugal subset
  (``gradient_budget``) and SPSA;
- on fake:manila, the spread of repeated Jacobians against the reported standard errors, for
  ``EstimatorV2`` and for SamplerV2 + M3, and on the state-level path (probabilities) with and
  without M3.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from qiskit.primitives.containers import DataBin, PrimitiveResult, PubResult
from scipy.stats import chi2

from qldm.backends._runtime_steps import Gathered, Prepared, Submitted
from qldm.backends._shift import ShiftResult, plan_shifts
from qldm.backends._spsa import choose_directions
from qldm.backends._state_rows import combine_rows, plan_rows
from qldm.backends.base import Workload
from qldm.backends.runtime import RuntimeBackend
from qldm.circuits import PQCSpec

# ------------------------------------------------------------------ the variance combination

PLANS = {
    "angle_ry": {"n_qubits": 2, "layers": 1},
    "basis (scale pi)": {"n_qubits": 1, "layers": 1, "encoding": "basis"},
    "hqconv (four-term rule)": {"n_qubits": 4, "ansatz": "hqconv", "layers": 1},
    "amplitude": {"n_qubits": 2, "layers": 1, "encoding": "amplitude"},
    "complex_amplitude": {"n_qubits": 1, "layers": 1, "encoding": "complex_amplitude"},
}


def _split(flat: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    return np.split(flat, np.cumsum(sizes)[:-1])


def _parts(result: ShiftResult) -> list[np.ndarray | None]:
    return [result.values, result.d_inputs, result.d_weights]


def _by_unit_rows(
    combine: Callable[[np.ndarray], Sequence[np.ndarray | None]], variances: np.ndarray
) -> list[np.ndarray]:
    """``sum_i L_ji^2 var_i`` for every entry ``j`` of values, d_inputs and d_weights, with
    ``L`` read off by combining one unit row entry at a time (the combination is linear)."""
    total: list[np.ndarray] | None = None
    for index in np.ndindex(variances.shape):
        unit = np.zeros(variances.shape)
        unit[index] = 1.0
        terms = [np.asarray(p) ** 2 * variances[index] for p in combine(unit)]
        total = terms if total is None else [t + u for t, u in zip(total, terms, strict=True)]
    assert total is not None
    return total


def _assert_close(got: Sequence[np.ndarray | None], want: list[np.ndarray]) -> None:
    for part, expected in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(part), expected, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", list(PLANS))
def test_variances_combine_as_the_squared_linear_map_of_the_rows(name: str) -> None:
    spec = PQCSpec.parse(PLANS[name])
    rng = np.random.default_rng(4)
    inputs = rng.uniform(-1, 1, (2, spec.n_inputs))
    plan = plan_shifts(spec, inputs, rng.uniform(-1, 1, spec.n_weights), jacobian=True)
    variances = rng.uniform(0.1, 2.0, (plan.n_parameter_sets, spec.n_outputs))
    sizes = [g.parameter_sets.shape[0] for g in plan.groups]
    got = plan.combine(_split(variances, sizes), variances=True)
    want = _by_unit_rows(lambda rows: _parts(plan.combine(_split(rows, sizes))), variances)
    _assert_close(_parts(got), want)


def test_spsa_variances_combine_as_the_squared_linear_map_of_the_rows() -> None:
    spec = PQCSpec.parse({"n_qubits": 2, "layers": 1})
    rng = np.random.default_rng(5)
    plan = plan_shifts(spec, rng.uniform(-1, 1, (3, 2)), rng.uniform(-1, 1, 4), jacobian=True)
    spsa = choose_directions(plan, 3, rng)
    variances = rng.uniform(0.1, 2.0, (spsa.parameter_sets.shape[0], spec.n_outputs))
    want = _by_unit_rows(lambda rows: _parts(spsa.combine(rows)), variances)
    _assert_close(_parts(spsa.combine(variances, variances=True)), want)


@pytest.mark.parametrize("encoding", ["angle_ry", "amplitude"])
def test_state_rows_variances_combine_through_the_timestep_chain_rule(encoding: str) -> None:
    """State-level rows (probabilities of every outcome) of a timestep spec: shift rules, then
    ``df/dv = tau df/dtheta`` and ``df/dtau = sum_k v_k df/dtheta_k``, all squared."""
    spec = PQCSpec.parse(
        {"n_qubits": 2, "layers": 1, "encoding": encoding, "timestep": {"features": 1}}
    )
    rng = np.random.default_rng(7)
    work = Workload.build(
        spec,
        rng.uniform(0.2, 1, (2, spec.n_inputs)),
        rng.uniform(-1, 1, spec.n_weights),
        task="jacobian",
        output="probabilities",
    )
    plan = plan_rows(work, jacobian=True)
    variances = rng.uniform(0.1, 2.0, (plan.rows.shape[0], plan.width))
    want = _by_unit_rows(lambda rows: combine_rows(plan, [rows]), variances)
    _assert_close(combine_rows(plan, [variances], variances=True), want)


# ------------------------------------------------------------------ postprocess, by hand

NOISY_1Q = PQCSpec.parse(
    {"n_qubits": 1, "layers": 1, "channel": {"kind": "bit_flip", "strength": 0.05}}
)
"""RY(x) RY(w0) RZ(w1): C = 3 columns (x, w0, w1), each with the two-term rule (+-1/2)."""


def _postprocess(
    tmp_path: Path,
    work: Workload,
    *,
    gradient_budget: int | None = None,
    spsa_directions: int | None = None,
) -> tuple[Prepared, np.ndarray, Gathered]:
    """``postprocess`` of estimator results with random values and known standard errors
    ``(R, S_run, O)`` over ``R = 2`` Pauli-insertion instances; returns the prepared step,
    the per-row variance of the instance average ``(S_run,)`` and the result."""
    backend = RuntimeBackend(
        "fake:manila",
        data_dir=tmp_path,
        mitigate_readout=False,
        instances=2,
        gradient_budget=gradient_budget,
        spsa_directions=spsa_directions,
    )
    prepared = backend.prepare(work)
    r, s = prepared.n_instances, prepared.sets.shape[0]
    assert r == 2
    rng = np.random.default_rng(6)
    stds = rng.uniform(0.01, 0.1, (r, s, 1))
    data = DataBin(evs=rng.uniform(-1, 1, (r, s, 1)), stds=stds, shape=(r, s, 1))
    submitted = Submitted("job-1", PrimitiveResult([PubResult(data)]), None, 1)
    gathered = backend.postprocess(prepared, submitted, None)
    row_var = (stds[:, :, 0] ** 2).sum(axis=0) / r**2  # the average of R instances
    return prepared, row_var, gathered


def _stds(gathered: Gathered) -> np.ndarray:
    """``(B, C)`` the reported standard errors of ``[d_inputs, d_weights]`` (level 0, O = 1)."""
    assert gathered.d_inputs_std is not None and gathered.d_weights_std is not None
    return np.concatenate([gathered.d_inputs_std[0, :, 0], gathered.d_weights_std[0, :, 0]], 1)


def test_parameter_shift_std_is_half_the_root_sum_of_the_two_rows_variances(
    tmp_path: Path,
) -> None:
    """Rows per sample: forward, then x+, x-, w0+, w0-, w1+, w1- (docs of ``_shift``), so
    ``std(d_c) = sqrt(var(c+) + var(c-)) / 2``; ``values_std`` is the forward row's."""
    work = Workload.build(NOISY_1Q, [[0.1], [0.7]], [0.2, -0.3], task="jacobian", shots=100)
    prepared, row_var, gathered = _postprocess(tmp_path, work)
    var = row_var.reshape(2, 7)
    offsets = np.zeros((7, 3))  # the layout: forward, then +-pi/2 on each column in turn
    for c in range(3):
        offsets[1 + 2 * c, c], offsets[2 + 2 * c, c] = np.pi / 2, -np.pi / 2
    sets = prepared.sets.reshape(2, 7, 3)
    np.testing.assert_allclose(sets - sets[:, :1], np.stack([offsets, offsets]), atol=1e-12)
    want = np.sqrt(var[:, 1::2] + var[:, 2::2]) / 2  # (B, C)
    np.testing.assert_allclose(_stds(gathered), want, rtol=1e-12)
    assert gathered.values_std is not None
    np.testing.assert_allclose(gathered.values_std[0, :, 0], np.sqrt(var[:, 0]), rtol=1e-12)


def test_subset_std_weights_the_kept_rows_by_c_over_m_and_drops_the_others(
    tmp_path: Path,
) -> None:
    """``gradient_budget = 1`` of C = 3: each sample's kept column has
    ``std = (3 / 1) sqrt(var(c+) + var(c-)) / 2``, the dropped ones 0."""
    work = Workload.build(NOISY_1Q, [[0.1], [0.7], [1.3]], [0.2, -0.3], task="jacobian", shots=100)
    prepared, row_var, gathered = _postprocess(tmp_path, work, gradient_budget=1)
    assert prepared.selection is not None
    theta = np.array([[x, 0.2, -0.3] for x in (0.1, 0.7, 1.3)])
    want = np.zeros((3, 3))
    for b in range(3):
        delta = prepared.sets - theta[b]  # sample b's rows: 0 or +-pi/2 in one column
        ours = np.all(np.isclose(delta, 0) | np.isclose(np.abs(delta), np.pi / 2), axis=1)
        ours &= (~np.isclose(delta, 0)).sum(axis=1) <= 1
        kept = [i for i in np.flatnonzero(ours) if not np.allclose(delta[i], 0)]
        assert len(kept) == 2  # the forward row and one column's two shift rows run
        column = int(np.argmax(np.abs(delta[kept[0]])))
        assert prepared.selection.columns[b].tolist() == [c == column for c in range(3)]
        want[b, column] = 3 * np.sqrt(row_var[kept].sum()) / 2
    np.testing.assert_allclose(_stds(gathered), want, rtol=1e-12)


def test_spsa_std_is_the_scale_over_n_times_the_root_sum_of_the_pairs_variances(
    tmp_path: Path,
) -> None:
    """One qubit, three frequency-1 columns: ``R = 3``, ``u W = 3 / 2``. With ``n``
    directions every column's estimate is ``sum_d (3 / 2n) (+-1) D_dc [f(+) - f(-)]``, so its
    standard error is ``(3 / 2n) sqrt(sum of the sample's 2n pair variances)``, the same for
    every column whatever the directions."""
    n = 3
    work = Workload.build(NOISY_1Q, [[0.1], [0.7]], [0.2, -0.3], task="jacobian", shots=100)
    prepared, row_var, gathered = _postprocess(tmp_path, work, spsa_directions=n)
    assert prepared.spsa is not None and prepared.spsa.rule.scale == pytest.approx(1.5)
    pairs = row_var.reshape(2, 1 + 2 * n)[:, 1:].sum(axis=1)  # (B,)
    want = np.repeat((1.5 / n) * np.sqrt(pairs)[:, None], 3, axis=1)
    np.testing.assert_allclose(_stds(gathered), want, rtol=1e-12)


# ------------------------------------------------------------------ fake:manila, empirical

N_JOBS, N_SAMPLES = 3, 16
"""48 Jacobian estimates per column: 3 jobs (seeds 0, 1, 2) of 16 identical samples (each
sample's rows are their own circuits with their own shots)."""


def _bounds(df: int) -> tuple[float, float]:
    """Two-sided 1e-4 bounds of ``s / sigma`` for ``s^2`` a sample variance with ``df``
    degrees of freedom (``s^2 / sigma^2 ~ chi2_df / df``): 0.78-1.24 for ``df = 141``,
    0.73-1.29 for ``df = 94``. The estimator's ``stds`` are themselves estimates, but from
    400 shots each and averaged over 48 samples: well inside these bounds."""
    lo, hi = (math.sqrt(float(chi2.ppf(q, df)) / df) for q in (5e-5, 1 - 5e-5))
    return lo, hi


@pytest.mark.parametrize("m3", [False, True])
def test_the_spread_of_repeated_jacobians_matches_their_reported_std(
    tmp_path: Path, m3: bool
) -> None:
    """RY(x) RY(w0) RZ(w1) with ``x + w0 = 0``: the shift rows of x and w0 measure
    ``<Z> = cos(+-pi/2) = 0``, where the binomial spread is largest and mthree's bound is
    tight; those of w1 measure ``<Z> ~ 1``. EstimatorV2: all three columns, pooled
    (``df = 3 * 47``). M3: x and w0 pooled (``df = 2 * 47``); w1's reported standard error is
    mthree's upper bound (about 5x the spread there), so only ``spread <= bound``."""
    spec = PQCSpec.parse({"n_qubits": 1, "layers": 1})
    backend = RuntimeBackend("fake:manila", data_dir=tmp_path, mitigate_readout=m3)
    estimates, stds = [], []
    for seed in range(N_JOBS):
        work = Workload.build(
            spec,
            np.full((N_SAMPLES, 1), 0.4),
            [-0.4, 0.3],
            task="jacobian",
            shots=400,
            seed=seed,
        )
        ev = backend.run(work)
        assert ev.d_inputs is not None and ev.d_weights is not None
        assert ev.d_inputs_std is not None and ev.d_weights_std is not None
        assert ev.d_inputs_std.shape == (1, N_SAMPLES, 1, 1)
        assert ev.d_weights_std.shape == (1, N_SAMPLES, 1, 2)
        estimates.append(np.concatenate([ev.d_inputs[0, :, 0], ev.d_weights[0, :, 0]], 1))
        stds.append(np.concatenate([ev.d_inputs_std[0, :, 0], ev.d_weights_std[0, :, 0]], 1))
    spread2 = np.concatenate(estimates).var(axis=0, ddof=1)  # (3,)
    reported2 = (np.concatenate(stds) ** 2).mean(axis=0)
    ratios = np.sqrt(spread2 / reported2)
    tight = [0, 1, 2] if not m3 else [0, 1]
    pooled = float(np.sqrt(np.mean(spread2[tight] / reported2[tight])))
    lo, hi = _bounds(len(tight) * (N_JOBS * N_SAMPLES - 1))
    assert lo < pooled < hi, (pooled, ratios.tolist(), (lo, hi))
    if m3:
        assert ratios[2] < hi, ratios.tolist()


def test_rows_kept_before_standard_errors_give_none(tmp_path: Path) -> None:
    """A result cache file from before standard errors were kept has no ``std``: the
    Jacobians come back without standard errors, not with made-up ones."""
    work = Workload.build(NOISY_1Q, [[0.1]], [0.2, -0.3], task="jacobian", shots=100)
    backend = RuntimeBackend("fake:manila", data_dir=tmp_path, mitigate_readout=False)
    prepared = backend.prepare(work)
    rows = np.zeros((1, prepared.sets.shape[0], 1))
    gathered = backend.postprocess(prepared, Submitted("old", None, (rows, rows, None), 0), None)
    assert gathered.d_weights is not None and gathered.d_weights.shape == (1, 1, 1, 2)
    assert gathered.values_std is None
    assert gathered.d_inputs_std is None and gathered.d_weights_std is None


def test_the_spread_of_repeated_state_level_jacobians_matches_their_reported_std(
    tmp_path: Path,
) -> None:
    """The state-level path (``output="probabilities"``), on fake:manila with and without M3:
    ``p_0 = (1 + cos(x + w0)) / 2`` with ``x + w0 = 0``, so the shift rows of x and w0 measure
    ``p_0 = 1/2``, where the binomial spread is largest and mthree's bound (``u / 4``) is
    tight. x and w0 pooled, ``df = 2 * 47`` (bounds 0.73-1.29); w1's rows measure
    ``p_0 ~ 1``: without M3 the binomial standard error is still the spread's, with M3 the
    bound is above it."""
    spec = PQCSpec.parse({"n_qubits": 1, "layers": 1})
    for m3 in (False, True):
        backend = RuntimeBackend("fake:manila", data_dir=tmp_path, mitigate_readout=m3)
        estimates, stds = [], []
        for seed in range(N_JOBS):
            inputs = np.full((N_SAMPLES, 1), 0.4)
            work = Workload.build(
                spec,
                inputs,
                [-0.4, 0.3],
                task="jacobian",
                shots=400,
                seed=seed,
                output="probabilities",
            )
            ev = backend.run(work)
            assert ev.d_inputs is not None and ev.d_weights is not None
            assert ev.d_inputs_std is not None and ev.d_weights_std is not None
            assert ev.values_std is not None and ev.values_std.shape == (1, N_SAMPLES, 2)
            assert ev.d_weights_std.shape == (1, N_SAMPLES, 2, 2)
            estimates.append(np.concatenate([ev.d_inputs[0, :, 0], ev.d_weights[0, :, 0]], 1))
            stds.append(np.concatenate([ev.d_inputs_std[0, :, 0], ev.d_weights_std[0, :, 0]], 1))
        spread2 = np.concatenate(estimates).var(axis=0, ddof=1)
        reported2 = (np.concatenate(stds) ** 2).mean(axis=0)
        ratios = np.sqrt(spread2 / reported2)
        pooled = float(np.sqrt(np.mean(spread2[:2] / reported2[:2])))
        lo, hi = _bounds(2 * (N_JOBS * N_SAMPLES - 1))
        assert lo < pooled < hi, (m3, pooled, ratios.tolist())
        assert ratios[2] < hi, (m3, ratios.tolist())
        if not m3:
            assert lo < ratios[2], ratios.tolist()
