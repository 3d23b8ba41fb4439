"""A system-check job through a real Celery worker, watched over a real WebSocket."""

import asyncio
import json
import time

import pytest
import websockets
from django.test import Client

from apps.jobs import services
from apps.jobs.models import Job, JobStatus
from tests.factories import UserFactory


async def _collect_until_finished(url: str, cookie: str, origin: str) -> list[dict]:
    messages = []
    async with websockets.connect(
        url, additional_headers={"Cookie": cookie, "Origin": origin}, open_timeout=10
    ) as socket:
        while True:
            message = json.loads(await asyncio.wait_for(socket.recv(), timeout=60))
            messages.append(message)
            if message["event"] == "state" and not message["job"]["is_active"]:
                return messages


def test_system_check_runs_on_a_worker_and_streams_progress_in_order(live_portal, monkeypatch):
    admin = UserFactory(role="admin")
    client = Client()
    client.force_login(admin)
    cookie = f"sessionid={client.cookies['sessionid'].value}"

    # Hold the enqueue until the socket listens, so every message of the run is seen.
    enqueue, held = services._enqueue, []
    monkeypatch.setattr(services, "_enqueue", lambda *args: held.append(args))
    job = services.start_job("system_check", user=admin, params={"step_delay_s": 0.2})
    assert len(held) == 1

    async def watch():
        listener = asyncio.create_task(
            _collect_until_finished(
                f"{live_portal.ws_url}/ws/jobs/{job.pk}/", cookie, live_portal.url
            )
        )
        await asyncio.sleep(1.0)
        await asyncio.to_thread(enqueue, *held[0])
        return await listener

    messages = asyncio.run(watch())

    states = [m["job"] for m in messages if m["event"] == "state"]
    logs = [m["line"] for m in messages if m["event"] == "log"]
    assert states[0]["status"] == "queued"
    assert states[-1]["status"] == "succeeded", live_portal.read_logs()
    assert states[-1]["progress"] == 100
    progress = [s["progress"] for s in states]
    assert progress == sorted(progress), progress
    assert len(set(progress)) >= 4
    steps = [line.split(" ", 1)[1].split(":")[0] for line in logs]
    assert steps == ["Database", "Storage", "Broker", "Workers"]

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert set(job.result) == {"database", "storage", "broker", "workers"}
    assert "test-" in job.result["workers"]
    assert job.worker.startswith("test-")


def test_a_second_delivery_of_the_same_job_is_ignored_by_the_worker(live_portal):
    from ilportal.celery import app

    admin = UserFactory(role="admin")
    job = services.start_job("system_check", user=admin, params={"step_delay_s": 0})
    app.send_task("ilportal.system_check", args=[job.pk], queue="default")  # duplicate
    for _ in range(150):
        job.refresh_from_db()
        if not job.is_active:
            break
        time.sleep(0.2)
    assert job.status == JobStatus.SUCCEEDED, live_portal.read_logs()
    for _ in range(50):  # the duplicate is delivered too, and refused by the claim
        if "was not queued any more" in live_portal.read_logs():
            break
        time.sleep(0.2)
    assert f"job {job.pk} was not queued any more" in live_portal.read_logs()
    job.refresh_from_db()
    assert job.log.count("Database: ok") == 1
    assert Job.objects.count() == 1


def test_a_websocket_for_a_job_the_user_may_not_see_is_refused(live_portal):
    nobody = UserFactory()
    job = services.start_job("system_check", params={"step_delay_s": 0})
    client = Client()
    client.force_login(nobody)
    cookie = f"sessionid={client.cookies['sessionid'].value}"

    async def connect():
        async with websockets.connect(
            f"{live_portal.ws_url}/ws/jobs/{job.pk}/",
            additional_headers={"Cookie": cookie, "Origin": live_portal.url},
        ):
            pass

    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        asyncio.run(connect())
    assert refused.value.response.status_code == 403
