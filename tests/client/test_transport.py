"""The client's http.client transport and ServiceClient over it, against a real HTTP/1.1 server on
loopback."""

from __future__ import annotations

import gzip
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import ClassVar

import httpx
import pytest

from qldm.client._transport import KeepAliveTransport
from qldm.client.service_client import (
    ServiceClient,
    ServiceUnavailableError,
    _plain_http_without_proxy,
)
from qldm.service.embedded import free_loopback_port


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    connections: ClassVar[set[int]] = set()  # the clients' ports

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        _Handler.connections.add(self.client_address[1])
        if self.path == "/slow":
            time.sleep(1.0)
        if self.path == "/gzip":
            self._answer(200, gzip.compress(b"zipped"), Content_Encoding="gzip")
            return
        if self.path == "/close":
            self.close_connection = True
            self._answer(200, b"bye", Connection="close")
            return
        if self.path.startswith("/v1/"):  # ServiceClient's: a run closes its connection
            closing = self.path.startswith("/v1/runs/")
            answer = {"id": "r", "status": "open"} if closing else {"data": [], "count": 0}
            self.close_connection = closing
            extra = {"Connection": "close"} if closing else {}
            self._answer(200, json.dumps(answer).encode(), Content_Type="application/json", **extra)
            return
        self._answer(200, f"{self.path} {self.headers.get('X-Echo', '')}".encode())

    def do_POST(self) -> None:
        _Handler.connections.add(self.client_address[1])
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(201, body[::-1], X_Length=str(len(body)))


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the slow answer's client has gone: nothing to report


@pytest.fixture
def server() -> Iterator[str]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Handler.connections.clear()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_requests_reuse_one_connection_and_carry_headers_and_bodies(server: str) -> None:
    with httpx.Client(base_url=server, transport=KeepAliveTransport()) as client:
        got = client.get("/a?x=1", headers={"X-Echo": "hi"})
        assert (got.status_code, got.text) == (200, "/a?x=1 hi")
        payload = bytes(range(256)) * 4000  # 1 MB each way
        posted = client.post("/b", content=payload)
        assert posted.status_code == 201 and posted.content == payload[::-1]
        assert posted.headers["x-length"] == str(len(payload))
        assert posted.http_version == "HTTP/1.1" and posted.reason_phrase == "Created"
        assert client.get("/gzip").text == "zipped"  # httpx still decodes
    assert len(_Handler.connections) == 1


def test_a_connection_the_server_closed_is_replaced(server: str) -> None:
    with httpx.Client(base_url=server, transport=KeepAliveTransport()) as client:
        assert client.get("/close").text == "bye"
        assert client.get("/after").text == "/after "
    assert len(_Handler.connections) == 2


def test_failures_are_httpx_errors() -> None:
    with httpx.Client(transport=KeepAliveTransport()) as client:
        with pytest.raises(httpx.ConnectError):
            client.get(f"http://127.0.0.1:{free_loopback_port()}/")
        with pytest.raises(httpx.UnsupportedProtocol):
            KeepAliveTransport().handle_request(httpx.Request("GET", "https://127.0.0.1/"))


def test_a_slow_answer_times_out(server: str) -> None:
    with httpx.Client(base_url=server, transport=KeepAliveTransport(), timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.get("/slow")
        assert client.get("/fine").text == "/fine "  # a fresh connection


def test_only_direct_plain_http_takes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert _plain_http_without_proxy("http://127.0.0.1:8000")
    assert not _plain_http_without_proxy("https://qldm.example.org")
    monkeypatch.setenv("http_proxy", "http://proxy.example.org:3128")
    assert not _plain_http_without_proxy("http://qldm.example.org")  # httpx's proxy support
    monkeypatch.setenv("no_proxy", "qldm.example.org")
    assert _plain_http_without_proxy("http://qldm.example.org")


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
