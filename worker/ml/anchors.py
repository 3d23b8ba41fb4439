"""Multi-scale anchors and training-target assignment, in numpy (shared by worker and edge).

Anchor order matches the network's output order: level (P3, P4, P5) → row → column → anchor
(scales × aspect ratios), so ``raw_output[:, i]`` belongs to ``anchors[i]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from worker.ml.boxes import encode, iou_matrix


@dataclass(frozen=True)
class AnchorSpec:
    strides: tuple[int, ...] = (8, 16, 32)
    # Side of the scale-1 square anchor on each level = size_factor × stride (24, 48, 96 px).
    size_factor: float = 3.0
    scales: tuple[float, ...] = (1.0, 1.5)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # height / width

    @property
    def anchors_per_location(self) -> int:
        return len(self.scales) * len(self.aspect_ratios)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> AnchorSpec:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def generate_anchors(input_size: int, spec: AnchorSpec) -> np.ndarray:
    """All anchors of a square ``input_size`` image as (N, 4) ``[x1, y1, x2, y2]``."""
    per_level = []
    for stride in spec.strides:
        cells = input_size // stride
        shapes = []
        for scale in spec.scales:
            for ratio in spec.aspect_ratios:
                side = spec.size_factor * stride * scale
                width, height = side / np.sqrt(ratio), side * np.sqrt(ratio)
                shapes.append((width, height))
        shapes = np.asarray(shapes, np.float32)
        centres = (np.arange(cells, dtype=np.float32) + 0.5) * stride
        cy, cx = np.meshgrid(centres, centres, indexing="ij")
        centre = np.stack([cx, cy], axis=-1).reshape(-1, 1, 2)
        half = 0.5 * shapes[None, :, :]
        boxes = np.concatenate([centre - half, centre + half], axis=-1).reshape(-1, 4)
        per_level.append(boxes)
    return np.concatenate(per_level, axis=0).astype(np.float32)


def assign_targets(
    anchors: np.ndarray,
    gt: np.ndarray,
    num_classes: int,
    positive_iou: float = 0.5,
    negative_iou: float = 0.4,
):
    """Training targets for one image.

    Returns ``(class_targets (N, K), box_targets (N, 4), positive (N,), valid (N,))``. Anchors with
    IoU >= positive_iou are positives, < negative_iou negatives, in between ignored (valid=False).
    Each ground-truth box also claims its best anchor, so small objects always get a positive.
    """
    count = len(anchors)
    class_targets = np.zeros((count, num_classes), np.float32)
    box_targets = np.zeros((count, 4), np.float32)
    if len(gt) == 0:
        return class_targets, box_targets, np.zeros(count, bool), np.ones(count, bool)
    overlaps = iou_matrix(anchors, gt[:, :4])
    best_gt = overlaps.argmax(axis=1)
    best_iou = overlaps[np.arange(count), best_gt]
    positive = best_iou >= positive_iou
    valid = (best_iou < negative_iou) | positive
    best_anchor = overlaps.argmax(axis=0)
    positive[best_anchor] = True
    valid[best_anchor] = True
    best_gt[best_anchor] = np.arange(len(gt))
    matched = gt[best_gt[positive]]
    class_targets[np.nonzero(positive)[0], matched[:, 4].astype(np.int64)] = 1.0
    box_targets[positive] = encode(matched[:, :4], anchors[positive])
    return class_targets, box_targets, positive, valid
