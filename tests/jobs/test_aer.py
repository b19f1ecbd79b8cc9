"""The ``aer`` backend against closed forms, finite differences and shot statistics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from qldm.backends import get_backend
from qldm.backends._shift import combine_levels, plan_shifts
from qldm.backends.aer import AerBackend
from qldm.backends.base import Evaluation, Workload
from qldm.circuits import PQCSpec
from qldm.errors import BackendError, BackendLimitError, InvalidSpecError


def _jac(ev: Evaluation) -> tuple[np.ndarray, np.ndarray]:
    """``(d_inputs, d_weights)`` of a ``jacobian`` evaluation."""
    if ev.d_inputs is None or ev.d_weights is None:
        raise AssertionError("a jacobian task must return both Jacobians")
    return ev.d_inputs, ev.d_weights


def _spec(**fields: Any) -> PQCSpec:
    return PQCSpec.model_validate(fields)


@pytest.fixture(scope="module")
def aer() -> AerBackend:
    return AerBackend()


def _one_qubit(encoding: str, kind: str = "none", strength: Any = 0.0, layers: int = 1) -> PQCSpec:
    return _spec(
        n_qubits=1,
        encoding=encoding,
        ansatz="basic_entangler",
        layers=layers,
        channel={"kind": kind, "strength": strength},
        observables=["X", "Y", "Z"],
    )


def _bloch_after_rx(bloch: np.ndarray, w: float) -> np.ndarray:
    """RX(w) rotates the Bloch vector about x: y' = y cos w - z sin w, z' = y sin w + z cos w."""
    x, y, z = bloch
    return np.array([x, y * math.cos(w) - z * math.sin(w), y * math.sin(w) + z * math.cos(w)])


def _channel(bloch: np.ndarray, kind: str, s: float) -> np.ndarray:
    x, y, z = bloch
    if kind == "amplitude_damping":
        r = math.sqrt(1 - s)
        return np.array([r * x, r * y, s + (1 - s) * z])
    if kind == "bit_flip":
        return np.array([x, (1 - 2 * s) * y, (1 - 2 * s) * z])
    if kind == "phase_flip":
        return np.array([(1 - 2 * s) * x, (1 - 2 * s) * y, z])
    if kind == "depolarizing":
        return (1 - s) * bloch
    return bloch


def _channel_linear(bloch: np.ndarray, kind: str, s: float) -> np.ndarray:
    """The linear part of the (affine) channel map: how it acts on a derivative."""
    if kind == "amplitude_damping":
        r = math.sqrt(1 - s)
        return bloch * np.array([r, r, 1 - s])
    return _channel(bloch, kind, s)


KINDS = ["none", "amplitude_damping", "bit_flip", "phase_flip", "depolarizing"]


@pytest.mark.parametrize("kind", KINDS)
def test_ry_then_rx_then_channel_closed_form(aer: AerBackend, kind: str) -> None:
    """RY(t) gives Bloch (sin t, 0, cos t); RX(w) rotates it; the channel shrinks/shifts it."""
    s = 0.0 if kind == "none" else 0.23
    spec = _one_qubit("angle_ry", kind, s)
    thetas, w = np.array([0.3, 1.9, -2.4]), 0.8
    ev = aer.run(Workload.build(spec, thetas[:, None], [w], task="jacobian"))
    for b, t in enumerate(thetas):
        expected = _channel(_bloch_after_rx(np.array([math.sin(t), 0.0, math.cos(t)]), w), kind, s)
        d_bloch = _bloch_after_rx(np.array([math.cos(t), 0.0, -math.sin(t)]), w)
        d_t = _channel_linear(d_bloch, kind, s)
        np.testing.assert_allclose(ev.values[0, b], expected, atol=1e-10)
        np.testing.assert_allclose(_jac(ev)[0][0, b, :, 0], d_t, atol=1e-10)
    assert ev.metadata["method"] == ("statevector" if kind == "none" else "density_matrix")


def test_amplitude_damping_z_closed_form(aer: AerBackend) -> None:
    """<Z> after RY(t), RX(0) and amplitude damping g is g + (1 - g) cos t, at K levels."""
    spec = _one_qubit("angle_ry", "amplitude_damping", 0.1)
    levels = np.array([0.0, 0.01, 0.3, 1.0])
    t = np.array([[0.4], [2.2]])
    ev = aer.run(Workload.build(spec, t, [0.0], noise_levels=levels, task="jacobian"))
    assert ev.values.shape == (4, 2, 3)
    for k, g in enumerate(levels):
        np.testing.assert_allclose(ev.values[k, :, 2], g + (1 - g) * np.cos(t[:, 0]), atol=1e-12)
        np.testing.assert_allclose(_jac(ev)[0][k, :, 2, 0], -(1 - g) * np.sin(t[:, 0]), atol=1e-12)
    # g = 1 resets to |0>: nothing depends on the parameters any more
    np.testing.assert_allclose(_jac(ev)[0][3], 0.0, atol=1e-12)
    np.testing.assert_allclose(_jac(ev)[1][3], 0.0, atol=1e-12)


def test_per_layer_depolarizing_closed_form(aer: AerBackend) -> None:
    """Depolarizing commutes with rotations: RX(w1) D(s1) RX(w2) D(s2) = (1-s1)(1-s2) RX(w1+w2)."""
    spec = _one_qubit("angle_rx", "depolarizing", (0.1, 0.35), layers=2)
    x, w1, w2 = 0.5, 0.7, -1.3
    ev = aer.run(Workload.build(spec, [[x]], [w1, w2], task="jacobian"))
    shrink = 0.9 * 0.65
    angle = x + w1 + w2
    np.testing.assert_allclose(
        ev.values[0, 0], shrink * np.array([0.0, -math.sin(angle), math.cos(angle)]), atol=1e-12
    )
    d = shrink * np.array([0.0, -math.cos(angle), -math.sin(angle)])
    np.testing.assert_allclose(_jac(ev)[0][0, 0, :, 0], d, atol=1e-12)
    np.testing.assert_allclose(_jac(ev)[1][0, 0], np.stack([d, d], axis=1), atol=1e-12)


def test_encodings_closed_forms(aer: AerBackend) -> None:
    """Phase, dense-angle and basis encodings followed by RX(w), noiseless."""
    w = 0.6
    # phase: H then P(x): Bloch (cos x, sin x, 0)
    x = 1.1
    ev = aer.run(Workload.build(_one_qubit("phase"), [[x]], [w], task="jacobian"))
    bloch = _bloch_after_rx(np.array([math.cos(x), math.sin(x), 0.0]), w)
    np.testing.assert_allclose(ev.values[0, 0], bloch, atol=1e-12)
    d = _bloch_after_rx(np.array([-math.sin(x), math.cos(x), 0.0]), w)
    np.testing.assert_allclose(_jac(ev)[0][0, 0, :, 0], d, atol=1e-12)
    # dense_angle: RY(a) RZ(b): Bloch (sin a cos b, sin a sin b, cos a)
    a, b = 0.9, -0.4
    ev = aer.run(Workload.build(_one_qubit("dense_angle"), [[a, b]], [w], task="jacobian"))
    bloch = np.array([math.sin(a) * math.cos(b), math.sin(a) * math.sin(b), math.cos(a)])
    np.testing.assert_allclose(ev.values[0, 0], _bloch_after_rx(bloch, w), atol=1e-12)
    d_a = np.array([math.cos(a) * math.cos(b), math.cos(a) * math.sin(b), -math.sin(a)])
    d_b = np.array([-math.sin(a) * math.sin(b), math.sin(a) * math.cos(b), 0.0])
    np.testing.assert_allclose(_jac(ev)[0][0, 0, :, 0], _bloch_after_rx(d_a, w), atol=1e-12)
    np.testing.assert_allclose(_jac(ev)[0][0, 0, :, 1], _bloch_after_rx(d_b, w), atol=1e-12)
    # basis: RX(pi x) then RX(w) = RX(pi x + w): <Z> = cos(pi x + w), d/dx = -pi sin(pi x + w)
    xs = np.array([[0.0], [1.0], [0.3]])
    ev = aer.run(Workload.build(_one_qubit("basis"), xs, [w], task="jacobian"))
    angle = math.pi * xs[:, 0] + w
    np.testing.assert_allclose(ev.values[0, :, 2], np.cos(angle), atol=1e-12)
    np.testing.assert_allclose(_jac(ev)[0][0, :, 2, 0], -math.pi * np.sin(angle), atol=1e-12)
    np.testing.assert_allclose(_jac(ev)[1][0, :, 2, 0], -np.sin(angle), atol=1e-12)


def test_amplitude_one_qubit_closed_form(aer: AerBackend) -> None:
    """psi = x/|x| has <Z> = (x0^2 - x1^2)/r^2; after RX(w) it is scaled by cos w."""
    w = 0.5
    xs = np.array([[0.3, -0.8], [2.0, 1.0], [0.0, -3.0]])
    ev = aer.run(Workload.build(_one_qubit("amplitude"), xs, [w], task="jacobian"))
    x0, x1 = xs[:, 0], xs[:, 1]
    r2 = x0**2 + x1**2
    np.testing.assert_allclose(ev.values[0, :, 2], (x0**2 - x1**2) / r2 * math.cos(w), atol=1e-12)
    np.testing.assert_allclose(ev.values[0, :, 0], 2 * x0 * x1 / r2, atol=1e-12)
    d_x = _jac(ev)[0][0, :, 2]
    np.testing.assert_allclose(d_x[:, 0], 4 * x0 * x1**2 / r2**2 * math.cos(w), atol=1e-12)
    np.testing.assert_allclose(d_x[:, 1], -4 * x1 * x0**2 / r2**2 * math.cos(w), atol=1e-12)
    np.testing.assert_allclose(
        _jac(ev)[1][0, :, 2, 0], -(x0**2 - x1**2) / r2 * math.sin(w), atol=1e-12
    )


JACOBIAN_SPECS = [
    {
        "n_qubits": 4,
        "encoding": "angle_ry",
        "ansatz": "hqconv",
        "layers": 1,
        "channel": {"kind": "amplitude_damping", "strength": 0.05},
        "observables": "z_each",
    },
    {
        "n_qubits": 3,
        "encoding": "basis",
        "ansatz": "ry_rz_brickwork",
        "layers": 2,
        "channel": {"kind": "bit_flip", "strength": [0.02, 0.1]},
        "observables": ["XYZ", "IZI"],
    },
    {
        "n_qubits": 3,
        "encoding": "amplitude",
        "ansatz": "mps",
        "layers": 2,
        "channel": {"kind": "depolarizing", "strength": 0.05},
        "observables": ["YIX", "ZZZ"],
    },
    {
        "n_qubits": 2,
        "encoding": "phase",
        "ansatz": "basic_entangler",
        "layers": 2,
        "observables": ["XY", "ZX", "YY"],
    },
]


@pytest.mark.parametrize("fields", JACOBIAN_SPECS, ids=lambda f: f"{f['encoding']}-{f['ansatz']}")
def test_shift_jacobians_match_finite_differences(aer: AerBackend, fields: dict[str, Any]) -> None:
    """Parameter-shift Jacobians vs central differences of Aer's own exact values."""
    spec = PQCSpec.model_validate(fields)
    rng = np.random.default_rng(7)
    x = rng.uniform(-1.5, 1.5, (2, spec.n_inputs))
    w = rng.uniform(-np.pi, np.pi, spec.n_weights)
    levels = [0.03, 0.2] if spec.noisy else None
    ev = aer.run(Workload.build(spec, x, w, noise_levels=levels, task="jacobian"))

    def f(xx: np.ndarray, ww: np.ndarray) -> np.ndarray:
        return aer.run(Workload.build(spec, xx, ww, noise_levels=levels)).values

    h = 1e-5
    fd_x = np.stack(
        [(f(x + h * e, w) - f(x - h * e, w)) / (2 * h) for e in np.eye(spec.n_inputs)[:, None, :]],
        axis=-1,
    )
    fd_w = np.stack(
        [(f(x, w + h * e) - f(x, w - h * e)) / (2 * h) for e in np.eye(spec.n_weights)], axis=-1
    )
    np.testing.assert_allclose(_jac(ev)[0], fd_x, atol=1e-7)
    np.testing.assert_allclose(_jac(ev)[1], fd_w, atol=1e-7)
    np.testing.assert_allclose(ev.values, f(x, w), atol=1e-12)


