"""The sweeper: removes what killed processes leave behind, and logs each removal.

- Scratch folders in this machine's temp dir (`ilportal-fpn-<pid>-…` of the ML core,
  `ilportal-train-<pid>-…`, and pid-less `ilportal-*` folders): removed once their process is dead
  (a minute's grace), or, without a pid, once untouched for SWEEP_GRACE_S. Likewise the loose
  `ilportal-fetch-<pid>-…` files of artifacts that a killed deploy or evaluation had fetched.
- Files in storage under models/, datasets/ and uploads/ that no row refers to (a model archive
  whose version was never recorded, images of an import that failed half-way, uploads whose import
  job is gone), and half-written `.partial-*` files: removed once older than SWEEP_GRACE_S, so work
  in progress (a file stored a moment before its row) is never touched.

It runs hourly on beat, on every worker at its start (its machine's temp dir), and as
`manage.py sweep_orphans [--dry-run]`.
"""

import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import models

from apps.ops.storage import PARTIAL_PREFIX

logger = logging.getLogger(__name__)

TEMP_PREFIXES = ("ilportal-fpn-", "ilportal-train-", "ilportal-import-", "ilportal-upload-")
# Loose files, not folders: an artifact fetched to the temp dir (apps/loops/artifacts.fetch).
TEMP_FILE_PREFIXES = ("ilportal-fetch-",)
DEAD_PROCESS_GRACE_S = 60
# healthz/ and system-check/ hold only probes that are deleted at once: any left is an orphan.
STORAGE_PREFIXES = ("models/", "datasets/", "uploads/", "healthz/", "system-check/")
_PID = re.compile(r"^ilportal-[a-z]+-(\d+)-")


@dataclass(frozen=True)
class Removal:
    where: str  # "temp" or "storage"
    name: str
    size: int
    reason: str

    def __str__(self):
        return f"{self.where}: {self.name} ({self.size:,} bytes): {self.reason}"


def sweep_orphans(*, dry_run: bool = False, grace_s: float | None = None) -> list[Removal]:
    grace_s = settings.SWEEP_GRACE_S if grace_s is None else grace_s
    found = sweep_temp_folders(dry_run=dry_run, grace_s=grace_s)
    found += sweep_storage(dry_run=dry_run, grace_s=grace_s)
    return found


# --- Temp folders on this machine -----------------------------------------------------------


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _folder_size(path: Path) -> int:
    if not path.is_dir():
        return path.lstat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _last_touched(path: Path) -> float:
    newest = path.stat().st_mtime
    for entry in path.iterdir() if path.is_dir() else ():
        with contextlib.suppress(OSError):
            newest = max(newest, entry.lstat().st_mtime)
    return newest


def sweep_temp_folders(
    *, dry_run: bool = False, grace_s: float | None = None, temp_dir: str | None = None
) -> list[Removal]:
    grace_s = settings.SWEEP_GRACE_S if grace_s is None else grace_s
    now = time.time()
    removals = []
    for path in Path(temp_dir or tempfile.gettempdir()).iterdir():
        if path.is_symlink() or not (
            (path.name.startswith(TEMP_PREFIXES) and path.is_dir())
            or (path.name.startswith(TEMP_FILE_PREFIXES) and path.is_file())
        ):
            continue
        try:
            age = now - _last_touched(path)
        except OSError:
            continue
        match = _PID.match(path.name)
        if match and not _process_alive(int(match.group(1))):
            if age < min(grace_s, DEAD_PROCESS_GRACE_S):
                continue
            reason = f"its process {match.group(1)} is dead"
        elif age >= grace_s and not (match and _process_alive(int(match.group(1)))):
            reason = f"untouched for {age / 3600:.1f} h"
        else:
            continue
        removal = Removal("temp", str(path), _folder_size(path), reason)
        _remove(removal, dry_run, lambda path=path: _remove_path(path))
        removals.append(removal)
    return removals


def _remove_path(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# --- Files in storage without a row ---------------------------------------------------------


def referenced_names() -> set[str]:
    """Every file name a row refers to: each FileField of each model, and the uploads that an
    active import job still has to read."""
    from apps.jobs.models import ACTIVE_STATUSES, Job

    names: set[str] = set()
    for model in apps.get_models():
        for field in model._meta.get_fields():
            if isinstance(field, models.FileField):
                names.update(
                    model._default_manager.exclude(**{field.name: ""})
                    .values_list(field.name, flat=True)
                    .iterator()
                )
    for params in Job.objects.filter(status__in=ACTIVE_STATUSES).values_list("params", flat=True):
        for item in (params or {}).get("staged", []) if isinstance(params, dict) else []:
            if isinstance(item, dict) and item.get("key"):
                names.add(item["key"])
    return names


def _stored_files(prefix: str):
    """(name, modified epoch, size) of every file under `prefix`, cheaply per backend."""
    bucket = getattr(default_storage, "bucket", None)
    if bucket is not None:  # S3: one listing gives times and sizes, no request per file
        location = default_storage.location.strip("/")
        full_prefix = f"{location}/{prefix}" if location else prefix
        for item in bucket.objects.filter(Prefix=full_prefix):
            name = item.key[len(location) + 1 :] if location else item.key
            yield name, item.last_modified.timestamp(), item.size
        return
    root = Path(default_storage.location)
    for folder, _dirs, files in os.walk(root / prefix):
        for file_name in files:
            path = Path(folder) / file_name
            try:
                stat = path.lstat()
            except OSError:
                continue
            yield path.relative_to(root).as_posix(), stat.st_mtime, stat.st_size


def sweep_storage(*, dry_run: bool = False, grace_s: float | None = None) -> list[Removal]:
    grace_s = settings.SWEEP_GRACE_S if grace_s is None else grace_s
    cutoff = time.time() - grace_s
    old = [
        (name, size)
        for prefix in STORAGE_PREFIXES
        for name, modified, size in _stored_files(prefix)
        if modified < cutoff
    ]
    if not old:
        return []
    referenced = referenced_names()  # read after listing: a row added meanwhile still counts
    removals = []
    for name, size in old:
        if os.path.basename(name).startswith(PARTIAL_PREFIX):
            reason = "half-written by a process that was killed"
        elif name not in referenced:
            reason = "no row refers to it"
        else:
            continue
        removal = Removal("storage", name, size, reason)
        _remove(removal, dry_run, lambda name=name: default_storage.delete(name))
        removals.append(removal)
    return removals


def _remove(removal: Removal, dry_run: bool, delete) -> None:
    if dry_run:
        logger.info("sweeper (dry run) would remove %s", removal)
        return
    delete()
    logger.warning("sweeper removed %s", removal)
