"""Celery entry points of the loop: training (train queue), evaluation and deploy (default)."""

from celery import shared_task
from django.conf import settings

from apps.jobs.runner import run_job
from apps.loops.deployment import run_deploy
from apps.loops.evaluation import run_evaluation
from apps.loops.training import run_training


@shared_task(
    name="ilportal.train_version",
    soft_time_limit=settings.TRAIN_TASK_HARD_LIMIT_S - 60,
    time_limit=settings.TRAIN_TASK_HARD_LIMIT_S,
)
def train_version(job_id: int) -> str | None:
    return run_job(job_id, train_version.request.hostname, run_training)


@shared_task(name="ilportal.evaluate_version", soft_time_limit=3600, time_limit=3700)
def evaluate_version(job_id: int) -> str | None:
    return run_job(job_id, evaluate_version.request.hostname, run_evaluation)


@shared_task(name="ilportal.deploy_version", soft_time_limit=600, time_limit=660)
def deploy_version(job_id: int) -> str | None:
    return run_job(job_id, deploy_version.request.hostname, run_deploy)


@shared_task(name="ilportal.retry_skipped_evaluations", soft_time_limit=30, time_limit=60)
def retry_skipped_evaluations() -> list[int]:
    from apps.loops.services import retry_skipped_evaluations as retry

    return retry()
