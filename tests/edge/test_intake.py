"""What a loop keeps of predicted images: hard ones queued with their pre-annotation, a sampled
share, budgets, near-duplicate suppression, and idempotent uploads from agents."""

import json

import pytest
from django.urls import reverse

from apps.datasets.models import Sample
from apps.edge import services
from apps.edge.models import IntakeOutcome, IntakeRecord
from apps.loops.models import Loop
from tests.edge.conftest import agent_upload, device_client, loop_yaml, named_file, scene_png

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["rest", "asgi"])
def transport(request):
    return request.param


def predict(client, loop, data):
    response = client.post(
        reverse("api-edge-predict", args=[loop.pk]), data, content_type="image/png"
    )
    assert response.status_code == 200, response.content
    return response.json()


def test_a_hard_image_is_stored_with_its_pre_annotation_and_queued(edge_loop, device):
    body = predict(device, edge_loop, scene_png(11))
    assert body["hard"] and body["stored"] and body["queued"]
    sample = Sample.objects.get(pk=body["sample_id"])
    assert sample.source == "device" and sample.status == "queued"
    assert sample.dataset_id == edge_loop.dataset_id
    assert sample.hardness_score == 1.0 and sample.mined_by == "CloudOnly"
    assert sample.prediction["boxes"] == body["boxes"]
    assert sample.prediction["version"] == "v1"
    assert sample.prediction["version_id"] == edge_loop.deployed_version_id
    assert sample.current_annotation_id is None  # the prediction is a proposal, not a label


@pytest.mark.parametrize(
    "sent, kept",
    [
        ("nul%00name.png", "nul name.png"),
        ("a%0D%0Ab%09.png", "a b .png"),
        ("%00%01", "device-image"),
    ],
)
def test_control_characters_of_an_image_name_are_not_stored(edge_loop, device, sent, kept):
    """A NUL in `?name=` was a 500 on PostgreSQL (text columns refuse it), after the image had
    been answered; names are kept without control characters."""
    url = reverse("api-edge-predict", args=[edge_loop.pk]) + f"?name={sent}"
    response = device.post(url, scene_png(40), content_type="image/png")
    assert response.status_code == 200, response.content
    assert Sample.objects.get(pk=response.json()["sample_id"]).original_name == kept


def test_a_nul_in_an_agent_uploads_miner_is_not_stored(edge_loop, device):
    """The miner's name goes into the sample's prediction and mined_by: a NUL was a 500 on
    PostgreSQL."""
    detection = {"boxes": [], "hard": True, "hardness": 0.5, "miner": "IBT\x00x"}
    response = agent_upload(device, edge_loop, scene_png(42), key="k-nul", detection=detection)
    assert response.status_code == 200, response.content
    sample = Sample.objects.get(pk=response.json()["sample_id"])
    assert sample.mined_by == "IBTx" and sample.prediction["miner"] == "IBTx"


def test_the_miner_and_its_thresholds_come_from_the_loop_yaml(edge_loop, device):
    Loop.objects.filter(pk=edge_loop.pk).update(algorithm_yaml=loop_yaml("EdgeOnly"))
    edge_loop.refresh_from_db()
    body = predict(device, edge_loop, scene_png(12))
    assert (body["miner"], body["hard"], body["stored"]) == ("EdgeOnly", False, False)
    assert body["intake"] == "not hard"
    assert not Sample.objects.exists()


def test_store_nothing_and_sampled_share(edge_loop, device):
    services.update_policy(edge_loop, mode="nothing")
    body = predict(device, edge_loop, scene_png(13))
    assert body["hard"] and not body["stored"] and "stores nothing" in body["intake"]
    assert not Sample.objects.exists()

    Loop.objects.filter(pk=edge_loop.pk).update(algorithm_yaml=loop_yaml("EdgeOnly"))
    edge_loop.refresh_from_db()
    services.update_policy(edge_loop, mode="sample", sample_percent=100)
    body = predict(device, edge_loop, scene_png(14))
    assert body["stored"] and not body["queued"] and body["intake"].startswith("sampled")
    assert Sample.objects.get(pk=body["sample_id"]).status == "unlabeled"
    services.update_policy(edge_loop, sample_percent=0)
    assert not predict(device, edge_loop, scene_png(15))["stored"]


