"""``ServiceClient``'s HTTP: httpx's own keep-alive pool, against a real HTTP/1.1 server on
loopback (one connection for many requests, a closed one replaced, no server: retried, then
``ServiceUnavailableError``)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

from qldm.client.service_client import ServiceClient, ServiceUnavailableError
from qldm.service.embedded import free_loopback_port


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    connections: ClassVar[set[int]] = set()  # the clients' ports

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        _Handler.connections.add(self.client_address[1])
        closing = self.path.startswith("/v1/runs/")
        body = json.dumps(
            {"id": "r", "status": "open"} if closing else {"data": [], "count": 0}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if closing:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Handler.connections.clear()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_requests_share_one_connection_and_a_closed_one_is_replaced(server: str) -> None:
    with ServiceClient(server) as client:
        for _ in range(5):
            assert client.backends() == []
        assert len(_Handler.connections) == 1
        assert client.get_run("r")["status"] == "open"  # the server closes this connection
        assert client.backends() == []
    assert len(_Handler.connections) == 2


def test_no_server_is_retried_then_unavailable() -> None:
    url = f"http://127.0.0.1:{free_loopback_port()}"
    with ServiceClient(url, retries=1) as client, pytest.raises(ServiceUnavailableError):
        client.backends()
