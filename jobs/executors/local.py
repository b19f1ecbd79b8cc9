"""The embedded executor: worker processes on this machine, each behind its own pipe.

Workers are *spawned* (not forked), so they inherit neither the server's database connections
nor its torch thread pool; each uses one numerics thread (there is a worker per core) and
builds its own :class:`qldm.jobs.store.JobStore` from the URL it is given. The workers are started
and warmed up (modules imported) at construction, so the first job does not pay for it.

A call travels straight from the submitting thread into the worker's pipe, and one reader
thread per worker resolves the futures as results come back: no manager or feeder thread in
between (``concurrent.futures.ProcessPoolExecutor`` has both, and its hops cost about a
millisecond per job and another for a 0.5 MB result). A worker runs its calls one at a time,
in the order sent.

When a worker dies (killed, out of memory), its reader sees the pipe close and fails the calls
sent to it with :class:`qldm.jobs.executors.WorkerLostError` (the dispatcher retries the job);
the other workers run on. The next call for that slot starts a fresh worker.
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
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from qldm.jobs.executors.base import WorkerLostError

if TYPE_CHECKING:
    from multiprocessing.context import SpawnContext, SpawnProcess

    from qldm.backends.runtime import RuntimeConfig
    from qldm.jobs.model import JobRequest, JobResult

__all__ = ["DEFAULT_PRELOAD", "THREAD_VARIABLES", "LocalExecutor", "limit_threads"]

DEFAULT_PRELOAD: tuple[str, ...] = ("qldm.jobs.store", "qldm.jobs.runner:warm_up")
"""What each worker loads when it starts: modules to import, or ``module:function`` to call
(missing ones are skipped). ``jobs.runner:warm_up`` runs a tiny exact job."""


THREAD_VARIABLES: tuple[str, ...] = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Thread counts of the numerics libraries, set to 1 in every worker (unless already set)."""


# ---------------------------------------------------------------------- worker process side


def limit_threads() -> None:
    """Make this worker process use one thread for numerics (a worker per core shares them).

    Only worker start-up calls it (here, and in Ray tasks): it writes the process's
    environment, before the numerics libraries read it at import, and sets torch's pool to one
    thread when torch is loaded already.
    """
    for var in THREAD_VARIABLES:
        os.environ.setdefault(var, "1")
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def _fast_exit() -> None:
    """Leave without tearing the interpreter down module by module (with torch loaded that
    takes seconds); every result has been sent."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def _init_worker(preload: Sequence[str], parent: int) -> None:
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
    """Exit this worker once its parent is gone, even in the middle of a call (a SIGKILLed
    server leaves no one to stop it; an idle worker also sees its pipe close)."""

    def watch() -> None:  # the parent's pid is passed in: it may be gone before we start
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(0)

    threading.Thread(target=watch, name="qldm-parent-watch", daemon=True).start()


def _serve(conn: Connection, preload: Sequence[str], parent: int) -> None:
    """A worker's life: receive ``(fn, args)``, send back ``(True, result)`` or ``(False,
    exception)``, until the pipe closes or ``None`` arrives."""
    _init_worker(preload, parent)
    while True:
        try:
            call = conn.recv()
        except (EOFError, OSError):
            break
        if call is None:
            break
        fn, args = call
        try:
            answer: tuple[bool, Any] = (True, fn(*args))
        except BaseException as exc:
            answer = (False, exc)
        try:
            conn.send(answer)
        except OSError:  # the parent is gone
            break
        except Exception as exc:  # the result or the exception does not pickle
            conn.send((False, RuntimeError(f"unpicklable answer: {type(exc).__name__}: {exc}")))
    _fast_exit()


def _pid() -> int:
    return os.getpid()


# ---------------------------------------------------------------------- parent side


class _Worker:
    """One worker process, the parent's end of its pipe, and the calls sent to it."""

    def __init__(self, ctx: SpawnContext, preload: Sequence[str], name: str) -> None:
        ours, theirs = ctx.Pipe(duplex=True)
        self.process: SpawnProcess = ctx.Process(
            target=_serve, args=(theirs, tuple(preload), os.getpid()), name=name, daemon=True
        )
        self.process.start()
        theirs.close()  # else the parent would never see the pipe close when the worker dies
        self.conn = ours
        self.pending: deque[Future[Any]] = deque()
        self.alive = True
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name=f"{name}-reader", daemon=True)
        self._reader.start()

    @property
    def load(self) -> int:
        """Calls sent and not answered yet."""
        return len(self.pending)

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Future[Any]:
        """Send ``fn(*args)`` to the worker.

        Raises:
            WorkerLostError: the worker is dead (or dies while the call is written).
            Exception: ``fn`` or ``args`` do not pickle (nothing was sent).
        """
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        with self._lock:
            if not self.alive:
                raise WorkerLostError(f"worker process {self.process.pid} is gone")
            try:
                self.conn.send((fn, args))  # pickled first: a pickling error sends nothing
            except (BrokenPipeError, ConnectionResetError, EOFError) as exc:
                self.alive = False
                raise WorkerLostError(
                    f"worker process {self.process.pid} is gone ({exc})"
                ) from None
            self.pending.append(future)
        return future

    def _read(self) -> None:
        """Resolve the pending calls in order as the answers arrive; fail them all once the
        pipe closes (the worker exited or was killed)."""
        while True:
            try:
                ok, value = self.conn.recv()
            except (EOFError, OSError):
                break
            except Exception as exc:  # an answer that does not unpickle here
                ok, value = False, exc
            with self._lock:
                future = self.pending.popleft() if self.pending else None
            if future is None:  # pragma: no cover - the worker answers only what it was sent
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        with self._lock:
            self.alive = False
            lost = list(self.pending)
            self.pending.clear()
        self.process.join(timeout=5)
        for future in lost:
            future.set_exception(
                WorkerLostError(
                    f"worker process {self.process.pid} died "
                    f"(exit code {self.process.exitcode}) while running the call"
                )
            )
        with contextlib.suppress(OSError):
            self.conn.close()

    def stop(self, *, wait: bool) -> None:
        """Ask the worker to exit after its current call (``wait``: and wait for that)."""
        with self._lock, contextlib.suppress(OSError, ValueError):
            if self.alive:
                self.conn.send(None)
        if wait:
            self.process.join()
            self._reader.join(timeout=10)


