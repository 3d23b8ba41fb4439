"""The bad-input corpus: each bad file gets a clear report line; the good files are kept."""

import io
import json
import struct
import zipfile
import zlib

import pytest

from apps.datasets import importing, services
from apps.datasets.models import Sample
from apps.jobs.models import Job
from tests.datasets.conftest import coco_json, report_line, zip_bytes
from tests.factories import image_bytes

GOOD = ("good.png", image_bytes(99))


def rejected(job, file):
    line = report_line(job, file)
    assert line["outcome"] == "rejected", line
    return line["message"]


def assert_good_file_kept(job):
    assert job.status == "succeeded", job.log
    assert report_line(job, GOOD[0])["outcome"] == "accepted"
    assert Sample.objects.filter(original_name=GOOD[0]).exists()


def test_a_truncated_image(dataset, run_upload):
    job = run_upload(dataset, [GOOD, ("cut.png", image_bytes(1, (200, 200))[:300])])
    assert "corrupt or truncated" in rejected(job, "cut.png")
    assert_good_file_kept(job)


def test_a_non_image_with_an_image_extension(dataset, run_upload):
    job = run_upload(dataset, [GOOD, ("fake.jpg", b"%PDF-1.4 this is not a picture")])
    assert "not an image" in rejected(job, "fake.jpg")
    assert_good_file_kept(job)


def test_an_image_over_the_byte_limit(dataset, run_upload, settings):
    settings.DATASET_MAX_IMAGE_BYTES = len(GOOD[1]) + 10
    big = image_bytes(1, (300, 300))
    job = run_upload(dataset, [GOOD, ("big.png", big)])
    assert "more than the limit" in rejected(job, "big.png")
    assert_good_file_kept(job)


def test_an_image_over_the_pixel_limit(dataset, run_upload, settings):
    settings.DATASET_MAX_IMAGE_PIXELS = 100 * 100
    job = run_upload(dataset, [GOOD, ("wide.png", image_bytes(1, (200, 100)))])
    assert "decompression bomb" in rejected(job, "wide.png")
    assert_good_file_kept(job)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a huge size in a few bytes: a decompression bomb."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def test_a_decompression_bomb_png(dataset, run_upload):
    job = run_upload(dataset, [GOOD, ("bomb.png", _png_header_only(60_000, 60_000))])
    assert "decompression bomb" in rejected(job, "bomb.png")
    assert_good_file_kept(job)


def test_a_zip_entry_with_dot_dot(dataset, run_upload, stored_names):
    archive = zip_bytes({"../../etc/evil.png": image_bytes(1), "good.png": GOOD[1]})
    job = run_upload(dataset, [("u.zip", archive)])
    assert "'..'" in rejected(job, "../../etc/evil.png")
    assert_good_file_kept(job)
    assert not any("evil" in name for name in stored_names())


def test_a_zip_entry_with_an_absolute_path(dataset, run_upload):
    job = run_upload(
        dataset, [("u.zip", zip_bytes({"/tmp/abs.png": image_bytes(1), **dict([GOOD])}))]
    )
    assert "absolute" in rejected(job, "/tmp/abs.png")
    assert_good_file_kept(job)


def test_a_symlink_in_a_zip(dataset, run_upload):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo("link.png")
        link.external_attr = 0o120777 << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr(*GOOD)
    job = run_upload(dataset, [("u.zip", buffer.getvalue())])
    assert "symbolic links" in rejected(job, "link.png")
    assert_good_file_kept(job)


def test_a_zip_bomb_by_ratio(dataset, run_upload):
    archive = zip_bytes({"zeros.png": b"\0" * (8 * 1024 * 1024), **dict([GOOD])})
    job = run_upload(dataset, [("u.zip", archive)])
    assert "compression ratio" in rejected(job, "zeros.png")
    assert_good_file_kept(job)


def test_a_zip_bomb_by_total_unpacked_size(dataset, run_upload, settings):
    settings.DATASET_MAX_UNPACKED_BYTES = 50_000
    archive = zip_bytes({f"n{i}.png": image_bytes(i, (120, 120), "BMP") for i in range(5)})
    job = run_upload(dataset, [("bomb.zip", archive), GOOD])
    assert "more than the limit" in rejected(job, "bomb.zip")
    assert_good_file_kept(job)
    assert Sample.objects.count() == 1


