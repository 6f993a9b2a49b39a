"""The interaction merge jobs, on APScheduler 3: the interval pass (meta databases changed since the last pass)
and the nightly full pass. (Plans' ``periodic`` triggers are run by the plan worker, next to its other rules:
:mod:`workers.plans.periodic`.)

Every job has ``coalesce=True`` (missed runs collapse into one) and ``max_instances=1`` (a slow pass is never
run twice at once). Each pass logs one line (users, records, documents written, ms).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from summarizer import job
from workers.couch import Couch
from workers.errors import FieldsyncError
from workers.logs import log_event
from workers.settings import Settings

log = logging.getLogger("fieldsync.scheduler")


def _guarded(name: str, settings: Settings, full: bool) -> None:
    try:
        job.run_pass(Couch.from_settings(settings), settings, full=full)
    except FieldsyncError as exc:  # the server away: the next run tries again
        log_event(log, "pass failed", logging.ERROR, job=name, error=str(exc))


def build(settings: Settings) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1,
                                                                 "misfire_grace_time": 300})
    interval = timedelta(minutes=settings.summarize_interval_minutes)
    scheduler.add_job(_guarded, IntervalTrigger(seconds=interval.total_seconds()), id="merge-interval",
                      args=["merge-interval", settings, False], next_run_time=datetime.now(UTC))
    scheduler.add_job(_guarded, CronTrigger(hour=settings.nightly_hour, minute=0, timezone=UTC), id="merge-nightly",
                      args=["merge-nightly", settings, True])
    return scheduler


def run(settings: Settings, stop: threading.Event) -> None:
    """Run the jobs until ``stop`` is set (``fieldsync scheduler``, ``fieldsync up``)."""
    scheduler = build(settings)
    scheduler.start()
    log_event(log, "scheduler started", interval_minutes=settings.summarize_interval_minutes,
              nightly_hour_utc=settings.nightly_hour, jobs=",".join(j.id for j in scheduler.get_jobs()))
    try:
        stop.wait()
    finally:
        scheduler.shutdown(wait=True)
        log_event(log, "scheduler stopped")
