"""Training losses reported to the server's run, so the dashboard (``/ui``) can draw them.

The trainer hands every step's record to a :class:`RunLossReporter`; it sends them in batches
(``POST /v1/runs/{id}/losses``) at most every ``every_s`` seconds, and the rest when training
stops. Reporting never stops training: a failed report is logged once and its points dropped.
"""

from __future__ import annotations

import logging
import time
from types import TracebackType

from qldm.client import ServiceClient
from qldm.errors import QldmError

__all__ = ["RunLossReporter"]

log = logging.getLogger("qldm.hybrid")

MAX_BATCH = 1000
"""Most points per report (the server's limit)."""


class RunLossReporter:
    """Batches a training run's losses to its server run.

    Args:
        url: the server.
        api_key: its API key, or ``None``.
        run_id: the run.
        every_s: send at most this often (seconds); the last batch goes at :meth:`close`.
    """

    def __init__(self, url: str, *, api_key: str | None, run_id: str, every_s: float = 2.0) -> None:
        if every_s < 0:
            raise ValueError(f"every_s must be >= 0, got {every_s}")
        self.run_id = run_id
        self.every_s = every_s
        self._client = ServiceClient(url, api_key=api_key)
        self._pending: list[tuple[int, float]] = []
        self._last = time.monotonic()
        self._warned = False

    def add(self, record: dict[str, float]) -> None:
        """Queue one step's record (``step``, ``loss``); send when ``every_s`` has passed."""
        self._pending.append((int(record["step"]), float(record["loss"])))
        if time.monotonic() - self._last >= self.every_s or len(self._pending) >= MAX_BATCH:
            self.flush()

    def flush(self) -> None:
        """Send what is queued now."""
        self._last = time.monotonic()
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), MAX_BATCH):
            try:
                self._client.report_losses(self.run_id, pending[start : start + MAX_BATCH])
            except (QldmError, OSError) as exc:
                if not self._warned:
                    log.warning("could not report losses to run %s: %s", self.run_id, exc)
                    self._warned = True
                return

    def close(self) -> None:
        """Send the rest and close the connection."""
        try:
            self.flush()
        finally:
            self._client.close()

    def __enter__(self) -> RunLossReporter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
