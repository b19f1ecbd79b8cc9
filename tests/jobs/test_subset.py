"""Shot-frugal subset gradients: unbiased against the exact Jacobian, fewer circuits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qldm.backends._shift import combine_levels, plan_shifts
from qldm.backends._subset import choose_subsets
from qldm.backends.base import Workload
from qldm.backends.exact import ExactBackend
from qldm.backends.runtime import RuntimeBackend
from qldm.circuits import PQCSpec
from qldm.errors import InvalidSpecError

SPEC = PQCSpec.parse({"n_qubits": 2, "layers": 1})
X = np.array([[0.3, -1.1], [2.0, 0.7]])
W = np.array([0.5, -0.4, 1.3, 0.2])


def _row_values(plan_sets: np.ndarray) -> np.ndarray:
    """Exact values of every plan row, ``(S, O)``, each row evaluated on its own."""
    exact = ExactBackend()
    n_in = SPEC.n_inputs
    return np.stack(
        [
            exact.run(Workload.build(SPEC, row[None, :n_in], row[n_in:])).values[0, 0]
            for row in plan_sets
        ]
    )


def test_subset_gradient_is_unbiased() -> None:
    plan = plan_shifts(SPEC, X, W, jacobian=True)
    values = _row_values(plan.groups[0].parameter_sets)
    reference = ExactBackend().run(Workload.build(SPEC, X, W, task="jacobian"))
    rng = np.random.default_rng(0)
    d_in, d_w = [], []
    for _ in range(3000):
        selection = choose_subsets(plan, 2, rng)
        full = selection.expand(values[None][:, selection.rows], values.shape[0])
        _, di, dw = combine_levels(plan, list(full), 1)
        assert di is not None and dw is not None
        d_in.append(di)
        d_w.append(dw)
    # One estimate is not the Jacobian (4 of 6 columns per sample are left out) ...
    assert np.abs(d_w[0] - reference.d_weights).max() > 0.05
    # ... the mean is. Each entry has variance g^2 (C/m - 1) = 2 g^2: 3,000 draws give a
    # standard error below 0.026 |g|; allow about four of them.
    scale = max(np.abs(reference.d_weights).max(), np.abs(reference.d_inputs).max())
    np.testing.assert_allclose(np.mean(d_in, axis=0), reference.d_inputs, atol=0.1 * scale)
    np.testing.assert_allclose(np.mean(d_w, axis=0), reference.d_weights, atol=0.1 * scale)


def test_antithetic_pairs_do_not_overlap_and_rows_shrink() -> None:
    plan = plan_shifts(SPEC, X, W, jacobian=True)
    selection = choose_subsets(plan, 3, np.random.default_rng(1))
    assert selection.columns.sum(axis=1).tolist() == [3, 3]
    assert not np.any(selection.columns[0] & selection.columns[1])
    assert selection.rows.size == 2 * (1 + 3 * 2)  # forward + two shift terms per column
    with pytest.raises(InvalidSpecError):
        choose_subsets(plan, 0, np.random.default_rng(1))


def test_runtime_backend_runs_fewer_circuits(tmp_path: Path) -> None:
    work = Workload.build(SPEC, X, W, task="jacobian", shots=2000, seed=4)
    ev = RuntimeBackend("fake:manila", data_dir=tmp_path, gradient_budget=2).run(work)
    assert ev.metadata["circuits"] == 2 * (1 + 2 * 2)
    assert ev.metadata["gradient"] == {"method": "subset", "budget": 2}
    exact = ExactBackend().run(Workload.build(SPEC, X, W)).values
    np.testing.assert_allclose(ev.values, exact, atol=0.06)
    assert ev.d_weights is not None and np.count_nonzero(ev.d_weights) <= 2 * 2 * 2
