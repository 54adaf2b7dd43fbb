"""Progress of a long loop over clips: one log line per finished clip, with the time left."""

from __future__ import annotations

import time


class ProgressLine:
    """One line per finished clip: which, how long it took and about how long the rest will,
    from the pace of the clips scored so far in this run (clips read back cost nothing)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.start: float | None = None
        self.scored = 0

    def __call__(self, done: int, total: int, clip_id: str, seconds: float | None) -> str:
        head = f"{self.label}: clip {done}/{total} {clip_id}"
        if seconds is None:
            return f"{head}: read back, scored by an earlier run"
        now = time.monotonic()
        if self.start is None:
            self.start = now - seconds
        self.scored += 1
        left = (now - self.start) / self.scored * (total - done)
        return f"{head}: {seconds:.1f} s; about {_minutes(left)} left"


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
