"""The ``qldm`` command line.

This module is the composition root: it is the one place that wires the server, the seed
models and the benchmarks together, so each command imports its implementation lazily (the
CLI starts fast and ``qldm --help`` needs neither torch nor Qiskit). It is also an edge: each
command that needs them reads the ``QLDM_*`` settings once (:func:`_settings`) and passes their
values down.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from datetime import datetime

    from qldm.service.settings import Settings

app = typer.Typer(
    name="qldm",
    help="qldm: run parameterized quantum circuits for hybrid generative models as jobs.",
    no_args_is_help=True,
    add_completion=False,
)
bench_app = typer.Typer(
    help="Benchmarks: print tables with ratios against peers.", no_args_is_help=True
)
keys_app = typer.Typer(
    help="API keys (one tenant per key; stored hashed) in the database `qldm serve` uses "
    "(QLDM_DATABASE_URL, else qldm.sqlite3 in QLDM_DATA_DIR).",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")
app.add_typer(keys_app, name="keys")


class ExecutionModeChoice(StrEnum):
    """IBM Runtime execution modes (``qldm train --execution-mode``)."""

    job = "job"
    batch = "batch"
    session = "session"


def _settings() -> Settings:
    """The ``QLDM_*`` settings, read once for this command (exits with the reason when one is
    invalid)."""
    from pydantic import ValidationError

    from qldm.service.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        typer.echo(f"qldm: invalid QLDM_* settings: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to bind (default: QLDM_HOST, else 127.0.0.1); auth is on "
            "beyond loopback.",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="TCP port (default: QLDM_PORT, else 8000).", show_default=False),
    ] = None,
) -> None:
    """Start the job server (SQLite in the data folder and a local process pool by default).

    The data folder is QLDM_DATA_DIR (default $XDG_DATA_HOME/qldm, else ~/.local/share/qldm):
    it holds the SQLite database qldm.sqlite3 (unless QLDM_DATABASE_URL names another
    database), finished runtime results and M3 calibrations.

    \b
    Settings: QLDM_* environment variables, read once at start (docs/deploy.md):
      QLDM_HOST, QLDM_PORT       address and port (--host and --port win)
      QLDM_DATA_DIR              the data folder
      QLDM_DATABASE_URL          SQLAlchemy URL (PostgreSQL for several replicas)
      QLDM_EXECUTOR              local (process pool) or ray
      QLDM_RAY_ADDRESS           Ray cluster address, with QLDM_EXECUTOR=ray
      QLDM_WORKERS               worker processes (2)
      QLDM_AUTH                  auto (on beyond loopback), on or off
      QLDM_MAX_BODY_BYTES        largest request body (32 MiB)
      QLDM_MAX_BATCH             most samples per job (4096)
      QLDM_MAX_SHOTS             most shots per circuit (1000000)
      QLDM_MAX_WAIT_S            longest wait the server holds, seconds (60)
      QLDM_MAX_ACTIVE_JOBS_PER_TENANT  queued + running jobs per tenant (1000; 429 beyond)
      QLDM_MAX_RUNNING_PER_TENANT      running jobs per tenant (unset: all workers)
      QLDM_RETRY_AFTER_S         Retry-After of a 429, seconds (1)
      QLDM_IDEMPOTENCY           honour Idempotency-Key (true)
      QLDM_RESULT_TTL_S          keep results this many seconds (86400; '' = no limit)
      QLDM_MAX_RESULTS           keep at most this many results (1000; '' = no limit)
      QLDM_IBM_TOKEN             IBM Quantum token for ibm: backends (a secret)
      QLDM_IBM_CHANNEL           IBM Quantum channel (ibm_quantum_platform)
      QLDM_IBM_INSTANCE          IBM Quantum instance
      QLDM_CALIBRATION_MAX_AGE_MIN  refetch device calibrations older than this (30 min)
      QLDM_LOG_LEVEL             log level (info)
    """
    from qldm.service.server import serve as _serve

    _serve(settings=_settings(), host=host, port=port)


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant the key belongs to.")],
) -> None:
    """Create an API key for TENANT and print it once (only its hash is stored)."""
    from qldm.service.server import auth_note, create_key

    settings = _settings()
    typer.echo(create_key(tenant, settings=settings))
    note = auth_note(settings)
    if note is not None:
        typer.echo(f"note: {note}", err=True)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
) -> None:
    """List the API keys: id, tenant, prefix, created, revoked (never the key itself)."""
    from qldm.service.server import list_keys

    keys = list_keys(settings=_settings(), tenant=tenant)
    if not keys:
        typer.echo("no API keys" + (f" for tenant {tenant!r}" if tenant else ""))
        return
    rows = [("ID", "TENANT", "PREFIX", "CREATED", "REVOKED")]
    for key in keys:
        revoked = _when(key.revoked_at) if key.revoked_at is not None else "-"
        rows.append((key.id, key.tenant, f"{key.prefix}...", _when(key.created_at), revoked))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id, from `qldm keys list`.")],
) -> None:
    """Revoke the API key KEY_ID: servers refuse it from their next look-up (seconds)."""
    from qldm.service.server import ApiKeyNotFoundError, revoke_key

    try:
        key, revoked = revoke_key(key_id, settings=_settings())
    except ApiKeyNotFoundError as exc:
        typer.echo(f"qldm keys revoke: {exc.message}", err=True)
        raise typer.Exit(1) from None
    if revoked:
        typer.echo(f"revoked key {key.id} of tenant {key.tenant!r} ({key.prefix}...)")
    else:
        when = _when(key.revoked_at) if key.revoked_at is not None else "an earlier time"
        typer.echo(f"key {key.id} of tenant {key.tenant!r} was already revoked at {when}")


@app.command()
def prune(
    older_than: Annotated[
        float | None,
        typer.Option(
            help="Delete results older than this many seconds (default: QLDM_RESULT_TTL_S).",
            show_default=False,
        ),
    ] = None,
    keep: Annotated[
        int | None,
        typer.Option(
            help="Keep at most this many results, the newest (default: QLDM_MAX_RESULTS).",
            show_default=False,
        ),
    ] = None,
    vacuum: Annotated[
        bool, typer.Option(help="SQLite: give the freed space back to the file system.")
    ] = True,
) -> None:
    """Delete old job results from the server's database; the jobs themselves stay.

    A running server prunes by the same settings every few seconds; this prunes now, with
    other limits if given, and shrinks the SQLite file.
    """
    from datetime import timedelta

    from qldm.service.server import prune as _prune

    settings = _settings()
    age = timedelta(seconds=older_than) if older_than is not None else settings.result_ttl
    count = keep if keep is not None else settings.max_results
    report, note = _prune(settings=settings, older_than=age, keep=count, vacuum=vacuum)
    typer.echo(
        f"deleted {report.results_deleted} results, kept {report.results_kept} "
        f"(age limit: {age or 'none'}, count limit: {count if count is not None else 'none'})"
    )
    if note is not None:
        typer.echo(f"note: {note}", err=True)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("reports/demo"),
    minutes: Annotated[float, typer.Option(help="Training budget in minutes.")] = 3.0,
) -> None:
    """Train the bit-flip QLDM on the shipped MNIST digits through an embedded server.

    The server's database and log go to OUT/server; the metrics' classifier is cached in the
    data folder (QLDM_DATA_DIR).
    """
    from qldm.demo import run_demo

    run_demo(out=out, minutes=minutes, data_dir=_settings().data_dir)


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="YAML or JSON config (see configs/).")],
    url: Annotated[str | None, typer.Option(help="Train through this qldm server.")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="QLDM_API_KEY")] = None,
    execution_mode: Annotated[
        ExecutionModeChoice | None,
        typer.Option(
            help="IBM Runtime execution mode of the server run's jobs (with --url; default: a "
            "Session, or batches where the plan refuses Sessions, as the Open plan does)."
        ),
    ] = None,
) -> None:
    """Train a seed model from CONFIG (resumes from the last checkpoint).

    Data sets the config gives no data.root for are read from QLDM_DATA_DIR/datasets. With
    --url the training's server run is closed when it ends or is interrupted.
    """
    from qldm.hybrid.cli import train as _train

    _train(
        config,
        url=url,
        api_key=api_key,
        data_dir=_settings().data_dir,
        execution_mode=None if execution_mode is None else execution_mode.value,
    )


@app.command()
def sample(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint written by `qldm train`.")],
    n: Annotated[int, typer.Option(help="Number of samples.")] = 64,
    out: Annotated[Path | None, typer.Option(help="PNG grid to write.")] = None,
) -> None:
    """Sample images from a trained model."""
    from qldm.hybrid.cli import sample as _sample

    _sample(checkpoint, n=n, out=out)


@app.command()
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint written by `qldm train`.")],
    out: Annotated[Path | None, typer.Option(help="Folder for metrics and figures.")] = None,
) -> None:
    """Evaluate a trained model: metrics JSON, sample and reconstruction grids, loss curve.

    The metrics' classifier is cached in QLDM_DATA_DIR/feature_net.
    """
    from qldm.hybrid.cli import evaluate as _evaluate

    _evaluate(checkpoint, out=out, data_dir=_settings().data_dir)


@app.command()
def experiments(
    name: Annotated[str, typer.Argument(help="seed000, seed002 or quantum-diffusion.")],
    out: Annotated[Path, typer.Option(help="Folder for index.html, results.json, figures.")],
    quick: Annotated[
        bool, typer.Option("--quick", help="A small version (at most ~15 minutes on 2 cores).")
    ] = False,
    seeds: Annotated[
        int | None, typer.Option(help="Training seeds (default: the experiment's own).")
    ] = None,
) -> None:
    """Re-run a seed paper's experiments against a classical control and write a report.

    Data sets are read from QLDM_DATA_DIR/datasets; the metrics' classifier is cached in
    QLDM_DATA_DIR/feature_net.
    """
    from qldm.hybrid.config import ConfigError
    from qldm.hybrid.experiments import run_experiment

    try:
        if name == "quantum-diffusion":  # its fake-device section runs through a server
            from qldm.service.embedded import EmbeddedServer

            with EmbeddedServer(out / "server", workers=1) as server:
                run_experiment(
                    name,
                    out,
                    quick=quick,
                    seeds=seeds,
                    data_dir=_settings().data_dir,
                    server_url=server.url,
                )
        else:
            run_experiment(name, out, quick=quick, seeds=seeds, data_dir=_settings().data_dir)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"report: {out / 'index.html'}")


@bench_app.command("engines")
def bench_engines(
    batch: Annotated[int, typer.Option(help="Samples per job (B).")] = 128,
    repeats: Annotated[int, typer.Option(help="Timed repetitions per engine.")] = 3,
    qubits: Annotated[
        int, typer.Option(help="6: the reference work; 12: the hqconv/fqconv section.")
    ] = 6,
) -> None:
    """Exact vs Aer vs qiskit-machine-learning vs PennyLane on the reference work."""
    from qldm.bench.engines import main

    main(batch=batch, repeats=repeats, qubits=qubits)


@bench_app.command("service")
def bench_service(
    against: Annotated[
        str | None,
        typer.Option(help="Another qldm tree's python: both trees side by side, job by job."),
    ] = None,
    jobs: Annotated[int | None, typer.Option(help="Timed reference jobs (per tree).")] = None,
    postgres: Annotated[
        str, typer.Option(help="PostgreSQL server for the jobs/s table ('' for SQLite only).")
    ] = "postgresql+psycopg://postgres@127.0.0.1:5432/test",
) -> None:
    """Latency and throughput of the server against the same call in-process."""
    from qldm.bench.service import main, side_by_side

    if against:
        side_by_side(against, jobs=jobs or 150, postgres=postgres or None)
    else:
        main(jobs=jobs or 48, postgres=postgres or None)


@bench_app.command("hardware")
def bench_hardware() -> None:
    """Runtime submissions and time per training step on fake IBM devices."""
    from qldm.bench.hardware_path import main

    main()


@app.command()
def estimate(
    configs: Annotated[
        list[Path],
        typer.Argument(help="Training configs (YAML): QLDM, qdiff (seed models) or kind: unet."),
    ],
    backend: Annotated[
        str, typer.Option(help="A runtime device: fake:<device> (offline) or ibm:<device>.")
    ] = "fake:brisbane",
    shots: Annotated[
        int, typer.Option(help="Shots per parameter set (where the config sets none).")
    ] = 4000,
    instances: Annotated[int, typer.Option(help="Random Pauli-insertion instances.")] = 32,
) -> None:
    """What one training step of each config would cost on a runtime device, without
    submitting anything: circuits, executions, jobs under IBM's per-job limit, QPU seconds.

    QLDM configs: the PQC on one batch (``jacobian``). qdiff and ``kind: unet`` configs: every
    ``QuantumLayer`` call of one training loss (one job each; plus the QNGD metric), recorded
    by running the model on the exact simulator (:mod:`qldm.hybrid.step_calls`)."""
    import numpy as np

    from qldm.backends.base import Workload
    from qldm.backends.runtime import RuntimeBackend
    from qldm.circuits import PQCSpec
    from qldm.errors import QldmError
    from qldm.hybrid.config import load_config
    from qldm.hybrid.qdiff.config import is_qdiff_config
    from qldm.hybrid.step_calls import step_calls
    from qldm.hybrid.unet.config import UNetConfig, load_any_config
    from qldm.jobs.model import JobOptions

    settings = _settings()
    device = RuntimeBackend(
        backend,
        instances=instances,
        allow_noise_floor=True,  # a price, not a run: a request below the floor still costs
        **settings.runtime_config().options_for(backend),
    )
    typer.echo(
        f"{'config':<26} {'channel':<18} {'B':>4} {'calls':>5} {'circuits':>10} "
        f"{'executions':>13} {'jobs':>5} {'QPU s':>9} {'QPU h':>6}"
    )
    for path in configs:
        if is_qdiff_config(path) or isinstance(load_any_config(path), UNetConfig):
            step = step_calls(path)
            name, batch = step.name, step.batch_size
            works: list[Workload] = [
                Workload.build(
                    c.spec,
                    c.inputs,
                    c.weights,
                    noise_levels=c.noise_levels,
                    task=c.task,
                    output=c.output,
                    targets=c.targets,
                    metric="block_diagonal" if c.block_diagonal else "full",
                    shots=c.shots or shots,
                )
                for c in step.calls
            ]
            kinds = sorted({c.spec.channel.kind for c in step.calls})
            options = JobOptions(gradient_budget=step.gradient_budget)
        else:
            config = load_config(path)
            name, batch, works, kinds = config.name, config.train.batch_size, [], []
            options = JobOptions()
            if config.variant != "classical":
                spec = PQCSpec.parse(config.pqc_spec())
                rng = np.random.default_rng(0)
                inputs = rng.uniform(-1, 1, (batch, spec.n_inputs))
                weights = rng.uniform(-1, 1, spec.n_weights)
                works = [Workload.build(spec, inputs, weights, task="jacobian", shots=shots)]
                kinds = [spec.channel.kind]
        if not works:
            typer.echo(f"{name:<26} classical: no quantum circuit")
            continue
        try:
            costs = [device.estimate(w, options) for w in works]
        except QldmError as exc:  # e.g. the amplitude encoding: no hardware circuit at all
            typer.echo(f"{name:<26} not runnable on {backend}: {exc}")
            continue
        qpu = sum(c.qpu_seconds for c in costs)
        typer.echo(
            f"{name:<26} {'+'.join(kinds):<18} {batch:>4} {len(costs):>5} "
            f"{sum(c.circuits for c in costs):>10,} {sum(c.executions for c in costs):>13,} "
            f"{sum(c.submissions for c in costs):>5} {qpu:>9.0f} {qpu / 3600:>6.2f}"
        )


@bench_app.command("floor")
def bench_floor() -> None:
    """Requested against delivered noise channels on fake IBM devices (the noise floor)."""
    from qldm.bench.noise_floor import main

    main()


if __name__ == "__main__":  # pragma: no cover
    app()
