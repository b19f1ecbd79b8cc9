"""Where the runtime path's backend and files come from: fake devices, the IBM service, data dir.

- :func:`fake_device`: a fake backend of ``qiskit_ibm_runtime.fake_provider`` by short name
  (``fake:manila`` or ``fake:fake_manila``: ``FakeManilaV2``).
- :func:`ibm_service`: a ``QiskitRuntimeService`` for the credentials it is given (the server
  passes its settings' ``QLDM_IBM_*``), never from a request nor from the environment.
- :class:`RuntimeConfig`: what the server's settings give every runtime backend its workers
  build: the data folder (cached runtime results, M3 calibration files) and the IBM credentials.

Re-exported by :mod:`qldm.backends.runtime`, which is where other code imports them from.
"""

from __future__ import annotations

import inspect
import json
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from qldm.errors import BackendError, UnknownBackendError

RUNTIME_KINDS = ("fake", "ibm", "aer")
"""Name prefixes (``<kind>:<device>``) of the backends built on the runtime path."""


@dataclass(frozen=True)
class RuntimeConfig:
    """The server-side options of the runtime backends (``fake:``, ``ibm:``, ``aer:<device>``).

    The server builds one from its settings and hands it to its executor, whose workers pass it
    to every runtime backend they build; it never comes from a request. It is hashable (workers
    keep one backend per name and config).

    Attributes:
        data_dir: where finished runtime results and M3 calibration files are kept.
        token: IBM Quantum token (``ibm:``); left out of ``repr``.
        channel: IBM Quantum channel (``None``: ``ibm_quantum_platform``).
        instance: IBM Quantum instance (CRN or hub/group/project); left out of ``repr``.
        calibration_max_age_min: fetch the device's properties and target again when the
            last fetch is older (minutes; :meth:`RuntimeBackend.refresh_calibration`).
    """

    data_dir: Path
    token: str | None = field(default=None, repr=False)
    channel: str | None = None
    instance: str | None = field(default=None, repr=False)
    calibration_max_age_min: float = 30.0

    def options_for(self, name: str) -> dict[str, Any]:
        """The keyword options for ``get_backend(name, ...)``: these settings for a runtime
        backend (``fake:``, ``ibm:``, ``aer:<device>``), nothing for the others."""
        kind, _, device = name.partition(":")
        if kind not in RUNTIME_KINDS or not device:
            return {}
        return {
            "data_dir": self.data_dir,
            "token": self.token,
            "channel": self.channel,
            "instance": self.instance,
            "calibration_max_age_min": self.calibration_max_age_min,
        }


@lru_cache(maxsize=1)
def _fake_classes() -> dict[str, type]:
    from qiskit_ibm_runtime.fake_provider import FakeProviderForBackendV2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {b.name: type(b) for b in FakeProviderForBackendV2().backends()}


