"""Celery entry points for operational jobs. Thin: they take ids and call the domain code."""

import logging

from billiard.exceptions import WorkerLostError
from celery import shared_task
from celery.signals import task_failure, worker_ready, worker_shutdown
from django.conf import settings

from apps.jobs import services
from apps.jobs.runner import run_job
from apps.ops import worker_heartbeat
from apps.ops.system_check import run_system_check

_heartbeat_stop = None


@shared_task(name="ilportal.system_check", soft_time_limit=60, time_limit=90)
def system_check(job_id: int) -> str | None:
    return run_job(job_id, system_check.request.hostname, run_system_check)


@worker_ready.connect
def _start_worker_heartbeat(sender, **kwargs):
    global _heartbeat_stop
    queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values())
    _heartbeat_stop = worker_heartbeat.start_beating(sender.hostname, queues)
    # A job still `running` under this very name belonged to this worker's previous life, which
    # ended without finishing it (kill -9, a crash, a reboot): it is lost, say so now.
    lost = services.fail_jobs_of_worker(sender.hostname, "it restarted")
    if lost:
        logging.getLogger(__name__).warning("jobs lost by this worker's last run: %s", lost)
    # Scratch folders that a killed worker on this machine left behind go now, not in an hour.
    from apps.ops.sweeper import sweep_temp_folders

    try:
        sweep_temp_folders()
    except Exception:
        logging.getLogger(__name__).exception("sweeping temp folders at worker start failed")


@worker_shutdown.connect
def _stop_worker_heartbeat(sender, **kwargs):
    if _heartbeat_stop is not None:
        _heartbeat_stop.set()
        worker_heartbeat.forget(sender.hostname)


@shared_task(name="ilportal.fail_stale_jobs", soft_time_limit=30, time_limit=60)
def fail_stale_jobs() -> list[int]:
    return services.fail_stale_jobs(settings.JOB_HEARTBEAT_TIMEOUT_S)


@shared_task(name="ilportal.flush_device_books", soft_time_limit=30, time_limit=60)
def flush_device_books() -> int:
    from apps.edge.services import flush_device_books as flush

    return flush()


@shared_task(name="ilportal.prune_upload_receipts", soft_time_limit=300, time_limit=360)
def prune_upload_receipts() -> int:
    from apps.edge.services import prune_receipts

    return prune_receipts()


@shared_task(name="ilportal.reconcile_queued_jobs", soft_time_limit=30, time_limit=60)
def reconcile_queued_jobs() -> dict:
    from apps.jobs.reconcile import reconcile_queued_jobs as reconcile

    return reconcile()


@shared_task(name="ilportal.sweep_orphans", soft_time_limit=600, time_limit=660)
def sweep_orphans() -> int:
    from apps.ops.sweeper import sweep_orphans as sweep

    return len(sweep())


@task_failure.connect
def _job_lost_with_its_pool_process(sender=None, task_id=None, exception=None, args=None, **kw):
    """A pool process killed under its job (kill -9, out of memory): known at once, say so."""
    if isinstance(exception, WorkerLostError) and args:
        services.fail_lost_job(int(args[0]), str(exception))
