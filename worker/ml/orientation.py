"""EXIF orientation: a camera stores the sensor's pixels and says in EXIF how to turn them.

ilportal's rule: an image's pixels are its EXIF-oriented pixels, the image every browser and
labeling tool shows. The portal applies the rule once, when an image is stored (see
``apps.datasets.image_checks``); code that decodes camera bytes itself (the predict path, the
edge agent) uses ``decode_rgb`` so that its boxes are in the same frame. No Django here.
"""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

ORIENTATION_TAG = 0x0112

# EXIF orientation → the transpose that turns the stored pixels into the shown image.
TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,  # the shown image is the stored one turned 90° clockwise
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

DESCRIPTIONS = {
    1: "upright",
    2: "mirrored left-right",
    3: "turned 180°",
    4: "mirrored top-bottom",
    5: "mirrored and turned 90° counter-clockwise",
    6: "turned 90° clockwise",
    7: "mirrored and turned 90° clockwise",
    8: "turned 90° counter-clockwise",
}


# The formats whose EXIF orientation browsers apply. Chromium ignores the EXIF of a WebP file, the
# XMP copy of the tag, an Orientation of another type than SHORT or with more than one value,
# and a PNG eXIf chunk after the image data: such files are shown as stored, so they are read so.
ORIENTED_FORMATS = ("JPEG", "MPO", "PNG")


def read_orientation(image: Image.Image) -> int:
    """The EXIF orientation a browser applies to this image, 1 when none (or a broken one).
    Call it before ``image.load()``: a PNG's eXIf chunk after the image data, which browsers
    ignore, is in ``image.info`` only once the image is loaded."""
    if image.format not in ORIENTED_FORMATS:
        return 1
    raw = image.info.get("exif")
    return orientation_in_exif(raw) if isinstance(raw, bytes) else 1


def orientation_in_exif(raw: bytes) -> int:
    """Tag 0x0112 of the first IFD of EXIF bytes (TIFF layout, with or without the "Exif"
    header), read as Chromium reads it: one SHORT value from 1 to 8; anything else is 1."""
    if raw.startswith(b"Exif\x00\x00"):
        raw = raw[6:]
    order = {b"II": "<", b"MM": ">"}.get(raw[:2])
    if order is None or len(raw) < 8:
        return 1
    magic, ifd = struct.unpack(order + "HI", raw[2:8])
    if magic != 42 or ifd + 2 > len(raw):
        return 1
    (entries,) = struct.unpack(order + "H", raw[ifd : ifd + 2])
    for index in range(entries):
        entry = ifd + 2 + 12 * index
        if entry + 12 > len(raw):
            return 1
        tag, kind, count = struct.unpack(order + "HHI", raw[entry : entry + 8])
        if tag != ORIENTATION_TAG:
            continue
        if kind != _EXIF_SHORT or count != 1:
            return 1
        (value,) = struct.unpack(order + "H", raw[entry + 8 : entry + 10])
        return value if value in TRANSPOSE_FOR_ORIENTATION else 1
    return 1


_EXIF_SHORT = 3


def swaps_axes(orientation: int) -> bool:
    return orientation in (5, 6, 7, 8)


def shown_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """The (width, height) shown for stored pixels of width × height."""
    return (height, width) if swaps_axes(orientation) else (width, height)


def oriented(image: Image.Image, orientation: int | None = None) -> Image.Image:
    """The image as shown: its pixels turned by the orientation (the same image when upright)."""
    orientation = read_orientation(image) if orientation is None else orientation
    method = TRANSPOSE_FOR_ORIENTATION.get(orientation)
    return image if method is None else image.transpose(method)


def as_rgb(image: Image.Image) -> Image.Image:
    """The image as 8-bit RGB, as a browser shows it. Pillow's own conversion clips 16-bit
    grayscale (modes ``I;16*`` and ``I``) at 255 instead of scaling it, which turns a 16-bit
    frame almost all white; its high byte is what browsers show."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I"):
        values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8
        return Image.fromarray(values.astype(np.uint8), "L").convert("RGB")
    return image.convert("RGB")


def decode_rgb(data: bytes) -> np.ndarray:
    """Camera bytes → the shown image as uint8 HxWx3 (what a model must see)."""
    with Image.open(io.BytesIO(data)) as image:
        orientation = read_orientation(image)
        return np.asarray(as_rgb(oriented(image, orientation)))


def point_to_shown(x: float, y: float, width: int, height: int, orientation: int):
    """A point of the stored pixels (width × height) → the same point in the shown image."""
    if orientation == 2:
        return width - x, y
    if orientation == 3:
        return width - x, height - y
    if orientation == 4:
        return x, height - y
    if orientation == 5:
        return y, x
    if orientation == 6:
        return height - y, x
    if orientation == 7:
        return height - y, width - x
    if orientation == 8:
        return y, width - x
    return x, y


def box_to_shown(box, width: int, height: int, orientation: int) -> tuple[float, ...]:
    """(x1, y1, x2, y2) on the stored pixels (width × height) → the same box on the shown image."""
    x1, y1, x2, y2 = box
    ax, ay = point_to_shown(x1, y1, width, height, orientation)
    bx, by = point_to_shown(x2, y2, width, height, orientation)
    return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)
