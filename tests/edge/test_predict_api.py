"""POST /api/v1/loops/<id>/predict/: one image or a batch, answered by the deployed LiteRT model."""

import io

import pytest
from django.test import Client
from django.urls import reverse
from PIL import Image

from apps.accounts.services import revoke_device_token
from apps.datasets.models import Sample
from apps.edge.models import EdgeDevice
from apps.edge.services import flush_device_books
from tests.edge.conftest import device_client, scene_png

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["rest", "asgi"])
def transport(request):
    return request.param


def predict_url(loop):
    return reverse("api-edge-predict", args=[loop.pk])


def test_one_image_as_the_raw_body(edge_loop, device):
    response = device.post(predict_url(edge_loop), scene_png(1), content_type="image/png")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["version"] == {"id": edge_loop.deployed_version_id, "number": 1, "label": "v1"}
    assert (body["width"], body["height"]) == (96, 72)
    assert body["miner"] == "CloudOnly" and body["hard"] is True and body["hardness"] == 1.0
    for box in body["boxes"]:
        assert box["class_name"] in {"helmet", "vest", "cone"}
        assert 0 <= box["x1"] < box["x2"] <= 96 and 0 <= box["y1"] < box["y2"] <= 72
        assert 0.0 <= box["score"] <= 1.0


def test_one_image_as_multipart_and_a_batch(edge_loop, device):
    single = device.post(predict_url(edge_loop), {"image": _file(scene_png(2), "a.png")})
    assert single.status_code == 200 and "boxes" in single.json()
    batch = device.post(
        predict_url(edge_loop),
        {"images": [_file(scene_png(3), "b.png"), _file(scene_png(4), "c.png")]},
    )
    assert batch.status_code == 200, batch.content
    body = batch.json()
    assert body["version"]["label"] == "v1"
    assert len(body["results"]) == 2
    assert all("boxes" in result and "hard" in result for result in body["results"])


def test_the_same_image_gets_the_same_boxes_as_the_runner_in_process(edge_loop, device):
    """The API adds nothing and loses nothing: boxes equal the bare LiteRT runner's."""
    from apps.edge import serving
    from worker.edge.inference import decode_image

    data = scene_png(5)
    body = device.post(predict_url(edge_loop), data, content_type="image/png").json()
    image = decode_image(data, max_bytes=10**8, max_pixels=10**8)
    direct = serving.served_model(edge_loop).detector.detect([image])[0]
    assert body["boxes"] == direct.boxes


def test_device_bookkeeping(edge_loop, device):
    device.post(predict_url(edge_loop), scene_png(6), content_type="image/png")
    device.post(predict_url(edge_loop), b"not an image", content_type="image/png")
    flush_device_books()  # predict requests count in Redis; the fleet page flushes first
    record = EdgeDevice.objects.get(token=device.token, loop=edge_loop)
    assert record.images_sent == 1 and record.hard_sent == 1
    assert record.errors == 1 and "not an image" in record.last_error
    assert record.version_id == edge_loop.deployed_version_id and record.last_seen_at


@pytest.mark.parametrize(
    "payload, code, reason",
    [
        (b"", 400, "Empty body"),
        (b"GIF89a not really", 400, "not an image"),
        ("truncated", 400, "corrupt"),
        ("too_many_pixels", 413, "pixels"),
        ("too_large", 413, "limit"),
        ("tiff", 400, "TIFF images are not supported"),
    ],
)
def test_bad_images_are_refused_with_the_reason_and_nothing_is_stored(
    edge_loop, device, settings, payload, code, reason
):
    settings.EDGE_MAX_IMAGE_PIXELS = 200 * 200
    settings.EDGE_MAX_IMAGE_BYTES = 200_000
    if payload == "truncated":
        payload = _jpeg(120, 90)[:3000]
    elif payload == "too_many_pixels":
        payload = _png_blank(300, 300)
    elif payload == "too_large":
        payload = b"\x89PNG" + b"\0" * 200_001
    elif payload == "tiff":
        buffer = io.BytesIO()
        Image.new("RGB", (32, 32)).save(buffer, format="TIFF")
        payload = buffer.getvalue()
    response = device.post(predict_url(edge_loop), payload, content_type="application/octet-stream")
    assert response.status_code == code, response.content
    assert reason in response.json()["detail"]
    assert not Sample.objects.exists()