def test_hourly_budget_counts_the_rest_without_queueing(edge_loop, device):
    services.update_policy(edge_loop, hard_per_hour=2)
    bodies = [predict(device, edge_loop, scene_png(20 + i)) for i in range(4)]
    assert [b["queued"] for b in bodies] == [True, True, False, False]
    assert "2 hard examples per hour" in bodies[2]["intake"]
    assert bodies[3]["sample_id"] is None and not bodies[3]["stored"]
    assert Sample.objects.count() == 2
    outcomes = list(IntakeRecord.objects.order_by("id").values_list("outcome", flat=True))
    assert outcomes == ["queued", "queued", "over_budget", "over_budget"]


def test_daily_budget(edge_loop, device):
    services.update_policy(edge_loop, hard_per_day=1)
    assert predict(device, edge_loop, scene_png(30))["queued"]
    assert "per day" in predict(device, edge_loop, scene_png(31))["intake"]


def test_a_static_scene_cannot_fill_the_queue(edge_loop, device):
    """Frames of one scene differing in a pixel are near-duplicates; another scene is not."""
    first = predict(device, edge_loop, scene_png(40))
    repeats = [predict(device, edge_loop, scene_png(40, shift=i)) for i in range(1, 4)]
    assert first["queued"]
    assert [r["stored"] for r in repeats] == [False, False, False]
    assert all("near-duplicate" in r["intake"] for r in repeats)
    assert predict(device, edge_loop, scene_png(41))["queued"]
    assert Sample.objects.count() == 2
    assert IntakeRecord.objects.filter(outcome=IntakeOutcome.DUPLICATE).count() == 3


def test_duplicate_window_of_zero_turns_suppression_off(edge_loop, device):
    services.update_policy(edge_loop, duplicate_window=0)
    predict(device, edge_loop, scene_png(42))
    assert predict(device, edge_loop, scene_png(42, shift=3))["queued"]


def test_policy_api_reads_and_admins_change(edge_loop, client_for, admin_user, viewer_user):
    url = reverse("api-edge-intake-policy", args=[edge_loop.pk])
    viewer = client_for(viewer_user)
    assert viewer.get(url).json()["mode"] == "hard"
    assert viewer.put(url, {"mode": "nothing"}, content_type="application/json").status_code == 403
    admin = client_for(admin_user)
    changed = admin.put(
        url, {"mode": "sample", "sample_percent": 5}, content_type="application/json"
    )
    assert changed.status_code == 200 and changed.json()["sample_percent"] == 5
    bad = admin.put(url, {"sample_percent": 150}, content_type="application/json")
    assert bad.status_code == 400
    assert admin.put(url, {"mode": "all"}, content_type="application/json").status_code == 400


def test_policy_page(edge_loop, client_for, admin_user):
    client = client_for(admin_user)
    url = reverse("edge:intake_policy", args=[edge_loop.pk])
    assert b"Intake policy" in client.get(url).content
    response = client.post(
        url,
        {
            "mode": "sample",
            "sample_percent": "2.5",
            "hard_per_hour": "10",
            "hard_per_day": "50",
            "duplicate_window": "100",
            "duplicate_distance": "4",
        },
    )
    assert response.status_code == 302
    assert services.policy_for(edge_loop).hard_per_hour == 10
    refused = client.post(url, {"mode": "sample", "sample_percent": "101"})
    assert refused.status_code == 200 and b"0 to 100" in refused.content


def test_an_agent_upload_with_an_idempotency_key_is_stored_once(edge_loop, device):
    box = {"class_name": "cone", "score": 0.4, "x1": 1, "y1": 2, "x2": 30, "y2": 40}
    first = agent_upload(device, edge_loop, scene_png(50), "img-50", boxes=[box])
    assert first.status_code == 200, first.content
    assert first.json()["queued"]
    retry = agent_upload(device, edge_loop, scene_png(50), "img-50", boxes=[box])
    assert retry.json()["sample_id"] == first.json()["sample_id"] and retry.json()["replayed"]
    assert Sample.objects.count() == 1 and IntakeRecord.objects.count() == 1
    sample = Sample.objects.get()
    assert sample.prediction["boxes"][0]["class_name"] == "cone" and sample.mined_by == "IBT"


@pytest.mark.parametrize(
    "detection, message",
    [
        ("not json", "JSON"),
        (json.dumps({"boxes": [{"class_name": "tractor"}]}), "class_name"),
        (
            json.dumps(
                {
                    "boxes": [
                        {"class_name": "cone", "score": "NaN", "x1": 0, "y1": 0, "x2": 1, "y2": 1}
                    ]
                }
            ),
            "finite",
        ),
        (
            json.dumps(
                {
                    "boxes": [
                        {"class_name": "cone", "score": 0.5, "x1": 9, "y1": 0, "x2": 1, "y2": 1}
                    ]
                }
            ),
            "inverted",
        ),
    ],
)
def test_a_bad_agent_upload_stores_nothing(edge_loop, device, detection, message):
    response = device.post(
        reverse("api-edge-intake", args=[edge_loop.pk]),
        {"image": named_file(scene_png(51)), "detection": detection},
    )
    assert response.status_code == 400 and message in response.json()["detail"]
    assert not Sample.objects.exists()


