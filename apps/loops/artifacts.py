"""Model artifacts in storage: written once under a content-addressed name, verified on read."""

import contextlib
import hashlib
import logging
import os
import tempfile
import time
import zipfile
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

logger = logging.getLogger(__name__)


class ArtifactError(Exception):
    pass


@dataclass(frozen=True)
class StoredArtifact:
    name: str
    sha256: str
    size: int


def sha256_of_path(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


STORE_ATTEMPTS = 4
STORE_FIRST_DELAY_S = 1.0


def _save_with_retries(name: str, open_content) -> str:
    """Object stores fail now and then (timeouts, 503s): try again with growing pauses."""
    delay = STORE_FIRST_DELAY_S
    for attempt in range(1, STORE_ATTEMPTS + 1):
        try:
            with open_content() as content:
                return default_storage.save(name, content)
        except (OSError, BotoCoreError, ClientError) as exc:
            if attempt == STORE_ATTEMPTS:
                raise ArtifactError(f"storing {name} failed {attempt} times: {exc}") from exc
            logger.warning("storing %s failed (%s); retrying in %.0f s", name, exc, delay)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def store_file(local_path: str, folder: str, suffix: str) -> StoredArtifact:
    """One upload (one S3 put): a reader never sees a half-written artifact under its name."""
    sha256 = sha256_of_path(local_path)
    name = _save_with_retries(
        f"{folder}/{sha256[:16]}{suffix}",
        lambda: File(open(local_path, "rb")),  # noqa: SIM115
    )
    return StoredArtifact(name=name, sha256=sha256, size=os.path.getsize(local_path))


def store_litert_from_archive(archive_path: str, folder: str) -> StoredArtifact | None:
    """The edge's .tflite, stored beside the archive so edge agents fetch only what they run."""
    with zipfile.ZipFile(archive_path) as archive:
        if "model.tflite" not in archive.namelist():
            return None
        data = archive.read("model.tflite")
    sha256 = hashlib.sha256(data).hexdigest()
    name = _save_with_retries(
        f"{folder}/{sha256[:16]}-model.tflite", lambda: contextlib.nullcontext(ContentFile(data))
    )
    return StoredArtifact(name=name, sha256=sha256, size=len(data))


FETCH_PREFIX = "ilportal-fetch-"


def fetch(name: str, expected_sha256: str, directory: str | None = None) -> str:
    """Copies an artifact to a local temp file and checks its sha256; returns the path.

    The file is named `ilportal-fetch-<pid>-…`: if this process is killed before it removes
    the file, the sweeper knows whose it was (apps/ops/sweeper.py)."""
    handle, path = tempfile.mkstemp(
        prefix=f"{FETCH_PREFIX}{os.getpid()}-", suffix=os.path.splitext(name)[1], dir=directory
    )
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as local, default_storage.open(name, "rb") as stored:
            for chunk in iter(lambda: stored.read(1 << 20), b""):
                digest.update(chunk)
                local.write(chunk)
    except FileNotFoundError as exc:
        os.remove(path)
        raise ArtifactError(f"artifact {name} is missing from storage") from exc
    if digest.hexdigest() != expected_sha256:
        os.remove(path)
        raise ArtifactError(f"artifact {name} does not match its sha256: refusing to use it")
    return path


def delete_quietly(*names: str) -> None:
    for name in names:
        if name:
            default_storage.delete(name)
