"""LiteRT (.tflite) export and the edge-side runner.

Export: the Keras network (raw box deltas + class logits) is converted in a child process, because
the converter leaks memory on every call in TF 2.20/2.21 and the portal's workers live long.
Box decoding and NMS are not in the .tflite (``combined_non_max_suppression`` does not survive the
conversion to builtin ops); ``EdgeRunner`` does them in numpy with the very same code as the
worker (``worker.ml.boxes.postprocess``), so the two paths agree.

The edge side needs only numpy, Pillow and ``ai_edge_litert``; it never imports TensorFlow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from worker.ml.anchors import AnchorSpec, generate_anchors
from worker.ml.boxes import postprocess
from worker.ml.data import check_image
from worker.ml.errors import MLInputError, ModelArchiveError
from worker.ml.parent_death import die_with_parent
from worker.ml.preprocess import resize_image, scale_detections

CONVERT_TIMEOUT_S = 600


def _convert_in_this_process(keras_path: str, tflite_path: str) -> None:
    import keras

    model = keras.models.load_model(keras_path, compile=False)
    model.export(tflite_path, format="litert", verbose=False)


def convert_keras_file(keras_path, tflite_path) -> str:
    """Convert a ``model.keras`` file to ``.tflite`` in a child process; atomic write."""
    tflite_path = str(tflite_path)
    target_dir = os.path.dirname(os.path.abspath(tflite_path))
    os.makedirs(target_dir, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".litert-", suffix=".tflite", dir=target_dir)
    os.close(handle)
    try:
        environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        result = subprocess.run(
            [sys.executable, "-m", "worker.ml.litert", "convert", str(keras_path), temporary],
            capture_output=True,
            text=True,
            timeout=CONVERT_TIMEOUT_S,
            env=environment,
            cwd=Path(__file__).resolve().parents[2],
            preexec_fn=die_with_parent(),  # no orphan converter when the worker is killed
        )
        if result.returncode != 0 or os.path.getsize(temporary) == 0:
            raise ModelArchiveError(f"LiteRT conversion failed: {result.stderr[-2000:]}")
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; the file is meant to be shared
        os.replace(temporary, tflite_path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return tflite_path


def export_model(model, tflite_path) -> str:
    """Write ``tflite_path`` and ``tflite_path + '.json'`` (decoder config) for an FPN model."""
    tflite_path = str(tflite_path)
    with tempfile.TemporaryDirectory(prefix="litert-export-") as staging:
        keras_path = os.path.join(staging, "model.keras")
        model.model.save(keras_path)
        convert_keras_file(keras_path, tflite_path)
    config_path = tflite_path + ".json"
    temporary = config_path + ".part"
    Path(temporary).write_text(json.dumps(model.archive_config(), indent=1))
    os.replace(temporary, config_path)
    return tflite_path


class EdgeRunner:
    """Runs an exported detector with LiteRT and decodes boxes in numpy; thread-safe."""

    def __init__(self, tflite_path, config: dict | str | None = None, num_threads: int = 2):
        from ai_edge_litert.interpreter import Interpreter

        tflite_path = str(tflite_path)
        if not os.path.isfile(tflite_path):
            raise ModelArchiveError(f"LiteRT model not found: {tflite_path}")
        if config is None:
            config = tflite_path + ".json"
        if isinstance(config, (str, Path)):
            try:
                config = json.loads(Path(config).read_text())
            except (OSError, ValueError) as exc:
                raise ModelArchiveError(f"cannot read decoder config {config}: {exc}") from exc
        self.config = config
        self.input_size = int(config["input_size"])
        self.num_classes = len(config["class_names"])
        self.anchors = generate_anchors(self.input_size, AnchorSpec.from_dict(config["anchors"]))
        try:
            self.interpreter = Interpreter(model_path=tflite_path, num_threads=num_threads)
        except (ValueError, RuntimeError) as exc:
            raise ModelArchiveError(f"{tflite_path} is not a valid LiteRT model: {exc}") from exc
        self._input = self.interpreter.get_input_details()[0]["index"]
        self._output = self.interpreter.get_output_details()[0]["index"]
        self._batch = None
        self._interpreter_lock = threading.Lock()

    def raw_outputs(self, images: np.ndarray) -> np.ndarray:
        """Raw network output for a batch of already resized uint8 images.

        One inference at a time per runner (a LiteRT interpreter is not thread-safe); callers in
        other threads resize their images and decode their boxes meanwhile."""
        batch = images.astype(np.float32)
        with self._interpreter_lock:
            if self._batch != len(batch):
                self.interpreter.resize_tensor_input(self._input, list(batch.shape))
                self.interpreter.allocate_tensors()
                self._batch = len(batch)
            self.interpreter.set_tensor(self._input, batch)
            self.interpreter.invoke()
            return self.interpreter.get_tensor(self._output)  # a copy

    def predict(self, images, score_threshold: float | None = None) -> list[np.ndarray]:
        """Per image (M, 6) ``[x1, y1, x2, y2, score, class_id]`` in that image's pixels."""
        if images is None or len(images) == 0:
            raise MLInputError("no images given")
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        images = [check_image(image, i) for i, image in enumerate(images)]
        threshold = self.config["score_threshold"] if score_threshold is None else score_threshold
        batch = np.stack([resize_image(image, self.input_size) for image in images])
        results = []
        for output, image in zip(self.raw_outputs(batch), images, strict=True):
            detections, _ = postprocess(
                output,
                self.anchors,
                self.num_classes,
                candidate_threshold=min(self.config["candidate_threshold"], threshold),
                iou_threshold=self.config["nms_iou"],
                max_detections=self.config["max_detections"],
            )
            detections = detections[detections[:, 4] >= threshold]
            results.append(scale_detections(detections, image.shape, self.input_size))
        return results


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] != "convert":
        print("usage: python -m worker.ml.litert convert MODEL.keras OUT.tflite", file=sys.stderr)
        return 2
    _convert_in_this_process(argv[1], argv[2])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
