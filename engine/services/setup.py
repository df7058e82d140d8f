"""Bringing a database to a servable state: embedded server, database, migrations, demo."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import asyncpg

from engine.config import Settings
from engine.core.model import Caller, Role
from engine.embedded import EmbeddedPostgres
from engine.services import keys
from engine.store import meta
from engine.store.db import connect
from engine.store.migrate import migrate

log = logging.getLogger("omniroute.setup")

DATABASE = "omniroute"
DEMO_KEYS_FILE = "demo-keys.json"
SYSTEM = Caller(key_id="system", role=Role.ADMIN)


def resolve_database(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """The URL to use, starting the embedded server when no URL is configured."""
    if settings.database_url:
        return settings.database_url, None
    pg = EmbeddedPostgres(settings.data_dir)
    pg.start()
    return pg.url(DATABASE), pg


async def ensure_database(pg: EmbeddedPostgres) -> None:
    conn = await asyncpg.connect(pg.url("postgres"))
    try:
        await meta.ensure_database(conn, DATABASE)
    finally:
        await conn.close()


async def apply_migrations(url: str) -> list[str]:
    conn = await connect(url)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


async def ensure_demo(url: str, data_dir: Path) -> dict[str, dict]:
    """Load the demo network on first start and make sure demo keys exist.

    Keys are written to `data_dir/demo-keys.json` (mode 0600) so later starts can print
    them again; only their digests are in the database.
    """
    from engine.services import fixtures  # the generator is only needed here

    conn = await connect(url)
    try:
        if await meta.get_setting(conn, "network") is None and not await meta.has_locations(conn):
            log.info("first start: loading the demo network")
            await fixtures.load(url, "demo", show_progress=True)
        path = data_dir / DEMO_KEYS_FILE
        stored = json.loads(path.read_text()) if path.exists() else {}
        ids = [v["key_id"] for v in stored.values()]
        if stored and await meta.active_keys(conn, ids) == set(ids):
            return stored
        pos_store = await meta.first_store(conn)
        issued = {}
        async with conn.transaction():
            for role in Role:
                key = await keys.issue(
                    conn, SYSTEM, role, pos_store if role is Role.POS else None, f"demo {role.value}"
                )
                issued[role.value] = {"key_id": key.key_id, "key": key.key, "location_id": key.location_id}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(issued, f, indent=2)
        return issued
    finally:
        await conn.close()
