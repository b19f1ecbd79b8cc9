"""An httpx transport for plain ``http://`` servers, on the standard library's ``http.client``.

httpx's own transport (httpcore, h11) spent about a millisecond more than ``http.client`` per
exchange on a B = 128 Jacobian's 0.5 MB answer (1.65 against 0.64 ms on loopback, each call
after a 45 ms pause, as a training step makes them). Side by side on the whole job path
(``qldm bench service --against``, 150 B = 128 Jacobian jobs per tree and run), httpx's own
transport in its place made the server add 1.7 and 2.8 ms more per job (p50; paired medians
2.1 and 1.4 ms), so it stays. :class:`ServiceClient` sends
``http://`` requests through this transport; everything above it (the client, its headers,
timeouts, ``Response`` objects, decoding, errors) is still httpx's. ``https://`` URLs and
proxied ones keep httpx's transport.

Connections are HTTP/1.1 keep-alive, kept while idle and reused, one request at a time each;
an idle one the server has closed (uvicorn closes them after 5 s) is noticed before reuse and
replaced. Failures are raised as httpx's exceptions (``ConnectError``, ``ReadTimeout``,
``RemoteProtocolError``, ...), so callers retry them as they would httpx's.
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import threading
from typing import Any

import httpx

__all__ = ["KeepAliveTransport"]

_MAX_IDLE = 16  # idle connections kept (more concurrent callers than that get fresh ones)


class KeepAliveTransport(httpx.BaseTransport):
    """HTTP/1.1 over :mod:`http.client`, with idle connections reused."""

    def __init__(self) -> None:
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            raise httpx.UnsupportedProtocol(
                f"this transport speaks plain http, not {url.scheme!r}", request=request
            )
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        conn = self._take(url.host, url.port or 80)
        try:
            if conn is None:
                conn = _connect(url.host, url.port or 80, timeouts.get("connect"), request)
            conn.sock.settimeout(_io_timeout(timeouts))
            conn.putrequest(
                request.method,
                url.raw_path.decode("ascii"),
                skip_host=True,
                skip_accept_encoding=True,
            )
            for name, value in request.headers.raw:
                conn.putheader(name, value)  # bytes are sent as they are
            conn.endheaders(request.read() or None)
            answer = conn.getresponse()
            body = answer.read()
        except BaseException as exc:
            if conn is not None:
                conn.close()
            mapped = _as_httpx(exc, request)
            if mapped is exc:
                raise
            raise mapped from exc
        if answer.will_close:
            conn.close()
        else:
            self._put(conn)
        return httpx.Response(
            answer.status,
            headers=answer.getheaders(),
            stream=httpx.ByteStream(body),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": answer.reason.encode()},
        )

    def _take(self, host: str, port: int) -> http.client.HTTPConnection | None:
        """An idle connection to ``host:port`` the server has not closed, or ``None``."""
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if conn.host == host and conn.port == port and not _closed_by_peer(conn):
                    return conn
                conn.close()
        return None

    def _put(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < _MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _connect(
    host: str, port: int, timeout: float | None, request: httpx.Request
) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.connect()
    except TimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
    except OSError as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def _io_timeout(timeouts: dict[str, float | None]) -> float | None:
    """The socket timeout for sending and reading: the longer of httpx's write and read
    timeouts (``None`` when either has no limit)."""
    read, write = timeouts.get("read"), timeouts.get("write")
    if read is None or write is None:
        return None
    return max(read, write)


def _closed_by_peer(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle connection's socket is readable: the server closed it (or sent
    something unasked, which makes it unusable as well)."""
    sock = conn.sock
    if sock is None:
        return True
    with contextlib.suppress(OSError, ValueError):
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    return True


def _as_httpx(exc: BaseException, request: httpx.Request) -> BaseException:
    """httpx's exception for a failure of the exchange (others are returned as they are)."""
    if isinstance(exc, httpx.HTTPError):
        return exc
    message: Any = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        return httpx.ReadTimeout(message, request=request)
    if isinstance(exc, (http.client.HTTPException, ConnectionError)):
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(exc, OSError):
        return httpx.ReadError(message, request=request)
    return exc
