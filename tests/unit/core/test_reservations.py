from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from engine.core.model import Caller, Role
from engine.core.reservations import (
    MAX_TTL_SECONDS,
    Line,
    Reservation,
    Status,
    expiry,
    release_is_noop,
    require_access,
    require_active,
    validate_lines,
)
from engine.errors import BadInput, Conflict, Forbidden, NotFound

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def res(status=Status.ACTIVE, expires_in=60, owner="k1", loc="STORE-1") -> Reservation:
    return Reservation(
        reservation_id=uuid4(),
        owner=owner,
        reference=None,
        status=status,
        expires_at=NOW + timedelta(seconds=expires_in),
        created_at=NOW,
        lines=[Line(sku="A", location_id=loc, quantity=1)],
    )


def test_an_active_hold_past_its_expiry_is_expired_before_any_sweep():
    assert res(expires_in=-1).status_at(NOW) is Status.EXPIRED
    assert res(expires_in=0).status_at(NOW) is Status.EXPIRED
    assert res(expires_in=1).status_at(NOW) is Status.ACTIVE
    assert res(Status.COMMITTED, expires_in=-5).status_at(NOW) is Status.COMMITTED


def test_lines_come_back_in_the_global_lock_order():
    lines = [
        Line(sku="B", location_id="L1", quantity=1),
        Line(sku="A", location_id="L2", quantity=1),
        Line(sku="A", location_id="L1", quantity=1),
    ]
    assert [(x.sku, x.location_id) for x in validate_lines(lines)] == [("A", "L1"), ("A", "L2"), ("B", "L1")]


def test_two_lines_for_one_position_are_refused():
    with pytest.raises(BadInput):
        validate_lines([Line(sku="A", location_id="L", quantity=1), Line(sku="A", location_id="L", quantity=2)])


def test_ttl_is_bounded_to_seven_days():
    assert expiry(NOW, 900) == NOW + timedelta(minutes=15)
    assert expiry(NOW, MAX_TTL_SECONDS) == NOW + timedelta(days=7)
    for bad in (0, -1, MAX_TTL_SECONDS + 1):
        with pytest.raises(BadInput):
            expiry(NOW, bad)


def test_only_the_owner_or_an_admin_sees_a_reservation():
    r = res(owner="k1")
    assert require_access(Caller(key_id="k1", role=Role.CHECKOUT), r, r.reservation_id) is r
    assert require_access(Caller(key_id="root", role=Role.ADMIN), r, r.reservation_id) is r
    with pytest.raises(NotFound):
        require_access(Caller(key_id="k2", role=Role.CHECKOUT), r, r.reservation_id)
    with pytest.raises(NotFound):
        require_access(Caller(key_id="k1", role=Role.CHECKOUT), None, r.reservation_id)


def test_a_pos_key_acts_only_on_holds_at_its_own_store():
    r = res(owner="till", loc="STORE-2")
    with pytest.raises(Forbidden):
        require_access(Caller(key_id="till", role=Role.POS, location_id="STORE-1"), r, r.reservation_id)


@pytest.mark.parametrize("status", [Status.COMMITTED, Status.RELEASED, Status.EXPIRED])
def test_only_an_active_hold_can_be_committed(status):
    with pytest.raises(Conflict):
        require_active(res(status), NOW, "commit")


def test_an_expired_hold_cannot_be_committed_even_before_the_sweep():
    with pytest.raises(Conflict) as err:
        require_active(res(expires_in=-1), NOW, "commit")
    assert err.value.extra["reservation_status"] == "expired"


def test_releasing_twice_is_a_noop_and_releasing_a_sale_is_a_conflict():
    assert release_is_noop(res(Status.RELEASED), NOW)
    assert release_is_noop(res(Status.EXPIRED, expires_in=-1), NOW)
    assert not release_is_noop(res(), NOW)
    assert not release_is_noop(res(expires_in=-1), NOW)  # unswept: the lines still need releasing
    with pytest.raises(Conflict):
        release_is_noop(res(Status.COMMITTED), NOW)