def test_shots_are_binomial_and_seeded(aer: AerBackend) -> None:
    """Shot estimates scatter around the exact values by sqrt((1 - e^2) / N)."""
    spec = _spec(
        n_qubits=3,
        encoding="angle_ry",
        ansatz="ry_rz_brickwork",
        layers=1,
        channel={"kind": "amplitude_damping", "strength": 0.1},
        observables=["ZII", "IXI", "IIY", "XZX"],
    )
    rng = np.random.default_rng(3)
    x = rng.uniform(0, np.pi, (3, 3))
    w = rng.uniform(-np.pi, np.pi, spec.n_weights)
    levels = [0.1, 0.4]
    shots = 4000
    exact = aer.run(Workload.build(spec, x, w, noise_levels=levels, task="jacobian"))
    first = aer.run(
        Workload.build(spec, x, w, noise_levels=levels, task="jacobian", shots=shots, seed=11)
    )
    again = aer.run(
        Workload.build(spec, x, w, noise_levels=levels, task="jacobian", shots=shots, seed=11)
    )
    other = aer.run(
        Workload.build(spec, x, w, noise_levels=levels, task="jacobian", shots=shots, seed=12)
    )
    assert first.metadata["sampling"] == "binomial" and first.metadata["shots"] == shots
    np.testing.assert_array_equal(first.values, again.values)
    np.testing.assert_array_equal(_jac(first)[1], _jac(again)[1])
    assert not np.array_equal(first.values, other.values)
    # every estimate is a multiple of 2/N
    counts = (first.values + 1) * shots / 2
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-6)
    sigma = np.sqrt(np.maximum(1 - exact.values**2, 1e-12) / shots)
    z = (first.values - exact.values) / sigma
    assert np.all(np.abs(z) < 5.0)
    assert 0.3 < np.mean(z**2) < 2.5  # 24 unit-variance draws
    # two-term shift rule: Var = (var_+ + var_-) / 4 <= 1 / (2N); noise levels get their own draws
    grad_sigma = math.sqrt(0.5 / shots)
    assert np.all(np.abs(_jac(first)[0] - _jac(exact)[0]) < 5 * grad_sigma)
    assert np.all(np.abs(_jac(first)[1] - _jac(exact)[1]) < 5 * grad_sigma)
    assert not np.allclose(first.values[0] - exact.values[0], first.values[1] - exact.values[1])


