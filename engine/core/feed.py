"""Change-feed rules: which events a consumer asked for, where it resumes, when it must resync."""

from __future__ import annotations

import msgspec

from engine.errors import Gone

# `reload`: too much changed at once to send one event each (a bulk load); re-read the state.
KINDS = ("stock", "reservation", "order", "fulfillment", "discrepancy", "reload")
RELOAD = "reload"


class Filter(msgspec.Struct, frozen=True, kw_only=True):
    """What a consumer wants; None means "any". A `reload` event matches every filter: a
    consumer that keeps a copy of some positions must hear that it has to re-read them."""

    kinds: frozenset[str] | None = None
    skus: frozenset[str] | None = None
    locations: frozenset[str] | None = None

    def matches(self, kind: str, sku: str | None, location_id: str | None) -> bool:
        if kind == RELOAD:
            return True
        return (
            (self.kinds is None or kind in self.kinds)
            and (self.skus is None or sku in self.skus)
            and (self.locations is None or location_id in self.locations)
        )


def make_filter(kinds: list[str] | None, skus: list[str] | None, locations: list[str] | None) -> Filter:
    return Filter(
        kinds=frozenset(kinds) if kinds else None,
        skus=frozenset(skus) if skus else None,
        locations=frozenset(locations) if locations else None,
    )


def resume_from(after: int | None, last_event_id: int | None) -> int | None:
    """The cursor to resume from. `Last-Event-ID` wins over `after`: a browser's EventSource
    reconnects to the URL it first opened (with its original `after`) and adds the header,
    so the header is the later position. None: start at the newest event."""
    return last_event_id if last_event_id is not None else after


def check_cursor(after: int, published_through: int, purged_through: int) -> None:
    """A cursor is good if nothing after it was purged and it is not ahead of the feed.

    Events up to `purged_through` are gone: a consumer behind that point may have missed
    some, and must resync (read the state again, then follow from a fresh cursor). A cursor
    ahead of the newest event was never handed out by this feed (another database, or one
    restored from a backup): following it would silently skip events, so it is refused too.
    """
    if after < purged_through:
        raise Gone(
            f"events after {after} are no longer kept (purged through {purged_through}); "
            "read the current state again and follow the feed from a fresh cursor",
            after=after,
            oldest_after=purged_through,
        )
    if after > published_through:
        raise Gone(
            f"cursor {after} is ahead of the newest event ({published_through}): it does not come from this feed; "
            "read the current state again and follow the feed from a fresh cursor",
            after=after,
            newest=published_through,
        )
