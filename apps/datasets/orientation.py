"""Boxes imported with an EXIF-turned image: in which frame were they drawn?

The rule (docs/datasets.md, with the evidence): boxes are taken as drawn on the image as
shown, because that is what current labeling tools show their users (CVAT, Label Studio,
labelme, labelImg, Datumaro and Ultralytics all apply the EXIF orientation). One exception can
be recognised safely: an annotation that declares the *stored* size of an image whose
orientation swaps the axes, and whose boxes fit only the stored pixels, was drawn by a tool
that ignored EXIF; its boxes are turned with the image. Either way the import report says so.
"""

import io

from django.core.files.storage import default_storage
from django.db import transaction
from PIL import Image

from apps.datasets import services
from apps.datasets.formats.base import LabeledBox
from apps.datasets.image_checks import ImageInfo, check_image
from apps.datasets.models import Box, Sample
from worker.ml.orientation import DESCRIPTIONS, box_to_shown, read_orientation, swaps_axes

# Tools round-trip coordinates through floats: half a pixel of slack when judging a fit.
FIT_TOLERANCE = 0.5


def _declared(size) -> tuple[int, int] | None:
    """(width, height) of a ParsedLabels.declared_sizes entry (width, height, file)."""
    try:
        width, height = (int(float(value)) for value in size[:2])
    except (TypeError, ValueError):
        return None
    return width, height


def _fit(boxes: list[LabeledBox], width: float, height: float) -> bool:
    return all(
        b.x1 >= -FIT_TOLERANCE
        and b.y1 >= -FIT_TOLERANCE
        and b.x2 <= width + FIT_TOLERANCE
        and b.y2 <= height + FIT_TOLERANCE
        for b in boxes
    )


def boxes_on_shown_image(
    boxes: list[LabeledBox] | None, info: ImageInfo, declared_size=None
) -> tuple[list[LabeledBox] | None, str]:
    """The imported boxes in the frame of the image as stored (as shown), and a note for the
    report ("" for an upright image). `declared_size`: (width, height) the annotation file
    states for the image (COCO `width`/`height`, VOC `<size>`), if any."""
    orientation = info.orientation
    if orientation == 1:
        return boxes, ""
    turned = f"EXIF orientation {orientation} ({DESCRIPTIONS[orientation]})"
    if not boxes:
        return boxes, f"{turned}: stored as shown, {info.width}x{info.height}"
    raw_width, raw_height = info.raw_size
    drawn_on_stored_pixels = (
        swaps_axes(orientation)
        and _declared(declared_size) == (raw_width, raw_height)
        and not _fit(boxes, info.width, info.height)
        and _fit(boxes, raw_width, raw_height)
    )
    if not drawn_on_stored_pixels:
        return boxes, (
            f"{turned}: stored as shown, {info.width}x{info.height}; boxes read as drawn on "
            "the shown image"
        )
    moved = [
        LabeledBox(
            b.class_name, *box_to_shown((b.x1, b.y1, b.x2, b.y2), *info.raw_size, orientation)
        )
        for b in boxes
    ]
    return moved, (
        f"{turned}: stored as shown, {info.width}x{info.height}; boxes turned with the image "
        f"(the annotation declares the unturned size {raw_width}x{raw_height} and its boxes "
        "fit only the unturned pixels)"
    )


# --- Images stored before the rule ---------------------------------------------------------


def orient_stored_sample(sample_id: int) -> int:
    """Turns a sample stored before the orientation rule (its file still carries an EXIF
    orientation) into the shown frame: a new file, the shown size, and the boxes of every
    revision turned with it (the same objects, in the pixels they now lie on; a revision's
    meaning does not change, so it is corrected in place rather than superseded).
    Returns the orientation it applied (1: nothing to do). The old file and thumbnail are
    removed after the commit; the sample keeps its sha256, so duplicates are still found."""
    sample = Sample.objects.get(pk=sample_id)
    with default_storage.open(sample.image.name, "rb") as handle:
        data = handle.read()
    with Image.open(io.BytesIO(data)) as image:
        if read_orientation(image) == 1:
            return 1  # nearly every image: no need to decode it
    info = check_image(data, max_bytes=len(data))
    raw_width, raw_height = info.raw_size
    if info.orientation == 1 or (sample.width, sample.height) != (raw_width, raw_height):
        return 1  # upright, or already recorded as shown
    new_name = services.write_image_file(sample.dataset_id, sample.sha256, info, data)
    try:
        recorded = _record_turned(sample_id, sample.image.name, new_name, info)
    except BaseException:
        services.delete_files([new_name])
        raise
    if not recorded:
        services.delete_files([new_name])
        return 1
    return info.orientation


def _record_turned(sample_id: int, old_name: str, new_name: str, info: ImageInfo) -> bool:
    raw_width, raw_height = info.raw_size
    with transaction.atomic():
        sample = Sample.objects.select_for_update().get(pk=sample_id)
        if sample.image.name != old_name:
            return False  # another run turned it first
        boxes = list(Box.objects.filter(annotation__sample_id=sample_id))
        for box in boxes:
            box.x1, box.y1, box.x2, box.y2 = box_to_shown(
                (box.x1, box.y1, box.x2, box.y2), raw_width, raw_height, info.orientation
            )
        Box.objects.bulk_update(boxes, ["x1", "y1", "x2", "y2"])
        old = [name for name in (sample.image.name, sample.thumbnail.name) if name]
        Sample.objects.filter(pk=sample_id).update(
            image=new_name, width=info.width, height=info.height, thumbnail=""
        )
        transaction.on_commit(lambda: services.delete_files(old))
    return True


def samples_stored_turned(dataset_id: int | None = None):
    """Ids of samples whose stored file may still carry an EXIF orientation: JPEG, PNG and
    WebP files (BMP has no EXIF; a GIF is stored as a PNG made here)."""
    samples = Sample.objects.order_by("id")
    if dataset_id is not None:
        samples = samples.filter(dataset_id=dataset_id)
    return samples.exclude(image__iendswith=".bmp").values_list("id", flat=True)
