"""Loading a loop's model versions into the ML core, and measuring them on labeled data."""

import shutil

from apps.loops import artifacts
from apps.loops.models import Loop, ModelVersion


def build_model(loop: Loop):
    from apps.loops.services import check_algorithm_yaml
    from worker.ml.config import build_base_model

    config = check_algorithm_yaml(loop.algorithm_yaml, loop.dataset.class_names)
    return build_base_model(config, class_names=list(loop.dataset.class_names))


def load_version(version: ModelVersion):
    """A fresh model of the loop's algorithm with this version's weights, checked by sha256."""
    model = build_model(version.loop)
    path = artifacts.fetch(version.artifact.name, version.artifact_sha256, model.work_dir)
    model.load(path, expected_sha256=version.artifact_sha256)
    return model


def discard(model) -> None:
    if model is not None:
        shutil.rmtree(model.work_dir, ignore_errors=True)


def measure(model, data) -> dict:
    """Overall COCO and P/R/F1 metrics, and P/R/F1 per class name."""
    from worker.ml.fpn import EVALUATION_SCORE_FLOOR
    from worker.ml.metrics import detection_metrics, precision_recall_f1

    predictions = model.predict_arrays(data.x, score_threshold=EVALUATION_SCORE_FLOOR)
    score_threshold = model.params["score_threshold"]
    overall = detection_metrics(
        data.y, predictions, model.num_classes, score_threshold=score_threshold
    )
    per_class = precision_recall_f1(
        data.y, predictions, model.num_classes, score_threshold=score_threshold
    )["per_class"]
    overall["per_class"] = {
        model.class_names[entry["class_id"]]: {k: v for k, v in entry.items() if k != "class_id"}
        for entry in per_class
    }
    return overall
