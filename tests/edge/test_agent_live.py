"""The edge agent against a live portal (real ASGI server): download with sha256, local answers,
an offline queue that survives a restart and drains without duplicates, and a corrupt new model
refused while the old one keeps serving."""

import hashlib

import pytest
from django.core.files.storage import default_storage

from apps.datasets.models import Sample
from apps.edge.models import EdgeDevice
from apps.edge.services import flush_device_books
from apps.loops import services as loops
from tests.conftest import free_port
from tests.edge.conftest import device_client, scene_png
from worker.edge.agent import EdgeAgent

pytestmark = pytest.mark.slow


def agent_for(url, token, loop, home, **options):
    return EdgeAgent(url, token, loop.pk, home, backoff_base_s=0.05, **options)


def test_download_offline_queue_restart_and_drain_without_duplicates(
    live_portal, edge_loop, tmp_path
):
    token = device_client(edge_loop).raw_token
    home = tmp_path / "agent"
    agent = agent_for(live_portal.url, token, edge_loop, home).start(background=False)
    version = edge_loop.deployed_version
    assert agent.version == {"id": version.pk, "label": "v1"}
    local = home / "models" / f"{version.litert_sha256}.tflite"
    assert hashlib.sha256(local.read_bytes()).hexdigest() == version.litert_sha256
    answer = agent.infer(scene_png(1))
    assert answer["version"]["label"] == "v1" and answer["miner"] == "CloudOnly"
    assert answer["hard"] and answer["queued_for_upload"]
    agent.stop()

    # The portal is unreachable: the agent starts from disk, answers, and queues.
    dead = f"http://127.0.0.1:{free_port()}"
    offline = agent_for(dead, token, edge_loop, home).start(background=False)
    assert offline.version["label"] == "v1"
    for seed in (2, 3):
        assert offline.infer(scene_png(seed))["queued_for_upload"]
    assert offline.drain() == 0 and len(offline.queue) == 3
    offline.stop()

    # Restarted with the portal back: the queue is still there and drains.
    back = agent_for(live_portal.url, token, edge_loop, home).start(background=False)
    assert len(back.queue) == 3
    # An upload whose answer was lost: the same key is sent again on the next drain.
    lost = back.queue.oldest()
    back.portal.upload(lost.image, lost.name, lost.detection, lost.version_id, lost.key)
    assert back.drain() == 3 and len(back.queue) == 0
    samples = Sample.objects.filter(dataset=edge_loop.dataset, source="device")
    assert samples.count() == 3
    assert set(samples.values_list("status", flat=True)) == {"queued"}
    assert all(s.prediction["miner"] == "CloudOnly" for s in samples)
    flush_device_books()  # the server counted them in Redis
    device = EdgeDevice.objects.get(loop=edge_loop)
    assert device.images_sent == 3 and device.hard_sent == 3  # the replay counted nothing
    back.stop()


def test_a_corrupt_new_model_is_refused_and_the_old_one_keeps_serving(
    live_portal, edge_loop, edge_archive, tmp_path
):
    token = device_client(edge_loop).raw_token
    agent = agent_for(live_portal.url, token, edge_loop, tmp_path / "agent").start(background=False)
    assert agent.version["label"] == "v1"
    assert agent.sync_model() is False  # nothing changed: a 304

    # v2's stored file no longer matches its sha256 (damaged in storage or in transit).
    v2 = loops.register_version(edge_loop, edge_archive["other_with_litert"], source="uploaded")
    loops.move_deployed_pointer(v2.pk, action="force", started_by="t", reason="t", job_id=None)
    with default_storage.open(v2.litert.name, "wb") as damaged:
        damaged.write(b"\x00" * 1000)
    assert agent.sync_model() is False
    assert agent.version["label"] == "v1"
    assert agent.status()["refused"][-1]["version"] == "v2"
    assert "sha256" in agent.status()["refused"][-1]["reason"]
    assert agent.infer(scene_png(5))["version"]["label"] == "v1"

    # v3's file matches its sha256 but is not a model: the smoke test refuses it.
    garbage = b"TFL3 this is not a model" * 10
    v3 = loops.register_version(edge_loop, edge_archive["with_litert"], source="uploaded")
    name = default_storage.save(f"models/loop-{edge_loop.pk}/garbage.tflite", _content(garbage))
    type(v3).objects.filter(pk=v3.pk).update(
        litert=name, litert_sha256=hashlib.sha256(garbage).hexdigest()
    )
    loops.move_deployed_pointer(v3.pk, action="force", started_by="t", reason="t", job_id=None)
    assert agent.sync_model() is False
    assert agent.status()["refused"][-1]["version"] == "v3"
    assert agent.infer(scene_png(6))["version"]["label"] == "v1"

    # A good v4 swaps in; the previous model is kept.
    v4 = loops.register_version(edge_loop, edge_archive["other_with_litert"], source="uploaded")
    loops.move_deployed_pointer(v4.pk, action="force", started_by="t", reason="t", job_id=None)
    assert agent.sync_model() is True
    assert agent.infer(scene_png(7))["version"]["label"] == "v4"
    assert agent.status()["previous"] == {"id": edge_loop.deployed_version_id}

    # v5 has the very same .tflite as v4: the agent keeps its runner and names v5.
    v5 = loops.register_version(edge_loop, edge_archive["other_with_litert"], source="uploaded")
    loops.move_deployed_pointer(v5.pk, action="force", started_by="t", reason="t", job_id=None)
    agent.sync_model()
    assert agent.infer(scene_png(8))["version"]["label"] == "v5"
    agent.stop()


def _content(data: bytes):
    from django.core.files.base import ContentFile

    return ContentFile(data)


def test_the_console_program_simulates_an_edge_device(live_portal, edge_loop, tmp_path):
    """`./ilp edge --simulate` (python -m worker.edge): synthetic edge images through the agent,
    hard ones uploaded to the loop's labeling queue, the device on the fleet books."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    token = device_client(edge_loop, name="simulator").raw_token
    completed = subprocess.run(
        [sys.executable, "-m", "worker.edge", "--portal", live_portal.url,
         "--loop", str(edge_loop.pk), "--home", str(tmp_path), "--simulate",
         "--images", "6", "--rate", "50"],
        env={**os.environ, "ILP_DEVICE_TOKEN": token}, cwd=REPO,
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.strip().splitlines()
    assert sum(" v1 boxes=" in line for line in lines) == 6
    summary = json.loads(lines[-1])
    assert summary["images"] == 6 and summary["hard"] == 6  # CloudOnly: every image is hard
    assert summary["queue"] == 0 and summary["uploaded"] == 6
    stored = Sample.objects.filter(dataset=edge_loop.dataset, source="device").count()
    flush_device_books()  # the server counted them in Redis
    duplicates = EdgeDevice.objects.get(loop=edge_loop).hard_sent - stored
    assert stored >= 1 and stored + duplicates == 6  # near-duplicate frames are counted, not kept
    assert token not in completed.stdout + completed.stderr