def test_a_bad_image_in_a_batch_rejects_the_batch_naming_it(edge_loop, device):
    response = device.post(
        predict_url(edge_loop),
        {"images": [_file(scene_png(7), "ok.png"), _file(b"junk", "bad.png")]},
    )
    assert response.status_code == 400
    assert "image 1 (bad.png)" in response.json()["detail"]
    assert not Sample.objects.exists()


def test_too_many_images_in_a_batch(edge_loop, device, settings):
    settings.EDGE_MAX_BATCH = 2
    files = [_file(scene_png(i), f"{i}.png") for i in range(3)]
    response = device.post(predict_url(edge_loop), {"images": files})
    assert response.status_code == 413 and "at most 2" in response.json()["detail"]


def test_a_batch_over_the_request_pixel_limit_is_413_from_the_header_that_passes_it(
    edge_loop, device, settings, monkeypatch
):
    """Each image may be fine alone; together they may not make the process hold more pixels."""
    from worker.edge import inference

    settings.EDGE_MAX_REQUEST_PIXELS = 2 * 96 * 72 + 100  # two 96x72 scenes, not three
    decoded = []
    real_decode = inference.decode_image

    def counting_decode(data, **limits):
        array = real_decode(data, **limits)
        decoded.append(array.shape)
        return array

    monkeypatch.setattr(inference, "decode_image", counting_decode)
    files = [_file(scene_png(i), f"{i}.png") for i in range(3)]
    response = device.post(predict_url(edge_loop), {"images": files})
    assert response.status_code == 413, response.content
    detail = response.json()["detail"]
    assert "image 2 (2.png)" in detail and f"{2 * 96 * 72 + 100:,} pixels together" in detail
    assert len(decoded) == 2  # the third was refused from its header, not decoded
    assert not Sample.objects.exists()


def test_when_every_decoding_slot_is_taken_a_request_gets_503_with_retry_after(
    edge_loop, device, settings, monkeypatch
):
    import threading

    from apps.edge import prediction

    settings.EDGE_DECODE_WAIT_S = 0
    slots = threading.BoundedSemaphore(1)
    monkeypatch.setattr(prediction, "_decode_slots", slots)
    slots.acquire()  # another request is decoding
    try:
        busy = device.post(predict_url(edge_loop), scene_png(1), content_type="image/png")
    finally:
        slots.release()
    assert busy.status_code == 503 and busy["Retry-After"] == "1"
    assert "try again" in busy.json()["detail"]
    assert not Sample.objects.exists()
    again = device.post(predict_url(edge_loop), scene_png(1), content_type="image/png")
    assert again.status_code == 200


@pytest.mark.parametrize("loop_id", [99999, 10**19])
def test_an_unknown_loop_is_404_as_raw_body_and_as_multipart(edge_loop, device, loop_id):
    url = reverse("api-edge-predict", args=[loop_id])
    raw = device.post(url, scene_png(1), content_type="image/png")
    multipart = device.post(url, {"image": _file(scene_png(1), "a.png")})
    assert (raw.status_code, multipart.status_code) == (404, 404), (raw.content, multipart.content)
    assert raw.json()["detail"] == multipart.json()["detail"] == "No Loop matches the given query."


def test_no_deployed_model_is_409(edge_loop, device):
    from apps.loops.models import Loop

    Loop.objects.filter(pk=edge_loop.pk).update(deployed_version=None)
    response = device.post(predict_url(edge_loop), scene_png(1), content_type="image/png")
    assert response.status_code == 409
    assert "no deployed model" in response.json()["detail"]


def test_missing_revoked_and_out_of_scope_tokens(edge_loop, device, admin_user):
    from django.test import Client

    from apps.datasets.services import create_dataset
    from apps.loops.services import create_loop

    url = predict_url(edge_loop)
    assert Client().post(url, scene_png(1), content_type="image/png").status_code == 401
    other_loop = create_loop(
        name="other", dataset=create_dataset(name="other-site", class_names=["cone"])
    )
    stranger = device_client(other_loop, name="cam-elsewhere", transport=device.transport)
    refused = stranger.post(url, scene_png(1), content_type="image/png")
    assert refused.status_code == 403 and "not scoped to loop" in refused.json()["detail"]
    revoke_device_token(device.token.pk)
    assert device.post(url, scene_png(1), content_type="image/png").status_code == 401
    assert not Sample.objects.exists()


