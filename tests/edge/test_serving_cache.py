"""The predict path asks the database nothing per request, and still sees every change at once.

Tokens (with their scope) and loops (with their intake policy) are cached per process and used
only while their Redis generation is current (apps.ops.generation); device books are counted in
Redis and flushed into the database (apps.edge.services.flush_device_books)."""

import pytest
import redis
from django.urls import reverse

from apps.accounts.services import revoke_device_token, set_device_token_scope
from apps.datasets.models import Sample, SampleStatus
from apps.edge import services
from apps.edge.models import EdgeDevice, IntakeMode
from apps.loops import services as loops
from apps.ops import generation
from tests.edge.conftest import device_client, scene_png

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["rest", "asgi"])
def transport(request):
    return request.param


def predict(client, loop, seed=1):
    return client.post(
        reverse("api-edge-predict", args=[loop.pk]), scene_png(seed), content_type="image/png"
    )


def books(device, loop) -> EdgeDevice:
    services.flush_device_books()
    return EdgeDevice.objects.get(token=device.token, loop=loop)


@pytest.fixture
def unreachable_redis(monkeypatch):
    """Every Redis call of the caches and the books fails, as when Redis is down."""
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    monkeypatch.setattr(generation, "get_redis", lambda: dead)
    monkeypatch.setattr(services, "get_redis", lambda: dead)
    return dead


def test_a_warm_predict_request_runs_no_database_query(
    edge_loop, device, django_assert_num_queries
):
    services.update_policy(edge_loop, mode=IntakeMode.NOTHING)
    assert predict(device, edge_loop).status_code == 200  # warms the caches
    with django_assert_num_queries(0):
        response = predict(device, edge_loop, seed=2)
    assert response.status_code == 200, response.content
    assert response.json()["version"]["id"] == edge_loop.deployed_version_id


def test_a_revoked_token_is_refused_at_its_next_request(edge_loop, device):
    assert predict(device, edge_loop).status_code == 200
    revoke_device_token(device.token.pk)
    assert predict(device, edge_loop, seed=2).status_code == 401


def test_a_rescoped_token_is_refused_and_readmitted_at_once(edge_loop, device):
    assert predict(device, edge_loop).status_code == 200
    set_device_token_scope(device.token.pk, loops=[], all_loops=False)
    assert predict(device, edge_loop, seed=2).status_code == 403
    set_device_token_scope(device.token.pk, loops=[edge_loop], all_loops=False)
    assert predict(device, edge_loop, seed=3).status_code == 200


def test_a_changed_intake_policy_applies_to_the_next_image(edge_loop, device):
    services.update_policy(edge_loop, mode=IntakeMode.NOTHING)
    assert predict(device, edge_loop).json()["stored"] is False
    services.update_policy(edge_loop, mode=IntakeMode.HARD)  # CloudOnly: every image is hard
    body = predict(device, edge_loop, seed=2).json()
    assert body["stored"] is True and body["queued"] is True
    assert Sample.objects.get(pk=body["sample_id"]).status == SampleStatus.QUEUED


def test_a_moved_deployed_pointer_answers_the_next_request(edge_loop, device, edge_archive):
    first = predict(device, edge_loop).json()["version"]
    second = loops.register_version(edge_loop, edge_archive["other_with_litert"], source="uploaded")
    loops.move_deployed_pointer(
        second.pk, action="force", started_by="test", reason="test", job_id=None
    )
    assert predict(device, edge_loop, seed=2).json()["version"]["id"] == second.pk
    loops.move_deployed_pointer(
        first["id"], action="rollback", started_by="test", reason="test", job_id=None
    )
    assert predict(device, edge_loop, seed=3).json()["version"]["id"] == first["id"]


def test_an_unknown_loop_answers_404(edge_loop, device):
    response = device.post(
        reverse("api-edge-predict", args=[edge_loop.pk + 1000]),
        scene_png(1),
        content_type="image/png",
    )
    assert response.status_code == 404


def test_without_redis_every_request_reads_the_database_and_books_go_there(
    edge_loop, device, unreachable_redis
):
    response = predict(device, edge_loop)
    assert response.status_code == 200, response.content
    revoke_device_token(device.token.pk)
    assert predict(device, edge_loop, seed=2).status_code == 401
    record = EdgeDevice.objects.get(token=device.token, loop=edge_loop)
    assert record.images_sent == 1 and record.last_seen_at is not None


def test_books_count_every_request_across_flushes(edge_loop, device):
    for seed in range(3):
        assert predict(device, edge_loop, seed=seed).status_code == 200
    assert EdgeDevice.objects.get(token=device.token, loop=edge_loop).images_sent == 0
    assert books(device, edge_loop).images_sent == 3
    assert predict(device, edge_loop, seed=4).status_code == 200
    record = books(device, edge_loop)
    assert (record.images_sent, record.hard_sent) == (4, 4)  # CloudOnly: all hard
    assert record.version_id == edge_loop.deployed_version_id
    assert services.flush_device_books() == 0  # nothing left to move


