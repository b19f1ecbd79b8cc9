"""API-key authentication: one tenant per key, ``Authorization: Bearer <key>`` or ``X-API-Key``.

With auth off every request belongs to the tenant ``default``. With auth on, the key is looked
up in the store (which keeps only its SHA-256); answers are cached for a minute per process,
so a busy client does not cost a database read per request.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Protocol

from qldm.errors import UnauthorizedError

__all__ = ["DEFAULT_TENANT", "KeyCache", "key_from_headers"]

DEFAULT_TENANT = "default"
"""The tenant every request belongs to when auth is off."""


class _Authenticator(Protocol):
    def authenticate(self, key: str) -> str | None: ...


def key_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    """The API key a request carries, or ``None``.

    Raises:
        UnauthorizedError: an ``Authorization`` header that is not ``Bearer <key>``.
    """
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthorizedError(
                "the Authorization header must be 'Bearer <key>'", field="Authorization"
            )
        return token.strip()
    if x_api_key:
        return x_api_key.strip()
    return None


class KeyCache:
    """Maps keys to tenants through the store, remembering answers for ``ttl_s`` seconds.

    Only successful look-ups are cached (a wrong key always reaches the store), and the cache
    holds the keys' SHA-256, never the keys.
    """

    def __init__(self, store: _Authenticator, *, ttl_s: float = 60.0, size: int = 4096) -> None:
        self._store = store
        self._ttl = ttl_s
        self._size = size
        self._entries: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def cached_tenant(self, key: str | None) -> str | None:
        """The tenant of ``key`` if a recent look-up found it, else ``None`` (no I/O)."""
        if not key:
            return None
        digest = hashlib.sha256(key.encode()).hexdigest()
        with self._lock:
            hit = self._entries.get(digest)
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    def tenant(self, key: str | None) -> str:
        """The tenant of ``key``.

        Raises:
            UnauthorizedError: no key, or one the store does not know.
        """
        if not key:
            raise UnauthorizedError(
                "this server needs an API key: send 'Authorization: Bearer <key>' "
                "(create one with `qldm keys create --tenant NAME`)",
                field="Authorization",
            )
        digest = hashlib.sha256(key.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(digest)
            if hit is not None and hit[1] > now:
                return hit[0]
        tenant = self._store.authenticate(key)
        if tenant is None:
            raise UnauthorizedError("unknown or revoked API key", field="Authorization")
        with self._lock:
            if len(self._entries) >= self._size:
                self._entries.clear()
            self._entries[digest] = (tenant, now + self._ttl)
        return tenant
