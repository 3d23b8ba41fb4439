"""Images as cameras write them: EXIF orientation (all 8), capture time, formats by content.

Each test image is built here with Pillow: the *shown* image is a grey 48x32 picture with a red
block at a known place; the file stores the pixels a camera would (the shown image turned back)
and an EXIF orientation that turns them into the shown image again.
"""

import datetime
import hashlib
import io
import json
import zipfile

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from PIL import Image

from apps.accounts.services import create_device_token
from apps.datasets import services
from apps.datasets.exporting import write_export
from apps.datasets.formats.base import LabeledBox
from apps.datasets.image_checks import ImageRejected, check_image, sniff_image_format
from apps.datasets.models import Sample
from apps.datasets.thumbnails import ensure_thumbnail
from apps.loops.training_data import load_detection_data
from tests.datasets.conftest import coco_json, report_line, zip_bytes
from worker.ml.orientation import (
    TRANSPOSE_FOR_ORIENTATION,
    box_to_shown,
    decode_rgb,
    read_orientation,
)

SHOWN_SIZE = (48, 32)  # width, height of the image as shown
OBJECT = (8, 8, 24, 16)  # the red block, in shown pixels (x1, y1, x2, y2)
RED, GREY = (220, 20, 20), (128, 128, 128)
ORIENTATIONS = range(1, 9)
# The inverse of each orientation's transpose: shown pixels → the pixels the camera stores.
UNDO = {2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}


def shown_image() -> Image.Image:
    image = Image.new("RGB", SHOWN_SIZE, GREY)
    image.paste(RED, OBJECT)
    return image


def camera_jpeg(orientation: int, *, taken="2024:05:06 07:08:09", offset="+02:00") -> bytes:
    """A JPEG as a camera writes it: stored pixels + the EXIF orientation that shows them."""
    stored = shown_image()
    if orientation != 1:
        stored = stored.transpose(TRANSPOSE_FOR_ORIENTATION[UNDO[orientation]])
    exif = Image.Exif()
    exif[0x0112] = orientation
    if taken:
        exif.get_ifd(0x8769)[0x9003] = taken
    if offset:
        exif.get_ifd(0x8769)[0x9011] = offset
    out = io.BytesIO()
    stored.save(out, "JPEG", quality=95, exif=exif.tobytes())
    return out.getvalue()


def colour_at(pixels: np.ndarray, x: float, y: float) -> tuple:
    return tuple(int(v) for v in pixels[int(y), int(x)][:3])


def is_red(colour) -> bool:
    return colour[0] > 170 and colour[1] < 80 and colour[2] < 80


def is_grey(colour) -> bool:
    return all(100 < v < 160 for v in colour)


def assert_object_at(pixels: np.ndarray, box, scale: float = 1.0) -> None:
    """The red block fills the box and the far corner is grey: the pixels are as shown."""
    x1, y1, x2, y2 = (v * scale for v in box)
    assert pixels.shape[1] == round(SHOWN_SIZE[0] * scale)
    assert pixels.shape[0] == round(SHOWN_SIZE[1] * scale)
    assert is_red(colour_at(pixels, (x1 + x2) / 2, (y1 + y2) / 2))
    assert is_grey(colour_at(pixels, pixels.shape[1] - 3, pixels.shape[0] - 3))


