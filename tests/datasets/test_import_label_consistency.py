"""Labels that contradict themselves or the images are refused or reported, never guessed."""

import json

from apps.datasets.models import Sample
from tests.datasets.conftest import coco_json, report_line, zip_bytes
from tests.factories import image_bytes


def coco_doc(images, annotations, categories) -> bytes:
    return json.dumps(
        {"images": images, "annotations": annotations, "categories": categories}
    ).encode()


def test_two_coco_categories_with_one_id_refuse_the_file_naming_both(dataset, run_upload):
    doc = coco_doc(
        [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
        [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]}],
        [{"id": 1, "name": "helmet"}, {"id": 1, "name": "vest"}],
    )
    job = run_upload(dataset, [("up.zip", zip_bytes({"a.png": image_bytes(1), "c.json": doc}))])
    line = report_line(job, "c.json")
    assert line["outcome"] == "rejected", line
    assert "'helmet'" in line["message"] and "'vest'" in line["message"]
    assert report_line(job, "a.png")["outcome"] == "rejected"  # not stored with a guessed class
    assert Sample.objects.count() == 0


def test_one_category_listed_twice_with_the_same_name_is_fine(dataset, run_upload):
    doc = coco_doc(
        [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
        [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]}],
        [{"id": 1, "name": "helmet"}, {"id": 1, "name": "helmet"}],
    )
    job = run_upload(dataset, [("up.zip", zip_bytes({"a.png": image_bytes(1), "c.json": doc}))])
    assert report_line(job, "a.png")["outcome"] == "accepted", job.result["report"]


def test_coco_annotations_whose_image_id_is_not_in_images_get_a_report_line(dataset, run_upload):
    doc = coco_doc(
        [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
        [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [1, 1, 10, 10]},
            {"id": 3, "image_id": 9, "category_id": 1, "bbox": [1, 1, 10, 10]},
        ],
        [{"id": 1, "name": "helmet"}],
    )
    job = run_upload(dataset, [("up.zip", zip_bytes({"a.png": image_bytes(1), "c.json": doc}))])
    lines = [line for line in job.result["report"] if line["file"] == "c.json"]
    orphan = next(line for line in lines if line["outcome"] == "rejected")
    assert "2 annotations" in orphan["message"]
    assert "image_id 7" in orphan["message"] and "image_id 9" in orphan["message"]
    assert report_line(job, "a.png")["outcome"] == "accepted"  # the rest of the file is used


def test_a_coco_image_of_another_size_than_declared_is_refused(dataset, run_upload):
    files = {
        "a.png": image_bytes(1, (64, 48)),
        "b.png": image_bytes(2, (64, 48)),
        "c.json": coco_json(
            [("a.png", 640, 480), ("b.png", 64, 48)],
            [(0, "helmet", [10, 10, 100, 100]), (1, "helmet", [1, 1, 10, 10])],
            ["helmet"],
        ),
    }
    job = run_upload(dataset, [("up.zip", zip_bytes(files))])
    line = report_line(job, "a.png")
    assert line["outcome"] == "rejected", line
    assert "640x480" in line["message"] and "64x48" in line["message"]
    assert report_line(job, "b.png")["outcome"] == "accepted"
    assert list(Sample.objects.values_list("original_name", flat=True)) == ["b.png"]


def test_a_declared_size_with_width_and_height_swapped_is_accepted(dataset, run_upload):
    files = {
        "a.png": image_bytes(1, (64, 48)),
        "c.json": coco_json([("a.png", 48, 64)], [(0, "helmet", [1, 1, 10, 10])], ["helmet"]),
    }
    job = run_upload(dataset, [("up.zip", zip_bytes(files))])
    assert report_line(job, "a.png")["outcome"] == "accepted", job.result["report"]


def test_a_voc_image_of_another_size_than_declared_is_refused(dataset, run_upload):
    xml = (
        b"<annotation><filename>a.png</filename><size><width>640</width><height>480</height>"
        b"</size><object><name>helmet</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax>"
        b"<ymax>9</ymax></bndbox></object></annotation>"
    )
    job = run_upload(dataset, [("up.zip", zip_bytes({"a.png": image_bytes(1), "a.xml": xml}))])
    line = report_line(job, "a.png")
    assert line["outcome"] == "rejected" and "640x480" in line["message"], line


