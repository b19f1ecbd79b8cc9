"""``RemoteEstimatorV2`` against a real server: qiskit-machine-learning's ``EstimatorQNN`` runs
on it unchanged and agrees with Aer's own ``EstimatorV2``; Qiskit's broadcasting rules hold."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer.primitives import EstimatorV2 as AerEstimatorV2

from qldm.bench.estimator_qnn import small_circuit
from qldm.client.remote_estimator import RemoteEstimatorV2
from qldm.service.embedded import EmbeddedServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    with EmbeddedServer(Path(tmp_path_factory.mktemp("estimator")), workers=2) as srv:
        yield srv
    assert srv.process is not None and srv.process.poll() is not None  # stopped on exit


def _circuit() -> tuple[QuantumCircuit, ParameterVector, ParameterVector]:
    return small_circuit()  # the one the EstimatorQNN bench times


def test_estimator_qnn_runs_unchanged_and_matches_aer(server: EmbeddedServer) -> None:
    from qiskit_machine_learning.neural_networks import EstimatorQNN

    qc, x, w = _circuit()
    observables = [SparsePauliOp("ZI"), SparsePauliOp.from_list([("XX", 0.5), ("IZ", -1.5)])]
    rng = np.random.default_rng(3)
    inputs, weights = rng.uniform(-np.pi, np.pi, (5, 2)), rng.uniform(-np.pi, np.pi, 4)

    def qnn(estimator: object) -> EstimatorQNN:
        return EstimatorQNN(
            circuit=qc,
            observables=observables,
            input_params=list(x),
            weight_params=list(w),
            estimator=estimator,
            default_precision=0.0,
        )

    remote = qnn(RemoteEstimatorV2(server.url, backend="aer"))
    local = qnn(AerEstimatorV2())
    np.testing.assert_allclose(
        remote.forward(inputs, weights), local.forward(inputs, weights), atol=1e-6
    )
    _, d_remote = remote.backward(inputs, weights)
    _, d_local = local.backward(inputs, weights)
    np.testing.assert_allclose(d_remote, d_local, atol=1e-6)


def test_broadcasting_matches_aer(server: EmbeddedServer) -> None:
    qc, _, _ = _circuit()
    rng = np.random.default_rng(4)
    values = rng.uniform(-np.pi, np.pi, (3, 6))  # parameter sets, shape (3,)
    observables = [["ZZ"], [SparsePauliOp.from_list([("XI", 1.0), ("YY", 0.25)])]]  # (2, 1)
    pubs = [(qc, observables, values), (qc, "IZ", values[0])]
    remote = RemoteEstimatorV2(server.url).run(pubs).result()
    local = AerEstimatorV2().run(pubs).result()
    assert remote[0].data.evs.shape == (2, 3) and remote[1].data.evs.shape == ()
    for got, want in zip(remote, local, strict=True):
        np.testing.assert_allclose(got.data.evs, want.data.evs, atol=1e-6)
        np.testing.assert_array_equal(got.data.stds, 0.0)


def test_precision_asks_for_shots(server: EmbeddedServer) -> None:
    qc = QuantumCircuit(1)
    qc.ry(np.pi / 3, 0)  # <Z> = cos(pi/3) = 0.5
    result = RemoteEstimatorV2(server.url, seed=7).run([(qc, "Z")], precision=0.02).result()[0]
    assert result.metadata["shots"] == 2500
    std = float(result.data.stds)
    assert std == pytest.approx(np.sqrt((1 - 0.25) / 2500), rel=0.2)
    assert abs(float(result.data.evs) - 0.5) < 5 * std


def _jobs(server: EmbeddedServer) -> int:
    import httpx

    return int(httpx.get(f"{server.url}/v1/jobs", params={"limit": 1}).json()["count"])


def test_pubs_of_one_circuit_and_precision_travel_as_one_job(server: EmbeddedServer) -> None:
    """Item 10: one job per PUB made an EstimatorQNN gradient cost 257 jobs; now the PUBs of
    one circuit and precision share a job, and the values stay Qiskit's own."""
    from qiskit.primitives import StatevectorEstimator

    qc, _, _ = _circuit()
    rng = np.random.default_rng(8)
    pubs = [
        (qc, "ZI", rng.uniform(-np.pi, np.pi, (4, 6))),
        (
            qc,
            [["XX"], [SparsePauliOp.from_list([("IZ", 2.0), ("YY", -0.5)])]],
            rng.uniform(-1, 1, (3, 6)),
        ),
        (qc, "ZZ", rng.uniform(-1, 1, 6)),
    ]
    before = _jobs(server)
    remote = RemoteEstimatorV2(server.url).run(pubs).result()
    assert _jobs(server) == before + 1
    assert len({r.metadata["job_id"] for r in remote}) == 1
    local = StatevectorEstimator().run(pubs).result()
    for got, want in zip(remote, local, strict=True):
        assert got.data.evs.shape == want.data.evs.shape
        np.testing.assert_allclose(got.data.evs, want.data.evs, atol=1e-10)
    # another precision is another job (its shots differ)
    before = _jobs(server)
    RemoteEstimatorV2(server.url, seed=1).run([pubs[0], (qc, "ZI", pubs[0][2], 0.1)]).result()
    assert _jobs(server) == before + 2


def test_a_pub_without_parameter_sets_gives_empty_values_like_qiskit(
    server: EmbeddedServer,
) -> None:
    """Item 8: it raised in RemoteEstimatorV2; Qiskit's estimators return empty ``evs``."""
    from qiskit.primitives import StatevectorEstimator

    qc, _, _ = _circuit()
    pubs = [(qc, "ZZ", np.zeros((0, 6))), (qc, "ZI", np.full(6, 0.3))]
    before = _jobs(server)
    remote = RemoteEstimatorV2(server.url).run(pubs).result()
    local = StatevectorEstimator().run(pubs).result()
    assert remote[0].data.evs.shape == local[0].data.evs.shape == (0,)
    np.testing.assert_allclose(remote[1].data.evs, local[1].data.evs, atol=1e-10)
    assert _jobs(server) == before + 1
    assert RemoteEstimatorV2(server.url).run([pubs[0]]).result()[0].data.evs.shape == (0,)
    assert _jobs(server) == before + 1  # nothing to run: no job


def test_an_estimator_qnn_step_costs_a_few_jobs(server: EmbeddedServer) -> None:
    from qiskit_machine_learning.neural_networks import EstimatorQNN

    qc, x, w = _circuit()
    qnn = EstimatorQNN(
        circuit=qc,
        observables=[SparsePauliOp("ZI"), SparsePauliOp("IZ")],
        input_params=list(x),
        weight_params=list(w),
        estimator=RemoteEstimatorV2(server.url),
        input_gradients=True,
        default_precision=0.0,
    )
    rng = np.random.default_rng(9)
    inputs, weights = rng.uniform(-1, 1, (8, 2)), rng.uniform(-1, 1, 4)
    before = _jobs(server)
    qnn.forward(inputs, weights)
    qnn.backward(inputs, weights)
    assert _jobs(server) - before <= 3
