"""Every advisory lock has a key of its own: two jobs sharing one would silently exclude each other."""

from engine.services import jobs, runs
from engine.store.migrate import MIGRATION_LOCK


def test_advisory_lock_keys_are_distinct():
    keys = [*jobs.LOCKS.values(), *runs.LOCKS.values(), MIGRATION_LOCK]
    assert len(keys) == len(set(keys)), sorted(hex(k) for k in keys)