def test_users_cannot_use_the_agent_intake(edge_loop, client_for, admin_user):
    response = client_for(admin_user).post(
        reverse("api-edge-intake", args=[edge_loop.pk]), {"image": named_file(scene_png(1))}
    )
    assert response.status_code == 403


def test_the_labeling_queue_finds_a_devices_hard_examples(edge_loop, device):
    """The intake's records are what the labeling queue's device filter reads."""
    from apps.labeling import services as labeling

    other = device_client(edge_loop, name="cam-2")
    mine = predict(device, edge_loop, scene_png(41))["sample_id"]
    theirs = predict(other, edge_loop, scene_png(42))["sample_id"]

    def waiting(device_name: str) -> list[int]:
        filters = labeling.QueueFilters.from_query({"device": device_name})
        return [s.pk for s in labeling.waiting_samples(edge_loop.dataset_id, filters)]

    assert labeling.device_filter_available()
    assert waiting("cam-1") == [mine]
    assert waiting("cam-2") == [theirs]
    assert waiting("cam-3") == []


def test_a_raw_body_is_refused_before_it_is_decoded(edge_loop, device, monkeypatch):
    """The intake takes multipart only: a raw image body gets 415 saying what to send, without
    the image being read or decoded (it used to be decoded, then answered 500)."""
    from apps.edge import api

    def no_decode(images):
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(api, "decode", no_decode)
    response = device.post(
        reverse("api-edge-intake", args=[edge_loop.pk]),
        scene_png(52),
        content_type="image/png",
        headers={"Idempotency-Key": "raw-52"},
    )
    assert response.status_code == 415, response.content
    detail = response.json()["detail"]
    assert "multipart" in detail and all(part in detail for part in ("image", "detection"))
    assert not Sample.objects.exists() and not IntakeRecord.objects.exists()


@pytest.mark.parametrize("hard", ["false", "true", 0, 1, None, [], {}])
def test_hard_must_be_a_json_boolean(edge_loop, device, hard):
    """`"hard": "false"` used to count as hard (truthy): the image was queued."""
    response = agent_upload(device, edge_loop, scene_png(53), hard=hard)
    assert response.status_code == 400, response.content
    assert '"hard" must be true or false' in response.json()["detail"]
    assert not Sample.objects.exists() and not IntakeRecord.objects.exists()


def test_boxes_overhanging_the_image_are_clipped_with_a_warning(edge_loop, device):
    """As the annotations API does: the 96x72 image's boxes are clipped to it and stored so."""
    boxes = [
        {"class_name": "cone", "score": 0.5, "x1": -10, "y1": 5, "x2": 40, "y2": 500},
        {"class_name": "vest", "score": 0.7, "x1": 10, "y1": 10, "x2": 20, "y2": 20},
    ]
    response = agent_upload(device, edge_loop, scene_png(54), boxes=boxes)
    assert response.status_code == 200, response.content
    body = response.json()
    clipped = {"class_name": "cone", "score": 0.5, "x1": 0.0, "y1": 5.0, "x2": 40.0, "y2": 72.0}
    assert body["boxes"][0] == clipped and body["boxes"][1]["x2"] == 20.0
    assert (body["width"], body["height"]) == (96, 72)
    assert len(body["warnings"]) == 1 and "96x72 image: clipped" in body["warnings"][0]
    assert Sample.objects.get(pk=body["sample_id"]).prediction["boxes"] == body["boxes"]


@pytest.mark.parametrize(
    "box, message",
    [
        ({"x1": -1e9, "y1": -1e9, "x2": -5, "y2": -5}, "outside the 96x72 image"),
        ({"x1": 200, "y1": 10, "x2": 1e9, "y2": 20}, "outside the 96x72 image"),
        ({"x1": 10, "y1": 10, "x2": 10, "y2": 20}, "empty"),
    ],
)
def test_boxes_outside_the_image_are_refused(edge_loop, device, box, message):
    boxes = [{"class_name": "cone", "score": 0.5, **box}]
    response = agent_upload(device, edge_loop, scene_png(55), boxes=boxes)
    assert response.status_code == 400 and message in response.json()["detail"]
    assert not Sample.objects.exists() and not IntakeRecord.objects.exists()


