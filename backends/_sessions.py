"""A run's IBM Runtime ``Session``: opened by its first runtime job, re-opened by later ones.

A run (``POST /v1/runs``) holds one Session. The first job of the run on a ``fake:``/``ibm:``
backend opens it and records its id on the run (:meth:`qldm.jobs.store.JobStore.adopt_run_session`,
a compare-and-set, so two workers starting the run's first jobs at once agree on one id);
later jobs of the run run in the same Session:

- ``ibm:``: the runtime gives the Session an id; a worker that has no Session object for the
  run re-opens it with ``Session.from_id(session_id, service=...)``.
- ``fake:`` (local testing mode, and ``ibm:`` simulators): the Session has no id and lives in
  one process. Each worker process keeps one ``Session`` object per (run, device) here, and the
  run records a marker ``local:<uuid>`` so that it shows it holds a Session and every job of
  the run reports the same one.

``DELETE /v1/runs/{id}`` closes the run: :func:`close_run_session` closes an ``ibm:`` Session on
the runtime (queued jobs of the Session still finish) and drops this process's Session objects
of the run; a worker that meets a job of a closed run refuses it and drops its own.

Execution modes (:data:`Mode`; IBM's "execution modes" guide): ``job`` (the primitive on the
backend itself), ``batch`` (a ``Batch``: what a job split into several submissions always uses)
and ``session`` (a dedicated ``Session``). Default: ``session`` for a job of a run, ``job`` for a
job without one. When the runtime refuses a Session, as it does on the Open plan ("Open Plan
users cannot run session jobs", IBM's migration guide, quoted in
PennyLaneAI/pennylane-qiskit#631; the error reads "You are not authorized to run a session when
using the open plan", qiskit-community/spank-plugins#133), the job runs in a ``Batch`` instead
and the run records ``refused:<reason>`` in place of a Session id, so its later jobs go straight
to batches. A run's Session that the runtime ended (its ``max_time``, its idle timeout: the
library raises "The session is closed.") is replaced by a new one for the run's next
submission (:meth:`ExecutionMode.renew`), recorded on the run by a compare-and-set.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from qldm.errors import BackendError, InvalidSpecError

__all__ = [
    "LOCAL_PREFIX",
    "MAX_OPEN",
    "MODES",
    "REFUSED_PREFIX",
    "ExecutionMode",
    "Mode",
    "RunSession",
    "close_run_session",
    "drop_run_sessions",
    "open_sessions",
    "session_for",
    "session_gone",
    "session_refused",
]

log = logging.getLogger(__name__)

LOCAL_PREFIX = "local:"
"""Marker ids of Sessions that have no runtime id (local testing mode, simulators)."""

REFUSED_PREFIX = "refused:"
"""What a run records in place of a Session id when the runtime refused to open one."""

Mode = Literal["job", "batch", "session"]
"""How a job's submissions reach the runtime (IBM's execution modes)."""

MODES: tuple[str, ...] = ("job", "batch", "session")

_REFUSALS = ("open plan", "not authorized to run a session", "sessions are not supported")
_GONE = ("session is closed", "session has expired", "session is not active", "session expired")


def session_refused(exc: BaseException) -> bool:
    """Whether ``exc`` is the runtime refusing to open a Session (the Open plan's answer)."""
    text = " ".join(str(e) for e in (exc, exc.__cause__) if e is not None).lower()
    return any(marker in text for marker in _REFUSALS)


def session_gone(exc: BaseException) -> bool:
    """Whether ``exc`` says the Session a job was submitted to is closed or expired."""
    text = " ".join(str(e) for e in (exc, exc.__cause__) if e is not None).lower()
    return any(marker in text for marker in _GONE)


MAX_OPEN = 64
"""Session objects kept per process; the least recently used is forgotten (not closed: the
run still holds it, and the next job of that run re-opens it)."""


@dataclass(frozen=True)
class RunSession:
    """What a job of a run knows about the run's Session.

    Attributes:
        run_id: the run.
        session_id: the Session id the run holds in the store (``None`` before its first
            runtime job).
        adopt: ``adopt(candidate) -> held``: record ``candidate`` as the run's Session unless
            the run holds one already, and return the one it holds (the store's
            compare-and-set). ``None`` without a store: the candidate is kept.
        replace: ``replace(old, new) -> held``: record ``new`` in place of the ended Session
            ``old`` unless another worker replaced it first (a compare-and-set).
        mode: the run's execution mode (``None``: ``session``).
    """

    run_id: str
    session_id: str | None = None
    adopt: Callable[[str], str] | None = None
    replace: Callable[[str, str], str] | None = None
    mode: Mode | None = None


class ExecutionMode:
    """Where one job's runtime work runs: a Session given to the backend, the run's Session
    (opened on first use, so a job re-attached to a cached result opens none), a ``Batch``, or
    the backend itself (job mode).

    Args:
        backend: the device.
        run: the job's run, or ``None``.
        session: a Session the backend was built with (it wins over everything else).
        service: the ``QiskitRuntimeService`` on ``ibm:``.
        runtime: ``False`` for backends that run without the runtime (``aer:<device>``): no
            Session, whatever the run.
        requested: the job's or backend's execution mode; ``None``: the run's, else ``session``
            for a job of a run and ``job`` otherwise.

    Attributes:
        execution_mode: ``job``, ``batch``, ``session`` or ``direct`` (no runtime).
        session_id: the Session's id or ``local:`` marker (``None`` without a Session, or
            while the run's Session is not open yet and the run holds none).
        fallback_reason: why a requested Session became a ``Batch`` (the runtime refused it).
        renewed_from: the ended Session a new one replaced for this job.

    Raises:
        InvalidSpecError: an unknown mode (``field="execution_mode"``).
    """

    def __init__(
        self,
        backend: Any,
        *,
        run: RunSession | None,
        session: Any = None,
        service: Any = None,
        runtime: bool = True,
        requested: str | None = None,
    ) -> None:
        if not runtime:
            run = session = None
        if requested is not None and requested not in MODES:
            raise InvalidSpecError(
                f"must be one of {', '.join(MODES)}, got {requested!r}", field="execution_mode"
            )
        self._backend = backend
        self._service = service
        self._session: Any = session
        self.session_id: str | None = None
        self.fallback_reason: str | None = None
        self.renewed_from: str | None = None
        self._own = False
        self._batch: Any = None
        mode = requested or (run.mode if run is not None else None)
        if session is not None:
            mode = "session"
            self.session_id = getattr(session, "session_id", None)
        elif mode is None:
            mode = "session" if run is not None else "job"
        self._run = run if mode == "session" and session is None else None
        held = self._run.session_id if self._run is not None else None
        if held is not None and held.startswith(REFUSED_PREFIX):
            mode = "batch"
            self.fallback_reason = held[len(REFUSED_PREFIX) :]
            self._run = None
        elif self._run is not None:
            self.session_id = self._run.session_id
        self.execution_mode: Literal["job", "batch", "session", "direct"] = (
            "direct" if not runtime else mode  # type: ignore[assignment]
        )

    def session(self) -> Any:
        """The Session to run in (opening the run's, or a job's own, on first use), or ``None``
        (batch or job mode; also after the runtime refused a Session: then
        :attr:`fallback_reason` says why and the run records it)."""
        if self.execution_mode != "session" or self._session is not None:
            return self._session
        try:
            if self._run is not None:
                self._session, self.session_id = session_for(
                    self._run, self._backend, service=self._service
                )
            else:  # a job of its own asked for a Session
                self._session = _new_session(self._backend)
                self.session_id = self._session.session_id or f"{LOCAL_PREFIX}{uuid.uuid4().hex}"
                self._own = True
        except BackendError as exc:
            if not session_refused(exc):
                raise
            self._refused(exc)
        return self._session

    def _refused(self, exc: BaseException) -> None:
        reason = f"the runtime refused a Session ({exc}); ran in a Batch"
        log.warning("%s", reason)
        self.execution_mode = "batch"
        self.fallback_reason = reason
        self.session_id = None
        if self._run is not None and self._run.adopt is not None:
            self._run.adopt(f"{REFUSED_PREFIX}{reason}"[:255])

    def renew(self) -> Any:
        """Replace the run's Session that the runtime ended with a new one (recorded on the run
        unless another worker replaced it first, whose Session is then used).

        Raises:
            BackendError: no run's Session to renew, or the runtime refused a new one.
        """
        run, old = self._run, self.session_id
        if run is None or old is None:
            raise BackendError("only a run's Session can be renewed")
        drop_run_sessions(run.run_id)
        fresh = _new_session(self._backend)
        sid = fresh.session_id or f"{LOCAL_PREFIX}{uuid.uuid4().hex}"
        held = run.replace(old, sid) if run.replace is not None else sid
        if held != sid and not held.startswith(LOCAL_PREFIX):
            _close_quietly(fresh)
            fresh = _reopen(held, self._backend, self._service)
        key = (run.run_id, str(self._backend.name))
        with _lock:
            _open[key] = (held, fresh)
        self._session, self.session_id, self.renewed_from = fresh, held, old
        return fresh

    def batch(self) -> Any:
        """The job's ``Batch``, opened on first use and kept until :meth:`close`, so that
        every runtime job of the workload (the measured floor's experiment, then the step's
        own jobs) shares it."""
        from qiskit_ibm_runtime import Batch

        if self._batch is None:
            try:
                self._batch = Batch(backend=self._backend)
            except Exception as exc:
                raise BackendError(
                    f"could not open a runtime batch on {self._backend.name}: {exc}"
                ) from exc
        return self._batch

    def close(self) -> None:
        """Close a Session this job opened for itself (never the run's) and its ``Batch``."""
        if self._own and self._session is not None:
            _close_quietly(self._session)
            self._session = None
        if self._batch is not None:
            _close_quietly(self._batch)
            self._batch = None


_lock = threading.Lock()
_open: OrderedDict[tuple[str, str], tuple[str, Any]] = OrderedDict()
"""(run id, device) -> (session id, Session), most recently used last."""


def open_sessions() -> dict[tuple[str, str], str]:
    """The Sessions this process holds: (run id, device) -> session id."""
    with _lock:
        return {key: sid for key, (sid, _) in _open.items()}


def session_for(run: RunSession, backend: Any, *, service: Any = None) -> tuple[Any, str]:
    """The run's Session for ``backend`` in this process, opening or re-opening it.

    Args:
        run: the run and the Session id it holds.
        backend: the device (``BackendV2``; an ``IBMBackend`` on ``ibm:``).
        service: the ``QiskitRuntimeService`` (``ibm:``), for ``Session.from_id``.

    Returns:
        ``(session, session id)``: the id is the runtime's, or a ``local:`` marker.

    Raises:
        InvalidSpecError: the run's Session is on another device (``field="backend"``).
        BackendError: the runtime refused to open or re-open the Session.
    """
    key = (run.run_id, str(backend.name))
    with _lock:
        cached = _open.get(key)
        if cached is not None and (run.session_id is None or cached[0] == run.session_id):
            _open.move_to_end(key)
            return cached[1], cached[0]
        held = run.session_id
        if held is not None and not held.startswith(LOCAL_PREFIX):
            session = _reopen(held, backend, service)
            sid = held
        else:
            session = _new_session(backend)
            sid = held or session.session_id or f"{LOCAL_PREFIX}{uuid.uuid4().hex}"
            if held is None and run.adopt is not None:
                winner = run.adopt(sid)
                if winner != sid and not winner.startswith(LOCAL_PREFIX):
                    # another worker opened the run's runtime Session first: use that one
                    _close_quietly(session)
                    session = _reopen(winner, backend, service)
                sid = winner
        _open[key] = (sid, session)
        _open.move_to_end(key)
        while len(_open) > MAX_OPEN:
            _open.popitem(last=False)
        return session, sid


def drop_run_sessions(run_id: str) -> int:
    """Close and forget this process's Session objects of ``run_id``; how many there were."""
    with _lock:
        keys = [k for k in _open if k[0] == run_id]
        sessions = [_open.pop(k)[1] for k in keys]
    for session in sessions:
        _close_quietly(session)
    return len(sessions)


def close_run_session(
    run_id: str,
    session_id: str | None,
    *,
    service: Any = None,
    credentials: dict[str, str] | None = None,
) -> bool:
    """Close a closed run's Session: this process's objects, and the runtime's one on ``ibm:``.

    Args:
        run_id: the run.
        session_id: the id the run holds (``None`` or a ``local:`` marker: nothing remote).
        service: a ``QiskitRuntimeService`` that can see the Session; ``None``: one built from
            ``credentials`` (``token``, ``channel``, ``instance``: the server's settings).
        credentials: see ``service``.

    Returns:
        Whether a runtime Session was closed on the service.

    Raises:
        BackendError: no IBM credentials, or the service could not close the Session.
    """
    drop_run_sessions(run_id)
    if session_id is None or session_id.startswith(LOCAL_PREFIX):
        return False
    from qiskit_ibm_runtime import Session

    if service is None:
        from qldm.backends._runtime_devices import ibm_service

        service = ibm_service(**(credentials or {}))
    try:
        Session.from_id(session_id, service=service).close()
    except Exception as exc:
        raise BackendError(f"could not close runtime session {session_id}: {exc}") from exc
    return True


def _new_session(backend: Any) -> Any:
    from qiskit_ibm_runtime import Session

    try:
        return Session(backend=backend)
    except Exception as exc:
        raise BackendError(f"could not open a runtime session on {backend.name}: {exc}") from exc


def _reopen(session_id: str, backend: Any, service: Any) -> Any:
    from qiskit_ibm_runtime import Session

    if service is None:
        raise BackendError(f"re-opening runtime session {session_id} needs the IBM service")
    try:
        session = Session.from_id(session_id, service=service)
    except Exception as exc:
        raise BackendError(f"could not re-open runtime session {session_id}: {exc}") from exc
    if session.backend() != backend.name:
        raise InvalidSpecError(
            f"the run's session {session_id} runs on {session.backend()}, not {backend.name}: "
            "a run's runtime jobs share one device",
            field="backend",
        )
    return session


def _close_quietly(session: Any) -> None:
    try:
        session.close()
    except Exception:  # closing is best effort: the runtime ends idle sessions itself
        log.warning("could not close a runtime session", exc_info=True)