class LocalExecutor:
    """Worker processes, one per core, each with its own pipe.

    Args:
        max_workers: processes (default: the number of cores).
        preload: what every worker loads at start (see :data:`DEFAULT_PRELOAD`).
        warm: start every worker now and wait until each has loaded ``preload``.
        runtime_config: the server's data folder and IBM credentials, passed with every job to
            the runtime backends its worker builds (workers read no settings themselves).

    Raises:
        InvalidSpecError: ``max_workers`` < 1.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        preload: Sequence[str] = DEFAULT_PRELOAD,
        warm: bool = True,
        runtime_config: RuntimeConfig | None = None,
    ) -> None:
        if max_workers is not None and max_workers < 1:
            from qldm.errors import InvalidSpecError

            raise InvalidSpecError(f"must be >= 1, got {max_workers}", field="max_workers")
        self._slots = max_workers or os.cpu_count() or 1
        self._preload = tuple(preload)
        self.runtime_config = runtime_config
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._workers = [self._new_worker(i) for i in range(self._slots)]
        self._closed = False
        self.restarts = 0
        """Workers replaced after they died."""
        if warm:
            self.warm_up()

    @property
    def slots(self) -> int:
        """How many jobs run at once (one per process)."""
        return self._slots

    def _new_worker(self, slot: int) -> _Worker:
        return _Worker(self._ctx, self._preload, name=f"qldm-worker-{slot}")

    def warm_up(self) -> list[int]:
        """Start every worker (replacing dead ones) and wait until each has loaded its
        modules; their pids."""
        futures = [self._submit_to(i, _pid) for i in range(self._slots)]
        return sorted({f.result() for f in futures})

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` in the least busy worker, a live one first (a dead one is replaced
        when its slot is chosen).

        ``fn`` must be importable by name (a module-level function), as for any process pool.
        """
        with self._lock:
            i = min(
                range(self._slots),
                key=lambda k: (self._workers[k].load, not self._workers[k].alive),
            )
        return self._submit_to(i, fn, *args)

    def _submit_to(self, i: int, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        worker = self._live(i)
        try:
            return worker.call(fn, args)
        except WorkerLostError:  # it died just now: once more, on a fresh one
            return self._live(i, dead=worker).call(fn, args)

    def _live(self, i: int, *, dead: _Worker | None = None) -> _Worker:
        """Slot ``i``'s worker, a fresh one in place of a dead one (or of ``dead``).

        Raises:
            RuntimeError: the executor was shut down.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the executor was shut down")
            worker = self._workers[i]
            if not worker.alive or worker is dead:
                worker = self._workers[i] = self._new_worker(i)
                self.restarts += 1
            return worker

    def run_job(
        self,
        *,
        store_url: str,
        job_id: str,
        attempt: int,
        request: JobRequest | None = None,
        runtime_job_id: str | None = None,
    ) -> Future[JobResult]:
        """Run the stored job in a worker (see :func:`qldm.jobs.runner.run_stored_job`)."""
        from qldm.jobs.runner import run_stored_job

        return self.submit(
            run_stored_job,
            store_url,
            job_id,
            attempt,
            request,
            runtime_job_id,
            self.runtime_config,
        )

    def worker_pids(self) -> list[int]:
        """The pids of the live worker processes."""
        with self._lock:
            workers = list(self._workers)
        return sorted(
            w.process.pid for w in workers if w.process.pid is not None and w.process.is_alive()
        )

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop the workers after their current calls (with ``wait``, wait for them; without,
        running jobs are abandoned: their results are dropped)."""
        with self._lock:
            self._closed = True
            workers = list(self._workers)
        for worker in workers:
            worker.stop(wait=wait)