def _count_runs(backend: AerBackend, method: str) -> list[int]:
    """Wrap the estimator instance's ``run`` so that each call is counted (it still runs)."""
    estimator = backend.estimator(method)
    calls: list[int] = []
    original = estimator.run

    def counting_run(pubs: Any, **kwargs: Any) -> Any:
        pubs = list(pubs)
        calls.append(len(pubs))
        return original(pubs, **kwargs)

    estimator.run = counting_run
    return calls


def test_one_estimator_run_per_workload() -> None:
    backend = AerBackend()
    dm_calls = _count_runs(backend, "density_matrix")
    sv_calls = _count_runs(backend, "statevector")
    spec = _spec(
        n_qubits=2,
        encoding="angle_ry",
        ansatz="ry_rz_brickwork",
        layers=2,
        channel={"kind": "phase_flip", "strength": 0.1},
    )
    x = np.zeros((3, 2))
    w = np.zeros(spec.n_weights)
    ev = backend.run(Workload.build(spec, x, w, noise_levels=[0.1, 0.2, 0.3], task="jacobian"))
    # T = 2 terms x (2 inputs + 8 weights) = 20; (1 + 20) sets per sample, 3 samples, 3 levels
    assert dm_calls == [3] and sv_calls == []
    assert ev.metadata["submissions"] == 1
    assert ev.metadata["pubs"] == 3
    assert ev.metadata["parameter_sets"] == 3 * 3 * 21
    assert _jac(ev)[0].shape == (3, 3, 2, 2) and _jac(ev)[1].shape == (3, 3, 2, 8)
    # a noiseless spec runs on statevector, still once
    clean = spec.model_copy(update={"channel": spec.channel.model_copy(update={"kind": "none"})})
    backend.run(Workload.build(clean, x, w, task="jacobian"))
    assert sv_calls == [1] and dm_calls == [3]
    # amplitude: one PUB per sample and per perturbed state, per level, still one call
    amp = _spec(
        n_qubits=2,
        encoding="amplitude",
        ansatz="mps",
        layers=1,
        channel={"kind": "depolarizing", "strength": 0.1},
    )
    xa = np.array([[1.0, 2.0, 0.5, -1.0], [0.0, 0.0, 1.0, 0.0]])
    ev = backend.run(Workload.build(amp, xa, [0.1, 0.2], noise_levels=[0.1, 0.3], task="jacobian"))
    # sample 0: 1 + 8 circuits; sample 1 = e_2: psi - e_2 = 0 is skipped, so 1 + 7
    assert dm_calls == [3, 2 * 17] and ev.metadata["pubs"] == 34
    assert ev.metadata["parameter_sets"] == 2 * (2 * (1 + 4) + 15)


