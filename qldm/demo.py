"""``qldm demo``: train the bit-flip QLDM through an embedded server and write the report.

The server runs as a subprocess on a free loopback port (SQLite in ``out/server``, the local
executor, auth off), the training talks to it over HTTP exactly as a remote client would, and
the server is stopped when the demo ends, fails or is interrupted. The metrics' classifier is
cached in the settings' data folder, so only the first demo on a machine trains it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from qldm.service.embedded import EmbeddedServer

__all__ = ["run_demo"]

log = logging.getLogger("qldm.demo")

DEMO_MAX_RESULTS = 16
"""Results the demo's server keeps (``QLDM_MAX_RESULTS``)."""


def run_demo(*, out: Path, minutes: float, data_dir: Path, workers: int | None = None) -> None:
    """Start an embedded server, train the demo model through it, stop the server.

    Args:
        out: report folder (the server's database and log go to ``out/server``; the
            server keeps the newest :data:`DEMO_MAX_RESULTS` results, and its SQLite file is
            compacted when it stops).
        minutes: training budget.
        data_dir: the data folder (``qldm demo`` passes its settings'): the metrics'
            classifier is cached in ``data_dir/feature_net``.
        workers: the server's worker processes (default: the server's default).

    Raises:
        RuntimeError: the server did not start (its log's tail is in the message).
        ValueError: ``minutes`` is not positive.
    """
    if not minutes > 0:
        raise ValueError(f"minutes must be positive, got {minutes}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from qldm.hybrid.demo import run

    # the client reads each step's result once, at once: keep only the newest few (the
    # database stays a few MB instead of ~170 kB per training step)
    retention = {"QLDM_MAX_RESULTS": str(DEMO_MAX_RESULTS)}
    with EmbeddedServer(out / "server", workers=workers, env=retention) as server:
        log.info("qldm demo: server at %s (log: %s)", server.url, server.log_path)
        print(f"qldm demo: embedded server at {server.url}; report in {out}")
        run(url=server.url, api_key=None, out=out, minutes=minutes, data_dir=data_dir)
    _compact(server.database_url)


def _compact(database_url: str) -> None:
    """Shrink the stopped server's SQLite file to what it keeps (the retention's free pages
    go back to the file system)."""
    from qldm.jobs.store import JobStore

    store = JobStore(database_url)
    try:
        store.prune_results(keep=DEMO_MAX_RESULTS)
        store.vacuum()
    finally:
        store.close()
