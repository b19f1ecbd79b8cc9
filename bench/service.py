"""``qldm bench service``: what the job server adds to a training step, and its throughput.

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

A second table gives jobs/s for 1, 4 and 16 concurrent clients on a tiny job (2 qubits, one
layer, B = 2), on SQLite and on PostgreSQL (a fresh database on the server ``--postgres``
names, dropped afterwards; skipped, saying so, when it does not answer).

Side by side (``--against PYTHON``, the interpreter of another qldm tree, e.g. the tree before
a change): each tree gets its own driver process (this file run by that tree's interpreter, so
server and client are that tree's), with its own embedded server; one client alternates between
the two job by job (the order swapped every round), so that background load hits both alike.
The tables then give both trees' figures and the new-minus-old differences.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import numpy as np

from qldm.backends.base import Workload
from qldm.bench.reference import REFERENCE_SPEC
from qldm.circuits import PQCSpec

__all__ = ["REFERENCE_SPEC", "main", "side_by_side"]

TINY_SPEC = {
    "n_qubits": 2,
    "layers": 1,
    "channel": {"kind": "amplitude_damping", "strength": 0.05},
}
"""The throughput job's circuit: 2 qubits, one layer (I = 2, P = 4); B = 2, expectation."""

RATE_CLIENTS = (1, 4, 16)
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


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


def _reference_work(batch: int) -> tuple[PQCSpec, np.ndarray, np.ndarray, Workload]:
    spec = PQCSpec.model_validate(REFERENCE_SPEC)
    rng = np.random.default_rng(0)
    inputs = rng.uniform(-np.pi, np.pi, size=(batch, spec.n_inputs))
    weights = rng.uniform(-np.pi, np.pi, size=spec.n_weights)
    return spec, inputs, weights, Workload.build(spec, inputs, weights, task="jacobian")


def _tiny_work() -> tuple[PQCSpec, np.ndarray, np.ndarray]:
    spec = PQCSpec.model_validate(TINY_SPEC)
    rng = np.random.default_rng(1)
    return (
        spec,
        rng.uniform(-np.pi, np.pi, size=(2, spec.n_inputs)),
        rng.uniform(-np.pi, np.pi, size=spec.n_weights),
    )


def _rate(pool: list[Any], *, clients: int, jobs: int) -> float:
    """Jobs/s of ``jobs`` tiny jobs sent by ``clients`` threads (one ``ServiceClient`` each)."""
    spec, inputs, weights = _tiny_work()
    per_client = max(1, jobs // clients)

    def worker(c: int) -> None:
        for _ in range(per_client):
            pool[c].evaluate(spec, inputs, weights)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as threads:
        list(threads.map(worker, range(clients)))
    return clients * per_client / (time.perf_counter() - start)


def _rate_jobs(clients: int) -> int:
    return {1: 40, 4: 80}.get(clients, 160)


Row = dict[str, float | str | int]

CLIENTS = (1, 8)


def main(
    *,
    batch: int = 128,
    jobs: int = 48,
    workers: int | None = None,
    threads: int = 1,
    postgres: str | None = POSTGRES_URL,
) -> list[Row]:
    """Run the benchmark and print the tables.

    Args:
        batch: samples per job (B).
        jobs: timed jobs per mode and client count (after a warm-up); with one client the
            modes alternate job by job.
        workers: the server's worker processes (default: the number of cores).
        threads: torch threads of the in-process runs (the server's workers use one each, so
            1 compares like with like).
        postgres: a PostgreSQL URL whose server gets a fresh database for the throughput
            table (``None``: SQLite only).

    Returns:
        The latency table's rows.
    """
    import torch

    from qldm.backends.exact import ExactBackend
    from qldm.client.service_client import ServiceClient
    from qldm.service.arrays import pack, unpack
    from qldm.service.embedded import EmbeddedServer

    torch.set_num_threads(threads)
    spec, inputs, weights, work = _reference_work(batch)
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
    rates(trees={"this tree": sys.executable}, workers=workers, postgres=postgres)
    return rows


# ---------------------------------------------------------------------- side by side


class _Driver:
    """One tree's driver: this file run by that tree's interpreter, with its own embedded
    server and clients; it answers one JSON line per command (see :func:`_drive`)."""

    def __init__(self, python: str, *, database_url: str | None, workers: int, batch: int) -> None:
        command = [python, str(Path(__file__).resolve()), "--driver", f"--batch={batch}"]
        command += [f"--workers={workers}"]
        if database_url is not None:
            command.append(f"--database-url={database_url}")
        self.python = python
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.hello: dict[str, Any] = {}

    def ready(self) -> dict[str, Any]:
        """Wait for the driver's server and warm-up; its greeting (``qldm``: its tree)."""
        self.hello = self._answer()
        return self.hello

    def ask(self, op: str, **args: Any) -> dict[str, Any]:
        stdin = self._process.stdin
        assert stdin is not None
        stdin.write(json.dumps({"op": op, **args}) + "\n")
        stdin.flush()
        return self._answer()

    def _answer(self) -> dict[str, Any]:
        stdout = self._process.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"the driver of {self.python} exited ({self._process.wait()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the driver of {self.python} failed: {answer['error']}")
        return answer

    def close(self) -> None:
        if self._process.poll() is None:
            with contextlib.suppress(Exception):  # it may be gone already
                self.ask("quit")
            try:
                self._process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._process.kill()