def test_a_nested_zip(dataset, run_upload):
    inner = zip_bytes({"a.png": image_bytes(1)})
    disguised = zip_bytes({"b.png": image_bytes(2)})
    outer = zip_bytes({"inner.zip": inner, "disguised.png": disguised, **dict([GOOD])})
    job = run_upload(dataset, [("outer.zip", outer)])
    assert "nested archives" in rejected(job, "inner.zip")
    assert "nested archives" in rejected(job, "disguised.png")
    assert_good_file_kept(job)


def test_a_file_that_is_not_a_zip(dataset, run_upload):
    job = run_upload(dataset, [("broken.zip", b"PK\x03\x04 but then nothing"), GOOD])
    assert "not a readable zip" in rejected(job, "broken.zip")
    assert_good_file_kept(job)


def test_malformed_coco_json_refuses_its_images_and_stores_nothing(dataset, run_upload):
    archive = zip_bytes({"a.png": image_bytes(1), "annotations.json": b'{"images": [,]}'})
    job = run_upload(dataset, [("u.zip", archive)], format="coco")
    assert "malformed COCO JSON" in rejected(job, "annotations.json")
    assert "annotations.json could not be read" in rejected(job, "a.png")
    assert Sample.objects.count() == 0


def test_coco_with_wrong_fields(dataset, run_upload):
    doc = json.dumps({"images": [{"id": 1}], "annotations": [], "categories": []}).encode()
    job = run_upload(dataset, [("u.zip", zip_bytes({"a.png": image_bytes(1), "c.json": doc}))])
    assert "missing or wrong field 'file_name'" in rejected(job, "c.json")


def test_coco_with_a_bad_bbox_rejects_that_image_only(dataset, run_upload):
    doc = coco_json(
        [("a.png", 64, 48), ("good.png", 64, 48)],
        [(0, "helmet", [1, "two", 3, 4]), (1, "helmet", [1, 1, 5, 5])],
        ["helmet"],
    )
    job = run_upload(
        dataset, [("u.zip", zip_bytes({"a.png": image_bytes(1), "c.json": doc, **dict([GOOD])}))]
    )
    assert "is not 4 numbers" in rejected(job, "a.png")
    assert_good_file_kept(job)


def test_malformed_voc_xml(dataset, run_upload):
    archive = zip_bytes({"a.png": image_bytes(1), "a.xml": b"<annotation><filename>a.png"})
    job = run_upload(dataset, [("u.zip", archive)], format="voc")
    assert "not well-formed XML" in rejected(job, "a.xml")
    assert Sample.objects.count() == 0


def test_voc_xml_with_entities_is_refused(dataset, run_upload):
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY a "aaaa">]>'
        b"<annotation><filename>a.png</filename></annotation>"
    )
    job = run_upload(dataset, [("u.zip", zip_bytes({"a.png": image_bytes(1), "a.xml": bomb}))])
    assert "DOCTYPE" in rejected(job, "a.xml")


def test_malformed_yolo_label_rejects_that_image(dataset, run_upload):
    archive = zip_bytes(
        {
            "classes.txt": b"helmet\n",
            "a.png": image_bytes(1),
            "a.txt": b"0 0.5 0.5\n",
            "good.png": GOOD[1],
            "good.txt": b"0 0.5 0.5 0.2 0.2\n",
        }
    )
    job = run_upload(dataset, [("u.zip", archive)])
    assert "expected 'class cx cy w h'" in rejected(job, "a.png")
    assert_good_file_kept(job)


def test_yolo_class_index_out_of_range(dataset, run_upload):
    archive = zip_bytes(
        {"classes.txt": b"helmet\n", "a.png": image_bytes(1), "a.txt": b"3 .5 .5 .1 .1\n"}
    )
    job = run_upload(dataset, [("u.zip", archive)])
    assert "class index 3 is out of range" in rejected(job, "a.png")


