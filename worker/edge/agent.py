"""The edge agent as a library: ``EdgeAgent(portal, token, loop).start()``, then ``agent.infer``.

- Downloads the loop's deployed LiteRT model, checks its sha256, smoke-tests it, and only then
  swaps it in; the previous model stays on disk and in memory (a failed load keeps it serving).
- Answers ``infer(image)`` locally (boxes, hard flag) and mines with the loop's miner settings.
- Queues hard examples (and the loop's sampled share) on disk; a background thread uploads them
  with retries and exponential backoff, each with its idempotency key.
- Polls for a new deployed version with the ETag (one 304 per poll while nothing changes) and
  sends a heartbeat (version in use, queue, health) the fleet page shows.
- Starts and serves with the last model it has when the portal is unreachable.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
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
from worker.edge.upload_queue import UploadQueue

logger = logging.getLogger("ilportal.edge.agent")

MAX_IMAGE_BYTES = 50 * 1024**2
MAX_IMAGE_PIXELS = 40_000_000


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
        delay = min(self.maximum, self.base * 2 ** (self.failures - 1))
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
        threads: int = 2,
        timeout_s: float = 30.0,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 300.0,
    ):
        self.portal = PortalClient(portal_url, token, loop_id, timeout_s=timeout_s)
        self.home = Path(home)
        self.models_dir = self.home / "models"
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.queue = UploadQueue(self.home / "queue", max_items=max_queue)
        self.poll_interval_s = poll_interval_s
        self.threads = threads
        self.health = Health()
        self._model: LocalModel | None = None
        self._previous: LocalModel | None = None
        self._etag: str | None = None
        self._swap_lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_uploader = threading.Event()
        self._threads: list[threading.Thread] = []
        self._upload_backoff = Backoff(backoff_base_s, backoff_max_s)
        self._random = random.Random()

    # ------------------------------------------------------------------ lifecycle
    def start(self, background: bool = True) -> EdgeAgent:
        """Loads the last model on disk, then tries the portal once (offline is fine)."""
        self._load_from_disk()
        try:
            self.sync_model()
        except (PortalUnreachable, PortalRefused) as exc:
            self.health.last_sync_error = str(exc)
            logger.warning("portal not reachable at start (%s); serving the last model", exc)
        if background:
            for target in (self._poll_loop, self._upload_loop):
                thread = threading.Thread(target=target, daemon=True, name=target.__name__)
                thread.start()
                self._threads.append(thread)
        return self

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
        if data is None:
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, format="JPEG", quality=92)
            data = buffer.getvalue()
        detection = {k: answer[k] for k in ("boxes", "hard", "hardness", "miner")}
        self.queue.put(data, name, detection, model.version_id)
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
        if current is not None and current.sha256 == (manifest.get("litert") or {}).get("sha256"):
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
            self._save_manifest_for(updated)
            self._etag = etag
            return renamed
        try:
            model = self._install(manifest)
        except (ChecksumMismatch, ModelRefused) as exc:
            label = manifest["version"]["label"]
            self.health.refused.append({"version": label, "reason": str(exc)})
            logger.error("refused %s: %s; still serving %s", label, exc, self.version)
            self._etag = etag  # do not download the same bad file on every poll
            return False
        self._swap(model)
        self._etag = etag
        return True

    def _install(self, manifest: dict) -> LocalModel:
        litert = manifest.get("litert")
        if not litert:
            raise ModelRefused("the deployed version has no LiteRT file")
        sha256 = litert["sha256"]
        path = self._path(sha256)
        if path.exists() and _sha256_of(path) != sha256:
            path.unlink()  # a damaged local copy: fetch it again
        if not path.exists():
            downloaded = self.portal.download(litert["url"], sha256, str(self.models_dir))
            os.replace(downloaded, path)
        return self._verified(manifest, path)

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
        self._save_manifest_for(model)
        logger.info("now serving %s (was %s)", model.label, self._previous and self._previous.label)

    def _path(self, sha256: str) -> Path:
        return self.models_dir / f"{sha256}.tflite"

    # ------------------------------------------------------------------ local state
    def _save_manifest_for(self, model: LocalModel) -> None:
        current = self.models_dir / "current.json"
        if current.exists():
            os.replace(current, self.models_dir / "previous.json")
        manifest = self._last_manifest_for(model)
        temporary = self.models_dir / "current.json.tmp"
        temporary.write_text(json.dumps(manifest))
        os.replace(temporary, current)

    def _last_manifest_for(self, model: LocalModel) -> dict:
        return {
            "version": {"id": model.version_id, "label": model.label},
            "litert": {"sha256": model.sha256},
            "decoder": model.detector.runner.config,
            "miner": model.detector.miner_spec.as_dict() if model.detector.miner_spec else None,
            "intake": model.intake,
        }

    def _load_from_disk(self) -> None:
        """The last model that served, else the one before it (if the last fails to load)."""
        for name in ("current.json", "previous.json"):
            try:
                manifest = json.loads((self.models_dir / name).read_text())
                model = self._verified(manifest, self._path(manifest["litert"]["sha256"]))
            except (OSError, ValueError, KeyError, ModelRefused) as exc:
                if (self.models_dir / name).exists():
                    logger.error("cannot load the model of %s: %s", name, exc)
                continue
            self._model = model
            logger.info("serving %s from disk", model.label)
            return

    # ------------------------------------------------------------------ background work
    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            try:
                self.sync_model()
                self.portal.heartbeat(self._model and self._model.version_id, self.status())
            except (PortalUnreachable, PortalRefused) as exc:
                self.health.last_sync_error = str(exc)

    def _upload_loop(self) -> None:
        while not self._stop.is_set():
            if not self._upload_backoff.ready():
                self._stop.wait(0.2)
                continue
            if not self.drain(max_items=50):
                self._wake_uploader.wait(1.0)
                self._wake_uploader.clear()

    def drain(self, max_items: int | None = None) -> int:
        """Uploads queued images, oldest first, until the queue is empty or the portal fails.

        Returns how many were sent. A retryable failure (no answer, 5xx, 429) stops and sets
        the backoff; a refusal (other 4xx) drops the item and counts it as rejected.
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
                self.health.upload_error = str(exc)
                self._upload_backoff.failed()
                break
            except PortalRefused as exc:
                if exc.code == 429 or exc.code in (401, 403):
                    # Over the rate, or the token is being fixed: keep the image, wait.
                    self.health.upload_error = str(exc)
                    self._upload_backoff.failed(exc.retry_after)
                    break
                self.health.upload_error = str(exc)
                self.queue.done(item, rejected=True)
                continue
            self.queue.done(item)
            self._upload_backoff.succeeded()
            self.health.upload_error = ""
            sent += 1
        return sent

    def status(self) -> dict:
        return {
            "version": self.version,
            "previous": self._previous and {"id": self._previous.version_id},
            "queue": len(self.queue),
            **self.queue.counters,
            "last_sync": self.health.last_sync,
            "last_sync_error": self.health.last_sync_error,
            "upload_error": self.health.upload_error,
            "refused": self.health.refused[-5:],
        }


class ModelRefused(Exception):
    """A new model that did not pass its checks: the agent keeps the one it has."""


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
