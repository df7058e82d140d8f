"""The Litestar application: routes, dependencies, errors, OpenAPI, lifespan."""

from __future__ import annotations

import asyncio
import gc
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from litestar import Litestar, Response, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import Receive, Scope, Send

from api.deps import api_key_authentication, provide_pool
from api.errors import EXCEPTION_HANDLERS, problem
from api.observability import request_middleware
from api.query import query_rules, strict_query
from api.ratelimit import RateLimiter
from api.routes import availability as availability_routes
from api.routes.availability import AvailabilityController
from api.routes.catalog import ItemController, LocationController
from api.routes.events import EventController
from api.routes.keys import ApiKeyController
from api.routes.ops import OpsController
from api.routes.orders import OrderController
from api.routes.planner import DemandController, RebalancingRunController, RoutingRunController, TransferController
from api.routes.reservations import ReservationController
from api.routes.stock import StockController
from api.scheduler import start_scheduler
from engine.config import Settings, load_costs
from engine.services import runs
from engine.services.availability import AvailabilityView
from engine.services.feed import Feed
from engine.services.group_commit import ReservationGroups
from engine.services.keys import KeyRing
from engine.services.reads import Reads
from engine.store.db import create_pool

MAX_BODY_BYTES = 1_000_000


def _docs_not_found(response: Response) -> Response:
    """Litestar answers an unknown page under /schema with an HTML 404; every error here is a problem."""
    if response.status_code == 404:
        return problem(404, "Not found", "no such page of the API documentation", type_="/problems/not-found")
    return response


class Omniroute(Litestar):
    """Litestar, with checkout's hottest call (GET /v1/availability) taken on a shortcut that
    hands anything out of the ordinary back to Litestar (api.routes.availability.shortcut)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"] == availability_routes.PATH
            and await availability_routes.shortcut(self, scope, send)
        ):
            return
        await super().__call__(scope, receive, send)


def create_app(database_url: str, settings: Settings | None = None) -> Omniroute:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await create_pool(database_url, min_size=settings.pool_min, max_size=settings.pool_max)
        app.state.pool = pool
        replica = None
        if settings.read_database_url:
            # No connection at start: a replica that is down must not stop the service.
            replica = await create_pool(settings.read_database_url, min_size=0, max_size=settings.pool_max)
        app.state.reads = Reads(pool, replica, max_lag_s=settings.read_max_lag_seconds)
        app.state.reads.start()
        app.state.keyring = KeyRing(pool, settings.bootstrap_admin_key, ttl=settings.key_cache_seconds)
        app.state.rate_limiter = (
            RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
            if settings.rate_limit_per_second > 0
            else None
        )
        app.state.reservation_groups = ReservationGroups(pool)
        app.state.costs = load_costs(settings)
        app.state.settings = settings
        app.state.query_rules = query_rules(app)
        feed = app.state.feed = Feed(
            pool,
            database_url,
            publish_interval=settings.events_publish_ms / 1000,
            keepalive=settings.events_keepalive_seconds,
        )
        await feed.start()
        view = app.state.availability = (
            AvailabilityView(app.state.reads, feed, max_skus=settings.availability_cache_skus)
            if settings.availability_cache_skus > 0
            else None
        )
        if view is not None:
            await view.start()
        restore_signals = _end_streams_on_exit_signals(feed)
        scheduler = start_scheduler(pool, settings, app.state.costs) if settings.scheduler else None
        _settle_heap()
        try:
            yield
        finally:
            restore_signals()
            if scheduler is not None:
                scheduler.shutdown(wait=False)
            if view is not None:
                await view.stop()
            await feed.stop()
            await runs.stop_all()
            await app.state.reads.close()
            await pool.close()

    return Omniroute(
        route_handlers=[
            OpsController,
            LocationController,
            ItemController,
            StockController,
            AvailabilityController,
            ApiKeyController,
            ReservationController,
            EventController,
            OrderController,
            RoutingRunController,
            DemandController,
            RebalancingRunController,
            TransferController,
        ],
        dependencies={"pool": Provide(provide_pool, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        middleware=[request_middleware, api_key_authentication, strict_query],
        lifespan=[lifespan],
        request_max_body_size=MAX_BODY_BYTES,
        logging_config=None,  # api.observability configures JSON logs
        openapi_config=OpenAPIConfig(
            title="Omniroute",
            version="1",
            description="Retail order and inventory orchestration.",
            path="/schema",
            openapi_router=Router("/schema", route_handlers=[], include_in_schema=False, after_request=_docs_not_found),
            render_plugins=[SwaggerRenderPlugin(path="/"), JsonRenderPlugin(path="/openapi.json")],
            components=Components(security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}),
            security=[{"bearer": []}],
        ),
    )


def _settle_heap() -> None:
    """Put what start-up built (modules, routes, schemas, the pools: some 80,000 objects)
    out of the garbage collector's way. A full collection then walks only what came after,
    instead of stalling the event loop 40 ms or more (over 150 ms on a busy machine) for
    objects that live as long as the process."""
    gc.collect()
    gc.freeze()


def _end_streams_on_exit_signals(feed: Feed) -> Callable[[], None]:
    """End open event streams as soon as SIGINT or SIGTERM arrives.

    uvicorn waits for open requests to finish before it runs the lifespan shutdown, and an
    event stream never finishes by itself, so shutdown would wait out its graceful timeout.
    The handlers uvicorn installed are wrapped (and put back at shutdown): streams end
    first, then uvicorn handles the signal as before. Returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if not callable(handler):
            continue

        def on_signal(signum: int, frame: object, handler: Callable = handler) -> None:
            loop.call_soon_threadsafe(feed.end_streams)
            handler(signum, frame)

        previous[sig] = handler
        signal.signal(sig, on_signal)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
