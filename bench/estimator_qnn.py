"""``qldm bench estimator``: an ``EstimatorQNN`` training step over the server against local.

The work: qiskit-machine-learning's ``EstimatorQNN`` (``input_gradients=True``, its default
``ParamShiftEstimatorGradient``) on a 2-qubit circuit with 2 inputs and 4 weights, two
observables, a batch of B = 32 samples; one step is ``forward`` plus ``backward`` (values and
both Jacobians), exact values (precision 0).

Rows, measured in the same run (median of ``repeats`` steps after a warm-up step):

- ``local StatevectorEstimator``: Qiskit's reference estimator in this process (the peer).
- ``RemoteEstimatorV2 (aer)``: the same QNN over a qldm server on loopback (one local worker,
  SQLite), as a client would use it: one job per circuit and precision of each ``run``.

Columns: jobs sent per step (the server's job count before and after), seconds per step, and
the ratio to the local estimator. The issue this answers measured 3.6 s against 0.58 s per step
when every PUB was its own job (257 jobs a step).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from qldm.bench.reference import median_seconds

BATCH = 32


def small_circuit() -> tuple[Any, Any, Any]:
    """The 2-qubit circuit: ``(circuit, x (2 inputs), w (4 weights))``."""
    from qiskit import QuantumCircuit
    from qiskit.circuit import ParameterVector

    x, w = ParameterVector("x", 2), ParameterVector("w", 4)
    qc = QuantumCircuit(2)
    qc.ry(x[0], 0)
    qc.ry(x[1], 1)
    qc.ry(w[0], 0)
    qc.rz(w[1], 1)
    qc.cx(0, 1)
    qc.rx(w[2], 0)
    qc.ry(w[3], 1)
    return qc, x, w


def _qnn(estimator: object) -> object:
    from qiskit.quantum_info import SparsePauliOp
    from qiskit_machine_learning.neural_networks import EstimatorQNN

    qc, x, w = small_circuit()
    return EstimatorQNN(
        circuit=qc,
        observables=[SparsePauliOp("ZI"), SparsePauliOp("IZ")],
        input_params=list(x),
        weight_params=list(w),
        estimator=estimator,
        input_gradients=True,
        default_precision=0.0,
    )


def main(*, repeats: int = 5) -> list[tuple[str, float, float]]:
    """Print and return ``(row, jobs per step, seconds per step)``."""
    from qiskit.primitives import StatevectorEstimator

    from qldm.client.remote_estimator import RemoteEstimatorV2
    from qldm.service.embedded import EmbeddedServer

    rng = np.random.default_rng(0)
    inputs, weights = rng.uniform(-1, 1, (BATCH, 2)), rng.uniform(-1, 1, 4)

    def step(qnn: object) -> None:
        qnn.forward(inputs, weights)  # type: ignore[attr-defined]
        qnn.backward(inputs, weights)  # type: ignore[attr-defined]

    rows: list[tuple[str, float, float]] = []
    local = _qnn(StatevectorEstimator())
    rows.append(("local StatevectorEstimator", 0.0, median_seconds(lambda: step(local), repeats)))
    with EmbeddedServer(Path(tempfile.mkdtemp(prefix="qldm-bench-qnn-")), workers=1) as server:

        def jobs() -> int:
            r = httpx.get(f"{server.url}/v1/jobs", params={"limit": 1})
            return int(r.json()["count"])

        remote = _qnn(RemoteEstimatorV2(server.url, backend="aer"))
        step(remote)  # warm-up: the worker's imports and caches
        before = jobs()
        seconds = median_seconds(lambda: step(remote), repeats, warm=False)
        rows.append(("RemoteEstimatorV2 (aer)", (jobs() - before) / repeats, seconds))
    base = rows[0][2]
    print(f"EstimatorQNN step, B = {BATCH}, forward + backward, exact values")
    print(f"{'row':<30}{'jobs/step':>10}{'s/step':>10}{'ratio':>8}")
    for name, n_jobs, secs in rows:
        print(f"{name:<30}{n_jobs:>10.1f}{secs:>10.3f}{secs / base:>8.2f}")
    return rows


if __name__ == "__main__":
    main()
