"""Is this upload an image we can store? Format, size, pixel count (decompression bombs),
integrity; and what its EXIF says: orientation and capture time.

The rule for orientation (docs/datasets.md): an image's pixels are its EXIF-oriented pixels.
`check_image` reports the size as shown, and `stored_image_bytes` is the one place that turns
received bytes into the bytes stored: the same bytes when the image is upright, else the
oriented image (with the orientation tag removed), so every reader of a stored image (the
labeling page, thumbnails, training, exports) sees the image as shown without knowing EXIF.
"""

import datetime
import io
import re
import warnings
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone
from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from worker.ml.orientation import ORIENTATION_TAG, oriented, read_orientation, shown_size

# Pillow format name → the extension a stored copy gets (whatever the upload was called).
# MPO is how Pillow names the JPEG files of many phone and stereo cameras. A GIF is stored as
# a PNG of its first frame.
FORMAT_EXTENSIONS = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "BMP": "bmp",
    "GIF": "png",
}
SUPPORTED_FORMAT_NAMES = "JPEG, PNG, WebP, BMP, GIF"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")

EXIF_IFD = 0x8769
DATE_TIME_ORIGINAL = 0x9003
OFFSET_TIME_ORIGINAL = 0x9011
_OFFSET = re.compile(r"^([+-])(\d\d):(\d\d)$")

# HEIF-family brands (ISO BMFF `ftyp`): iPhones store HEIC by default.
_HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
_BMP_HEADER_SIZES = {12, 40, 52, 56, 64, 108, 124}


class ImageRejected(Exception):
    pass


@dataclass(frozen=True)
class ImageInfo:
    """width × height as shown (after the EXIF orientation); format as received."""

    width: int
    height: int
    format: str
    orientation: int = 1
    captured_at: datetime.datetime | None = None

    @property
    def extension(self) -> str:
        return FORMAT_EXTENSIONS[self.format]

    @property
    def raw_size(self) -> tuple[int, int]:
        """(width, height) of the pixels as the file stores them, before the orientation."""
        return shown_size(self.width, self.height, self.orientation)


