import pytest
from django.db import IntegrityError

from apps.datasets import services
from apps.datasets.boxes import BoxRejected
from apps.datasets.formats.base import LabeledBox
from apps.datasets.models import Annotation, Box, Sample, SampleStatus, Split
from tests.factories import DatasetFactory, image_bytes, make_sample


def test_create_dataset_keeps_the_class_order_and_refuses_a_duplicate_name(admin_user):
    dataset = services.create_dataset(
        name=" site-a ", class_names=["vest", "helmet"], created_by=admin_user
    )
    assert (dataset.name, dataset.class_names) == ("site-a", ["vest", "helmet"])
    with pytest.raises(services.DatasetError, match="already exists"):
        services.create_dataset(name="site-a", class_names=[])
    with pytest.raises(services.DatasetError, match="unique"):
        services.create_dataset(name="b", class_names=["a", "a"])


def test_the_same_image_is_stored_once_per_dataset(dataset, stored_names):
    first = services.store_sample(dataset, image_bytes(1), original_name="a.png", source="upload")
    again = services.store_sample(dataset, image_bytes(1), original_name="b.png", source="upload")
    assert first.created and not again.created
    assert again.sample.pk == first.sample.pk
    assert Sample.objects.count() == 1
    assert len(stored_names()) == 1
    other = DatasetFactory()
    assert services.store_sample(
        other, image_bytes(1), original_name="a.png", source="upload"
    ).created


def test_a_sample_records_its_size_hash_and_source(dataset):
    sample = make_sample(dataset, 3, size=(40, 30), source="device")
    assert (sample.width, sample.height, sample.source) == (40, 30, "device")
    assert len(sample.sha256) == 64
    assert sample.status == SampleStatus.UNLABELED


def test_the_split_follows_the_hash_and_the_ratios():
    assert services.split_for_hash("00000000" + "0" * 56, 80, 10) == Split.TRAIN
    # 0x4f = 79 → train; 80..89 → eval; 90.. → test
    assert services.split_for_hash(f"{80:08x}" + "0" * 56, 80, 10) == Split.EVAL
    assert services.split_for_hash(f"{95:08x}" + "0" * 56, 80, 10) == Split.TEST
    assert services.split_for_hash(f"{95:08x}" + "0" * 56, 100, 0) == Split.TRAIN


def test_splits_of_many_samples_come_close_to_the_ratios(dataset):
    for seed in range(200):
        make_sample(dataset, seed)
    counts = services.dataset_counts(dataset).by_split
    assert 130 <= counts["train"] <= 190
    assert counts["eval"] + counts["test"] == 200 - counts["train"]
    again = [services.split_for_hash(s.sha256, 80, 10) for s in Sample.objects.all()]
    assert again == list(Sample.objects.values_list("split", flat=True))


def test_an_import_may_name_the_split(dataset):
    assert make_sample(dataset, 1, split="test").split == "test"
    with pytest.raises(services.DatasetError, match="split"):
        make_sample(dataset, 2, split="holdout")


def test_annotations_are_revisions_and_earlier_ones_stay(dataset, admin_user, labeler_user):
    sample = make_sample(dataset, 1, boxes=[("helmet", 1, 2, 10, 20)])
    first = sample.current_annotation
    second, warnings = services.submit_annotation(
        sample.pk,
        [LabeledBox("vest", 5, 5, 30, 30), LabeledBox("cone", 0, 0, 4, 4)],
        user=labeler_user,
    )
    sample.refresh_from_db()
    assert (first.revision, second.revision) == (1, 2)
    assert sample.current_annotation == second and sample.status == SampleStatus.LABELED
    assert [b.class_name for b in first.boxes.all()] == ["helmet"]
    assert sorted(b.class_name for b in second.boxes.all()) == ["cone", "vest"]
    assert second.created_by == labeler_user and warnings == []
    assert services.labeled_snapshot(dataset.pk) == [(sample.pk, second.pk)]


def test_equal_boxes_give_equal_revision_keys_and_the_migration_fills_old_ones(dataset):
    import importlib

    from django.apps import apps

    sample = make_sample(dataset, 1, boxes=[("helmet", 1, 2, 10, 20), ("vest", 3, 3, 9, 9)])
    same, _ = services.submit_annotation(
        sample.pk, [LabeledBox("vest", 3.0, 3.0, 9.0, 9.0), LabeledBox("helmet", 1, 2, 10, 20)]
    )
    moved, _ = services.submit_annotation(sample.pk, [LabeledBox("helmet", 1, 2, 10, 21)])
    first = sample.annotations.get(revision=1)
    assert first.boxes_key == same.boxes_key != moved.boxes_key
    keys = dict(Annotation.objects.values_list("pk", "boxes_key"))
    Annotation.objects.update(boxes_key="")  # as written before the key existed
    migration = importlib.import_module("apps.datasets.migrations.0003_annotation_boxes_key")
    migration.fill_boxes_keys(apps, None)
    assert dict(Annotation.objects.values_list("pk", "boxes_key")) == keys