def fake_device(device: str) -> Any:
    """The fake backend called ``device`` (``manila`` or ``fake_manila``).

    Raises:
        UnknownBackendError: no such fake backend (``field="backend"``), listing a few.
    """
    name = device.lower()
    name = name if name.startswith("fake_") else f"fake_{name}"
    classes = _fake_classes()
    if name not in classes:
        known = ", ".join(f"fake:{n.removeprefix('fake_')}" for n in sorted(classes)[:8])
        raise UnknownBackendError(
            f"no fake device {device!r}; {len(classes)} exist, e.g. {known}", field="backend"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return classes[name]()


DEFAULT_ACCOUNT_FILE = "~/.qiskit/qiskit-ibm.json"
"""Where ``QiskitRuntimeService.save_account`` keeps accounts unless told otherwise."""


def saved_account(filename: str | None = None) -> str | None:
    """The name of the Qiskit account saved on this machine that a service would use: the one
    saved with ``set_as_default=True``, else one under Qiskit's default names, else the only
    one; ``None`` when there is none, several and none of them default, or the file is
    unreadable.

    Accounts are what ``QiskitRuntimeService.save_account(...)`` writes, by default to
    ``~/.qiskit/qiskit-ibm.json`` (listed by ``QiskitRuntimeService.saved_accounts``).

    Args:
        filename: the accounts file (``None``: Qiskit's default).
    """
    from qiskit_ibm_runtime import QiskitRuntimeService

    path = Path(filename or DEFAULT_ACCOUNT_FILE).expanduser()
    try:
        accounts = QiskitRuntimeService.saved_accounts(filename=str(path))
        named_default = QiskitRuntimeService.saved_accounts(default=True, filename=str(path))
        raw = json.loads(path.read_text())  # the flag saved_accounts leaves out
    except Exception:  # no file, or one Qiskit cannot read
        return None
    flagged = [name for name in accounts if raw.get(name, {}).get("is_default_account")]
    for choice in (flagged, list(named_default), list(accounts) if len(accounts) == 1 else []):
        if choice:
            return str(choice[0])
    return None  # several and none marked default: which one is not ours to guess


def ibm_service(
    token: str | None = None,
    channel: str | None = None,
    instance: str | None = None,
    *,
    account_file: str | None = None,
) -> Any:
    """A ``QiskitRuntimeService`` for these credentials, or for the saved Qiskit account.

    Args:
        token: IBM Quantum token (the server passes ``QLDM_IBM_TOKEN``); ``None``: the
            account saved on this machine (:func:`saved_account`), when there is one.
        channel: IBM Quantum channel (``None``: ``ibm_quantum_platform``, or the saved
            account's).
        instance: IBM Quantum instance (``None``: the saved account's, if any).
        account_file: where saved accounts are read (``None``: ``~/.qiskit/qiskit-ibm.json``).

    Raises:
        BackendError: no token and no saved account, or the service refused the credentials.
    """
    from qiskit_ibm_runtime import QiskitRuntimeService

    if not token:
        name = saved_account(account_file)
        if name is None:
            raise BackendError(
                "ibm: backends need IBM Quantum credentials: a server takes them from its "
                "settings (QLDM_IBM_TOKEN, QLDM_IBM_CHANNEL, QLDM_IBM_INSTANCE) or from the "
                "Qiskit account saved on its machine (QiskitRuntimeService.save_account, "
                "~/.qiskit/qiskit-ibm.json); in-process, pass token= (and channel=, "
                "instance=) to the backend"
            )
        try:
            return QiskitRuntimeService(name=name, filename=account_file, instance=instance)
        except Exception as exc:
            raise BackendError(f"IBM Quantum refused the saved account {name!r}: {exc}") from exc
    channel = channel or "ibm_quantum_platform"
    try:
        return QiskitRuntimeService(channel=channel, token=token, instance=instance)
    except Exception as exc:
        raise BackendError(f"IBM Quantum refused the credentials: {exc}") from exc


LEAST_BUSY = "least_busy"
"""``ibm:least_busy``: the account's operational device with the fewest pending jobs."""


def ibm_device(service: Any, device: str) -> Any:
    """The ``IBMBackend`` called ``device``, or for ``least_busy`` the operational, non-simulator
    device with the fewest pending jobs (``QiskitRuntimeService.least_busy``).

    Raises:
        UnknownBackendError: the account has no such device (``field="backend"``).
    """
    try:
        if device == LEAST_BUSY:
            return service.least_busy(operational=True, simulator=False)
        return service.backend(device)
    except Exception as exc:
        raise UnknownBackendError(
            f"IBM Quantum has no backend {device!r} for this account: {exc}", field="backend"
        ) from exc


def refresh_backend(backend: Any, name: str, *, ibm: bool) -> bool:
    """Fetch ``backend``'s configuration, properties and target again: ``IBMBackend.refresh()``
    on ``ibm:``; on other backends only a ``refresh`` that takes no arguments (a fake device's
    own ``refresh(service)`` needs a real account; its calibration is a fixed file).

    Returns:
        Whether it was refreshed.

    Raises:
        BackendError: the refresh failed.
    """
    refresh = getattr(backend, "refresh", None)
    if refresh is None:
        return False
    required = [
        p
        for p in inspect.signature(refresh).parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if not ibm and required:
        return False
    try:
        refresh()
    except Exception as exc:
        raise BackendError(f"could not refresh {name}'s calibration: {exc}") from exc
    return True