def looks_like_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def sniff_image_format(head: bytes) -> str | None:
    """The image format the first bytes announce (whatever the file is called), or None.

    Knows the formats people send by mistake too (TIFF, HEIC, AVIF, JPEG 2000, PSD, JPEG XL),
    so that they are named in the report rather than called "not an image".
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if (
        head[:2] == b"BM"
        and len(head) >= 18
        and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES
    ):
        return "BMP"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "TIFF"
    if head[4:8] == b"ftyp":
        if head[8:12] in _HEIC_BRANDS:
            return "HEIC"
        if head[8:12] in _AVIF_BRANDS:
            return "AVIF"
    if head.startswith((b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")):
        return "JPEG 2000"
    if head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")):
        return "JPEG XL"
    if head.startswith(b"8BPS"):
        return "PSD"
    return None


def is_supported_format(name: str | None) -> bool:
    return name in FORMAT_EXTENSIONS


def unsupported_format_message(name: str) -> str:
    hint = " (set the phone's camera to 'Most Compatible')" if name == "HEIC" else ""
    return (
        f"not a supported image format ({name}): convert it to JPEG or PNG{hint}; "
        f"supported: {SUPPORTED_FORMAT_NAMES}"
    )


def check_image(data: bytes, *, max_bytes: int | None = None, max_pixels: int | None = None):
    """Decodes the whole image once; raises ImageRejected with a reason a user can act on."""
    max_bytes = settings.DATASET_MAX_IMAGE_BYTES if max_bytes is None else max_bytes
    max_pixels = settings.DATASET_MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if len(data) > max_bytes:
        raise ImageRejected(f"{len(data):,} bytes, more than the limit of {max_bytes:,}")
    if not data:
        raise ImageRejected("empty file")
    sniffed = sniff_image_format(data[:32])
    if sniffed is not None and not is_supported_format(sniffed):
        raise ImageRejected(unsupported_format_message(sniffed))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except (
            UnidentifiedImageError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
            OSError,
            ValueError,
            SyntaxError,
        ) as exc:
            if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
                raise ImageRejected(f"too many pixels (a decompression bomb?): {exc}") from exc
            raise ImageRejected(
                f"not an image in a supported format ({SUPPORTED_FORMAT_NAMES})"
            ) from exc
        with image:
            if image.format not in FORMAT_EXTENSIONS:
                raise ImageRejected(unsupported_format_message(image.format))
            width, height = image.size
            if width < 1 or height < 1:
                raise ImageRejected("the image has no pixels")
            if width * height > max_pixels:
                raise ImageRejected(
                    f"{width}x{height} = {width * height:,} pixels, more than the limit of "
                    f"{max_pixels:,} (a decompression bomb?)"
                )
            orientation = read_orientation(image)  # before load(): see its docstring
            try:
                image.load()  # an animation: its first frame
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as exc:
                raise ImageRejected(f"corrupt or truncated image ({exc})") from exc
            width, height = shown_size(width, height, orientation)
            return ImageInfo(
                width=width,
                height=height,
                format=image.format,
                orientation=orientation,
                captured_at=exif_captured_at(image),
            )


def exif_captured_at(image: Image.Image) -> datetime.datetime | None:
    """EXIF DateTimeOriginal, in its OffsetTimeOriginal when given, else in the portal's
    TIME_ZONE (cameras write local time without a zone); None when absent or unreadable."""
    try:
        exif_ifd = image.getexif().get_ifd(EXIF_IFD)
        value = exif_ifd.get(DATE_TIME_ORIGINAL)
        offset = exif_ifd.get(OFFSET_TIME_ORIGINAL)
    except (OSError, ValueError, SyntaxError, TypeError, KeyError, IndexError):
        return None
    text = _exif_text(value)
    if not text:
        return None
    try:
        naive = datetime.datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None  # "0000:00:00 00:00:00", blanks and other placeholders cameras write
    match = _OFFSET.match(_exif_text(offset))
    if match:
        sign = -1 if match.group(1) == "-" else 1
        minutes = int(match.group(2)) * 60 + int(match.group(3))
        if minutes <= 14 * 60:
            zone = datetime.timezone(datetime.timedelta(minutes=sign * minutes))
            return naive.replace(tzinfo=zone)
    try:
        return timezone.make_aware(naive, timezone.get_default_timezone())
    except (ValueError, OverflowError):
        return None


def _exif_text(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    return value.strip("\x00 ") if isinstance(value, str) else ""


def stored_image_bytes(data: bytes, info: ImageInfo) -> bytes:
    """The bytes to store for a checked image: the image as shown.

    Upright images (nearly all) are stored exactly as received. An EXIF-turned image is turned
    and re-encoded without its orientation tag (other EXIF and the colour profile are kept): a
    JPEG with its own quantization tables and chroma subsampling (near-lossless, about the same
    size; see docs/benchmarks.md), a PNG or WebP losslessly. A GIF becomes a PNG of its first
    frame.
    """
    if info.orientation == 1 and info.format != "GIF":
        return data
    stored_format = {"MPO": "JPEG", "GIF": "PNG"}.get(info.format, info.format)
    with Image.open(io.BytesIO(data)) as image:
        options = {
            "icc_profile": image.info.get("icc_profile"),
            "exif": _exif_without_orientation(image),
        }
        if stored_format == "JPEG":
            options |= {
                "qtables": image.quantization,
                "subsampling": JpegImagePlugin.get_sampling(image),
            }
        turned = oriented(image, info.orientation)
        try:
            return _encoded(turned, stored_format, options)
        except (OSError, ValueError, TypeError):
            # Tables or metadata this encoder refuses: the pixels matter, not the metadata.
            return _encoded(
                turned, stored_format, {"quality": 95} if stored_format == "JPEG" else {}
            )


def _encoded(image: Image.Image, fmt: str, options: dict) -> bytes:
    out = io.BytesIO()
    image.save(
        out, format=fmt, **{key: value for key, value in options.items() if value is not None}
    )
    return out.getvalue()


def _exif_without_orientation(image: Image.Image) -> bytes | None:
    """The image's EXIF minus the orientation tag; None when it has none or it is unreadable."""
    try:
        exif = image.getexif()
        exif.pop(ORIENTATION_TAG, None)
        return exif.tobytes() if len(exif) else None
    except Exception:  # noqa: BLE001 (malformed EXIF takes many shapes; the image is what counts)
        return None
