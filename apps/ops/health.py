"""What /healthz checks: the database, Redis, a write to the file storage, and a live consumer for
each queue (per-worker heartbeats)."""

import os
import threading
import time
import uuid

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection

from apps.ops.redis_client import get_redis
from apps.ops.worker_heartbeat import live_consumers, live_workers


def _timed(check) -> dict:
    started = time.monotonic()
    try:
        detail = check()
        outcome = {"ok": True, **(detail or {})}
    except Exception as exc:
        outcome = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    outcome["ms"] = round((time.monotonic() - started) * 1000, 1)
    return outcome


def _database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"vendor": connection.vendor}


def _redis():
    get_redis().ping()
    return {"embedded": settings.REDIS_IS_EMBEDDED}


_probe_lock = threading.Lock()
_probe_cache: dict = {}


def _storage():
    """Writes and deletes a small object: a read-only or full storage fails here, not later in a
    user's upload. The outcome is cached a few seconds, so a busy probe costs one write."""
    backend = settings.STORAGES["default"]["BACKEND"].rsplit(".", 1)[-1]
    with _probe_lock:
        cached = _probe_cache.get("outcome")
        if cached and time.monotonic() - cached[0] < settings.HEALTH_STORAGE_PROBE_CACHE_S:
            error = cached[1]
        else:
            error = None
            try:
                name = default_storage.save(
                    f"healthz/probe-{uuid.uuid4().hex}.txt", ContentFile(b"ok")
                )
                default_storage.delete(name)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            _probe_cache["outcome"] = (time.monotonic(), error)
    if error:
        raise RuntimeError(f"storage is not writable: {error}")
    return {"backend": backend, "wrote_and_deleted": True}


def _workers():
    workers = live_workers()
    if not workers:
        raise RuntimeError("no worker heartbeat seen")
    consumers = live_consumers()
    missing = [queue for queue in settings.HEALTH_QUEUES if not consumers.get(queue)]
    if missing:
        ages = ", ".join(f"{w['hostname']} {w['age_s']}s ago" for w in workers)
        raise RuntimeError(
            f"no live consumer of queue {', '.join(missing)} "
            f"(heartbeats: {ages}; allowed age {settings.WORKER_HEARTBEAT_MAX_AGE_S}s)"
        )
    return {
        "last_heartbeat_age_s": workers[0]["age_s"],
        "workers": [w["hostname"] for w in workers],
        "queues": {queue: consumers.get(queue, []) for queue in settings.HEALTH_QUEUES},
    }


def check_health() -> dict:
    checks = {
        "database": _timed(_database),
        "redis": _timed(_redis),
        "storage": _timed(_storage),
        "worker": _timed(_workers),
    }
    report = {"ok": all(c["ok"] for c in checks.values()), "checks": checks}
    # Set by runportal for the processes it starts: its readiness probe knows its own web process.
    if os.environ.get("ILPORTAL_RUN_ID"):
        report["run_id"] = os.environ["ILPORTAL_RUN_ID"]
    return report
