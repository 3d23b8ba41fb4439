"""Boxes imported with an EXIF-turned image: in which frame were they drawn?

The rule (docs/datasets.md, with the evidence): boxes are taken as drawn on the image as
shown, because that is what current labeling tools show their users (CVAT, Label Studio,
labelme, labelImg, Datumaro and Ultralytics all apply the EXIF orientation). One exception can
be recognised safely: an annotation that declares the *stored* size of an image whose
orientation swaps the axes, and whose boxes fit only the stored pixels, was drawn by a tool
that ignored EXIF; its boxes are turned with the image. Either way the import report says so.
"""

from apps.datasets.formats.base import LabeledBox
from apps.datasets.image_checks import ImageInfo
from worker.ml.orientation import DESCRIPTIONS, box_to_shown, swaps_axes

# Tools round-trip coordinates through floats: half a pixel of slack when judging a fit.
FIT_TOLERANCE = 0.5


def _declared(size) -> tuple[int, int] | None:
    try:
        width, height = (int(float(value)) for value in size)
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
