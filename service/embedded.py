"""An embedded qldm server: ``qldm serve`` in a subprocess on a free loopback port.

Used by ``qldm demo``, ``qldm bench service`` and the end-to-end tests. By default the server
gets its own SQLite database in ``data_dir`` and the local executor; leaving the ``with`` block
(normally, on an error, or on Ctrl-C) stops it: SIGTERM, then SIGKILL if it has not exited
within the grace period. The server runs in its own process group, so :meth:`kill` reaches its
worker processes too.

Example:
    >>> with EmbeddedServer(Path("/tmp/qldm-demo")) as server:    # doctest: +SKIP
    ...     ServiceClient(server.url).backends()
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

from qldm.paths import sqlite_url

__all__ = ["EmbeddedServer", "free_loopback_port"]


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedServer:
    """A server subprocess bound to 127.0.0.1 (auth off unless ``env`` turns it on).

    Args:
        data_dir: its data folder (``QLDM_DATA_DIR``: the SQLite database, runtime results,
            ``server.log``).
        database_url: the database to serve (default: ``qldm.sqlite3`` in ``data_dir``).
        workers: local executor processes.
        log_level: the server's log level (``QLDM_LOG_LEVEL``).
        env: further ``QLDM_*`` settings (they win over the defaults above).
        ready_timeout: seconds to wait for ``/readyz``.
        grace: seconds between SIGTERM and SIGKILL when stopping.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        database_url: str | None = None,
        workers: int | None = None,
        log_level: str = "warning",
        env: dict[str, str] | None = None,
        ready_timeout: float = 120.0,
        grace: float = 15.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.database_url = database_url or sqlite_url(self.data_dir)
        self.port = 0
        self.workers = workers
        self.log_level = log_level
        self.extra_env = dict(env or {})
        self.ready_timeout = ready_timeout
        self.grace = grace
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """The server's combined stdout and stderr."""
        return self.data_dir / "server.log"

    def start(self) -> EmbeddedServer:
        """Start the server and wait until ``/readyz`` answers 200.

        Raises:
            RuntimeError: it exited or did not get ready in time (with its log's tail).
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_loopback_port()
        # the child's environment: ours (PATH, HOME, ...) without our QLDM_* settings, which
        # must not leak in; the server gets exactly the settings below
        env = {k: v for k, v in os.environ.items() if not k.startswith("QLDM_")}
        env.update(
            {
                "QLDM_DATA_DIR": str(self.data_dir.resolve()),
                "QLDM_DATABASE_URL": self.database_url,
                "QLDM_EXECUTOR": "local",
                "QLDM_AUTH": "off",
                "QLDM_LOG_LEVEL": self.log_level,
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.workers is not None:
            env["QLDM_WORKERS"] = str(self.workers)
        env.update(self.extra_env)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "qldm",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal reaches us, not the server
        )
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._close_log()
                raise RuntimeError(
                    f"the qldm server exited with code {self.process.returncode}:\n{self.tail()}"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"the qldm server was not ready in {self.ready_timeout} s:\n{self.tail()}"
        )

    def stop(self) -> None:
        """SIGTERM, wait ``grace`` seconds, then SIGKILL with its workers (idempotent)."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.grace)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL the server and every process under it, as when its machine goes down: no
        shutdown code runs (idempotent)."""
        process = self.process
        if process is not None and process.poll() is None:
            self._signal_all(signal.SIGKILL)
            process.wait(timeout=30)
        self._close_log()

    def _signal_all(self, sig: signal.Signals) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        # a local Ray instance starts processes outside our group: walk the tree as well
        try:
            import psutil

            tree = psutil.Process(process.pid).children(recursive=True)
        except Exception:  # psutil missing or the process gone: the group signal suffices
            tree = []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        for child in tree:
            with contextlib.suppress(Exception):  # already gone
                child.send_signal(sig)

    def tail(self, n: int = 4000) -> str:
        """The last ``n`` characters of the server's log."""
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
