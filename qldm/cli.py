"""The ``qldm`` command line.

This module is the composition root: it is the one place that wires the server, the seed
models and the benchmarks together, so each command imports its implementation lazily (the
CLI starts fast and ``qldm --help`` needs neither torch nor Qiskit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="qldm",
    help="qldm: run parameterized quantum circuits for hybrid generative models as jobs.",
    no_args_is_help=True,
    add_completion=False,
)
bench_app = typer.Typer(
    help="Benchmarks: print tables with ratios against peers.", no_args_is_help=True
)
keys_app = typer.Typer(help="API keys (one tenant per key; stored hashed).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(keys_app, name="keys")


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="Address to bind; auth is on beyond loopback.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Start the job server on the embedded defaults (SQLite, local executor)."""
    from qldm.service.server import serve as _serve

    _serve(host=host, port=port)


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant the key belongs to.")],
) -> None:
    """Create an API key for TENANT and print it once."""
    from qldm.service.server import create_key

    typer.echo(create_key(tenant))


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("reports/demo"),
    minutes: Annotated[float, typer.Option(help="Training budget in minutes.")] = 3.0,
) -> None:
    """Train the bit-flip QLDM on the shipped MNIST digits through an embedded server."""
    from qldm.service.demo import run_demo

    run_demo(out=out, minutes=minutes)


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="YAML or JSON config (see configs/).")],
    url: Annotated[str | None, typer.Option(help="Train through this qldm server.")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="QLDM_API_KEY")] = None,
) -> None:
    """Train a seed model from CONFIG (resumes from the last checkpoint)."""
    from qldm.hybrid.cli import train as _train

    _train(config, url=url, api_key=api_key)


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
    """Evaluate a trained model: metrics JSON, sample and reconstruction grids, loss curve."""
    from qldm.hybrid.cli import evaluate as _evaluate

    _evaluate(checkpoint, out=out)


@bench_app.command("engines")
def bench_engines(
    batch: Annotated[int, typer.Option(help="Samples per job (B).")] = 128,
    repeats: Annotated[int, typer.Option(help="Timed repetitions per engine.")] = 3,
) -> None:
    """Exact vs Aer vs qiskit-machine-learning vs PennyLane on the reference work."""
    from qldm.bench.engines import main

    main(batch=batch, repeats=repeats)


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


if __name__ == "__main__":  # pragma: no cover
    app()
