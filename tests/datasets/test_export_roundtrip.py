"""Exports in COCO, VOC and YOLO, and a re-import of each gives back the same boxes."""

import io
import json
import zipfile

import pytest

from apps.datasets import services
from apps.datasets.exporting import write_export
from apps.datasets.models import Sample
from tests.factories import DatasetFactory, make_sample

FORMATS = ["coco", "voc", "yolo", "yolo_darknet"]


def current_boxes(dataset):
    """{sha256: (split, status, sorted boxes)} for every sample of the dataset."""
    found = {}
    for sample in Sample.objects.filter(dataset=dataset).select_related("current_annotation"):
        boxes = []
        if sample.current_annotation:
            boxes = sorted(
                (b.class_name, round(b.x1, 2), round(b.y1, 2), round(b.x2, 2), round(b.y2, 2))
                for b in sample.current_annotation.boxes.all()
            )
        found[sample.sha256] = (sample.split, sample.status, boxes)
    return found


def fill(dataset):
    make_sample(
        dataset, 1, boxes=[("helmet", 1.5, 2.25, 10.75, 20), ("cone", 30, 5, 63, 47)], split="train"
    )
    make_sample(dataset, 2, boxes=[("vest", 0, 0, 64, 48)], split="eval")
    make_sample(dataset, 3, boxes=[], split="test")  # labeled: no objects
    make_sample(dataset, 4, split="train")  # unlabeled


def export(dataset, fmt, samples=None) -> bytes:
    out = io.BytesIO()
    write_export(dataset, samples if samples is not None else dataset.samples.all(), fmt, out)
    return out.getvalue()


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_export_reimports_to_the_same_boxes_splits_and_status(fmt, dataset, run_upload):
    fill(dataset)
    archive = export(dataset, fmt)
    copy = DatasetFactory(name=f"copy-{fmt}", class_names=[])
    job = run_upload(copy, [(f"export-{fmt}.zip", archive)], unknown_classes="add")
    assert job.result["format"] == fmt.removesuffix("_darknet"), job.result
    assert job.result["counts"]["accepted"] == 4, job.result["report"]
    assert current_boxes(copy) == current_boxes(dataset)
    copy.refresh_from_db()
    assert set(copy.class_names) == {"helmet", "cone", "vest"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_export_of_a_filtered_part_holds_only_that_part(fmt, dataset):
    fill(dataset)
    part = services.filtered_samples(dataset.pk, services.SampleFilters(split="train"))
    with zipfile.ZipFile(io.BytesIO(export(dataset, fmt, part))) as archive:
        images = [n for n in archive.namelist() if n.endswith(".png")]
    assert len(images) == 2


def test_the_coco_export_lists_categories_in_the_dataset_order(dataset):
    fill(dataset)
    with zipfile.ZipFile(io.BytesIO(export(dataset, "coco"))) as archive:
        docs = {
            subset: json.loads(archive.read(f"annotations/instances_{subset}.json"))
            for subset in ("train", "val", "test")
        }
    for doc in docs.values():
        assert [c["name"] for c in doc["categories"]] == ["helmet", "vest", "cone"]
    # the unlabeled image is in the zip, not in the labels
    assert sum(len(doc["images"]) for doc in docs.values()) == 3
    helmet = next(a for a in docs["train"]["annotations"] if a["category_id"] == 1)
    assert helmet["bbox"] == [1.5, 2.25, 9.25, 17.75]


@pytest.mark.parametrize("fmt", FORMATS)
def test_skipped_and_queued_samples_leave_their_labels_out(fmt, dataset, run_upload):
    """An admin skipped a sample "to keep it out of future training": a restore of the export
    must not bring it back as labeled."""
    skipped = make_sample(dataset, 5, boxes=[("helmet", 1, 2, 10, 20)], split="train")
    queued = make_sample(dataset, 6, boxes=[("cone", 1, 2, 10, 20)], split="train")
    kept = make_sample(dataset, 7, boxes=[("vest", 1, 2, 10, 20)], split="train")
    Sample.objects.filter(pk=skipped.pk).update(status="skipped")
    Sample.objects.filter(pk=queued.pk).update(status="queued")
    copy = DatasetFactory(name=f"restored-{fmt}", class_names=["helmet", "vest", "cone"])
    job = run_upload(copy, [(f"export-{fmt}.zip", export(dataset, fmt))])
    assert job.result["counts"]["accepted"] == 3, job.result["report"]
    restored = {s: v[1:] for s, v in current_boxes(copy).items()}
    assert restored[skipped.sha256] == restored[queued.sha256] == ("unlabeled", [])
    assert restored[kept.sha256] == ("labeled", [("vest", 1, 2, 10, 20)])


@pytest.mark.parametrize("width", [64, 9_000, 40_000])
def test_yolo_keeps_the_smallest_box_on_a_wide_image(width):
    """A box of the smallest side the portal stores comes back through normalized coordinates
    as the import reads them (8 decimals lost it on a 9000 px image)."""
    from apps.datasets.boxes import MIN_BOX_SIDE, check_boxes, to_pixels
    from apps.datasets.formats import yolo
    from apps.datasets.formats.base import ExportEntry, LabeledBox

    box = LabeledBox("helmet", width - 7.33, 3.0, width - 7.33 + MIN_BOX_SIDE, 3.0 + MIN_BOX_SIDE)
    entry = ExportEntry("images/train/a.png", width, 50, "train", [box])
    data = yolo.label_lines(entry, {"helmet": 0})
    assert b"e" not in data  # fixed-point only
    read = to_pixels(yolo._parse_lines("a.txt", data, {0: "helmet"}), width, 50)
    (back,) = check_boxes(read, width, 50, ["helmet"]).boxes
    for original, returned in zip(
        (box.x1, box.y1, box.x2, box.y2), (back.x1, back.y1, back.x2, back.y2), strict=True
    ):
        assert abs(original - returned) < 1e-4
