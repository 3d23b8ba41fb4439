"""Model artifacts in storage: written once under a content-addressed name, verified on read."""

import hashlib
import os
import tempfile
import zipfile
from dataclasses import dataclass

from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage


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


def store_file(local_path: str, folder: str, suffix: str) -> StoredArtifact:
    """One upload (one S3 put): a reader never sees a half-written artifact under its name."""
    sha256 = sha256_of_path(local_path)
    with open(local_path, "rb") as handle:
        name = default_storage.save(f"{folder}/{sha256[:16]}{suffix}", File(handle))
    return StoredArtifact(name=name, sha256=sha256, size=os.path.getsize(local_path))


def store_litert_from_archive(archive_path: str, folder: str) -> StoredArtifact | None:
    """The edge's .tflite, stored beside the archive so edge agents fetch only what they run."""
    with zipfile.ZipFile(archive_path) as archive:
        if "model.tflite" not in archive.namelist():
            return None
        data = archive.read("model.tflite")
    sha256 = hashlib.sha256(data).hexdigest()
    name = default_storage.save(f"{folder}/{sha256[:16]}-model.tflite", ContentFile(data))
    return StoredArtifact(name=name, sha256=sha256, size=len(data))


def fetch(name: str, expected_sha256: str, directory: str | None = None) -> str:
    """Copies an artifact to a local temp file and checks its sha256; returns the path."""
    handle, path = tempfile.mkstemp(suffix=os.path.splitext(name)[1], dir=directory)
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
