"""Importing COCO, VOC and YOLO zips through the upload job, detected or chosen."""

import pytest

from apps.datasets.models import Sample, SampleStatus
from tests.datasets.conftest import coco_json, report_line, zip_bytes
from tests.factories import image_bytes

VOC_XML = """<annotation><folder>JPEGImages</folder><filename>{name}</filename>
<size><width>64</width><height>48</height><depth>3</depth></size>{objects}</annotation>"""
VOC_OBJECT = (
    "<object><name>{cls}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
    "<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
)


def voc_xml(name, boxes):
    objects = "".join(VOC_OBJECT.format(cls=c, x1=a, y1=b, x2=x, y2=y) for c, a, b, x, y in boxes)
    return VOC_XML.format(name=name, objects=objects).encode()


def boxes_of(sample):
    return sorted(
        (b.class_name, round(b.x1, 3), round(b.y1, 3), round(b.x2, 3), round(b.y2, 3))
        for b in sample.current_annotation.boxes.all()
    )


def test_a_coco_zip_is_detected_and_imported_with_its_boxes(dataset, run_upload):
    files = {
        "images/a.png": image_bytes(1),
        "images/b.png": image_bytes(2),
        "images/c.png": image_bytes(3),
        "annotations.json": coco_json(
            [("images/a.png", 64, 48), ("images/b.png", 64, 48)],
            [(0, "helmet", [1, 2, 10, 20]), (0, "cone", [30, 5, 4, 4])],
            ["helmet", "vest", "cone"],
        ),
    }
    job = run_upload(dataset, [("site.zip", zip_bytes(files))])
    assert job.status == "succeeded", job.log
    assert job.result["format"] == "coco"
    assert job.result["counts"]["accepted"] == 3
    a = Sample.objects.get(original_name="a.png")
    assert boxes_of(a) == [("cone", 30, 5, 34, 9), ("helmet", 1, 2, 11, 22)]
    b = Sample.objects.get(original_name="b.png")
    assert b.status == SampleStatus.LABELED and boxes_of(b) == []  # listed: labeled, no objects
    c = Sample.objects.get(original_name="c.png")
    assert c.status == SampleStatus.UNLABELED and c.current_annotation is None
    assert report_line(job, "images/c.png")["message"] == "unlabeled"
    assert report_line(job, "annotations.json") == {
        "file": "annotations.json", "outcome": "read", "message": "COCO labels read"
    }  # fmt: skip


def test_a_voc_zip_is_detected_and_imported(dataset, run_upload):
    files = {
        "JPEGImages/a.png": image_bytes(1),
        "Annotations/a.xml": voc_xml("a.png", [("vest", 3, 4, 30, 40), ("helmet", 1, 1, 9, 9)]),
        "ImageSets/Main/test.txt": b"a\n",
    }
    job = run_upload(dataset, [("voc.zip", zip_bytes(files))])
    assert job.result["format"] == "voc", job.result
    sample = Sample.objects.get()
    assert boxes_of(sample) == [("helmet", 1, 1, 9, 9), ("vest", 3, 4, 30, 40)]
    assert sample.split == "test"


def test_a_yolo_zip_is_detected_with_classes_txt_and_split_directories(dataset, run_upload):
    files = {
        "classes.txt": b"helmet\nvest\ncone\n",
        "images/val/a.png": image_bytes(1),
        "labels/val/a.txt": b"2 0.5 0.5 0.25 0.5\n0 0.125 0.25 0.25 0.5\n",
        "images/train/b.png": image_bytes(2),
    }
    job = run_upload(dataset, [("yolo.zip", zip_bytes(files))])
    assert job.result["format"] == "yolo", job.result
    assert report_line(job, "classes.txt")["outcome"] == "read"
    assert report_line(job, "labels/val/a.txt")["outcome"] == "read"
    a = Sample.objects.get(original_name="a.png")
    assert boxes_of(a) == [("cone", 24, 12, 40, 36), ("helmet", 0, 0, 16, 24)]
    assert a.split == "eval"
    b = Sample.objects.get(original_name="b.png")
    assert b.split == "train" and b.status == SampleStatus.UNLABELED


def test_yolo_class_names_from_data_yaml(dataset, run_upload):
    files = {
        "data.yaml": b"names:\n  0: cone\n  1: helmet\n",
        "images/a.png": image_bytes(1),
        "labels/a.txt": b"1 0.5 0.5 0.5 0.5\n",
    }
    job = run_upload(dataset, [("yolo.zip", zip_bytes(files))])
    assert boxes_of(Sample.objects.get()) == [("helmet", 16, 12, 48, 36)], job.result


