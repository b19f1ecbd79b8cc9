"""Which backends this server offers, with their sizes: ``GET /v1/backends`` and submit checks.

``exact`` and ``aer`` take any spec (up to :data:`qldm.circuits.spec.MAX_QUBITS`); every device of
qiskit-ibm-runtime's fake provider is offered twice, as ``aer:<device>`` (Aer with the device's
noise model) and ``fake:<device>`` (the runtime primitives in local testing mode); ``ibm:``
devices are listed only when the server has IBM credentials: a token in its settings, or else
the Qiskit account saved on its machine (``~/.qiskit/qiskit-ibm.json``,
:func:`qldm.backends._runtime_devices.saved_account`). The account's device list is fetched
from IBM and kept :data:`DEVICE_LIST_TTL_S` seconds (a failed fetch only
:data:`FAILED_LIST_TTL_S`, so a login that failed once is tried again), with
``ibm:least_busy`` in front (the operational device with the fewest pending jobs, chosen when
the job's backend is built). Job names are checked against the list only for ``aer:``/``fake:``;
an ``ibm:`` name is checked when the job runs.
"""

from __future__ import annotations

import importlib.util
import re
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from qldm.backends import admit
from qldm.backends._runtime_devices import LEAST_BUSY, saved_account
from qldm.backends.outputs import check_state_support
from qldm.circuits.spec import MAX_QUBITS
from qldm.errors import BackendLimitError, UnknownBackendError
from qldm.jobs.model import BACKEND_NAME, JobRequest

__all__ = ["BackendInfo", "catalog", "check_backend", "check_request"]

Kind = Literal["exact", "aer", "fake", "ibm"]


@dataclass(frozen=True)
class BackendInfo:
    """One backend: its name, kind, qubit count, and whether it can take jobs now."""

    name: str
    kind: Kind
    qubits: int
    available: bool = True


@lru_cache(maxsize=1)
def _fake_devices() -> tuple[tuple[str, int], ...]:
    """``(name, qubits)`` of every fake device, read once.

    Read from the provider's files (each device's ``backend_name`` and its configuration's
    ``n_qubits``): milliseconds, where building ``FakeProviderForBackendV2()`` takes seconds.
    Falls back to the provider if the files are not laid out as expected.
    """
    found = []
    spec = importlib.util.find_spec("qiskit_ibm_runtime")  # locates it without importing it
    roots = list(spec.submodule_search_locations or []) if spec else []
    folders = [p for r in roots for p in (Path(r) / "fake_provider" / "backends").glob("*")]
    for folder in folders:
        names = [_match(_NAME, f) for f in folder.glob("fake_*.py")]
        qubits = [_match(_QUBITS, f) for f in folder.glob("conf_*.json")]
        if len(names) == 1 and len(qubits) == 1 and names[0] and qubits[0]:
            found.append((names[0], int(qubits[0])))
    if found:
        return tuple(sorted(found))
    from qiskit_ibm_runtime.fake_provider import FakeProviderForBackendV2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        backends = FakeProviderForBackendV2().backends()
    return tuple(sorted((b.name, int(b.num_qubits)) for b in backends))


_NAME = re.compile(r"""backend_name\s*=\s*["']([\w.\-]+)["']""")
_QUBITS = re.compile(r'"n_qubits"\s*:\s*(\d+)')


def _match(pattern: re.Pattern[str], path: Path) -> str | None:
    try:
        m = pattern.search(path.read_text(errors="replace"))
    except OSError:
        return None
    return m.group(1) if m else None


def catalog(*, ibm: dict[str, str] | None = None) -> list[BackendInfo]:
    """Every backend the server offers, simulators first.

    Args:
        ibm: the server's IBM credentials (``token``, ``channel``, ``instance``), or ``None``:
            ``ibm:`` devices are listed only with a token.
    """
    out = [BackendInfo("exact", "exact", MAX_QUBITS), BackendInfo("aer", "aer", MAX_QUBITS)]
    for name, qubits in _fake_devices():
        out.append(BackendInfo(f"aer:{name}", "aer", qubits))
    for name, qubits in _fake_devices():
        out.append(BackendInfo(f"fake:{name}", "fake", qubits))
    key: tuple[tuple[str, str], ...] | None = None
    if ibm and ibm.get("token"):
        key = tuple(sorted(ibm.items()))
    elif (account := saved_account()) is not None:
        key = (("name", account),)
    if key is not None:
        devices = ibm_devices(key)
        if devices:
            up = [q for _, q, ok in devices if ok]
            out.append(BackendInfo(f"ibm:{LEAST_BUSY}", "ibm", max(up, default=0), bool(up)))
        out.extend(BackendInfo(f"ibm:{name}", "ibm", q, ok) for name, q, ok in devices)
    return out


