import pytest

from api.schemas import EventKind
from engine.core.feed import KINDS, Filter, check_cursor, make_filter, resume_from
from engine.errors import Gone


def test_no_filter_matches_everything():
    assert Filter().matches("stock", "A", "X") and Filter().matches("order", None, None)


def test_each_filter_narrows_and_they_combine():
    f = make_filter(["stock"], ["A", "B"], ["X"])
    assert f.matches("stock", "B", "X")
    assert not f.matches("stock", "C", "X")
    assert not f.matches("stock", "A", "Y")
    assert not f.matches("discrepancy", "A", "X")


def test_a_sku_filter_leaves_out_events_without_a_sku():
    assert not make_filter(None, ["A"], None).matches("reservation", None, None)


def test_a_reload_passes_every_filter():
    assert make_filter(["order"], ["A"], ["X"]).matches("reload", None, None)


def test_empty_lists_mean_no_filter():
    assert make_filter([], [], []) == Filter()


def test_last_event_id_wins_over_after():
    assert resume_from(10, 25) == 25
    assert resume_from(10, None) == 10
    assert resume_from(None, 0) == 0
    assert resume_from(None, None) is None


def test_a_cursor_inside_the_retained_feed_is_good():
    check_cursor(5, published_through=9, purged_through=5)
    check_cursor(9, published_through=9, purged_through=0)


def test_a_cursor_behind_the_purge_must_resync():
    with pytest.raises(Gone) as exc:
        check_cursor(4, published_through=9, purged_through=5)
    assert exc.value.status == 410 and exc.value.extra == {"after": 4, "oldest_after": 5}


def test_a_cursor_ahead_of_the_feed_is_refused():
    with pytest.raises(Gone) as exc:
        check_cursor(10, published_through=9, purged_through=0)
    assert exc.value.extra == {"after": 10, "newest": 9}


def test_the_api_accepts_exactly_the_kinds_the_engine_writes():
    assert set(EventKind.__args__) == set(KINDS)
