"""Claims: a batch per labeler, never the same image twice, expiry, admin release."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.labeling import services
from apps.labeling.models import Claim
from tests.factories import UserFactory
from tests.labeling.conftest import queued_samples, refresh


def test_a_batch_is_claimed_in_hardness_order_nulls_last(dataset):
    samples = queued_samples(dataset, 5, hardness=[0.2, None, 0.9, 0.5, None])
    lena = UserFactory(role="labeler")
    ids = services.claim_batch(dataset.pk, lena, size=4)
    by_id = {s.pk: s for s in samples}
    assert [by_id[i].hardness_score for i in ids] == [0.9, 0.5, 0.2, None]
    assert Claim.objects.filter(user=lena).count() == 4


def test_two_labelers_never_share_an_image(dataset):
    queued_samples(dataset, 6)
    lena, omar = UserFactory(role="labeler"), UserFactory(role="labeler")
    first = services.claim_batch(dataset.pk, lena, size=4)
    second = services.claim_batch(dataset.pk, omar, size=4)
    assert len(first) == 4 and len(second) == 2
    assert not set(first) & set(second)
    # Asking again returns the same held claims, not new ones.
    assert services.claim_batch(dataset.pk, lena, size=4) == first


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_in_threads_do_not_overlap(dataset):
    queued_samples(dataset, 12)
    users = [UserFactory(role="labeler") for _ in range(4)]
    results, errors = {}, []
    barrier = threading.Barrier(len(users))

    def claim(user):
        try:
            barrier.wait()
            results[user.pk] = services.claim_batch(dataset.pk, user, size=3)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    claimed = [i for ids in results.values() for i in ids]
    assert len(claimed) == len(set(claimed))
    # Every claim row belongs to the user the service said it belongs to.
    for user_id, ids in results.items():
        assert set(Claim.objects.filter(sample_id__in=ids).values_list("user_id", flat=True)) <= {
            user_id
        }


def test_an_abandoned_claim_returns_after_expiry(dataset):
    queued_samples(dataset, 1)
    lena, omar = UserFactory(role="labeler"), UserFactory(role="labeler")
    (sample_id,) = services.claim_batch(dataset.pk, lena, size=1)
    assert services.claim_batch(dataset.pk, omar, size=1) == []
    Claim.objects.filter(sample_id=sample_id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.claim_batch(dataset.pk, omar, size=1) == [sample_id]
    assert Claim.objects.get(sample_id=sample_id).user == omar


def test_an_admin_releases_claims(dataset, admin_user, client_for):
    queued_samples(dataset, 3)
    lena = UserFactory(role="labeler")
    services.claim_batch(dataset.pk, lena, size=3)
    response = client_for(admin_user).post(f"/label/datasets/{dataset.pk}/claims/release/")
    assert response.status_code == 302
    assert not Claim.objects.exists()


def test_a_labeler_may_not_release_everyones_claims(dataset, labeler_user, client_for):
    queued_samples(dataset, 1)
    services.claim_batch(dataset.pk, UserFactory(role="labeler"), size=1)
    response = client_for(labeler_user).post(f"/label/datasets/{dataset.pk}/claims/release/")
    assert response.status_code == 403
    assert Claim.objects.count() == 1


def test_claim_endpoint_returns_editor_payloads(dataset, labeler_user, client_for):
    samples = queued_samples(dataset, 2, hardness=[0.1, 0.7])
    samples[1].prediction = [
        {"class_name": "cone", "score": 0.8, "x1": 1, "y1": 2, "x2": 30, "y2": 40},
        {"class_name": "cone", "score": "bad"},
        "garbage",
    ]
    samples[1].save(update_fields=["prediction"])
    response = client_for(labeler_user).post(
        f"/label/datasets/{dataset.pk}/claim/", {"size": 5}, content_type="application/json"
    )
    assert response.status_code == 200
    body = response.json()
    assert [s["id"] for s in body["samples"]] == [samples[1].pk, samples[0].pk]
    first = body["samples"][0]
    assert first["base_revision"] == 0 and first["boxes"] == []
    assert first["image_url"] == f"/datasets/samples/{samples[1].pk}/image/"
    assert [(p["class_name"], p["score"]) for p in first["prediction"]] == [("cone", 0.8)]
    assert body["counters"]["waiting"] == 2


def test_a_viewer_cannot_claim(dataset, viewer_user, client_for):
    queued_samples(dataset, 1)
    response = client_for(viewer_user).post(
        f"/label/datasets/{dataset.pk}/claim/", {}, content_type="application/json"
    )
    assert response.status_code == 403
    assert response.json()["detail"]
    assert not Claim.objects.exists()


def test_label_this_claims_one_given_sample(dataset, labeler_user, client_for):
    sample, other = queued_samples(dataset, 2, hardness=[0.1, 0.9])
    response = client_for(labeler_user).post(
        f"/label/datasets/{dataset.pk}/claim/",
        {"size": 2, "sample": sample.pk},
        content_type="application/json",
    )
    assert [s["id"] for s in response.json()["samples"]] == [sample.pk, other.pk]


def test_skipping_needs_a_known_reason_and_frees_the_sample(dataset, labeler_user, client_for):
    (sample,) = queued_samples(dataset, 1)
    services.claim_batch(dataset.pk, labeler_user, size=1)
    client = client_for(labeler_user)
    url = f"/label/samples/{sample.pk}/skip/"
    bad = client.post(url, {"reason": "bored", "base_revision": 0}, content_type="application/json")
    assert bad.status_code == 400 and "bored" in bad.json()["detail"]
    ok = client.post(
        url, {"reason": "bad_image", "base_revision": 0}, content_type="application/json"
    )
    assert ok.status_code == 200
    sample.refresh_from_db()
    assert sample.status == "skipped"
    assert not Claim.objects.exists()


def test_a_skip_from_an_editor_that_did_not_see_a_newer_label_is_refused(
    dataset, labeler_user, client_for
):
    """Lena's claim lapsed and Omar labeled the sample; her old editor's skip must not take
    his label out of training (a save from it is refused the same way)."""
    (sample,) = queued_samples(dataset, 1)
    omar = UserFactory(role="labeler")
    services.save_label(sample.pk, [], user=omar, base_revision=0)
    url = f"/label/samples/{sample.pk}/skip/"
    client = client_for(labeler_user)
    stale = client.post(
        url, {"reason": "bad_image", "base_revision": 0}, content_type="application/json"
    )
    assert stale.status_code == 409 and stale.json()["code"] == "stale_revision"
    assert "nothing was skipped" in stale.json()["detail"]
    assert refresh(sample).status == "labeled"
    for base_revision in ("1", None, -1, True):
        bad = client.post(
            url,
            {"reason": "bad_image", "base_revision": base_revision},
            content_type="application/json",
        )
        assert bad.status_code == 400 and "base_revision" in bad.json()["detail"], base_revision
    missing = client.post(url, {"reason": "bad_image"}, content_type="application/json")
    assert missing.status_code == 400 and refresh(sample).status == "labeled"
    seen = client.post(
        url, {"reason": "bad_image", "base_revision": 1}, content_type="application/json"
    )
    assert seen.status_code == 200 and refresh(sample).status == "skipped"


def test_a_body_nested_too_deeply_is_a_400_not_a_500(dataset, labeler_user, client_for):
    (sample,) = queued_samples(dataset, 1)
    deep = "[" * 100_000 + "]" * 100_000
    client = client_for(labeler_user)
    skip = client.post(f"/label/samples/{sample.pk}/skip/", deep, content_type="application/json")
    assert skip.status_code == 400 and "not JSON" in skip.json()["detail"]
    claim = client.post(
        f"/label/datasets/{dataset.pk}/claim/", deep, content_type="application/json"
    )
    assert claim.status_code == 400 and not Claim.objects.exists()
    listed = client.post(
        f"/label/datasets/{dataset.pk}/claim/", "[]", content_type="application/json"
    )
    assert listed.status_code == 400 and "JSON object" in listed.json()["detail"]
    api = client.post(
        f"/api/v1/samples/{sample.pk}/annotations/", deep, content_type="application/json"
    )
    assert api.status_code == 400 and "nested too deeply" in api.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"filters": ["class"]},
        {"size": "many"},
        {"size": None},
        {"sample": "first"},
        {"sample": 999999},
    ],
)
def test_bad_claim_requests_get_json_reasons(dataset, labeler_user, client_for, body):
    queued_samples(dataset, 1)
    response = client_for(labeler_user).post(
        f"/label/datasets/{dataset.pk}/claim/", body, content_type="application/json"
    )
    assert response.status_code in (400, 404)
    assert response.json()["detail"]
    assert not Claim.objects.exists()


def test_bad_queue_cursors_show_the_first_page(dataset, labeler_user, client_for):
    queued_samples(dataset, 2, hardness=[0.5, None])
    client = client_for(labeler_user)
    for cursor in ("h:abc:1", "n:x", "h:1:2:3", "h:nan:4", "", "12"):
        response = client.get(f"/label/datasets/{dataset.pk}/", {"after": cursor})
        assert response.status_code == 200, cursor
    response = client.get(f"/label/datasets/{dataset.pk}/", {"order": "newest", "after": "x"})
    assert response.status_code == 200


def test_leaving_the_editor_gives_back_claims_but_not_returned_ones(
    dataset, labeler_user, client_for
):
    samples = queued_samples(dataset, 3)
    other = UserFactory(role="labeler")
    ids = services.claim_batch(dataset.pk, labeler_user, size=2)
    Claim.objects.filter(sample_id=ids[1]).update(returned=True)
    services.claim_batch(dataset.pk, other, size=1)
    all_ids = ",".join(str(s.pk) for s in samples)
    response = client_for(labeler_user).post("/label/leave/", {"samples": all_ids + ",x"})
    assert response.json()["released"] == 1
    assert set(Claim.objects.values_list("sample_id", "user_id")) == {
        (ids[1], labeler_user.pk),
        (next(s.pk for s in samples if s.pk not in ids), other.pk),
    }


def test_label_this_on_a_sample_someone_holds_gives_the_queue_instead(
    dataset, labeler_user, client_for
):
    held, free = queued_samples(dataset, 2)
    services.claim_sample(held.pk, UserFactory(username="omar", role="labeler"), dataset.pk)
    body = (
        client_for(labeler_user)
        .post(
            f"/label/datasets/{dataset.pk}/claim/",
            {"sample": held.pk},
            content_type="application/json",
        )
        .json()
    )
    assert "claimed by omar" in body["warning"]
    assert [s["id"] for s in body["samples"]] == [free.pk]


def test_leaving_ignores_ids_too_large_for_the_database(dataset, labeler_user, client_for):
    (sample,) = queued_samples(dataset, 1)
    services.claim_batch(dataset.pk, labeler_user, size=1)
    huge = str(10**30)
    response = client_for(labeler_user).post(
        "/label/leave/", {"samples": f"{sample.pk},{huge},{2**63},²"}
    )
    assert response.status_code == 200
    assert response.json()["released"] == 1
    assert not Claim.objects.exists()


@pytest.mark.parametrize("user", [str(10**30), str(2**63), "²"])
def test_releasing_claims_of_an_id_too_large_for_the_database_says_choose(
    dataset, labeler_user, admin_user, client_for, user
):
    queued_samples(dataset, 1)
    services.claim_batch(dataset.pk, labeler_user, size=1)
    response = client_for(admin_user).post(
        f"/label/datasets/{dataset.pk}/claims/release/", {"user": user}, follow=True
    )
    assert response.status_code == 200
    assert "Choose whose claims to release." in response.content.decode()
    assert Claim.objects.count() == 1


@pytest.mark.parametrize("status", ["skipped", "unlabeled", "queued"])
def test_the_sample_api_refuses_a_status_change_on_a_sample_someone_else_holds(
    dataset, labeler_user, client_for, status
):
    from apps.labeling.models import Skip

    (sample,) = queued_samples(dataset, 1)
    services.claim_sample(sample.pk, UserFactory(username="omar", role="labeler"), dataset.pk)
    response = client_for(labeler_user).patch(
        f"/api/v1/samples/{sample.pk}/", {"status": status}, content_type="application/json"
    )
    assert response.status_code == 409, response.content
    assert response.json()["code"] == "claimed_by_other"
    assert "omar" in response.json()["detail"]
    assert refresh(sample).status == "queued" and not Skip.objects.exists()


def test_a_skip_through_the_sample_api_is_recorded_with_its_reason(
    dataset, labeler_user, client_for
):
    from apps.labeling.models import Skip

    first, second = queued_samples(dataset, 2)
    services.claim_sample(first.pk, labeler_user, dataset.pk)
    client = client_for(labeler_user)
    url = f"/api/v1/samples/{first.pk}/"
    response = client.patch(
        url, {"status": "skipped", "reason": "bad_image", "note": "dark"}, "application/json"
    )
    assert response.status_code == 200 and response.json()["status"] == "skipped"
    skip = Skip.objects.get(sample=first)
    assert (skip.user, skip.reason, skip.note) == (labeler_user, "bad_image", "dark")
    assert not Claim.objects.filter(sample=first).exists()  # skipped: given back, as in the editor

    assert (
        client.patch(
            f"/api/v1/samples/{second.pk}/", {"status": "skipped"}, "application/json"
        ).status_code
        == 200
    )
    assert Skip.objects.get(sample=second).reason == "other"  # the default
    refused = client.patch(url, {"status": "skipped", "reason": "boring"}, "application/json")
    assert refused.status_code == 400
