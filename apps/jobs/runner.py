"""Runs the body of a job inside a worker: claim, heartbeat, progress, and a final status.

The worker's task passes only the job id; everything it learns comes from the row.
"""

import logging
import threading
import time
import traceback
from collections.abc import Callable

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from apps.jobs import services
from apps.jobs.models import Job, JobStatus

logger = logging.getLogger(__name__)

MAX_CHART_POINTS = 400


class JobCancelled(Exception):
    pass


class JobProgress:
    """What a job body uses to report. Database writes and broadcasts are throttled."""

    def __init__(self, job: Job, min_interval_s: float | None = None):
        self.job = job
        self.min_interval_s = (
            settings.JOB_PROGRESS_MIN_INTERVAL_S if min_interval_s is None else min_interval_s
        )
        self._last_sent = 0.0
        self._chart: list[dict] | None = None

    def update(
        self, percent: float, message: str = "", *, force: bool = False, point: dict | None = None
    ) -> None:
        """`point` ({"step": 10, "loss": 0.8}) is kept for the job's chart, even when throttled."""
        if point is not None:
            self._chart = (self._chart or []) + [point]
            if len(self._chart) > MAX_CHART_POINTS:
                self._chart = self._chart[::2]  # thin out evenly, keep the shape
        now = time.monotonic()
        due = now - self._last_sent >= self.min_interval_s
        if not (force or due or percent >= 100):
            return
        self._last_sent = now
        if services.record_progress(self.job.pk, int(percent), message, self._chart):
            raise JobCancelled()

    def log(self, line: str) -> None:
        services.append_log(self.job.pk, line)


class _Heartbeat(threading.Thread):
    """Keeps heartbeat_at fresh while a long step (one training epoch) reports nothing."""

    def __init__(self, job_id: int, interval_s: float):
        super().__init__(daemon=True, name=f"job-{job_id}-heartbeat")
        self.job_id, self.interval_s = job_id, interval_s
        self.stopped = threading.Event()

    def run(self):
        try:
            while not self.stopped.wait(self.interval_s):
                services.touch_heartbeat(self.job_id)
        finally:
            connection.close()


def run_job(job_id: int, worker: str, body: Callable[[Job, JobProgress], dict]) -> str | None:
    """Claims the job and runs `body`; returns the final status, or None if not claimed."""
    close_old_connections()
    if not services.claim_job(job_id, worker=worker):
        logger.info("job %s was not queued any more; skipping this delivery", job_id)
        return None
    job = Job.objects.get(pk=job_id)
    heartbeat = _Heartbeat(job_id, interval_s=settings.WORKER_HEARTBEAT_INTERVAL_S)
    heartbeat.start()
    try:
        result = body(job, JobProgress(job))
    except JobCancelled:
        status, message, result, note = JobStatus.CANCELLED, "Cancelled", None, "Cancelled."
    except SoftTimeLimitExceeded:
        status, message, result = JobStatus.FAILED, "Time limit exceeded", None
        note = "Stopped: the job ran past its time limit."
    except Exception as exc:
        logger.exception("job %s failed", job_id)
        status, message, result = JobStatus.FAILED, f"{type(exc).__name__}: {exc}", None
        note = "Failed:\n" + traceback.format_exc(limit=5)
    else:
        status, message, note = JobStatus.SUCCEEDED, "Done", None
    finally:
        heartbeat.stopped.set()
        heartbeat.join(timeout=5)
    # From here on nothing may stop the job from reaching its final status: the log line is a
    # nicety, finishing is not (a failed final write is retried, then the reaper has it).
    if note is not None:
        _log_quietly(job_id, note)
    _finish(job_id, status, message=message, result=result)
    return status


def _log_quietly(job_id: int, line: str) -> None:
    try:
        services.append_log(job_id, line)
    except Exception:
        logger.exception("could not write the log of job %s", job_id)


FINISH_ATTEMPTS = 5


def _finish(job_id: int, status: str, *, message: str, result: dict | None) -> None:
    for attempt in range(1, FINISH_ATTEMPTS + 1):
        try:
            services.finish_job(job_id, status, message=message, result=result)
            return
        except DatabaseError:
            if attempt == FINISH_ATTEMPTS:
                raise
            logger.warning("finishing job %s failed (attempt %s); retrying", job_id, attempt)
            close_old_connections()
            connection.close()
            time.sleep(attempt)
