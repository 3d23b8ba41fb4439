"""Every main page answers with a bounded number of queries, whatever the number of samples,
versions and jobs; lists never load job results or lineage."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench.page_data import build

pytestmark = pytest.mark.django_db


def page_urls(portal) -> dict[str, str]:
    loop, dataset, newest = portal.loop, portal.dataset, portal.versions[-1]
    some_id = dataset.samples.order_by("-id").values_list("id", flat=True)[60]
    return {
        "home": "/",
        "loops": "/loops/",
        "loop": f"/loops/{loop.pk}/",
        "loop page 2": f"/loops/{loop.pk}/?page=2",
        "version": f"/loops/{loop.pk}/v{newest.number}/",
        "compare": f"/loops/{loop.pk}/compare/?a={newest.number - 1}&b={newest.number}",
        "jobs": "/jobs/",
        "jobs of the loop": f"/jobs/?loop={loop.pk}&kind=train&status=succeeded",
        "job": f"/jobs/{portal.newest_job_id}/",
        "datasets": "/datasets/",
        "dataset": f"/datasets/{dataset.pk}/",
        "dataset older": f"/datasets/{dataset.pk}/?after={some_id}",
        "dataset class": f"/datasets/{dataset.pk}/?class=vest",
        "dataset class without boxes": f"/datasets/{dataset.pk}/?class=glove",
        "api datasets": "/api/v1/datasets/",
    }


def query_counts(client, urls) -> dict[str, int]:
    counts = {}
    for name, url in urls.items():
        client.get(url)  # the dataset counts are cached by the first view
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200, (name, response.status_code)
        counts[name] = len(queries)
    return counts


def test_query_counts_do_not_grow_with_samples_versions_or_jobs(client, admin_user):
    client.force_login(admin_user)
    small = build(samples=120, versions=4, jobs=12)
    counts_small = query_counts(client, page_urls(small))
    big = build(samples=600, versions=70, jobs=90, seed=8)
    counts_big = query_counts(client, page_urls(big))
    grew = {
        name: (counts_small[name], n) for name, n in counts_big.items() if n > counts_small[name]
    }
    assert not grew, grew
    assert max(counts_big.values()) <= 25, counts_big


def test_lists_and_the_home_page_load_no_job_results_and_no_lineage(
    client, admin_user, django_assert_max_num_queries
):
    portal = build(samples=200, versions=6, jobs=20)
    client.force_login(admin_user)
    pages = {"/": "recent_jobs", "/jobs/": "page", f"/loops/{portal.loop.pk}/": "recent_jobs"}
    for url, key in pages.items():
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200
        jobs = list(response.context[key])
        assert jobs, url
        assert all({"result", "log", "chart"} <= job.get_deferred_fields() for job in jobs), url
        assert not any("trainedsample" in q["sql"].lower() for q in queries.captured_queries), url
    version_url = f"/loops/{portal.loop.pk}/v{portal.versions[-1].number}/"
    client.get(version_url)  # counts what changed once, then keeps it
    with django_assert_max_num_queries(16):
        client.get(version_url)


def test_the_dataset_counts_are_counted_once_and_recounted_after_a_write(client, admin_user):
    from apps.datasets.models import Sample
    from tests.factories import make_sample

    portal = build(samples=150, versions=2)
    client.force_login(admin_user)
    url = f"/datasets/{portal.dataset.pk}/"
    first = client.get(url).context["counts"]
    with CaptureQueriesContext(connection) as queries:
        again = client.get(url).context["counts"]
    assert again == first
    assert not any("GROUP BY" in q["sql"] for q in queries.captured_queries)

    make_sample(portal.dataset, seed=99, boxes=[("cone", 1, 1, 10, 10)])
    after_upload = client.get(url).context["counts"]
    assert after_upload.total == first.total + 1
    assert after_upload.boxes_by_class["cone"] == first.boxes_by_class["cone"] + 1

    Sample.objects.filter(
        pk=Sample.objects.filter(dataset=portal.dataset).latest("id").pk
    ).get().delete()
    assert client.get(url).context["counts"].total == first.total


def test_a_class_without_boxes_lists_nothing_without_probing_every_sample(client, admin_user):
    portal = build(samples=150, versions=2)
    client.force_login(admin_user)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/datasets/{portal.dataset.pk}/?class=glove")
    assert response.status_code == 200 and list(response.context["page"].items) == []
    assert not any(
        "EXISTS(SELECT" in q["sql"].replace(" ", "").upper()
        and "box" in q["sql"].lower()
        and "current_annotation" in q["sql"]
        for q in queries.captured_queries
    )
    assert len(client.get(f"/datasets/{portal.dataset.pk}/?class=vest").context["page"].items) > 0
