"""The "labels changed" seam: announced after commit, once per batch, never failing the write.

Tests run inside a transaction that is never committed; `django_capture_on_commit_callbacks`
runs the after-commit callbacks as a real commit would.
"""

import io
import zipfile

import pytest
from django.db import transaction

from apps.datasets import importing, services
from apps.datasets.events import labels_changed
from apps.datasets.formats.base import LabeledBox
from apps.datasets.models import Annotation
from tests.factories import image_bytes, make_sample


@pytest.fixture
def heard():
    calls = []

    def receiver(**kwargs):
        calls.append(kwargs)

    labels_changed.connect(receiver, weak=False, dispatch_uid="test-heard")
    yield calls
    labels_changed.disconnect(dispatch_uid="test-heard")


def test_a_submitted_annotation_is_announced_after_commit(
    dataset, heard, admin_user, django_capture_on_commit_callbacks
):
    sample = make_sample(dataset, 1)
    with django_capture_on_commit_callbacks(execute=True):
        services.submit_annotation(sample.pk, [LabeledBox("helmet", 1, 1, 9, 9)], user=admin_user)
        assert heard == []  # not inside the writer's transaction
    assert heard == [
        {
            "signal": labels_changed,
            "sender": None,
            "dataset_id": dataset.pk,
            "sample_ids": (sample.pk,),
            "source": "manual",
            "user_id": admin_user.pk,
        }
    ]


def test_a_rolled_back_write_is_not_announced(dataset, heard, django_capture_on_commit_callbacks):
    sample = make_sample(dataset, 1)
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.submit_annotation(sample.pk, [LabeledBox("helmet", 1, 1, 9, 9)])
        raise RuntimeError("the caller fails after the write")
    assert heard == []


def test_a_failing_listener_never_fails_the_write(
    dataset, heard, django_capture_on_commit_callbacks
):
    def broken(**kwargs):
        raise ValueError("listener bug")

    labels_changed.connect(broken, weak=False, dispatch_uid="test-broken")
    try:
        sample = make_sample(dataset, 1)
        with django_capture_on_commit_callbacks(execute=True):
            annotation, _ = services.submit_annotation(sample.pk, [LabeledBox("cone", 2, 2, 8, 8)])
    finally:
        labels_changed.disconnect(dispatch_uid="test-broken")
    assert Annotation.objects.filter(pk=annotation.pk).exists()
    assert len(heard) == 1


def test_storing_an_unlabeled_image_announces_nothing(
    dataset, heard, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        make_sample(dataset, 1)
    assert heard == []
    with django_capture_on_commit_callbacks(execute=True):
        make_sample(dataset, 2, boxes=[])  # "no objects" is a label
    assert [call["source"] for call in heard] == ["import"]


def test_an_import_announces_its_labeled_samples_once_per_batch(
    dataset, heard, django_capture_on_commit_callbacks
):
    labels = "\n".join(["0 0.5 0.5 0.2 0.2"])
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("classes.txt", "\n".join(dataset.class_names))
        for seed in range(3):
            bundle.writestr(f"images/img{seed}.png", image_bytes(seed))
            bundle.writestr(f"labels/img{seed}.txt", labels)
        bundle.writestr("images/unlabeled.png", image_bytes(9))
    staged = [services.stage_upload_file(services.new_staging_prefix(), 0, "a.zip", archive)]
    report = importing.ImportReport()
    with (
        django_capture_on_commit_callbacks(execute=True),
        importing.bundle_from_staged(staged, report) as bundle,
    ):
        importing.import_bundle(dataset.pk, bundle, importing.ImportOptions(), report=report)
    assert len(heard) == 1
    assert heard[0]["source"] == "import"
    assert len(heard[0]["sample_ids"]) == 3