def test_an_image_labeled_by_two_voc_files_is_refused_naming_both(dataset, run_upload):
    from tests.datasets.test_import_formats import voc_xml

    files = {
        "a.png": image_bytes(1),
        "one/a.xml": voc_xml("a.png", [("helmet", 1, 1, 9, 9)]),
        "two/a.xml": voc_xml("a.png", [("vest", 2, 2, 8, 8)]),
        "b.png": image_bytes(2),
        "b.xml": voc_xml("b.png", [("vest", 2, 2, 8, 8)]),
    }
    job = run_upload(dataset, [("up.zip", zip_bytes(files))])
    line = report_line(job, "a.png")
    assert line["outcome"] == "rejected", line
    assert "one/a.xml" in line["message"] and "two/a.xml" in line["message"]
    assert report_line(job, "b.png")["outcome"] == "accepted"


def test_an_image_in_two_coco_files_is_refused(dataset, run_upload):
    files = {
        "a.png": image_bytes(1),
        "x.json": coco_json([("a.png", 64, 48)], [(0, "helmet", [1, 1, 5, 5])], ["helmet"]),
        "y.json": coco_json([("a.png", 64, 48)], [(0, "vest", [1, 1, 5, 5])], ["vest"]),
    }
    job = run_upload(dataset, [("up.zip", zip_bytes(files))])
    line = report_line(job, "a.png")
    assert line["outcome"] == "rejected" and "x.json" in line["message"], line


def test_a_coco_image_id_listed_twice_refuses_the_file(dataset, run_upload):
    doc = coco_doc(
        [
            {"id": 1, "file_name": "a.png", "width": 64, "height": 48},
            {"id": 1, "file_name": "b.png", "width": 64, "height": 48},
        ],
        [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]}],
        [{"id": 1, "name": "helmet"}],
    )
    files = {"a.png": image_bytes(1), "b.png": image_bytes(2), "c.json": doc}
    job = run_upload(dataset, [("up.zip", zip_bytes(files))])
    line = report_line(job, "c.json")
    assert line["outcome"] == "rejected" and "listed twice" in line["message"], line
    assert Sample.objects.count() == 0


def test_two_yolo_label_files_for_one_image_are_refused(dataset, run_upload):
    files = {
        "images/train/a.png": image_bytes(1),
        "labels/train/a.txt": b"0 0.5 0.5 0.2 0.2\n",
        "images/train/a.txt": b"1 0.5 0.5 0.2 0.2\n",
        "classes.txt": b"helmet\nvest\n",
    }
    job = run_upload(dataset, [("up.zip", zip_bytes(files))])
    line = report_line(job, "images/train/a.png")
    assert line["outcome"] == "rejected" and "labeled in both" in line["message"], line


def test_yolo_class_files_that_disagree_refuse_the_labels(dataset, run_upload):
    files = {
        "images/train/a.png": image_bytes(1),
        "labels/train/a.txt": b"0 0.5 0.5 0.2 0.2\n",
        "classes.txt": b"helmet\nvest\n",
        "data.yaml": b"names: [vest, helmet]\n",
    }
    job = run_upload(dataset, [("up.zip", zip_bytes(files))])
    line = report_line(job, "data.yaml")
    assert line["outcome"] == "rejected" and "differ" in line["message"], line
    assert report_line(job, "images/train/a.png")["outcome"] == "rejected"
    assert Sample.objects.count() == 0


def test_yolo_class_files_that_agree_are_fine(dataset, run_upload):
    files = {
        "images/train/a.png": image_bytes(1),
        "labels/train/a.txt": b"0 0.5 0.5 0.2 0.2\n",
        "classes.txt": b"helmet\nvest\n",
        "obj.names": b"helmet\nvest\n",
        "data.yaml": b"names: {0: helmet, 1: vest}\n",
    }
    job = run_upload(dataset, [("up.zip", zip_bytes(files))])
    assert report_line(job, "images/train/a.png")["outcome"] == "accepted", job.result["report"]


def test_a_duplicate_image_says_its_own_labels_were_not_applied(dataset, run_upload):
    files = {
        "a.png": image_bytes(1),
        "copy.png": image_bytes(1),
        "c.json": coco_json(
            [("a.png", 64, 48), ("copy.png", 64, 48)],
            [(0, "helmet", [1, 1, 5, 5]), (1, "vest", [2, 2, 5, 5]), (1, "vest", [9, 9, 5, 5])],
            ["helmet", "vest"],
        ),
    }
    job = run_upload(dataset, [("up.zip", zip_bytes(files))])
    line = report_line(job, "copy.png")
    assert line["outcome"] == "duplicate"
    assert "its labels in this upload (2 boxes) were not applied" in line["message"], line
