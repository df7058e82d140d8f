"""The change feed: publishing outbox rows, reading pages of the feed, purging old events.

Writers append to `events` in their own transactions (triggers in migrations/0005, and
`record`). Only the publisher gives an event its public number `seq`; readers page by
`seq` and never look at unpublished rows.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

CHANNEL = "omniroute_events"  # one NOTIFY per published batch, never one per write


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """A published event as readers get it; `payload` is the stored JSON, passed through."""

    seq: int
    kind: str
    sku: str | None
    location_id: str | None
    created_at: datetime
    payload: msgspec.Raw


class Page(msgspec.Struct, frozen=True, kw_only=True):
    """Events after a cursor, and the feed's bounds in the same snapshot.

    `scanned_through`: every event with seq <= it that matches was returned (or was before
    the cursor), so the next page starts there even when no event matched.
    """

    events: list[Event]
    scanned_through: int
    published_through: int
    purged_through: int


async def record(conn: asyncpg.Connection, events: list[tuple[str, str | None, str | None, dict]]) -> None:
    """Append (kind, sku, location_id, payload) rows to the outbox, in the caller's transaction."""
    if not events:
        return
    await conn.execute(
        """INSERT INTO events (kind, sku, location_id, payload)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[])""",
        [e[0] for e in events],
        [e[1] for e in events],
        [e[2] for e in events],
        [e[3] for e in events],
    )


class Published(msgspec.Struct, frozen=True, kw_only=True):
    """What one `publish` call numbered: `events` in seq order, every event published with
    seq in (previous, head]; `previous` is the feed's high-water mark before the call."""

    events: list[Event]
    previous: int
    head: int


def _event(r: asyncpg.Record) -> Event:
    return Event(
        seq=r["seq"],
        kind=r["kind"],
        sku=r["sku"],
        location_id=r["location_id"],
        created_at=r["created_at"],
        payload=msgspec.Raw(r["payload"].encode()),
    )


# A notification carries the batch itself when it fits: events in chunks of about
# NOTICE_CHUNK bytes (each notification must stay under PostgreSQL's 8000), unless one
# event is wider than NOTICE_WIDEST or the batch larger than NOTICE_TOTAL; then only the
# high-water mark goes, and listeners read the batch back.
NOTICE_CHUNK = 6_000
NOTICE_WIDEST = 1_500
NOTICE_TOTAL = 64_000


async def publish(conn: asyncpg.Connection, limit: int) -> Published:
    """Number up to `limit` committed, unpublished events in event_id order, in one statement
    (its own transaction), and return them, so that the publisher's own process holds them
    without reading them back.

    Correct only while one connection at a time calls it (the publisher's advisory lock):
    each call starts after the previous one committed, so it hands out larger numbers than
    every event already visible. When it numbers anything it notifies CHANNEL, delivered
    at its commit: with the batch itself in one or a few notifications (see `notice`), or,
    for a batch too large for that, with one notification of the new high-water mark.
    Either way one publishing transaction, never one per write.
    """
    rows = await conn.fetch(
        """WITH before AS (
               SELECT published_through FROM event_feed
           ),
           todo AS (
               SELECT event_id, nextval('event_seq') AS seq
               FROM (SELECT event_id FROM events WHERE seq IS NULL ORDER BY event_id LIMIT $1) oldest
           ),
           done AS (
               UPDATE events e SET seq = t.seq, published_at = clock_timestamp()
               FROM todo t WHERE e.event_id = t.event_id
               RETURNING e.seq, e.kind, e.sku, e.location_id, e.created_at, e.payload
           ),
           feed AS (
               UPDATE event_feed SET published_through = (SELECT max(seq) FROM done)
               WHERE EXISTS (SELECT 1 FROM done)
               RETURNING published_through
           ),
           wire AS (
               SELECT seq, octet_length(item) AS width, item
               FROM (SELECT seq, json_build_object(
                         'seq', seq, 'kind', kind, 'sku', sku, 'location_id', location_id,
                         'created_at', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                         'payload', payload)::text AS item
                     FROM done) d
           ),
           sized AS (
               SELECT seq, item, sum(width) OVER (ORDER BY seq) - width AS at,
                      max(width) OVER () AS widest, sum(width) OVER () AS total
               FROM wire
           ),
           chunks AS (
               SELECT at / $3 AS chunk, max(seq) AS head, string_agg(item, ',' ORDER BY seq) AS items
               FROM sized WHERE widest <= $4 AND total <= $5
               GROUP BY 1
           ),
           notices AS (
               SELECT chunk, format('[%s,%s,[%s]]',
                                    coalesce(lag(head) OVER (ORDER BY chunk), (SELECT published_through FROM before)),
                                    head, items) AS payload
               FROM chunks
               UNION ALL
               SELECT 0, (SELECT published_through FROM feed)::text
               WHERE EXISTS (SELECT 1 FROM done) AND NOT EXISTS (SELECT 1 FROM chunks)
           ),
           notified AS (
               SELECT pg_notify($2, payload) AS sent
               FROM (SELECT payload FROM notices ORDER BY chunk OFFSET 0) n
           )
           SELECT b.published_through AS previous,
                  coalesce((SELECT published_through FROM feed), b.published_through) AS head,
                  (SELECT count(*) FROM notified) AS notified,
                  d.seq, d.kind, d.sku, d.location_id, d.created_at, d.payload::text AS payload
           FROM before b LEFT JOIN done d ON true
           ORDER BY d.seq""",
        limit,
        CHANNEL,
        NOTICE_CHUNK,
        NOTICE_WIDEST,
        NOTICE_TOTAL,
    )
    first = rows[0]
    return Published(
        events=[_event(r) for r in rows if r["seq"] is not None],
        previous=first["previous"],
        head=first["head"],
    )


