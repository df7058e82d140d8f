import pytest

from engine.core.model import MovementKind as K
from engine.core.model import Position, available
from engine.core.stock import Current, MovementLine, plan_movements
from engine.errors import BadInput, Conflict


def line(kind: K, qty: int, sku: str = "S", loc: str = "L") -> MovementLine:
    return MovementLine(sku=sku, location_id=loc, kind=kind, quantity=qty)


def test_available_subtracts_reserved_and_safety_stock_and_is_never_negative():
    assert available(10, 3, 2) == 5
    assert available(2, 3, 0) == 0
    assert Position(sku="S", location_id="L", on_hand=-4, reserved=0, safety_stock=0).available == 0


@pytest.mark.parametrize(
    ("kind", "qty", "delta"),
    [
        (K.RECEIPT, 5, 5),
        (K.RETURN, 2, 2),
        (K.SALE, 3, -3),
        (K.ADJUSTMENT, -4, -4),
        (K.ADJUSTMENT, 7, 7),
        (K.COUNT, 4, -6),
        (K.COUNT, 12, 2),
        (K.COUNT, 10, 0),
    ],
)
def test_each_kind_books_its_delta(kind, qty, delta):
    [d] = plan_movements([line(kind, qty)], {("S", "L"): Current(on_hand=10, reserved=0)})
    assert d.delta_on_hand == delta
    assert d.new_on_hand == 10 + delta


def test_a_sale_is_never_refused_even_past_zero():
    [d] = plan_movements([line(K.SALE, 5)], {("S", "L"): Current(on_hand=2, reserved=0)})
    assert d.new_on_hand == -3


def test_a_sale_below_reserved_is_a_discrepancy():
    [d] = plan_movements([line(K.SALE, 3)], {("S", "L"): Current(on_hand=5, reserved=4)})
    assert d.discrepancy
    [ok] = plan_movements([line(K.SALE, 1)], {("S", "L"): Current(on_hand=5, reserved=4)})
    assert not ok.discrepancy


def test_a_receipt_is_never_a_discrepancy():
    [d] = plan_movements([line(K.RECEIPT, 1)], {("S", "L"): Current(on_hand=0, reserved=4)})
    assert not d.discrepancy


def test_an_adjustment_may_not_take_on_hand_below_zero():
    with pytest.raises(Conflict):
        plan_movements([line(K.ADJUSTMENT, -11)], {("S", "L"): Current(on_hand=10, reserved=0)})


@pytest.mark.parametrize(
    ("kind", "qty"),
    [
        (K.RECEIPT, 0),
        (K.RECEIPT, -1),
        (K.SALE, 0),
        (K.RETURN, -2),
        (K.ADJUSTMENT, 0),
        (K.COUNT, -1),
        (K.RESERVE, 1),
        (K.COMMIT, 1),
        (K.TRANSFER_IN, 1),
    ],
)
def test_bad_quantities_and_engine_kinds_are_refused(kind, qty):
    with pytest.raises(BadInput):
        plan_movements([line(kind, qty)], {("S", "L"): Current(on_hand=10, reserved=0)})


def test_two_lines_for_one_position_are_refused():
    current = {("S", "L"): Current(on_hand=10, reserved=0)}
    with pytest.raises(BadInput) as err:
        plan_movements([line(K.RECEIPT, 1), line(K.SALE, 1)], current)
    assert "duplicate" in err.value.extra["errors"][0]["message"]
