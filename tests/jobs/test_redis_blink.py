"""Redis is allowed to blink: live updates are best-effort, a click during an outage gets a clear
answer and leaves no queued row, and queued rows whose message was lost are sent again."""

import time
from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from apps.jobs import reconcile, runner, services
from apps.jobs.models import Job, JobStatus
from apps.ops import worker_heartbeat
from apps.ops.redis_client import get_redis, key
from tests.factories import JobFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def redis_down_for_broadcasts(monkeypatch):
    class DeadLayer:
        async def group_send(self, group, message):
            raise redis.ConnectionError("Error 111 connecting to redis.sock. Connection refused.")

    monkeypatch.setattr("apps.jobs.events.get_channel_layer", lambda: DeadLayer())


def test_a_job_survives_a_broadcast_outage_and_its_result_is_stored(redis_down_for_broadcasts):
    job = JobFactory()

    def body(job, progress):
        progress.update(50, "half", force=True)
        progress.log("still here")
        return {"answer": 42}

    assert runner.run_job(job.pk, "w1", body) == JobStatus.SUCCEEDED
    job.refresh_from_db()
    assert (job.status, job.result) == (JobStatus.SUCCEEDED, {"answer": 42})
    assert "still here" in job.log


def test_the_failure_branch_reaches_finish_job_even_if_the_log_cannot_be_written(monkeypatch):
    job = JobFactory()

    def broken_log(job_id, line):
        raise redis.ConnectionError("gone")

    def body(job, progress):
        monkeypatch.setattr(services, "append_log", broken_log)
        raise ValueError("the real problem")

    assert runner.run_job(job.pk, "w1", body) == JobStatus.FAILED
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.message == "ValueError: the real problem"
    assert job.finished_at is not None


@pytest.fixture
def broker_down():
    """The broker URL points at a port nobody listens on (what a Redis outage looks like)."""
    from ilportal.celery import app

    names = ("broker_url", "broker_transport_options", "task_publish_retry_policy")
    saved = {name: app.conf[name] for name in names}
    app.conf.update(
        broker_url="redis://127.0.0.1:1/0",
        broker_transport_options={},
        task_publish_retry_policy={"max_retries": 1},
    )
    _drop_connections(app)
    yield
    app.conf.update(saved)
    _drop_connections(app)


def _drop_connections(app):
    app._pool = None
    app.amqp._producer_pool = None


def test_a_click_during_a_broker_outage_says_so_and_leaves_no_queued_row(client, broker_down):
    admin = UserFactory(role="admin")
    client.force_login(admin)
    response = client.post("/jobs/start/system_check/", HTTP_REFERER="http://testserver/jobs/")
    assert response.status_code == 302 and response["Location"] == "http://testserver/jobs/"
    page = client.get("/jobs/")
    assert "the job queue (Redis) could not be reached" in page.content.decode()
    job = Job.objects.get()
    assert job.status == JobStatus.FAILED
    assert job.message.startswith("Not started: the job queue (Redis) could not be reached")
    assert services.never_queued(job)  # what the trigger rules read to fire again


def test_without_a_referer_the_page_is_a_clear_503(client, broker_down):
    client.force_login(UserFactory(role="admin"))
    response = client.post("/jobs/start/system_check/")
    assert response.status_code == 503
    assert "could not be reached" in response.content.decode()
    assert response["Retry-After"]


def test_the_api_answers_a_json_503_during_a_broker_outage(client, broker_down):
    from tests.factories import DatasetFactory

    client.force_login(UserFactory(role="admin"))
    dataset = DatasetFactory()
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.factories import image_bytes

    response = client.post(
        f"/api/v1/datasets/{dataset.pk}/imports/",
        {"files": [SimpleUploadedFile("a.png", image_bytes(1), content_type="image/png")]},
    )
    assert response.status_code == 503, response.content
    assert "could not be reached" in response.json()["detail"]
    assert not Job.objects.filter(status=JobStatus.QUEUED).exists()


@pytest.fixture
def clean_heartbeats():
    client = get_redis()
    for name in client.scan_iter(match=key("worker-heartbeat", "*")):
        client.delete(name)
    yield
    for name in client.scan_iter(match=key("worker-heartbeat", "*")):
        client.delete(name)


def _old_queued_job(**fields) -> Job:
    job = JobFactory(**fields)
    Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    return Job.objects.get(pk=job.pk)


def test_a_queued_job_whose_message_was_lost_is_sent_again_once(clean_heartbeats, monkeypatch):
    sent = []
    monkeypatch.setattr(services, "send_task", lambda *args: sent.append(args))
    worker_heartbeat.beat_once("default@test", ["default"])
    lost = _old_queued_job()
    fresh = JobFactory()  # younger than the bound: left alone
    done = reconcile.reconcile_queued_jobs()
    assert done == {"resent": [lost.pk], "failed": []}
    assert sent == [(lost.pk, "ilportal.system_check", "default")]
    assert "sent again" in Job.objects.get(pk=lost.pk).log
    # Just sent: not again at the next pass.
    assert reconcile.reconcile_queued_jobs() == {"resent": [], "failed": []}
    assert Job.objects.get(pk=fresh.pk).status == JobStatus.QUEUED


def test_a_queued_job_whose_message_waits_in_its_queue_is_not_sent_again(clean_heartbeats):
    worker_heartbeat.beat_once("default@test", ["default"])
    waiting = _old_queued_job()
    services.send_task(waiting.pk, "ilportal.system_check", "default")
    try:
        assert waiting.pk in reconcile.waiting_job_ids("default")
        assert reconcile.reconcile_queued_jobs() == {"resent": [], "failed": []}
    finally:
        get_redis().delete(reconcile._queue_key("default"))


def test_without_a_live_consumer_a_queued_job_waits_then_fails_with_the_reason(
    clean_heartbeats, settings, monkeypatch
):
    monkeypatch.setattr(services, "send_task", lambda *args: pytest.fail("nobody would take it"))
    job = _old_queued_job(kind="train", scope="loop:1")
    assert reconcile.reconcile_queued_jobs() == {"resent": [], "failed": []}
    settings.JOB_QUEUED_MAX_WAIT_S = 60
    assert reconcile.reconcile_queued_jobs(now=time.time()) == {"resent": [], "failed": [job.pk]}
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "no live worker consumed the train queue" in job.message
