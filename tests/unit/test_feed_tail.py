"""The tail's hand-off rule: the publisher's batch and a refresh's page may overlap."""

from datetime import UTC, datetime

import msgspec

from engine.services.feed import Feed
from engine.store.events import Event


def _events(*seqs: int) -> list[Event]:
    at = datetime.now(UTC)
    return [
        Event(seq=s, kind="stock", sku=f"SKU-{s}", location_id="L", created_at=at, payload=msgspec.Raw(b"{}"))
        for s in seqs
    ]


def test_a_refresh_that_overlaps_the_publishers_hand_off_adds_each_event_once():
    feed = Feed(None, "postgresql://unused")  # type: ignore[arg-type]
    heard: list[int] = []
    feed.listeners.append(lambda events: heard.extend(e.seq for e in events))
    feed._append(_events(1, 2, 3), 3, "hand-off")  # the publisher's batch
    # A refresh whose snapshot was taken before the hand-off reads 2..5 (seq 4 and 5 were
    # published after it): only 4 and 5 are new.
    assert feed._take(_events(2, 3, 4, 5), 5, "read")
    assert feed._seqs == [1, 2, 3, 4, 5]
    assert heard == [1, 2, 3, 4, 5]
    assert feed.head == 5
    # A page entirely at or below the head adds nothing and does not move it.
    assert not feed._take(_events(4, 5), 5, "read")
    assert feed._seqs == [1, 2, 3, 4, 5] and heard == [1, 2, 3, 4, 5]


def test_a_batch_moves_the_head_to_its_high_water_mark_even_past_its_last_event():
    feed = Feed(None, "postgresql://unused")  # type: ignore[arg-type]
    feed._append(_events(1, 2), 4, "hand-off")  # numbers 3 and 4 were burnt (a failed publish)
    assert feed.head == 4
    assert feed._take(_events(5), 5, "read")
    assert feed._seqs == [1, 2, 5]
