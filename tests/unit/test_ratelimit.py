import pytest

from api.ratelimit import RateLimiter, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_gets_its_burst_at_once_then_the_rate():
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("k") == pytest.approx(0.5)  # one token comes every 1/rate seconds
    clock.now += 0.25
    assert limiter.take("k") == pytest.approx(0.25)
    clock.now += 0.25
    assert limiter.take("k") == 0.0
    assert limiter.take("k") == pytest.approx(0.5)


def test_a_refused_request_spends_nothing():
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock)
    assert limiter.take("k") == 0.0
    for _ in range(100):
        assert limiter.take("k") > 0
    clock.now += 1.0
    assert limiter.take("k") == 0.0


def test_an_idle_key_refills_only_up_to_its_burst():
    clock = Clock()
    limiter = RateLimiter(rate=10.0, burst=5, clock=clock)
    assert limiter.take("k") == 0.0
    clock.now += 3600
    assert [limiter.take("k") for _ in range(6)].count(0.0) == 5


def test_keys_have_separate_buckets():
    limiter = RateLimiter(rate=1.0, burst=1, clock=Clock())
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    assert limiter.take("b") == 0.0


def test_refilled_buckets_are_forgotten_when_there_are_too_many(monkeypatch):
    monkeypatch.setattr("api.ratelimit.MAX_IDLE_BUCKETS", 3)
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=2, clock=clock)
    for key in ("a", "b", "c"):
        limiter.take(key)
    clock.now += 1.0
    limiter.take("c")  # c is still refilling at the next sweep, a and b are full again
    clock.now += 1.5
    limiter.take("d")
    assert set(limiter._buckets) == {"c", "d"}


def test_retry_after_is_whole_seconds_and_at_least_one():
    assert [retry_after(w) for w in (0.001, 0.5, 1.0, 1.01, 7.2)] == [1, 1, 1, 2, 8]


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_a_limit_that_lets_nothing_through_is_refused(rate, burst):
    with pytest.raises(ValueError):
        RateLimiter(rate=rate, burst=burst)