def test_errors() -> None:
    with pytest.raises(InvalidSpecError) as info:
        AerBackend(method="matrix_product_state")
    assert info.value.field == "method"
    with pytest.raises(InvalidSpecError) as info:
        AerBackend(max_parallel_experiments=-1)
    assert info.value.field == "max_parallel_experiments"
    with pytest.raises(InvalidSpecError) as info:
        AerBackend(backend_options={"method": "stabilizer"})
    assert info.value.field == "backend_options.method"
    noisy = _one_qubit("angle_ry", "bit_flip", 0.1)
    with pytest.raises(BackendLimitError) as limit:
        AerBackend(method="statevector").run(Workload.build(noisy, [[0.1]], [0.2]))
    assert limit.value.field == "method"
    # statevector is fine when every requested level is noiseless
    ev = AerBackend(method="statevector").run(
        Workload.build(noisy, [[0.1]], [0.2], noise_levels=[0.0])
    )
    np.testing.assert_allclose(ev.values[0, 0, 2], math.cos(0.1) * math.cos(0.2), atol=1e-12)
    assert isinstance(get_backend("aer"), AerBackend)
    assert get_backend("aer", max_parallel_experiments=1).name == "aer"


def test_amplitude_workload_too_large_is_refused(aer: AerBackend) -> None:
    spec = _spec(n_qubits=12, encoding="amplitude", ansatz="basic_entangler", layers=1)
    x = np.ones((1, 4096))
    with pytest.raises(BackendLimitError) as info:
        aer.run(Workload.build(spec, x, np.zeros(12), task="jacobian"))
    assert info.value.field == "inputs"


