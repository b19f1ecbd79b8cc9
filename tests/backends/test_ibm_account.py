"""``ibm:`` credentials and devices without a real account: the saved Qiskit account as the
fallback when the server has no token, ``ibm:least_busy``, and a device list that is fetched
again after a failed login.

Stand-ins answer as qiskit-ibm-runtime documents: ``QiskitRuntimeService(name=, filename=)``
loads a saved account (``save_account`` writes ``~/.qiskit/qiskit-ibm.json``);
``least_busy(operational=True, simulator=False)`` returns "the backend with the fewest number
of pending jobs"; ``backends()`` lists ``IBMBackend`` objects whose ``status().operational``
says whether they take jobs (qiskit-ibm-runtime's API reference, ``QiskitRuntimeService``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
import qiskit_ibm_runtime

from qldm.backends._runtime_devices import ibm_service, saved_account
from qldm.backends.runtime import RuntimeBackend, fake_device
from qldm.errors import BackendError, UnknownBackendError
from qldm.service import catalog


def _save(path: Path, name: str, *, default: bool) -> None:
    qiskit_ibm_runtime.QiskitRuntimeService.save_account(
        token="x" * 40,
        channel="ibm_quantum_platform",
        instance="crn:v1:bluemix:public:quantum-computing:us-east:a/0::",
        filename=str(path),
        name=name,
        set_as_default=default,
    )


class _Service(qiskit_ibm_runtime.QiskitRuntimeService):
    """Records how it was built and serves fake devices instead of the network."""

    built: ClassVar[list[dict[str, Any]]] = []
    fail: ClassVar[bool] = False

    def __init__(self, **kwargs: Any) -> None:  # no network
        if _Service.fail:
            raise RuntimeError("login refused")
        _Service.built.append(kwargs)
        self._devices = {
            "ibm_busy": (fake_device("manila"), 40, True),
            "ibm_quiet": (fake_device("lima"), 2, True),
            "ibm_down": (fake_device("quito"), 0, False),
        }

    def backend(self, name: str | None = None, instance: str | None = None, **kw: Any) -> Any:
        if name not in self._devices:
            raise KeyError(name)
        return self._devices[name][0]

    def least_busy(self, min_num_qubits: int | None = None, **kwargs: Any) -> Any:
        up = [v for v in self._devices.values() if v[2] or not kwargs.get("operational")]
        return min(up, key=lambda v: v[1])[0]

    def backends(self, *args: Any, **kwargs: Any) -> list[Any]:
        return [
            SimpleNamespace(
                name=name,
                num_qubits=dev.num_qubits,
                status=lambda ok=ok: SimpleNamespace(operational=ok),
            )
            for name, (dev, _pending, ok) in self._devices.items()
        ]


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> type[_Service]:
    _Service.built = []
    _Service.fail = False
    monkeypatch.setattr(qiskit_ibm_runtime, "QiskitRuntimeService", _Service)
    return _Service


def test_the_saved_account_is_the_fallback_without_a_token(
    tmp_path: Path, service: type[_Service]
) -> None:
    accounts = tmp_path / "qiskit-ibm.json"
    assert saved_account(str(accounts)) is None  # no file
    with pytest.raises(BackendError, match="saved on its machine"):
        ibm_service(None, account_file=str(accounts))
    _save(accounts, "lab", default=False)
    assert saved_account(str(accounts)) == "lab"  # the only one
    _save(accounts, "other", default=False)
    assert saved_account(str(accounts)) is None  # two, none default: not ours to guess
    _save(accounts, "main", default=True)
    assert saved_account(str(accounts)) == "main"
    ibm_service(None, account_file=str(accounts))
    assert service.built[-1] == {"name": "main", "filename": str(accounts), "instance": None}
    ibm_service("t" * 40, "ibm_cloud", "crn:x")  # a token wins over any saved account
    assert service.built[-1] == {"channel": "ibm_cloud", "token": "t" * 40, "instance": "crn:x"}


def test_least_busy_picks_the_operational_device_with_the_fewest_pending_jobs(
    tmp_path: Path, service: type[_Service]
) -> None:
    backend = RuntimeBackend("ibm:least_busy", token="t" * 40, data_dir=tmp_path)
    assert backend.backend.name == "fake_lima"  # ibm_quiet: 2 pending (ibm_down has 0, down)
    named = RuntimeBackend("ibm:ibm_busy", token="t" * 40, data_dir=tmp_path)
    assert named.backend.name == "fake_manila"
    with pytest.raises(UnknownBackendError) as info:
        RuntimeBackend("ibm:ibm_nowhere", token="t" * 40, data_dir=tmp_path)
    assert info.value.field == "backend"


def test_the_device_list_is_fetched_again_after_a_failed_login(service: type[_Service]) -> None:
    now = [1000.0]
    key = (("token", "t" * 40),)
    service.fail = True
    assert catalog.ibm_devices(key, clock=lambda: now[0]) == ()
    service.fail = False
    now[0] += 1.0
    assert catalog.ibm_devices(key, clock=lambda: now[0]) == ()  # the failure is kept briefly
    now[0] += catalog.FAILED_LIST_TTL_S
    devices = catalog.ibm_devices(key, clock=lambda: now[0])
    assert {d[0] for d in devices} == {"ibm_busy", "ibm_quiet", "ibm_down"}
    built = len(service.built)
    now[0] += catalog.DEVICE_LIST_TTL_S - 1
    assert catalog.ibm_devices(key, clock=lambda: now[0]) == devices
    assert len(service.built) == built  # kept, not fetched
    now[0] += 2
    catalog.ibm_devices(key, clock=lambda: now[0])
    assert len(service.built) == built + 1  # refreshed after the TTL
    listed = {b.name: b for b in catalog.catalog(ibm={"token": "t" * 40 + "!"})}
    assert listed["ibm:least_busy"].available and listed["ibm:ibm_down"].available is False
    assert listed["ibm:least_busy"].qubits == max(
        listed["ibm:ibm_busy"].qubits, listed["ibm:ibm_quiet"].qubits
    )


def test_a_server_without_a_token_takes_ibm_jobs_with_a_saved_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import qldm.service.catalog as cat

    monkeypatch.setattr(cat, "saved_account", lambda: None)
    with pytest.raises(UnknownBackendError, match="saved"):
        catalog.check_backend("ibm:ibm_busy", ibm_configured=False)
    monkeypatch.setattr(cat, "saved_account", lambda: "main")
    assert catalog.check_backend("ibm:ibm_busy", ibm_configured=False) is None
