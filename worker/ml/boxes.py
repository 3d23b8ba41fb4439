"""Box arithmetic in numpy: IoU, anchor encoding/decoding, NMS.

Numpy only (no TensorFlow), because the same code decodes the Keras model's raw output in the
worker and the LiteRT model's raw output on the edge: one implementation, identical boxes.
Boxes are ``[x1, y1, x2, y2]`` in pixels, x2/y2 exclusive-ish (continuous coordinates).
"""

from __future__ import annotations

import numpy as np

# Scale factors of the box regression targets (as in Faster R-CNN / RetinaNet): they bring the
# targets to roughly unit variance so the Huber loss weights centre and size terms alike.
BOX_VARIANCE = np.array([0.1, 0.1, 0.2, 0.2], dtype=np.float32)
# exp() of a size delta is clipped so an untrained or diverging model cannot produce inf boxes.
MAX_LOG_SIZE_DELTA = np.log(1000.0 / 16.0)


def area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[..., 2] - boxes[..., 0], 0, None) * np.clip(
        boxes[..., 3] - boxes[..., 1], 0, None
    )


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU, shape (len(a), len(b))."""
    boxes_a = np.asarray(boxes_a, dtype=np.float32).reshape(-1, 4)
    boxes_b = np.asarray(boxes_b, dtype=np.float32).reshape(-1, 4)
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    wh = np.clip(bottom_right - top_left, 0, None)
    intersection = wh[..., 0] * wh[..., 1]
    union = area(boxes_a)[:, None] + area(boxes_b)[None, :] - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def encode(gt_boxes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Regression targets of gt boxes relative to their anchors (both (N, 4))."""
    anchor_wh = anchors[:, 2:] - anchors[:, :2]
    anchor_centre = anchors[:, :2] + 0.5 * anchor_wh
    gt_wh = np.maximum(gt_boxes[:, 2:] - gt_boxes[:, :2], 1e-3)
    gt_centre = gt_boxes[:, :2] + 0.5 * gt_wh
    deltas = np.concatenate(
        [(gt_centre - anchor_centre) / anchor_wh, np.log(gt_wh / anchor_wh)], axis=1
    )
    return (deltas / BOX_VARIANCE).astype(np.float32)


def decode(deltas: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Inverse of ``encode``; works on (..., N, 4) deltas."""
    deltas = deltas * BOX_VARIANCE
    anchor_wh = anchors[:, 2:] - anchors[:, :2]
    anchor_centre = anchors[:, :2] + 0.5 * anchor_wh
    centre = deltas[..., :2] * anchor_wh + anchor_centre
    wh = np.exp(np.clip(deltas[..., 2:], -MAX_LOG_SIZE_DELTA, MAX_LOG_SIZE_DELTA)) * anchor_wh
    return np.concatenate([centre - 0.5 * wh, centre + 0.5 * wh], axis=-1).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_output: int) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices in descending score order."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_output:
        best = order[0]
        keep.append(int(best))
        if order.size == 1:
            break
        overlaps = iou_matrix(boxes[best : best + 1], boxes[order[1:]])[0]
        order = order[1:][overlaps <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def postprocess(
    raw: np.ndarray,
    anchors: np.ndarray,
    num_classes: int,
    *,
    candidate_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
    pre_nms_top_k: int = 1000,
):
    """Turn one image's raw model output (N_anchors, 4 + K) into detections.

    Returns ``(detections, class_probs)``: detections is (M, 6) ``[x1, y1, x2, y2, score, class]``
    in model-input pixels, sorted by score, for every box scoring at least ``candidate_threshold``
    after class-wise NMS; class_probs (M, K) are the sigmoid scores of all classes at the box's
    anchor (the miners use them).
    """
    deltas = raw[:, :4]
    class_scores = sigmoid(raw[:, 4 : 4 + num_classes].astype(np.float32))
    best_class = class_scores.argmax(axis=1)
    best_score = class_scores[np.arange(len(class_scores)), best_class]
    candidates = np.nonzero(best_score >= candidate_threshold)[0]
    if candidates.size > pre_nms_top_k:
        top = np.argpartition(-best_score[candidates], pre_nms_top_k - 1)[:pre_nms_top_k]
        candidates = candidates[top]
    if candidates.size == 0:
        return np.zeros((0, 6), np.float32), np.zeros((0, num_classes), np.float32)
    boxes = decode(deltas[candidates], anchors[candidates])
    scores = best_score[candidates]
    classes = best_class[candidates]
    kept_all = []
    for class_id in np.unique(classes):
        in_class = np.nonzero(classes == class_id)[0]
        kept = nms(boxes[in_class], scores[in_class], iou_threshold, max_detections)
        kept_all.append(in_class[kept])
    kept_index = np.concatenate(kept_all)
    kept_index = kept_index[np.argsort(-scores[kept_index], kind="stable")][:max_detections]
    detections = np.concatenate(
        [
            boxes[kept_index],
            scores[kept_index, None],
            classes[kept_index, None].astype(np.float32),
        ],
        axis=1,
    ).astype(np.float32)
    return detections, class_scores[candidates][kept_index].astype(np.float32)
