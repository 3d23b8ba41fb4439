"""Reading an uploaded zip without trusting it: paths, links, nested archives, bombs.

A problem with one entry rejects that entry (the report says why); a problem with the whole
archive (not a zip, too many entries, unpacks to more than the limit) rejects the archive.
"""

import posixpath
import stat
import zipfile
from dataclasses import dataclass

from django.conf import settings

NESTED_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".gz", ".bz2", ".xz", ".7z", ".rar")
ZIP_MAGIC = b"PK\x03\x04"
IGNORED_PREFIXES = ("__MACOSX/",)
IGNORED_NAMES = (".DS_Store", "Thumbs.db")
# Small entries compress well for innocent reasons (XML, empty label files): only a large
# entry with an extreme ratio is treated as a bomb.
RATIO_CHECK_MIN_BYTES = 1024 * 1024


class ArchiveRejected(Exception):
    """The whole archive is refused."""


class EntryRejected(Exception):
    """One entry is refused; the rest of the archive is still read."""


@dataclass(frozen=True)
class ZipLimits:
    max_unpacked_bytes: int
    max_ratio: int
    max_entries: int
    max_entry_bytes: int

    @classmethod
    def from_settings(cls) -> "ZipLimits":
        return cls(
            max_unpacked_bytes=settings.DATASET_MAX_UNPACKED_BYTES,
            max_ratio=settings.DATASET_MAX_ZIP_RATIO,
            max_entries=settings.DATASET_MAX_ZIP_ENTRIES,
            max_entry_bytes=max(settings.DATASET_MAX_IMAGE_BYTES, 256 * 1024**2),
        )


def safe_member_name(raw_name: str) -> str:
    """The entry's path, normalised; raises EntryRejected for anything that could escape."""
    if "\x00" in raw_name:
        raise EntryRejected("the name contains a NUL byte")
    name = raw_name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise EntryRejected("absolute paths are not allowed in a zip")
    parts = name.split("/")
    if ".." in parts:
        raise EntryRejected("'..' in a path is not allowed in a zip (it could escape the upload)")
    # normpath drops "./" segments; stripping characters (lstrip("./")) would also turn
    # ".hidden/a.jpg" into "hidden/a.jpg", another entry's name.
    normalised = posixpath.normpath(name)
    return normalised if normalised != "." else name


def is_ignored(name: str) -> bool:
    return name.startswith(IGNORED_PREFIXES) or posixpath.basename(name) in IGNORED_NAMES


class SafeZip:
    """The accepted entries of a zip, read with limits. `rejected` lists (name, reason)."""

    def __init__(self, file, limits: ZipLimits | None = None):
        self.limits = limits or ZipLimits.from_settings()
        try:
            self.zip = zipfile.ZipFile(file)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ArchiveRejected(f"not a readable zip archive ({exc})") from exc
        infos = self.zip.infolist()
        if len(infos) > self.limits.max_entries:
            raise ArchiveRejected(
                f"{len(infos)} entries, more than the limit of {self.limits.max_entries}"
            )
        declared = sum(info.file_size for info in infos)
        if declared > self.limits.max_unpacked_bytes:
            raise ArchiveRejected(
                f"unpacks to {declared:,} bytes, more than the limit of "
                f"{self.limits.max_unpacked_bytes:,} (a zip bomb?)"
            )
        self.members: dict[str, zipfile.ZipInfo] = {}
        self.rejected: list[tuple[str, str]] = []
        for info in infos:
            if info.is_dir():
                continue
            try:
                name = safe_member_name(info.filename)
                self._check_entry(name, info)
            except EntryRejected as exc:
                self.rejected.append((info.filename, str(exc)))
                continue
            if is_ignored(name):
                continue
            if name in self.members:
                # zipfile would hand back the last entry of a name; the first one is kept.
                self.rejected.append(
                    (name, "another entry of this zip has the same name: only the first is read")
                )
                continue
            self.members[name] = info
        self._unpacked = 0

    def _check_entry(self, name: str, info: zipfile.ZipInfo) -> None:
        if info.flag_bits & 0x1:
            raise EntryRejected(
                "encrypted zip entries are not supported: zip it without a password"
            )
        mode = info.external_attr >> 16
        if mode and stat.S_ISLNK(mode):
            raise EntryRejected("symbolic links are not allowed in a zip")
        if name.lower().endswith(NESTED_ARCHIVE_SUFFIXES):
            raise EntryRejected("nested archives are not imported: unpack it and upload its files")
        if info.file_size > self.limits.max_entry_bytes:
            raise EntryRejected(
                f"unpacks to {info.file_size:,} bytes, more than the limit of "
                f"{self.limits.max_entry_bytes:,}"
            )
        if info.file_size >= RATIO_CHECK_MIN_BYTES:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > self.limits.max_ratio:
                raise EntryRejected(
                    f"compression ratio {ratio:.0f}:1 is over the limit of "
                    f"{self.limits.max_ratio}:1 (a zip bomb?)"
                )

    def names(self) -> list[str]:
        return list(self.members)

    def read(self, name: str) -> bytes:
        """The entry's bytes, never more than it declared nor than the limits allow."""
        info = self.members[name]
        budget = min(info.file_size, self.limits.max_entry_bytes)
        if self._unpacked + budget > self.limits.max_unpacked_bytes:
            raise EntryRejected("the archive unpacks to more than the limit (a zip bomb?)")
        try:
            with self.zip.open(info) as stream:
                data = stream.read(budget + 1)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as exc:
            raise EntryRejected(f"corrupt zip entry ({exc})") from exc
        except NotImplementedError as exc:
            raise EntryRejected(f"unsupported compression ({exc})") from exc
        if len(data) > budget:
            raise EntryRejected("the entry unpacks to more than its header says (a zip bomb?)")
        self._unpacked += len(data)
        if data.startswith(ZIP_MAGIC):
            raise EntryRejected("nested archives are not imported: unpack it and upload its files")
        return data

    def read_head(self, name: str, size: int = 32) -> bytes:
        """The entry's first bytes (to recognise a file by content), not counted as unpacked."""
        try:
            with self.zip.open(self.members[name]) as stream:
                return stream.read(size)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
            raise EntryRejected(f"corrupt zip entry ({exc})") from exc

    def close(self) -> None:
        self.zip.close()
