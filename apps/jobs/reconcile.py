"""Queued rows are reconciled with the broker: a message that Redis lost is sent again.

A job is `queued` until a worker claims it. Its message can vanish without a trace: Redis restarted
empty, or a worker that had prefetched it was killed. Every few seconds (beat) each queued job
older than JOB_QUEUED_RESEND_AFTER_S is looked for in its queue; if its message is not waiting
there and a live worker consumes that queue, it is sent again. Claims are conditional
(queued → running once), so a second copy of a message that was not lost after all is harmless.
A job that no live worker could take for JOB_QUEUED_MAX_WAIT_S is failed with the reason.
"""

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from apps.jobs import services
from apps.jobs.kinds import get_kind
from apps.jobs.models import Job, JobStatus
from apps.ops.redis_client import get_redis, key
from apps.ops.worker_heartbeat import live_consumers

logger = logging.getLogger(__name__)


def _queue_key(queue: str) -> str:
    return settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "") + queue


def waiting_job_ids(queue: str) -> set[int]:
    """Ids of the jobs whose message waits in the broker's list for `queue`."""
    ids = set()
    for raw in get_redis().lrange(_queue_key(queue), 0, -1):
        text = raw.decode(errors="replace")
        marker = text.find("ilportal-job-")
        while marker != -1:
            digits = text[marker + len("ilportal-job-") :].split("-", 1)[0]
            if digits.isdigit():
                ids.add(int(digits))
            marker = text.find("ilportal-job-", marker + 1)
    return ids


def _last_sent_key(job_id: int) -> str:
    return key("job-sent", str(job_id))


def _last_sent(job: Job) -> float:
    raw = get_redis().get(_last_sent_key(job.pk))
    return float(raw) if raw else job.created_at.timestamp()


def reconcile_queued_jobs(now: float | None = None) -> dict[str, list[int]]:
    """Sends lost messages again and fails jobs no worker could take; returns what it did."""
    now = time.time() if now is None else now
    resend_after = settings.JOB_QUEUED_RESEND_AFTER_S
    cutoff = timezone.now() - timedelta(seconds=resend_after)
    done: dict[str, list[int]] = {"resent": [], "failed": []}
    queued = list(Job.objects.filter(status=JobStatus.QUEUED, created_at__lt=cutoff))
    if not queued:
        return done
    consumers = live_consumers()
    waiting: dict[str, set[int]] = {}
    for job in queued:
        try:
            kind = get_kind(job.kind)
        except ValueError:  # a kind this version does not know: nothing could send it
            continue
        queue = kind.queue
        if queue not in waiting:
            waiting[queue] = waiting_job_ids(queue)
        if not consumers.get(queue):
            waited = now - job.created_at.timestamp()
            if waited > settings.JOB_QUEUED_MAX_WAIT_S and _fail_unserved(job, queue, waited):
                done["failed"].append(job.pk)
            continue
        if job.pk in waiting[queue] or now - _last_sent(job) < resend_after:
            continue
        # Still queued (not claimed in between) and its message is nowhere: send it again.
        if not Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).exists():
            continue
        services.send_task(job.pk, kind.task_name, queue)
        get_redis().set(_last_sent_key(job.pk), now, ex=24 * 3600)
        services.append_log(
            job.pk,
            f"Its message was not in the {queue} queue (lost by the broker or by a worker that "
            "died); sent again.",
        )
        logger.warning("job %s: message lost; sent again to %s", job.pk, queue)
        done["resent"].append(job.pk)
    return done


def _fail_unserved(job: Job, queue: str, waited_s: float) -> bool:
    reason = (
        f"Not started: no live worker consumed the {queue} queue for {waited_s / 60:.0f} min. "
        f"Start a worker for it (see docs/deployment.md) and start the job again."
    )
    failed = Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.FAILED, message=reason[:500], finished_at=timezone.now()
    )
    if failed:
        services.append_log(job.pk, reason)
        services.events.publish_state(job.pk)
    return bool(failed)
