"""Is this upload an image we can store? Size, pixel count (decompression bombs), integrity."""

import io
import warnings
from dataclasses import dataclass

from django.conf import settings
from PIL import Image, UnidentifiedImageError

# Pillow format name → the extension a stored copy gets (whatever the upload was called).
# MPO is how Pillow names the JPEG files of many phone and stereo cameras.
FORMAT_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class ImageRejected(Exception):
    pass


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    format: str

    @property
    def extension(self) -> str:
        return FORMAT_EXTENSIONS[self.format]


def looks_like_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def check_image(data: bytes, *, max_bytes: int | None = None, max_pixels: int | None = None):
    """Decodes the whole image once; raises ImageRejected with a reason a user can act on."""
    max_bytes = settings.DATASET_MAX_IMAGE_BYTES if max_bytes is None else max_bytes
    max_pixels = settings.DATASET_MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if len(data) > max_bytes:
        raise ImageRejected(f"{len(data):,} bytes, more than the limit of {max_bytes:,}")
    if not data:
        raise ImageRejected("empty file")
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
                "not an image in a supported format (JPEG, PNG, WebP, BMP)"
            ) from exc
        with image:
            if image.format not in FORMAT_EXTENSIONS:
                raise ImageRejected(
                    f"{image.format} images are not supported (JPEG, PNG, WebP, BMP)"
                )
            width, height = image.size
            if width < 1 or height < 1:
                raise ImageRejected("the image has no pixels")
            if width * height > max_pixels:
                raise ImageRejected(
                    f"{width}x{height} = {width * height:,} pixels, more than the limit of "
                    f"{max_pixels:,} (a decompression bomb?)"
                )
            try:
                image.load()
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as exc:
                raise ImageRejected(f"corrupt or truncated image ({exc})") from exc
            return ImageInfo(width=width, height=height, format=image.format)