def test_a_revision_is_unique_per_sample(dataset):
    sample = make_sample(dataset, 1, boxes=[])
    with pytest.raises(IntegrityError):
        Annotation.objects.create(sample=sample, revision=1, source="manual")


def test_a_bad_box_writes_no_revision(dataset):
    sample = make_sample(dataset, 1, boxes=[("helmet", 1, 2, 10, 20)])
    with pytest.raises(BoxRejected, match="inverted"):
        services.submit_annotation(sample.pk, [LabeledBox("helmet", 10, 2, 1, 20)])
    with pytest.raises(BoxRejected, match="not one of the dataset"):
        services.submit_annotation(sample.pk, [LabeledBox("dog", 1, 2, 10, 20)])
    # A sliver no one could draw, which YOLO's 8 decimals would export as width 0.
    with pytest.raises(BoxRejected, match="under 0.01 pixel"):
        services.submit_annotation(sample.pk, [LabeledBox("helmet", 10, 2, 10.000000001, 20)])
    with pytest.raises(BoxRejected, match="lies outside"):  # a sliver once clipped
        services.submit_annotation(sample.pk, [LabeledBox("helmet", 63.999999, 2, 90, 20)])
    assert Annotation.objects.count() == 1 and Box.objects.count() == 1


def test_an_overhanging_box_is_clipped_with_a_warning(dataset):
    sample = make_sample(dataset, 1, size=(64, 48))
    annotation, warnings = services.submit_annotation(
        sample.pk, [LabeledBox("cone", -5, 10, 70, 40)]
    )
    box = annotation.boxes.get()
    assert (box.x1, box.y1, box.x2, box.y2) == (0, 10, 64, 40)
    assert "clipped" in warnings[0]


def test_counts_per_status_split_and_class(dataset):
    make_sample(dataset, 1, boxes=[("helmet", 1, 1, 5, 5), ("helmet", 6, 6, 9, 9)], split="train")
    labeled = make_sample(dataset, 2, boxes=[("vest", 1, 1, 5, 5)], split="eval")
    make_sample(dataset, 3, split="train")
    services.submit_annotation(labeled.pk, [LabeledBox("cone", 1, 1, 5, 5)])  # replaces vest
    counts = services.dataset_counts(dataset)
    assert counts.total == 3
    assert counts.by_status == {"unlabeled": 1, "queued": 0, "labeled": 2, "skipped": 0}
    assert counts.by_split == {"train": 2, "eval": 1, "test": 0}
    assert counts.boxes_by_class == {"helmet": 2, "vest": 0, "cone": 1}


def test_filters_by_status_split_source_and_class(dataset):
    a = make_sample(dataset, 1, boxes=[("helmet", 1, 1, 5, 5)], split="train")
    b = make_sample(dataset, 2, boxes=[("vest", 1, 1, 5, 5)], split="eval", source="device")
    c = make_sample(dataset, 3, split="train")

    def ids(**query):
        filters = services.SampleFilters.from_query(query)
        return set(services.filtered_samples(dataset.pk, filters).values_list("id", flat=True))

    assert ids() == {a.pk, b.pk, c.pk}
    assert ids(status="labeled") == {a.pk, b.pk}
    assert ids(split="train") == {a.pk, c.pk}
    assert ids(source="device") == {b.pk}
    assert ids(**{"class": "helmet"}) == {a.pk}
    assert ids(**{"class": "helmet", "split": "eval"}) == set()


def test_deleting_a_dataset_deletes_its_files(
    dataset, stored_names, django_capture_on_commit_callbacks
):
    make_sample(dataset, 1)
    other = make_sample(DatasetFactory(), 2)
    with django_capture_on_commit_callbacks(execute=True):
        services.delete_dataset(dataset.pk)
    assert stored_names() == [other.image.name]
    assert Sample.objects.count() == 1


def test_a_dataset_used_by_a_loop_is_not_deleted(dataset, stored_names, client_for, admin_user):
    from apps.loops.services import create_loop

    sample = make_sample(dataset, 1)
    create_loop(name="site-a loop", dataset=dataset)
    with pytest.raises(services.DatasetError, match="still used by"):
        services.delete_dataset(dataset.pk)
    assert stored_names() == [sample.image.name]
    response = client_for(admin_user).delete(f"/api/v1/datasets/{dataset.pk}/")
    assert response.status_code == 409 and "still used by" in response.json()["detail"]
