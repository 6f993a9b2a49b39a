"""When the plans' ``periodic`` triggers run (daily times of day, :func:`workers.evaluator.engine.periodic`):
the plan worker runs them between feed batches, every ``every`` at most, over the time since its last run, so
that a slow batch or a busy activation delays a time of day but never skips it. The first run of a process
looks ``every`` back; running a time of day again (a restart) changes nothing: creations have deterministic ids
and an update's conditions no longer hold once it is applied."""

from __future__ import annotations

from datetime import datetime, timedelta

EVERY = timedelta(minutes=15)


class PeriodicClock:
    def __init__(self, every: timedelta = EVERY) -> None:
        self.every = every
        self._last: datetime | None = None

    def window(self, now: datetime) -> timedelta | None:
        """The time to look back over now (since the last run), or None while the last run is too recent."""
        if self._last is None:
            return self.every
        if now - self._last < self.every:
            return None
        return now - self._last

    def ran(self, now: datetime) -> None:
        self._last = now
