"""``qldm bench engines``: qldm's engines against the usual peers, on the reference work.

The reference work: the 6-qubit ``ry_rz_brickwork`` circuit, 6 layers, amplitude damping 0.01
on every qubit after every layer, ``angle_ry`` encoding, Z on each qubit; a batch of B samples;
values ``(B, 6)`` plus both Jacobians, by inputs ``(B, 6, 6)`` and by weights ``(B, 6, 72)``.

Engines, all measured in the same run (median of ``repeats`` timed calls after one warm-up):

- ``qldm exact``: ``ExactBackend().run(Workload.build(..., task="jacobian"))``, torch, autograd.
- ``qldm aer``: ``AerBackend().run(...)``: every parameter-shift term in one Aer run (density
  matrix). About 157 parameter sets per sample, so it is measured at a small B.
- ``qiskit-ml TorchConnector``: ``EstimatorQNN`` (input_gradients=True) with
  ``ParamShiftEstimatorGradient`` on Aer's ``EstimatorV2`` (density matrix, the same Aer
  parallelism options as qldm's Aer backend, precision 0), the same noisy circuit built by
  :func:`qldm.circuits.qiskit_builder.build`; one forward plus one backward, whose ``qnn.backward``
  computes both full Jacobians. Very slow, so measured at B = 1.
- ``PennyLane default.mixed``: the same circuit in PennyLane, ``diff_method="backprop"``, torch
  interface, parameter broadcasting over the batch (weights broadcast as ``(B, P)`` so that one
  backward pass per output gives per-sample weight Jacobians): a forward plus O = 6 backward
  passes. Measured at the largest B (8, 16, ..., batch) whose call takes under half of
  :data:`PENNYLANE_CALL_BUDGET_S` (the next doubling would exceed it).

Threads: torch and Aer take their thread counts from the environment (``OMP_NUM_THREADS``);
on a machine shared with other work, ``OMP_NUM_THREADS=1`` avoids oversubscription, which
slows the torch engines several-fold. The header prints the setting and the load average.

Before timing, every engine's values (and Jacobians, or for TorchConnector the gradients of a
fixed random projection of the outputs) are compared with the exact engine's. Ratios are per
sample, so engines measured at different B compare fairly (every engine's cost grows at least
linearly in B, so a per-sample figure at small B flatters the slower engines, if anything).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from qldm.backends.base import Backend, Context, Workload
from qldm.bench.reference import REFERENCE_SPEC, median_seconds, per_sample_jacobians
from qldm.circuits import PQCSpec

__all__ = ["REFERENCE_SPEC", "main"]


AER_BATCH = 8
"""B for qldm's Aer backend."""

TORCH_CONNECTOR_BATCH = 1
"""B for qiskit-machine-learning's TorchConnector (tens of seconds per sample on 2 cores)."""

PENNYLANE_SMALL_BATCH = 8
"""The first B PennyLane is tried at (then doubled while the budget allows)."""

PENNYLANE_CALL_BUDGET_S = 12.0
"""PennyLane's B doubles only while one call would stay within this many seconds."""

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]
"""``values (B, O)``, ``d_inputs (B, O, I)`` or a gradient ``(B, I)``, ``d_weights (B, O, P)``
or a gradient ``(P,)``."""


@dataclass
class Measured:
    """One engine's timing and agreement with the exact engine."""

    name: str
    batch: int
    seconds: float
    values_diff: float
    jacobian_diff: float
    jacobian_kind: str
    note: str = ""

    @property
    def ms_per_sample(self) -> float:
        return 1e3 * self.seconds / self.batch


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


# ---------------------------------------------------------------------- engines


def _backend_call(
    backend: Backend, spec: PQCSpec, x: np.ndarray, w: np.ndarray
) -> Callable[[], Arrays]:
    def call() -> Arrays:
        result = backend.run(Workload.build(spec, x, w, task="jacobian"), Context())
        values, d_inputs, d_weights = result.values, result.d_inputs, result.d_weights
        assert values is not None and d_inputs is not None and d_weights is not None
        return values[0], d_inputs[0], d_weights[0]

    return call


