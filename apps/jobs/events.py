"""What a job page hears: the job's state as JSON, sent to the channels group of the job.

Broadcasting is best-effort: the database is the truth, and a page re-reads it whenever its
WebSocket (re)connects. A Redis outage therefore costs live updates, never a job.
"""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from apps.jobs.models import Job

logger = logging.getLogger(__name__)


def group_name(job_id: int) -> str:
    return f"job_{job_id}"


def job_state(job: Job) -> dict:
    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "progress": job.progress,
        "message": job.message,
        "result": job.result,
        "chart": job.chart,
        "cancel_requested": job.cancel_requested,
        "is_active": job.is_active,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def publish_state(job_id: int) -> None:
    job = Job.objects.get(pk=job_id)
    _send(job_id, {"type": "job.state", "job": job_state(job)})


def publish_log(job_id: int, line: str) -> None:
    _send(job_id, {"type": "job.log", "line": line})


def _send(job_id: int, message: dict) -> None:
    try:
        async_to_sync(get_channel_layer().group_send)(group_name(job_id), message)
    except Exception as exc:  # Redis away, a full channel, a timeout: the job goes on
        logger.warning("live update of job %s not sent: %s: %s", job_id, type(exc).__name__, exc)
