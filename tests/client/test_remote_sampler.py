"""``RemoteSamplerV2`` against a real server: the results' shapes and registers are Qiskit's
``StatevectorSampler``'s, the counts follow the exact outcome probabilities (a seeded chi-square
test against ``Statevector.probabilities``), and one ``run`` costs one job per circuit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.circuit import Parameter, ParameterVector
from qiskit.primitives import StatevectorSampler
from qiskit.quantum_info import Statevector
from scipy import stats

from qldm.client.remote_sampler import RemoteSamplerV2
from qldm.errors import QldmError
from qldm.service.embedded import EmbeddedServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    with EmbeddedServer(Path(tmp_path_factory.mktemp("sampler")), workers=2) as srv:
        yield srv


def _jobs(server: EmbeddedServer) -> int:
    import httpx

    return int(httpx.get(f"{server.url}/v1/jobs", params={"limit": 1}).json()["count"])


def _circuit() -> tuple[QuantumCircuit, ParameterVector]:
    """3 qubits, two registers: ``a[0] <- q2``, ``a[1] <- q0``; ``b[1] <- q1``, ``b[0]`` never
    written (always 0)."""
    theta = ParameterVector("t", 3)
    qc = QuantumCircuit(QuantumRegister(3, "q"), ClassicalRegister(2, "a"))
    qc.add_register(ClassicalRegister(2, "b"))
    qc.ry(theta[0], 0)
    qc.rx(theta[1], 1)
    qc.cx(0, 2)
    qc.ry(theta[2], 2)
    qc.cx(1, 0)
    qc.measure(2, qc.cregs[0][0])
    qc.measure(0, qc.cregs[0][1])
    qc.measure(1, qc.cregs[1][1])
    return qc, theta


def _exact(qc: QuantumCircuit, values: np.ndarray) -> dict[str, np.ndarray]:
    """Independent exact distributions of each register's value, from the statevector."""
    state = Statevector(qc.remove_final_measurements(inplace=False).assign_parameters(values))
    p_a = state.probabilities([2, 0])  # index = q2 + 2 q0 = value of a
    p_q1 = state.probabilities([1])
    return {"a": p_a, "b": np.array([p_q1[0], 0.0, p_q1[1], 0.0])}  # b = 2 q1


def test_shapes_and_registers_equal_statevector_samplers(server: EmbeddedServer) -> None:
    qc, _ = _circuit()
    fixed = QuantumCircuit(2, 3)  # no parameters, 3 clbits in one register "c"
    fixed.h(0)
    fixed.cx(0, 1)
    fixed.measure([1, 0], [0, 2])
    rng = np.random.default_rng(1)
    pubs = [
        (qc, rng.uniform(-np.pi, np.pi, 3)),
        (qc, rng.uniform(-np.pi, np.pi, (2, 3, 3)), 17),
        fixed,
        (fixed, None, 5),
    ]
    remote = RemoteSamplerV2(server.url, seed=2).run(pubs, shots=33).result()
    local = StatevectorSampler(seed=2).run(pubs, shots=33).result()
    assert len(remote) == len(local) == 4
    for got, want in zip(remote, local, strict=True):
        assert got.data.shape == want.data.shape
        assert list(got.data.keys()) == list(want.data.keys())
        assert got.metadata["shots"] == want.metadata["shots"]
        for name in want.data:
            g, w = got.data[name], want.data[name]
            assert (g.shape, g.num_shots, g.num_bits) == (w.shape, w.num_shots, w.num_bits)
            assert g.array.shape == w.array.shape and g.array.dtype == w.array.dtype
    # the Bell pair: c[0] = q1, c[2] = q0 are equal, c[1] never written
    assert set(remote[2].data.c.get_counts()) <= {"000", "101"}
    assert remote[3].data.c.num_shots == 5