def test_shift_plan_on_an_analytic_function() -> None:
    """The backend-agnostic plan, evaluated by a closed form instead of a simulator.

    One qubit, basis encoding RX(pi x) then RX(w): <Z> = cos(pi x + w). The input's shift is
    (pi/2)/pi = 1/2 in value, and its derivative picks up the factor pi.
    """
    spec = _spec(n_qubits=1, encoding="basis", ansatz="basic_entangler", layers=1)
    x = np.array([[0.0], [1.0], [0.25]])
    w = np.array([0.4])
    plan = plan_shifts(spec, x, w, jacobian=True)
    (group,) = plan.groups
    assert group.amplitudes is None
    assert group.parameter_sets.shape == (3 * (1 + 2 + 2), 2)
    np.testing.assert_allclose(group.parameter_sets[1:3, 0], [0.5, -0.5])  # x +- (pi/2)/pi
    np.testing.assert_allclose(group.parameter_sets[3:5, 1], [0.4 + np.pi / 2, 0.4 - np.pi / 2])
    sets = group.parameter_sets
    evs = np.cos(np.pi * sets[:, 0] + sets[:, 1])[:, None]  # (S, O=1)
    values, d_x, d_w = combine_levels(plan, [evs, evs], 2)  # the same values at K = 2 levels
    angle = np.pi * x[:, 0] + w[0]
    assert values.shape == (2, 3, 1) and d_x is not None and d_w is not None
    np.testing.assert_allclose(values[1, :, 0], np.cos(angle), atol=1e-14)
    np.testing.assert_allclose(d_x[1, :, 0, 0], -np.pi * np.sin(angle), atol=1e-14)
    np.testing.assert_allclose(d_w[0, :, 0, 0], -np.sin(angle), atol=1e-14)
    with pytest.raises(BackendError):
        combine_levels(plan, [evs], 2)
    with pytest.raises(BackendError):
        plan.combine([evs[:-1]])
    values_only = plan_shifts(spec, x, w, jacobian=False)
    assert values_only.n_parameter_sets == 3
