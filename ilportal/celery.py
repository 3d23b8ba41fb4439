import logging
import os

from celery import Celery
from celery.signals import after_setup_logger

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ilportal.settings")

app = Celery("ilportal")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Tasks live in worker/tasks/, not in the apps: each module is named here.
app.conf.imports = (
    "worker.tasks.system",
    "worker.tasks.datasets",
    "worker.tasks.loops",
    "worker.tasks.triggers",
    "worker.tasks.benchmarks",
)


def _trigger_check_period_s() -> float:
    from django.conf import settings

    return float(settings.TRIGGER_CHECK_PERIOD_S)


app.conf.beat_schedule = {
    "fail-stale-jobs": {"task": "ilportal.fail_stale_jobs", "schedule": 30.0},
    "expire-dataset-exports": {"task": "ilportal.expire_dataset_exports", "schedule": 3600.0},
    # Time rules and finished measurements are seen here; labels and deploys come as events.
    "check-trigger-rules": {
        "task": "ilportal.check_trigger_rules",
        "schedule": _trigger_check_period_s(),
    },
    "reconcile-queued-jobs": {
        "task": "ilportal.reconcile_queued_jobs",
        "schedule": float(os.environ.get("JOB_RECONCILE_INTERVAL_S", "20")),
    },
    "retry-skipped-evaluations": {"task": "ilportal.retry_skipped_evaluations", "schedule": 30.0},
    "sweep-orphans": {"task": "ilportal.sweep_orphans", "schedule": 3600.0},
    # Predict requests count in Redis; the database (and so the admin) catches up here.
    "flush-device-books": {"task": "ilportal.flush_device_books", "schedule": 10.0},
    # Agents' Idempotency-Key receipts: one row per upload, kept for 30 days.
    "prune-upload-receipts": {"task": "ilportal.prune_upload_receipts", "schedule": 86400.0},
}

# Housekeeping that beat sends every few seconds: its routine "sent / received / succeeded" lines
# would drown the console of `./ilp run`. Its warnings, errors and its own log lines still show.
QUIET_TASKS = (
    "ilportal.check_trigger_rules",
    "ilportal.reconcile_queued_jobs",
    "ilportal.fail_stale_jobs",
    "ilportal.retry_skipped_evaluations",
    "ilportal.flush_device_books",
)


class RoutineHousekeepingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or not record.name.startswith("celery"):
            return True
        message = record.getMessage()
        return not any(name in message for name in QUIET_TASKS)


@after_setup_logger.connect
def _quiet_routine_housekeeping(logger, **kwargs):
    for handler in logger.handlers:
        handler.addFilter(RoutineHousekeepingFilter())
