"""Unbiased SPSA Jacobians: the shift rule, the exact expectation, a device run, refusals."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from qldm.backends._shift import plan_shifts
from qldm.backends._spsa import (
    EquidistantRule,
    choose_directions,
    spsa_rule,
    spsa_selection,
)
from qldm.backends.base import Context, Workload
from qldm.backends.exact import ExactBackend, expectation
from qldm.backends.runtime import RuntimeBackend
from qldm.bench.reference import REFERENCE_SPEC
from qldm.circuits import PQCSpec
from qldm.errors import InvalidSpecError
from qldm.jobs.model import JobOptions, JobRequest

NOISY_2Q = PQCSpec.parse(
    {"n_qubits": 2, "layers": 1, "channel": {"kind": "amplitude_damping", "strength": 0.1}}
)
"""``angle_ry`` + ``ry_rz_brickwork``: C = 2 + 4 columns, all frequency 1 (u = 1, R = 6)."""

HQCONV = PQCSpec.parse({"n_qubits": 4, "ansatz": "hqconv", "layers": 1})
"""CRZ/CRX weights: C = 4 + 8 columns, frequencies {1/2, 1} (u = 1/2, R = 24); the smallest
spec with controlled rotations (hqconv works on channels of 4 qubits)."""


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Thousands of tiny exact evaluations run faster on one torch thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _exact_rows(spec: PQCSpec, sets: np.ndarray) -> np.ndarray:
    """Exact values ``(S, O)`` of parameter sets ``(S, I + P)``, one engine call per distinct
    weight vector (the rows that share it go in as one batch of inputs)."""
    n_in = spec.n_inputs
    by_weights: dict[bytes, list[int]] = {}
    for i, row in enumerate(sets):
        by_weights.setdefault(row[n_in:].tobytes(), []).append(i)
    out = np.empty((sets.shape[0], spec.n_outputs))
    for key, rows in by_weights.items():
        w = torch.tensor(np.frombuffer(key, dtype=np.float64))
        out[rows] = expectation(spec, torch.as_tensor(sets[rows, :n_in]), w)[0].numpy()
    return out


# ------------------------------------------------------------------ 1. the rule


@pytest.mark.parametrize(("unit", "order"), [(1.0, 1), (1.0, 2), (0.5, 3), (1.0, 7), (0.5, 24)])
def test_equidistant_rule_gives_the_derivative(unit: float, order: int) -> None:
    rule = EquidistantRule(unit, order)
    k = np.arange(order + 1)
    rng = np.random.default_rng(order)
    for _ in range(5):
        a, b = rng.normal(size=(2, order + 1)) / np.sqrt(order + 1)

        def g(t: np.ndarray, a: np.ndarray = a, b: np.ndarray = b) -> np.ndarray:
            phases = np.multiply.outer(t, k * unit)
            return np.cos(phases) @ a + np.sin(phases) @ b

        estimate = rule.coefficients @ (g(rule.shifts) - g(-rule.shifts))
        assert estimate == pytest.approx(float(unit * k @ b), abs=1e-12)
    # W = sum |w_mu| = R / 2 exactly, so the sampled term's factor is u R / 2.
    assert rule.scale == pytest.approx(unit * order / 2, rel=1e-12)
    assert rule.probabilities.sum() == pytest.approx(1.0, abs=1e-15)


def test_equidistant_rule_fails_above_its_order() -> None:
    """A frequency R + 1 aliases: the rule is exact only up to its order (a negative control)."""
    rule = EquidistantRule(1.0, 3)
    estimate = rule.coefficients @ (np.sin(4 * rule.shifts) - np.sin(-4 * rule.shifts))
    assert abs(estimate - 4.0) > 1.0


@pytest.mark.parametrize(
    ("spec", "unit", "order"),
    [
        (PQCSpec.parse(REFERENCE_SPEC), 1.0, 78),  # 6 inputs + 72 weights, all frequency 1
        (HQCONV, 0.5, 24),  # (4 + 8) columns of max frequency 1, in units of 1/2
        (PQCSpec.parse({"n_qubits": 2, "encoding": "dense_angle", "layers": 1}), 1.0, 8),
        (PQCSpec.parse({"n_qubits": 3, "encoding": "phase", "ansatz": "mps"}), 1.0, 7),
    ],
)
def test_spsa_rule_of_specs(spec: PQCSpec, unit: float, order: int) -> None:
    rule = spsa_rule(spec)
    assert (rule.unit, rule.order) == (pytest.approx(unit), order)


# ------------------------------------------------------------------ 2. exact expectation


@pytest.mark.parametrize("spec", [NOISY_2Q, HQCONV], ids=["noisy_brickwork", "hqconv"])
def test_expectation_over_all_directions_and_shifts_is_the_jacobian(
    spec: PQCSpec, one_thread: None
) -> None:
    """Enumerate every direction ``D in {-1, 1}^C`` (probability ``2^-C``) and every ``mu``
    (probability ``|w_mu| / W``), evaluate every parameter set exactly, and average the
    combined estimates with those probabilities: no sampling noise is left."""
    rng = np.random.default_rng(11)
    x = rng.uniform(-math.pi, math.pi, (2, spec.n_inputs))
    w = rng.uniform(-math.pi, math.pi, spec.n_weights)
    plan = plan_shifts(spec, x, w, jacobian=True)
    rule = spsa_rule(spec)
    n_cols = spec.n_inputs + spec.n_weights
    every = np.array(list(itertools.product((-1.0, 1.0), repeat=n_cols)))  # (2^C, C)
    directions = np.broadcast_to(every, (2, *every.shape))
    d_in = np.zeros((2, spec.n_outputs, spec.n_inputs))
    d_w = np.zeros((2, spec.n_outputs, spec.n_weights))
    for mu, probability in enumerate(rule.probabilities):
        picks = np.full((2, every.shape[0]), mu)
        selection = spsa_selection(plan, rule, directions, picks)  # averages over the 2^C
        combined = selection.combine(_exact_rows(spec, selection.parameter_sets))
        assert combined.d_inputs is not None and combined.d_weights is not None
        d_in += probability * combined.d_inputs
        d_w += probability * combined.d_weights
    reference = ExactBackend().run(Workload.build(spec, x, w, task="jacobian"))
    assert reference.d_inputs is not None and reference.d_weights is not None
    np.testing.assert_allclose(d_in, reference.d_inputs[0], rtol=0, atol=1e-10)
    np.testing.assert_allclose(d_w, reference.d_weights[0], rtol=0, atol=1e-10)
    assert np.abs(reference.d_weights).max() > 0.1  # not a trivially zero Jacobian


def test_a_rule_of_too_low_order_is_biased(one_thread: None) -> None:
    """The same enumeration with R = 3 instead of 6 misses the Jacobian (negative control)."""
    spec = NOISY_2Q
    rng = np.random.default_rng(11)
    x = rng.uniform(-math.pi, math.pi, (1, spec.n_inputs))
    w = rng.uniform(-math.pi, math.pi, spec.n_weights)
    plan = plan_shifts(spec, x, w, jacobian=True)
    rule = EquidistantRule(1.0, 3)
    every = np.array(list(itertools.product((-1.0, 1.0), repeat=6)))[None]
    d_w = np.zeros((1, spec.n_outputs, spec.n_weights))
    for mu, probability in enumerate(rule.probabilities):
        selection = spsa_selection(plan, rule, every, np.full((1, 64), mu))
        combined = selection.combine(_exact_rows(spec, selection.parameter_sets))
        assert combined.d_weights is not None
        d_w += probability * combined.d_weights
    reference = ExactBackend().run(Workload.build(spec, x, w, task="jacobian")).d_weights
    assert reference is not None
    assert np.abs(d_w - reference[0]).max() > 0.01


# ------------------------------------------------------------------ 3. Monte Carlo on a device


def test_fake_device_mean_is_the_exact_jacobian(tmp_path: Path) -> None:
    """400 copies of one sample in one job each draw their own direction and shift: the
    per-sample Jacobians are 400 independent estimates at the same point. Their mean lies
    within 4 standard errors of the exact Jacobian in every entry (the device's own bias,
    about 0.01 in the values after M3, is far below one standard error, about 0.08)."""
    spec = PQCSpec.parse({"n_qubits": 2, "layers": 1})
    x = np.array([[0.3, -1.1]])
    w = np.array([0.5, -0.4, 1.3, 0.2])
    n = 400
    work = Workload.build(spec, np.repeat(x, n, axis=0), w, task="jacobian", shots=1000, seed=3)
    ev = RuntimeBackend("fake:manila", data_dir=tmp_path, spsa_directions=1).run(work)
    assert ev.metadata["circuits"] == n * (1 + 2)  # parameter shift: n * (1 + 2 * 6)
    assert ev.metadata["gradient"]["method"] == "spsa"
    assert ev.metadata["gradient"]["order"] == 6
    assert ev.metadata["gradient"]["scale"] == pytest.approx(3.0)
    reference = ExactBackend().run(Workload.build(spec, x, w, task="jacobian"))
    assert reference.d_inputs is not None and reference.d_weights is not None
    assert ev.d_inputs is not None and ev.d_weights is not None
    estimates = np.concatenate([ev.d_inputs[0], ev.d_weights[0]], axis=2)  # (n, O, C)
    exact = np.concatenate([reference.d_inputs[0, 0], reference.d_weights[0, 0]], axis=1)
    standard_error = estimates.std(axis=0, ddof=1) / math.sqrt(n)
    assert np.all(np.abs(estimates.mean(axis=0) - exact) <= 4 * standard_error)
    assert np.abs(exact).max() > 6 * standard_error.max()  # an estimate of 0 would fail
    # forward values: 400 x 1000 shots, so the mean is the device's value (M3-mitigated)
    np.testing.assert_allclose(ev.values[0].mean(axis=0), reference.values[0, 0], atol=0.03)


def test_runtime_directions_follow_the_job_seed(tmp_path: Path) -> None:
    spec = PQCSpec.parse({"n_qubits": 2, "layers": 1})
    x, w = np.array([[0.3, -1.1], [2.0, 0.7]]), np.array([0.5, -0.4, 1.3, 0.2])
    backend = RuntimeBackend("fake:manila", data_dir=tmp_path)
    runs = [
        backend.run(
            Workload.build(spec, x, w, task="jacobian", shots=500, seed=seed),
            Context(options=JobOptions(spsa_directions=2)),
        )
        for seed in (5, 5, 6)
    ]
    assert [r.metadata["circuits"] for r in runs] == [2 * (1 + 2 * 2)] * 3
    assert runs[0].d_weights is not None and runs[2].d_weights is not None
    np.testing.assert_array_equal(runs[0].d_weights, runs[1].d_weights)
    assert not np.allclose(runs[0].d_weights, runs[2].d_weights)


# ------------------------------------------------------------------ 4. refusals


def test_refuses_both_estimators(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpecError) as exc:
        RuntimeBackend("fake:manila", data_dir=tmp_path, gradient_budget=2, spsa_directions=1)
    assert exc.value.field == "spsa_directions"
    spec = PQCSpec.parse({"n_qubits": 2, "layers": 1})
    work = Workload.build(spec, [[0.1, 0.2]], [0.0] * 4, task="jacobian", shots=100)
    backend = RuntimeBackend("fake:manila", data_dir=tmp_path, gradient_budget=2)
    with pytest.raises(InvalidSpecError) as exc:
        backend.run(work, Context(options=JobOptions(spsa_directions=1)))
    assert exc.value.field == "spsa_directions"
    body = {"circuit": spec.model_dump(), "inputs": [[0.1, 0.2]], "weights": [0.0] * 4}
    with pytest.raises(InvalidSpecError) as exc:
        JobRequest.parse({**body, "options": {"gradient_budget": 2, "spsa_directions": 1}})
    assert exc.value.field == "options.spsa_directions"
    for bad in (0, 1001):
        with pytest.raises(InvalidSpecError) as exc:
            JobRequest.parse({**body, "options": {"spsa_directions": bad}})
        assert exc.value.field == "options.spsa_directions"


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, 1001])
def test_refuses_bad_direction_counts(bad: Any, tmp_path: Path) -> None:
    with pytest.raises(InvalidSpecError) as exc:
        RuntimeBackend("fake:manila", data_dir=tmp_path, spsa_directions=bad)
    assert exc.value.field == "spsa_directions"
    plan = plan_shifts(NOISY_2Q, np.zeros((1, 2)), np.zeros(4), jacobian=True)
    with pytest.raises(InvalidSpecError) as exc:
        choose_directions(plan, bad, np.random.default_rng(0))
    assert exc.value.field == "spsa_directions"


def test_refuses_amplitude_encoding(tmp_path: Path) -> None:
    spec = PQCSpec.parse({"n_qubits": 2, "encoding": "amplitude", "layers": 1})
    with pytest.raises(InvalidSpecError, match="amplitude") as exc:
        spsa_rule(spec)
    assert exc.value.field == "spsa_directions"
    work = Workload.build(spec, [[0.5, 0.5, 0.5, 0.5]], [0.0] * 4, task="jacobian", shots=100)
    with pytest.raises(InvalidSpecError) as exc:
        RuntimeBackend("fake:manila", data_dir=tmp_path, spsa_directions=1).run(work)
    assert exc.value.field == "spsa_directions"


def test_refuses_incommensurate_frequencies() -> None:
    """``basis`` encodes RX(pi x): frequency pi next to the weights' 1 has no common unit."""
    spec = PQCSpec.parse({"n_qubits": 2, "encoding": "basis", "layers": 1})
    with pytest.raises(InvalidSpecError, match="no common unit") as exc:
        spsa_rule(spec)
    assert exc.value.field == "spsa_directions"
    plan = plan_shifts(spec, np.array([[1.0, 0.0]]), np.zeros(4), jacobian=True)
    with pytest.raises(InvalidSpecError) as exc:
        choose_directions(plan, 1, np.random.default_rng(0))
    assert exc.value.field == "spsa_directions"


def test_refuses_a_plan_without_jacobian() -> None:
    plan = plan_shifts(NOISY_2Q, np.zeros((1, 2)), np.zeros(4), jacobian=False)
    with pytest.raises(InvalidSpecError) as exc:
        choose_directions(plan, 1, np.random.default_rng(0))
    assert exc.value.field == "spsa_directions"