@contextlib.contextmanager
def _drivers(
    trees: dict[str, str], *, database: str, workers: int, batch: int, postgres: str | None
) -> Iterator[dict[str, _Driver]]:
    """One ready driver per tree, each on a fresh database of kind ``database``."""
    databases: list[str] = []
    drivers: dict[str, _Driver] = {}
    try:
        for name, python in trees.items():
            url = None
            if database == "postgresql":
                assert postgres is not None
                url = _create_database(postgres)
                databases.append(url)
            drivers[name] = _Driver(python, database_url=url, workers=workers, batch=batch)
        for driver in drivers.values():
            driver.ready()
        yield drivers
    finally:
        for driver in drivers.values():
            driver.close()
        for url in databases:
            _drop_database(url)


def _admin(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _postgres_problem(url: str) -> str | None:
    try:
        import psycopg

        with psycopg.connect(_admin(url), connect_timeout=3):
            return None
    except Exception as exc:  # any failure means: no PostgreSQL figures
        return f"{type(exc).__name__}: {exc}"


def _create_database(url: str) -> str:
    import psycopg

    name = f"qldm_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin(url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{url.rsplit('/', 1)[0]}/{name}"


def _drop_database(url: str) -> None:
    import psycopg

    server, name = url.rsplit("/", 1)
    with psycopg.connect(_admin(f"{server}/postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def side_by_side(
    against: str,
    *,
    jobs: int = 150,
    batch: int = 128,
    workers: int | None = None,
    postgres: str | None = POSTGRES_URL,
    latency: bool = True,
    throughput: bool = True,
) -> dict[str, Any]:
    """This tree against the tree of the interpreter ``against``, alternating job by job.

    Args:
        against: the other tree's Python (e.g. ``/tmp/basevenv/bin/python``); its ``qldm``
            must have ``service.embedded``, ``client.service_client`` and ``backends.exact``.
        jobs: reference jobs per tree (one client; each round runs one HTTP job and one
            in-process job per tree, the trees' order swapped every round).
        batch: samples per reference job.
        workers: each server's worker processes (default: the number of cores).
        postgres: the PostgreSQL server for the throughput table (``None``: SQLite only).
        latency: print the latency table.
        throughput: print the jobs/s table.

    Returns:
        ``{"latency": {tree: figures}, "rates": {(database, clients): {tree: jobs/s}}}``.
    """
    trees = {"old": against, "new": sys.executable}
    workers = workers or os.cpu_count() or 2
    out: dict[str, Any] = {}
    if latency:
        out["latency"] = _latency_side_by_side(trees, jobs=jobs, batch=batch, workers=workers)
    if throughput:
        out["rates"] = rates(trees=trees, workers=workers, postgres=postgres)
    return out


def _latency_side_by_side(
    trees: dict[str, str], *, jobs: int, batch: int, workers: int
) -> dict[str, dict[str, float]]:
    samples: dict[str, dict[str, list[float]]] = {
        t: {"latency": [], "adds": [], "inproc": []} for t in trees
    }
    with _drivers(trees, database="sqlite", workers=workers, batch=batch, postgres=None) as drv:
        names = list(trees)
        for i in range(jobs):
            order = names if i % 2 == 0 else names[::-1]
            for tree in order:
                got = drv[tree].ask("job")
                samples[tree]["latency"].append(got["latency"])
                samples[tree]["adds"].append(got["latency"] - got["backend"])
            for tree in order:
                samples[tree]["inproc"].append(drv[tree].ask("inproc")["latency"])
        where = {t: d.hello.get("qldm", "?") for t, d in drv.items()}
    figures: dict[str, dict[str, float]] = {}
    print(
        f"\nqldm bench service, side by side: B={batch} exact jacobian of the reference spec, "
        f"one client alternating job by job between two servers (SQLite, {workers} workers "
        f"each), {jobs} jobs each; load average {os.getloadavg()[0]:.2f}"
    )
    header = (
        f"{'tree':<5} {'http p50':>9} {'http p99':>9} {'in-proc p50':>12} {'p50 - in-proc':>14} "
        f"{'server adds p50':>16} {'p25':>6} {'p75':>6}  qldm"
    )
    print(header)
    print("-" * len(header))
    for tree, s in samples.items():
        f = {
            "http_p50_ms": 1e3 * statistics.median(s["latency"]),
            "http_p99_ms": 1e3 * _percentile(s["latency"], 99),
            "inproc_p50_ms": 1e3 * statistics.median(s["inproc"]),
            "adds_p50_ms": 1e3 * statistics.median(s["adds"]),
            "adds_p25_ms": 1e3 * _percentile(s["adds"], 25),
            "adds_p75_ms": 1e3 * _percentile(s["adds"], 75),
        }
        f["minus_inproc_ms"] = f["http_p50_ms"] - f["inproc_p50_ms"]
        figures[tree] = f
        print(
            f"{tree:<5} {f['http_p50_ms']:9.2f} {f['http_p99_ms']:9.2f} {f['inproc_p50_ms']:12.2f} "
            f"{f['minus_inproc_ms']:14.2f} {f['adds_p50_ms']:16.2f} {f['adds_p25_ms']:6.2f} "
            f"{f['adds_p75_ms']:6.2f}  {where[tree]}"
        )
    old, new = samples["old"]["adds"], samples["new"]["adds"]
    paired = statistics.median(b - a for a, b in zip(old, new, strict=True))
    figures["new_minus_old"] = {
        "adds_p50_ms": figures["new"]["adds_p50_ms"] - figures["old"]["adds_p50_ms"],
        "paired_median_ms": 1e3 * paired,
    }
    print(
        f"new - old: server adds p50 {figures['new_minus_old']['adds_p50_ms']:+.2f} ms; median "
        f"of the per-round differences {1e3 * paired:+.2f} ms. 'server adds' = latency minus "
        f"the backend's own seconds for that job (all times in ms)."
    )
    return figures


def rates(
    *, trees: dict[str, str], workers: int, postgres: str | None, repeats: int = 2
) -> dict[tuple[str, int], dict[str, float]]:
    """Print jobs/s of tiny jobs for 1, 4 and 16 clients, per database and tree.

    Each tree's driver gets its own fresh database; the trees take turns (``repeats`` times,
    the order swapped each time) and the table gives the best of the turns per tree.

    Returns:
        ``{(database, clients): {tree: jobs/s}}``.
    """
    kinds = ["sqlite"]
    skipped = None
    if postgres is not None:
        skipped = _postgres_problem(postgres)
        if skipped is None:
            kinds.append("postgresql")
    out: dict[tuple[str, int], dict[str, float]] = {}
    for kind in kinds:
        with _drivers(trees, database=kind, workers=workers, batch=2, postgres=postgres) as drv:
            names = list(trees)
            for clients in RATE_CLIENTS:
                got: dict[str, list[float]] = {t: [] for t in names}
                for r in range(repeats):
                    for tree in names if r % 2 == 0 else names[::-1]:
                        answer = drv[tree].ask("rate", clients=clients, jobs=_rate_jobs(clients))
                        got[tree].append(answer["jobs_per_s"])
                out[(kind, clients)] = {t: max(v) for t, v in got.items()}
    print(
        f"\njobs/s of a tiny job (2 qubits, 1 layer, B = 2, expectation; one POST with "
        f"Prefer: wait each), {workers} workers per server, best of {repeats} turns; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    names = list(trees)
    header = f"{'database':<11} {'clients':>7} " + " ".join(f"{t:>10}" for t in names)
    if len(names) == 2:
        header += f" {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for (kind, clients), per_tree in out.items():
        line = f"{kind:<11} {clients:>7} " + " ".join(f"{per_tree[t]:10.1f}" for t in names)
        if len(names) == 2:
            line += f" {per_tree[names[1]] / per_tree[names[0]]:6.2f}x"
        print(line)
    if skipped is not None:
        print(f"PostgreSQL skipped: {skipped}")
    return out


def _drive(batch: int, workers: int, database_url: str | None) -> None:
    """The driver loop: start a server and clients of the ``qldm`` this interpreter imports,
    then answer one JSON line on the real stdout for each JSON command on stdin (``job``: one
    reference job over HTTP; ``inproc``: the same in-process; ``rate``: jobs/s of tiny jobs;
    ``quit``)."""
    import torch

    import qldm
    from qldm.backends.exact import ExactBackend
    from qldm.client.service_client import ServiceClient
    from qldm.service.embedded import EmbeddedServer

    reply: IO[str] = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything else printed goes to stderr
    torch.set_num_threads(1)
    spec, inputs, weights, work = _reference_work(batch)
    backend = ExactBackend()
    backend.run(work)
    with (
        tempfile.TemporaryDirectory(prefix="qldm-bench-") as tmp,
        EmbeddedServer(Path(tmp), database_url=database_url, workers=workers) as server,
    ):
        pool = [ServiceClient(server.url, timeout=600) for _ in range(max(RATE_CLIENTS))]
        with ThreadPoolExecutor(workers) as warm:  # every worker loads the backend once
            list(
                warm.map(
                    lambda c: c.evaluate(spec, inputs, weights, task="jacobian"), pool[:workers]
                )
            )
        _rate(pool, clients=1, jobs=10)
        reply.write(json.dumps({"ready": True, "qldm": str(Path(qldm.__file__).parents[1])}))
        reply.write("\n")
        reply.flush()
        for line in sys.stdin:
            command = json.loads(line)
            answer: dict[str, Any]
            try:
                if command["op"] == "quit":
                    break
                if command["op"] == "job":
                    start = time.perf_counter()
                    ev = pool[0].evaluate(spec, inputs, weights, task="jacobian")
                    latency = time.perf_counter() - start
                    answer = {"latency": latency, "backend": float(ev.metadata["seconds"])}
                elif command["op"] == "inproc":
                    start = time.perf_counter()
                    backend.run(work)
                    answer = {"latency": time.perf_counter() - start}
                elif command["op"] == "rate":
                    answer = {
                        "jobs_per_s": _rate(pool, clients=command["clients"], jobs=command["jobs"])
                    }
                else:
                    answer = {"error": f"unknown op {command['op']!r}"}
            except Exception as exc:  # reported to the coordinator, which stops
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            reply.write(json.dumps(answer) + "\n")
            reply.flush()
        for c in pool:
            c.close()


def _cli(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m qldm.bench.service", description=__doc__)
    parser.add_argument("--against", help="another tree's python: compare side by side")
    parser.add_argument("--jobs", type=int, default=None, help="timed reference jobs")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--postgres", default=POSTGRES_URL, help="'' for SQLite only")
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    postgres = args.postgres or None
    if args.driver:
        _drive(args.batch, args.workers or 2, args.database_url)
    elif args.against:
        side_by_side(
            args.against,
            jobs=args.jobs or 150,
            batch=args.batch,
            workers=args.workers,
            postgres=postgres,
            latency=not args.no_latency,
            throughput=not args.no_throughput,
        )
    else:
        main(batch=args.batch, jobs=args.jobs or 48, workers=args.workers, postgres=postgres)


if __name__ == "__main__":  # pragma: no cover
    _cli(sys.argv[1:])
