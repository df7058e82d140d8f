import pytest

from engine.core.access import require_locations, require_role
from engine.core.model import Caller, Role
from engine.errors import Forbidden

POS = Caller(key_id="k", role=Role.POS, location_id="STORE-1")


def test_admin_may_do_anything():
    require_role(Caller(key_id="a", role=Role.ADMIN), Role.POS)
    require_locations(Caller(key_id="a", role=Role.ADMIN), ["STORE-9"])


def test_a_role_not_listed_is_forbidden():
    with pytest.raises(Forbidden):
        require_role(Caller(key_id="c", role=Role.CHECKOUT), Role.POS)


def test_a_pos_key_acts_only_at_its_own_store():
    require_locations(POS, ["STORE-1", "STORE-1"])
    with pytest.raises(Forbidden) as err:
        require_locations(POS, ["STORE-1", "STORE-2"])
    assert err.value.extra["location_ids"] == ["STORE-2"]
