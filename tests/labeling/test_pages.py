"""The queue page (order, filters, keyset, constant queries), the sample page, links."""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.datasets import services as datasets
from apps.datasets.formats.base import LabeledBox
from apps.labeling import services
from apps.loops.models import Loop, ModelVersion, TrainedSample
from tests.factories import UserFactory
from tests.labeling.conftest import queued_samples


def queue_ids(response) -> list[int]:
    return [s.id for s in response.context["page"].items]


def test_the_queue_page_orders_and_filters(dataset, labeler_user, client_for):
    a, b, c = queued_samples(dataset, 3, hardness=[0.3, None, 0.8])
    b.mined_by, b.prediction, b.source = "IBT", [{"class_name": "vest", "score": 0.4}], "device"
    b.save()
    client = client_for(labeler_user)
    url = f"/label/datasets/{dataset.pk}/"
    assert queue_ids(client.get(url)) == [c.pk, a.pk, b.pk]
    assert queue_ids(client.get(url, {"order": "newest"})) == [c.pk, b.pk, a.pk]
    assert sorted(queue_ids(client.get(url, {"order": "random"}))) == sorted([a.pk, b.pk, c.pk])
    assert queue_ids(client.get(url, {"class": "vest"})) == [b.pk]
    assert queue_ids(client.get(url, {"class": "ves"})) == []
    assert queue_ids(client.get(url, {"miner": "IBT"})) == [b.pk]
    assert queue_ids(client.get(url, {"source": "device"})) == [b.pk]
    assert queue_ids(client.get(url, {"split": "nonsense"})) == []


def test_keyset_pages_walk_the_whole_queue_once(dataset):
    hardness = [0.5, None, 0.5, 0.9, None, 0.1, 0.5]
    samples = queued_samples(dataset, 7, hardness=hardness)
    for order in ("hardness", "newest"):
        seen, after = [], ""
        while True:
            page = services.queue_page(
                dataset.pk, services.QueueFilters(order=order), after=after, size=2
            )
            seen.extend(s.pk for s in page.items)
            if not page.next_cursor:
                break
            after = page.next_cursor
        assert sorted(seen) == sorted(s.pk for s in samples), order
        assert len(seen) == len(set(seen))


def test_the_queue_page_makes_the_same_number_of_queries_for_3_or_40_samples(
    dataset, admin_user, client_for
):
    """(In hardness order a page whose rows all have a score is read in one query, a page that
    reaches the unscored tail in two: the count never depends on the size of the queue.)"""
    client = client_for(admin_user)
    Loop.objects.create(name="line-1", dataset=dataset, algorithm_yaml="basemodel: {}")
    url = f"/label/datasets/{dataset.pk}/"

    def count_queries() -> int:
        client.get(url)  # warm the session and permission caches alike
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        return len(queries)

    queued_samples(dataset, 3)
    services.claim_batch(dataset.pk, UserFactory(role="labeler"), size=2)
    few = count_queries()
    queued_samples(dataset, 37, start=100)
    services.claim_batch(dataset.pk, UserFactory(role="labeler"), size=10)
    assert count_queries() == few
    # A page reached through the keyset cursor costs no more than the first (here, in the
    # unscored tail, one query less: it skips the scored rows).
    cursor = services.queue_page(dataset.pk, services.QueueFilters(), size=10).next_cursor
    client.get(url, {"after": cursor})
    with CaptureQueriesContext(connection) as queries:
        client.get(url, {"after": cursor})
    assert len(queries) == few - 1


def test_the_sample_page_shows_history_prediction_and_lineage(
    dataset, admin_user, labeler_user, client_for
):
    (sample,) = queued_samples(dataset, 1)
    sample.prediction = {"version": "v7", "boxes": [{"class_name": "cone", "score": 0.66,
                                    "x1": 1, "y1": 1, "x2": 20, "y2": 20}]}  # fmt: skip
    sample.hardness_score = 0.4321
    sample.save()
    first, _ = datasets.submit_annotation(
        sample.pk, [LabeledBox("cone", 10, 10, 40, 40)], user=labeler_user
    )
    datasets.submit_annotation(
        sample.pk,
        [LabeledBox("cone", 12, 10, 40, 40), LabeledBox("vest", 50, 50, 60, 70)],
        user=admin_user,
    )
    loop = Loop.objects.create(name="line-1", dataset=dataset, algorithm_yaml="basemodel: {}")
    version = ModelVersion.objects.create(
        loop=loop, number=1, source="trained", artifact="a", artifact_sha256="0", artifact_size=1
    )
    TrainedSample.objects.create(version=version, sample=sample, annotation=first)
    page = client_for(labeler_user).get(f"/label/samples/{sample.pk}/").content.decode()
    assert "added vest" in page and "moved or resized cone (2 px)" in page
    assert labeler_user.username in page and admin_user.username in page
    assert "0.4321" in page and "0.66" in page and "by v7" in page
    assert "line-1 v1" in page and "(revision 1)" in page
    assert f'href="/label/datasets/{dataset.pk}/work/?sample={sample.pk}"' in page


def test_queue_this_puts_a_sample_back(dataset, labeler_user, viewer_user, client_for):
    (sample,) = queued_samples(dataset, 1)
    datasets.set_sample_status(sample.pk, "unlabeled")
    assert client_for(viewer_user).post(f"/label/samples/{sample.pk}/queue/").status_code == 403
    client_for(labeler_user).post(f"/label/samples/{sample.pk}/queue/")
    sample.refresh_from_db()
    assert sample.status == "queued"


def test_dataset_thumbnails_link_to_the_sample_page(dataset, labeler_user, client_for):
    (sample,) = queued_samples(dataset, 1)
    page = client_for(labeler_user).get(f"/datasets/{dataset.pk}/").content.decode()
    assert f'href="/label/samples/{sample.pk}/"' in page
    assert f'href="/datasets/samples/{sample.pk}/image/"' not in page


def test_the_editor_page_loads_its_script(dataset, labeler_user, viewer_user, client_for):
    assert client_for(viewer_user).get(f"/label/datasets/{dataset.pk}/work/").status_code == 403
    page = client_for(labeler_user).get(f"/label/datasets/{dataset.pk}/work/").content.decode()
    assert "js/labeling/editor.js" in page and "labeling-config" in page


def test_the_device_filter_needs_the_edge_intake(dataset):
    queued_samples(dataset, 1)
    filters = services.QueueFilters.from_query({"device": "cam-1"})
    if not services.device_filter_available():
        # Without the edge app no sample says which device sent it: nothing matches.
        assert list(services.waiting_samples(dataset.pk, filters)) == []
    else:  # with it, the query must at least be valid SQL
        list(services.waiting_samples(dataset.pk, filters))
