"""Limits that keep an import and its pages small: boxes per image, and a bounded report."""

import csv
import io
import json

import pytest
from django.urls import reverse

from apps.datasets.models import Sample
from tests.datasets.conftest import coco_json, report_line, zip_bytes
from tests.factories import UserFactory, image_bytes, make_sample


def test_an_image_with_more_boxes_than_the_limit_is_refused(dataset, run_upload, settings):
    settings.DATASET_MAX_BOXES_PER_IMAGE = 5
    files = {
        "many.png": image_bytes(1),
        "few.png": image_bytes(2),
        "c.json": coco_json(
            [("many.png", 64, 48), ("few.png", 64, 48)],
            [(0, "helmet", [i, i, 5, 5]) for i in range(6)]
            + [(1, "helmet", [i, i, 5, 5]) for i in range(5)],
            ["helmet"],
        ),
    }
    job = run_upload(dataset, [("up.zip", zip_bytes(files))])
    line = report_line(job, "many.png")
    assert line["outcome"] == "rejected" and "more than the limit of 5" in line["message"], line
    assert "DATASET_MAX_BOXES_PER_IMAGE" in line["message"]
    assert report_line(job, "few.png")["outcome"] == "accepted"


def test_the_annotation_api_applies_the_same_box_limit(dataset, client_for, admin_user, settings):
    settings.DATASET_MAX_BOXES_PER_IMAGE = 3
    sample = make_sample(dataset, 1)
    boxes = [{"class_name": "helmet", "x1": i, "y1": i, "x2": i + 5, "y2": i + 5} for i in range(4)]
    response = client_for(admin_user).post(
        f"/api/v1/samples/{sample.pk}/annotations/",
        json.dumps({"boxes": boxes}),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "limit of 3" in response.json()["detail"]


def ignored_entries_zip(count: int) -> bytes:
    files = {f"notes/{i:06d}.dat": b"x" for i in range(count)}
    files["good.png"] = image_bytes(1)
    return zip_bytes(files)


def test_a_big_report_is_summarised_in_the_job_and_kept_whole_as_a_file(
    dataset, run_upload, settings, client_for, admin_user
):
    settings.DATASET_IMPORT_REPORT_LINES = 10
    job = run_upload(dataset, [("up.zip", ignored_entries_zip(500))])
    result = job.result
    assert job.status == "succeeded", job.log
    assert result["counts"]["ignored"] == 500 and result["counts"]["accepted"] == 1
    assert result["report_lines"] == 501 and result["report_truncated"] is True
    assert len([line for line in result["report"] if line["outcome"] == "ignored"]) == 10
    assert report_line(job, "good.png")["outcome"] == "accepted"  # another outcome: still shown

    response = client_for(admin_user).get(result["report_url"])
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["file", "outcome", "message"]
    assert len(rows) == 502
    assert any(row[:2] == ["notes/000499.dat", "ignored"] for row in rows)


def test_the_report_download_checks_the_permission(dataset, run_upload, client, client_for):
    job = run_upload(dataset, [("good.png", image_bytes(1))])
    url = reverse("datasets:import-report", args=[job.pk])
    assert client.get(url).status_code in (302, 401, 403)  # anonymous
    nobody = UserFactory(username="no-role")
    assert client_for(nobody).get(url).status_code == 403


def test_a_huge_zip_keeps_the_job_and_import_pages_small(
    dataset, run_upload, client_for, admin_user
):
    """240,000 ignored entries once made a 69 MB job page; the page must not grow with them."""
    job = run_upload(dataset, [("up.zip", ignored_entries_zip(20_000))])
    assert job.result["counts"]["ignored"] == 20_000
    assert len(json.dumps(job.result)) < 50_000
    client = client_for(admin_user)
    import_page = client.get(reverse("datasets:import", args=[job.pk]))
    job_page = client.get(reverse("jobs:detail", args=[job.pk]))
    assert import_page.status_code == job_page.status_code == 200
    assert len(import_page.content) < 200_000, len(import_page.content)
    assert len(job_page.content) < 200_000, len(job_page.content)
    assert Sample.objects.count() == 1


@pytest.mark.slow
def test_a_240000_entry_zip_keeps_the_pages_small(dataset, run_upload, client_for, admin_user):
    """The case from the field: 240,000 ignored entries made a 69 MB job page."""
    job = run_upload(dataset, [("up.zip", ignored_entries_zip(240_000))])
    assert job.status == "succeeded", job.message
    assert job.result["counts"]["ignored"] == 240_000
    client = client_for(admin_user)
    for url in (reverse("datasets:import", args=[job.pk]), reverse("jobs:detail", args=[job.pk])):
        response = client.get(url)
        assert response.status_code == 200 and len(response.content) < 200_000, url
    report = client.get(job.result["report_url"])
    assert sum(chunk.count(b"\n") for chunk in report.streaming_content) == 240_002


def test_the_full_report_does_not_carry_formulas_into_spreadsheets(
    dataset, run_upload, client_for, admin_user
):
    archive = zip_bytes({"=HYPERLINK(1).dat": b"x", "good.png": image_bytes(1)})
    job = run_upload(dataset, [("up.zip", archive)])
    assert report_line(job, "=HYPERLINK(1).dat")["outcome"] == "ignored"  # the page: as named
    response = client_for(admin_user).get(job.result["report_url"])
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert any(row[:2] == ["'=HYPERLINK(1).dat", "ignored"] for row in rows), rows


def test_the_api_serves_the_full_report_as_csv(dataset, run_upload, client_for, admin_user):
    job = run_upload(dataset, [("good.png", image_bytes(1)), ("notes.dat", b"x")])
    client = client_for(admin_user)
    response = client.get(f"/api/v1/imports/{job.pk}/report/", HTTP_ACCEPT="text/csv")
    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    text = b"".join(response.streaming_content).decode()
    assert "notes.dat,ignored" in text and "good.png,accepted" in text


def test_a_long_class_name_repeated_on_every_line_is_cut_short(dataset, run_upload):
    name = "x" * 100_000  # not a class of the dataset: every image's line names it
    images = [(f"{i}.png", 64, 48) for i in range(30)]
    doc = coco_json(images, [(i, name, [1, 1, 5, 5]) for i in range(30)], [name])
    files = {"c.json": doc, **{n: image_bytes(i) for i, (n, _, _) in enumerate(images)}}
    job = run_upload(dataset, [("u.zip", zip_bytes(files))])
    assert job.status == "succeeded", job.log
    message = report_line(job, "0.png")["message"]
    assert message.startswith("uses class 'xxx") and message.endswith("…"), message[:100]
    assert len(message) == 500
    assert len(json.dumps(job.result)) < 30 * 1000 and len(job.log) < 30 * 1000
    assert len(job.result["report"]) == 31
