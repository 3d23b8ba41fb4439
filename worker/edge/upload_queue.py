"""The agent's on-disk upload queue: survives restarts and days offline.

One item = one image file plus its metadata file, written to a temporary name and renamed, so a
crash never leaves half an item. Names start with a zero-padded sequence number, so the oldest
comes first. The queue is bounded: when full, the oldest item is dropped and counted. Every item
carries an idempotency key chosen when it was queued, so a retry after a lost answer never
stores the image twice on the portal.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass
class QueuedImage:
    key: str
    image: bytes
    name: str
    detection: dict
    version_id: int | None
    path: Path


class UploadQueue:
    def __init__(self, directory, max_items: int = 1000):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_items = max_items
        self._lock = threading.Lock()
        self._state_path = self.directory / "state.json"
        self._remove_leftovers()
        self._sequence = max((self._sequence_of(p) for p in self._items()), default=0)

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
            return json.loads(self._state_path.read_text())
        except (OSError, ValueError):
            return {"dropped": 0, "uploaded": 0, "rejected": 0}

    def _bump(self, counter: str, by: int = 1) -> None:
        state = self._state()
        state[counter] = state.get(counter, 0) + by
        _atomic_write(self._state_path, json.dumps(state).encode())

    @property
    def counters(self) -> dict:
        with self._lock:
            return self._state()

    @staticmethod
    def _sequence_of(path: Path) -> int:
        return int(path.name.split("-", 1)[0])

    def _items(self) -> list[Path]:
        return sorted(self.directory.glob("*.json.item"), key=self._sequence_of)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items())

    def put(self, image: bytes, name: str, detection: dict, version_id) -> str:
        """Queues an image; returns its idempotency key. Drops (and counts) the oldest if full."""
        key = uuid.uuid4().hex
        with self._lock:
            items = self._items()
            overflow = len(items) - self.max_items + 1
            for oldest in items[: max(overflow, 0)]:
                self._remove(oldest)
                self._bump("dropped")
            self._sequence += 1
            stem = f"{self._sequence:012d}-{key}"
            _atomic_write(self.directory / f"{stem}.img", image)
            meta = {
                "key": key,
                "name": name,
                "detection": detection,
                "version_id": version_id,
                "queued_at": time.time(),
            }
            _atomic_write(self.directory / f"{stem}.json.item", json.dumps(meta).encode())
        return key

    def oldest(self) -> QueuedImage | None:
        with self._lock:
            for path in self._items():
                image_path = path.with_name(path.name.replace(".json.item", ".img"))
                try:
                    meta = json.loads(path.read_text())
                    image = image_path.read_bytes()
                except (OSError, ValueError):
                    self._remove(path)  # unreadable: a torn disk write; drop and count it
                    self._bump("dropped")
                    continue
                return QueuedImage(
                    meta["key"], image, meta["name"], meta["detection"], meta["version_id"], path
                )
        return None

    def done(self, item: QueuedImage, *, rejected: bool = False) -> None:
        with self._lock:
            if not item.path.exists():
                return  # already done: count it once
            self._remove(item.path)
            self._bump("rejected" if rejected else "uploaded")

    def _remove(self, meta_path: Path) -> None:
        # The metadata goes first: without it the image is never read again.
        for path in (meta_path, meta_path.with_name(meta_path.name.replace(".json.item", ".img"))):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _atomic_write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
