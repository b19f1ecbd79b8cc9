"""``qldm bench service``: what the job server adds to a training step.

The work is the reference job: a B = 128 ``jacobian`` on the exact backend for the reference
spec (6 qubits, ry_rz_brickwork, 6 layers, amplitude damping 0.01, angle_ry encoding), so the
result is values (1, 128, 6) plus Jacobians (1, 128, 6, 6) and (1, 128, 6, 72). It is timed

- in-process: ``ExactBackend().run(work)`` (what ``QuantumLayer`` does with no server);
- over HTTP: ``ServiceClient.evaluate`` against an embedded server on loopback (npz transport,
  one ``POST`` with ``Prefer: wait`` per job; SQLite, local executor with ``workers``
  processes);

each with 1 and 8 concurrent clients (with one client the two modes alternate job by job, so
that a shared machine's drift weighs on both alike). The table gives p50/p99 latency per job,
jobs/s, the HTTP p50 minus the in-process p50, and what the server adds per job (its latency
minus the backend's own seconds). Target: < 10 ms p50 with one client.
"""

from __future__ import annotations

import functools
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from qldm.backends.base import Workload
from qldm.bench.reference import REFERENCE_SPEC
from qldm.circuits import PQCSpec

__all__ = ["REFERENCE_SPEC", "main"]


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _time_one(call: Callable[[int], float], i: int) -> tuple[float, float]:
    """``(latency, latency minus the backend's seconds)`` of ``call(i)``."""
    start = time.perf_counter()
    backend_s = call(i)
    latency = time.perf_counter() - start
    return latency, latency - backend_s


def _timed(
    call: Callable[[int], float], *, clients: int, per_client: int
) -> tuple[list[float], list[float], float]:
    """Run ``clients * per_client`` calls from ``clients`` threads.

    ``call(i)`` returns the seconds the backend itself spent on call ``i``.

    Returns:
        ``(latencies, overheads, wall)``: per-call latency, latency minus backend seconds,
        and the wall time of the whole run.
    """

    def worker(c: int) -> list[tuple[float, float]]:
        return [_time_one(call, c * per_client + i) for i in range(per_client)]

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        pairs = [t for part in pool.map(worker, range(clients)) for t in part]
    wall = time.perf_counter() - start
    return [p[0] for p in pairs], [p[1] for p in pairs], wall


def _alternating(
    calls: dict[str, Callable[[int], float]], *, rounds: int
) -> dict[str, tuple[list[float], list[float], float]]:
    """One client: each call of ``calls`` in turn, ``rounds`` times, so that the machine's
    drift (other tenants of a shared host) weighs on every mode alike.

    Returns:
        Per mode, as :func:`_timed`: latencies, overheads and the summed latency (one client
        has nothing in flight between its calls, so that is its wall time).
    """
    out: dict[str, tuple[list[float], list[float], float]] = {m: ([], [], 0.0) for m in calls}
    for i in range(rounds):
        for mode, call in calls.items():
            latency, overhead = _time_one(call, i)
            lat, over, total = out[mode]
            lat.append(latency)
            over.append(overhead)
            out[mode] = (lat, over, total + latency)
    return out


Row = dict[str, float | str | int]

CLIENTS = (1, 8)


