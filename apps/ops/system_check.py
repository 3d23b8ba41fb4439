"""The system-check job: proves that storage, the broker, the database and workers work together."""

import hashlib
import secrets
import time
import uuid

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection

from apps.jobs.models import Job
from apps.jobs.runner import JobProgress
from apps.ops.worker_heartbeat import live_workers


class SystemCheckFailed(Exception):
    pass


def _check_database(job: Job) -> str:
    count = Job.objects.count()
    return f"database ({connection.vendor}) answered: {count} jobs stored"


def _check_storage(job: Job) -> str:
    payload = secrets.token_bytes(64 * 1024)
    digest = hashlib.sha256(payload).hexdigest()
    name = default_storage.save(
        f"system-check/job-{job.pk}-{uuid.uuid4().hex}.bin", ContentFile(payload)
    )
    try:
        with default_storage.open(name, "rb") as stored:
            read_back = stored.read()
    finally:
        default_storage.delete(name)
    if hashlib.sha256(read_back).hexdigest() != digest:
        raise SystemCheckFailed(f"storage returned different bytes for {name}")
    return f"storage ({type(default_storage).__name__}) wrote, read back and deleted 64 KiB"


def _check_broker(job: Job) -> str:
    from ilportal.celery import app

    token = uuid.uuid4().hex
    queue_name = f"ilportal.system-check.{job.pk}.{token[:8]}"
    started = time.monotonic()
    with app.connection_for_write() as conn:
        queue = conn.SimpleQueue(queue_name)
        try:
            queue.put({"token": token})
            message = queue.get(block=True, timeout=10)
            message.ack()
        finally:
            queue.queue.delete()
            queue.close()
    if message.payload.get("token") != token:
        raise SystemCheckFailed("the broker returned another message")
    return f"broker round trip in {(time.monotonic() - started) * 1000:.0f} ms"


def _check_workers(job: Job) -> str:
    workers = live_workers()
    if not workers:
        raise SystemCheckFailed("no worker heartbeat in Redis")
    listed = ", ".join(
        f"{w['hostname']} [{','.join(w['queues'])}] {w['age_s']}s ago" for w in workers
    )
    return f"workers: {listed}"


STEPS = [
    ("Database", _check_database),
    ("Storage", _check_storage),
    ("Broker", _check_broker),
    ("Workers", _check_workers),
]


def run_system_check(job: Job, progress: JobProgress) -> dict:
    step_delay_s = float(job.params.get("step_delay_s", 0.3))
    report = {}
    for index, (name, check) in enumerate(STEPS):
        progress.update(100 * index / len(STEPS), f"Checking {name.lower()}…", force=True)
        detail = check(job)
        report[name.lower()] = detail
        progress.log(f"{name}: ok — {detail}")
        time.sleep(step_delay_s)
    progress.update(100, "All checks passed", force=True)
    return report
