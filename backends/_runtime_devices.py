"""Where the runtime path's backend and files come from: fake devices, the IBM service, data dir.

- :func:`fake_device`: a fake backend of ``qiskit_ibm_runtime.fake_provider`` by short name
  (``fake:manila`` or ``fake:fake_manila``: ``FakeManilaV2``).
- :func:`ibm_service`: a ``QiskitRuntimeService`` from the server's settings or environment
  (``QLDM_IBM_TOKEN``, ``QLDM_IBM_CHANNEL``, ``QLDM_IBM_INSTANCE``), never from a request.
- :func:`default_data_dir`: where cached runtime results and M3 calibration files live when the
  backend gets no ``data_dir``.

Re-exported by :mod:`qldm.backends.runtime`, which is where other code imports them from.
"""

from __future__ import annotations

import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

from qldm.errors import BackendError, UnknownBackendError


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


def default_data_dir() -> Path:
    """``$QLDM_DATA_DIR``, else ``$XDG_DATA_HOME/qldm`` (the server's default data dir)."""
    if os.environ.get("QLDM_DATA_DIR"):
        return Path(os.environ["QLDM_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "qldm"


def ibm_service(
    token: str | None = None, channel: str | None = None, instance: str | None = None
) -> Any:
    """A ``QiskitRuntimeService`` for these credentials, else the server's environment's
    (``QLDM_IBM_TOKEN``, ``QLDM_IBM_CHANNEL``, ``QLDM_IBM_INSTANCE``).

    Raises:
        BackendError: no token, or the service refused the credentials.
    """
    token = token or os.environ.get("QLDM_IBM_TOKEN")
    channel = channel or os.environ.get("QLDM_IBM_CHANNEL") or "ibm_quantum_platform"
    instance = instance or os.environ.get("QLDM_IBM_INSTANCE")
    if not token:
        raise BackendError(
            "ibm: backends need IBM Quantum credentials in the server's settings "
            "(QLDM_IBM_TOKEN, QLDM_IBM_CHANNEL, QLDM_IBM_INSTANCE)"
        )
    from qiskit_ibm_runtime import QiskitRuntimeService

    try:
        return QiskitRuntimeService(channel=channel, token=token, instance=instance)
    except Exception as exc:
        raise BackendError(f"IBM Quantum refused the credentials: {exc}") from exc