def _torch_connector_call(
    spec: PQCSpec, x: np.ndarray, w: np.ndarray, probe: np.ndarray
) -> Callable[[], Arrays]:
    """TorchConnector forward + backward of ``sum(out * probe)``: values, dL/dx, dL/dw."""
    import torch
    from qiskit_aer.primitives import EstimatorV2
    from qiskit_machine_learning.connectors import TorchConnector
    from qiskit_machine_learning.gradients import ParamShiftEstimatorGradient
    from qiskit_machine_learning.neural_networks import EstimatorQNN

    from qldm.circuits.qiskit_builder import build

    qc = build(spec)
    estimator = EstimatorV2(
        options={
            "default_precision": 0.0,
            "backend_options": {
                "method": "density_matrix",
                "max_parallel_experiments": 0,
                "max_parallel_threads": 0,
            },
        }
    )
    qnn = EstimatorQNN(
        circuit=qc.circuit,
        observables=list(qc.observables),
        input_params=list(qc.inputs),
        weight_params=list(qc.weights),
        estimator=estimator,
        gradient=ParamShiftEstimatorGradient(estimator),
        input_gradients=True,
        default_precision=0.0,
    )
    model = TorchConnector(qnn, initial_weights=w)
    probe_t = torch.tensor(probe)

    def call() -> Arrays:
        model.zero_grad()
        xt = torch.tensor(x, requires_grad=True)
        out = model(xt)
        out.backward(probe_t.to(out.dtype))
        assert xt.grad is not None and model.weight.grad is not None
        return out.detach().numpy(), xt.grad.numpy(), model.weight.grad.numpy()

    return call


def _pennylane_call(spec: PQCSpec, x: np.ndarray, w: np.ndarray) -> Callable[[], Arrays]:
    """PennyLane default.mixed, backprop, torch: values and full per-sample Jacobians."""
    import pennylane as qml
    import torch

    n, layers = spec.n_qubits, spec.layers
    gamma = float(spec.layer_strengths()[0])
    device = qml.device("default.mixed", wires=n)

    # PennyLane wire q is Qiskit qubit q; the outputs are <Z_q> per wire, in qubit order,
    # which is qldm's ``z_each`` order (no label reversal involved).
    @qml.qnode(device, interface="torch", diff_method="backprop")
    def circuit(inputs: torch.Tensor, weights: torch.Tensor) -> list[object]:
        for q in range(n):
            qml.RY(inputs[..., q], wires=q)
        for layer in range(layers):
            base = layer * 2 * n
            for q in range(n):
                qml.RY(weights[..., base + 2 * q], wires=q)
                qml.RZ(weights[..., base + 2 * q + 1], wires=q)
            for i in range(0, n - 1, 2):
                qml.CNOT(wires=[i, i + 1])
            for i in range(1, n - 1, 2):
                qml.CNOT(wires=[i, i + 1])
            for q in range(n):
                qml.AmplitudeDamping(gamma, wires=q)
        return [qml.expval(qml.PauliZ(q)) for q in range(n)]

    batch = x.shape[0]

    def call() -> Arrays:
        xt = torch.tensor(x, requires_grad=True)
        wt = torch.tensor(np.tile(w, (batch, 1)), requires_grad=True)  # one copy per sample
        out = torch.stack(circuit(xt, wt), dim=-1)  # (B, O)
        return per_sample_jacobians(out, xt, wt)

    return call


# ---------------------------------------------------------------------- main


def _verdict(ok: bool | None) -> str:
    return "SKIP" if ok is None else ("PASS" if ok else "FAIL")