def test_over_the_device_rate_is_429_with_retry_after(edge_loop, device, settings):
    settings.EDGE_DEVICE_REQUESTS_PER_MINUTE = 2
    codes = [
        device.post(predict_url(edge_loop), scene_png(i), content_type="image/png")
        for i in range(3)
    ]
    assert [r.status_code for r in codes[:2]] == [200, 200]
    assert codes[2].status_code == 429
    assert 1 <= int(codes[2]["Retry-After"]) <= 61
    assert Sample.objects.count() == 2  # the refused request stored nothing


def test_a_signed_in_viewer_may_predict(edge_loop, client_for, viewer_user):
    response = client_for(viewer_user).post(
        predict_url(edge_loop), scene_png(1), content_type="image/png"
    )
    assert response.status_code == 200


def test_a_viewer_gets_the_answer_but_the_intake_stores_nothing(
    edge_loop, client_for, viewer_user, labeler_user
):
    """A viewer may not add samples: the policy would keep the hard image, but nothing is
    stored or counted against the budget, and the answer says why. A labeler's image is kept."""
    from apps.edge.models import IntakeRecord

    body = (
        client_for(viewer_user)
        .post(predict_url(edge_loop), scene_png(1), content_type="image/png")
        .json()
    )
    assert body["hard"] is True and "boxes" in body
    assert (body["stored"], body["queued"], body["sample_id"]) == (False, False, None)
    assert body["intake"] == "not stored: your role may not add samples"
    assert not Sample.objects.exists() and not IntakeRecord.objects.exists()

    body = (
        client_for(labeler_user)
        .post(predict_url(edge_loop), scene_png(2), content_type="image/png")
        .json()
    )
    assert body["stored"] is True
    assert Sample.objects.get(pk=body["sample_id"]).source == "upload"


def test_a_signed_in_user_sends_a_raw_body_with_a_csrf_token(edge_loop, viewer_user):
    """The CSRF check runs for real here: it must not make the API parse the image."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(viewer_user)
    token = "t" * 32
    browser.cookies["csrftoken"] = token
    for content_type in ("image/png", "application/octet-stream"):
        response = browser.post(
            predict_url(edge_loop), scene_png(1), content_type=content_type, HTTP_X_CSRFTOKEN=token
        )
        assert response.status_code == 200, response.content
    refused = browser.post(predict_url(edge_loop), scene_png(1), content_type="image/png")
    assert refused.status_code == 403  # no token: refused as before


def _file(data: bytes, name: str):
    upload = io.BytesIO(data)
    upload.name = name
    return upload


def _jpeg(width, height) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="JPEG")
    return buffer.getvalue()


def _png_blank(width, height) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_serving_path_never_imports_tensorflow(edge_archive, tmp_path):
    """What the web process runs to answer: Django, the edge API, the LiteRT detector, the
    miner from the YAML. TensorFlow must stay out of it (checked in a fresh interpreter)."""
    import json
    import subprocess
    import sys
    import zipfile

    with zipfile.ZipFile(edge_archive["with_litert"]) as archive:
        (tmp_path / "model.tflite").write_bytes(archive.read("model.tflite"))
        (tmp_path / "config.json").write_bytes(archive.read("config.json"))
    script = f"""
import json, sys, django, numpy as np
django.setup()
import apps.edge.api, apps.edge.serving, apps.loops.views, apps.datasets.api
from worker.edge.inference import EdgeDetector, MinerSpec
from worker.ml.config import load_algorithm_config
from tests.edge.conftest import loop_yaml
miner = MinerSpec.from_config(load_algorithm_config(loop_yaml("IBT")))
detector = EdgeDetector({str(tmp_path / "model.tflite")!r},
                        json.load(open({str(tmp_path / "config.json")!r})), miner)
detector.detect([np.zeros((64, 80, 3), np.uint8)])
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))))
"""
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == []
