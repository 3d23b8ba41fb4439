import pytest

from apps.ops import worker_heartbeat
from apps.ops.redis_client import get_redis, key

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_heartbeats():
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


def test_with_a_fresh_heartbeat_health_is_200(client):
    worker_heartbeat.beat_once("default@test", ["default"])
    response = client.get("/healthz")
    assert response.status_code == 200
    report = response.json()
    assert report["ok"] is True
    assert report["checks"]["worker"]["workers"] == ["default@test"]
    assert report["checks"]["worker"]["last_heartbeat_age_s"] < 5


def test_a_stale_heartbeat_is_503(client, settings):
    worker_heartbeat.beat_once("default@test", ["default"])
    settings.WORKER_HEARTBEAT_MAX_AGE_S = -1
    response = client.get("/healthz")
    assert response.status_code == 503
    assert "last worker heartbeat" in response.json()["checks"]["worker"]["error"]


def test_unreachable_redis_is_503(client, settings, monkeypatch):
    import redis

    from apps.ops import health

    monkeypatch.setattr(
        health, "get_redis", lambda: redis.Redis(host="127.0.0.1", port=1, socket_timeout=1)
    )
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"]["ok"] is False
