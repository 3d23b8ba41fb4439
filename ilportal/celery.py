import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ilportal.settings")

app = Celery("ilportal")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Tasks live in worker/tasks/, not in the apps: each module is named here.
app.conf.imports = (
    "worker.tasks.system",
    "worker.tasks.datasets",
    "worker.tasks.loops",
    "worker.tasks.benchmarks",
)
app.conf.beat_schedule = {
    "fail-stale-jobs": {"task": "ilportal.fail_stale_jobs", "schedule": 30.0},
    "expire-dataset-exports": {"task": "ilportal.expire_dataset_exports", "schedule": 3600.0},
}
