"""Which loop and version a job worked on, for the job pages (links both ways).

Jobs carry ids in ``params`` (loop_id, version_id) and, for a training, the new version's id in
``result``. These are read as JSON keys in the query, so a list never loads whole results.
"""

from django.db.models import QuerySet
from django.db.models.fields.json import KT

from apps.jobs.models import Job
from apps.loops.models import Loop, ModelVersion

# Large columns a list of jobs never shows.
HEAVY_JOB_FIELDS = ("result", "log", "chart", "params")


def light_jobs(jobs: QuerySet) -> QuerySet:
    """Jobs without their result, log and chart, with the keys the lists need."""
    return jobs.defer(*HEAVY_JOB_FIELDS).annotate(
        param_loop_id=KT("params__loop_id"),
        param_version_id=KT("params__version_id"),
        result_version_id=KT("result__version_id"),
        result_skipped=KT("result__skipped"),
        result_reason=KT("result__reason"),
    )


def _as_int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def attach_links(jobs: list[Job]) -> list[Job]:
    """Sets ``job.loop`` and ``job.version`` (or None) with two queries for the whole list."""
    for job in jobs:
        if hasattr(job, "param_loop_id"):
            job.link_loop_id = _as_int(job.param_loop_id)
            job.link_version_id = _as_int(job.param_version_id) or _as_int(job.result_version_id)
        else:
            job.link_loop_id = _as_int(job.params.get("loop_id"))
            job.link_version_id = _as_int(job.params.get("version_id")) or _as_int(
                (job.result or {}).get("version_id")
            )
    loops = Loop.objects.only("id", "name").in_bulk({j.link_loop_id for j in jobs} - {None})
    versions = ModelVersion.objects.only("id", "number", "loop_id").in_bulk(
        {j.link_version_id for j in jobs} - {None}
    )
    for job in jobs:
        job.loop = loops.get(job.link_loop_id)
        job.version = versions.get(job.link_version_id)
    return jobs


def jobs_of_version(version: ModelVersion) -> QuerySet:
    """Its training, evaluations and deploys."""
    ids = {version.train_job_id} - {None}
    ids |= set(version.evaluations.exclude(job=None).values_list("job_id", flat=True))
    ids |= set(version.deployments.exclude(job=None).values_list("job_id", flat=True))
    scoped = Job.objects.filter(scope=version.loop.job_scope)
    return light_jobs(
        Job.objects.filter(pk__in=ids)
        | scoped.filter(kind__in=("evaluate", "deploy"), params__version_id=version.pk)
    )
