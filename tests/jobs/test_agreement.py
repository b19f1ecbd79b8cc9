"""The key correctness test: the ``exact`` torch engine and Aer agree on every kind of spec.

Two independent implementations (a torch density-matrix/Heisenberg engine with autograd, and
Qiskit Aer with parameter-shift rules and the amplitude-encoding quadratic-form identity) must
give the same values (to 1e-6) and the same Jacobians by inputs and by weights (to 1e-5) on
seeded random specs that cover every encoding, every ansatz, every channel (scalar and
per-layer strengths, several noise levels at once) and Pauli-string observables with X and Y.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from qldm.backends.aer import AerBackend
from qldm.backends.base import Evaluation, Workload
from qldm.circuits import PQCSpec
from qldm.circuits.spec import ANSATZE, CHANNEL_KINDS, ENCODINGS

VALUE_TOL = 1e-6
JACOBIAN_TOL = 1e-5


@dataclass(frozen=True)
class Case:
    """One randomized agreement case."""

    spec: PQCSpec
    inputs: np.ndarray
    weights: np.ndarray
    noise_levels: np.ndarray | None

    @property
    def id(self) -> str:
        s = self.spec
        levels = "" if self.noise_levels is None else f"-K{self.noise_levels.size}"
        per_layer = "-perlayer" if isinstance(s.channel.strength, tuple) else ""
        obs = "z" if s.observables == "z_each" else "pauli"
        return (
            f"{s.encoding}-{s.ansatz}-n{s.n_qubits}-L{s.layers}-{s.channel.kind}{per_layer}"
            f"{levels}-{obs}-B{self.inputs.shape[0]}"
        )


def _n_qubits(ansatz: str, rng: np.random.Generator) -> int:
    if ansatz == "hqconv":
        return 4
    if ansatz == "fqconv":
        return 8
    if ansatz == "mps":
        return int(rng.integers(2, 5))
    return int(rng.integers(1, 5))


def _pauli_strings(n: int, rng: np.random.Generator) -> tuple[str, ...]:
    """2-4 random Pauli strings; the first always holds an X and the second a Y."""
    labels = []
    for j in range(int(rng.integers(2, 5))):
        chars = list(rng.choice(list("IXYZ"), size=n))
        if j < 2:
            chars[int(rng.integers(n))] = "XY"[j]
        labels.append("".join(chars))
    return tuple(labels)


def _inputs(spec: PQCSpec, batch: int, rng: np.random.Generator) -> np.ndarray:
    if spec.encoding == "basis":
        x = rng.integers(0, 2, size=(batch, spec.n_inputs)).astype(float)
        x[-1, 0] = 0.37  # a point of the smooth extension between the bits
        return x
    if spec.encoding == "amplitude":
        x = rng.normal(size=(batch, spec.n_inputs))
        if batch > 1:  # a basis state: the perturbation psi - e_k vanishes
            x[0] = 0.0
            x[0, int(rng.integers(spec.n_inputs))] = 1.5
        return x
    return rng.uniform(-np.pi, np.pi, size=(batch, spec.n_inputs))


def _make_case(index: int, encoding: str, ansatz: str, kind: str, rng: np.random.Generator) -> Case:
    n = _n_qubits(ansatz, rng)
    big = n >= 8
    layers = 1 if big else int(rng.integers(1, 3))
    channel: dict[str, Any] = {"kind": kind}
    if kind != "none":
        if index % 2 and layers > 1:
            channel["strength"] = tuple(float(s) for s in rng.uniform(0.01, 0.3, size=layers))
        else:
            channel["strength"] = float(rng.uniform(0.01, 0.3))
    observables: Any = "z_each" if index % 2 == 0 else _pauli_strings(n, rng)
    spec = PQCSpec.model_validate(
        {
            "n_qubits": n,
            "encoding": encoding,
            "ansatz": ansatz,
            "layers": layers,
            "channel": channel,
            "observables": observables,
        }
    )
    batch = 1 if big else 1 + index % 3
    levels = None
    if kind != "none" and index % 3 == 0 and not (big and encoding == "amplitude"):
        levels = np.concatenate([[0.0], rng.uniform(0.05, 0.6, size=1 + index % 2)])
    weights = rng.uniform(-np.pi, np.pi, size=spec.n_weights)
    return Case(spec, _inputs(spec, batch, rng), weights, levels)


def make_cases(seed: int = 20261122) -> list[Case]:
    """Every encoding with every ansatz except ``fqconv`` (8 qubits: three cases only), and
    three more. The channel, the per-layer strengths, the noise levels and the observables
    cycle with the case index, so that each appears with several encodings and ansätze."""
    rng = np.random.default_rng(seed)
    small = [a for a in ANSATZE if a != "fqconv"]
    combos = [(e, a) for e in ENCODINGS for a in small]
    combos += [("angle_ry", "fqconv"), ("basis", "fqconv"), ("dense_angle", "fqconv")]
    combos += [("angle_ry", "ry_rz_brickwork"), ("phase", "basic_entangler"), ("amplitude", "mps")]
    cases = []
    for index, (encoding, ansatz) in enumerate(combos):
        kind = CHANNEL_KINDS[index % len(CHANNEL_KINDS)]
        cases.append(_make_case(index, encoding, ansatz, kind, rng))
    return cases


CASES = make_cases()


def test_cases_cover_every_feature() -> None:
    specs = [c.spec for c in CASES]
    assert {s.encoding for s in specs} == set(ENCODINGS)
    assert {s.ansatz for s in specs} == set(ANSATZE)
    assert {s.channel.kind for s in specs} == set(CHANNEL_KINDS)
    assert sum(isinstance(s.channel.strength, tuple) for s in specs) >= 3
    assert sum(c.noise_levels is not None and c.noise_levels.size > 1 for c in CASES) >= 5
    with_levels = {c.spec.channel.kind for c in CASES if c.noise_levels is not None}
    assert with_levels == set(CHANNEL_KINDS) - {"none"}
    paulis = [lab for s in specs if s.observables != "z_each" for lab in s.observables]
    assert any("X" in lab for lab in paulis) and any("Y" in lab for lab in paulis)
    assert len(CASES) >= 30


@pytest.fixture(scope="module")
def aer() -> AerBackend:
    return AerBackend()


@pytest.fixture(scope="module")
def exact() -> Any:
    from qldm.backends.exact import ExactBackend

    return ExactBackend()


def _jac(ev: Evaluation) -> tuple[np.ndarray, np.ndarray]:
    if ev.d_inputs is None or ev.d_weights is None:
        raise AssertionError("a jacobian task must return both Jacobians")
    return np.asarray(ev.d_inputs), np.asarray(ev.d_weights)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_exact_and_aer_agree(case: Case, aer: AerBackend, exact: Any) -> None:
    work = Workload.build(
        case.spec, case.inputs, case.weights, noise_levels=case.noise_levels, task="jacobian"
    )
    a = aer.run(work)
    e = exact.run(work)
    k, b, o, i, p = (
        work.n_levels,
        case.inputs.shape[0],
        case.spec.n_outputs,
        case.spec.n_inputs,
        case.spec.n_weights,
    )
    assert np.asarray(e.values).shape == a.values.shape == (k, b, o)
    a_dx, a_dw = _jac(a)
    e_dx, e_dw = _jac(e)
    assert e_dx.shape == a_dx.shape == (k, b, o, i)
    assert e_dw.shape == a_dw.shape == (k, b, o, p)
    np.testing.assert_allclose(np.asarray(e.values), a.values, rtol=0, atol=VALUE_TOL)
    np.testing.assert_allclose(e_dx, a_dx, rtol=0, atol=JACOBIAN_TOL, err_msg="d_inputs")
    np.testing.assert_allclose(e_dw, a_dw, rtol=0, atol=JACOBIAN_TOL, err_msg="d_weights")


@pytest.mark.parametrize("case", CASES[::5], ids=[c.id for c in CASES[::5]])
def test_expectation_task_agrees(case: Case, aer: AerBackend, exact: Any) -> None:
    """Values alone (task ``expectation``) agree too, and match the jacobian task's values."""
    work = Workload.build(case.spec, case.inputs, case.weights, noise_levels=case.noise_levels)
    a = aer.run(work)
    e = exact.run(work)
    assert a.d_inputs is None and a.d_weights is None
    np.testing.assert_allclose(np.asarray(e.values), a.values, rtol=0, atol=VALUE_TOL)


