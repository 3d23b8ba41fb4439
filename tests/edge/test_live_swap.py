"""Through a real ASGI server and Celery worker: predict, intake, and deploy + rollback during a
stream of predict requests with no failed request and every answer naming a deployed version."""

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from apps.datasets.models import Sample
from apps.edge import services
from apps.loops import services as loops
from apps.loops.models import Deployment, Loop, ModelVersion
from tests.edge.conftest import device_client, scene_png

pytestmark = pytest.mark.slow


@pytest.fixture
def no_rate_limit(monkeypatch):
    """Processes the live portal starts read this (requested before live_portal)."""
    monkeypatch.setenv("EDGE_DEVICE_REQUESTS_PER_MINUTE", "0")


def post_image(url, token, data, timeout=30):
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "image/png"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)


def wait_for(condition, portal, timeout_s=240, what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}\n{portal.read_logs()[-6000:]}")


def test_deploy_and_rollback_during_a_stream_of_predictions(
    no_rate_limit, live_portal, edge_loop, edge_archive, admin_user
):
    token = device_client(edge_loop).raw_token
    url = f"{live_portal.url}/api/v1/loops/{edge_loop.pk}/predict/"
    v1 = edge_loop.deployed_version

    # A hard image through the real server: stored with its pre-annotation, queued.
    code, body = post_image(url, token, scene_png(1))
    assert code == 200, body
    sample = Sample.objects.get(pk=body["sample_id"])
    assert sample.status == "queued" and sample.prediction["boxes"] == body["boxes"]
    services.update_policy(edge_loop, mode="nothing")  # the stream below stores nothing

    # v2 comes without a .tflite: the deploy job converts it before moving the pointer.
    v2 = loops.register_version(edge_loop, edge_archive["without_litert"], source="uploaded")
    assert not v2.litert_sha256

    answers = []
    stop = threading.Event()

    def stream(seed):
        index = 0
        while not stop.is_set():
            started = time.time()
            code, body = post_image(url, token, scene_png(seed * 1000 + index % 20))
            answers.append((started, time.time(), code, body))
            index += 1

    clients = [threading.Thread(target=stream, args=(seed,)) for seed in range(3)]
    for client in clients:
        client.start()
    try:
        time.sleep(2)
        loops.start_deploy(v2, user=admin_user, action="force", reason="try v2 on the line")
        wait_for(
            lambda: Loop.objects.get(pk=edge_loop.pk).deployed_version_id == v2.pk,
            live_portal,
            what="the deploy of v2",
        )
        time.sleep(3)
        loops.start_deploy(v1, user=admin_user, action="rollback")
        wait_for(
            lambda: Loop.objects.get(pk=edge_loop.pk).deployed_version_id == v1.pk,
            live_portal,
            what="the rollback to v1",
        )
        time.sleep(3)
    finally:
        stop.set()
        for client in clients:
            client.join(60)

    failed = [(code, body) for _, _, code, body in answers if code != 200]
    assert not failed, failed[:3]
    assert ModelVersion.objects.get(pk=v2.pk).litert_sha256  # converted once, stored
    timeline = [
        (d.created_at.timestamp(), d.version_id)
        for d in Deployment.objects.filter(loop=edge_loop).order_by("created_at", "id")
    ]
    slack = 0.5  # the pointer is visible at commit, a moment after the row's timestamp
    for started, finished, _, body in answers:
        live = {version for at, version in timeline if at <= started}
        current = max((t for t in timeline if t[0] <= started - slack), default=timeline[0])
        allowed = {current[1]} | {v for at, v in timeline if started - slack < at <= finished}
        assert body["version"]["id"] in allowed, (started, finished, body["version"], timeline)
        assert live  # the stream began after v1 was deployed
    named = [body["version"]["label"] for _, _, _, body in answers]
    assert "v2" in named and named[0] == "v1" and named[-1] == "v1"
    assert len(answers) > 30