def plain_pixels(data: bytes) -> np.ndarray:
    """Decoded the way a tool that ignores EXIF decodes: the pixels as stored."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def stored_bytes(sample: Sample) -> bytes:
    with default_storage.open(sample.image.name, "rb") as handle:
        return handle.read()


# --- the geometry ------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_a_box_on_the_stored_pixels_maps_onto_the_same_object_when_shown(orientation):
    raw = plain_pixels(camera_jpeg(orientation))
    raw_height, raw_width = raw.shape[:2]
    # Where the block lies in the stored pixels: the red bounding box.
    ys, xs = np.nonzero((raw[:, :, 0] > 170) & (raw[:, :, 1] < 80))
    stored_box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    shown = box_to_shown(stored_box, raw_width, raw_height, orientation)
    assert shown == pytest.approx(OBJECT, abs=1)


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_decode_rgb_gives_the_shown_image_for_the_predict_path(orientation):
    assert_object_at(decode_rgb(camera_jpeg(orientation)), OBJECT)


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_check_image_reports_the_size_as_shown(settings, orientation):
    info = check_image(camera_jpeg(orientation))
    assert (info.width, info.height) == SHOWN_SIZE
    assert info.orientation == orientation
    assert info.raw_size == (SHOWN_SIZE if orientation < 5 else SHOWN_SIZE[::-1])


def test_a_broken_or_out_of_range_orientation_counts_as_upright():
    for value in (0, 9, 300):
        exif = Image.Exif()
        exif[0x0112] = value
        out = io.BytesIO()
        shown_image().save(out, "JPEG", exif=exif.tobytes())
        with Image.open(io.BytesIO(out.getvalue())) as image:
            assert read_orientation(image) == 1
        assert (check_image(out.getvalue()).width, check_image(out.getvalue()).height) == (48, 32)


# --- stored, thumbnail, training, exports --------------------------------------------------


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_every_reader_sees_the_image_as_shown_and_the_box_on_its_object(
    dataset, settings, orientation
):
    data = camera_jpeg(orientation)
    box = LabeledBox("cone", *OBJECT)
    stored = services.store_sample(
        dataset, data, original_name="phone.jpg", source="upload", boxes=[box], split="train"
    )
    sample = stored.sample
    assert stored.created and (sample.width, sample.height) == SHOWN_SIZE
    # The duplicate key is the sha256 of the bytes as received; the same file dedupes.
    assert sample.sha256 == hashlib.sha256(data).hexdigest()
    again = services.store_sample(dataset, data, original_name="again.jpg", source="upload")
    assert not again.created and again.sample.pk == sample.pk

    # Stored: the shown pixels, with no orientation left for a browser to apply again.
    kept = stored_bytes(sample)
    assert_object_at(plain_pixels(kept), OBJECT)
    with Image.open(io.BytesIO(kept)) as image:
        assert image.format == "JPEG" and image.getexif().get(0x0112) in (None, 1)
    if orientation == 1:
        assert kept == data  # an upright image is stored byte for byte

    # Thumbnail: as shown (256 px long side from a 48 px image: the size stays).
    with default_storage.open(ensure_thumbnail(sample), "rb") as handle:
        assert_object_at(plain_pixels(handle.read()), OBJECT)

    # Training: the data loader the training uses; the box covers the red block.
    data_set = load_detection_data([(sample.pk, sample.current_annotation_id)], dataset.class_names)
    assert_object_at(data_set.x[0], OBJECT)
    assert data_set.y[0][0, :4].tolist() == pytest.approx(OBJECT)

    # Every export: the exported box lands on the object in the exported image, decoded with
    # or without applying EXIF (the two agree: the export carries no orientation).
    for fmt in ("coco", "voc", "yolo"):
        out = io.BytesIO()
        write_export(dataset, Sample.objects.filter(pk=sample.pk), fmt, out)
        exported_box, image_bytes = _exported_box_and_image(out.getvalue(), fmt)
        assert exported_box == pytest.approx(OBJECT, abs=1e-3), fmt
        assert_object_at(plain_pixels(image_bytes), exported_box)
        assert_object_at(decode_rgb(image_bytes), exported_box)


def _exported_box_and_image(archive_bytes: bytes, fmt: str):
    with zipfile.ZipFile(io.BytesIO(archive_bytes)) as archive:
        names = archive.namelist()
        image_name = next(n for n in names if n.endswith(".jpg"))
        image = archive.read(image_name)
        if fmt == "coco":
            doc = json.loads(
                archive.read(next(n for n in names if n.startswith("annotations/instances_")))
            )
            assert (doc["images"][0]["width"], doc["images"][0]["height"]) == SHOWN_SIZE
            x, y, w, h = doc["annotations"][0]["bbox"]
            return (x, y, x + w, y + h), image
        if fmt == "voc":
            xml = archive.read(next(n for n in names if n.startswith("Annotations/"))).decode()
            assert "<width>48</width><height>32</height>" in xml
            values = [
                float(xml.split(f"<{tag}>")[1].split("<")[0])
                for tag in ("xmin", "ymin", "xmax", "ymax")
            ]
            return tuple(values), image
        label_file = next(n for n in names if n.startswith("labels/") and n.endswith(".txt"))
        line = archive.read(label_file).decode().split()
        cx, cy, w, h = (float(v) for v in line[1:])
        width, height = SHOWN_SIZE
        return (
            (cx - w / 2) * width,
            (cy - h / 2) * height,
            (cx + w / 2) * width,
            (cy + h / 2) * height,
        ), image


def test_re_encoding_keeps_the_other_exif_and_the_capture_time(dataset):
    sample = services.store_sample(
        dataset, camera_jpeg(6), original_name="phone.jpg", source="upload"
    ).sample
    with Image.open(io.BytesIO(stored_bytes(sample))) as image:
        assert image.getexif().get_ifd(0x8769).get(0x9003) == "2024:05:06 07:08:09"


# --- uploads: the API, the upload page, the import -----------------------------------------


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_a_device_uploads_a_turned_jpeg_through_the_api(admin_user, dataset, orientation):
    issued = create_device_token(name="phone", created_by=admin_user, all_loops=True)
    client = Client(headers={"Authorization": f"Bearer {issued.raw_token}"})
    upload = io.BytesIO(camera_jpeg(orientation))
    upload.name = "IMG_0001.JPG"
    response = client.post(
        reverse("api-samples", args=[dataset.pk]),
        {
            "image": upload,
            "boxes": json.dumps(
                [dict(zip(("x1", "y1", "x2", "y2"), OBJECT, strict=True)) | {"class_name": "cone"}]
            ),
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["width"], body["height"]) == SHOWN_SIZE
    assert body["captured_at"] == "2024-05-06T05:08:09Z"  # 07:08:09 at +02:00
    sample = Sample.objects.get()
    assert_object_at(plain_pixels(stored_bytes(sample)), OBJECT)


def test_a_turned_jpeg_uploaded_on_the_upload_page_is_stored_as_shown(
    client_for, labeler_user, dataset, django_capture_on_commit_callbacks, monkeypatch, settings
):
    from apps.datasets.importing import run_import_job
    from apps.jobs import runner
    from apps.jobs import services as job_services
    from apps.jobs.models import Job
    from apps.jobs.runner import run_job

    monkeypatch.setattr(job_services, "_enqueue", lambda *args: None)
    monkeypatch.setattr(runner, "close_old_connections", lambda: None)
    settings.WORKER_HEARTBEAT_INTERVAL_S = 3600
    upload = io.BytesIO(camera_jpeg(6))
    upload.name = "IMG_0002.jpg"
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(labeler_user).post(
            reverse("datasets:upload", args=[dataset.pk]),
            {"files": [upload], "format": "auto", "unknown_classes": "reject"},
            headers={"Accept": "application/json"},
        )
    assert response.status_code == 200, response.content
    job = Job.objects.get()
    run_job(job.pk, "test-worker", run_import_job)
    job.refresh_from_db()
    line = report_line(job, "IMG_0002.jpg")
    assert line["outcome"] == "accepted"
    assert "EXIF orientation 6 (turned 90° clockwise): stored as shown, 48x32" in line["message"]
    sample = Sample.objects.get()
    assert (sample.width, sample.height) == SHOWN_SIZE
    assert sample.captured_at == datetime.datetime(2024, 5, 6, 5, 8, 9, tzinfo=datetime.UTC)
    assert_object_at(plain_pixels(stored_bytes(sample)), OBJECT)


# --- boxes imported with a turned image ----------------------------------------------------

RAW_SIZE = SHOWN_SIZE[::-1]  # orientation 6 swaps the axes: the camera stores 32x48


def _imported(run_upload, dataset, files, **options):
    job = run_upload(dataset, [("upload.zip", zip_bytes(files))], **options)
    sample = Sample.objects.get(dataset=dataset)
    boxes = services.boxes_by_annotation([sample.current_annotation_id])[
        sample.current_annotation_id
    ]
    return job, sample, [(b.x1, b.y1, b.x2, b.y2) for b in boxes]


def test_coco_boxes_drawn_on_the_shown_image_are_kept(run_upload, dataset):
    """CVAT, Datumaro, labelme: the shown size and boxes on the shown image."""
    x1, y1, x2, y2 = OBJECT
    files = {
        "images/a.jpg": camera_jpeg(6),
        "annotations.json": coco_json(
            [("images/a.jpg", *SHOWN_SIZE)], [(0, "cone", [x1, y1, x2 - x1, y2 - y1])], ["cone"]
        ),
    }
    job, sample, boxes = _imported(run_upload, dataset, files)
    assert boxes == [OBJECT]
    assert "boxes read as drawn on the shown image" in report_line(job, "images/a.jpg")["message"]


def test_coco_boxes_with_the_stored_size_declared_but_fitting_the_shown_image_are_kept(
    run_upload, dataset
):
    """Label Studio's COCO export declares the unturned size yet has boxes on the shown image
    (HumanSignal/label-studio#6608): boxes that fit the shown image are not turned."""
    x1, y1, x2, y2 = OBJECT
    files = {
        "images/a.jpg": camera_jpeg(6),
        "annotations.json": coco_json(
            [("images/a.jpg", *RAW_SIZE)], [(0, "cone", [x1, y1, x2 - x1, y2 - y1])], ["cone"]
        ),
    }
    job, sample, boxes = _imported(run_upload, dataset, files)
    assert boxes == [OBJECT]


@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_voc_boxes_drawn_on_the_stored_pixels_are_turned_with_the_image(
    run_upload, dataset, orientation
):
    """A tool that ignored EXIF (labelImg before 1.8.4, a PIL script): the stored size is
    declared and a box lies outside the shown image: the boxes are turned, and reported."""
    data = camera_jpeg(orientation)
    raw = plain_pixels(data)
    ys, xs = np.nonzero((raw[:, :, 0] > 170) & (raw[:, :, 1] < 80))
    on_stored = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    # A second box reaching beyond the shown 32 px height: only the stored pixels fit it.
    wide = (2, 34, 30, 46)
    objects = "".join(
        f"<object><name>cone</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax>"
        f"<ymax>{d}</ymax></bndbox></object>"
        for a, b, c, d in (on_stored, wide)
    )
    xml = (
        f"<annotation><filename>a.jpg</filename><size><width>{RAW_SIZE[0]}</width>"
        f"<height>{RAW_SIZE[1]}</height></size>{objects}</annotation>"
    ).encode()
    job, sample, boxes = _imported(run_upload, dataset, {"a.jpg": data, "a.xml": xml})
    assert boxes[0] == pytest.approx(OBJECT, abs=1)
    assert boxes[1] == pytest.approx(box_to_shown(wide, *RAW_SIZE, orientation))
    message = report_line(job, "a.jpg")["message"]
    assert f"EXIF orientation {orientation}" in message and "boxes turned with the image" in message
    data_set = load_detection_data([(sample.pk, sample.current_annotation_id)], ["cone"])
    assert_object_at(data_set.x[0], boxes[0])


def test_yolo_fractions_are_of_the_shown_image(run_upload, dataset):
    """YOLO states no size; Ultralytics reads images with EXIF applied: the shown frame."""
    x1, y1, x2, y2 = OBJECT
    width, height = SHOWN_SIZE
    line = (
        f"2 {(x1 + x2) / 2 / width} {(y1 + y2) / 2 / height} "
        f"{(x2 - x1) / width} {(y2 - y1) / height}\n"
    )
    files = {
        "images/a.jpg": camera_jpeg(8),
        "labels/a.txt": line.encode(),
        "classes.txt": b"helmet\nvest\ncone\n",
    }
    job, sample, boxes = _imported(run_upload, dataset, files)
    assert boxes == [pytest.approx(OBJECT)]


# --- capture time --------------------------------------------------------------------------


def test_captured_at_comes_from_exif_with_its_offset(dataset):
    sample = services.store_sample(
        dataset, camera_jpeg(1, offset="-05:30"), original_name="a.jpg", source="upload"
    ).sample
    assert sample.captured_at == datetime.datetime(2024, 5, 6, 12, 38, 9, tzinfo=datetime.UTC)


def test_a_naive_exif_time_is_read_in_the_portals_time_zone(dataset, settings):
    settings.TIME_ZONE = "Europe/Berlin"  # summer time in May: UTC+2
    sample = services.store_sample(
        dataset, camera_jpeg(1, offset=None), original_name="a.jpg", source="upload"
    ).sample
    assert sample.captured_at == datetime.datetime(2024, 5, 6, 5, 8, 9, tzinfo=datetime.UTC)


def test_the_clients_capture_time_wins_and_placeholder_dates_are_ignored(dataset):
    sent = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    sample = services.store_sample(
        dataset, camera_jpeg(1), original_name="a.jpg", source="upload", captured_at=sent
    ).sample
    assert sample.captured_at == sent
    for placeholder in ("0000:00:00 00:00:00", "    :  :     :  :  ", "garbage"):
        assert check_image(camera_jpeg(1, taken=placeholder)).captured_at is None
    assert check_image(camera_jpeg(1, taken=None)).captured_at is None


# --- formats, by content -------------------------------------------------------------------


def _encoded(fmt: str, **options) -> bytes:
    out = io.BytesIO()
    shown_image().save(out, fmt, **options)
    return out.getvalue()


def test_formats_are_sniffed_by_content():
    assert sniff_image_format(_encoded("JPEG")) == "JPEG"
    assert sniff_image_format(_encoded("PNG")) == "PNG"
    assert sniff_image_format(_encoded("GIF")) == "GIF"
    assert sniff_image_format(_encoded("WEBP")) == "WEBP"
    assert sniff_image_format(_encoded("BMP")) == "BMP"
    assert sniff_image_format(_encoded("TIFF")) == "TIFF"
    assert sniff_image_format(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00") == "HEIC"
    assert sniff_image_format(b"BMW is a car maker, not a bitmap") is None
    assert sniff_image_format(b'{"images": []}') is None


@pytest.mark.parametrize("packed", ["zip", "loose files"])
def test_an_upload_reports_unsupported_formats_by_name_and_takes_images_without_extension(
    run_upload, dataset, packed
):
    frames = [shown_image(), Image.new("RGB", SHOWN_SIZE, (0, 0, 255))]
    animation = io.BytesIO()
    frames[0].save(animation, "GIF", save_all=True, append_images=frames[1:])
    files = {
        "scan.tif": _encoded("TIFF"),
        "IMG_0003.HEIC": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
        "frame_without_extension": camera_jpeg(6),
        "animation.gif": animation.getvalue(),
        "notes.bin": b"just some bytes",
    }
    upload = [("upload.zip", zip_bytes(files))] if packed == "zip" else list(files.items())
    job = run_upload(dataset, upload)
    tif = report_line(job, "scan.tif")
    assert tif["outcome"] == "rejected"
    assert tif["message"].startswith("not a supported image format (TIFF)")
    heic = report_line(job, "IMG_0003.HEIC")
    assert heic["outcome"] == "rejected" and "(HEIC)" in heic["message"]
    assert report_line(job, "notes.bin")["outcome"] == "ignored"
    assert report_line(job, "frame_without_extension")["outcome"] == "accepted"
    assert report_line(job, "animation.gif")["outcome"] == "accepted"
    turned = Sample.objects.get(original_name="frame_without_extension")
    assert turned.image.name.endswith(".jpg") and (turned.width, turned.height) == SHOWN_SIZE
    gif = Sample.objects.get(original_name="animation.gif")
    assert gif.image.name.endswith(".png")  # the first frame, as a PNG
    assert_object_at(plain_pixels(stored_bytes(gif)), OBJECT)


def test_a_single_upload_of_an_unsupported_format_is_refused_with_its_name(dataset):
    with pytest.raises(ImageRejected, match=r"not a supported image format \(TIFF\)"):
        services.store_sample(dataset, _encoded("TIFF"), original_name="x.jpg", source="upload")
    assert Sample.objects.count() == 0


def test_a_turned_png_is_stored_turned_without_loss(dataset):
    stored = shown_image().transpose(TRANSPOSE_FOR_ORIENTATION[8])  # undoes orientation 6
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    stored.save(out, "PNG", exif=exif.tobytes())
    sample = services.store_sample(
        dataset, out.getvalue(), original_name="a.png", source="upload"
    ).sample
    assert (sample.width, sample.height) == SHOWN_SIZE
    assert np.array_equal(plain_pixels(stored_bytes(sample)), np.asarray(shown_image()))


# --- orientations that browsers do not apply ------------------------------------------------


def _exif_with_orientation(kind: int, count: int = 1, value: int = 6) -> bytes:
    """Little-endian EXIF whose only tag is the orientation, of this TIFF type and count."""
    import struct

    packed = struct.pack("<H", value).ljust(4, b"\0") if kind == 3 else struct.pack("<I", value)
    entry = struct.pack("<HHI", 0x0112, kind, count) + packed
    return b"Exif\0\0II*\0" + struct.pack("<IH", 8, 1) + entry + struct.pack("<I", 0)


def _jpeg_with_xmp_orientation(value: int = 6) -> bytes:
    stored = shown_image().transpose(TRANSPOSE_FOR_ORIENTATION[8])
    out = io.BytesIO()
    stored.save(out, "JPEG", quality=95)
    packet = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
        f'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="{value}"/>'
        "</rdf:RDF></x:xmpmeta>"
    ).encode()
    body = b"http://ns.adobe.com/xap/1.0/\0" + packet
    segment = b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body
    data = out.getvalue()
    return data[:2] + segment + data[2:]


def _png_with_exif_after_the_image_data() -> bytes:
    import struct
    import zlib

    stored = shown_image().transpose(TRANSPOSE_FOR_ORIENTATION[8])
    out = io.BytesIO()
    stored.save(out, "PNG")
    data = out.getvalue()
    payload = _exif_with_orientation(3)[6:]  # a PNG's eXIf holds the TIFF bytes only
    chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload
    chunk += struct.pack(">I", zlib.crc32(b"eXIf" + payload))
    end = data.rindex(b"IEND") - 4
    return data[:end] + chunk + data[end:]


def _webp_with_exif() -> bytes:
    stored = shown_image().transpose(TRANSPOSE_FOR_ORIENTATION[8])
    out = io.BytesIO()
    stored.save(out, "WEBP", lossless=True, exif=_exif_with_orientation(3))
    return out.getvalue()


def _jpeg_with_exif(exif: bytes) -> bytes:
    out = io.BytesIO()
    shown_image().transpose(TRANSPOSE_FOR_ORIENTATION[8]).save(out, "JPEG", exif=exif)
    return out.getvalue()


BROWSERS_SHOW_AS_STORED = {
    "orientation in WebP's EXIF": _webp_with_exif,
    "orientation only in XMP": _jpeg_with_xmp_orientation,
    "orientation typed LONG": lambda: _jpeg_with_exif(_exif_with_orientation(4)),
    "orientation with two values": lambda: _jpeg_with_exif(_exif_with_orientation(3, count=2)),
    "PNG eXIf after the image data": _png_with_exif_after_the_image_data,
}


@pytest.mark.parametrize("make", BROWSERS_SHOW_AS_STORED.values(), ids=BROWSERS_SHOW_AS_STORED)
def test_an_orientation_that_browsers_ignore_is_ignored_everywhere(dataset, make):
    """Chromium shows these files as stored (checked in the browser by an audit), so boxes drawn
    on them elsewhere are on the stored pixels: the portal, the predict path and the agent read
    them the same way, unturned."""
    from worker.edge.inference import decode_image

    data = make()
    as_stored = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert as_stored.shape[:2] == (SHOWN_SIZE[0], SHOWN_SIZE[1])  # 32 wide, 48 high
    assert check_image(data).orientation == 1
    sample = services.store_sample(dataset, data, original_name="x", source="upload").sample
    assert (sample.width, sample.height) == (SHOWN_SIZE[1], SHOWN_SIZE[0])
    assert stored_bytes(sample) == data
    edge = decode_image(data, max_bytes=len(data), max_pixels=10**6)
    assert decode_rgb(data).shape == edge.shape == as_stored.shape


def test_the_same_orientation_typed_short_is_applied():
    """The control for the test above: the tag as cameras write it."""
    assert check_image(_jpeg_with_exif(_exif_with_orientation(3))).orientation == 6
    assert read_orientation(Image.open(io.BytesIO(camera_jpeg(8)))) == 8


# --- images stored before the rule ---------------------------------------------------------


def test_the_command_turns_images_stored_before_the_rule_with_their_boxes(
    dataset, stored_names, django_capture_on_commit_callbacks
):
    from django.core.files.base import ContentFile
    from django.core.management import call_command

    from apps.datasets.models import Annotation, Box

    data = camera_jpeg(6)
    raw = plain_pixels(data)
    ys, xs = np.nonzero((raw[:, :, 0] > 170) & (raw[:, :, 1] < 80))
    on_stored = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    # As the portal stored it before: the camera's bytes, the stored size, boxes on them.
    sha = hashlib.sha256(data).hexdigest()
    name = default_storage.save(
        f"datasets/{dataset.pk}/images/{sha[:2]}/{sha}.jpg", ContentFile(data)
    )
    sample = Sample.objects.create(
        dataset=dataset, image=name, sha256=sha, width=RAW_SIZE[0], height=RAW_SIZE[1],
        source="upload", split="train",
    )  # fmt: skip
    annotation = Annotation.objects.create(sample=sample, revision=1, source="import")
    Box.objects.create(
        annotation=annotation,
        class_name="cone",
        **dict(zip(("x1", "y1", "x2", "y2"), on_stored, strict=True)),
    )
    sample.current_annotation = annotation
    sample.status = "labeled"
    sample.save()
    upright = services.store_sample(dataset, camera_jpeg(1), original_name="b.jpg", source="upload")

    old_thumbnail = ensure_thumbnail(sample)
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("orient_stored_images", stdout=out)
    assert "1 of 2 samples turned" in out.getvalue()
    sample.refresh_from_db()
    assert (sample.width, sample.height) == SHOWN_SIZE and not sample.thumbnail
    assert name not in stored_names() and old_thumbnail not in stored_names()
    assert_object_at(plain_pixels(stored_bytes(sample)), OBJECT)
    box = Box.objects.get(annotation=annotation)
    assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx(OBJECT, abs=1)
    data_set = load_detection_data([(sample.pk, annotation.pk)], dataset.class_names)
    assert_object_at(data_set.x[0], (box.x1, box.y1, box.x2, box.y2))
    call_command("orient_stored_images", stdout=io.StringIO())  # again: nothing changes
    sample.refresh_from_db()
    assert (sample.width, sample.height) == SHOWN_SIZE
    assert Sample.objects.get(pk=upright.sample.pk).image.name == upright.sample.image.name


def test_the_ml_cores_coco_loader_reads_images_as_shown(tmp_path):
    from worker.ml.data import DetectionData

    (tmp_path / "a.jpg").write_bytes(camera_jpeg(6))
    x1, y1, x2, y2 = OBJECT
    (tmp_path / "annotations.json").write_bytes(
        coco_json([("a.jpg", *SHOWN_SIZE)], [(0, "cone", [x1, y1, x2 - x1, y2 - y1])], ["cone"])
    )
    loaded = DetectionData.from_coco(tmp_path / "annotations.json")
    assert_object_at(loaded.x[0], loaded.y[0][0, :4])


def test_a_16_bit_grayscale_png_is_read_as_a_browser_shows_it_not_clipped_white(dataset):
    """Pillow's own conversion clips 16-bit values at 255 (a frame 99 % white); every reader
    takes the high byte instead: predict, storage's thumbnail, the training loader."""
    from worker.edge.inference import decode_image

    width, height = 64, 32
    values = np.tile(np.linspace(0, 65535, width, dtype=np.uint16), (height, 1))
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")  # a 16-bit grayscale PNG
    data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode.startswith("I")
    expected = np.repeat((values >> 8).astype(np.uint8)[..., None], 3, axis=2)

    assert np.array_equal(decode_image(data, max_bytes=10**7, max_pixels=10**7), expected)
    assert np.array_equal(decode_rgb(data), expected)
    stored = services.store_sample(
        dataset, data, original_name="depth.png", source="upload", boxes=[], split="train"
    )
    training = load_detection_data(
        [(stored.sample.pk, stored.sample.current_annotation_id)], dataset.class_names
    )
    assert np.array_equal(training.x[0], expected)
    with default_storage.open(ensure_thumbnail(stored.sample), "rb") as handle:
        thumbnail = plain_pixels(handle.read()).astype(int)
    assert abs(thumbnail.mean() - expected.mean()) < 3  # a JPEG of the gradient, not white
