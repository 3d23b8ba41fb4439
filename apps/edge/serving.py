"""The deployed model of each loop, loaded once per serving process and swapped without a restart.

Every predict request sees the deployed pointer as the database has it now, whichever process
moved it: its loop is cached in the process only as long as no loop or intake policy has changed
since (`apps.ops.generation`: one Redis read per request instead of a database connection).
Models are cached by (version, miner settings): the first request after a deploy or a rollback
loads the new version while requests already running finish on the old one; nobody waits for a
restart and no request fails. A rollback finds its version still cached (the last few are kept).
"""

import copy
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

from django.conf import settings

from apps.edge.preparation import ensure_edge_model
from apps.loops import artifacts
from apps.loops.models import Loop, ModelVersion
from apps.ops.generation import GenerationCache, new_generation

logger = logging.getLogger(__name__)

KEEP_MODELS = 4


class NotServable(Exception):
    """The loop has no deployed model that can be served (the API answers 409)."""


@dataclass(frozen=True)
class ServedModel:
    loop_id: int
    version_id: int
    number: int
    label: str
    detector: object  # worker.edge.inference.EdgeDetector

    def version_dict(self) -> dict:
        return {"id": self.version_id, "number": self.number, "label": self.label}


_models: "OrderedDict[tuple, ServedModel]" = OrderedDict()
_models_lock = threading.Lock()
_loading_locks: dict[tuple, threading.Lock] = {}


# The loops that predict requests name, with their intake policy: read from the database only
# after a loop or a policy changed (a new generation), not on every request.
LOOPS_GENERATION = "edge-loops"
_loops: GenerationCache[Loop] = GenerationCache(LOOPS_GENERATION)


def loops_changed(*args, **kwargs) -> None:
    """Signal receiver: a loop or an intake policy changed; cached loops are stale."""
    new_generation(LOOPS_GENERATION)


def _load_loop(loop_id: int) -> Loop | None:
    return Loop.objects.select_related("intake_policy").filter(pk=loop_id).first()


def serving_loop(loop_id: int) -> Loop | None:
    """The loop (with its intake policy) as the database has it now; None if there is none.

    Each caller gets its own copy; the policy object is shared, so callers must not change it
    (`services.update_policy` is given a loop read from the database)."""
    loop = _loops.get(loop_id, lambda: _load_loop(loop_id))
    return copy.copy(loop) if loop is not None else None


def miner_spec(loop: Loop):
    """The miner and thresholds of the loop's algorithm YAML (None: the YAML names no miner)."""
    from worker.edge.inference import MinerSpec
    from worker.ml.config import load_algorithm_config

    # The operator's plugin modules only, as when the YAML was saved: a YAML stored before
    # ALGORITHM_PLUGINS existed may name any module, and importing one runs its code here.
    config = load_algorithm_config(loop.algorithm_yaml, allowed_plugins=settings.ALGORITHM_PLUGINS)
    return MinerSpec.from_config(config)


def _cache_key(loop: Loop) -> tuple:
    yaml_digest = hashlib.sha256(loop.algorithm_yaml.encode()).hexdigest()[:16]
    return (loop.deployed_version_id, yaml_digest)


def served_model(loop: Loop) -> ServedModel:
    """The model serving ``loop`` as its row says now; loads it on first use in this process."""
    if loop.deployed_version_id is None:
        raise NotServable(f"Loop {loop.name!r} has no deployed model yet: deploy a version first.")
    cache_key = _cache_key(loop)
    model = _models.get(cache_key)
    if model is not None:
        return model
    with _models_lock:
        loading = _loading_locks.setdefault(cache_key, threading.Lock())
    with loading:  # one load per version; concurrent first requests wait for it
        model = _models.get(cache_key)
        if model is None:
            model = _load(loop)
            with _models_lock:
                _models[cache_key] = model
                while len(_models) > KEEP_MODELS:
                    _models.popitem(last=False)
    return model


def _local_copy(version: ModelVersion) -> str:
    """The verified .tflite in a local cache (content-addressed, so never stale)."""
    directory = os.path.join(settings.VAR_DIR, "edge-models")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{version.litert_sha256}.tflite")
    if not os.path.exists(path):
        fetched = artifacts.fetch(version.litert.name, version.litert_sha256, directory)
        os.replace(fetched, path)
    elif artifacts.sha256_of_path(path) != version.litert_sha256:
        os.remove(path)
        return _local_copy(version)
    return path


def _load(loop: Loop) -> ServedModel:
    from worker.edge.inference import EdgeDetector
    from worker.ml.errors import MLError

    version = ModelVersion.objects.get(pk=loop.deployed_version_id)
    if not version.litert_sha256:
        raise NotServable(
            f"{version.label} has no LiteRT file: deploy it again (the deploy job converts it)."
        )
    try:
        decoder = ensure_edge_model(version).decoder_config
        detector = EdgeDetector(
            _local_copy(version),
            decoder,
            miner_spec(loop),
            threads=settings.EDGE_INFERENCE_THREADS,
        )
    except (MLError, artifacts.ArtifactError) as exc:
        raise NotServable(f"{version.label} cannot be served: {exc}") from exc
    logger.info("serving %s of loop %s (pid %s)", version.label, loop.pk, os.getpid())
    return ServedModel(loop.pk, version.pk, version.number, version.label, detector)


def forget_loop(sender=None, *, loop_id: int, version_id: int, **kwargs) -> None:
    """deployed_pointer_moved in this process: load the new version now if this process serves
    the loop, so the next request finds it ready (other processes load on their next request)."""
    if not any(model.loop_id == loop_id for model in list(_models.values())):
        return
    loop = Loop.objects.filter(pk=loop_id).first()
    if loop is not None and loop.deployed_version_id == version_id:
        served_model(loop)


def clear() -> None:
    """Drop every cached model and loop (tests)."""
    _loops.clear()
    with _models_lock:
        _models.clear()
        _loading_locks.clear()