DEVICE_LIST_TTL_S = 300.0
"""How long an IBM account's device list (and each device's ``operational``) is kept."""

FAILED_LIST_TTL_S = 30.0
"""How long a failed fetch of the device list (offline, refused login) is kept."""

_lists: dict[tuple[tuple[str, str], ...], tuple[float, tuple[tuple[str, int, bool], ...]]] = {}
_lists_lock = threading.Lock()


def ibm_devices(
    credentials: tuple[tuple[str, str], ...], *, clock: Callable[[], float] = time.monotonic
) -> tuple[tuple[str, int, bool], ...]:
    """``(name, qubits, operational)`` of the account's devices (empty when unreachable), kept
    :data:`DEVICE_LIST_TTL_S` seconds, a failure :data:`FAILED_LIST_TTL_S`.

    Args:
        credentials: ``QiskitRuntimeService`` keywords (``token``, ``channel``, ``instance``;
            or ``name`` of a saved account), sorted.
        clock: seconds, monotonic.
    """
    now = clock()
    with _lists_lock:
        kept = _lists.get(credentials)
        if kept is not None and kept[0] > now:
            return kept[1]
    try:
        from qiskit_ibm_runtime import QiskitRuntimeService

        service = QiskitRuntimeService(**dict(credentials))
        devices = tuple(
            (b.name, int(b.num_qubits), bool(b.status().operational)) for b in service.backends()
        )
        ttl = DEVICE_LIST_TTL_S
    except Exception:  # offline, or a bad token: list no ibm devices rather than fail
        devices, ttl = (), FAILED_LIST_TTL_S
    with _lists_lock:
        _lists[credentials] = (now + ttl, devices)
    return devices


def check_request(
    request: JobRequest, *, ibm_configured: bool, max_batch: int, max_shots: int
) -> None:
    """Refuse work the backend cannot take, before anything is stored.

    Raises:
        UnknownBackendError: an ``aer:``/``fake:`` device that does not exist, or ``ibm:``
            without an IBM token on the server (``field="backend"``).
        BackendLimitError: a task, circuit kind or noise sampling the backend does not run,
            or a circuit too large for its engine (:func:`qldm.backends.admit`:
            ``field="task"``, ``"circuit"``, ``"noise_sampling"`` or ``"circuit.n_qubits"``),
            more
            samples than ``max_batch`` (``field="inputs"``), more shots than ``max_shots``
            (``field="shots"``), or more qubits than the device has (``field="circuit"``).
    """
    admit(request.backend, request.workload())
    check_state_support(request.backend, request.workload())
    if request.n_samples > max_batch:
        raise BackendLimitError(
            f"{request.n_samples} samples, more than this server's limit of {max_batch} per job",
            field="inputs",
        )
    if request.shots is not None and request.shots > max_shots:
        raise BackendLimitError(
            f"{request.shots} shots, more than this server's limit of {max_shots}", field="shots"
        )
    device_qubits = check_backend(request.backend, ibm_configured=ibm_configured)
    n_qubits = _qubits(request)
    if device_qubits is not None and n_qubits is not None and n_qubits > device_qubits:
        device = request.backend.partition(":")[2]
        raise BackendLimitError(
            f"the circuit has {n_qubits} qubits, {device} has {device_qubits}", field="circuit"
        )


def check_backend(name: str, *, ibm_configured: bool) -> int | None:
    """Refuse a backend name this server cannot run (for a job, or a run's ``backend``).

    Returns:
        The device's qubit count for ``aer:``/``fake:`` devices, else ``None``.

    Raises:
        UnknownBackendError: not ``exact``, ``aer``, ``aer:<device>``, ``fake:<device>`` or
            ``ibm:<device>``; an ``aer:``/``fake:`` device that does not exist; or ``ibm:``
            without an IBM token on the server (``field="backend"``).
    """
    if not BACKEND_NAME.match(name):
        raise UnknownBackendError(
            f"unknown backend {name!r}: use exact, aer, aer:<device>, fake:<device> or "
            "ibm:<device> (GET /v1/backends lists them)",
            field="backend",
        )
    kind, _, device = name.partition(":")
    if kind == "ibm":
        if not ibm_configured and saved_account() is None:
            raise UnknownBackendError(
                "ibm: backends need IBM credentials on the server (QLDM_IBM_TOKEN, or a Qiskit "
                "account saved on its machine)",
                field="backend",
            )
        return None
    if kind not in ("aer", "fake") or not device:
        return None
    sizes = dict(_fake_devices())
    if device not in sizes:
        raise UnknownBackendError(
            f"no fake device {device!r}; GET /v1/backends lists them", field="backend"
        )
    return sizes[device]


def _qubits(request: JobRequest) -> int | None:
    circuit = request.circuit
    n = getattr(circuit, "n_qubits", None)
    if isinstance(n, int):
        return n
    return None
