"""Saving a label (POST /api/v1/samples/<id>/annotations/): base revision, claims, refusals."""

import json

import pytest

from apps.datasets.events import labels_changed
from apps.datasets.models import Annotation, Box
from apps.labeling import services
from apps.labeling.models import Claim
from tests.factories import UserFactory
from tests.labeling.conftest import queued_samples, refresh

BOX = {"class_name": "cone", "x1": 10, "y1": 12, "x2": 50, "y2": 60}


def post(client, sample, body, **extra):
    return client.post(
        f"/api/v1/samples/{sample.pk}/annotations/",
        json.dumps(body),
        content_type="application/json",
        **extra,
    )


@pytest.fixture
def announced():
    calls = []

    def receiver(**kwargs):
        calls.append(kwargs)

    labels_changed.connect(receiver)
    yield calls
    labels_changed.disconnect(receiver)


def test_a_label_is_a_new_revision_in_pixels_and_announced_once(
    dataset, labeler_user, client_for, announced, django_capture_on_commit_callbacks
):
    (sample,) = queued_samples(dataset, 1)
    services.claim_batch(dataset.pk, labeler_user, size=1)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client_for(labeler_user), sample, {"boxes": [BOX], "base_revision": 0})
    assert response.status_code == 201, response.content
    assert response.json()["revision"] == 1 and response.json()["held_for_review"] is False
    sample = refresh(sample)
    assert sample.status == "labeled"
    assert [b.as_dict() for b in sample.current_annotation.boxes.all()] == [
        {"class_name": "cone", "x1": 10.0, "y1": 12.0, "x2": 50.0, "y2": 60.0}
    ]
    assert [(c["sample_ids"], c["source"]) for c in announced] == [((sample.pk,), "manual")]
    assert not Claim.objects.exists()  # the claim ends with the save


def test_no_objects_is_a_valid_answer(dataset, labeler_user, client_for):
    (sample,) = queued_samples(dataset, 1)
    response = post(client_for(labeler_user), sample, {"boxes": [], "base_revision": 0})
    assert response.status_code == 201
    sample = refresh(sample)
    assert sample.status == "labeled" and sample.current_annotation.boxes.count() == 0


def test_saving_over_a_newer_revision_is_refused(dataset, labeler_user, client_for):
    (sample,) = queued_samples(dataset, 1)
    client = client_for(labeler_user)
    assert post(client, sample, {"boxes": [BOX], "base_revision": 0}).status_code == 201
    stale = post(client, sample, {"boxes": [], "base_revision": 0})
    assert stale.status_code == 409
    assert "revision 0" in stale.json()["detail"] and "newest is 1" in stale.json()["detail"]
    assert stale.json()["code"] == "stale_revision"
    assert Annotation.objects.filter(sample=sample).count() == 1
    assert refresh(sample).current_annotation.boxes.count() == 1
    # Starting from the newest works; leaving the field out skips the check (older clients).
    assert post(client, sample, {"boxes": [], "base_revision": 1}).status_code == 201
    assert post(client, sample, {"boxes": [BOX]}).status_code == 201


def test_a_sample_claimed_by_someone_else_is_refused(dataset, labeler_user, client_for):
    (sample,) = queued_samples(dataset, 1)
    omar = UserFactory(username="omar", role="labeler")
    services.claim_batch(dataset.pk, omar, size=1)
    response = post(client_for(labeler_user), sample, {"boxes": [BOX], "base_revision": 0})
    assert response.status_code == 409
    assert "claimed by omar" in response.json()["detail"]
    assert response.json()["code"] == "claimed_by_other"
    assert not Annotation.objects.exists()


def test_a_viewer_may_not_save(dataset, viewer_user, client_for):
    (sample,) = queued_samples(dataset, 1)
    response = post(client_for(viewer_user), sample, {"boxes": [BOX], "base_revision": 0})
    assert response.status_code == 403
    assert response.json()["detail"]
    assert not Annotation.objects.exists()


@pytest.mark.parametrize(
    ("box", "reason"),
    [
        ({**BOX, "x2": 10}, "empty"),
        ({**BOX, "x1": 500, "x2": 600}, "outside"),
        ({**BOX, "class_name": "giraffe"}, "giraffe"),
        ({**BOX, "x1": "NaN"}, "x1"),
        ({"class_name": "cone", "x1": 1}, "x2"),
    ],
)
def test_bad_boxes_are_refused_with_the_reason(dataset, labeler_user, client_for, box, reason):
    (sample,) = queued_samples(dataset, 1)
    response = post(client_for(labeler_user), sample, {"boxes": [BOX, box], "base_revision": 0})
    assert response.status_code == 400
    assert reason in json.dumps(response.json())
    assert not Annotation.objects.exists() and not Box.objects.exists()


def test_a_body_over_the_size_limit_gets_json_with_the_reason(dataset, labeler_user, client_for):
    (sample,) = queued_samples(dataset, 1)
    huge = {"boxes": [BOX] * 100_000, "base_revision": 0}  # about 6 MB
    response = post(client_for(labeler_user), sample, huge)
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert "larger than the 2,621,440 bytes" in response.json()["detail"]
    assert not Annotation.objects.exists()


def test_malformed_json_gets_json_with_the_reason(dataset, labeler_user, client_for):
    (sample,) = queued_samples(dataset, 1)
    response = client_for(labeler_user).post(
        f"/api/v1/samples/{sample.pk}/annotations/", "{nope", content_type="application/json"
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]