def test_counts_follow_the_exact_probabilities(server: EmbeddedServer) -> None:
    qc, _ = _circuit()
    values = np.random.default_rng(5).uniform(-np.pi, np.pi, (4, 3))
    shots = 4000
    result = RemoteSamplerV2(server.url, seed=11).run([(qc, values)], shots=shots).result()[0]
    statistic, dof = 0.0, 0
    for row in range(len(values)):
        exact = _exact(qc, values[row])
        for name in ("a", "b"):
            counts = result.data[name].slice_shots(range(shots))[row].get_int_counts()
            assert sum(counts.values()) == shots
            p = exact[name]
            assert all(p[v] > 1e-12 for v in counts)  # never an impossible outcome
            observed = np.array([counts.get(v, 0) for v in range(4)], dtype=float)
            support = p > 1e-9
            expected = shots * p[support]
            statistic += float(np.sum((observed[support] - expected) ** 2 / expected))
            dof += int(support.sum()) - 1
    # 8 independent-enough tables; the 0.999 quantile fails a correct sampler 1 time in 1000
    assert statistic < stats.chi2.ppf(0.999, dof), (statistic, dof)
    # and not suspiciously perfect (e.g. rounded expected counts instead of draws)
    assert statistic > stats.chi2.ppf(0.001, dof), (statistic, dof)


def test_one_job_per_circuit_and_shots(server: EmbeddedServer) -> None:
    qc, _ = _circuit()
    other = QuantumCircuit(1, 1)
    phi = Parameter("phi")
    other.rx(phi, 0)
    other.measure(0, 0)
    rng = np.random.default_rng(3)
    pubs = [
        (qc, rng.uniform(-1, 1, (5, 3))),
        (other, [[0.1], [0.2]]),
        (qc, rng.uniform(-1, 1, 3)),
        (qc, rng.uniform(-1, 1, (2, 2, 3))),
        (other, 0.3),
    ]
    sampler = RemoteSamplerV2(server.url, seed=4)
    before = _jobs(server)
    result = sampler.run(pubs, shots=64).result()
    assert _jobs(server) == before + 2  # 5 PUBs, 2 circuits
    ids = [r.metadata["job_id"] for r in result]
    assert ids[0] == ids[2] == ids[3] and ids[1] == ids[4] and ids[0] != ids[1]
    assert [r.data.shape for r in result] == [(5,), (2,), (), (2, 2), ()]
    # another number of shots is another job
    before = _jobs(server)
    sampler.run([(qc, rng.uniform(-1, 1, 3), 10), (qc, rng.uniform(-1, 1, 3), 20)]).result()
    assert _jobs(server) == before + 2


def test_a_pub_without_parameter_sets_gives_empty_results_like_qiskit(
    server: EmbeddedServer,
) -> None:
    qc, _ = _circuit()
    pubs = [(qc, np.zeros((0, 3))), (qc, np.zeros((2, 0, 3)))]
    before = _jobs(server)
    remote = RemoteSamplerV2(server.url).run(pubs, shots=8).result()
    assert _jobs(server) == before  # nothing to run: no job
    local = StatevectorSampler().run(pubs, shots=8).result()
    for got, want in zip(remote, local, strict=True):
        assert got.data.shape == want.data.shape
        for name in ("a", "b"):
            assert got.data[name].array.shape == want.data[name].array.shape
        assert got.metadata["job_id"] is None


def test_a_circuit_without_registers_warns_and_sends_nothing(server: EmbeddedServer) -> None:
    qc = QuantumCircuit(1)
    qc.h(0)
    before = _jobs(server)
    with pytest.warns(UserWarning, match="no output classical registers"):
        result = RemoteSamplerV2(server.url).run([qc]).result()
    assert _jobs(server) == before
    assert list(result[0].data.keys()) == [] and result[0].data.shape == ()


def test_seeded_runs_repeat_and_mid_circuit_measurement_is_refused(
    server: EmbeddedServer,
) -> None:
    qc, _ = _circuit()
    values = np.random.default_rng(6).uniform(-np.pi, np.pi, (2, 3))
    first = RemoteSamplerV2(server.url, seed=9).run([(qc, values)], shots=50).result()[0]
    again = RemoteSamplerV2(server.url, seed=9).run([(qc, values)], shots=50).result()[0]
    np.testing.assert_array_equal(first.data.a.array, again.data.a.array)
    np.testing.assert_array_equal(first.data.b.array, again.data.b.array)

    mid = QuantumCircuit(1, 2)
    mid.h(0)
    mid.measure(0, 0)
    mid.h(0)
    mid.measure(0, 1)
    with pytest.raises(QldmError, match=r"circuit\.qpy"):
        RemoteSamplerV2(server.url).run([mid])