def test_books_are_put_back_when_the_database_write_fails(edge_loop, device, monkeypatch):
    assert predict(device, edge_loop).status_code == 200

    def failing(taken):
        raise RuntimeError("database went away")

    with monkeypatch.context() as patch:
        patch.setattr(services, "_apply_books", failing)
        with pytest.raises(RuntimeError):
            services.flush_device_books()
    assert predict(device, edge_loop, seed=2).status_code == 200
    assert books(device, edge_loop).images_sent == 2


def test_a_flush_writes_many_devices_in_a_fixed_number_of_queries(
    edge_loop, django_assert_max_num_queries, monkeypatch
):
    monkeypatch.setattr(services, "FLUSH_BATCH", 7)  # several batches, the last one partial
    version_id = edge_loop.deployed_version_id
    devices = []
    for index in range(20):
        client = device_client(edge_loop, name=f"cam-{index}")
        devices.append(EdgeDevice.objects.create(token=client.token, loop=edge_loop))
    for index, device in enumerate(devices):
        # The last device names a version that no longer exists: its version stays unset.
        named = version_id if index < len(devices) - 1 else version_id + 10_000
        services.record_activity(device, version_id=named, images=index + 1, hard=index % 3)
    with django_assert_max_num_queries(3 * 4):  # per batch: versions, devices, one UPDATE
        assert services.flush_device_books() == 20
    stored = {d.pk: d for d in EdgeDevice.objects.filter(pk__in=[d.pk for d in devices])}
    for index, device in enumerate(devices):
        row = stored[device.pk]
        assert (row.images_sent, row.hard_sent) == (index + 1, index % 3)
        assert row.last_seen_at is not None
        assert row.version_id == (version_id if index < len(devices) - 1 else None)
    services.record_activity(devices[0], images=2)  # adds to what the database has
    services.flush_device_books()
    assert EdgeDevice.objects.get(pk=devices[0].pk).images_sent == 3


def test_the_fleet_shows_books_not_yet_flushed(edge_loop, device):
    assert predict(device, edge_loop).status_code == 200
    shown = services.devices_by_loop([edge_loop.pk])[edge_loop.pk]
    assert [device.images_sent for device in shown] == [1]


def test_the_version_a_later_heartbeat_reports_wins(edge_loop, device, edge_archive):
    assert predict(device, edge_loop).status_code == 200  # counted in Redis, version v1
    other = loops.register_version(edge_loop, edge_archive["other_with_litert"], source="uploaded")
    response = device.post(
        reverse("api-edge-heartbeat", args=[edge_loop.pk]),
        {"version": other.pk, "health": {"ok": True}},
        content_type="application/json",
    )
    assert response.status_code == 204, response.content
    record = books(device, edge_loop)
    assert record.version_id == other.pk and record.health == {"ok": True}
    assert record.images_sent == 1


def test_books_of_a_removed_device_row_do_not_land_on_another_token(edge_loop, device):
    """A device row's id may come back (SQLite reuses the highest id): books carry the token."""
    assert predict(device, edge_loop).status_code == 200
    EdgeDevice.objects.filter(token=device.token).delete()
    services._device_ids.clear()  # noqa: SLF001  (the process would learn it the same way)
    other = device_client(edge_loop, name="cam-2")
    EdgeDevice.objects.create(token=other.token, loop=edge_loop)
    services.flush_device_books()
    assert EdgeDevice.objects.get(token=other.token).images_sent == 0


# --- The cache itself ------------------------------------------------------------------------


def test_a_cached_value_is_used_until_a_new_generation():
    cache = generation.GenerationCache("test-cache")
    loads = []

    def load():
        loads.append(1)
        return len(loads)

    assert cache.get("k", load) == 1
    assert cache.get("k", load) == 1
    generation.new_generation("test-cache")
    assert cache.get("k", load) == 2


def test_misses_are_not_cached_and_entries_expire():
    cache = generation.GenerationCache("test-cache-2", max_age_s=0)
    assert cache.get("unknown", lambda: None) is None
    assert cache.get("unknown", lambda: "found") == "found"
    assert cache.get("unknown", lambda: "again") == "again"  # max age 0: always read


def test_without_redis_nothing_is_cached(unreachable_redis):
    cache = generation.GenerationCache("test-cache-3")
    assert cache.get("k", lambda: 1) == 1
    assert cache.get("k", lambda: 2) == 2
    generation.new_generation("test-cache-3")  # logs, does not raise


def test_a_restarted_redis_starts_a_new_generation():
    from apps.ops.redis_client import get_redis, key

    cache = generation.GenerationCache("test-cache-4")
    assert cache.get("k", lambda: 1) == 1
    get_redis().delete(key("generation", "test-cache-4"))  # what a Redis restart loses
    assert cache.get("k", lambda: 2) == 2
