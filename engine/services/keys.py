"""API keys: issue, list, revoke, and authenticate (with a short in-process cache)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from datetime import datetime

import asyncpg
import msgspec

from engine.core.access import require_role
from engine.core.model import Caller, Role
from engine.errors import BadInput, KeyAlreadyIssued, NotFound, Unauthorized
from engine.services import idempotency
from engine.store import catalog as catalog_store
from engine.store import keys as store

CACHE_SECONDS = 5.0
MAX_CACHED = 10_000
BOOTSTRAP_KEY_ID = "bootstrap-admin"


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class IssuedKey(msgspec.Struct, kw_only=True):
    key_id: str
    key: str
    role: Role
    location_id: str | None = None
    name: str | None = None


class KeyOut(msgspec.Struct, kw_only=True):
    """A key as listed: never its secret."""

    key_id: str
    role: Role
    location_id: str | None = None
    name: str | None = None
    created_at: datetime | None = None
    revoked_at: datetime | None = None


class KeyRing:
    """Resolves bearer tokens to callers, caching each lookup (found or not) for `ttl` seconds.

    Tokens are looked up by their SHA-256 (the database holds nothing else), so no secret is
    ever compared byte by byte; the bootstrap key is compared with hmac.compare_digest.
    Revocation: a key revoked through this ring stops working here at once; one revoked
    through another process stops working here within `ttl` seconds.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        bootstrap_admin_key: str | None,
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.ttl = ttl
        self._clock = clock
        self._bootstrap = digest(bootstrap_admin_key) if bootstrap_admin_key else None
        self._cache: dict[bytes, tuple[float, Caller | None]] = {}

    async def authenticate(self, token: str | None) -> Caller:
        if not token:
            raise Unauthorized("send an API key as 'Authorization: Bearer <key>'")
        h = digest(token)
        if self._bootstrap is not None and hmac.compare_digest(h, self._bootstrap):
            return Caller(key_id=BOOTSTRAP_KEY_ID, role=Role.ADMIN)
        now = self._clock()
        hit = self._cache.get(h)
        if hit is None or hit[0] <= now:
            async with self.pool.acquire() as conn:
                row = await store.find_by_hash(conn, h)
            caller = (
                Caller(key_id=row["key_id"], role=Role(row["role"]), location_id=row["location_id"]) if row else None
            )
            if len(self._cache) >= MAX_CACHED:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                if len(self._cache) >= MAX_CACHED:
                    self._cache.clear()
            self._cache[h] = hit = (now + self.ttl, caller)
        if hit[1] is None:
            raise Unauthorized("unknown or revoked API key")
        return hit[1]

    def forget(self, key_id: str) -> None:
        """Drop every cached lookup of `key_id`: its next request is checked again."""
        for h in [h for h, (_, c) in self._cache.items() if c is not None and c.key_id == key_id]:
            del self._cache[h]

    async def revoke(self, caller: Caller, key_id: str) -> KeyOut:
        """Revoke a key (again: no change) and stop accepting it in this process at once."""
        require_role(caller)
        async with self.pool.acquire() as conn:
            row = await store.revoke(conn, key_id)
        if row is None:
            hint = " (the bootstrap key is revoked by unsetting OMNIROUTE_BOOTSTRAP_ADMIN_KEY)"
            raise NotFound(f"no API key {key_id}" + (hint if key_id == BOOTSTRAP_KEY_ID else ""))
        self.forget(key_id)
        return _key_out(row)


def _key_out(row: asyncpg.Record) -> KeyOut:
    return KeyOut(
        key_id=row["key_id"],
        role=Role(row["role"]),
        location_id=row["location_id"],
        name=row["name"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


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


def _without_secret(issued: IssuedKey) -> KeyOut:
    return KeyOut(key_id=issued.key_id, role=issued.role, location_id=issued.location_id, name=issued.name)


async def create(
    pool: asyncpg.Pool,
    caller: Caller,
    role: Role,
    location_id: str | None,
    name: str | None,
    idem_key: str | None,
    request: msgspec.Struct,
) -> bytes:
    """Issue a key. With an Idempotency-Key only the key without its secret is kept for
    retries (no secret rests in the database): a retry is KeyAlreadyIssued naming the key,
    which the caller can revoke before asking for another."""

    async def work(conn: asyncpg.Connection) -> tuple[int, IssuedKey]:
        return 201, await issue(conn, caller, role, location_id, name)

    _, body = await idempotency.run(pool, caller, idem_key, "api-keys.create", request, work, keep=_without_secret)
    answer = msgspec.json.decode(body)
    if "key" not in answer:
        raise KeyAlreadyIssued(
            f"this Idempotency-Key already created {answer['key_id']}; its secret was shown once and is not kept. "
            "Revoke it if the answer was lost, then create another key with a new Idempotency-Key.",
            key_id=answer["key_id"],
        )
    return body


async def list_keys(pool: asyncpg.Pool, caller: Caller, *, after: str | None, limit: int) -> list[KeyOut]:
    require_role(caller)
    async with pool.acquire() as conn:
        return [_key_out(r) for r in await store.list_keys(conn, after=after, limit=limit)]
