"""Thumbnails: made once on first request, kept in storage beside the image."""

import io

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from apps.datasets.models import Sample
from apps.datasets.services import unique_key_suffix
from worker.ml.orientation import as_rgb


def thumbnail_storage_name(sample: Sample) -> str:
    """A name of its own for each thumbnail written (see unique_key_suffix): two first requests
    at once each write their own object, and the loser removes only its own."""
    sha = sample.sha256
    return f"datasets/{sample.dataset_id}/thumbnails/{sha[:2]}/{sha}-{unique_key_suffix()}.jpg"


def render_thumbnail(image_bytes: bytes, size: int) -> bytes:
    """A JPEG thumbnail of stored pixels (already as shown: see image_checks.stored_image_bytes)."""
    with Image.open(io.BytesIO(image_bytes)) as image:
        image.draft("RGB", (size, size))  # JPEG decodes at a reduced scale: much faster
        image = as_rgb(image)
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=82, optimize=True)
    return out.getvalue()


def ensure_thumbnail(sample: Sample) -> str:
    """The storage name of the sample's thumbnail, making it if it does not exist yet."""
    if sample.thumbnail:
        return sample.thumbnail.name
    with default_storage.open(sample.image.name, "rb") as source:
        data = render_thumbnail(source.read(), settings.DATASET_THUMBNAIL_PX)
    name = default_storage.save(thumbnail_storage_name(sample), ContentFile(data))
    # Two first requests at once: the first to record its file wins, the other removes its own
    # file (a name of its own: thumbnail_storage_name), never the winner's.
    if not Sample.objects.filter(pk=sample.pk, thumbnail="").update(thumbnail=name):
        default_storage.delete(name)
        sample.refresh_from_db(fields=["thumbnail"])
        return sample.thumbnail.name
    sample.thumbnail.name = name
    return name
