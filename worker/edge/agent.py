"""The edge agent as a library: ``EdgeAgent(portal, token, loop).start()``, then ``agent.infer``.

- Downloads the loop's deployed LiteRT model, checks its sha256, smoke-tests it, and only then
  swaps it in; the previous model stays on disk and in memory (a failed load keeps it serving).
  A file on disk is checked against its sha256 before it serves; a damaged copy is downloaded
  again (or the previous model serves).
- Answers ``infer(image)`` locally (boxes, hard flag) and mines with the loop's miner settings.
  ``infer`` never fails because of the upload queue: an image that cannot be queued (disk full)
  is counted as dropped.
- Queues hard examples (and the loop's sampled share) on disk; a background thread uploads them
  with retries and exponential backoff, each with its idempotency key.
- Polls for a new deployed version with the ETag (one 304 per poll while nothing changes) and
  sends a heartbeat (version in use, queue, health) the fleet page shows, also when a poll fails.
- Starts and serves with the last model it has when the portal is unreachable, refuses, hangs,
  or answers garbage: with a model on disk ``start()`` returns within ``start_wait_s``.
- No failure of one request or of one sync stops a background thread: it is logged, shown in
  ``status()`` (and so in the heartbeat), and retried later.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from worker.edge.inference import EdgeDetector, MinerSpec, decode_image
from worker.edge.portal import (
    ChecksumMismatch,
    PortalClient,
    PortalRefused,
    PortalUnreachable,
)
from worker.edge.smoke import smoke_test
from worker.edge.upload_queue import UploadQueue, atomic_write

logger = logging.getLogger("ilportal.edge.agent")

MAX_IMAGE_BYTES = 50 * 1024**2
# An error quoted in the heartbeat's health (a proxy's error page can be long); the portal takes
# at most 64 KiB of health.
ERROR_CHARS = 1000
MAX_IMAGE_PIXELS = 40_000_000
# A model file is named by its sha256: a manifest (or a local .json) naming anything else, such
# as "../x", would make the agent check, replace or delete a file outside its models folder.
SHA256 = re.compile(r"[0-9a-f]{64}")

# Upload refusals about the image itself (the portal's JSON error): the image is dropped and
# counted as rejected. Every other refusal (401/403 token, 429 rate, 404/408/409/425/... about
# the route or the moment) keeps the image and backs off.
ITEM_REFUSALS = (400, 413, 415, 422)
# After this many images refused in a row, the uploader backs off before the next one, so a
# portal (or a proxy) that refuses everything cannot empty the queue at full speed.
REJECTIONS_BEFORE_PAUSE = 10
TOKEN_HINT = (
    "check the device token on the portal's Devices page (revoked, or not scoped to this loop?)"
)


class NoModelYet(Exception):
    """The agent has never had a model: it needs the portal once."""


@dataclass
class LocalModel:
    version_id: int
    label: str
    sha256: str
    detector: EdgeDetector
    intake: dict


@dataclass
class Backoff:
    """Exponential backoff with jitter: 1 s, 2 s, 4 s, ... up to ``maximum``."""

    base: float = 1.0
    maximum: float = 300.0
    failures: int = 0
    until: float = 0.0

    def failed(self, retry_after: float | None = None) -> float:
        self.failures += 1
        delay = min(self.maximum, self.base * 2 ** min(self.failures - 1, 60))
        delay = max(delay * random.uniform(0.8, 1.2), retry_after or 0.0)
        self.until = time.monotonic() + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.until = 0.0

    def ready(self) -> bool:
        return time.monotonic() >= self.until


@dataclass
class Health:
    last_sync: float | None = None
    last_sync_error: str = ""
    refused: list = field(default_factory=list)  # versions refused (bad sha, failed smoke test)
    upload_error: str = ""
    heartbeat_error: str = ""


class EdgeAgent:
    def __init__(
        self,
        portal_url: str,
        token: str,
        loop_id: int,
        home,
        *,
        poll_interval_s: float = 30.0,
        max_queue: int = 1000,
        max_queue_bytes: int | None = 1024**3,
        threads: int = 2,
        timeout_s: float = 30.0,
        download_deadline_s: float = 600.0,
        start_wait_s: float = 5.0,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 300.0,
    ):
        self.portal = PortalClient(
            portal_url, token, loop_id, timeout_s=timeout_s, download_deadline_s=download_deadline_s
        )
        self.home = Path(home)
        self.models_dir = self.home / "models"
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self._remove_leftovers()
        self.queue = UploadQueue(
            self.home / "queue", max_items=max_queue, max_bytes=max_queue_bytes
        )
        self.poll_interval_s = poll_interval_s
        self.start_wait_s = start_wait_s
        self.threads = threads
        self.health = Health()
        self._model: LocalModel | None = None
        self._previous: LocalModel | None = None
        self._etag: str | None = None
        self._swap_lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_uploader = threading.Event()
        self._first_sync = threading.Event()
        self._threads: list[threading.Thread] = []
        self._upload_backoff = Backoff(backoff_base_s, backoff_max_s)
        self._rejected_in_a_row = 0
        self._random = random.Random()
        self._checked_files: dict[str, tuple[int, int]] = {}  # sha256 -> (size, mtime_ns)
        # (version id, sha256) of the versions refused: the manifest's ETag also changes with
        # the loop's settings, and each change downloaded (and refused) the same file again.
        self._refused: set[str] = set()
        self._logged: dict[str, tuple[str, float]] = {}

    def _remove_leftovers(self) -> None:
        """Partial downloads and manifests of an agent killed in the middle of writing them."""
        for pattern in ("*.part", "*.json.tmp"):
            for path in self.models_dir.glob(pattern):
                with contextlib.suppress(OSError):
                    path.unlink()

    # ------------------------------------------------------------------ lifecycle
    def start(self, background: bool = True) -> EdgeAgent:
        """Loads the last model on disk, then asks the portal (offline is fine).

        With a model on disk and ``background``, the first poll runs in the poll thread at once
        and ``start`` waits for it at most ``start_wait_s``: a portal that hangs or trickles
        never keeps the agent from serving. Without a model (or without ``background``) the
        first sync runs here, each request within its deadline."""
        self._load_from_disk()
        if background and self._model is not None:
            self._start_threads()
            if not self._first_sync.wait(self.start_wait_s):
                logger.warning(
                    "the portal has not answered within %.0f s; serving %s from disk and "
                    "syncing in the background",
                    self.start_wait_s,
                    self._model.label,
                )
            return self
        try:
            self.sync_model()
        except Exception as exc:  # any failure: serve what is on disk, retry at the next poll
            self._sync_failed(exc, at_start=True)
        if background:
            self._start_threads()
        return self

    def _start_threads(self) -> None:
        for target in (self._poll_loop, self._upload_loop):
            thread = threading.Thread(target=target, daemon=True, name=target.__name__)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake_uploader.set()
        for thread in self._threads:
            thread.join(timeout_s)

    # ------------------------------------------------------------------ inference
    @property
    def version(self) -> dict | None:
        model = self._model
        return {"id": model.version_id, "label": model.label} if model else None

    def infer(self, image, name: str = "frame.jpg") -> dict:
        """Boxes and the hard verdict for one image (numpy RGB array or encoded bytes)."""
        model = self._model  # one read: the whole call uses one model, even during a swap
        if model is None:
            raise NoModelYet("no model yet: the agent must reach the portal once")
        if isinstance(image, (bytes, bytearray)):
            data = bytes(image)
            array = decode_image(data, max_bytes=MAX_IMAGE_BYTES, max_pixels=MAX_IMAGE_PIXELS)
        else:
            array = np.asarray(image)
            data = None
        (detection,) = model.detector.detect([array])
        answer = detection.as_dict()
        answer["version"] = {"id": model.version_id, "label": model.label}
        answer["queued_for_upload"] = self._maybe_queue(model, answer, array, data, name)
        return answer

    def _maybe_queue(self, model: LocalModel, answer: dict, array, data, name) -> bool:
        mode = model.intake.get("mode", "hard")
        if mode == "nothing":
            return False
        sampled = mode == "sample" and self._random.random() * 100 < model.intake.get(
            "sample_percent", 0
        )
        if not (answer["hard"] or sampled):
            return False
        try:
            if data is None:
                buffer = io.BytesIO()
                Image.fromarray(array).save(buffer, format="JPEG", quality=92)
                data = buffer.getvalue()
            detection = {k: answer[k] for k in ("boxes", "hard", "hardness", "miner")}
            key = self.queue.put(data, name, detection, model.version_id)
        except Exception as exc:  # the answer matters more than the upload: never raise here
            with contextlib.suppress(Exception):
                self.queue.count_dropped()
            self._log("enqueue", logging.WARNING, f"could not queue an image ({exc}); dropped")
            return False
        if key is None:
            self._log(
                "enqueue",
                logging.WARNING,
                "could not queue an image (disk full, or the queue's bound leaves no room for "
                "it); dropped",
            )
            return False
        self._wake_uploader.set()
        return True

    # ------------------------------------------------------------------ model updates
    def sync_model(self) -> bool:
        """Asks for the deployed version (ETag); swaps when it changed. True if it swapped."""
        manifest, etag = self.portal.manifest(self._etag)
        self.health.last_sync = time.time()
        self.health.last_sync_error = ""
        if manifest is None:
            return False
        intake = manifest.get("intake") or {}
        current = self._model
        sha256 = (manifest.get("litert") or {}).get("sha256")
        if current is not None and current.sha256 == sha256 and self._file_ok(sha256):
            # The same file: new miner or intake settings, or a version with identical weights.
            detector = current.detector
            if detector.miner_spec != _miner(manifest):
                detector = self._detector(self._path(current.sha256), manifest)
            version = manifest["version"]
            renamed = version["id"] != current.version_id
            updated = LocalModel(version["id"], version["label"], current.sha256, detector, intake)
            with self._swap_lock:
                if renamed:
                    self._previous = current
                self._model = updated
            self._save_manifest_for(updated)  # previous.json stays: the weights did not change
            self._etag = etag
            return renamed
        if current is not None and current.sha256 == sha256:
            logger.warning(
                "the local file of %s is missing or damaged (sha256 differs): downloading it again",
                current.label,
            )
        refusal = repr((manifest["version"].get("id"), sha256))  # any JSON, hashable
        if refusal in self._refused:
            self._etag = etag  # still the version refused: wait for another one
            return False
        try:
            model = self._install(manifest)
        except (ChecksumMismatch, ModelRefused) as exc:
            label = manifest["version"]["label"]
            self._refused.add(refusal)
            self.health.refused.append({"version": label, "reason": str(exc)})
            logger.error("refused %s: %s; still serving %s", label, exc, self.version)
            self._etag = etag  # do not download the same bad file on every poll
            return False
        if current is not None and current.sha256 == model.sha256:
            # A repaired copy of the same weights: not a new model, previous.json stays.
            with self._swap_lock:
                self._model = model
            self._save_manifest_for(model)
            self._etag = etag
            return model.version_id != current.version_id
        self._swap(model)
        self._etag = etag
        return True

    def _install(self, manifest: dict) -> LocalModel:
        litert = manifest.get("litert")
        if not litert:
            raise ModelRefused("the deployed version has no LiteRT file")
        sha256 = litert["sha256"]
        if not isinstance(sha256, str) or not SHA256.fullmatch(sha256):
            raise ModelRefused(f"the manifest's sha256 is not one: {str(sha256)[:80]!r}")
        path = self._path(sha256)
        if path.exists() and not self._file_ok(sha256):
            path.unlink()  # a damaged local copy: fetch it again
        if not path.exists():
            downloaded = self.portal.download(
                litert["url"], sha256, str(self.models_dir), size=litert.get("size")
            )
            try:
                os.replace(downloaded, path)
            except OSError:
                with contextlib.suppress(OSError):
                    os.remove(downloaded)
                raise
        return self._verified(manifest, path)

    def _file_ok(self, sha256: str | None) -> bool:
        """The local file named by ``sha256`` exists and its bytes have that sha256 (hashed
        again only when its size or modification time changed)."""
        if not isinstance(sha256, str) or not SHA256.fullmatch(sha256):
            return False
        path = self._path(sha256)
        try:
            stat = path.stat()
        except OSError:
            return False
        signature = (stat.st_size, stat.st_mtime_ns)
        if self._checked_files.get(sha256) == signature:
            return True
        try:
            good = _sha256_of(path) == sha256
        except OSError:
            return False
        if good:
            self._checked_files[sha256] = signature
        return good

    def _verified(self, manifest: dict, path: Path) -> LocalModel:
        """Smoke-tests the file and builds its detector; ModelRefused if it fails to load."""
        try:
            report = smoke_test(path, manifest["decoder"])
            if not report["passed"]:
                raise ModelRefused("smoke test failed: " + "; ".join(report["problems"]))
            detector = self._detector(path, manifest)
        except ModelRefused:
            raise
        except Exception as exc:  # a corrupt file fails in many ways: all mean "refuse it"
            raise ModelRefused(f"{type(exc).__name__}: {exc}") from exc
        version = manifest["version"]
        return LocalModel(
            version["id"], version["label"], manifest["litert"]["sha256"], detector,
            manifest.get("intake") or {},
        )  # fmt: skip

    def _detector(self, path: Path, manifest: dict) -> EdgeDetector:
        return EdgeDetector(path, manifest["decoder"], _miner(manifest), threads=self.threads)

    def _swap(self, model: LocalModel) -> None:
        with self._swap_lock:
            self._previous, self._model = self._model, model
        self._save_manifest_for(model, previous=self._previous)
        logger.info("now serving %s (was %s)", model.label, self._previous and self._previous.label)

    def _path(self, sha256: str) -> Path:
        if not SHA256.fullmatch(sha256):  # the callers check; this keeps it so
            raise ModelRefused(f"not a sha256: {sha256[:80]!r}")
        return self.models_dir / f"{sha256}.tflite"

    # ------------------------------------------------------------------ local state
    def _save_manifest_for(self, model: LocalModel, previous: LocalModel | None = None) -> None:
        """current.json describes ``model``; previous.json changes only when the weights do
        (``previous`` is the model it replaced), so restarts and settings changes keep it."""
        writes = [(self.models_dir / "current.json", model)]
        if previous is not None and previous.sha256 != model.sha256:
            writes.insert(0, (self.models_dir / "previous.json", previous))
        for target, described in writes:
            atomic_write(target, json.dumps(self._last_manifest_for(described)).encode())

    def _last_manifest_for(self, model: LocalModel) -> dict:
        return {
            "version": {"id": model.version_id, "label": model.label},
            "litert": {"sha256": model.sha256},
            "decoder": model.detector.runner.config,
            "miner": model.detector.miner_spec.as_dict() if model.detector.miner_spec else None,
            "intake": model.intake,
        }

    def _load_from_disk(self) -> None:
        """The last model that served, else the one before it (if the last fails to load or its
        file no longer matches its sha256)."""
        for name in ("current.json", "previous.json"):
            try:
                manifest = json.loads((self.models_dir / name).read_text())
                sha256 = manifest["litert"]["sha256"]
                if not self._file_ok(sha256):
                    raise ModelRefused(
                        f"{sha256[:12]}….tflite is missing or no longer matches its sha256"
                    )
                model = self._verified(manifest, self._path(sha256))
            except (OSError, ValueError, KeyError, TypeError, ModelRefused) as exc:
                if (self.models_dir / name).exists():
                    logger.error("cannot load the model of %s: %s", name, exc)
                continue
            self._model = model
            logger.info("serving %s from disk", model.label)
            return

    # ------------------------------------------------------------------ background work
    def _poll_loop(self) -> None:
        """Polls at once, then every ``poll_interval_s`` (longer if the portal sent a
        Retry-After). A failed sync is recorded and retried at the next poll; the heartbeat goes
        out unless the portal gave no answer at all."""
        wait = 0.0
        while not self._stop.wait(wait):
            unreachable = None
            try:
                self.sync_model()
            except Exception as exc:  # whatever it is, the next poll tries again
                self._sync_failed(exc)
                if isinstance(exc, PortalUnreachable):
                    unreachable = exc
            else:
                self._sync_succeeded()
            finally:
                self._first_sync.set()
            if unreachable is None:
                self._send_heartbeat()
            retry_after = unreachable.retry_after if unreachable is not None else None
            wait = max(self.poll_interval_s, retry_after or 0.0)

    def _send_heartbeat(self) -> None:
        try:
            self.portal.heartbeat(self._model and self._model.version_id, self.status())
        except Exception as exc:
            self.health.heartbeat_error = _describe(exc)
            self._log("heartbeat", logging.INFO, f"heartbeat not sent: {_describe(exc)}")
        else:
            self.health.heartbeat_error = ""

    def _sync_failed(self, exc: Exception, at_start: bool = False) -> None:
        message = _describe(exc)
        self.health.last_sync_error = message
        model = self._model
        serving = f"serving {model.label}" if model else "no model to serve yet"
        when = " at start" if at_start else ""
        if isinstance(exc, PortalUnreachable):
            text = f"portal not reachable{when} ({message}); {serving}"
        elif isinstance(exc, PortalRefused):
            hint = f"; {TOKEN_HINT}" if exc.code in (401, 403) else ""
            text = f"the portal refused the model poll{when} ({message}){hint}; {serving}"
        else:
            text = f"model sync failed{when} ({message}); {serving}; retrying at the next poll"
        level = logging.ERROR if not isinstance(exc, (PortalUnreachable, PortalRefused)) else None
        self._log("sync", level or logging.WARNING, text, exc_info=level is not None)

    def _sync_succeeded(self) -> None:
        if self._logged.pop("sync", None) is not None:
            logger.info("the portal answers again; serving %s", self.version)

    def _upload_loop(self) -> None:
        while not self._stop.is_set():
            if not self._upload_backoff.ready():
                self._stop.wait(0.2)
                continue
            self._wake_uploader.clear()  # before draining: a put during the drain is not lost
            try:
                sent = self.drain(max_items=50)
            except Exception as exc:  # never let one bad item or answer stop the uploader
                self.health.upload_error = _describe(exc)
                self._log(
                    "upload",
                    logging.ERROR,
                    f"upload failed unexpectedly ({_describe(exc)}); retrying with backoff",
                    exc_info=True,
                )
                self._upload_backoff.failed()
                continue
            if not sent:
                self._wake_uploader.wait(1.0)

    def drain(self, max_items: int | None = None) -> int:
        """Uploads queued images, oldest first, until the queue is empty or the portal fails.

        Returns how many were sent. A retryable failure (no answer, 5xx, a broken answer, 429,
        401/403, and any 4xx not about the image) stops and sets the backoff (Retry-After
        honoured); the portal's refusal of the image itself (400, 413, 415, 422) drops the item
        and counts it as rejected, with a pause after REJECTIONS_BEFORE_PAUSE in a row.
        """
        with self._drain_lock:  # the background uploader and a caller never send one twice
            return self._drain(max_items)

    def _drain(self, max_items: int | None) -> int:
        sent = 0
        while max_items is None or sent < max_items:
            item = self.queue.oldest()
            if item is None:
                break
            try:
                self.portal.upload(item.image, item.name, item.detection, item.version_id, item.key)
            except PortalUnreachable as exc:
                self._upload_failed(f"upload: portal not reachable ({exc}); retrying", exc)
                self._upload_backoff.failed(exc.retry_after)
                break
            except PortalRefused as exc:
                if exc.code in ITEM_REFUSALS and exc.from_portal:
                    self.queue.done(item, rejected=True)
                    self._upload_failed(f"the portal refused an image ({exc}); dropped", exc)
                    self._rejected_in_a_row += 1
                    if self._rejected_in_a_row % REJECTIONS_BEFORE_PAUSE == 0:
                        self._upload_backoff.failed(exc.retry_after)
                        break
                    continue
                # The token, the rate, or an answer about the route or the moment (404 from a
                # misrouted proxy, 408, 409 "in progress", 425, ...): keep the image, wait.
                hint = f"; {TOKEN_HINT}" if exc.code in (401, 403) else ""
                self._upload_failed(f"upload refused ({exc}){hint}; the image is kept", exc)
                self._upload_backoff.failed(exc.retry_after)
                break
            self.queue.done(item)
            self._upload_backoff.succeeded()
            self._rejected_in_a_row = 0
            if self._logged.pop("upload", None) is not None:
                logger.info("uploads go through again")
            self.health.upload_error = ""
            sent += 1
        return sent

    def _upload_failed(self, text: str, exc: Exception) -> None:
        self.health.upload_error = str(exc)
        self._log("upload", logging.WARNING, text)

    def _log(self, topic: str, level: int, text: str, *, every_s=60.0, exc_info=False) -> None:
        """Logs ``text`` when it differs from the topic's last message, else at most once per
        ``every_s`` (a portal down for days does not fill the log)."""
        now = time.monotonic()
        last = self._logged.get(topic)
        if last is not None and last[0] == text and now - last[1] < every_s:
            return
        if topic == "enqueue" and last is not None and now - last[1] < every_s:
            return  # one line a minute while the disk stays full
        self._logged[topic] = (text, now)
        logger.log(level, text, exc_info=exc_info)

    def status(self) -> dict:
        return {
            "version": self.version,
            "previous": self._previous and {"id": self._previous.version_id},
            "queue": len(self.queue),
            "queue_bytes": self.queue.bytes,
            **self.queue.counters,
            "last_sync": self.health.last_sync,
            "last_sync_error": self.health.last_sync_error[:ERROR_CHARS],
            "upload_error": self.health.upload_error[:ERROR_CHARS],
            "refused": [
                {**entry, "reason": str(entry.get("reason", ""))[:ERROR_CHARS]}
                for entry in self.health.refused[-5:]
            ],
        }


class ModelRefused(Exception):
    """A new model that did not pass its checks: the agent keeps the one it has."""


def _describe(exc: Exception) -> str:
    if isinstance(exc, (PortalUnreachable, PortalRefused)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _sha256_of(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _miner(manifest: dict) -> MinerSpec | None:
    miner = manifest.get("miner")
    return MinerSpec(miner["name"], dict(miner.get("hyperparameters") or {})) if miner else None