def test_the_boxes_of_one_image_are_capped(edge_loop, device, settings):
    """DATASET_MAX_BOXES_PER_IMAGE, the annotations' limit, bounds an upload's boxes too."""
    settings.DATASET_MAX_BOXES_PER_IMAGE = 3
    box = {"class_name": "cone", "score": 0.5, "x1": 1, "y1": 1, "x2": 9, "y2": 9}
    assert agent_upload(device, edge_loop, scene_png(56), boxes=[box] * 3).status_code == 200
    response = agent_upload(device, edge_loop, scene_png(57), boxes=[box] * 4)
    assert response.status_code == 400
    assert "DATASET_MAX_BOXES_PER_IMAGE" in response.json()["detail"]
    assert Sample.objects.count() == 1


@pytest.mark.parametrize(
    "change",
    [
        {"hard_per_hour": 1180591620717411303424},
        {"hard_per_day": 9223372036854775808},
        {"hard_per_day": 2**31},
        {"duplicate_window": 10**30},
        {"duplicate_distance": 10**30},
    ],
)
def test_policy_api_names_a_number_too_large(edge_loop, client_for, admin_user, change):
    """A number beyond the column's range is a 400 naming the field (it was a 500)."""
    url = reverse("api-edge-intake-policy", args=[edge_loop.pk])
    response = client_for(admin_user).put(url, change, content_type="application/json")
    assert response.status_code == 400, response.content
    assert list(response.json()) == list(change)
    assert services.policy_for(Loop.objects.get(pk=edge_loop.pk)).hard_per_day == 1000


def test_policy_api_takes_the_largest_budget_and_refuses_unknown_settings(
    edge_loop, client_for, admin_user
):
    url = reverse("api-edge-intake-policy", args=[edge_loop.pk])
    admin = client_for(admin_user)
    largest = {"hard_per_hour": 2**31 - 1, "hard_per_day": 2**31 - 1}
    response = admin.put(url, largest, content_type="application/json")
    assert response.status_code == 200 and response.json()["hard_per_day"] == 2**31 - 1
    unknown = admin.put(url, {"bogus": 1, "mode": "nothing"}, content_type="application/json")
    assert unknown.status_code == 400 and "bogus" in unknown.json()
    assert services.policy_for(Loop.objects.get(pk=edge_loop.pk)).mode == "hard"


def _slot_is_free() -> bool:
    from apps.edge import prediction

    if not prediction._decode_slots.acquire(timeout=0):
        return False
    prediction._decode_slots.release()
    return True


def test_the_decoding_place_is_given_back_before_the_intake_stores(
    edge_loop, device, settings, monkeypatch
):
    """Storing (a write to object storage, the database) may be slow: a request that stores
    must not keep other requests from decoding meanwhile."""
    import threading

    from apps.datasets import services as datasets
    from apps.edge import prediction

    monkeypatch.setattr(prediction, "_decode_slots", threading.BoundedSemaphore(1))
    seen = []
    real_store = datasets.store_sample

    def store_and_look(*args, **kwargs):
        seen.append((_slot_is_free(), kwargs.get("sha256")))
        return real_store(*args, **kwargs)

    monkeypatch.setattr(datasets, "store_sample", store_and_look)
    assert predict(device, edge_loop, scene_png(61))["stored"]
    response = agent_upload(device, edge_loop, scene_png(62), key="k-62")
    assert response.status_code == 200 and response.json()["stored"], response.content
    assert [free for free, _ in seen] == [True, True]
    # The intake's digest for the Idempotency-Key is the one the sample is stored under.
    assert seen[1][1] == Sample.objects.get(pk=response.json()["sample_id"]).sha256


def test_an_image_without_a_hash_is_not_stored(edge_loop):
    """Hashes are taken while the images are decoded, for those the policy kept then; an image
    that a policy changed meanwhile would keep has none and is not stored without one."""
    services.update_policy(edge_loop, mode="sample", sample_percent=100)
    item = services.IntakeItem(
        data=scene_png(63),
        original_name="a.png",
        detection={"boxes": [], "hard": False},
        version_id=edge_loop.deployed_version_id,
        version_label="v1",
        image_hash=None,
    )
    (decision,) = services.take_in(edge_loop, [item], device=None, source="device")
    assert not decision.stored and "changed" in decision.reason
    assert not Sample.objects.exists()
