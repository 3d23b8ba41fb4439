"""Celery workers announce themselves in Redis every few seconds; /healthz reads the ages."""

import contextlib
import json
import socket
import threading
import time

import redis
from django.conf import settings

from apps.ops.redis_client import get_redis, key


def beat_once(hostname: str, queues: list[str]) -> None:
    payload = json.dumps({"hostname": hostname, "queues": queues, "at": time.time()})
    get_redis().set(
        key("worker-heartbeat", hostname), payload, ex=settings.WORKER_HEARTBEAT_MAX_AGE_S * 10
    )


def forget(hostname: str) -> None:
    get_redis().delete(key("worker-heartbeat", hostname))


def start_beating(hostname: str, queues: list[str]) -> threading.Event:
    """Starts a daemon thread; set the returned event to stop it."""
    stop = threading.Event()

    def loop():
        while True:
            # Redis briefly away: try again at the next beat.
            with contextlib.suppress(redis.RedisError):
                beat_once(hostname, queues)
            if stop.wait(settings.WORKER_HEARTBEAT_INTERVAL_S):
                return

    threading.Thread(target=loop, daemon=True, name="worker-heartbeat").start()
    return stop


def live_workers() -> list[dict]:
    """Every worker seen recently, newest first, each with `age_s`."""
    client = get_redis()
    names = list(client.scan_iter(match=key("worker-heartbeat", "*"), count=100))
    now = time.time()
    workers = []
    for raw in client.mget(names) if names else []:
        if raw:
            info = json.loads(raw)
            info["age_s"] = round(now - info["at"], 1)
            workers.append(info)
    return sorted(workers, key=lambda w: w["age_s"])


def default_hostname(queue: str) -> str:
    return f"{queue}@{socket.gethostname()}"


def live_consumers() -> dict[str, list[str]]:
    """Each queue with the workers that consume it and beat within WORKER_HEARTBEAT_MAX_AGE_S.

    Per worker, not the newest beat of any: a frozen train worker leaves `train` without a live
    consumer even while the default worker beats on."""
    consumers: dict[str, list[str]] = {}
    for worker in live_workers():
        if worker["age_s"] <= settings.WORKER_HEARTBEAT_MAX_AGE_S:
            for queue in worker["queues"]:
                consumers.setdefault(queue, []).append(worker["hostname"])
    return consumers