def main(*, batch: int = 128, repeats: int = 3, qubits: int = 6) -> None:
    """Measure the engines side by side and print the table and the targets.

    Args:
        batch: B for the exact engine (and PennyLane, when it is fast enough).
        repeats: timed calls per engine (the median is reported), after one warm-up.
        qubits: 6 for the reference work; 12 for the 12-qubit ``hqconv``/``fqconv`` section
            (:mod:`qldm.bench.engines_wide`).
    """
    if batch < 1 or repeats < 1:
        raise ValueError("batch and repeats must be >= 1")
    if qubits not in (6, 12):
        raise ValueError(f"qubits must be 6 (the reference work) or 12, got {qubits}")
    if qubits == 12:
        from qldm.bench.engines_wide import main as wide_main

        wide_main(batch=batch, repeats=repeats)
        return
    import torch

    from qldm.backends.aer import AerBackend
    from qldm.backends.exact import ExactBackend

    started = time.perf_counter()
    spec = PQCSpec.parse(REFERENCE_SPEC)
    rng = np.random.default_rng(2024)
    x = rng.uniform(-math.pi, math.pi, (batch, spec.n_inputs))
    w = rng.uniform(-math.pi, math.pi, spec.n_weights)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"reference work: {spec.n_qubits} qubits, {spec.ansatz} x {spec.layers}, amplitude damping "
        f"{spec.layer_strengths()[0]:g}, {spec.encoding}; values + Jacobians by inputs "
        f"({spec.n_inputs}) and weights ({spec.n_weights})"
    )
    print(
        f"machine: {os.cpu_count()} cores, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, load average {load:.1f}; "
        f"repeats = {repeats}"
    )

    # exact: the reference for every comparison
    exact_call = _backend_call(ExactBackend(), spec, x, w)
    ref_values, ref_dx, ref_dw = exact_call()
    rows = [
        Measured(
            "qldm exact (torch)", batch, median_seconds(exact_call, repeats), 0.0, 0.0, "jacobians"
        )
    ]

    # aer
    b_aer = min(AER_BATCH, batch)
    aer_call = _backend_call(AerBackend(), spec, x[:b_aer], w)
    values, dx, dw = aer_call()
    rows.append(
        Measured(
            "qldm aer (density matrix)",
            b_aer,
            median_seconds(
                aer_call, repeats, warm=False
            ),  # the agreement call above was the warm-up
            _max_diff(values, ref_values[:b_aer]),
            max(_max_diff(dx, ref_dx[:b_aer]), _max_diff(dw, ref_dw[:b_aer])),
            "jacobians",
            "all shift terms in one Aer run; small B",
        )
    )

    # qiskit-machine-learning TorchConnector
    b_tc = min(TORCH_CONNECTOR_BATCH, batch)
    probe = rng.standard_normal((b_tc, spec.n_outputs))
    tc_row: Measured | None
    try:
        tc_call = _torch_connector_call(spec, x[:b_tc], w, probe)
    except ImportError as exc:
        print(f"qiskit-machine-learning: not installed ({exc})")
        tc_row = None
    else:
        values, gx, gw = tc_call()
        want_gx = np.einsum("bo,boi->bi", probe, ref_dx[:b_tc])
        want_gw = np.einsum("bo,bop->p", probe, ref_dw[:b_tc])
        tc_row = Measured(
            "qiskit-ml TorchConnector",
            b_tc,
            median_seconds(tc_call, repeats, warm=False),
            _max_diff(values, ref_values[:b_tc]),
            max(_max_diff(gx, want_gx), _max_diff(gw, want_gw)),
            "vjp, float32",
            "EstimatorQNN + param shift on Aer EstimatorV2; B=1",
        )
        rows.append(tc_row)

    # PennyLane
    pl_row: Measured | None
    try:
        import pennylane  # noqa: F401
    except ImportError:
        print("PennyLane: not installed")
        pl_row = None
    else:
        # Broadcasting amortises PennyLane's per-call overhead, so give it the largest B
        # (doubling from 8) whose call stays within the budget.
        b_pl = min(PENNYLANE_SMALL_BATCH, batch)
        pl_call = _pennylane_call(spec, x[:b_pl], w)
        pl_call()  # warm-up
        while True:
            start = time.perf_counter()
            values, dx, dw = pl_call()
            took = time.perf_counter() - start
            if b_pl >= batch or 2 * took > PENNYLANE_CALL_BUDGET_S:
                break
            b_pl = min(2 * b_pl, batch)
            pl_call = _pennylane_call(spec, x[:b_pl], w)
        note = "backprop, broadcast batch"
        if b_pl < batch:
            note += f"; 2B over the {PENNYLANE_CALL_BUDGET_S:.0f} s/call budget"
        pl_row = Measured(
            "PennyLane default.mixed",
            b_pl,
            median_seconds(pl_call, repeats, warm=False),
            _max_diff(values, ref_values[:b_pl]),
            max(_max_diff(dx, ref_dx[:b_pl]), _max_diff(dw, ref_dw[:b_pl])),
            "jacobians",
            note,
        )
        rows.append(pl_row)

    _print_table(rows)
    exact_ms = rows[0].ms_per_sample
    aer_ms = rows[1].ms_per_sample
    targets = [
        (
            "exact >= 100x faster per sample than PennyLane default.mixed",
            None if pl_row is None else pl_row.ms_per_sample / exact_ms,
            100.0,
        ),
        (
            "exact >= 10,000x faster per sample than TorchConnector",
            None if tc_row is None else tc_row.ms_per_sample / exact_ms,
            10_000.0,
        ),
        (
            "aer >= 30x faster per sample than TorchConnector",
            None if tc_row is None else tc_row.ms_per_sample / aer_ms,
            30.0,
        ),
    ]
    print("\ntargets")
    for label, ratio, goal in targets:
        shown = "n/a" if ratio is None else f"{ratio:,.0f}x"
        print(f"  {_verdict(None if ratio is None else ratio >= goal)}  {label}: {shown}")
    print(f"\nbench wall time: {time.perf_counter() - started:.0f} s")


def _print_table(rows: list[Measured]) -> None:
    exact_ms = rows[0].ms_per_sample
    print("\nagreement with qldm exact (max |difference|)")
    for row in rows[1:]:
        print(
            f"  {row.name:<28} values {row.values_diff:.1e}   "
            f"{row.jacobian_kind} {row.jacobian_diff:.1e}"
        )
    header = (
        f"\n{'engine':<28} {'B':>5} {'s / call':>10} {'ms / sample':>12} "
        f"{'x exact / sample':>17}  note"
    )
    print(header)
    print("-" * (len(header) + 30))
    for row in rows:
        print(
            f"{row.name:<28} {row.batch:>5} {row.seconds:>10.4f} {row.ms_per_sample:>12.3f} "
            f"{row.ms_per_sample / exact_ms:>17,.0f}  {row.note}"
        )


if __name__ == "__main__":
    main()
