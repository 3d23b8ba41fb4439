"""An agent's intake upload with an Idempotency-Key is taken in once: the key is claimed before
any work, so a retry racing its first attempt waits for that answer instead of storing the image
again; the key is bound to its loop and image; a failed request gives the key back."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client

from apps.datasets.models import Sample
from apps.datasets.services import create_dataset
from apps.edge import services
from apps.edge.models import IntakeRecord, UploadReceipt
from apps.loops import services as loops
from tests.edge.conftest import agent_upload, device_client, scene_png

pytestmark = pytest.mark.django_db


def _slow_take_in(monkeypatch, seconds: float) -> None:
    """The first request is still working when its retries arrive."""
    take_in = services.take_in

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return take_in(*args, **kwargs)

    monkeypatch.setattr(services, "take_in", slow)


def _at_once(device, loop, images: list[bytes], key: str) -> list:
    """Sends the uploads from as many threads at the same moment (one connection each)."""
    barrier = threading.Barrier(len(images))
    answers = [None] * len(images)

    def send(index: int) -> None:
        client = Client(headers={"Authorization": f"Bearer {device.raw_token}"})
        barrier.wait()
        try:
            answers[index] = agent_upload(client, loop, images[index], key)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_with_one_key_store_the_image_once(edge_loop, device, monkeypatch):
    """Four copies of one upload at once (a retry racing its first attempt): one sample, one
    intake record, and every answer is the first one's (three of them `replayed`)."""
    monkeypatch.setattr(services, "RECEIPT_WAIT_S", 60)  # a slow machine is not what is tested
    _slow_take_in(monkeypatch, 0.5)
    answers = _at_once(device, edge_loop, [scene_png(60)] * 4, "same-image")
    assert [a.status_code for a in answers] == [200] * 4, [a.content for a in answers]
    bodies = [a.json() for a in answers]
    assert sorted(bool(b.get("replayed")) for b in bodies) == [False, True, True, True]
    assert len({b["sample_id"] for b in bodies}) == 1 and bodies[0]["queued"]
    assert Sample.objects.count() == 1 and IntakeRecord.objects.count() == 1
    assert UploadReceipt.objects.get().response["sample_id"] == bodies[0]["sample_id"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_uploads_of_other_images_with_one_key_store_one(edge_loop, device, monkeypatch):
    """Six different images under one key at once: one is taken in, the others are refused
    (422) and nothing of theirs is stored; none is told it was stored."""
    _slow_take_in(monkeypatch, 0.3)
    answers = _at_once(device, edge_loop, [scene_png(70 + i) for i in range(6)], "one-key")
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 422, 422, 422, 422, 422], [a.content for a in answers]
    refused = [a.json()["detail"] for a in answers if a.status_code == 422]
    assert all("another image" in detail for detail in refused)
    assert Sample.objects.count() == 1 and IntakeRecord.objects.count() == 1


def test_a_retry_waits_for_the_first_answer_and_replays_it(edge_loop, device, monkeypatch):
    """The key is claimed by a request still running: the retry waits for its answer."""
    claim, _ = services.claim_receipt(
        device.token, "k-wait", loop=edge_loop, image_sha256=_sha(scene_png(61))
    )
    answer = {"stored": True, "queued": True, "intake": "hard", "sample_id": 12345}

    def first_request_answers(seconds):  # while the retry waits, the first request finishes
        services.keep_receipt(claim, answer)

    monkeypatch.setattr(services.time, "sleep", first_request_answers)
    response = agent_upload(device, edge_loop, scene_png(61), "k-wait")
    assert response.status_code == 200
    assert response.json() == answer | {"replayed": True}
    assert not Sample.objects.exists()


def test_a_retry_while_the_first_request_runs_too_long_gets_409(edge_loop, device, monkeypatch):
    monkeypatch.setattr(services, "RECEIPT_WAIT_S", 0.1)
    image = scene_png(62)
    services.claim_receipt(device.token, "k-busy", loop=edge_loop, image_sha256=_sha(image))
    busy = agent_upload(device, edge_loop, image, "k-busy")
    assert busy.status_code == 409, busy.content
    assert "in progress" in busy.json()["detail"] and busy["Retry-After"] == "2"
    assert not Sample.objects.exists() and UploadReceipt.objects.get().response is None


def test_a_claim_left_by_a_dead_request_is_taken_over(edge_loop, device):
    services.claim_receipt(device.token, "k-dead", loop=edge_loop, image_sha256=_sha(scene_png(63)))
    long_ago = services.timezone.now() - timedelta(seconds=services.RECEIPT_STALE_S + 1)
    UploadReceipt.objects.update(created_at=long_ago)
    response = agent_upload(device, edge_loop, scene_png(63), "k-dead")
    assert response.status_code == 200 and response.json()["queued"], response.content
    assert "replayed" not in response.json() and Sample.objects.count() == 1


