"""GET /v1/events: the change feed, as server-sent events or as long-poll JSON pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, Response, get
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import Stream

from api.deps import AuthRequest
from api.errors import engine_problem, problems
from api.observability import EVENT_STREAMS
from api.schemas import EventFilterIn, EventKind
from engine.core.feed import KINDS, Filter, make_filter, resume_from
from engine.errors import Gone
from engine.services.feed import MAX_SEQ, Feed, FeedEvent, KeepAlive

SSE = "text/event-stream"
RETRY_MS = 1000  # how soon an EventSource reconnects after the stream ends
_encoder = msgspec.json.Encoder()


class EventOut(msgspec.Struct, kw_only=True):
    """One event. `seq` is its id in the feed (strictly increasing, with gaps); `created_at`
    is when the change was written, just before its commit."""

    seq: int
    kind: str
    sku: str | None
    location_id: str | None
    created_at: datetime
    payload: dict


class EventPage(msgspec.Struct, kw_only=True):
    """`next_after`: pass it as `after` in the next call (it may lie past the last event
    when the filters skipped what follows)."""

    events: list[EventOut]
    next_after: int


class _EncodedPage(msgspec.Struct):
    events: list[msgspec.Raw]
    next_after: int


class EventController(Controller):
    path = "/v1/events"
    tags = ["events"]

    @get(
        "/",
        operation_id="readEvents",
        responses=problems(400, 410),
        description=(
            "The change feed. With `Accept: text/event-stream`, a stream of server-sent events "
            "(`id` = seq, `event` = kind, `data` = the event as JSON) that resumes with `Last-Event-ID`; "
            "otherwise a long-poll page that answers as soon as one event matches, or empty after `timeout`. "
            "`Last-Event-ID` wins over `after`; with neither, the feed starts at the newest event. A cursor "
            "older than what is retained, or ahead of the feed, is a 410: read the state again, then follow."
        ),
    )
    async def read(
        self,
        request: AuthRequest,
        after: Annotated[
            int | None, QueryParameter(ge=0, le=MAX_SEQ, description="resume after this seq (exclusive)")
        ] = None,
        kind: Annotated[
            list[EventKind] | None, QueryParameter(max_items=len(KINDS), description="repeatable: only these kinds")
        ] = None,
        sku: Annotated[list[str] | None, QueryParameter(description="repeatable: only events of these SKUs")] = None,
        location_id: Annotated[
            list[str] | None, QueryParameter(description="repeatable: only events at these locations")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000, description="long poll: events per page")] = 100,
        timeout: Annotated[  # noqa: ASYNC109 - the query parameter's name, as callers spell it in errors too
            float, QueryParameter(ge=0, le=60, description="long poll: seconds to wait for a first event")
        ] = 20.0,
        last_event_id: Annotated[
            str | None, HeaderParameter(name="Last-Event-ID", pattern=r"^[0-9]{1,18}$", required=False)
        ] = None,
    ) -> Response[EventPage]:
        filters = msgspec.convert({"kind": kind, "sku": sku, "location_id": location_id}, EventFilterIn)
        flt = make_filter(filters.kind, filters.sku, filters.location_id)
        cursor = resume_from(after, int(last_event_id) if last_event_id is not None else None)
        feed: Feed = request.app.state.feed
        if SSE in request.headers.get("accept", ""):
            if cursor is not None:
                await feed.check(cursor)  # a bad cursor is a 410 problem, not a stream
            return Stream(
                _sse(feed, cursor, flt),
                media_type=SSE,
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        events, next_after = await feed.poll(cursor, flt, limit=limit, wait=timeout)
        body = _encoder.encode(_EncodedPage([msgspec.Raw(e.data) for e in events], next_after))
        return Response(body, media_type="application/json")


def _event_frame(event: FeedEvent) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.seq, event.kind.encode(), event.data)


async def _sse(feed: Feed, cursor: int | None, flt: Filter) -> AsyncIterator[bytes]:
    """SSE frames: one chunk per batch of events; a comment as keep-alive, with an `id:` line
    (no data, so no event fires) when the cursor moved past events the filter skipped.

    Framed here rather than with litestar's ServerSentEvent, which sends one ASGI message per
    event and would wrap each event's pre-encoded JSON again: a batch goes out as one write."""
    EVENT_STREAMS.inc()
    first = True
    try:
        async for item in feed.stream(cursor, flt):
            if isinstance(item, KeepAlive):
                frame = b"retry: %d\n" % RETRY_MS if first else b": keep-alive\n"
                if item.cursor is not None:
                    frame += b"id: %d\n" % item.cursor
                yield frame + b"\n"
                first = False
            else:
                yield b"".join(_event_frame(e) for e in item)
    except Gone as exc:  # purged under a consumer that fell that far behind: it must resync
        yield b"event: gone\ndata: %s\n\n" % _encoder.encode(engine_problem(exc))
    finally:
        EVENT_STREAMS.dec()