def main(
    *, batch: int = 128, jobs: int = 48, workers: int | None = None, threads: int = 1
) -> list[Row]:
    """Run the benchmark and print the table.

    Args:
        batch: samples per job (B).
        jobs: timed jobs per mode and client count (after a warm-up); with one client the
            modes alternate job by job.
        workers: the server's worker processes (default: the number of cores).
        threads: torch threads of the in-process runs (the server's workers use one each, so
            1 compares like with like).

    Returns:
        The table's rows.
    """
    import torch

    from qldm.backends.exact import ExactBackend
    from qldm.client.service_client import ServiceClient
    from qldm.service.arrays import pack, unpack
    from qldm.service.embedded import EmbeddedServer

    torch.set_num_threads(threads)
    spec = PQCSpec.model_validate(REFERENCE_SPEC)
    rng = np.random.default_rng(0)
    inputs = rng.uniform(-np.pi, np.pi, size=(batch, spec.n_inputs))
    weights = rng.uniform(-np.pi, np.pi, size=spec.n_weights)
    work = Workload.build(spec, inputs, weights, task="jacobian")
    backend = ExactBackend()
    reference = backend.run(work)  # warm-up (compiles and caches the program)
    workers = workers or os.cpu_count() or 2
    rows: list[Row] = []

    def record(mode: str, clients: int, timed: tuple[list[float], list[float], float]) -> None:
        latencies, overheads, wall = timed
        rows.append(
            {
                "mode": mode,
                "clients": clients,
                "jobs": len(latencies),
                "p50_ms": 1e3 * statistics.median(latencies),
                "p99_ms": 1e3 * _percentile(latencies, 99),
                "jobs_per_s": len(latencies) / wall,
                "overhead_p50_ms": 1e3 * statistics.median(overheads),
                "circuit_p50_ms": 1e3
                * statistics.median(
                    lat - over for lat, over in zip(latencies, overheads, strict=True)
                ),
            }
        )

    def in_process(_i: int) -> float:
        return float(backend.run(work).metadata["seconds"])

    # what encoding the result costs, against the circuit
    arrays = {
        "values": reference.values,
        "d_inputs": reference.d_inputs,
        "d_weights": reference.d_weights,
    }
    start = time.perf_counter()
    for _ in range(20):
        unpack(pack({"id": "x", "metadata": reference.metadata}, arrays))
    codec_ms = 1e3 * (time.perf_counter() - start) / 20

    with (
        tempfile.TemporaryDirectory(prefix="qldm-bench-") as tmp,
        EmbeddedServer(Path(tmp), workers=workers) as server,
    ):
        pool = [ServiceClient(server.url, timeout=600) for _ in range(max(CLIENTS))]
        try:
            with ThreadPoolExecutor(workers) as warm:  # every worker loads the backend once
                list(
                    warm.map(
                        lambda c: c.evaluate(spec, inputs, weights, task="jacobian"), pool[:workers]
                    )
                )
            got = pool[0].evaluate(spec, inputs, weights, task="jacobian")
            assert got.d_weights is not None and reference.d_weights is not None
            err = float(np.max(np.abs(got.d_weights - reference.d_weights)))

            def over_http(i: int, per_client: int = 1) -> float:
                ev = pool[i // per_client].evaluate(spec, inputs, weights, task="jacobian")
                return float(ev.metadata["seconds"])

            def one_client(i: int) -> float:
                return over_http(i, jobs)

            one = _alternating({"in-process": in_process, "http (npz)": one_client}, rounds=jobs)
            for mode, timed in one.items():
                record(mode, 1, timed)
            for clients in CLIENTS[1:]:
                per_client = max(1, jobs // clients)
                record(
                    "in-process",
                    clients,
                    _timed(in_process, clients=clients, per_client=per_client),
                )
                record(
                    "http (npz)",
                    clients,
                    _timed(
                        functools.partial(over_http, per_client=per_client),
                        clients=clients,
                        per_client=per_client,
                    ),
                )
        finally:
            for c in pool:
                c.close()

    print(
        f"\nqldm bench service: B={batch} exact jacobian of the reference spec (6 qubits, "
        f"ry_rz_brickwork x 6, amplitude damping 0.01); server: SQLite, {workers} workers; "
        f"in-process: {threads} torch thread(s); load average {os.getloadavg()[0]:.2f}"
    )
    header = (
        f"{'mode':<12} {'clients':>7} {'jobs':>5} {'p50 ms':>9} {'p99 ms':>9} "
        f"{'jobs/s':>7} {'p50 vs in-proc':>15} {'p50 - in-proc':>14} {'server adds p50':>16} "
        f"{'circuit p50':>12}"
    )
    print(header)
    print("-" * len(header))
    base = {int(r["clients"]): float(r["p50_ms"]) for r in rows if r["mode"] == "in-process"}
    for r in rows:
        ratio = float(r["p50_ms"]) / base[int(r["clients"])]
        adds = f"{float(r['overhead_p50_ms']):13.1f} ms" if r["mode"] != "in-process" else ""
        diff = float(r["p50_ms"]) - base[int(r["clients"])]
        delta = f"{diff:11.1f} ms" if r["mode"] != "in-process" else ""
        print(
            f"{r['mode']:<12} {r['clients']:>7} {r['jobs']:>5} {r['p50_ms']:>9.1f} "
            f"{r['p99_ms']:>9.1f} {r['jobs_per_s']:>7.2f} {ratio:>14.2f}x {delta:>14} {adds:>16} "
            f"{float(r['circuit_p50_ms']):9.1f} ms"
        )
    print(
        "1 client: the in-process and HTTP calls alternate job by job. 8 clients: threads of "
        "one process sharing one ExactBackend, against the server's worker processes."
    )
    print(
        f"'server adds' = latency minus the backend's own seconds for that job (HTTP, "
        f"validation, SQL, dispatch, transfer, wake-up; with more clients than workers also "
        f"the queue wait); 'p50 - in-proc' also holds the circuit's own speed in the worker "
        f"('circuit p50': the backend's own seconds, in-process or in the worker), "
        f"which moves by +-10% from run to run. npz encode + decode of the result: "
        f"{codec_ms:.2f} ms per job; circuit: {1e3 * reference.metadata['seconds']:.0f} ms; "
        f"max |HTTP - in-process| of d_weights: {err:.1e}. Target: < 10 ms p50."
    )
    return rows


if __name__ == "__main__":  # pragma: no cover
    main()
