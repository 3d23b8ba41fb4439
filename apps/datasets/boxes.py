"""Judging boxes against their image: reject what cannot be meant, clip what overhangs."""

import hashlib
import json
import math
from dataclasses import dataclass

from django.conf import settings

from apps.datasets.formats.base import LabeledBox


class BoxRejected(Exception):
    pass


@dataclass
class CheckedBoxes:
    boxes: list[LabeledBox]
    warnings: list[str]


def boxes_key(boxes) -> str:
    """A revision's content: the same boxes (class and coordinates, in any order) give the same
    key. Takes LabeledBox or Box rows."""
    content = sorted(
        [b.class_name, float(b.x1), float(b.y1), float(b.x2), float(b.y2)] for b in boxes
    )
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()


def to_pixels(boxes: list[LabeledBox], width: int, height: int) -> list[LabeledBox]:
    """Fractions of the image size (YOLO) → pixels."""
    return [
        LabeledBox(b.class_name, b.x1 * width, b.y1 * height, b.x2 * width, b.y2 * height)
        for b in boxes
    ]


# A side shorter than this is no box: it holds no pixel anyone could label, and normalised
# coordinates with few decimals would write it as 0, which every reader refuses.
MIN_BOX_SIDE = 0.01
# What a side may lose to rounding on its way through normalised text (YOLO) and back to pixels:
# a box of exactly MIN_BOX_SIDE that the portal exported must import again.
_SIDE_ROUNDING = 1e-6


def check_boxes(
    boxes: list[LabeledBox], width: int, height: int, class_names: list[str] | None = None
) -> CheckedBoxes:
    """Raises BoxRejected for a NaN, inverted, empty or wholly outside box, or an unknown class;
    clips a box that overhangs the image and says so in `warnings`."""
    limit = settings.DATASET_MAX_BOXES_PER_IMAGE
    if len(boxes) > limit:
        raise BoxRejected(
            f"{len(boxes):,} boxes on one image, more than the limit of {limit:,} "
            "(DATASET_MAX_BOXES_PER_IMAGE)"
        )
    checked, warnings = [], []
    for number, box in enumerate(boxes, start=1):
        label = f"box {number} ({box.class_name})"
        coordinates = (box.x1, box.y1, box.x2, box.y2)
        if not all(math.isfinite(value) for value in coordinates):
            raise BoxRejected(f"{label} has a NaN or infinite coordinate {coordinates}")
        if class_names is not None and box.class_name not in class_names:
            raise BoxRejected(f"{label}: class {box.class_name!r} is not one of the dataset's")
        if box.x2 < box.x1 or box.y2 < box.y1:
            raise BoxRejected(f"{label} is inverted: x2 < x1 or y2 < y1 in {coordinates}")
        shortest = min(box.x2 - box.x1, box.y2 - box.y1)
        if shortest < MIN_BOX_SIDE - _SIDE_ROUNDING:
            raise BoxRejected(
                f"{label} is empty (width or height under {MIN_BOX_SIDE} pixel): {coordinates}"
            )
        clipped = LabeledBox(
            box.class_name,
            min(max(box.x1, 0.0), width),
            min(max(box.y1, 0.0), height),
            min(max(box.x2, 0.0), width),
            min(max(box.y2, 0.0), height),
        )
        if min(clipped.x2 - clipped.x1, clipped.y2 - clipped.y1) < MIN_BOX_SIDE - _SIDE_ROUNDING:
            raise BoxRejected(f"{label} lies outside the {width}x{height} image: {coordinates}")
        if clipped != box:
            rounded = tuple(round(v, 1) for v in coordinates)
            warnings.append(f"{label} {rounded} overhangs the {width}x{height} image: clipped")
        checked.append(clipped)
    return CheckedBoxes(boxes=checked, warnings=warnings)
