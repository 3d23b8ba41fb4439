import pytest

from apps.ops import worker_heartbeat
from apps.ops.redis_client import get_redis, key
from tests.ops.conftest import unwritable

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_heartbeats():
    from apps.ops import health

    health._probe_cache.clear()
    client = get_redis()
    for name in client.scan_iter(match=key("worker-heartbeat", "*")):
        client.delete(name)


def test_without_a_worker_heartbeat_health_is_503_and_says_why(client):
    response = client.get("/healthz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["ok"] and checks["redis"]["ok"] and checks["storage"]["ok"]
    assert checks["worker"] == {"ok": False, "error": "RuntimeError: no worker heartbeat seen",
                                "ms": checks["worker"]["ms"]}  # fmt: skip


def test_with_a_fresh_heartbeat_for_each_queue_health_is_200(client):
    worker_heartbeat.beat_once("default@test", ["default"])
    worker_heartbeat.beat_once("train@test", ["train"])
    response = client.get("/healthz")
    assert response.status_code == 200
    report = response.json()
    assert report["ok"] is True
    assert sorted(report["checks"]["worker"]["workers"]) == ["default@test", "train@test"]
    assert report["checks"]["worker"]["queues"] == {"default": ["default@test"],
                                                    "train": ["train@test"]}  # fmt: skip
    assert report["checks"]["worker"]["last_heartbeat_age_s"] < 5


def test_a_queue_without_a_live_consumer_is_503_even_while_another_worker_beats(client):
    worker_heartbeat.beat_once("default@test", ["default"])
    response = client.get("/healthz")
    assert response.status_code == 503
    assert "no live consumer of queue train" in response.json()["checks"]["worker"]["error"]


def test_a_frozen_worker_makes_its_queue_unserved(client, settings):
    """Per worker: the train worker's old beat is not rescued by the default worker's new one."""
    import json
    import time

    worker_heartbeat.beat_once("default@test", ["default"])
    frozen = json.dumps({"hostname": "train@test", "queues": ["train"], "at": time.time() - 100})
    get_redis().set(key("worker-heartbeat", "train@test"), frozen)
    response = client.get("/healthz")
    assert response.status_code == 503
    error = response.json()["checks"]["worker"]["error"]
    assert "no live consumer of queue train" in error and "train@test 100" in error


def test_unwritable_storage_is_503_and_the_probe_is_cached(client, settings):
    worker_heartbeat.beat_once("both@test", ["default", "train"])
    media = settings.MEDIA_ROOT
    media.mkdir(parents=True, exist_ok=True)
    assert client.get("/healthz").status_code == 200
    assert list(media.rglob("probe-*")) == []  # written and deleted
    with unwritable(media):
        settings.HEALTH_STORAGE_PROBE_CACHE_S = 0
        response = client.get("/healthz")
        assert response.status_code == 503
        assert "storage is not writable" in response.json()["checks"]["storage"]["error"]
        settings.HEALTH_STORAGE_PROBE_CACHE_S = 60
    assert client.get("/healthz").status_code == 503  # the cached outcome, though it is back
    settings.HEALTH_STORAGE_PROBE_CACHE_S = 0
    assert client.get("/healthz").status_code == 200


def test_unreachable_redis_is_503(client, settings, monkeypatch):
    import redis

    from apps.ops import health

    monkeypatch.setattr(
        health, "get_redis", lambda: redis.Redis(host="127.0.0.1", port=1, socket_timeout=1)
    )
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"]["ok"] is False
