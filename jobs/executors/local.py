"""The embedded executor: a pool of worker processes on this machine.

Workers are *spawned* (not forked), so they inherit neither the server's database connections
nor its torch thread pool; each uses one numerics thread (the pool already uses every core)
and builds its own :class:`jobs.store.JobStore` from the URL it is given. The workers are
started and warmed up (modules imported) at construction, so the first job does not pay for it.

Each worker is its own one-process pool. When a worker dies (killed, out of memory), Python
breaks its pool and fails every job in it with ``BrokenProcessPool``: with one process per
pool that is only the job the dead worker ran (the dispatcher retries it), while the jobs of
the other workers run on. The next job for that slot starts a fresh worker.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.model import JobRequest, JobResult

__all__ = ["DEFAULT_PRELOAD", "LocalExecutor"]

DEFAULT_PRELOAD: tuple[str, ...] = ("jobs.store", "jobs.runner:warm_up")
"""What each worker loads when it starts: modules to import, or ``module:function`` to call
(missing ones are skipped). ``jobs.runner:warm_up`` runs a tiny exact job."""


def _fast_exit() -> None:
    """Leave without tearing the interpreter down module by module (with torch loaded that
    takes seconds); the pool has already collected every result."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def _init_worker(preload: Sequence[str], parent: int) -> None:
    from jobs.runner import limit_threads

    atexit.register(_fast_exit)  # registered first among ours, run last: after their hooks
    _exit_with_parent(parent)
    limit_threads()
    for name in preload:
        module, _, function = name.partition(":")
        with contextlib.suppress(ImportError, AttributeError):
            loaded = importlib.import_module(module)
            if function:
                getattr(loaded, function)()
    limit_threads()


def _exit_with_parent(parent: int, *, interval: float = 1.0) -> None:
    """Exit this worker once its parent is gone (a SIGKILLed server leaves no one to stop it).

    A spawned worker holds its own end of the pool's queues, so it never notices the parent's
    death by itself; a daemon thread watches the parent pid instead.
    """

    def watch() -> None:  # the parent's pid is passed in: it may be gone before we start
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(0)

    threading.Thread(target=watch, name="qldm-parent-watch", daemon=True).start()


def _pid() -> int:
    return os.getpid()


class LocalExecutor:
    """Worker processes, one per core, each in its own one-process pool.

    Args:
        max_workers: processes (default: the number of cores).
        preload: what every worker loads at start (see :data:`DEFAULT_PRELOAD`).
        warm: start every worker now rather than on the first jobs.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        preload: Sequence[str] = DEFAULT_PRELOAD,
        warm: bool = True,
    ) -> None:
        if max_workers is not None and max_workers < 1:
            from circuits._errors import InvalidSpecError

            raise InvalidSpecError(f"must be >= 1, got {max_workers}", field="max_workers")
        self._slots = max_workers or os.cpu_count() or 1
        self._preload = tuple(preload)
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._pools = [self._new_pool() for _ in range(self._slots)]
        self._keys = list(range(self._slots))  # a pool's key is never reused
        self._busy: dict[int, int] = {}  # pool key -> calls in flight there
        self.restarts = 0
        """Workers replaced after they died."""
        if warm:
            self.warm_up()

    @property
    def slots(self) -> int:
        """How many jobs run at once (one per process)."""
        return self._slots

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=self._ctx,
            initializer=_init_worker,
            initargs=(self._preload, os.getpid()),
        )

    def warm_up(self) -> list[int]:
        """Start every worker (replacing dead ones) and wait until each has imported its
        modules; their pids."""
        futures = [self._submit_to(i, _pid) for i in range(self._slots)]
        return sorted({f.result() for f in futures})

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` in the least busy worker (a dead one is replaced first)."""
        with self._lock:
            i = min(range(self._slots), key=lambda k: self._busy.get(self._keys[k], 0))
        return self._submit_to(i, fn, *args)

    def _submit_to(self, i: int, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        with self._lock:
            try:
                future = self._pools[i].submit(fn, *args)
            except BrokenProcessPool:  # its worker died: start a fresh one in its place
                self._pools[i].shutdown(wait=False, cancel_futures=True)
                self._busy.pop(self._keys[i], None)
                self.restarts += 1
                self._pools[i] = self._new_pool()
                self._keys[i] = self._slots + self.restarts
                future = self._pools[i].submit(fn, *args)
            key = self._keys[i]
            self._busy[key] = self._busy.get(key, 0) + 1
        future.add_done_callback(lambda _f: self._finished(key))
        return future

    def _finished(self, key: int) -> None:
        with self._lock:
            if key in self._busy:
                self._busy[key] = max(0, self._busy[key] - 1)

    def run_job(
        self,
        *,
        store_url: str,
        job_id: str,
        attempt: int,
        request: JobRequest | None = None,
        runtime_job_id: str | None = None,
    ) -> Future[JobResult]:
        """Run the stored job in a worker (see :func:`jobs.runner.run_stored_job`)."""
        from jobs.runner import run_stored_job

        return self.submit(run_stored_job, store_url, job_id, attempt, request, runtime_job_id)

    def worker_pids(self) -> list[int]:
        """The pids of the live worker processes."""
        with self._lock:
            procs = [dict(getattr(pool, "_processes", None) or {}) for pool in self._pools]
        return sorted(pid for part in procs for pid, p in part.items() if p.is_alive())

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop the workers (running jobs are abandoned when ``wait`` is false)."""
        with self._lock:
            pools = list(self._pools)
        for pool in pools:
            pool.shutdown(wait=wait, cancel_futures=True)
