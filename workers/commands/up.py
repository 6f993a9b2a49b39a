"""``fieldsync up``: the embedded server, init, the workers and the scheduler, in the foreground.

One Ctrl-C (or SIGTERM) stops everything cleanly: services finish their current batch, then the embedded
server is stopped if ``up`` started it.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

from summarizer import scheduler
from workers import embedded, provision, registry
from workers.couch import Couch
from workers.logs import log_event
from workers.runner import Runner
from workers.settings import Settings

log = logging.getLogger("fieldsync.up")

# A service runs until its stop event is set.
Service = Callable[[Settings, threading.Event], None]


def run_workers(settings: Settings, stop: threading.Event) -> None:
    client = Couch.from_settings(settings)
    built = registry.build(None, client, settings)
    Runner(client, settings, built.handlers, chores=built.chores).run(stop)


def run_scheduler(settings: Settings, stop: threading.Event) -> None:
    scheduler.run(settings, stop)


SERVICES: dict[str, Service] = {"workers": run_workers, "scheduler": run_scheduler}


def run(settings: Settings, out: Callable[[str], None]) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log_event(log, "stopping", signal=signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    started = None
    try:
        if settings.host in embedded.LOOPBACK and embedded.running_pid(settings.data_dir.resolve()) is None:
            started = embedded.start(settings)
            out(f"embedded server running at {started.url} (pid {started.pid}, data {started.data_dir})")
            if settings.credentials is None:
                settings = Settings.from_env()
        provision.init(Couch.from_settings(settings), settings)
        out(f"initialised databases with prefix {settings.db_prefix}; press Ctrl-C to stop")
        threads = [
            threading.Thread(target=service, args=(settings, stop), name=name, daemon=True)
            for name, service in SERVICES.items()
        ]
        for thread in threads:
            thread.start()
        log_event(log, "up", services=",".join(SERVICES) or "none", url=settings.couch_url)
        while not stop.wait(0.5):
            if threads and not any(t.is_alive() for t in threads):
                break
        for thread in threads:
            thread.join(timeout=30)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if started is not None:
            embedded.stop(settings)
            out("embedded server stopped")
    return 0
