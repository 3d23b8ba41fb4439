"""Review: while a loop reviews, only accepted labels count (current label, snapshot, events)."""

import json

import pytest

from apps.datasets.events import labels_changed
from apps.datasets.services import labeled_snapshot
from apps.labeling import services
from apps.labeling.models import Claim, LabelReview
from apps.loops.models import Loop
from tests.factories import UserFactory
from tests.labeling.conftest import queued_samples, refresh

BOX = {"class_name": "cone", "x1": 10, "y1": 12, "x2": 50, "y2": 60}


@pytest.fixture
def reviewed_loop(dataset):
    loop = Loop.objects.create(name="line-1", dataset=dataset, algorithm_yaml="basemodel: {}")
    services.set_review(loop.pk, True)
    return loop


@pytest.fixture
def announced():
    calls = []

    def receiver(**kwargs):
        calls.append(kwargs)

    labels_changed.connect(receiver)
    yield calls
    labels_changed.disconnect(receiver)


def save(client, sample, base=0, boxes=(BOX,)):
    return client.post(
        f"/api/v1/samples/{sample.pk}/annotations/",
        json.dumps({"boxes": list(boxes), "base_revision": base}),
        content_type="application/json",
    )


def test_a_held_label_does_not_count_until_accepted(
    dataset, reviewed_loop, labeler_user, admin_user, client_for, announced,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    (sample,) = queued_samples(dataset, 1, split="train")
    with django_capture_on_commit_callbacks(execute=True):
        response = save(client_for(labeler_user), sample)
    assert response.status_code == 201 and response.json()["held_for_review"] is True
    sample = refresh(sample)
    assert sample.current_annotation_id is None and sample.status == "unlabeled"
    assert labeled_snapshot(dataset.pk) == []
    assert announced == []
    assert services.queue_counters(dataset.pk, labeler_user).pending_review == 1

    review = LabelReview.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(admin_user).post(
            f"/label/reviews/{review.pk}/", {"decision": "accept"}
        )
    assert response.status_code == 302
    sample = refresh(sample)
    assert sample.current_annotation_id == review.annotation_id and sample.status == "labeled"
    assert labeled_snapshot(dataset.pk) == [(sample.pk, review.annotation_id)]
    assert [(c["sample_ids"], c["source"]) for c in announced] == [((sample.pk,), "review")]


def test_a_rejected_label_goes_back_to_its_labeler_first(
    dataset, reviewed_loop, labeler_user, admin_user, client_for
):
    (sample,) = queued_samples(dataset, 1)
    assert save(client_for(labeler_user), sample).status_code == 201
    review = LabelReview.objects.get()
    admin = client_for(admin_user)
    no_comment = admin.post(f"/label/reviews/{review.pk}/", {"decision": "reject"})
    assert no_comment.status_code == 302
    assert LabelReview.objects.get().state == "pending"
    admin.post(f"/label/reviews/{review.pk}/", {"decision": "reject", "comment": "missed a cone"})
    assert LabelReview.objects.get().state == "rejected"
    sample = refresh(sample)
    assert sample.status == "queued" and sample.current_annotation_id is None
    claim = Claim.objects.get(sample=sample)
    assert claim.user == labeler_user and claim.returned
    # Someone else does not get it; its labeler does, with the comment and their boxes.
    assert services.claim_batch(dataset.pk, UserFactory(role="labeler"), size=5) == []
    payload = (
        client_for(labeler_user)
        .post(f"/label/datasets/{dataset.pk}/claim/", {}, content_type="application/json")
        .json()["samples"][0]
    )
    assert payload["id"] == sample.pk and payload["rejected_comment"] == "missed a cone"
    assert payload["base_revision"] == 1 and payload["boxes"][0]["class_name"] == "cone"
    assert save(client_for(labeler_user), sample, base=1).status_code == 201
    assert LabelReview.objects.filter(state="pending").count() == 1


def test_without_review_labels_count_at_once(dataset, labeler_user, client_for):
    Loop.objects.create(name="line-2", dataset=dataset, algorithm_yaml="basemodel: {}")
    (sample,) = queued_samples(dataset, 1)
    assert save(client_for(labeler_user), sample).json()["held_for_review"] is False
    assert refresh(sample).current_annotation_id is not None


def test_an_earlier_accepted_label_stays_current_while_a_new_one_waits(
    dataset, reviewed_loop, labeler_user, admin_user, client_for
):
    (sample,) = queued_samples(dataset, 1)
    save(client_for(labeler_user), sample)
    services.accept_review(LabelReview.objects.get().pk, reviewer=admin_user)
    first = refresh(sample).current_annotation_id
    assert save(client_for(labeler_user), sample, base=1, boxes=[]).status_code == 201
    assert refresh(sample).current_annotation_id == first
    assert refresh(sample).status == "labeled"


def test_only_reviewers_decide(dataset, reviewed_loop, labeler_user, client_for):
    (sample,) = queued_samples(dataset, 1)
    save(client_for(labeler_user), sample)
    review = LabelReview.objects.get()
    response = client_for(labeler_user).post(f"/label/reviews/{review.pk}/", {"decision": "accept"})
    assert response.status_code == 403
    assert LabelReview.objects.get().state == "pending"


def test_the_review_setting_is_changed_on_the_queue_page(dataset, admin_user, client_for):
    loop = Loop.objects.create(name="line-3", dataset=dataset, algorithm_yaml="basemodel: {}")
    client = client_for(admin_user)
    client.post(f"/label/loops/{loop.pk}/review/", {"review_labels": "on"})
    assert services.loop_reviews(loop.pk)
    client.post(f"/label/loops/{loop.pk}/review/", {})
    assert not services.loop_reviews(loop.pk)


@pytest.mark.parametrize(
    "next_url", ["https://evil.example/phish", "//evil.example/x", "/\\evil.example", ""]
)
def test_the_review_setting_never_redirects_off_site(dataset, admin_user, client_for, next_url):
    loop = Loop.objects.create(name="line-3", dataset=dataset, algorithm_yaml="basemodel: {}")
    response = client_for(admin_user).post(
        f"/label/loops/{loop.pk}/review/", {"review_labels": "on", "next": next_url}
    )
    assert response.status_code == 302
    assert response["Location"] == f"/label/datasets/{dataset.pk}/"


def test_the_review_setting_goes_back_to_the_page_it_was_changed_on(
    dataset, admin_user, client_for
):
    loop = Loop.objects.create(name="line-3", dataset=dataset, algorithm_yaml="basemodel: {}")
    back = f"/label/datasets/{dataset.pk}/?order=newest"
    response = client_for(admin_user).post(f"/label/loops/{loop.pk}/review/", {"next": back})
    assert response["Location"] == back
