from engine.core.replication import ReplicaLag


def test_no_sample_yet_is_unknown_lag():
    assert ReplicaLag(window_s=5).seconds(now=10.0, replayed=100) == float("inf")


def test_a_replica_holding_the_newest_sample_is_as_old_as_that_sample():
    lag = ReplicaLag(window_s=5)
    lag.primary_at(10.0, 100)
    lag.primary_at(10.2, 150)
    assert lag.seconds(now=10.3, replayed=150) == 10.3 - 10.2


def test_an_idle_primary_never_makes_a_healthy_replica_look_late():
    lag = ReplicaLag(window_s=5)
    for i in range(100):  # the WAL does not move for 20 s
        lag.primary_at(i * 0.2, 100)
    assert lag.seconds(now=19.85, replayed=100) < 0.1


def test_a_replica_that_stops_replaying_looks_later_and_later():
    lag = ReplicaLag(window_s=5)
    lag.primary_at(0.0, 100)
    lag.primary_at(0.2, 200)  # one write the replica never replays, then nothing moves
    seen = []
    for i in range(2, 10):
        lag.primary_at(i * 0.2, 200)
        seen.append(lag.seconds(now=i * 0.2, replayed=100))
    assert seen == sorted(seen) and seen[0] > 0 and abs(seen[-1] - 1.8) < 1e-9


def test_a_replica_behind_every_sample_kept_is_at_least_the_window_late():
    lag = ReplicaLag(window_s=2)
    for i in range(50):
        lag.primary_at(i * 0.2, 1000 + i)
    assert lag.seconds(now=9.8, replayed=10) >= 2