@pytest.mark.parametrize(
    "files, missing",
    [
        ({"c.json": coco_json([("gone.png", 64, 48)], [], ["helmet"])}, "gone.png"),
        (
            {"Annotations/gone.xml": b"<annotation><filename>gone.png</filename></annotation>"},
            "gone.png",
        ),
        (
            {
                "classes.txt": b"helmet\n",
                "labels/gone.txt": b"0 .5 .5 .1 .1\n",
                "images/other.png": image_bytes(5),
            },
            "labels/gone.txt",
        ),
    ],
    ids=["coco", "voc", "yolo"],
)
def test_annotations_that_refer_to_missing_images(dataset, run_upload, files, missing):
    job = run_upload(dataset, [("u.zip", zip_bytes({**files, **dict([GOOD])}))])
    assert "not in the upload" in rejected(job, missing)
    assert_good_file_kept(job)


@pytest.mark.parametrize(
    "bbox, reason",
    [
        ([10, 10, 0, 5], "empty"),
        ([10, 10, -5, 5], "inverted"),
        ([float("nan"), 1, 2, 2], "NaN"),
        ([500, 500, 5, 5], "outside"),
    ],
)
def test_bad_boxes_reject_their_image(dataset, run_upload, bbox, reason):
    doc = json.dumps(
        {
            "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "good.png"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": bbox}],
            "categories": [{"id": 1, "name": "helmet"}],
        }
    ).encode()
    job = run_upload(
        dataset, [("u.zip", zip_bytes({"a.png": image_bytes(1), "c.json": doc, **dict([GOOD])}))]
    )
    assert reason in rejected(job, "a.png")
    assert_good_file_kept(job)


def test_an_overhanging_box_is_clipped_with_a_warning_in_the_report(dataset, run_upload):
    doc = coco_json([("a.png", 64, 48)], [(0, "cone", [50, 40, 30, 30])], ["cone"])
    job = run_upload(dataset, [("u.zip", zip_bytes({"a.png": image_bytes(1), "c.json": doc}))])
    line = report_line(job, "a.png")
    assert line["outcome"] == "accepted" and "clipped" in line["message"]
    box = Sample.objects.get().current_annotation.boxes.get()
    assert (box.x2, box.y2) == (64, 48)


