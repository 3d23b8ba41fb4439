"""What /healthz checks: the database, Redis, the file storage and the workers' heartbeat."""

import time

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection

from apps.ops.redis_client import get_redis
from apps.ops.worker_heartbeat import live_workers


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


def _storage():
    default_storage.exists("healthz-probe")
    return {"backend": settings.STORAGES["default"]["BACKEND"].rsplit(".", 1)[-1]}


def _workers():
    workers = live_workers()
    if not workers:
        raise RuntimeError("no worker heartbeat seen")
    age = workers[0]["age_s"]
    if age > settings.WORKER_HEARTBEAT_MAX_AGE_S:
        raise RuntimeError(f"last worker heartbeat {age}s ago")
    return {"last_heartbeat_age_s": age, "workers": [w["hostname"] for w in workers]}


def check_health() -> dict:
    checks = {
        "database": _timed(_database),
        "redis": _timed(_redis),
        "storage": _timed(_storage),
        "worker": _timed(_workers),
    }
    return {"ok": all(c["ok"] for c in checks.values()), "checks": checks}
