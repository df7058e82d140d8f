"""Idempotent creating writes: the first answer is stored with the change it describes."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import asyncpg
import msgspec

from engine.core.model import Caller
from engine.errors import IdempotencyMismatch
from engine.store import idempotency as store
from engine.store.db import with_retry

_encoder = msgspec.json.Encoder()

Work = Callable[[asyncpg.Connection], Awaitable[tuple[int, msgspec.Struct]]]


def request_hash(operation: str, body: object) -> bytes:
    """Digest of the decoded request, so whitespace and key order do not matter."""
    return hashlib.sha256(operation.encode() + b"\0" + _encoder.encode(body)).digest()


async def run(
    pool: asyncpg.Pool,
    caller: Caller,
    idem_key: str | None,
    operation: str,
    body: object,
    work: Work,
    *,
    single_statement: bool = False,
    keep: Callable[[msgspec.Struct], msgspec.Struct] | None = None,
) -> tuple[int, bytes]:
    """Run `work` in one transaction and return (status, encoded answer).

    With a key: a retry with the same body returns the stored answer and changes nothing;
    the same key with another body (or another operation) is IdempotencyMismatch. A failed
    attempt stores nothing, so it can be retried with the same key.

    `single_statement`: `work` issues one statement, which is its own transaction, so
    without a key no BEGIN/COMMIT round trips are spent (and row locks are held only for
    that statement and its commit).

    `keep`: what to store for retries instead of the answer itself (an answer holding a
    secret that must not rest in the database).
    """
    digest = request_hash(operation, body) if idem_key else b""

    async def attempt() -> tuple[int, bytes]:
        if idem_key is None and single_statement:
            async with pool.acquire() as conn:
                status, result = await work(conn)
                return status, _encoder.encode(result)
        async with pool.acquire() as conn, conn.transaction():
            if idem_key is not None and (first := await _claim(conn, caller, idem_key, operation, digest)):
                return first
            status, result = await work(conn)
            encoded = _encoder.encode(result)
            if idem_key is not None:
                kept = encoded if keep is None else _encoder.encode(keep(result))
                await store.finish(conn, caller.key_id, idem_key, status, kept)
            return status, encoded

    return await with_retry(attempt)


Start = Callable[[], Awaitable[msgspec.Struct]]


async def start(
    pool: asyncpg.Pool, caller: Caller, idem_key: str | None, operation: str, body: object, begin: Start
) -> tuple[int, bytes]:
    """Start background work (a planner run, applying one) and answer 202 with its record.

    With a key, the key is claimed in a transaction that stays open while `begin` starts
    the work on connections of its own, and commits with the answer: a retry gets that
    answer (the same run, as it was when started) and starts nothing. If `begin` fails
    (another run is under way, say), the claim is undone and the same key can try again.
    Not retried on a lost race, unlike `run`: starting twice is what this prevents."""
    if idem_key is None:
        return 202, _encoder.encode(await begin())
    digest = request_hash(operation, body)
    async with pool.acquire() as conn, conn.transaction():
        if first := await _claim(conn, caller, idem_key, operation, digest):
            return first
        encoded = _encoder.encode(await begin())
        await store.finish(conn, caller.key_id, idem_key, 202, encoded)
        return 202, encoded


async def _claim(
    conn: asyncpg.Connection, caller: Caller, idem_key: str, operation: str, digest: bytes
) -> tuple[int, bytes] | None:
    """Claim the key in `conn`'s transaction: None when this request is the first, else the
    stored first answer; IdempotencyMismatch if the key came with another request."""
    if await store.claim(conn, caller.key_id, idem_key, operation, digest):
        return None
    row = await store.stored(conn, caller.key_id, idem_key)
    if row["operation"] != operation or row["request_hash"] != digest:
        raise IdempotencyMismatch(
            "this Idempotency-Key was already used with a different request", idempotency_key=idem_key
        )
    return row["status_code"], bytes(row["response"])