def test_a_failed_upload_leaves_no_samples_and_no_files(
    storage_kind, dataset, run_upload, monkeypatch, stored_names
):
    monkeypatch.setattr(importing, "CHUNK_SIZE", 2)
    real_store, calls = services.store_sample, []

    def store_then_break(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise OSError("storage went away")
        return real_store(*args, **kwargs)

    monkeypatch.setattr(services, "store_sample", store_then_break)
    files = [(f"{i}.png", image_bytes(i)) for i in range(6)]
    job = run_upload(dataset, files)
    assert job.status == "failed" and "storage went away" in job.message
    assert Sample.objects.count() == 0
    assert stored_names() == []  # neither samples nor the staged upload


def test_a_cancelled_upload_leaves_no_samples_and_no_files(
    storage_kind, dataset, run_upload, monkeypatch, stored_names
):
    monkeypatch.setattr(importing, "CHUNK_SIZE", 2)
    real_store, calls = services.store_sample, []

    def store_and_cancel(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            Job.objects.filter(kind="dataset_import").update(cancel_requested=True)
        return real_store(*args, **kwargs)

    monkeypatch.setattr(services, "store_sample", store_and_cancel)
    job = run_upload(dataset, [(f"{i}.png", image_bytes(i)) for i in range(6)])
    assert job.status == "cancelled"
    assert len(calls) == 4  # stopped after the second chunk
    assert Sample.objects.count() == 0
    assert stored_names() == []


def test_two_files_with_the_same_name_are_not_silently_merged(dataset, run_upload):
    job = run_upload(dataset, [("a.png", image_bytes(1)), ("a.png", image_bytes(2))])
    lines = [line for line in job.result["report"] if line["file"] == "a.png"]
    assert sorted(line["outcome"] for line in lines) == ["accepted", "rejected"]
    assert "same name" in next(line for line in lines if line["outcome"] == "rejected")["message"]


def test_a_storage_write_failure_removes_the_files_written_beside_it(
    storage_kind, dataset, run_upload, monkeypatch, stored_names
):
    real_write = services.write_image_file

    def write_or_fail(dataset_id, sha256, info, data):
        if data == image_bytes(3):
            raise OSError("disk full")
        return real_write(dataset_id, sha256, info, data)

    monkeypatch.setattr(services, "write_image_file", write_or_fail)
    job = run_upload(dataset, [(f"{i}.png", image_bytes(i)) for i in range(6)])
    assert job.status == "failed" and "disk full" in job.message
    assert Sample.objects.count() == 0
    assert stored_names() == []


def test_coco_annotations_that_are_not_objects_refuse_the_file(dataset, run_upload):
    doc = json.dumps(
        {"images": [{"id": 1, "file_name": "a.png"}], "annotations": [1], "categories": []}
    ).encode()
    job = run_upload(dataset, [("u.zip", zip_bytes({"a.png": image_bytes(1), "c.json": doc}))])
    assert job.status == "succeeded", job.log
    assert "every item of 'annotations' must be an object" in rejected(job, "c.json")
    assert "c.json could not be read" in rejected(job, "a.png")


def test_coco_with_a_huge_integer_in_a_bbox_rejects_that_image_only(dataset, run_upload):
    doc = coco_json(
        [("a.png", 64, 48), ("good.png", 64, 48)],
        [(0, "helmet", [1, 10**400, 3, 4]), (1, "helmet", [1, 1, 5, 5])],
        ["helmet"],
    )
    job = run_upload(
        dataset, [("u.zip", zip_bytes({"a.png": image_bytes(1), "c.json": doc, **dict([GOOD])}))]
    )
    assert "is not 4 numbers" in rejected(job, "a.png")
    assert_good_file_kept(job)


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("c.json", b"[" * 200_000, "malformed COCO JSON: nested too deeply"),
        ("data.yaml", b"names: " + b"[" * 50_000, "malformed YAML (nested too deeply)"),
    ],
)
def test_deeply_nested_annotation_files_are_refused(dataset, run_upload, name, data, message):
    archive = zip_bytes({"a.png": image_bytes(1), "a.txt": b"0 .5 .5 .1 .1\n", name: data})
    job = run_upload(dataset, [("u.zip", archive)])
    assert job.status == "succeeded", job.log
    assert message in rejected(job, name)
    assert "could not be read" in rejected(job, "a.png")


def test_a_data_yaml_alias_bomb_is_refused_quickly(dataset, run_upload):
    levels = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for previous, level in zip("abcdef", "bcdefg", strict=True):
        levels.append(f"{level}: &{level} [{','.join([f'*{previous}'] * 10)}]")
    bomb = "\n".join([*levels, "names: [*g]"]).encode()  # 10**7 strings once expanded
    archive = zip_bytes({"data.yaml": bomb, "images/a.png": image_bytes(1), "labels/a.txt": b""})
    job = run_upload(dataset, [("u.zip", archive)])
    assert job.status == "succeeded", job.log
    assert "aliases (*name) are not supported" in rejected(job, "data.yaml")
    assert len(json.dumps(job.result)) < 10_000


@pytest.mark.parametrize("name", ["x", "names: [[cat, dog]]", "names: {0: {a: 1}}"])
def test_data_yaml_names_must_be_strings(dataset, run_upload, name):
    archive = zip_bytes(
        {"data.yaml": name.encode(), "images/a.png": image_bytes(1), "labels/a.txt": b""}
    )
    job = run_upload(dataset, [("u.zip", archive)])
    assert job.status == "succeeded", job.log
    assert rejected(job, "data.yaml").startswith("data.yaml: ")
    assert [line["outcome"] for line in job.result["report"] if line["file"] == "data.yaml"] == [
        "rejected"
    ]  # and not also "read"


def test_utf16_voc_xml_with_entities_is_refused(dataset, run_upload):
    xml = (
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE annotation [<!ENTITY c "helmet">]>'
        "<annotation><filename>a.png</filename><object><name>&c;</name><bndbox><xmin>1</xmin>"
        "<ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>"
    ).encode("utf-16")
    job = run_upload(dataset, [("u.zip", zip_bytes({"a.png": image_bytes(1), "a.xml": xml}))])
    assert "DOCTYPE" in rejected(job, "a.xml")
    assert Sample.objects.count() == 0
