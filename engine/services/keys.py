"""API keys: issue, authenticate (with a short in-process cache), bootstrap admin."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import asyncpg
import msgspec

from engine.core.access import require_role
from engine.core.model import Caller, Role
from engine.errors import BadInput, Unauthorized
from engine.store import catalog as catalog_store
from engine.store import keys as store

CACHE_SECONDS = 10.0
BOOTSTRAP_KEY_ID = "bootstrap-admin"


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class IssuedKey(msgspec.Struct, kw_only=True):
    key_id: str
    key: str
    role: Role
    location_id: str | None = None
    name: str | None = None


class KeyRing:
    """Resolves bearer tokens to callers. A revoked key stops working within CACHE_SECONDS."""

    def __init__(self, pool: asyncpg.Pool, bootstrap_admin_key: str | None) -> None:
        self.pool = pool
        self._bootstrap = digest(bootstrap_admin_key) if bootstrap_admin_key else None
        self._cache: dict[bytes, tuple[float, Caller | None]] = {}

    async def authenticate(self, token: str | None) -> Caller:
        if not token:
            raise Unauthorized("send an API key as 'Authorization: Bearer <key>'")
        h = digest(token)
        if self._bootstrap is not None and hmac.compare_digest(h, self._bootstrap):
            return Caller(key_id=BOOTSTRAP_KEY_ID, role=Role.ADMIN)
        now = time.monotonic()
        hit = self._cache.get(h)
        if hit is None or hit[0] < now:
            async with self.pool.acquire() as conn:
                row = await store.find_by_hash(conn, h)
            caller = (
                Caller(key_id=row["key_id"], role=Role(row["role"]), location_id=row["location_id"]) if row else None
            )
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[h] = hit = (now + CACHE_SECONDS, caller)
        if hit[1] is None:
            raise Unauthorized("unknown or revoked API key")
        return hit[1]


def new_token() -> tuple[str, str]:
    """(key_id, secret token). The token is shown once; only its digest is stored."""
    key_id = "key_" + secrets.token_hex(6)
    return key_id, "omr_" + secrets.token_urlsafe(32)


async def issue(
    conn: asyncpg.Connection, caller: Caller, role: Role, location_id: str | None, name: str | None
) -> IssuedKey:
    require_role(caller)
    if (role is Role.POS) != (location_id is not None):
        raise BadInput(
            "a pos key needs a location_id, and only a pos key takes one",
            errors=[{"field": "location_id", "message": "required for role pos, not allowed otherwise"}],
        )
    if location_id is not None and await catalog_store.unknown_locations(conn, [location_id]):
        raise BadInput(
            "unknown location", errors=[{"field": "location_id", "message": f"unknown location {location_id}"}]
        )
    key_id, token = new_token()
    await store.insert_key(
        conn, key_id=key_id, key_hash=digest(token), role=role.value, location_id=location_id, name=name
    )
    return IssuedKey(key_id=key_id, key=token, role=role, location_id=location_id, name=name)
