"""Data containers of the ML core.

``DetectionData`` plays the role of Sedna's ``BaseDataSource``: ``.x`` is a list of images (uint8
HxWx3 numpy arrays) and ``.y`` a list of label arrays ``(N, 5)`` = ``[x1, y1, x2, y2, class_id]`` in
that image's pixels (``None`` for unlabeled data). Everything is validated on construction so bad
input fails here, with the image index in the message, not deep inside TensorFlow.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from worker.ml.errors import MLInputError


def check_image(image, index: int = 0) -> np.ndarray:
    """Return the image as a uint8 HxWx3 array or raise ``MLInputError``."""
    if not isinstance(image, np.ndarray):
        raise MLInputError(f"image {index}: expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise MLInputError(f"image {index}: expected dtype uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise MLInputError(f"image {index}: expected shape (H, W, 3), got {image.shape}")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise MLInputError(f"image {index}: too small ({image.shape[1]}x{image.shape[0]})")
    return image


def check_labels(labels, image_shape, num_classes: int | None, index: int = 0) -> np.ndarray:
    """Return labels as float32 (N, 5) or raise ``MLInputError`` (NaN, out of bounds, bad class)."""
    if labels is None:
        raise MLInputError(f"labels {index}: missing")
    array = np.asarray(labels, dtype=np.float32)
    if array.size == 0:
        return np.zeros((0, 5), np.float32)
    if array.ndim != 2 or array.shape[1] != 5:
        raise MLInputError(
            f"labels {index}: expected shape (N, 5) [x1, y1, x2, y2, class_id], got {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise MLInputError(f"labels {index}: contain NaN or infinity")
    height, width = image_shape[:2]
    # Half a pixel of tolerance: COCO tools round-trip boxes through floats.
    tolerance = 0.5
    x1, y1, x2, y2, class_id = array.T
    if np.any(x1 < -tolerance) or np.any(y1 < -tolerance):
        raise MLInputError(f"labels {index}: box starts outside the image")
    if np.any(x2 > width + tolerance) or np.any(y2 > height + tolerance):
        raise MLInputError(f"labels {index}: box ends outside the {width}x{height} image")
    if np.any(x2 <= x1) or np.any(y2 <= y1):
        raise MLInputError(f"labels {index}: box with x2 <= x1 or y2 <= y1")
    if np.any(class_id != np.round(class_id)) or np.any(class_id < 0):
        raise MLInputError(f"labels {index}: class ids must be non-negative integers")
    if num_classes is not None and np.any(class_id >= num_classes):
        raise MLInputError(f"labels {index}: class id >= number of classes ({num_classes})")
    array[:, 0:4:2] = np.clip(array[:, 0:4:2], 0, width)
    array[:, 1:4:2] = np.clip(array[:, 1:4:2], 0, height)
    return array


@dataclass
class DetectionData:
    """Images and (optional) box labels; validated on construction."""

    x: list
    y: list | None = None
    class_names: list[str] = field(default_factory=list)
    image_ids: list | None = None

    def __post_init__(self):
        if self.x is None:
            raise MLInputError("data has no images (x is None)")
        if isinstance(self.x, np.ndarray) and self.x.ndim == 4:
            self.x = list(self.x)
        if not isinstance(self.x, (list, tuple)) or len(self.x) == 0:
            raise MLInputError("data has no images (x is empty)")
        self.x = [check_image(image, index) for index, image in enumerate(self.x)]
        num_classes = len(self.class_names) or None
        if self.y is not None:
            if len(self.y) != len(self.x):
                raise MLInputError(f"{len(self.x)} images but {len(self.y)} label arrays")
            self.y = [
                check_labels(labels, image.shape, num_classes, index)
                for index, (image, labels) in enumerate(zip(self.x, self.y, strict=True))
            ]
        if self.image_ids is None:
            self.image_ids = list(range(len(self.x)))
        elif len(self.image_ids) != len(self.x):
            raise MLInputError("image_ids and x differ in length")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def is_labeled(self) -> bool:
        return self.y is not None

    def subset(self, indices: Sequence[int]) -> DetectionData:
        indices = list(indices)
        return DetectionData(
            x=[self.x[i] for i in indices],
            y=None if self.y is None else [self.y[i] for i in indices],
            class_names=list(self.class_names),
            image_ids=[self.image_ids[i] for i in indices],
        )

    @staticmethod
    def concatenate(parts: Sequence[DetectionData]) -> DetectionData:
        parts = [part for part in parts if part is not None and len(part)]
        if not parts:
            raise MLInputError("nothing to concatenate")
        labeled = all(part.is_labeled for part in parts)
        return DetectionData(
            x=[image for part in parts for image in part.x],
            y=[labels for part in parts for labels in part.y] if labeled else None,
            class_names=list(parts[0].class_names),
            image_ids=[image_id for part in parts for image_id in part.image_ids],
        )

    @classmethod
    def from_coco(cls, annotation_file: str | Path, image_dir: str | Path | None = None):
        """Load a COCO detection JSON (category ids become 0-based class ids in listed order).

        Images are read as shown (EXIF orientation applied), the frame labeling tools draw in.
        """
        from PIL import Image

        from worker.ml.orientation import as_rgb, oriented

        annotation_file = Path(annotation_file)
        try:
            coco = json.loads(annotation_file.read_text())
        except (OSError, ValueError) as exc:
            raise MLInputError(f"cannot read COCO file {annotation_file}: {exc}") from exc
        image_dir = Path(image_dir) if image_dir else annotation_file.parent
        categories = sorted(coco.get("categories", []), key=lambda c: c["id"])
        class_of_category = {c["id"]: index for index, c in enumerate(categories)}
        labels_by_image: dict = {image["id"]: [] for image in coco.get("images", [])}
        for annotation in coco.get("annotations", []):
            x, y, w, h = annotation["bbox"]
            labels_by_image[annotation["image_id"]].append(
                [x, y, x + w, y + h, class_of_category[annotation["category_id"]]]
            )
        images, labels, ids = [], [], []
        for image in coco.get("images", []):
            path = image_dir / image["file_name"]
            try:
                with Image.open(path) as handle:  # as shown: boxes are drawn on that
                    images.append(np.asarray(as_rgb(oriented(handle))))
            except OSError as exc:
                raise MLInputError(f"cannot read image {path}: {exc}") from exc
            labels.append(np.asarray(labels_by_image[image["id"]], np.float32).reshape(-1, 5))
            ids.append(image["id"])
        return cls(x=images, y=labels, class_names=[c["name"] for c in categories], image_ids=ids)


@dataclass
class ImageInference:
    """Everything a miner may look at for one image.

    boxes: (M, 6) ``[x1, y1, x2, y2, score, class_id]`` kept after the score threshold.
    class_probs: (M, K) per-class scores at each kept box.
    candidates: (C, 6) every post-NMS box above the low candidate floor (includes ``boxes``).
    flipped_boxes: (F, 6) detections on the horizontally flipped image, mapped back; optional.
    feature_shift: how unlike the model's training data the image looks: the mean squared z-score
    of its pooled backbone features against the training data's (about 1 for a familiar image);
    None when the model kept no training statistics.
    features: (D,) the image's pooled backbone features (what ``feature_shift`` is computed from),
    for batch selectors that spread a labeling budget over the feature space; None when not asked.
    """

    boxes: np.ndarray
    class_probs: np.ndarray | None = None
    candidates: np.ndarray | None = None
    flipped_boxes: np.ndarray | None = None
    image_size: tuple[int, int] | None = None  # (height, width)
    feature_shift: float | None = None
    features: np.ndarray | None = None

    @classmethod
    def from_boxes(cls, boxes, **kwargs) -> ImageInference:
        """Build from a plain list of ``[x1, y1, x2, y2, score, class]`` (Sedna's input)."""
        array = np.asarray(boxes if boxes is not None else [], dtype=np.float32)
        array = array.reshape(-1, 6) if array.size else np.zeros((0, 6), np.float32)
        return cls(boxes=array, **kwargs)
