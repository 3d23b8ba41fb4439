"""Making a model version servable with LiteRT: its .tflite (converted once, in a child process,
stored immutably with its sha256) and its box decoder's config.

Trained versions carry a .tflite from training; an uploaded or imported archive may not. The
deploy job (a worker) calls ``prepare_for_edge`` before it moves the pointer, so a deployed
version can always be served and downloaded.
"""

import json
import logging
import os
import shutil
import tempfile
import zipfile

from django.db import IntegrityError

from apps.edge.models import EdgeModel
from apps.loops import artifacts
from apps.loops.models import ModelVersion
from apps.loops.smoke_process import run_smoke_process

logger = logging.getLogger(__name__)

DECODER_KEYS = (
    "input_size",
    "class_names",
    "anchors",
    "score_threshold",
    "candidate_threshold",
    "nms_iou",
    "max_detections",
)


class EdgePreparationError(Exception):
    pass


def _archive_config(archive_path: str) -> dict:
    try:
        with zipfile.ZipFile(archive_path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise EdgePreparationError(f"cannot read the archive's config.json: {exc}") from exc
    missing = [key for key in DECODER_KEYS if key not in config]
    if missing:
        raise EdgePreparationError(f"the archive's config.json lacks {missing}")
    return {key: config[key] for key in DECODER_KEYS}


def ensure_edge_model(version: ModelVersion) -> EdgeModel:
    """The version's decoder config (read once from its verified archive; no TensorFlow)."""
    existing = EdgeModel.objects.filter(version=version).first()
    if existing is not None:
        return existing
    path = artifacts.fetch(version.artifact.name, version.artifact_sha256)
    try:
        config = _archive_config(path)
    finally:
        os.remove(path)
    try:
        return EdgeModel.objects.create(version=version, decoder_config=config)
    except IntegrityError:  # another process wrote it a moment ago: the same content
        return EdgeModel.objects.get(version=version)


def ensure_litert(version: ModelVersion) -> ModelVersion:
    """Converts the archive's Keras model to .tflite once, if the version has none yet."""
    if version.litert_sha256:
        return version
    from worker.ml.fpn import read_archive
    from worker.ml.litert import convert_keras_file

    path = artifacts.fetch(version.artifact.name, version.artifact_sha256)
    extracted = None
    try:
        _, extracted = read_archive(path, version.artifact_sha256)
        tflite = os.path.join(extracted, "model.tflite")
        if not os.path.exists(tflite):
            convert_keras_file(os.path.join(extracted, "model.keras"), tflite)
        stored = artifacts.store_file(tflite, f"models/loop-{version.loop_id}", "-model.tflite")
    finally:
        os.remove(path)
        if extracted:
            shutil.rmtree(extracted, ignore_errors=True)
    # Immutable once written: only a version without a LiteRT file gets this one.
    updated = ModelVersion.objects.filter(pk=version.pk, litert_sha256="").update(
        litert=stored.name, litert_sha256=stored.sha256
    )
    if not updated:
        artifacts.delete_quietly(stored.name)
    version.refresh_from_db(fields=["litert", "litert_sha256"])
    return version


def smoke_test_litert(version: ModelVersion, decoder_config: dict) -> dict:
    """Loads and runs the .tflite in a child process, exactly as the predict path will."""
    with tempfile.TemporaryDirectory(prefix="edge-smoke-") as directory:
        tflite = artifacts.fetch(version.litert.name, version.litert_sha256, directory)
        config_path = os.path.join(directory, "decoder.json")
        with open(config_path, "w") as handle:
            json.dump(decoder_config, handle)
        report = run_smoke_process("worker.edge.smoke", tflite, config_path)
    if not report.get("passed"):
        raise EdgePreparationError(
            "LiteRT smoke test failed: " + "; ".join(report.get("problems", []))
        )
    return report


def prepare_for_edge(version: ModelVersion) -> dict:
    """LiteRT file, decoder config and a smoke test: what a deploy needs before the pointer."""
    version = ensure_litert(version)
    edge_model = ensure_edge_model(version)
    report = smoke_test_litert(version, edge_model.decoder_config)
    return {"litert_sha256": version.litert_sha256, "smoke": report}