_notice = msgspec.json.Decoder(tuple[int, int, list[Event]])


def notice_head(payload: str) -> int:
    """The high-water mark a notification on CHANNEL names, read without decoding the
    events it may carry (`[previous,head,[...]]`, or the mark alone). Raises ValueError on
    a payload it does not understand."""
    if payload.isdigit():
        return int(payload)
    parts = payload[1:].split(",", 2)
    if payload[:1] != "[" or len(parts) < 3:
        raise ValueError("not a change feed notification")
    return int(parts[1])


def notice(payload: str) -> Published | int:
    """What a notification on CHANNEL says: the published batch (every event with seq in
    (previous, head], as `page` would return them), or, when the batch did not fit, only the
    new high-water mark. Raises ValueError on a payload it does not understand."""
    if payload.isdigit():
        return int(payload)
    try:
        previous, head, events = _notice.decode(payload)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a change feed notification: {exc}") from None
    return Published(events=events, previous=previous, head=head)


async def bounds(conn: asyncpg.Connection) -> tuple[int, int]:
    """(published_through, purged_through)."""
    row = await conn.fetchrow("SELECT published_through, purged_through FROM event_feed")
    return row["published_through"], row["purged_through"]


# `LIMIT 1` tells the planner that event_feed has one row: estimated as a table of
# unknown size it made the plan look costly enough for JIT, which took 150 ms per call.
_PAGE_SQL = """
SELECT f.published_through, f.purged_through, least(f.published_through, $3) AS window_end,
       e.seq, e.kind, e.sku, e.location_id, e.created_at, e.payload::text AS payload
FROM (SELECT published_through, purged_through FROM event_feed LIMIT 1) f
LEFT JOIN LATERAL (
    SELECT seq, kind, sku, location_id, created_at, payload FROM events
    WHERE seq > $2 AND seq <= least(f.published_through, $3)
      AND (kind = 'reload' OR (($4::text[] IS NULL OR kind = ANY($4))
                               AND ($5::text[] IS NULL OR sku = ANY($5))
                               AND ($6::text[] IS NULL OR location_id = ANY($6))))
    ORDER BY seq
    LIMIT $1
) e ON true
ORDER BY e.seq
"""


async def page(
    conn: asyncpg.Connection,
    after: int,
    *,
    limit: int,
    upto: int,
    kinds: list[str] | None = None,
    skus: list[str] | None = None,
    locations: list[str] | None = None,
) -> Page:
    """Up to `limit` published events with seq > `after` that match the filters (a `reload`
    event matches every filter), in seq order, looking no further than seq `upto` so that
    a rare filter never walks the whole feed in one statement. One statement, so the events
    and the bounds come from one snapshot.
    """
    rows = await conn.fetch(_PAGE_SQL, limit, after, upto, kinds, skus, locations)
    head = rows[0]
    events = [_event(r) for r in rows if r["seq"] is not None]
    scanned = events[-1].seq if len(events) == limit else max(after, head["window_end"])
    return Page(
        events=events,
        scanned_through=scanned,
        published_through=head["published_through"],
        purged_through=head["purged_through"],
    )


async def purge(conn: asyncpg.Connection, *, hours: float, limit: int) -> int:
    """Delete up to `limit` of the oldest published events, as a prefix in seq order that
    stops at the first event published less than `hours` ago (database clock), and raise
    purged_through to the last seq deleted. Returns how many were deleted."""
    return await conn.fetchval(
        """WITH oldest AS (
               SELECT seq, published_at FROM events WHERE seq IS NOT NULL ORDER BY seq LIMIT $1
           ),
           keep_from AS (
               SELECT min(seq) AS seq FROM oldest WHERE published_at >= now() - make_interval(secs => $2 * 3600)
           ),
           gone AS (
               DELETE FROM events e USING oldest o
               WHERE e.seq = o.seq AND e.seq IS NOT NULL
                 AND o.seq < coalesce((SELECT seq FROM keep_from), 9223372036854775807)
               RETURNING e.seq
           ),
           feed AS (
               UPDATE event_feed SET purged_through = greatest(purged_through, (SELECT max(seq) FROM gone))
               WHERE EXISTS (SELECT 1 FROM gone)
           )
           SELECT count(*) FROM gone""",
        limit,
        hours,
    )


async def record_reload(conn: asyncpg.Connection, payload: dict) -> None:
    """One `reload` event: consumers must re-read state (a bulk load changed too many
    positions to send one event each)."""
    await record(conn, [("reload", None, None, payload)])
