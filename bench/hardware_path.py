"""``qldm bench hardware``: one training step on the runtime path, qldm vs ``EstimatorQNN``.

The work: a 2-qubit ``ry_rz_brickwork`` circuit, 2 layers, ``angle_ry`` encoding, Z on each
qubit, a batch of B = 4 samples, values plus both Jacobians (a training step), 2,000 shots per
parameter set, on ``fake:manila`` in qiskit-ibm-runtime's local testing mode.

Rows, all measured in the same run (one call each after a warm-up that fills the transpile
and M3 caches):

- ``qldm estimator``: :class:`qldm.backends.runtime.RuntimeBackend` without readout
  mitigation (``EstimatorV2``), one noise level.
- ``qldm M3``: the same with M3 readout mitigation (``SamplerV2`` + mthree).
- ``qldm K=3``: depolarizing channel, three noise levels of a diffusion schedule, M3.
- ``qiskit-ml EstimatorQNN``: ``EstimatorQNN(input_gradients=True)`` with its default
  ``ParamShiftEstimatorGradient`` on the runtime ``EstimatorV2`` in a ``Batch`` on the same
  fake device, the circuit transpiled by a preset pass manager (level 1, default layout):
  ``forward`` plus ``backward`` (values and both Jacobians). It has no notion of noise
  levels, so K = 3 would be three such steps (not run).

Columns: runtime submissions (``EstimatorV2.run`` / ``SamplerV2.run`` calls, counted by
wrapping the primitives' ``run``), bound circuits executed, seconds in the Batch vs outside
(transpilation, planning, mitigation, combination), total seconds and the largest difference
from the exact (noiseless) values. Ratios are against ``EstimatorQNN``.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

SHOTS = 2000
BATCH = 4


@dataclass
class Row:
    """One measured engine."""

    name: str
    levels: int
    submissions: int
    circuits: int
    in_session: float
    outside: float
    total: float
    error: float


class _Spy:
    """Counts ``run`` calls and bound parameter sets of the runtime primitives."""

    def __init__(self) -> None:
        self.calls = 0
        self.circuits = 0
        self._saved: list[tuple[Any, Any]] = []

    def __enter__(self) -> _Spy:
        import qiskit_ibm_runtime

        for cls in (qiskit_ibm_runtime.EstimatorV2, qiskit_ibm_runtime.SamplerV2):
            original = cls.run
            self._saved.append((cls, original))

            sampler = cls is qiskit_ibm_runtime.SamplerV2

            def run(
                prim: Any, pubs: Any, *args: Any, _o: Any = original, _s: bool = sampler, **kw: Any
            ) -> Any:
                self.calls += 1
                self.circuits += sum(_pub_size(p, sampler=_s) for p in pubs)
                return _o(prim, pubs, *args, **kw)

            cls.run = run
        return self

    def __exit__(self, *exc: object) -> None:
        for cls, original in self._saved:
            cls.run = original


def _pub_size(pub: Any, *, sampler: bool) -> int:
    """Bound circuits in one PUB: the shape of its parameter bindings."""
    index = 1 if sampler else 2
    bindings = pub[index] if len(pub) > index else None
    if bindings is None:
        return 1
    shape = getattr(bindings, "shape", None)
    if shape is None:
        shape = np.asarray(bindings).shape[:-1]
    return int(np.prod(shape)) if len(shape) else 1


def _qldm(name: str, kind: str, levels: list[float] | None, m3: bool, data_dir: str) -> Row:
    from qldm.backends.base import Workload
    from qldm.backends.exact import ExactBackend
    from qldm.backends.runtime import RuntimeBackend
    from qldm.circuits import PQCSpec

    channel = {"kind": kind, "strength": 0.1} if kind != "none" else {"kind": "none"}
    spec = PQCSpec.parse({"n_qubits": 2, "layers": 2, "channel": channel})
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (BATCH, 2))
    w = rng.uniform(-1, 1, spec.n_weights)
    backend = RuntimeBackend("fake:manila", data_dir=data_dir, mitigate_readout=m3, instances=8)
    work = Workload.build(spec, x, w, noise_levels=levels, task="jacobian", shots=SHOTS, seed=1)
    backend.run(work)  # warm-up: transpile cache, M3 calibration
    start = time.perf_counter()
    with _Spy() as spy:
        ev = backend.run(work)
    total = time.perf_counter() - start
    exact = ExactBackend().run(Workload.build(spec, x, w, noise_levels=levels))
    assert ev.values is not None and exact.values is not None  # expectation tasks
    meta = ev.metadata
    return Row(
        name,
        len(levels or [None]),
        spy.calls,
        spy.circuits,
        meta["seconds_in_session"],
        meta["seconds_outside"],
        total,
        float(np.abs(ev.values - exact.values).max()),
    )


def _estimator_qnn() -> Row:
    from qiskit.transpiler import generate_preset_pass_manager
    from qiskit_ibm_runtime import Batch, EstimatorV2
    from qiskit_machine_learning.neural_networks import EstimatorQNN

    from qldm.backends.base import Workload
    from qldm.backends.exact import ExactBackend
    from qldm.backends.runtime import fake_device
    from qldm.circuits import PQCSpec
    from qldm.circuits.qiskit_builder import build

    spec = PQCSpec.parse({"n_qubits": 2, "layers": 2})
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (BATCH, 2))
    w = rng.uniform(-1, 1, spec.n_weights)
    backend = fake_device("manila")
    built = build(spec, channels=False)
    outside = 0.0
    t0 = time.perf_counter()
    pm = generate_preset_pass_manager(optimization_level=1, backend=backend)
    isa = pm.run(built.circuit)
    observables = [o.apply_layout(isa.layout) for o in built.observables]
    outside += time.perf_counter() - t0
    start = time.perf_counter()
    with _Spy() as spy, Batch(backend=backend) as batch, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator = EstimatorV2(mode=batch)
        estimator.options.default_shots = SHOTS
        qnn = EstimatorQNN(
            circuit=isa,
            estimator=estimator,
            observables=observables,
            input_params=list(built.inputs),
            weight_params=list(built.weights),
            input_gradients=True,
            default_precision=1 / np.sqrt(SHOTS),
        )
        t_in = time.perf_counter()
        values = qnn.forward(x, w)
        qnn.backward(x, w)
        in_session = time.perf_counter() - t_in
    total = time.perf_counter() - start
    reference = ExactBackend().run(Workload.build(spec, x, w)).values
    assert reference is not None  # an expectation task
    exact = reference[0]
    return Row(
        "qiskit-ml EstimatorQNN",
        1,
        spy.calls,
        spy.circuits,
        in_session,
        outside + (total - in_session),
        total + outside,
        float(np.abs(np.asarray(values) - exact).max()),
    )


def main() -> None:
    """Measure one training step per engine on ``fake:manila`` and print the table."""
    started = time.perf_counter()
    print(
        f"one training step on fake:manila (local testing mode): 2 qubits, 2 layers, "
        f"B = {BATCH}, values + both Jacobians, {SHOTS} shots per parameter set"
    )
    with tempfile.TemporaryDirectory() as data_dir:
        rows = [
            _qldm("qldm estimator", "none", None, False, data_dir),
            _qldm("qldm M3", "none", None, True, data_dir),
            _qldm("qldm K=3 (depolarizing)", "depolarizing", [0.05, 0.1, 0.2], True, data_dir),
        ]
    try:
        peer = _estimator_qnn()
        rows.append(peer)
    except ImportError as exc:  # pragma: no cover - optional peer
        print(f"qiskit-machine-learning unavailable: {exc}")
        peer = None
    header = (
        f"{'engine':<26}{'K':>3}{'submissions':>13}{'circuits':>10}{'in batch s':>12}"
        f"{'outside s':>11}{'total s':>9}{'max |err|':>11}{'subm. vs QNN':>14}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        ratio = f"{row.submissions / peer.submissions:.2f}x" if peer and peer.submissions else "-"
        print(
            f"{row.name:<26}{row.levels:>3}{row.submissions:>13}{row.circuits:>10}"
            f"{row.in_session:>12.2f}{row.outside:>11.2f}{row.total:>9.2f}{row.error:>11.3f}"
            f"{ratio:>14}"
        )
    print(
        "\nmax |err|: against exact noiseless values (noisy rows: against the exact channel); "
        "includes device noise and shot noise"
    )
    print(f"bench wall time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
