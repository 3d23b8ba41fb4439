"""Celery entry points for datasets. Thin: the job id in, the importer or exporter works."""

from celery import shared_task
from django.conf import settings

from apps.datasets.exporting import expire_old_exports, run_export_job
from apps.datasets.importing import run_import_job
from apps.jobs.runner import run_job


@shared_task(
    name="ilportal.dataset_import",
    soft_time_limit=settings.DATASET_IMPORT_TIME_LIMIT_S,
    time_limit=settings.DATASET_IMPORT_TIME_LIMIT_S + 120,
)
def dataset_import(job_id: int) -> str | None:
    return run_job(job_id, dataset_import.request.hostname, run_import_job)


@shared_task(
    name="ilportal.dataset_export",
    soft_time_limit=settings.DATASET_EXPORT_TIME_LIMIT_S,
    time_limit=settings.DATASET_EXPORT_TIME_LIMIT_S + 120,
)
def dataset_export(job_id: int) -> str | None:
    return run_job(job_id, dataset_export.request.hostname, run_export_job)


@shared_task(name="ilportal.expire_dataset_exports", soft_time_limit=300, time_limit=360)
def expire_dataset_exports() -> list[int]:
    return expire_old_exports(settings.DATASET_EXPORT_KEEP_HOURS)
