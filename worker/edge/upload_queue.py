"""The agent's on-disk upload queue: survives restarts and days offline.

One item = one image file plus its metadata file, written to a temporary name and renamed, so a
crash never leaves half an item. Names start with a zero-padded sequence number, so the oldest
comes first. The queue is bounded in items and in bytes: when full, the oldest item is dropped
and counted (never the one being uploaded). Every item carries an idempotency key chosen when it
was queued, so a retry after a lost answer never stores the image twice on the portal.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ITEM_NAME = re.compile(r"^(\d{12,20})-([0-9a-f]{1,64})\.json\.item$")
COUNTERS = ("dropped", "uploaded", "rejected")


@dataclass
class QueuedImage:
    key: str
    image: bytes
    name: str
    detection: dict
    version_id: int | None
    path: Path


class UploadQueue:
    def __init__(self, directory, max_items: int = 1000, max_bytes: int | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._state_path = self.directory / "state.json"
        self._unsaved = dict.fromkeys(COUNTERS, 0)  # counts the disk could not take (disk full)
        self._in_flight: Path | None = None  # handed out by oldest(), not done() yet
        self._remove_leftovers()
        items = self._items()
        self._sequence = max((self._sequence_of(p) for p in items), default=0)
        self._bytes = sum(self._size_of(p) for p in items)

    def _remove_leftovers(self) -> None:
        """Temporary files and images without metadata, from a crash in the middle of a put."""
        for temporary in self.directory.glob(".*.tmp"):
            temporary.unlink(missing_ok=True)
        for image in self.directory.glob("*.img"):
            if not image.with_name(image.name.replace(".img", ".json.item")).exists():
                image.unlink(missing_ok=True)

    # -- bookkeeping that survives restarts
    def _state(self) -> dict:
        try:
            state = json.loads(self._state_path.read_text())
        except (OSError, ValueError):
            state = None
        if not isinstance(state, dict):
            state = {}  # missing, torn, or not an object ([] or null): start the counts again
        return {name: (state.get(name) if type(state.get(name)) is int else 0) for name in COUNTERS}

    def _bump(self, counter: str, by: int = 1) -> None:
        self._unsaved[counter] += by
        state = self._state()
        for name, count in self._unsaved.items():
            state[name] += count
        try:
            atomic_write(self._state_path, json.dumps(state).encode())
        except OSError:
            return  # disk full: kept in memory, written with the next count that fits
        self._unsaved = dict.fromkeys(COUNTERS, 0)

    @property
    def counters(self) -> dict:
        with self._lock:
            state = self._state()
            return {name: state[name] + self._unsaved[name] for name in COUNTERS}

    def count_dropped(self) -> None:
        """An image that could not even be queued (e.g. it could not be encoded)."""
        with self._lock:
            self._bump("dropped")

    @staticmethod
    def _sequence_of(path: Path) -> int:
        return int(ITEM_NAME.match(path.name).group(1))

    def _items(self) -> list[Path]:
        """The items, oldest first; a file whose name is not an item's is left alone."""
        items = [p for p in self.directory.glob("*.json.item") if ITEM_NAME.match(p.name)]
        return sorted(items, key=self._sequence_of)

    @staticmethod
    def _image_of(meta_path: Path) -> Path:
        return meta_path.with_name(meta_path.name.replace(".json.item", ".img"))

    def _size_of(self, meta_path: Path) -> int:
        size = 0
        for path in (meta_path, self._image_of(meta_path)):
            with contextlib.suppress(OSError):
                size += path.stat().st_size
        return size

    def __len__(self) -> int:
        with self._lock:
            return len(self._items())

    @property
    def bytes(self) -> int:
        return self._bytes

    def put(self, image: bytes, name: str, detection: dict, version_id) -> str | None:
        """Queues an image; returns its idempotency key. Drops (and counts) the oldest if full.

        None when the image could not be stored (disk full, larger than the byte bound on its
        own, or not fitting beside the item being uploaded): it is counted as dropped, and
        nothing of it stays on disk."""
        key = uuid.uuid4().hex
        meta = {
            "key": key,
            "name": name,
            "detection": detection,
            "version_id": version_id,
            "queued_at": time.time(),
        }
        encoded = json.dumps(meta).encode()
        size = len(image) + len(encoded)
        with self._lock:
            if self.max_bytes is not None and size > self.max_bytes:
                self._bump("dropped")
                return None
            items = self._items()
            count = len(items)

            def fits() -> bool:
                fits_count = count + 1 <= self.max_items
                return fits_count and (
                    self.max_bytes is None or self._bytes + size <= self.max_bytes
                )

            for oldest in items:
                if fits():
                    break
                if oldest == self._in_flight:
                    continue  # being uploaded: dropping it would count an upload as dropped
                self._remove(oldest)
                self._bump("dropped")
                count -= 1
            if not fits():
                # Only the item being uploaded is left and the new one does not fit beside it:
                # the new one is dropped, so the queue never holds more than its bounds.
                self._bump("dropped")
                return None
            self._sequence += 1
            stem = f"{self._sequence:012d}-{key}"
            image_path = self.directory / f"{stem}.img"
            try:
                atomic_write(image_path, image)
                atomic_write(self.directory / f"{stem}.json.item", encoded)
            except OSError:
                image_path.unlink(missing_ok=True)
                self._bump("dropped")
                return None
            self._bytes += size
        return key

    def oldest(self) -> QueuedImage | None:
        with self._lock:
            for path in self._items():
                try:
                    meta = json.loads(path.read_text())
                    image = self._image_of(path).read_bytes()
                    item = QueuedImage(
                        str(meta["key"]),
                        image,
                        str(meta["name"]),
                        meta["detection"],
                        meta["version_id"],
                        path,
                    )
                    if not isinstance(item.detection, dict):
                        raise TypeError("detection is not an object")
                    # The key goes into a header: one that is not the key its name was given
                    # (a damaged file) could never be sent, and would hold up every later item.
                    if item.key != ITEM_NAME.match(path.name).group(2):
                        raise ValueError("the key is not the one in the item's name")
                except (OSError, ValueError, KeyError, TypeError):
                    # Unreadable or not an item's metadata (a torn disk write, a stray file):
                    # drop and count it.
                    self._remove(path)
                    self._bump("dropped")
                    continue
                self._in_flight = path
                return item
        return None

    def done(self, item: QueuedImage, *, rejected: bool = False) -> None:
        with self._lock:
            if self._in_flight == item.path:
                self._in_flight = None
            if not item.path.exists():
                return  # already done: count it once
            self._remove(item.path)
            self._bump("rejected" if rejected else "uploaded")

    def _remove(self, meta_path: Path) -> None:
        # The metadata goes first: without it the image is never read again.
        self._bytes = max(0, self._bytes - self._size_of(meta_path))
        for path in (meta_path, self._image_of(meta_path)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def atomic_write(path: Path, data: bytes) -> None:
    """Written to a temporary name, then renamed; the temporary file never stays behind."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
