"""API keys: listed without secrets, revocable, never stored or logged in plaintext.

A revoked key is a 401 at once in the process that revoked it, and in every other process
within the key cache's lifetime (OMNIROUTE_KEY_CACHE_SECONDS).
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from api.observability import JsonFormatter
from engine.core.model import Caller, Role
from engine.errors import Unauthorized
from engine.services.keys import KeyRing
from engine.store import keys as key_store
from tests.helpers import ADMIN, assert_problem, build_network, row_counts, service


async def issue(client: AsyncTestClient, body: dict, **headers: str) -> dict:
    r = await client.post("/v1/api-keys", json=body, headers={**ADMIN, **headers})
    assert r.status_code == 201, r.text
    return r.json()


def bearer(issued: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {issued['key']}"}


async def stock_status(client: AsyncTestClient, issued: dict) -> int:
    return (await client.get("/v1/stock", params={"sku": "SKU-A"}, headers=bearer(issued))).status_code


@pytest.fixture
async def network(client: AsyncTestClient, db: asyncpg.Pool) -> AsyncTestClient:
    await build_network(client)
    return client


async def test_a_revoked_key_is_refused_at_once_and_revoking_again_is_harmless(network, db):
    key = await issue(network, {"role": "checkout", "name": "web shop"})
    assert await stock_status(network, key) == 200  # cached as valid in this process
    r = await network.delete(f"/v1/api-keys/{key['key_id']}", headers=ADMIN)
    assert r.status_code == 204, r.text
    assert r.content == b""
    r = await network.get("/v1/stock", params={"sku": "SKU-A"}, headers=bearer(key))
    assert_problem(r, 401)
    assert r.headers["www-authenticate"] == "Bearer"
    async with db.acquire() as conn:
        first = await conn.fetchval("SELECT revoked_at FROM api_keys WHERE key_id = $1", key["key_id"])
    assert first is not None
    r = await network.delete(f"/v1/api-keys/{key['key_id']}", headers=ADMIN)
    assert r.status_code == 204, r.text
    async with db.acquire() as conn:
        again = await conn.fetchval("SELECT revoked_at FROM api_keys WHERE key_id = $1", key["key_id"])
    assert again == first, "revoking twice moved the revocation time"


async def test_revoking_an_unknown_key_is_a_404_problem_and_the_bootstrap_key_is_not_revocable_here(network, db):
    before = await row_counts(db)
    assert_problem(await network.delete("/v1/api-keys/key_000000000000", headers=ADMIN), 404)
    body = assert_problem(await network.delete("/v1/api-keys/bootstrap-admin", headers=ADMIN), 404)
    assert "OMNIROUTE_BOOTSTRAP_ADMIN_KEY" in body["detail"]
    assert_problem(await network.delete("/v1/api-keys/bad id!", headers=ADMIN), 400, "key_id")
    assert await row_counts(db) == before
    assert (await network.get("/v1/stock", params={"sku": "SKU-A"}, headers=ADMIN)).status_code == 200


async def test_only_admins_revoke_and_a_refused_revocation_leaves_the_key_working(network, db):
    victim = await issue(network, {"role": "checkout"})
    for body in ({"role": "checkout"}, {"role": "planner"}, {"role": "pos", "location_id": "STORE-NYC"}):
        other = await issue(network, body)
        assert_problem(await network.delete(f"/v1/api-keys/{victim['key_id']}", headers=bearer(other)), 403)
        assert_problem(await network.get("/v1/api-keys", headers=bearer(other)), 403)
    assert await stock_status(network, victim) == 200


async def test_a_key_can_revoke_itself(network, db):
    admin = await issue(network, {"role": "admin"})
    r = await network.delete(f"/v1/api-keys/{admin['key_id']}", headers=bearer(admin))
    assert r.status_code == 204, r.text
    assert_problem(await network.get("/v1/stock", params={"sku": "SKU-A"}, headers=bearer(admin)), 401)


async def test_a_revoked_admin_key_cannot_create_or_revoke_keys(network, db):
    admin = await issue(network, {"role": "admin"})
    victim = await issue(network, {"role": "checkout"})
    assert (await network.delete(f"/v1/api-keys/{admin['key_id']}", headers=ADMIN)).status_code == 204
    before = await row_counts(db)
    assert_problem(await network.post("/v1/api-keys", json={"role": "admin"}, headers=bearer(admin)), 401)
    assert_problem(await network.delete(f"/v1/api-keys/{victim['key_id']}", headers=bearer(admin)), 401)
    assert await row_counts(db) == before
    assert await stock_status(network, victim) == 200


async def test_keys_are_listed_in_pages_without_secrets_revoked_ones_marked(network, db):
    issued = [await issue(network, {"role": "checkout", "name": f"client {i}"}) for i in range(5)]
    pos = await issue(network, {"role": "pos", "location_id": "STORE-NYC"})
    assert (await network.delete(f"/v1/api-keys/{issued[0]['key_id']}", headers=ADMIN)).status_code == 204
    r = await network.get("/v1/api-keys", headers=ADMIN)
    assert r.status_code == 200, r.text
    listed = r.json()
    assert [k["key_id"] for k in listed] == sorted(k["key_id"] for k in [*issued, pos])
    for k in [*issued, pos]:
        assert k["key"] not in r.text
    by_id = {k["key_id"]: k for k in listed}
    assert by_id[issued[0]["key_id"]]["revoked_at"] is not None
    assert all(by_id[k["key_id"]]["revoked_at"] is None for k in issued[1:])
    assert by_id[pos["key_id"]]["location_id"] == "STORE-NYC" and by_id[pos["key_id"]]["role"] == "pos"
    assert by_id[issued[3]["key_id"]]["name"] == "client 3"
    assert all(k["created_at"] for k in listed)
    # keyset pages: 2, 2, 2, then nothing
    pages, after = [], None
    while True:
        params = {"limit": 2, **({"after": after} if after else {})}
        page = (await network.get("/v1/api-keys", params=params, headers=ADMIN)).json()
        if not page:
            break
        pages.append([k["key_id"] for k in page])
        after = page[-1]["key_id"]
    assert [len(p) for p in pages] == [2, 2, 2]
    assert sum(pages, []) == [k["key_id"] for k in listed]


async def test_a_retried_key_creation_never_shows_or_stores_the_secret_again(network, db):
    first = await issue(network, {"role": "checkout", "name": "till"}, **{"Idempotency-Key": "new-key-1"})
    r = await network.post(
        "/v1/api-keys", json={"role": "checkout", "name": "till"}, headers={**ADMIN, "Idempotency-Key": "new-key-1"}
    )
    body = assert_problem(r, 409)
    assert body["key_id"] == first["key_id"], body
    assert first["key"] not in r.text
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM api_keys") == 1, "a retry created a second key"
        stored = await conn.fetch("SELECT t::text AS t, response FROM idempotency_keys t")
    assert stored, "the Idempotency-Key was not recorded"
    assert all(first["key"] not in row["t"] and first["key"].encode() not in bytes(row["response"]) for row in stored)
    assert all(first["key"].removeprefix("omr_") not in row["t"] for row in stored)
    # another body with the same Idempotency-Key is the usual mismatch
    r = await network.post("/v1/api-keys", json={"role": "planner"}, headers={**ADMIN, "Idempotency-Key": "new-key-1"})
    assert_problem(r, 409)
    assert await stock_status(network, first) == 200


async def test_the_key_cache_rechecks_a_key_within_its_lifetime(db):
    """The bound for other processes, on a fake clock: a key revoked elsewhere is accepted
    from the cache until exactly `ttl` seconds after it was last looked up, then refused."""
    async with db.acquire() as conn:
        await key_store.insert_key(conn, key_id="key_elsewhere", key_hash=_digest("omr_x"), role="planner",
                                   location_id=None, name=None)  # fmt: skip
    now = [100.0]
    ring = KeyRing(db, None, ttl=5.0, clock=lambda: now[0])
    assert (await ring.authenticate("omr_x")).key_id == "key_elsewhere"
    async with db.acquire() as conn:
        assert await key_store.revoke(conn, "key_elsewhere") is not None  # another process revokes it
    now[0] = 104.99
    assert (await ring.authenticate("omr_x")).role is Role.PLANNER  # still cached
    now[0] = 105.0
    with pytest.raises(Unauthorized):
        await ring.authenticate("omr_x")
    # an unknown key is cached as unknown for the same time, then looked up again
    with pytest.raises(Unauthorized):
        await ring.authenticate("omr_later")
    async with db.acquire() as conn:
        await key_store.insert_key(conn, key_id="key_later", key_hash=_digest("omr_later"), role="admin",
                                   location_id=None, name=None)  # fmt: skip
    now[0] = 110.0
    assert (await ring.authenticate("omr_later")) == Caller(key_id="key_later", role=Role.ADMIN)


def _digest(token: str) -> bytes:
    from engine.services.keys import digest

    return digest(token)


async def test_a_key_revoked_by_one_process_is_refused_by_another_within_the_cache_lifetime(network, db, database_url):
    ttl = 0.5
    async with service(database_url, OMNIROUTE_KEY_CACHE_SECONDS=str(ttl)) as other:
        key = await issue(network, {"role": "checkout"})
        assert await stock_status(other, key) == 200  # the other process caches it as valid
        assert (await network.delete(f"/v1/api-keys/{key['key_id']}", headers=ADMIN)).status_code == 204
        assert await stock_status(network, key) == 401  # this process: at once
        await asyncio.sleep(ttl + 0.05)
        assert await stock_status(other, key) == 401  # the other: within the bound


async def test_no_secret_appears_in_any_log_line(network, db, caplog):
    """Keys are created, used, mistyped, revoked and reused while every logger records at
    DEBUG; neither a secret nor its random part is in any formatted log line."""
    caplog.set_level(logging.DEBUG)
    secrets_seen: list[str] = []
    key = await issue(network, {"role": "admin", "name": "ops"}, **{"Idempotency-Key": "log-1"})
    secrets_seen.append(key["key"])
    assert await stock_status(network, key) == 200
    wrong = {"key": key["key"][:-1] + ("A" if key["key"][-1] != "A" else "B")}
    secrets_seen.append(wrong["key"])
    assert await stock_status(network, wrong) == 401
    for header in (key["key"], f"Basic {key['key']}", f"Bearer {key['key']} extra"):
        r = await network.get("/v1/stock", params={"sku": "SKU-A"}, headers={"Authorization": header})
        assert r.status_code in (200, 401)
    r = await network.post("/v1/api-keys", json={"role": key["key"]}, headers=bearer(key))
    assert_problem(r, 400, "role")
    r = await network.get("/v1/stock", params={"sku": key["key"]}, headers=bearer(key))
    assert_problem(r, 422, "sku")
    r = await network.post("/v1/api-keys", json={"role": "checkout"}, headers={**ADMIN, "Idempotency-Key": "log-1"})
    assert_problem(r, 409)
    assert (await network.delete(f"/v1/api-keys/{key['key_id']}", headers=bearer(key))).status_code == 204
    assert await stock_status(network, key) == 401
    # the service's own lines (the test client logs the URLs it requests; it is not the service)
    records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert len(records) >= 10, "too little was logged: the check would prove nothing"
    formatter = JsonFormatter()
    text = "\n".join(formatter.format(record) for record in records)
    assert "omniroute.access" in text and "/v1/api-keys" in text
    for secret in secrets_seen:
        assert secret not in text
        assert secret.removeprefix("omr_") not in text
