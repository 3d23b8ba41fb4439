"""Local file storage that never shows a half-written file under its final name.

Django's FileSystemStorage writes straight to the final name: a process killed mid-write leaves a
truncated file there (a 131,072-byte `…-model.zip` with no row). Here the bytes go to a hidden
temporary file in the same folder, are flushed to disk, and only then get their name, by a hard
link that fails if the name is taken (so no existing file is ever overwritten) or, where links are
not possible, by a rename. A kill leaves at most a `.partial-*` file, which the sweeper removes.
"""

import contextlib
import os
import tempfile

from django.core.files.storage import FileSystemStorage

PARTIAL_PREFIX = ".partial-"


class AtomicFileSystemStorage(FileSystemStorage):
    def _save(self, name, content):
        full_path = self.path(name)
        directory = os.path.dirname(full_path)
        try:
            _make_folders(directory, self.directory_permissions_mode)
        except FileExistsError:
            raise FileExistsError(f"{directory} exists and is not a directory.") from None
        handle, partial = tempfile.mkstemp(prefix=PARTIAL_PREFIX, dir=directory)
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in content.chunks():
                    out.write(chunk.encode() if isinstance(chunk, str) else chunk)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(partial, self.file_permissions_mode or 0o666 & ~_UMASK)
            while True:
                try:
                    _publish(partial, full_path, overwrite=self._allow_overwrite)
                    break
                except FileExistsError:
                    name = self.get_available_name(name)
                    full_path = self.path(name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(partial)
        name = os.path.relpath(full_path, self.location)
        self._ensure_location_group_id(full_path)
        return str(name).replace("\\", "/")


def _make_folders(directory: str, mode: int | None) -> None:
    """As FileSystemStorage does: new folders get FILE_UPLOAD_DIRECTORY_PERMISSIONS if set."""
    if mode is None:
        os.makedirs(directory, exist_ok=True)
        return
    old_umask = os.umask(0o777 & ~mode)
    try:
        os.makedirs(directory, mode, exist_ok=True)
    finally:
        os.umask(old_umask)


def _publish(partial: str, final: str, *, overwrite: bool) -> None:
    if overwrite:
        os.replace(partial, final)
        return
    try:
        os.link(partial, final)  # atomic, and refuses an existing name
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links
        if os.path.exists(final):
            raise FileExistsError(final) from None
        os.rename(partial, final)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # once, at import: os.umask() is process-wide and not thread-safe
