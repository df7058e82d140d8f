"""How far behind a streaming replica is, from where the primary's WAL was and when.

The primary's WAL position is sampled often; a replica that has replayed up to `replayed`
holds everything the primary had written at the newest sample at or below `replayed`, so
its view is at most `now - that sample's time` old. Measured this way an idle primary
(whose WAL does not move) never makes a healthy replica look late, and a replica that
stops replaying looks later and later even if nothing more is written.
"""

from __future__ import annotations

from collections import deque


class ReplicaLag:
    """Samples of the primary's WAL position over the last `window_s` seconds (pass the
    same monotonic clock to every call)."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def primary_at(self, now: float, lsn: int) -> None:
        """The primary's WAL position `lsn` at time `now`."""
        self._samples.append((now, lsn))
        while len(self._samples) > 1 and self._samples[0][0] < now - self.window_s:
            self._samples.popleft()

    def seconds(self, now: float, replayed: int) -> float:
        """Upper bound of the replica's staleness, given the position it has replayed up
        to: the age of the newest sample it holds; the whole window (or more) when it lacks
        even the oldest sample; infinity before any sample."""
        if not self._samples:
            return float("inf")
        newest_held = None
        for t, lsn in reversed(self._samples):
            if lsn <= replayed:
                newest_held = t
                break
        if newest_held is None:
            return max(self.window_s, now - self._samples[0][0])
        return now - newest_held