def test_exported_next_to_the_estimator() -> None:
    import qldm
    import qldm.client

    assert qldm.RemoteSamplerV2 is qldm.client.RemoteSamplerV2 is RemoteSamplerV2
    assert "RemoteSamplerV2" in qldm.__all__ and "RemoteSamplerV2" in qldm.client.__all__


def _deterministic_circuits() -> list[QuantumCircuit]:
    """Circuits with one outcome: a clbit written twice, a qubit read twice, permuted clbits
    behind a barrier, a register of 9 bits (2 bytes)."""
    twice = QuantumCircuit(2, 1)
    twice.x(0)
    twice.measure(0, 0)
    twice.measure(1, 0)  # the last write wins: 0
    reread = QuantumCircuit(2, 2)
    reread.x(1)
    reread.measure(1, 0)
    reread.measure(1, 1)
    permuted = QuantumCircuit(3, 3)
    permuted.x([0, 2])
    permuted.barrier()
    permuted.measure([0, 1, 2], [2, 0, 1])
    wide = QuantumCircuit(QuantumRegister(2), ClassicalRegister(2, "a"))
    wide.add_register(ClassicalRegister(9, "wide"))
    wide.x(0)
    wide.measure(0, wide.cregs[1][8])
    wide.measure(0, 0)
    return [twice, reread, permuted, wide]


def test_registers_are_filled_like_statevector_samplers(server: EmbeddedServer) -> None:
    circuits = _deterministic_circuits()
    remote = RemoteSamplerV2(server.url, seed=1).run(circuits, shots=20).result()
    local = StatevectorSampler(seed=1).run(circuits, shots=20).result()
    for got, want in zip(remote, local, strict=True):
        for name in want.data:
            assert got.data[name].get_counts() == want.data[name].get_counts()
            assert len(want.data[name].get_counts()) == 1


def test_sampler_qnn_runs_unchanged_one_job_per_pass(server: EmbeddedServer) -> None:
    """qiskit-machine-learning's ``SamplerQNN`` with its parameter-shift gradient: the
    forward pass and the backward pass cost one job each, and both agree with the exact
    probabilities (Statevector) and their central differences within shot noise."""
    from qiskit_machine_learning.gradients import ParamShiftSamplerGradient
    from qiskit_machine_learning.neural_networks import SamplerQNN

    from qldm.bench.estimator_qnn import small_circuit

    qc, x, w = small_circuit()
    measured = qc.copy()
    measured.measure_all()
    rng = np.random.default_rng(3)
    inputs, weights = rng.uniform(-np.pi, np.pi, (4, 2)), rng.uniform(-np.pi, np.pi, 4)
    shots = 20_000
    sampler = RemoteSamplerV2(server.url, seed=1, default_shots=shots)
    qnn = SamplerQNN(
        circuit=measured,
        input_params=list(x),
        weight_params=list(w),
        sampler=sampler,
        gradient=ParamShiftSamplerGradient(sampler),
    )
    before = _jobs(server)
    forward = qnn.forward(inputs, weights)
    assert _jobs(server) == before + 1
    _, grad = qnn.backward(inputs, weights)
    assert _jobs(server) == before + 2

    def exact(xs: np.ndarray, ws: np.ndarray) -> np.ndarray:
        values = dict(zip([*x, *w], [*xs, *ws], strict=True))
        bound = qc.assign_parameters(values)
        return Statevector(bound).probabilities()

    eps = 1e-5
    for b in range(len(inputs)):
        p = exact(inputs[b], weights)
        sigma = np.sqrt(np.maximum(p * (1 - p), 1e-4) / shots)
        np.testing.assert_array_less(np.abs(forward[b] - p), 5 * sigma + 1e-9)
        for k in range(len(weights)):
            step = np.eye(len(weights))[k] * eps
            dp = (exact(inputs[b], weights + step) - exact(inputs[b], weights - step)) / (2 * eps)
            # each weight is in one rotation: (p(+pi/2) - p(-pi/2)) / 2 of two independent
            # estimates, sigma <= sqrt(0.5 / N) / 2; 5 sigma
            assert np.abs(grad[b, :, k] - dp).max() < 5 * np.sqrt(0.5 / shots) / 2
