"""Progress bars for long steps of one-shot commands: redrawn in place on a terminal, one line per step (at
its end) otherwise, so that logs and CI output stay readable."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None, width: int = 28) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.width = width
        self.done = 0
        self.started = time.perf_counter()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_draw = 0.0

    def update(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        now = time.perf_counter()
        if self.tty and now - self._last_draw >= 0.1:
            self._last_draw = now
            self.stream.write("\r" + self._line())
            self.stream.flush()

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def _line(self) -> str:
        elapsed = time.perf_counter() - self.started
        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(frac * self.width)
            return f"{self.label:34} [{bar:<{self.width}}] {self.done:>7,}/{self.total:<7,} {elapsed:6.1f}s"
        return f"{self.label:34} {self.done:>7,} {elapsed:6.1f}s"

    def finish(self) -> None:
        if self.total is None:
            self.total = self.done
        self.stream.write(("\r" if self.tty else "") + self._line() + "\n")
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()