NOISELESS = [c for c in CASES if not c.spec.noisy]


@pytest.mark.parametrize("case", NOISELESS, ids=[c.id for c in NOISELESS])
def test_exact_statevector_engine_agrees(case: Case, aer: AerBackend) -> None:
    """The exact backend's second engine (statevector, for noiseless specs), forced."""
    import torch

    from qldm.backends.exact import expectation

    x = torch.tensor(case.inputs, dtype=torch.float64)
    w = torch.tensor(case.weights, dtype=torch.float64)

    def values(xx: torch.Tensor, ww: torch.Tensor) -> torch.Tensor:
        return expectation(case.spec, xx, ww, engine="statevector")

    work = Workload.build(case.spec, case.inputs, case.weights, task="jacobian")
    a = aer.run(work)
    a_dx, a_dw = _jac(a)
    np.testing.assert_allclose(values(x, w).detach().numpy(), a.values, rtol=0, atol=VALUE_TOL)
    jx, jw = torch.autograd.functional.jacobian(values, (x, w))  # (K,B,O,B,I), (K,B,O,P)
    b = np.arange(x.shape[0])
    e_dx = jx.numpy()[:, b, :, b, :].transpose(1, 0, 2, 3)  # diagonal in the batch
    np.testing.assert_allclose(e_dx, a_dx, rtol=0, atol=JACOBIAN_TOL, err_msg="d_inputs")
    np.testing.assert_allclose(jw.numpy(), a_dw, rtol=0, atol=JACOBIAN_TOL, err_msg="d_weights")


def test_exact_large_batch_statevector_path_agrees(aer: AerBackend, exact: Any) -> None:
    """A noiseless batch larger than 4 O 2^n makes ExactBackend pick its statevector engine."""
    spec = PQCSpec.model_validate(
        {
            "n_qubits": 2,
            "encoding": "angle_rx",
            "ansatz": "basic_entangler",
            "layers": 1,
            "observables": ["XY", "ZI"],
        }
    )
    rng = np.random.default_rng(5)
    x = rng.uniform(-np.pi, np.pi, size=(4 * 2 * 4 + 1, 2))
    w = rng.uniform(-np.pi, np.pi, size=spec.n_weights)
    work = Workload.build(spec, x, w, task="jacobian")
    e, a = exact.run(work), aer.run(work)
    assert e.metadata.get("engine") == "statevector"
    np.testing.assert_allclose(e.values, a.values, rtol=0, atol=VALUE_TOL)
    for got, want in zip(_jac(e), _jac(a), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=JACOBIAN_TOL)
