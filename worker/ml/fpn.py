"""The FPN base model plugin (``ClassFactory.get_cls(ClassType.GENERAL, "FPN")``).

Interface as the seed (Sedna/Ianvs BaseModel): ``train``, ``save``, ``load``, ``predict``,
``evaluate``. TensorFlow is imported only when a network is built or loaded, so importing this
module (and therefore the registry) stays cheap.

Archive format (one zip, written atomically): ``model.keras``, ``config.json`` (input size,
anchors, class names, thresholds, hyperparameters), optionally ``model.tflite``, and
``manifest.json`` with the sha256 of every other member; ``load`` verifies all of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import weakref
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from worker.ml.anchors import AnchorSpec, assign_targets, generate_anchors
from worker.ml.augment import night_look
from worker.ml.boxes import postprocess
from worker.ml.data import DetectionData, ImageInference, check_image
from worker.ml.errors import (
    ChecksumMismatchError,
    ConfigError,
    MLInputError,
    ModelArchiveError,
    ModelNotReadyError,
)
from worker.ml.params import Param, validate_params
from worker.ml.preprocess import resize_image, scale_detections
from worker.ml.registry import ClassFactory, ClassType

ARCHIVE_FORMAT = "ilportal-fpn"
ARCHIVE_VERSION = 1
DEFAULT_CLASS_NAMES = ["helmet", "vest", "cone"]
# Predictions for COCO mAP keep low-score boxes: AP integrates over all score thresholds.
EVALUATION_SCORE_FLOOR = 0.05

ProgressCallback = Callable[[int, int, dict], None]


def sha256_of_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Below this many training images a feature's std says nothing, and every image would look novel.
MIN_FEATURE_STATS_IMAGES = 8


def _as_images(data) -> list[np.ndarray]:
    if data is None:
        raise MLInputError("no data given (None)")
    if isinstance(data, DetectionData):
        return data.x
    if isinstance(data, np.ndarray):
        if data.ndim == 3:
            return [check_image(data)]
        if data.ndim == 4:
            if len(data) == 0:
                raise MLInputError("no images given (empty batch)")
            return [check_image(image, i) for i, image in enumerate(data)]
        raise MLInputError(f"expected an image (H, W, 3) or a batch (N, H, W, 3), got {data.shape}")
    if isinstance(data, (list, tuple)):
        if len(data) == 0:
            raise MLInputError("no images given (empty list)")
        return [check_image(image, i) for i, image in enumerate(data)]
    raise MLInputError(f"unsupported data type {type(data).__name__}")


@ClassFactory.register(ClassType.GENERAL, alias="FPN")
class FPNModel:
    """Feature-pyramid one-stage detector (RetinaNet-style heads) for small edge devices."""

    HYPERPARAMETERS = (
        Param("learning_rate", float, 0.002, minimum=1e-7, maximum=1.0),
        Param(
            "momentum",
            float,
            0.9,
            minimum=0.0,
            maximum=0.999,
            help="SGD momentum, or Adam's beta_1",
        ),
        Param("optimizer", str, "adam", choices=("adam", "sgd")),
        Param("max_iteration", int, 600, minimum=1, help="training steps per train() call"),
        Param("warmup_steps", int, 30, minimum=0),
        Param("batch_size", int, 16, minimum=1, maximum=512),
        Param("input_size", int, 192, minimum=64, maximum=1024, help="multiple of 32"),
        Param("backbone_width", int, 16, minimum=4, maximum=128),
        Param("fpn_channels", int, 64, minimum=8, maximum=512),
        Param("class_names", list, list(DEFAULT_CLASS_NAMES)),
        Param(
            "score_threshold",
            float,
            0.3,
            minimum=0.0,
            maximum=1.0,
            help="boxes returned by predict()",
        ),
        Param(
            "candidate_threshold",
            float,
            0.05,
            minimum=0.0,
            maximum=1.0,
            help="low floor of candidate boxes kept for miners and mAP",
        ),
        Param("nms_iou", float, 0.5, minimum=0.0, maximum=1.0),
        Param("max_detections", int, 100, minimum=1, maximum=1000),
        Param(
            "replay_ratio",
            float,
            0.0,
            minimum=0.0,
            maximum=0.9,
            help="share of each batch drawn from replay data when given",
        ),
        Param("augment", bool, True, help="random horizontal flips during training"),
        Param(
            "night_augment",
            float,
            0.0,
            minimum=0.0,
            maximum=1.0,
            help="share of new (not replayed) training images given a night-mode look",
        ),
        Param(
            "initial_night_augment",
            float,
            0.0,
            minimum=0.0,
            maximum=1.0,
            help="when above 0: night_augment of a training that starts without weights (a "
            "loop's first model); later fine-tunings use night_augment",
        ),
        Param(
            "freeze_batchnorm",
            bool,
            False,
            help="keep BatchNorm statistics and scales fixed (fine-tuning on few images)",
        ),
        Param("seed", int, 0),
    )
    # Hyperparameters that fix the network's shape: on load() the archive's values always win.
    ARCHITECTURE_KEYS = ("input_size", "backbone_width", "fpn_channels", "class_names")

    def __init__(self, **kwargs):
        self.params = validate_params(self.HYPERPARAMETERS, kwargs, "FPN")
        self._check_params(self.params)
        # Given explicitly (e.g. from the algorithm YAML): these survive load(), except the
        # architecture keys; everything else is taken from the loaded archive.
        self._explicit_keys = set(kwargs) - set(self.ARCHITECTURE_KEYS)
        self.anchor_spec = AnchorSpec()
        self.model = None
        self.checkpoint_path: str | None = None
        # Scratch space (the checkpoint of train(), staging of save/load); removed with the
        # object, so call save() to keep a checkpoint beyond the model's lifetime.
        self.work_dir = tempfile.mkdtemp(
            prefix=f"ilportal-fpn-{os.getpid()}-"
        )  # pid: see the sweeper
        weakref.finalize(self, shutil.rmtree, self.work_dir, True)
        self._forward = None
        self._forward_with_appearance = None
        self._loss_fn = None
        self.last_train_logs: dict = {}
        # Mean and std of the pooled backbone features over the images the model was trained on
        # (see fit_feature_stats); None for a fresh model or an archive written without them.
        self.feature_stats: dict | None = None

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _check_params(params: dict) -> None:
        if params["input_size"] % 32:
            raise ConfigError("must be a multiple of 32 (the coarsest stride)", "FPN.input_size")
        names = params["class_names"]
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ConfigError("expected a non-empty list of names", "FPN.class_names")
        if len(set(names)) != len(names):
            raise ConfigError("class names must be unique", "FPN.class_names")

    @property
    def class_names(self) -> list[str]:
        return list(self.params["class_names"])

    @property
    def num_classes(self) -> int:
        return len(self.params["class_names"])

    @property
    def input_size(self) -> int:
        return self.params["input_size"]

    def anchors(self) -> np.ndarray:
        return generate_anchors(self.input_size, self.anchor_spec)

    def build(self):
        """Create a freshly initialised network (seeded)."""
        import keras

        from worker.ml.fpn_network import build_fpn, make_forward

        keras.utils.set_random_seed(self.params["seed"])
        self.model = build_fpn(
            self.input_size,
            self.num_classes,
            self.anchor_spec.anchors_per_location,
            self.params["backbone_width"],
            self.params["fpn_channels"],
        )
        self._forward = make_forward(self.model)
        self._forward_with_appearance = None
        self._loss_fn = None
        self.feature_stats = None
        return self.model

    def _require_model(self):
        if self.model is None:
            raise ModelNotReadyError("the model is neither trained nor loaded")

    def _prepare(self, images: list[np.ndarray]) -> np.ndarray:
        return np.stack([resize_image(image, self.input_size) for image in images])

    def _scaled_labels(self, images, labels) -> list[np.ndarray]:
        scaled = []
        for image, boxes in zip(images, labels, strict=True):
            boxes = np.array(boxes, np.float32).reshape(-1, 5)
            boxes[:, [0, 2]] *= self.input_size / image.shape[1]
            boxes[:, [1, 3]] *= self.input_size / image.shape[0]
            scaled.append(boxes)
        return scaled

    def _targets(self, batch_labels, anchors):
        parts = [assign_targets(anchors, labels, self.num_classes) for labels in batch_labels]
        return tuple(np.stack(column) for column in zip(*parts, strict=True))

    def _check_train_data(self, data, what="train_data") -> DetectionData:
        if data is None or getattr(data, "x", None) is None or getattr(data, "y", None) is None:
            raise MLInputError(f"{what} is None or has no labels")
        if not isinstance(data, DetectionData):
            data = DetectionData(x=data.x, y=data.y, class_names=self.class_names)
        if len(data) == 0:
            raise MLInputError(f"{what} is empty")
        for labels in data.y:
            if len(labels) and labels[:, 4].max() >= self.num_classes:
                raise MLInputError(f"{what}: class id >= number of classes ({self.num_classes})")
        return data

    # ------------------------------------------------------------------ train
    def train(
        self,
        train_data,
        valid_data=None,
        progress: ProgressCallback | None = None,
        replay_data=None,
        **kwargs,
    ) -> str:
        """Train (or fine-tune the loaded model) and return the checkpoint archive's path.

        ``kwargs`` override hyperparameters for this call only (e.g. ``max_iteration``,
        ``learning_rate``). ``progress(step, total_steps, logs)`` is called about every second
        and at the end, with logs ``loss``, ``class_loss``, ``box_loss``, ``learning_rate``,
        ``images_per_second``, ``epoch``.
        """
        import keras

        from worker.ml.fpn_network import make_train_step

        train_data = self._check_train_data(train_data)
        if replay_data is not None:
            replay_data = self._check_train_data(replay_data, "replay_data")
        params = validate_params(self.HYPERPARAMETERS, {**self.params, **kwargs}, "FPN")
        for key in self.ARCHITECTURE_KEYS:
            if self.model is not None and params[key] != self.params[key]:
                raise ConfigError("cannot change the architecture of a built model", f"FPN.{key}")
        self._check_params(params)
        if self.model is None and params["initial_night_augment"] > 0:
            # The first training decides what a model can see at all: one trained on day frames
            # finds no candidate in a night-mode frame, so no miner can rank those frames later
            # (docs/benchmarks.md, "An initial model trained with the night look").
            params["night_augment"] = params["initial_night_augment"]
        if self.model is None:
            self.params.update({k: params[k] for k in self.ARCHITECTURE_KEYS + ("seed",)})
            self.build()
        steps = params["max_iteration"]
        rng = np.random.default_rng(params["seed"])

        next_batch = self._batch_sampler(train_data, replay_data, params, rng)
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=params["learning_rate"] * 0.1,
            decay_steps=max(steps - params["warmup_steps"], 1),
            alpha=0.05,
            warmup_target=params["learning_rate"],
            warmup_steps=params["warmup_steps"],
        )
        if params["optimizer"] == "adam":
            optimizer = keras.optimizers.Adam(schedule, beta_1=params["momentum"])
        else:
            optimizer = keras.optimizers.SGD(schedule, momentum=params["momentum"], nesterov=True)
        batchnorm_layers = [
            layer
            for layer in self.model.layers
            if isinstance(layer, keras.layers.BatchNormalization)
        ]
        # A frozen Keras BatchNorm runs in inference mode: a handful of edge images then cannot
        # drag the moving statistics away from the earlier domain (a main source of forgetting).
        for layer in batchnorm_layers:
            layer.trainable = not params["freeze_batchnorm"]
        try:
            self._run_steps(
                make_train_step(self.model, optimizer), next_batch, steps, schedule, progress
            )
        finally:
            for layer in batchnorm_layers:
                layer.trainable = True
        if valid_data is not None:
            self.last_train_logs.update(
                {f"val_{k}": v for k, v in self.evaluate(valid_data).items()}
            )
        seen = train_data.x + (replay_data.x if replay_data is not None else [])
        self.fit_feature_stats(seen, rng)
        self.checkpoint_path = self.save(os.path.join(self.work_dir, "checkpoint.zip"))
        return self.checkpoint_path

    def _batch_sampler(self, train_data, replay_data, params, rng):
        """A function returning the next (images, labels, epoch): seeded epochs over the training
        data, topped up with ``replay_ratio`` of each batch drawn from the replay data."""
        batch_size = params["batch_size"]
        images = self._prepare(train_data.x)
        labels = self._scaled_labels(train_data.x, train_data.y)
        replay_images = replay_labels = None
        replay_per_batch = 0
        if replay_data is not None and params["replay_ratio"] > 0:
            replay_images = self._prepare(replay_data.x)
            replay_labels = self._scaled_labels(replay_data.x, replay_data.y)
            replay_per_batch = max(1, int(round(batch_size * params["replay_ratio"])))
        fresh_per_batch = batch_size - replay_per_batch
        state = {"order": rng.permutation(len(images)), "cursor": 0, "epoch": 0}

        def next_batch():
            batch_index = []
            while len(batch_index) < fresh_per_batch:
                if state["cursor"] == len(images):
                    state.update(order=rng.permutation(len(images)), cursor=0)
                    state["epoch"] += 1
                take = min(fresh_per_batch - len(batch_index), len(images) - state["cursor"])
                batch_index.extend(state["order"][state["cursor"] : state["cursor"] + take])
                state["cursor"] += take
            batch_images = images[batch_index]
            batch_labels = [labels[i] for i in batch_index]
            if params["night_augment"] > 0:
                # Only the new data: replay keeps the earlier domain as it was. Greying replayed
                # images too cost 0.05-0.06 regression gate mAP in the benchmark, so the
                # forgetting gate rejected every candidate (docs/benchmarks.md).
                batch_images = night_look(batch_images, params["night_augment"], rng)
            if replay_per_batch:
                replay_index = rng.integers(0, len(replay_images), replay_per_batch)
                batch_images = np.concatenate([batch_images, replay_images[replay_index]])
                batch_labels += [replay_labels[i] for i in replay_index]
            if params["augment"]:
                batch_images, batch_labels = self._flip_some(batch_images, batch_labels, rng)
            return batch_images, batch_labels, state["epoch"]

        return next_batch

    def _run_steps(self, train_step, next_batch, steps, schedule, progress):
        anchors = self.anchors()
        started = last_report = time.perf_counter()
        seen = 0
        for step in range(1, steps + 1):
            batch_images, batch_labels, epoch = next_batch()
            targets = self._targets(batch_labels, anchors)
            total, class_loss, box_loss = train_step(batch_images.astype(np.float32), *targets)
            seen += len(batch_images)
            now = time.perf_counter()
            if progress is not None and (now - last_report >= 1.0 or step == steps or step == 1):
                last_report = now
                logs = self._logs(
                    total, class_loss, box_loss, schedule(step), seen, now - started, epoch
                )
                progress(step, steps, logs)
        if not np.isfinite(float(total)):
            raise MLInputError("training diverged (non-finite loss); lower the learning rate")
        self.last_train_logs = self._logs(
            total, class_loss, box_loss, schedule(steps), seen, time.perf_counter() - started, epoch
        )

    @staticmethod
    def _logs(total, class_loss, box_loss, learning_rate, seen, elapsed, epoch) -> dict:
        return {
            "loss": float(total),
            "class_loss": float(class_loss),
            "box_loss": float(box_loss),
            "learning_rate": float(learning_rate),
            "images_per_second": seen / max(elapsed, 1e-9),
            "epoch": epoch,
        }

    def _flip_some(self, images, labels, rng):
        images = images.copy()
        flipped_labels = []
        for i, boxes in enumerate(labels):
            if rng.random() < 0.5:
                images[i] = images[i, :, ::-1]
                boxes = boxes.copy()
                boxes[:, [0, 2]] = self.input_size - boxes[:, [2, 0]]
            flipped_labels.append(boxes)
        return images, flipped_labels

    def loss(self, data) -> float:
        """Mean detection loss of the current model on labeled data (no training)."""
        from worker.ml.fpn_network import make_loss_fn

        self._require_model()
        data = self._check_train_data(data, "data")
        images = self._prepare(data.x)
        labels = self._scaled_labels(data.x, data.y)
        if self._loss_fn is None:
            self._loss_fn = make_loss_fn(self.model)
        anchors = self.anchors()
        totals = []
        for start in range(0, len(images), 32):
            targets = self._targets(labels[start : start + 32], anchors)
            batch = images[start : start + 32].astype(np.float32)
            totals.append(float(self._loss_fn(batch, *targets)) * len(batch))
        return sum(totals) / len(images)

    # ------------------------------------------------------------------ inference
    def raw_outputs(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Network output (N, anchors, 4 + K) for already resized uint8 images."""
        self._require_model()
        outputs = [
            np.asarray(self._forward(images[start : start + batch_size].astype(np.float32)))
            for start in range(0, len(images), batch_size)
        ]
        return np.concatenate(outputs)

    def _raw_and_appearance(self, images: np.ndarray, batch_size: int = 32):
        """Network output and pooled backbone features (N, D) of already resized images."""
        self._require_model()
        if self._forward_with_appearance is None:
            from worker.ml.fpn_network import make_forward_with_appearance

            self._forward_with_appearance = make_forward_with_appearance(self.model)
        raws, features = [], []
        for start in range(0, len(images), batch_size):
            raw, feature = self._forward_with_appearance(
                images[start : start + batch_size].astype(np.float32)
            )
            raws.append(np.asarray(raw))
            features.append(np.asarray(feature, dtype=np.float64))
        return np.concatenate(raws), np.concatenate(features)

    def fit_feature_stats(self, images, rng=None, max_images: int = 512) -> dict | None:
        """Record the mean and std of the pooled backbone features over ``images`` (at most
        ``max_images``, drawn with ``rng``): the reference that ``feature_shift`` compares to.
        ``train`` calls it with the images it trained on (replay included). Fewer than
        ``MIN_FEATURE_STATS_IMAGES`` images describe no distribution: the model then keeps none."""
        images = _as_images(images)
        if len(images) < MIN_FEATURE_STATS_IMAGES:
            self.feature_stats = None
            return None
        if len(images) > max_images:
            rng = rng if rng is not None else np.random.default_rng(self.params["seed"])
            images = [images[i] for i in sorted(rng.choice(len(images), max_images, False))]
        _, features = self._raw_and_appearance(self._prepare(images))
        std = features.std(axis=0)
        # A floor keeps near-constant features (dead ReLUs) from turning noise into novelty.
        floor = max(float(np.median(std)) * 0.1, 1e-6)
        self.feature_stats = {
            "mean": features.mean(axis=0).tolist(),
            "std": np.maximum(std, floor).tolist(),
            "images": len(images),
        }
        return self.feature_stats

    def feature_shift(self, features: np.ndarray) -> np.ndarray | None:
        """Per image the mean squared z-score of its features against ``feature_stats``."""
        if not self.feature_stats:
            return None
        mean = np.asarray(self.feature_stats["mean"])
        std = np.asarray(self.feature_stats["std"])
        return np.mean(((features - mean) / std) ** 2, axis=1)

    def infer(
        self,
        data,
        flip: bool = False,
        score_threshold: float | None = None,
        with_feature_shift: bool = True,
        with_features: bool = False,
    ):
        """Per image an ``ImageInference`` (boxes, class probabilities, candidates, feature
        shift[, flipped]). ``with_feature_shift=False`` skips the shift (plain prediction).
        ``with_features=True`` also returns each image's pooled backbone features (for batch
        selectors such as ``Coverage``), whether or not the model kept feature statistics."""
        images = _as_images(data)
        threshold = self.params["score_threshold"] if score_threshold is None else score_threshold
        prepared = self._prepare(images)
        features = None
        if (self.feature_stats and with_feature_shift) or with_features:
            raw, features = self._raw_and_appearance(prepared)
            shifts = self.feature_shift(features) if with_feature_shift else None
        else:
            raw, shifts = self.raw_outputs(prepared), None
        decoded = self._decode_all(raw, images)
        flipped = None
        if flip:
            flipped_raw = self.raw_outputs(np.ascontiguousarray(prepared[:, :, ::-1]))
            flipped = []
            for (candidates, _), image in zip(
                self._decode_all(flipped_raw, images), images, strict=True
            ):
                candidates = candidates.copy()
                candidates[:, [0, 2]] = image.shape[1] - candidates[:, [2, 0]]
                flipped.append(candidates)
        results = []
        for index, ((candidates, probs), image) in enumerate(zip(decoded, images, strict=True)):
            keep = candidates[:, 4] >= threshold
            results.append(
                ImageInference(
                    boxes=candidates[keep],
                    class_probs=probs[keep],
                    candidates=candidates,
                    flipped_boxes=None if flipped is None else flipped[index],
                    image_size=image.shape[:2],
                    feature_shift=None if shifts is None else float(shifts[index]),
                    features=features[index] if with_features else None,
                )
            )
        return results

    def _decode_all(self, raw: np.ndarray, images: list[np.ndarray]):
        anchors = self.anchors()
        decoded = []
        for output, image in zip(raw, images, strict=True):
            detections, probs = postprocess(
                output,
                anchors,
                self.num_classes,
                candidate_threshold=self.params["candidate_threshold"],
                iou_threshold=self.params["nms_iou"],
                max_detections=self.params["max_detections"],
            )
            decoded.append((scale_detections(detections, image.shape, self.input_size), probs))
        return decoded

    def predict_arrays(self, data, score_threshold: float | None = None) -> list[np.ndarray]:
        # Boxes only: evaluation, the smoke test and prediction need no feature shift.
        inferences = self.infer(data, score_threshold=score_threshold, with_feature_shift=False)
        return [inference.boxes for inference in inferences]

    def predict(self, data, score_threshold: float | None = None, **kwargs) -> list[list[list]]:
        """Per image a list of ``[x1, y1, x2, y2, score, class_id]`` in that image's pixels."""
        return [boxes.tolist() for boxes in self.predict_arrays(data, score_threshold)]

    # ------------------------------------------------------------------ evaluate
    def evaluate(self, data, model_path=None, metric=None, **kwargs) -> dict:
        """Metrics of the model on labeled data; loads ``model_path`` first when given.

        ``metric``: None (all of ``detection_metrics``), a metric name (``"mAP"``, ``"f1"``...),
        a callable ``f(ground_truth, predictions)`` or the seed's ``(name, callable)`` pair.
        kwargs ``iou_threshold`` and ``score_threshold`` go to precision/recall/F1.
        """
        from worker.ml.metrics import detection_metrics

        if data is None or getattr(data, "x", None) is None or getattr(data, "y", None) is None:
            raise MLInputError("evaluation data is None or has no labels")
        if model_path:
            self.load(model_path)
        predictions = self.predict_arrays(data.x, score_threshold=EVALUATION_SCORE_FLOOR)
        if isinstance(metric, tuple) and len(metric) == 2 and callable(metric[1]):
            return {metric[0]: metric[1](data.y, predictions)}
        if callable(metric):
            return {getattr(metric, "__name__", "metric"): metric(data.y, predictions)}
        results = detection_metrics(
            data.y,
            predictions,
            self.num_classes,
            iou_threshold=kwargs.get("iou_threshold", 0.5),
            score_threshold=kwargs.get("score_threshold", self.params["score_threshold"]),
        )
        if metric is None:
            return results
        names = [metric] if isinstance(metric, str) else list(metric)
        unknown = [name for name in names if name not in results]
        if unknown:
            raise MLInputError(f"unknown metric(s) {unknown}; available: {sorted(results)}")
        return {name: results[name] for name in names}

    # ------------------------------------------------------------------ save / load
    def archive_config(self) -> dict:
        return {
            "format": ARCHIVE_FORMAT,
            "version": ARCHIVE_VERSION,
            "input_size": self.input_size,
            "class_names": self.class_names,
            "anchors": self.anchor_spec.to_dict(),
            "score_threshold": self.params["score_threshold"],
            "candidate_threshold": self.params["candidate_threshold"],
            "nms_iou": self.params["nms_iou"],
            "max_detections": self.params["max_detections"],
            "hyperparameters": self.params,
            "output_layout": "raw[..., :4] box deltas, raw[..., 4:] class logits",
            "feature_stats": self.feature_stats,
        }

    def save(self, model_path, include_litert: bool = False) -> str:
        """Write the archive atomically; a directory path gets ``model.zip`` inside (seed-like)."""
        if not model_path:
            raise MLInputError("model path is empty")
        self._require_model()
        model_path = str(model_path)
        if os.path.splitext(model_path)[-1] != ".zip":
            model_path = os.path.join(model_path, "model.zip")
        target_dir = os.path.dirname(os.path.abspath(model_path))
        os.makedirs(target_dir, exist_ok=True)
        staging = tempfile.mkdtemp(prefix="fpn-save-", dir=self.work_dir)
        try:
            members = {"model.keras": os.path.join(staging, "model.keras")}
            self.model.save(members["model.keras"])
            members["config.json"] = os.path.join(staging, "config.json")
            Path(members["config.json"]).write_text(json.dumps(self.archive_config(), indent=1))
            if include_litert:
                from worker.ml.litert import convert_keras_file

                members["model.tflite"] = os.path.join(staging, "model.tflite")
                convert_keras_file(members["model.keras"], members["model.tflite"])
            manifest = {
                "format": ARCHIVE_FORMAT,
                "version": ARCHIVE_VERSION,
                "sha256": {name: sha256_of_file(path) for name, path in members.items()},
            }
            handle, temporary = tempfile.mkstemp(
                prefix=".model-", suffix=".zip.part", dir=target_dir
            )
            os.close(handle)
            try:
                with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                    for name, path in members.items():
                        archive.write(path, name)
                    archive.writestr("manifest.json", json.dumps(manifest, indent=1))
                os.chmod(temporary, 0o644)  # mkstemp creates 0600
                os.replace(temporary, model_path)
            except BaseException:
                if os.path.exists(temporary):
                    os.remove(temporary)
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return model_path

    def load(self, model_url=None, expected_sha256: str | None = None) -> str:
        """Load an archive written by ``save``; verifies its sha256 values. Returns the path.

        The archive's architecture (input size, widths, class names) always wins; other
        hyperparameters given to the constructor are kept, the rest come from the archive.
        """
        import keras

        from worker.ml.fpn_network import make_forward

        if not model_url:
            raise ModelArchiveError("model url is empty")
        config, extracted = read_archive(model_url, expected_sha256, self.work_dir)
        try:
            model = keras.models.load_model(os.path.join(extracted, "model.keras"), compile=False)
        except Exception as exc:  # Keras raises many types for a broken file
            raise ModelArchiveError(f"{model_url}: cannot load model.keras: {exc}") from exc
        finally:
            shutil.rmtree(extracted, ignore_errors=True)
        known = {p.name for p in self.HYPERPARAMETERS}
        hyperparameters = {k: v for k, v in config.get("hyperparameters", {}).items() if k in known}
        hyperparameters.update({k: self.params[k] for k in self._explicit_keys})
        self.params = validate_params(self.HYPERPARAMETERS, hyperparameters, "FPN")
        self.anchor_spec = AnchorSpec.from_dict(config["anchors"])
        self.model = model
        self._forward = make_forward(model)
        self._forward_with_appearance = None
        self._loss_fn = None
        self.feature_stats = _checked_feature_stats(config.get("feature_stats"), model_url)
        self.checkpoint_path = str(model_url)
        return self.checkpoint_path

    def export_litert(self, path) -> str:
        """Write a ``.tflite`` of the network plus ``<path>.json`` (the decoder's config)."""
        from worker.ml.litert import export_model

        self._require_model()
        return export_model(self, path)