def test_a_chosen_format_is_used_instead_of_detection(dataset, run_upload):
    files = {
        "a.png": image_bytes(1),
        "a.txt": b"0 0.5 0.5 0.5 0.5\n",
        "classes.txt": b"helmet\n",
        "annotations.json": coco_json([("a.png", 64, 48)], [(0, "cone", [1, 1, 5, 5])], ["cone"]),
    }
    job = run_upload(dataset, [("both.zip", zip_bytes(files))], format="yolo")
    assert job.result["format"] == "yolo"
    assert boxes_of(Sample.objects.get()) == [("helmet", 16, 12, 48, 36)]
    # The COCO file is said to be unread because of the chosen format, not "not a label file".
    line = report_line(job, "annotations.json")
    assert line["outcome"] == "ignored"
    assert line["message"].startswith("not read: this upload's labels were read as YOLO")


def test_loose_files_with_a_coco_json_are_one_upload(dataset, run_upload):
    coco = coco_json([("a.png", 64, 48)], [(0, "vest", [1, 1, 5, 5])], ["vest"])
    job = run_upload(
        dataset,
        [
            ("a.png", image_bytes(1)),
            ("b.jpg", image_bytes(2, fmt="JPEG")),
            ("annotations.json", coco),
        ],
    )
    assert job.result["counts"]["accepted"] == 2
    assert boxes_of(Sample.objects.get(original_name="a.png")) == [("vest", 1, 1, 6, 6)]
    assert Sample.objects.get(original_name="b.jpg").image.name.endswith(".jpg")


def test_images_only_upload_stores_unlabeled_samples(dataset, run_upload):
    job = run_upload(dataset, [("x.png", image_bytes(1)), ("notes.md", b"# hi")])
    assert job.result["format"] == "images"
    assert Sample.objects.get().status == SampleStatus.UNLABELED
    assert report_line(job, "notes.md")["outcome"] == "ignored"


@pytest.mark.parametrize("policy", ["reject", "add"])
def test_unknown_classes_are_rejected_or_added_never_dropped(dataset, run_upload, policy):
    files = {
        "a.png": image_bytes(1),
        "b.png": image_bytes(2),
        "annotations.json": coco_json(
            [("a.png", 64, 48), ("b.png", 64, 48)],
            [(0, "dog", [1, 1, 5, 5]), (0, "helmet", [1, 1, 5, 5]), (1, "helmet", [2, 2, 5, 5])],
            ["helmet", "dog"],
        ),
    }
    job = run_upload(dataset, [("u.zip", zip_bytes(files))], unknown_classes=policy)
    dataset.refresh_from_db()
    line = report_line(job, "a.png")
    if policy == "reject":
        assert line["outcome"] == "rejected"
        assert "'dog'" in line["message"] and "add new classes" in line["message"]
        assert list(Sample.objects.values_list("original_name", flat=True)) == ["b.png"]
        assert "dog" not in dataset.class_names
    else:
        assert line["outcome"] == "accepted"
        assert dataset.class_names == ["helmet", "vest", "cone", "dog"]
        assert job.result["classes_added"] == ["dog"]
        assert boxes_of(Sample.objects.get(original_name="a.png"))[0][0] == "dog"


def test_a_duplicate_in_the_upload_is_reported_and_stored_once(dataset, run_upload):
    job = run_upload(dataset, [("a.png", image_bytes(1)), ("copy.png", image_bytes(1))])
    assert Sample.objects.count() == 1
    assert report_line(job, "copy.png")["outcome"] == "duplicate"


def test_data_yaml_names_map_keys_are_class_indexes_even_quoted(dataset, run_upload):
    names = "".join(f"  '{i}': c{i}\n" for i in range(12))  # sorted as text: 0, 1, 10, 11, 2
    files = {
        "data.yaml": f"names:\n{names}".encode(),
        "images/a.png": image_bytes(1),
        "labels/a.txt": b"2 0.5 0.5 0.5 0.5\n",
    }
    job = run_upload(dataset, [("yolo.zip", zip_bytes(files))], unknown_classes="add")
    assert boxes_of(Sample.objects.get()) == [("c2", 16, 12, 48, 36)], job.result


def test_a_gap_in_the_data_yaml_names_map_shifts_no_class(dataset, run_upload):
    files = {
        "data.yaml": b"names:\n  0: cone\n  2: helmet\n",
        "images/a.png": image_bytes(1),
        "labels/a.txt": b"2 0.5 0.5 0.5 0.5\n",
        "images/b.png": image_bytes(2),
        "labels/b.txt": b"1 0.5 0.5 0.5 0.5\n",
    }
    job = run_upload(dataset, [("yolo.zip", zip_bytes(files))])
    assert boxes_of(Sample.objects.get(original_name="a.png")) == [("helmet", 16, 12, 48, 36)]
    line = report_line(job, "images/b.png")
    assert line["outcome"] == "rejected", line
    assert "class index 1 has no name" in line["message"]


