"""The client against hostile conditions (issue 15, item 8): a server that takes connections
but never answers, and an API key HTTP cannot carry."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from qldm.client.service_client import ServiceClient, ServiceUnavailableError
from qldm.errors import RequestValidationError
from tests.service.helpers import tiny_request


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server on loopback that accepts every connection, reads, and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_a_server_that_never_answers_is_given_up_after_one_timeout(silent_server: str) -> None:
    """Before: with the default settings the client waited about 200 s (30 s a try, four tries,
    plus a long-poll's wait). Now one default timeout (10 s), then ServiceUnavailableError."""
    client = ServiceClient(silent_server)
    start = time.monotonic()
    with pytest.raises(ServiceUnavailableError) as err:
        client.submit(tiny_request(1))
    took = time.monotonic() - start
    assert 9.0 <= took < 15.0, took
    assert "no answer within 10 s" in str(err.value)
    assert err.value.code == "unavailable"


@pytest.mark.parametrize("key", ["clé-secrète", "qldm_\u2603", "key\nInjected: 1"])
def test_an_api_key_http_cannot_carry_is_refused_naming_it(key: str) -> None:
    """Before: a raw UnicodeEncodeError from deep inside the HTTP library at the first call."""
    with pytest.raises(RequestValidationError) as err:
        ServiceClient("http://127.0.0.1:9", api_key=key)
    assert err.value.field == "api_key"
