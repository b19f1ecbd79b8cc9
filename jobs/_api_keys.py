"""API keys: one tenant per key; only the key's SHA-256 and a lookup prefix are stored."""

from __future__ import annotations

import builtins
import hashlib
import hmac
import secrets
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from qldm.jobs import db
from qldm.jobs._sql import SqlBase, new_id, now, require, utc
from qldm.jobs.model import ApiKey

__all__ = ["API_KEY_PREFIX", "ApiKeyStore"]

API_KEY_PREFIX = "qldm_"
"""Every API key starts with this."""

_KEY_LOOKUP_CHARS = 8  # random characters after ``qldm_`` kept in clear for the lookup


class ApiKeyStore(SqlBase):
    """The API-key part of :class:`qldm.jobs.store.JobStore`."""

    def create_api_key(self, *, tenant: str) -> str:
        """Create an API key for ``tenant`` and return it; it is not stored, only its hash.

        Returns:
            ``qldm_`` followed by 43 random URL-safe characters (256 bits).
        """
        require(tenant, "tenant")
        for _ in range(5):
            key = API_KEY_PREFIX + secrets.token_urlsafe(32)
            prefix = key[: len(API_KEY_PREFIX) + _KEY_LOOKUP_CHARS]
            try:
                with self._write() as conn:
                    conn.execute(
                        insert(db.api_keys).values(
                            id=new_id(),
                            tenant=tenant,
                            prefix=prefix,
                            key_hash=_hash_key(key),
                            created_at=now(),
                        )
                    )
            except IntegrityError:  # pragma: no cover - a 48-bit prefix collision
                continue
            return key
        raise RuntimeError("could not draw a unique API key prefix")  # pragma: no cover

    def authenticate(self, key: str) -> str | None:
        """The tenant of a valid, unrevoked API key, else ``None``."""
        if not isinstance(key, str) or not key.startswith(API_KEY_PREFIX) or len(key) > 200:
            return None
        prefix = key[: len(API_KEY_PREFIX) + _KEY_LOOKUP_CHARS]
        with self._read() as conn:
            row = conn.execute(
                select(db.api_keys).where(
                    db.api_keys.c.prefix == prefix, db.api_keys.c.revoked_at.is_(None)
                )
            ).first()
        if row is None or not hmac.compare_digest(row.key_hash, _hash_key(key)):
            return None
        return str(row.tenant)

    def has_api_keys(self) -> bool:
        """Whether any unrevoked API key exists (the server requires auth once one does)."""
        with self._read() as conn:
            row = conn.execute(
                select(db.api_keys.c.id).where(db.api_keys.c.revoked_at.is_(None)).limit(1)
            ).first()
        return row is not None

    def list_api_keys(self, *, tenant: str | None = None) -> builtins.list[ApiKey]:
        """The stored keys (prefix and dates only), oldest first."""
        query = select(db.api_keys).order_by(db.api_keys.c.created_at)
        if tenant is not None:
            query = query.where(db.api_keys.c.tenant == tenant)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [_api_key(r) for r in rows]

    def api_key(self, key_id: str) -> ApiKey | None:
        """The stored key with this id (prefix and dates only), or ``None``."""
        with self._read() as conn:
            row = conn.execute(select(db.api_keys).where(db.api_keys.c.id == key_id)).first()
        return None if row is None else _api_key(row)

    def revoke_api_key(self, key_id: str) -> bool:
        """Revoke a key by its id; returns whether it was active."""
        with self._write() as conn:
            res = conn.execute(
                update(db.api_keys)
                .where(db.api_keys.c.id == key_id, db.api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now())
            )
        return res.rowcount == 1


def _api_key(row: Row[Any]) -> ApiKey:
    return ApiKey(
        id=row.id,
        tenant=row.tenant,
        prefix=row.prefix,
        created_at=utc(row.created_at),  # type: ignore[arg-type]
        revoked_at=utc(row.revoked_at),
    )


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
