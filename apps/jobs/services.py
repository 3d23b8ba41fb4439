"""Verbs on jobs: start, claim, report, finish, cancel. Views and tasks call only these."""

import logging
import uuid
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone
from django.utils.module_loading import import_string

from apps.jobs import events
from apps.jobs.kinds import KINDS, get_kind
from apps.jobs.models import ACTIVE_STATUSES, Job, JobStatus, JobTrigger
from apps.jobs.signals import job_lost

logger = logging.getLogger(__name__)


class JobError(Exception):
    pass


class JobPermissionDenied(JobError):
    pass


class BrokerUnavailable(JobError):
    """The job could not be handed to the queue; its row is failed with the reason."""


class JobNotActive(JobError):
    """Nothing to cancel: the job had already finished (perhaps a moment ago, by another click)."""

    def __init__(self, job: Job):
        super().__init__(f"Job #{job.pk} is {job.status}: nothing to cancel.")
        self.job = job


class JobAlreadyActive(JobError):
    def __init__(self, job: Job):
        super().__init__(f"{job.kind} job #{job.pk} is already {job.status} for {job.scope}.")
        self.job = job


def active_job(kind_name: str, scope: str) -> Job | None:
    return Job.objects.filter(kind=kind_name, scope=scope, status__in=ACTIVE_STATUSES).first()


def describe_user(user) -> str:
    return f"user:{user.get_username()}"


def start_job(
    kind_name: str,
    *,
    trigger: str = JobTrigger.MANUAL,
    user=None,
    started_by: str = "",
    params: dict | None = None,
    scope: str = "",
    device=None,
) -> Job:
    """Creates a queued Job and enqueues its task once the transaction commits.

    With a scope, a second start while one of that kind and scope is active raises
    JobAlreadyActive naming the active job (the database enforces it, so racing requests too).
    `device`: the DeviceToken that asked for it; that device may then read the job.
    """
    kind = get_kind(kind_name)
    if user is not None and not user.has_perm(kind.start_permission):
        raise JobPermissionDenied(f"You may not start a {kind.label.lower()} job.")
    try:
        with transaction.atomic():
            job = Job.objects.create(
                kind=kind.name,
                trigger=trigger,
                scope=scope,
                params=params or {},
                created_by=user,
                device=device,
                started_by=started_by or (describe_user(user) if user is not None else trigger),
                message="Waiting for a worker",
            )
    except IntegrityError:
        active = active_job(kind.name, scope)
        if active is None:  # it finished in between
            raise JobError("Another job of this kind just ran; try again.") from None
        raise JobAlreadyActive(active) from None
    transaction.on_commit(lambda: _enqueue(job.pk, kind.task_name, kind.queue))
    return job


NOT_QUEUED = "Not started: the job queue (Redis) could not be reached"


def never_queued(job: Job) -> bool:
    """The job failed because its message never reached the queue (the broker was away when its
    transaction committed): no worker ever saw it."""
    return (
        job.status == JobStatus.FAILED
        and job.started_at is None
        and isinstance(job.result, dict)
        and job.result.get("not_queued") is True
    )


def _enqueue(job_id: int, task_name: str, queue: str) -> None:
    """Hands the job to its queue. If the broker is away, the job fails at once with the reason
    (no queued row is left behind for a message that was never sent) and BrokerUnavailable says
    so to the caller."""
    try:
        send_task(job_id, task_name, queue)
    except Exception as exc:
        reason = f"{NOT_QUEUED} ({type(exc).__name__}: {exc}). Try again when it is back."
        logger.warning("job %s: %s", job_id, reason)
        Job.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
            status=JobStatus.FAILED,
            message=reason[:500],
            result={"not_queued": True},
            finished_at=timezone.now(),
        )
        append_log(job_id, reason)
        raise BrokerUnavailable(reason) from exc


def task_id_prefix(job_id: int) -> str:
    """Every message of a job carries this in its task id, so the queue can be searched for it."""
    return f"ilportal-job-{job_id}-"


def send_task(job_id: int, task_name: str, queue: str) -> None:
    from ilportal.celery import app

    app.send_task(
        task_name, args=[job_id], queue=queue, task_id=task_id_prefix(job_id) + uuid.uuid4().hex
    )


def claim_job(job_id: int, *, worker: str) -> bool:
    """queued → running, exactly once: a task delivered twice finds the row already claimed."""
    now = timezone.now()
    claimed = Job.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING,
        started_at=now,
        heartbeat_at=now,
        worker=worker,
        message="Started",
    )
    if claimed:
        events.publish_state(job_id)
    return bool(claimed)


