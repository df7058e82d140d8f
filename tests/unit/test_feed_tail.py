"""The tail's hand-off rule: the publisher's batch and a refresh's page may overlap."""

from datetime import UTC, datetime

import msgspec
import pytest

from engine.services.feed import Feed
from engine.store.events import Event, notice, notice_head


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


def test_a_notifications_head_is_read_without_decoding_its_events():
    event = '{"seq":5,"kind":"stock","sku":"A,B","location_id":"L","created_at":"2026-01-01T00:00:00Z","payload":{}}'
    carried = f"[4,6,[{event}]]"
    assert notice_head(carried) == 6 == notice(carried).head
    assert notice_head("17") == 17 == notice("17")
    for junk in ("", "x", "[1]", "{}", "[a,b,[]]"):
        with pytest.raises(ValueError):
            notice_head(junk)


def test_a_notification_already_held_is_not_decoded(monkeypatch):
    feed = Feed(None, "postgresql://unused")  # type: ignore[arg-type]
    feed._live = True
    feed._append(_events(1, 2), 2, "hand-off")
    decoded = []
    monkeypatch.setattr("engine.store.events.notice", lambda payload: decoded.append(payload))
    feed._on_notify(None, 0, "omniroute_events", '[0,2,[{"junk": true}]]')
    assert decoded == [] and feed.head == 2 and not feed._dirty.is_set()
