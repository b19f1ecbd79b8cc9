"""The exact backend against closed forms and an independent numpy density-matrix simulator.

The reference below builds every gate matrix by hand (Qiskit conventions, little-endian:
qubit q is bit q of a basis index, so it is the rightmost Kronecker factor for q = 0) and
applies Kraus operators to full 2^n x 2^n density matrices. It walks the compiled program only
to know which gate comes next; nothing numeric is taken from the engine.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qldm.backends import get_backend
from qldm.backends.base import Workload
from qldm.backends.exact import ExactBackend, expectation
from qldm.circuits import PQCSpec, compile_spec
from qldm.circuits.program import AmplitudeEncoding, Channel, Gate
from qldm.errors import BackendLimitError, InvalidSpecError

# ---------------------------------------------------------------------------- numpy reference

I2 = np.eye(2, dtype=complex)
X = np.array([[0, 1], [1, 0]], dtype=complex)
Y = np.array([[0, -1j], [1j, 0]], dtype=complex)
Z = np.array([[1, 0], [0, -1]], dtype=complex)
P0 = np.diag([1.0, 0.0]).astype(complex)
P1 = np.diag([0.0, 1.0]).astype(complex)
H = np.array([[1, 1], [1, -1]], dtype=complex) / math.sqrt(2)


def rx(t: float) -> np.ndarray:
    c, s = math.cos(t / 2), math.sin(t / 2)
    return np.array([[c, -1j * s], [-1j * s, c]])


def ry(t: float) -> np.ndarray:
    c, s = math.cos(t / 2), math.sin(t / 2)
    return np.array([[c, -s], [s, c]], dtype=complex)


def rz(t: float) -> np.ndarray:
    return np.diag([np.exp(-0.5j * t), np.exp(0.5j * t)])


def phase(t: float) -> np.ndarray:
    return np.diag([1.0, np.exp(1j * t)])


def embed(n: int, m: np.ndarray, q: int) -> np.ndarray:
    """``m`` on qubit ``q`` of ``n``: Kronecker factors from qubit n-1 (left) to 0 (right)."""
    out = np.eye(1, dtype=complex)
    for k in range(n - 1, -1, -1):
        out = np.kron(out, m if k == q else I2)
    return out


def controlled(n: int, m: np.ndarray, c: int, t: int) -> np.ndarray:
    return embed(n, P0, c) + embed(n, P1, c) @ embed(n, m, t)


def pauli_matrix(label: str) -> np.ndarray:
    out = np.eye(1, dtype=complex)
    for ch in label:  # leftmost character = qubit n-1 = leftmost factor
        out = np.kron(out, {"I": I2, "X": X, "Y": Y, "Z": Z}[ch])
    return out


def kraus(kind: str, s: float) -> list[np.ndarray]:
    if kind == "amplitude_damping":
        return [
            np.array([[1, 0], [0, math.sqrt(1 - s)]], dtype=complex),
            np.array([[0, math.sqrt(s)], [0, 0]], dtype=complex),
        ]
    if kind == "bit_flip":
        return [math.sqrt(1 - s) * I2, math.sqrt(s) * X]
    if kind == "phase_flip":
        return [math.sqrt(1 - s) * I2, math.sqrt(s) * Z]
    if kind == "depolarizing":  # (1-s) rho + s I/2 = (1-3s/4) rho + s/4 (X.X + Y.Y + Z.Z)
        return [math.sqrt(1 - 3 * s / 4) * I2] + [math.sqrt(s / 4) * p for p in (X, Y, Z)]
    raise KeyError(kind)


def gate_matrix(n: int, gate: Gate, value: float) -> np.ndarray:
    angle = gate.param.scale * value if gate.param else 0.0
    one = {
        "h": lambda: H,
        "rx": lambda: rx(angle),
        "ry": lambda: ry(angle),
        "rz": lambda: rz(angle),
        "p": lambda: phase(angle),
    }
    if gate.name in one:
        return embed(n, one[gate.name](), gate.qubits[0])
    inner = {"cx": X, "crx": rx(angle), "crz": rz(angle)}[gate.name]
    return controlled(n, inner, *gate.qubits)


def reference(
    spec: PQCSpec, x: np.ndarray, w: np.ndarray, level: float | None = None
) -> np.ndarray:
    """``(B, O)`` expectation values by full density matrices."""
    n = spec.n_qubits
    program = compile_spec(spec)
    strengths = spec.layer_strengths(level) if spec.noisy else None
    observables = [pauli_matrix(label) for label in spec.pauli_labels()]
    out = np.zeros((x.shape[0], len(observables)))
    for b, sample in enumerate(x):
        psi = np.zeros(2**n, dtype=complex)
        psi[0] = 1.0
        for enc in program.encoding:
            if isinstance(enc, AmplitudeEncoding):
                psi = sample / np.linalg.norm(sample) + 0j
            else:
                psi = gate_matrix(n, enc, sample[enc.param.index] if enc.param else 0.0) @ psi
        rho = np.outer(psi, psi.conj())
        for op in program.ansatz:
            if isinstance(op, Channel):
                assert strengths is not None
                ks = [embed(n, k, op.qubit) for k in kraus(spec.channel.kind, strengths[op.layer])]
                rho = sum(k @ rho @ k.conj().T for k in ks)
            else:
                u = gate_matrix(n, op, w[op.param.index] if op.param else 0.0)
                rho = u @ rho @ u.conj().T
        out[b] = [np.trace(rho @ o).real for o in observables]
    return out


def make_spec(**kw: object) -> PQCSpec:
    return PQCSpec.parse(kw)


def run(spec: PQCSpec, x: np.ndarray, w: np.ndarray, **kw: object):
    return ExactBackend().run(Workload.build(spec, x, w, **kw))  # type: ignore[arg-type]


def random_inputs(spec: PQCSpec, b: int, rng: np.random.Generator) -> np.ndarray:
    if spec.encoding == "basis":
        return rng.integers(0, 2, (b, spec.n_inputs)).astype(float) + rng.normal(
            0, 0.1, (b, spec.n_inputs)
        )
    return rng.uniform(-2, 2, (b, spec.n_inputs))


# ---------------------------------------------------------------------------- closed forms


def one_qubit(kind: str = "none", strength: float = 0.0) -> PQCSpec:
    return make_spec(
        n_qubits=1,
        encoding="angle_ry",
        ansatz="basic_entangler",
        layers=1,
        channel={"kind": kind, "strength": strength},
    )


def test_ry_then_rx_closed_form() -> None:
    # RY(x) then RX(w) on |0>: <Z> = cos x cos w
    x = np.array([[0.3], [1.2], [-2.5]])
    ev = run(one_qubit(), x, np.array([0.7]))
    np.testing.assert_allclose(ev.values[0, :, 0], np.cos(x[:, 0]) * math.cos(0.7), atol=1e-12)


def test_ry_identity_ansatz_is_cos() -> None:
    x = np.linspace(-3, 3, 7)[:, None]
    ev = run(one_qubit(), x, np.array([0.0]))
    np.testing.assert_allclose(ev.values[0, :, 0], np.cos(x[:, 0]), atol=1e-12)


@pytest.mark.parametrize(
    ("kind", "factor"),
    [
        ("bit_flip", lambda p: 1 - 2 * p),
        ("phase_flip", lambda p: 1.0),
        ("depolarizing", lambda p: 1 - p),
    ],
)
def test_pauli_channels_closed_form(kind: str, factor) -> None:
    # <Z> after RY(x), RX(w): cos x cos w; bit flip and depolarizing shrink Z, phase flip
    # leaves Z alone.
    x = np.array([[0.4], [2.0]])
    for p in (0.0, 0.1, 0.35):
        ev = run(one_qubit(kind, p), x, np.array([0.9]))
        want = factor(p) * np.cos(x[:, 0]) * math.cos(0.9)
        np.testing.assert_allclose(ev.values[0, :, 0], want, atol=1e-12)


def test_phase_flip_kills_x() -> None:
    # RY(x) then phase flip p: <X> = (1 - 2p) sin x ; with RX(w=0)
    spec = make_spec(
        n_qubits=1,
        encoding="angle_ry",
        ansatz="basic_entangler",
        layers=1,
        channel={"kind": "phase_flip", "strength": 0.2},
        observables=["X"],
    )
    x = np.array([[0.4], [2.0]])
    ev = run(spec, x, np.array([0.0]))
    np.testing.assert_allclose(ev.values[0, :, 0], 0.6 * np.sin(x[:, 0]), atol=1e-12)


def test_amplitude_damping_closed_form() -> None:
    # RY(x), RX(0), amplitude damping g: <Z> = g + (1-g) cos x
    x = np.array([[0.0], [0.8], [math.pi]])
    for g in (0.0, 0.25, 1.0):
        ev = run(one_qubit("amplitude_damping", g), x, np.array([0.0]))
        np.testing.assert_allclose(ev.values[0, :, 0], g + (1 - g) * np.cos(x[:, 0]), atol=1e-12)


def test_per_layer_strengths_closed_form() -> None:
    # two layers of RX(0) with bit flips p1, p2: <Z> = (1-2 p1)(1-2 p2) cos x
    spec = make_spec(
        n_qubits=1,
        encoding="angle_ry",
        ansatz="basic_entangler",
        layers=2,
        channel={"kind": "bit_flip", "strength": [0.1, 0.3]},
    )
    x = np.array([[0.5]])
    ev = run(spec, x, np.zeros(2))
    np.testing.assert_allclose(ev.values[0, 0, 0], 0.8 * 0.4 * math.cos(0.5), atol=1e-12)


def test_noise_levels_equal_separate_runs() -> None:
    spec = make_spec(
        n_qubits=3,
        encoding="angle_ry",
        ansatz="ry_rz_brickwork",
        layers=2,
        channel={"kind": "amplitude_damping", "strength": [0.05, 0.2]},
    )
    rng = np.random.default_rng(1)
    x, w = rng.uniform(-2, 2, (4, 3)), rng.uniform(-2, 2, spec.n_weights)
    levels = np.array([0.0, 0.3, 0.9])
    ev = run(spec, x, w, noise_levels=levels, task="jacobian")
    assert ev.values.shape == (3, 4, 3)
    for k, level in enumerate(levels):
        single = make_spec(
            **{
                **spec.model_dump(),
                "channel": {"kind": "amplitude_damping", "strength": float(level)},
            }
        )
        one = run(single, x, w, task="jacobian")
        np.testing.assert_allclose(ev.values[k], one.values[0], atol=1e-12)
        np.testing.assert_allclose(ev.d_weights[k], one.d_weights[0], atol=1e-12)
        np.testing.assert_allclose(ev.values[k], reference(spec, x, w, level), atol=1e-10)


# ---------------------------------------------------------------------------- numpy reference


def test_two_qubit_entangled_against_numpy() -> None:
    spec = make_spec(
        n_qubits=2,
        encoding="angle_ry",
        ansatz="ry_rz_brickwork",
        layers=2,
        channel={"kind": "depolarizing", "strength": 0.1},
        observables=["ZZ", "XY", "IZ", "YI", "XX"],
    )
    rng = np.random.default_rng(2)
    x, w = rng.uniform(-2, 2, (5, 2)), rng.uniform(-2, 2, spec.n_weights)
    np.testing.assert_allclose(run(spec, x, w).values[0], reference(spec, x, w), atol=1e-10)


def test_bell_state_correlations() -> None:
    # RY(pi/2) on qubit 0 and |0> on qubit 1, then CNOT(0, 1): a Bell state, <ZZ> = <XX> = 1
    spec = make_spec(
        n_qubits=2,
        encoding="angle_ry",
        ansatz="basic_entangler",
        layers=1,
        observables=["ZZ", "XX", "YY", "IZ"],
    )
    ev = run(spec, np.array([[math.pi / 2, 0.0]]), np.zeros(2))
    np.testing.assert_allclose(ev.values[0, 0], [1.0, 1.0, -1.0, 0.0], atol=1e-12)


CASES = [
    # (encoding, ansatz, n, channel)
    ("angle_ry", "ry_rz_brickwork", 4, "amplitude_damping"),
    ("angle_rx", "basic_entangler", 3, "bit_flip"),
    ("dense_angle", "mps", 3, "phase_flip"),
    ("phase", "ry_rz_brickwork", 3, "depolarizing"),
    ("amplitude", "basic_entangler", 3, "amplitude_damping"),
    ("basis", "mps", 4, "bit_flip"),
    ("angle_ry", "hqconv", 4, "amplitude_damping"),
    ("dense_angle", "hqconv", 4, "none"),
    ("angle_ry", "fqconv", 8, "bit_flip"),
    ("amplitude", "mps", 2, "none"),
    ("phase", "basic_entangler", 4, "none"),
]


@pytest.mark.parametrize(("encoding", "ansatz", "n", "kind"), CASES)
def test_every_encoding_and_ansatz_against_numpy(
    encoding: str, ansatz: str, n: int, kind: str
) -> None:
    big = n >= 8  # keep the full-matrix reference fast
    spec = make_spec(
        n_qubits=n,
        encoding=encoding,
        ansatz=ansatz,
        layers=1 if big else 2,
        channel={"kind": kind, "strength": 0.15 if kind != "none" else 0.0},
        observables=["XZ" + "Y" * (n - 2), "Z" * n, "I" * (n - 1) + "X"] if n > 2 else ["ZZ", "XY"],
    )
    rng = np.random.default_rng(3)
    x, w = random_inputs(spec, 1 if big else 3, rng), rng.uniform(-2, 2, spec.n_weights)
    ev = run(spec, x, w)
    np.testing.assert_allclose(ev.values[0], reference(spec, x, w), atol=1e-10)
    if big:
        return
    # z_each observables on the same circuit too
    spec_z = make_spec(**{**spec.model_dump(), "observables": "z_each"})
    np.testing.assert_allclose(run(spec_z, x, w).values[0], reference(spec_z, x, w), atol=1e-10)


# ---------------------------------------------------------------------------- Jacobians


def finite_differences(
    spec: PQCSpec, x: np.ndarray, w: np.ndarray, h: float = 1e-5
) -> tuple[np.ndarray, np.ndarray]:
    b, i = x.shape
    o = spec.n_outputs
    d_in = np.zeros((b, o, i))
    for k in range(i):
        e = np.zeros_like(x)
        e[:, k] = h
        d_in[:, :, k] = (reference(spec, x + e, w) - reference(spec, x - e, w)) / (2 * h)
    d_w = np.zeros((b, o, w.size))
    for p in range(w.size):
        e = np.zeros_like(w)
        e[p] = h
        d_w[:, :, p] = (reference(spec, x, w + e) - reference(spec, x, w - e)) / (2 * h)
    return d_in, d_w


@pytest.mark.parametrize(
    ("encoding", "ansatz", "n", "kind"),
    [
        ("angle_ry", "ry_rz_brickwork", 3, "amplitude_damping"),
        ("dense_angle", "mps", 3, "depolarizing"),
        ("amplitude", "basic_entangler", 2, "bit_flip"),
        ("phase", "hqconv", 4, "phase_flip"),
        ("basis", "basic_entangler", 3, "none"),
    ],
)
def test_jacobians_against_finite_differences(
    encoding: str, ansatz: str, n: int, kind: str
) -> None:
    spec = make_spec(
        n_qubits=n,
        encoding=encoding,
        ansatz=ansatz,
        layers=2,
        channel={"kind": kind, "strength": 0.1 if kind != "none" else 0.0},
    )
    rng = np.random.default_rng(4)
    x, w = random_inputs(spec, 2, rng), rng.uniform(-2, 2, spec.n_weights)
    ev = run(spec, x, w, task="jacobian")
    d_in, d_w = finite_differences(spec, x, w)
    assert ev.d_inputs is not None and ev.d_weights is not None
    assert ev.d_inputs.shape == (1, 2, spec.n_outputs, spec.n_inputs)
    assert ev.d_weights.shape == (1, 2, spec.n_outputs, spec.n_weights)
    np.testing.assert_allclose(ev.d_inputs[0], d_in, atol=1e-7)
    np.testing.assert_allclose(ev.d_weights[0], d_w, atol=1e-7)


def test_statevector_engine_jacobians() -> None:
    # a large batch makes a noiseless spec take the statevector engine
    spec = make_spec(n_qubits=2, encoding="angle_rx", ansatz="ry_rz_brickwork", layers=2)
    rng = np.random.default_rng(5)
    x, w = rng.uniform(-2, 2, (40, 2)), rng.uniform(-2, 2, spec.n_weights)
    ev = run(spec, x, w, task="jacobian")
    assert ev.metadata["engine"] == "statevector"
    np.testing.assert_allclose(ev.values[0], reference(spec, x, w), atol=1e-10)
    d_in, d_w = finite_differences(spec, x[:3], w)
    np.testing.assert_allclose(ev.d_inputs[0, :3], d_in, atol=1e-7)
    np.testing.assert_allclose(ev.d_weights[0, :3], d_w, atol=1e-7)


def test_jacobian_with_noise_levels_matches_autograd() -> None:
    spec = make_spec(
        n_qubits=3,
        encoding="dense_angle",
        ansatz="ry_rz_brickwork",
        layers=2,
        channel={"kind": "amplitude_damping", "strength": 0.1},
    )
    rng = np.random.default_rng(6)
    x, w = rng.uniform(-2, 2, (3, 6)), rng.uniform(-2, 2, spec.n_weights)
    levels = np.array([0.05, 0.5])
    ev = run(spec, x, w, noise_levels=levels, task="jacobian")
    for k, level in enumerate(levels):
        d_in, d_w = finite_differences(
            make_spec(
                **{
                    **spec.model_dump(),
                    "channel": {"kind": "amplitude_damping", "strength": float(level)},
                }
            ),
            x,
            w,
        )
        np.testing.assert_allclose(ev.d_inputs[k], d_in, atol=1e-7)
        np.testing.assert_allclose(ev.d_weights[k], d_w, atol=1e-7)


def test_gradcheck_expectation() -> None:
    spec = make_spec(
        n_qubits=2,
        encoding="angle_ry",
        ansatz="ry_rz_brickwork",
        layers=2,
        channel={"kind": "amplitude_damping", "strength": 0.1},
        observables=["ZX", "YZ"],
    )
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.rand(spec.n_weights, dtype=torch.float64, generator=gen, requires_grad=True)
    levels = torch.tensor([0.2, 0.6], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b, c: expectation(spec, a, b, noise_levels=c), (x, w, levels)
    )


def test_gradcheck_statevector_engine() -> None:
    spec = make_spec(n_qubits=2, encoding="phase", ansatz="mps", layers=1)
    x = torch.tensor([[0.3, -0.7]], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.1, 0.5], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b: expectation(spec, a, b, engine="statevector"), (x, w)
    )
    np.testing.assert_allclose(
        expectation(spec, x, w, engine="statevector").detach().numpy(),
        expectation(spec, x, w, engine="heisenberg").detach().numpy(),
        atol=1e-12,
    )


# ---------------------------------------------------------------------------- dtype, errors


def test_float32_path() -> None:
    spec = make_spec(
        n_qubits=3,
        encoding="angle_ry",
        ansatz="ry_rz_brickwork",
        layers=2,
        channel={"kind": "amplitude_damping", "strength": 0.1},
    )
    rng = np.random.default_rng(7)
    x, w = rng.uniform(-2, 2, (4, 3)), rng.uniform(-2, 2, spec.n_weights)
    out = expectation(
        spec, torch.tensor(x, dtype=torch.float32), torch.tensor(w, dtype=torch.float32)
    )
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out[0].numpy(), reference(spec, x, w), atol=1e-5)
    ev = ExactBackend(dtype="float32").run(Workload.build(spec, x, w, task="jacobian"))
    assert ev.values.dtype == np.float64
    np.testing.assert_allclose(ev.values[0], reference(spec, x, w), atol=1e-5)


def test_shape_errors() -> None:
    spec = make_spec(n_qubits=2, layers=1)
    w = torch.zeros(spec.n_weights, dtype=torch.float64)
    with pytest.raises(InvalidSpecError) as err:
        expectation(spec, torch.zeros(3, 3, dtype=torch.float64), w)
    assert err.value.field == "inputs"
    with pytest.raises(InvalidSpecError) as err:
        expectation(spec, torch.zeros(3, 2, dtype=torch.float64), torch.zeros(5))
    assert err.value.field == "weights"
    with pytest.raises(InvalidSpecError) as err:  # noise levels on a noiseless spec
        expectation(
            spec, torch.zeros(3, 2, dtype=torch.float64), w, noise_levels=torch.tensor([0.1])
        )
    assert err.value.field == "noise_levels"
    noisy = make_spec(n_qubits=2, layers=1, channel={"kind": "bit_flip", "strength": 0.1})
    with pytest.raises(InvalidSpecError) as err:
        expectation(
            noisy, torch.zeros(3, 2, dtype=torch.float64), w, noise_levels=torch.tensor([[0.1]])
        )
    assert err.value.field == "noise_levels"
    with pytest.raises(InvalidSpecError) as err:
        expectation(
            noisy, torch.zeros(3, 2, dtype=torch.float64), w, noise_levels=torch.tensor([1.5])
        )
    assert err.value.field == "noise_levels"


def test_amplitude_zero_vector() -> None:
    spec = make_spec(n_qubits=2, encoding="amplitude", ansatz="basic_entangler", layers=1)
    with pytest.raises(InvalidSpecError) as err:
        expectation(
            spec, torch.zeros(1, 4, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
        )
    assert err.value.field == "inputs"


def test_density_limit() -> None:
    spec = make_spec(
        n_qubits=11,
        encoding="angle_ry",
        ansatz="basic_entangler",
        layers=1,
        channel={"kind": "bit_flip", "strength": 0.1},
    )
    with pytest.raises(BackendLimitError) as err:
        run(spec, np.zeros((1, 11)), np.zeros(spec.n_weights))
    assert err.value.field == "n_qubits"
    assert "10" in str(err.value)


def test_twelve_noiseless_qubits_use_statevector() -> None:
    spec = make_spec(
        n_qubits=12,
        encoding="angle_ry",
        ansatz="hqconv",
        layers=1,
        observables=["Z" * 12, "I" * 11 + "X"],
    )
    rng = np.random.default_rng(8)
    x = rng.uniform(-2, 2, (2, 12))
    ev = run(spec, x, np.zeros(spec.n_weights))
    assert ev.metadata["engine"] == "statevector"
    # with zero weights the ansatz is the identity (controlled rotations by 0): product state
    np.testing.assert_allclose(ev.values[0, :, 0], np.prod(np.cos(x), axis=1), atol=1e-10)
    np.testing.assert_allclose(ev.values[0, :, 1], np.sin(x[:, 0]), atol=1e-10)


def test_shots_are_binomial_means() -> None:
    spec = one_qubit("bit_flip", 0.1)
    x = np.full((2000, 1), 1.0)
    exact = run(spec, x, np.array([0.3])).values
    noisy = run(spec, x, np.array([0.3]), shots=100, seed=11)
    assert noisy.metadata["shots"] == 100
    vals = noisy.values[0, :, 0]
    # outcomes are multiples of 2/shots, the mean is unbiased, the spread binomial
    np.testing.assert_allclose(vals * 50, np.round(vals * 50), atol=1e-9)
    v = exact[0, 0, 0]
    assert abs(vals.mean() - v) < 4 * math.sqrt((1 - v * v) / 100 / 2000)
    assert vals.std() == pytest.approx(math.sqrt((1 - v * v) / 100), rel=0.1)
    again = run(spec, x, np.array([0.3]), shots=100, seed=11)
    np.testing.assert_array_equal(again.values, noisy.values)


def test_registry_and_metadata() -> None:
    backend = get_backend("exact")
    assert backend.name == "exact"
    spec = one_qubit()
    ev = backend.run(Workload.build(spec, np.zeros((1, 1)), np.zeros(1)))
    assert ev.metadata["engine"] in ("heisenberg", "statevector")
    assert ev.metadata["device"] == "cpu"
    assert ev.metadata["seconds"] >= 0
    assert ev.d_inputs is None and ev.d_weights is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    spec = make_spec(
        n_qubits=3,
        encoding="angle_ry",
        ansatz="ry_rz_brickwork",
        layers=2,
        channel={"kind": "amplitude_damping", "strength": 0.1},
    )
    rng = np.random.default_rng(9)
    x, w = rng.uniform(-2, 2, (4, 3)), rng.uniform(-2, 2, spec.n_weights)
    gpu = ExactBackend(device="cuda").run(Workload.build(spec, x, w, task="jacobian"))
    cpu = run(spec, x, w, task="jacobian")
    np.testing.assert_allclose(gpu.values, cpu.values, atol=1e-12)
    np.testing.assert_allclose(gpu.d_weights, cpu.d_weights, atol=1e-12)  # type: ignore[arg-type]


@pytest.mark.parametrize("ansatz", ["ry_rz_brickwork", "hqconv"])
def test_jacobian_one_weight_at_a_time_path(ansatz: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # large circuits spawn derivative rows one weight at a time; force that path on a small one
    import qldm.backends.exact as exact

    spec = make_spec(
        n_qubits=4,
        encoding="angle_ry",
        ansatz=ansatz,
        layers=2,
        channel={"kind": "amplitude_damping", "strength": 0.1},
    )
    rng = np.random.default_rng(10)
    x, w = rng.uniform(-2, 2, (2, 4)), rng.uniform(-2, 2, spec.n_weights)
    shared = run(spec, x, w, task="jacobian")
    monkeypatch.setattr(exact, "_SPAWN_ELEMENTS", 0)
    monkeypatch.setattr(exact, "_CHUNK_ELEMENTS", 1)
    single = run(spec, x, w, task="jacobian")
    _, d_w = finite_differences(spec, x, w)
    np.testing.assert_allclose(single.d_weights[0], d_w, atol=1e-7)
    np.testing.assert_allclose(shared.d_weights[0], d_w, atol=1e-7)


def test_large_batches_are_split(monkeypatch: pytest.MonkeyPatch) -> None:
    import qldm.backends.exact as exact

    monkeypatch.setattr(exact, "_batch_chunk", lambda spec, engine: 2)
    spec = make_spec(
        n_qubits=2,
        encoding="angle_ry",
        ansatz="ry_rz_brickwork",
        layers=1,
        channel={"kind": "bit_flip", "strength": 0.2},
    )
    rng = np.random.default_rng(12)
    x, w = rng.uniform(-2, 2, (5, 2)), rng.uniform(-2, 2, spec.n_weights)
    ev = run(spec, x, w, task="jacobian")
    assert ev.values.shape == (1, 5, 2)
    np.testing.assert_allclose(ev.values[0], reference(spec, x, w), atol=1e-10)
    d_in, d_w = finite_differences(spec, x, w)
    np.testing.assert_allclose(ev.d_inputs[0], d_in, atol=1e-7)
    np.testing.assert_allclose(ev.d_weights[0], d_w, atol=1e-7)


def test_backend_is_thread_safe_on_both_engines() -> None:
    """Servers and benchmarks call one backend from several threads at once."""
    import threading

    rng = np.random.default_rng(7)
    noisy = PQCSpec.parse(
        {"n_qubits": 3, "layers": 2, "channel": {"kind": "bit_flip", "strength": 0.1}}
    )
    clean = PQCSpec.parse({"n_qubits": 2, "layers": 1})
    works = [
        Workload.build(noisy, rng.uniform(-1, 1, (4, 3)), rng.uniform(-3, 3, 12), task="jacobian"),
        Workload.build(clean, rng.uniform(-1, 1, (200, 2)), rng.uniform(-3, 3, 4), task="jacobian"),
    ]
    backend = ExactBackend()
    expected = [backend.run(w) for w in works]
    assert expected[1].metadata["engine"] == "statevector"
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for _ in range(3):
                got = backend.run(works[i % 2])
                np.testing.assert_allclose(got.d_weights, expected[i % 2].d_weights, atol=1e-12)
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