def record_progress(job_id: int, percent: int, message: str, chart: list | None = None) -> bool:
    """Writes progress and the heartbeat; returns whether a cancel was requested."""
    percent = max(0, min(100, int(percent)))
    updates = {"progress": percent, "message": message[:500], "heartbeat_at": timezone.now()}
    if chart is not None:
        updates["chart"] = chart
    Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(**updates)
    events.publish_state(job_id)
    return Job.objects.filter(pk=job_id, cancel_requested=True).exists()


def append_log(job_id: int, line: str) -> None:
    stamped = f"{timezone.now():%H:%M:%S} {line}"
    Job.objects.filter(pk=job_id).update(log=Concat(F("log"), Value(stamped + "\n")))
    events.publish_log(job_id, stamped)


def touch_heartbeat(job_id: int) -> None:
    Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(heartbeat_at=timezone.now())


def finish_job(job_id: int, status: str, *, message: str, result: dict | None = None) -> bool:
    """running → a final status. Returns False if the job was not running any more."""
    updates = {"status": status, "message": message[:500], "finished_at": timezone.now()}
    if status == JobStatus.SUCCEEDED:
        updates["progress"] = 100
    if result is not None:
        updates["result"] = result
    finished = Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(**updates)
    events.publish_state(job_id)
    return bool(finished)


LOST_MESSAGE = "lost: its worker died"


def _committed_result(job_id: int) -> tuple[str, dict] | None:
    """What a job whose worker died had already committed (its kind says), else None."""
    job = Job.objects.filter(pk=job_id).first()
    kind = KINDS.get(job.kind) if job is not None else None
    if kind is None or not kind.committed_result:
        return None
    return import_string(kind.committed_result)(job)


def _mark_lost(job_id: int, message: str, **still) -> bool:
    """running → failed, conditional on `still` (the row as the caller saw it); announces it.

    A job whose effect had committed before its worker died (a deploy's Deployment row, a
    training's registered version) ends succeeded instead, with a note; returns False then."""
    committed = _committed_result(job_id)
    if committed is not None:
        note, result = committed
        if Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, **still).update(
            status=JobStatus.SUCCEEDED,
            progress=100,
            message=note[:500],
            result=result,
            finished_at=timezone.now(),
        ):
            append_log(job_id, f"{note} ({message})")
            events.publish_state(job_id)
        return False
    if not Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, **still).update(
        status=JobStatus.FAILED, message=message[:500], finished_at=timezone.now()
    ):
        return False
    append_log(job_id, message)
    events.publish_state(job_id)
    job_lost.send(sender=Job, job=Job.objects.get(pk=job_id))
    return True


def fail_stale_jobs(max_silence_s: int, message: str = "") -> list[int]:
    """Running jobs whose worker stopped sending heartbeats (killed, out of memory) end failed."""
    cutoff = timezone.now() - timedelta(seconds=max_silence_s)
    stale = list(
        Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=cutoff).values_list(
            "pk", flat=True
        )
    )
    message = message or f"The worker stopped responding (no heartbeat for over {max_silence_s} s)"
    # Conditional on the old heartbeat: a job that just beat again is left alone.
    return [job_id for job_id in stale if _mark_lost(job_id, message, heartbeat_at__lt=cutoff)]


def fail_jobs_of_worker(worker: str, detail: str = "") -> list[int]:
    """The worker `worker` (a Celery hostname such as train@host) is known dead: its running jobs
    are lost now, not after the reaper's silence timeout."""
    message = LOST_MESSAGE + (f" ({detail})" if detail else "")
    running = Job.objects.filter(status=JobStatus.RUNNING, worker=worker)
    return [
        job_id
        for job_id in running.values_list("pk", flat=True)
        if _mark_lost(job_id, message, worker=worker)
    ]


def fail_lost_job(job_id: int, detail: str = "") -> bool:
    """One job whose process died under it (Celery's WorkerLostError)."""
    return _mark_lost(job_id, LOST_MESSAGE + (f" ({detail})" if detail else ""))


def cancel_job(job_id: int, *, user) -> Job:
    """A queued job is cancelled at once; a running one is asked to stop at its next report.

    JobNotActive when neither applied: the job had finished, or two cancels raced and the other
    one cancelled it (the conditional updates decide, so exactly one of them succeeds)."""
    if not user.has_perm("jobs.change_job"):
        raise JobPermissionDenied("You may not cancel jobs.")
    now = timezone.now()
    cancelled = Job.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELLED,
        cancel_requested=True,
        finished_at=now,
        message=f"Cancelled by {user.get_username()} before it started",
    )
    if not cancelled and not Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
        cancel_requested=True, message=f"Cancel requested by {user.get_username()}"
    ):
        raise JobNotActive(Job.objects.get(pk=job_id))
    events.publish_state(job_id)
    return Job.objects.get(pk=job_id)
