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

Standalone jobs (no run) never come here: they run in a fresh ``Batch``.
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
    "ExecutionMode",
    "RunSession",
    "close_run_session",
    "drop_run_sessions",
    "open_sessions",
    "session_for",
]

log = logging.getLogger(__name__)

LOCAL_PREFIX = "local:"
"""Marker ids of Sessions that have no runtime id (local testing mode, simulators)."""

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
    """

    run_id: str
    session_id: str | None = None
    adopt: Callable[[str], str] | None = None


class ExecutionMode:
    """Where one job's runtime work runs: a Session given to the backend, the run's Session
    (opened on first use, so a job re-attached to a cached result opens none), or ``None``
    (the caller opens a ``Batch``, or runs on a simulator directly).

    Args:
        backend: the device.
        run: the job's run, or ``None``.
        session: a Session the backend was built with (it wins over the run's).
        service: the ``QiskitRuntimeService`` on ``ibm:``.
        runtime: ``False`` for backends that run without the runtime (``aer:<device>``): no
            Session, whatever the run.

    Attributes:
        execution_mode: ``session``, ``batch`` or ``direct`` (no runtime).
        session_id: the Session's id or ``local:`` marker (``None`` for a Batch, or while the
            run's Session is not open yet and the run holds none).
    """

    def __init__(
        self,
        backend: Any,
        *,
        run: RunSession | None,
        session: Any = None,
        service: Any = None,
        runtime: bool = True,
    ) -> None:
        if not runtime:
            run = session = None
        self._backend = backend
        self._run = run
        self._service = service
        self._session: Any = session
        self.session_id: str | None = None
        if session is not None:
            self.session_id = getattr(session, "session_id", None)
        elif run is not None:
            self.session_id = run.session_id
        self.execution_mode: Literal["session", "batch", "direct"] = (
            "session" if session is not None or run is not None else "batch"
        )
        if not runtime:
            self.execution_mode = "direct"

    def session(self) -> Any:
        """The Session to run in (opening the run's on first use), or ``None`` for a Batch."""
        if self._session is None and self._run is not None:
            self._session, self.session_id = session_for(
                self._run, self._backend, service=self._service
            )
        return self._session


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
