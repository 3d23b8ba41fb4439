"""What a job page hears: the job's state as JSON, sent to the channels group of the job."""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from apps.jobs.models import Job


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
    async_to_sync(get_channel_layer().group_send)(group_name(job_id), message)
