"""VOC images listed in ImageSets/Main/<split>.txt with no XML: reported, and the user chooses."""

import json

import pytest

from apps.datasets.models import Sample, SampleStatus
from tests.datasets.conftest import report_line, zip_bytes
from tests.datasets.test_import_formats import voc_xml
from tests.factories import image_bytes


def datumaro_style_voc() -> bytes:
    """As Datumaro and CVAT write it: no XML for the image without objects."""
    return zip_bytes(
        {
            "JPEGImages/a.png": image_bytes(1),
            "JPEGImages/b.png": image_bytes(2),
            "Annotations/a.xml": voc_xml("a.png", [("helmet", 1, 1, 9, 9)]),
            "ImageSets/Main/train.txt": b"a\nb\n",
        }
    )


def test_by_default_they_are_stored_unlabeled_and_reported(dataset, run_upload):
    job = run_upload(dataset, [("voc.zip", datumaro_style_voc())])
    line = report_line(job, "JPEGImages/b.png")
    assert line["outcome"] == "accepted"
    assert "ImageSets/Main/train.txt" in line["message"] and "no XML" in line["message"]
    assert "unlabeled" in line["message"]
    b = Sample.objects.get(original_name="b.png")
    assert b.status == SampleStatus.UNLABELED and b.current_annotation is None
    assert b.split == "train"  # the list's split applies to it too


def test_they_can_be_treated_as_no_objects(dataset, run_upload):
    job = run_upload(
        dataset, [("voc.zip", datumaro_style_voc())], listed_without_labels="no_objects"
    )
    assert "no objects" in report_line(job, "JPEGImages/b.png")["message"]
    b = Sample.objects.get(original_name="b.png")
    assert b.status == SampleStatus.LABELED
    assert b.current_annotation is not None and b.current_annotation.boxes.count() == 0
    a = Sample.objects.get(original_name="a.png")
    assert a.current_annotation.boxes.count() == 1


@pytest.mark.parametrize("choice", ["unlabeled", "no_objects", "sometimes"])
def test_the_option_is_in_the_api(dataset, client_for, admin_user, choice, monkeypatch):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from apps.jobs.models import Job

    monkeypatch.setattr("apps.jobs.services._enqueue", lambda *args: None)
    response = client_for(admin_user).post(
        f"/api/v1/datasets/{dataset.pk}/imports/",
        {
            "files": [SimpleUploadedFile("voc.zip", datumaro_style_voc())],
            "listed_without_labels": choice,
        },
    )
    if choice == "sometimes":
        assert response.status_code == 400
        assert "listed_without_labels" in json.dumps(response.json())
    else:
        assert response.status_code == 202, response.content
        assert Job.objects.get().params["listed_without_labels"] == choice


def test_the_option_is_on_the_upload_form(dataset, client_for, admin_user):
    page = client_for(admin_user).get(f"/datasets/{dataset.pk}/upload/").content.decode()
    assert 'name="listed_without_labels"' in page and 'value="no_objects"' in page


def test_a_voc_upload_with_no_xml_at_all_is_still_read_as_voc(dataset, run_upload):
    """Datumaro's VOC export of images that all have no objects holds no XML."""
    archive = zip_bytes(
        {
            "JPEGImages/a.png": image_bytes(1),
            "ImageSets/Main/train.txt": b"a\n",
            "labelmap.txt": b"# label:color_rgb:parts:actions\nbackground:0,0,0::\n",
        }
    )
    job = run_upload(dataset, [("voc.zip", archive)], listed_without_labels="no_objects")
    assert job.result["format"] == "voc", job.result
    a = Sample.objects.get(original_name="a.png")
    assert a.status == SampleStatus.LABELED and a.current_annotation.boxes.count() == 0
