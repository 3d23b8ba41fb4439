"""Local storage: a file appears under its name complete or not at all."""

import os
import signal
import subprocess
import sys
import time

from django.core.files.base import ContentFile

from apps.ops.storage import PARTIAL_PREFIX, AtomicFileSystemStorage
from tests.conftest import REPO


def test_a_saved_file_is_complete_and_no_partial_is_left(tmp_path):
    storage = AtomicFileSystemStorage(location=tmp_path)
    name = storage.save("models/a-model.zip", ContentFile(b"x" * 300_000))
    assert name == "models/a-model.zip"
    assert (tmp_path / name).read_bytes() == b"x" * 300_000
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["a-model.zip"]


def test_an_existing_name_is_never_overwritten(tmp_path):
    storage = AtomicFileSystemStorage(location=tmp_path)
    first = storage.save("images/a.png", ContentFile(b"first"))
    second = storage.save("images/a.png", ContentFile(b"second"))
    assert first != second
    assert (tmp_path / first).read_bytes() == b"first"
    assert (tmp_path / second).read_bytes() == b"second"


KILLED_WRITER = """
import sys, time
from django.conf import settings
settings.configure()
from django.core.files.base import File
from apps.ops.storage import AtomicFileSystemStorage

class Slow(File):
    def chunks(self, chunk_size=None):
        for _ in range(1000):
            yield b"y" * 65536
            print("chunk", flush=True)
            time.sleep(0.01)

AtomicFileSystemStorage(location=sys.argv[1]).save("models/abc-model.zip", Slow(None, "m"))
"""


def test_a_writer_killed_mid_write_leaves_no_file_under_the_final_name(tmp_path):
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    for _ in range(3):  # a few chunks written
        assert writer.stdout.readline() == "chunk\n"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    time.sleep(0.1)
    left = [p.name for p in (tmp_path / "models").iterdir()]
    assert "abc-model.zip" not in left
    assert len(left) == 1 and left[0].startswith(PARTIAL_PREFIX)


def test_local_media_is_owner_only_unless_configured(tmp_path, settings):
    """var/media held every image and model world-readable (0644 files, 0755 folders)."""
    from django.core.files.storage import storages

    assert (settings.FILE_UPLOAD_PERMISSIONS, settings.FILE_UPLOAD_DIRECTORY_PERMISSIONS) == (
        0o600,
        0o700,
    )
    storage = AtomicFileSystemStorage(location=tmp_path)  # reads the settings, as default does
    assert type(storages["default"]) is AtomicFileSystemStorage
    name = storage.save("images/ab/c.png", ContentFile(b"png"))
    assert (tmp_path / name).stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "images").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "images" / "ab").stat().st_mode & 0o777 == 0o700

    shared = AtomicFileSystemStorage(
        location=tmp_path / "shared", file_permissions_mode=0o640, directory_permissions_mode=0o750
    )
    name = shared.save("images/d.png", ContentFile(b"png"))
    assert (tmp_path / "shared" / name).stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "shared" / "images").stat().st_mode & 0o777 == 0o750