def _checked_feature_stats(stats, model_url) -> dict | None:
    if stats is None:
        return None  # an archive from before feature statistics: no novelty measure
    try:
        mean = np.asarray(stats["mean"], dtype=np.float64)
        std = np.asarray(stats["std"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelArchiveError(f"{model_url}: unreadable feature_stats: {exc}") from exc
    if mean.ndim != 1 or mean.shape != std.shape or not np.all(np.isfinite(mean)):
        raise ModelArchiveError(f"{model_url}: feature_stats mean/std do not match")
    if not np.all(np.isfinite(std)) or np.any(std <= 0):
        raise ModelArchiveError(f"{model_url}: feature_stats std must be finite and positive")
    return stats


def read_archive(model_url, expected_sha256: str | None, work_dir: str | None = None):
    """Verify an archive and extract it to a fresh temp dir; returns ``(config, directory)``."""
    path = Path(model_url)
    if not path.is_file():
        raise ModelArchiveError(f"model archive not found: {model_url}")
    if expected_sha256 is not None and sha256_of_file(path) != expected_sha256.lower():
        raise ChecksumMismatchError(f"{model_url}: sha256 differs from the expected value")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelArchiveError(f"{model_url} is not a valid zip archive: {exc}") from exc
    directory = tempfile.mkdtemp(prefix="fpn-load-", dir=work_dir)
    try:
        with archive:
            names = set(archive.namelist())
            for required in ("manifest.json", "config.json", "model.keras"):
                if required not in names:
                    raise ModelArchiveError(f"{model_url}: missing {required}")
            try:
                manifest = json.loads(archive.read("manifest.json"))
                config = json.loads(archive.read("config.json"))
            except ValueError as exc:
                raise ModelArchiveError(f"{model_url}: unreadable manifest/config: {exc}") from exc
            if (
                manifest.get("format") != ARCHIVE_FORMAT
                or manifest.get("version") != ARCHIVE_VERSION
            ):
                raise ModelArchiveError(
                    f"{model_url}: not an {ARCHIVE_FORMAT} v{ARCHIVE_VERSION} archive"
                )
            recorded = manifest.get("sha256", {})
            for name in names - {"manifest.json"}:
                if name not in recorded:
                    raise ModelArchiveError(f"{model_url}: {name} is not listed in the manifest")
                if os.path.basename(name) != name:
                    raise ModelArchiveError(f"{model_url}: unexpected path {name!r} in archive")
                target = os.path.join(directory, name)
                try:
                    with archive.open(name) as source, open(target, "wb") as sink:
                        shutil.copyfileobj(source, sink)
                except (zipfile.BadZipFile, OSError, EOFError) as exc:
                    raise ModelArchiveError(f"{model_url}: corrupt member {name}: {exc}") from exc
                if sha256_of_file(target) != recorded[name]:
                    raise ChecksumMismatchError(f"{model_url}: sha256 of {name} does not match")
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return config, directory