def test_a_refused_upload_gives_its_key_back(edge_loop, device):
    """A 400 stores no receipt: the corrected retry with the same key is taken in."""
    bad = {"boxes": [], "hard": "yes", "hardness": 0.5}
    refused = agent_upload(device, edge_loop, scene_png(64), "k-fix", detection=bad)
    assert refused.status_code == 400 and not UploadReceipt.objects.exists()
    retry = agent_upload(device, edge_loop, scene_png(64), "k-fix")
    assert retry.status_code == 200 and retry.json()["queued"] and "replayed" not in retry.json()


def test_a_failing_upload_gives_its_key_back(edge_loop, device, monkeypatch):
    """A 500 (here: the intake's database write fails) leaves no claim behind either."""
    take_in = services.take_in

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(services, "take_in", broken)
    with pytest.raises(RuntimeError):
        agent_upload(device, edge_loop, scene_png(65), "k-500")
    assert not UploadReceipt.objects.exists()
    monkeypatch.setattr(services, "take_in", take_in)
    retry = agent_upload(device, edge_loop, scene_png(65), "k-500")
    assert retry.status_code == 200 and retry.json()["queued"]


def test_a_key_is_bound_to_its_loop_and_image(edge_loop, admin_user):
    """The same key on another loop, or with another image, is refused (422), not answered
    with the first upload's answer; the true retry is still replayed."""
    other = loops.create_loop(
        name="other-line", dataset=create_dataset(name="other", class_names=["cone"])
    )
    device = device_client(edge_loop, other, name="cam-both")
    first = agent_upload(device, edge_loop, scene_png(66), "k-bound")
    assert first.status_code == 200 and first.json()["queued"]

    elsewhere = agent_upload(device, other, scene_png(67), "k-bound")
    assert elsewhere.status_code == 422
    assert f"loop {edge_loop.pk}" in elsewhere.json()["detail"]
    other_image = agent_upload(device, edge_loop, scene_png(67), "k-bound")
    assert other_image.status_code == 422
    assert "another image" in other_image.json()["detail"]
    assert Sample.objects.count() == 1 and IntakeRecord.objects.count() == 1

    retry = agent_upload(device, edge_loop, scene_png(66), "k-bound")
    assert retry.status_code == 200 and retry.json()["replayed"]
    assert retry.json()["sample_id"] == first.json()["sample_id"]
    # Keys are per token: another device may use the same one.
    assert agent_upload(device_client(other), other, scene_png(67), "k-bound").status_code == 200


def test_a_key_that_no_receipt_can_hold_as_sent_is_refused(edge_loop, device):
    """Keys used to be cut to 100 characters, so two uploads whose keys shared their first 100
    were one key (the second, another image, got 422 and an agent dropped it); a NUL was a 500
    on PostgreSQL. Both are a 400 that says what a key may be, and store nothing."""
    first = agent_upload(device, edge_loop, scene_png(68), "p" * 100 + "-1")
    assert first.status_code == 400 and "at most 100 characters" in first.json()["detail"]
    nul = agent_upload(device, edge_loop, scene_png(69), "a\x00b")
    assert nul.status_code == 400 and "control characters" in nul.json()["detail"]
    assert not Sample.objects.exists() and not UploadReceipt.objects.exists()
    longest = agent_upload(device, edge_loop, scene_png(68), "p" * 100)
    assert longest.status_code == 200 and longest.json()["queued"]
    assert UploadReceipt.objects.get().key == "p" * 100


def test_receipts_are_pruned_after_their_keep_time(edge_loop, device):
    """One receipt per agent upload was kept for ever; beat removes those past the keep time,
    and a retry that comes after that stores the image no second time."""
    from django.utils import timezone

    from ilportal.celery import app

    old = agent_upload(device, edge_loop, scene_png(90), "k-old")
    agent_upload(device, edge_loop, scene_png(91), "k-new")
    long_ago = timezone.now() - timedelta(days=services.RECEIPT_KEEP_DAYS, seconds=1)
    UploadReceipt.objects.filter(key="k-old").update(created_at=long_ago)
    assert services.prune_receipts() == 1
    assert list(UploadReceipt.objects.values_list("key", flat=True)) == ["k-new"]
    late_retry = agent_upload(device, edge_loop, scene_png(90), "k-old")
    assert late_retry.status_code == 200 and not late_retry.json()["stored"]
    assert Sample.objects.count() == 2 and old.json()["stored"]
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert "ilportal.prune_upload_receipts" in scheduled


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
