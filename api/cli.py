"""`omniroute`: serve, migrate, check, fixtures, db."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys

from engine.config import Settings
from engine.embedded import EmbeddedUnavailable


def _stop_on_sigterm(signum: int, frame: object) -> None:
    # Raised out of uvicorn.run (which re-raises the signal after draining), so the
    # `finally` below still stops the embedded server.
    raise SystemExit(0)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.observability import configure_logging
    from api.workers import Workers, spreads_connections
    from engine.services import setup
    from engine.services.feed import PublisherThread

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    url, pg = setup.resolve_database(settings)
    publisher = None
    try:
        if pg is not None:
            asyncio.run(setup.ensure_database(pg))
        asyncio.run(setup.apply_migrations(url))
        demo = asyncio.run(setup.ensure_demo(url, settings.data_dir)) if pg is not None else {}
        _banner(args, url, pg is not None, demo, settings)
        os.environ["OMNIROUTE_DATABASE_URL"] = url  # inherited by uvicorn's worker processes
        if args.workers > 1:
            # The supervisor serves no requests: its change-feed publisher never waits behind
            # a busy event loop. It stands before the workers start, so it is elected; the
            # workers follow it through its notifications, and stay candidates in case it dies.
            publisher = PublisherThread(url, interval=settings.events_publish_ms / 1000)
            publisher.start()
        options = {
            "factory": True,
            "host": args.host,
            "port": args.port,
            "workers": args.workers,
            "log_config": None,
            "access_log": False,
            "timeout_graceful_shutdown": 30,
        }
        if args.workers > 1 and spreads_connections():
            # A listening socket per worker: new connections spread evenly (api.workers).
            Workers(uvicorn.Config("api.asgi:app_factory", **options)).run()
        else:
            uvicorn.run("api.asgi:app_factory", **options)
    finally:
        if publisher is not None:
            publisher.stop()
        if pg is not None:
            pg.stop()
    return 0


def _banner(args: argparse.Namespace, url: str, embedded: bool, demo: dict, settings: Settings) -> None:
    base = f"http://{args.host}:{args.port}"
    lines = [
        "",
        f"Omniroute is starting on {base}",
        f"  API docs:  {base}/schema   (OpenAPI JSON: {base}/schema/openapi.json)",
        "  database:  "
        + (f"embedded PostgreSQL, data in {settings.data_dir}" if embedded else "OMNIROUTE_DATABASE_URL"),
    ]
    if demo:
        lines.append("  demo API keys (also in %s):" % (settings.data_dir / "demo-keys.json"))
        for role, key in demo.items():
            where = f" at {key['location_id']}" if key.get("location_id") else ""
            lines.append(f"    {role:<9} {key['key']}{where}")
        lines.append(
            f"  try: curl -H 'Authorization: Bearer {demo['checkout']['key']}' "
            f"'{base}/v1/availability?sku=SKU-00001&lat=40.71&lon=-74.01&radius_km=50'"
        )
    if settings.bootstrap_admin_key:
        lines.append("  OMNIROUTE_BOOTSTRAP_ADMIN_KEY is set: that value is an admin key")
    print("\n".join(lines) + "\n", flush=True)


def _with_database(fn):  # type: ignore[no-untyped-def]
    """Run `fn(url)` against the configured database, starting the embedded one if needed
    (and stopping it afterwards only if this command started it)."""
    from engine.services import setup

    settings = Settings.from_env()
    url, pg = setup.resolve_database(settings)
    try:
        if pg is not None:
            asyncio.run(setup.ensure_database(pg))
        return fn(url)
    finally:
        if pg is not None and pg.started_by_us:
            pg.stop()


def _migrate(args: argparse.Namespace) -> int:
    from engine.services import setup

    applied = _with_database(lambda url: asyncio.run(setup.apply_migrations(url)))
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def _check(args: argparse.Namespace) -> int:
    from engine.services.stock import check_ledger
    from engine.store.db import create_pool

    async def run(url: str) -> tuple[int, int, list[dict]]:
        pool = await create_pool(url, min_size=1, max_size=1)
        try:
            return await check_ledger(pool, limit=args.limit)
        finally:
            await pool.close()

    checked, drifted, sample = _with_database(lambda url: asyncio.run(run(url)))
    print(json.dumps({"positions_checked": checked, "drifted": drifted, "sample": sample}, indent=2, default=str))
    return 1 if drifted else 0


def _fixtures(args: argparse.Namespace) -> int:
    from engine.services import fixtures, setup

    def run(url: str) -> dict:
        asyncio.run(setup.apply_migrations(url))
        return asyncio.run(fixtures.load(url, args.size, show_progress=not args.quiet))

    result = _with_database(run)
    print(json.dumps(result, indent=2, default=str))
    return 0


def _db(args: argparse.Namespace) -> int:
    from engine.services import setup

    settings = Settings.from_env()
    if settings.database_url:
        print("OMNIROUTE_DATABASE_URL is set; no embedded server to manage", file=sys.stderr)
        return 2
    if args.action == "stop":
        from engine.embedded import EmbeddedPostgres

        EmbeddedPostgres(settings.data_dir).stop()
        return 0
    _, pg = setup.resolve_database(settings)
    assert pg is not None
    asyncio.run(setup.ensure_database(pg))
    asyncio.run(setup.apply_migrations(pg.url(setup.DATABASE)))
    print(pg.url(setup.DATABASE))
    return 0


def _demo_keys(args: argparse.Namespace) -> int:
    from engine.services.setup import DEMO_KEYS_FILE

    path = Settings.from_env().data_dir / DEMO_KEYS_FILE
    if not path.exists():
        print(f"no demo keys at {path}: run `omniroute serve` (embedded mode) once first", file=sys.stderr)
        return 2
    keys = json.loads(path.read_text())
    print(keys[args.role]["key"] if args.role else json.dumps(keys, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="omniroute", description="Retail order and inventory orchestration.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service (embedded PostgreSQL unless OMNIROUTE_DATABASE_URL)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(fn=_serve)

    sub.add_parser("migrate", help="apply pending migrations").set_defaults(fn=_migrate)

    check = sub.add_parser("check", help="re-sum the ledger; exit 1 if any position drifted")
    check.add_argument("--limit", type=int, default=20, help="drifted positions to print")
    check.set_defaults(fn=_check)

    fx = sub.add_parser("fixtures", help="load a generated network into an empty database")
    fx_sub = fx.add_subparsers(dest="action", required=True)
    load = fx_sub.add_parser("load")
    load.add_argument(
        "--size",
        choices=["demo", "large"],
        default="demo",
        help="demo: ~110 locations x 2,000 SKUs; large: 200 x 50,000 = 10M positions",
    )
    load.add_argument("--quiet", action="store_true")
    load.set_defaults(fn=_fixtures)

    db = sub.add_parser("db", help="start (and print the URL of) or stop the embedded PostgreSQL")
    db.add_argument("action", choices=["start", "stop"])
    db.set_defaults(fn=_db)

    demo = sub.add_parser("demo-keys", help="print the demo API keys made by the first embedded start")
    demo.add_argument("role", nargs="?", choices=["admin", "checkout", "pos", "planner"])
    demo.set_defaults(fn=_demo_keys)

    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except EmbeddedUnavailable as exc:
        print(f"omniroute: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