def test_yolo_files_with_a_utf8_bom(dataset, run_upload):
    bom = b"\xef\xbb\xbf"
    files = {
        "classes.txt": bom + b"cone\r\nhelmet\r\n",
        "data.yaml": bom + b"names: [cone, helmet]\n",
        "images/a.png": image_bytes(1),
        "labels/a.txt": bom + b"1 0.5 0.5 0.5 0.5\n",
    }
    job = run_upload(dataset, [("yolo.zip", zip_bytes(files))])
    assert boxes_of(Sample.objects.get()) == [("helmet", 16, 12, 48, 36)], job.result


def test_coco_subsets_with_the_same_frame_names_keep_their_labels(dataset, run_upload):
    """Datumaro/CVAT: annotations/instances_<subset>.json name files relative to
    images/<subset>/, and CVAT calls the frames of every task frame_000000.jpg."""
    classes = ["helmet", "vest", "cone"]
    files = {
        "images/train/frame_000000.png": image_bytes(1),
        "images/val/frame_000000.png": image_bytes(2),
        "annotations/instances_train.json": coco_json(
            [("frame_000000.png", 64, 48)], [(0, "helmet", [1, 2, 10, 20])], classes
        ),
        "annotations/instances_val.json": coco_json(
            [("frame_000000.png", 64, 48)], [(0, "cone", [30, 5, 4, 4])], classes
        ),
    }
    job = run_upload(dataset, [("cvat.zip", zip_bytes(files))])
    assert job.status == "succeeded", job.log
    by_box = {boxes_of(sample)[0][0]: sample for sample in Sample.objects.all()}
    assert sorted(by_box) == ["cone", "helmet"]
    assert by_box["helmet"].split == "train" and by_box["cone"].split == "eval"


def test_an_ambiguous_coco_file_name_is_reported_for_each_file_that_lists_it(dataset, run_upload):
    classes = ["helmet", "vest", "cone"]
    files = {
        "site-a/frame.png": image_bytes(1),
        "site-b/frame.png": image_bytes(2),
        "labels/one.json": coco_json([("frame.png", 64, 48)], [], classes),
        "labels/two.json": coco_json([("frame.png", 64, 48)], [], classes),
    }
    job = run_upload(dataset, [("two-sites.zip", zip_bytes(files))])
    assert job.status == "succeeded", job.log
    for key, listed_in in (("frame.png", "one"), ("frame.png (labels/two.json)", "two")):
        line = report_line(job, key)
        assert f"listed in labels/{listed_in}.json, but 2 files" in line["message"], line


def test_coco_crowd_regions_are_left_out_and_said_so(dataset, run_upload):
    import json

    document = json.loads(
        coco_json(
            [("a.png", 64, 48)],
            [(0, "helmet", [1, 2, 10, 20]), (0, "cone", [0, 0, 64, 48])],
            ["helmet", "vest", "cone"],
        )
    )
    document["annotations"][1]["iscrowd"] = 1
    files = {"a.png": image_bytes(1), "labels.json": json.dumps(document).encode()}
    job = run_upload(dataset, [("crowd.zip", zip_bytes(files))])
    assert job.status == "succeeded", job.log
    assert boxes_of(Sample.objects.get()) == [("helmet", 1, 2, 11, 22)]
    warnings = [row for row in job.result["report"] if row["outcome"] == "warning"]
    assert warnings == [
        {
            "file": "labels.json",
            "outcome": "warning",
            "message": "1 crowd region (iscrowd: 1) left out: areas to ignore, not objects",
        }
    ]


def test_a_coco_image_with_only_crowd_regions_is_stored_unlabeled(dataset, run_upload):
    """Not as an image with nothing in it: that would teach the model to see nothing there."""
    import json

    document = json.loads(
        coco_json(
            [("crowd.png", 64, 48), ("empty.png", 64, 48)],
            [(0, "helmet", [0, 0, 64, 48]), (0, "helmet", [2, 2, 30, 30])],
            ["helmet", "vest", "cone"],
        )
    )
    for annotation in document["annotations"]:
        annotation["iscrowd"] = 1
    files = {
        "crowd.png": image_bytes(1),
        "empty.png": image_bytes(2),
        "labels.json": json.dumps(document).encode(),
    }
    job = run_upload(dataset, [("crowd-only.zip", zip_bytes(files))])
    assert job.status == "succeeded", job.log
    statuses = {s.original_name: s.status for s in Sample.objects.all()}
    assert statuses["crowd.png"] == "unlabeled"
    assert statuses["empty.png"] == "labeled"  # listed with no annotations: truly empty
    assert report_line(job, "labels.json")["message"] == (
        "2 crowd regions (iscrowd: 1) left out: areas to ignore, not objects; "
        "1 image with only crowd regions stored unlabeled, to label"
    )
