"""Detection metrics.

- COCO mAP@[.5:.95], AP50, AP75, AR100 come from a maintained library (faster-coco-eval by default,
  pycocotools as the reference); we only build the COCO structures in memory.
- Precision / recall / F1 at one IoU are hand-written because they are simple, and because
  Ianvs's version skips ground-truth boxes on images without predictions: here every one counts.
- ``samples_transfer_ratio`` follows Ianvs: hard examples / (inferred samples + 1).

Ground truth per image: array (N, 5) ``[x1, y1, x2, y2, class_id]``.
Predictions per image: array (M, 6) ``[x1, y1, x2, y2, score, class_id]``.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np

from worker.ml.boxes import iou_matrix
from worker.ml.errors import MLInputError

COCO_BACKENDS = ("faster_coco_eval", "pycocotools")


def _as_array(rows, width: int, what: str, index: int) -> np.ndarray:
    array = np.asarray(rows if rows is not None else [], dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, width))
    if array.ndim != 2 or array.shape[1] < width:
        raise MLInputError(f"{what} {index}: expected shape (N, {width}), got {array.shape}")
    if not np.all(np.isfinite(array[:, :width])):
        raise MLInputError(f"{what} {index}: contains NaN or infinity")
    return array[:, :width]


def _check_pair(ground_truth: Sequence, predictions: Sequence):
    if ground_truth is None or predictions is None:
        raise MLInputError("ground truth and predictions are required")
    if len(ground_truth) != len(predictions):
        raise MLInputError(
            f"{len(ground_truth)} ground-truth images but {len(predictions)} prediction lists"
        )
    if len(ground_truth) == 0:
        raise MLInputError("no images to evaluate")
    gts = [_as_array(g, 5, "ground truth", i) for i, g in enumerate(ground_truth)]
    preds = [_as_array(p, 6, "predictions", i) for i, p in enumerate(predictions)]
    return gts, preds


def _coco_dicts(gts, preds, num_classes):
    images, annotations, detections = [], [], []
    annotation_id = 1
    for image_id, (gt, pred) in enumerate(zip(gts, preds, strict=True), start=1):
        # COCO needs an image size only for segmentation; any positive value works for boxes.
        images.append({"id": image_id, "width": 1, "height": 1})
        for x1, y1, x2, y2, class_id in gt:
            annotations.append(
                {
                    "id": annotation_id,
                    "image_id": image_id,
                    "category_id": int(class_id) + 1,
                    "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                    "area": float((x2 - x1) * (y2 - y1)),
                    "iscrowd": 0,
                }
            )
            annotation_id += 1
        for x1, y1, x2, y2, score, class_id in pred:
            detections.append(
                {
                    "image_id": image_id,
                    "category_id": int(class_id) + 1,
                    "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                    "score": float(score),
                }
            )
    categories = [{"id": c + 1, "name": str(c)} for c in range(num_classes)]
    dataset = {"images": images, "annotations": annotations, "categories": categories}
    return dataset, detections


def coco_metrics(
    ground_truth: Sequence,
    predictions: Sequence,
    num_classes: int | None = None,
    backend: str = "faster_coco_eval",
) -> dict:
    """COCO box metrics: mAP (@[.5:.95]), AP50, AP75, AR100. Values are in [0, 1].

    With no ground-truth boxes at all the metrics are undefined and reported as 0.0 (COCO's -1
    would poison averages).
    """
    if backend not in COCO_BACKENDS:
        raise MLInputError(f"unknown COCO backend {backend!r}; choose from {COCO_BACKENDS}")
    gts, preds = _check_pair(ground_truth, predictions)
    seen = [int(c) for g in gts for c in g[:, 4]] + [int(c) for p in preds for c in p[:, 5]]
    if num_classes is None:
        num_classes = max(seen) + 1 if seen else 1
    if seen and (min(seen) < 0 or max(seen) >= num_classes):
        raise MLInputError(f"class ids must lie in [0, {num_classes})")
    if sum(len(g) for g in gts) == 0:
        return {"mAP": 0.0, "AP50": 0.0, "AP75": 0.0, "AR100": 0.0}
    dataset, detections = _coco_dicts(gts, preds, num_classes)
    if not detections:
        # loadRes rejects an empty list; with nothing detected every AP and AR is 0.
        return {"mAP": 0.0, "AP50": 0.0, "AP75": 0.0, "AR100": 0.0}
    if backend == "faster_coco_eval":
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as Evaluator
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval as Evaluator
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(detections)
        evaluator = Evaluator(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = [max(float(v), 0.0) for v in evaluator.stats]
    return {"mAP": stats[0], "AP50": stats[1], "AP75": stats[2], "AR100": stats[8]}


def precision_recall_f1(
    ground_truth: Sequence,
    predictions: Sequence,
    num_classes: int | None = None,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.5,
) -> dict:
    """Precision, recall and F1 with greedy one-to-one matching per image and class.

    Predictions below ``score_threshold`` are dropped; the rest are matched in descending score
    order to the unmatched same-class ground-truth box of highest IoU (>= ``iou_threshold``).
    Every ground-truth box counts, including those on images without any prediction.
    Returns micro totals (``precision``, ``recall``, ``f1``), macro averages over classes that have
    ground truth or predictions (``macro_*``) and ``per_class`` entries.
    """
    if not 0.0 <= iou_threshold <= 1.0 or not 0.0 <= score_threshold <= 1.0:
        raise MLInputError("iou_threshold and score_threshold must lie in [0, 1]")
    gts, preds = _check_pair(ground_truth, predictions)
    seen = [int(c) for g in gts for c in g[:, 4]] + [int(c) for p in preds for c in p[:, 5]]
    if num_classes is None:
        num_classes = max(seen) + 1 if seen else 1
    true_positives = np.zeros(num_classes, np.int64)
    false_positives = np.zeros(num_classes, np.int64)
    gt_counts = np.zeros(num_classes, np.int64)
    for gt, pred in zip(gts, preds, strict=True):
        pred = pred[pred[:, 4] >= score_threshold]
        for class_id in range(num_classes):
            gt_boxes = gt[gt[:, 4] == class_id, :4]
            class_pred = pred[pred[:, 5] == class_id]
            class_pred = class_pred[np.argsort(-class_pred[:, 4], kind="stable")]
            gt_counts[class_id] += len(gt_boxes)
            if len(class_pred) == 0:
                continue
            if len(gt_boxes) == 0:
                false_positives[class_id] += len(class_pred)
                continue
            overlaps = iou_matrix(class_pred[:, :4], gt_boxes)
            taken = np.zeros(len(gt_boxes), bool)
            for row in overlaps:
                row = np.where(taken, -1.0, row)
                best = int(np.argmax(row))
                if row[best] >= iou_threshold:
                    taken[best] = True
                    true_positives[class_id] += 1
                else:
                    false_positives[class_id] += 1

    def prf(tp, fp, n_gt):
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / n_gt if n_gt else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return float(precision), float(recall), float(f1)

    per_class = []
    for class_id in range(num_classes):
        tp, fp, n_gt = true_positives[class_id], false_positives[class_id], gt_counts[class_id]
        precision, recall, f1 = prf(tp, fp, n_gt)
        per_class.append(
            {
                "class_id": class_id,
                "precision": precision,
                "recall": recall,
                "f1": f1,
                "true_positives": int(tp),
                "false_positives": int(fp),
                "false_negatives": int(n_gt - tp),
                "ground_truth": int(n_gt),
            }
        )
    active = [c for c in per_class if c["ground_truth"] or c["false_positives"]]
    precision, recall, f1 = prf(true_positives.sum(), false_positives.sum(), gt_counts.sum())
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "macro_precision": float(np.mean([c["precision"] for c in active])) if active else 0.0,
        "macro_recall": float(np.mean([c["recall"] for c in active])) if active else 0.0,
        "macro_f1": float(np.mean([c["f1"] for c in active])) if active else 0.0,
        "per_class": per_class,
    }


def samples_transfer_ratio(hard_examples: int, inferred_samples: int) -> float:
    """Ianvs's definition: hard examples / (inferred samples + 1). Lower is better."""
    if hard_examples < 0 or inferred_samples < 0 or hard_examples > inferred_samples:
        raise MLInputError("need 0 <= hard_examples <= inferred_samples")
    return hard_examples / (inferred_samples + 1)


def detection_metrics(
    ground_truth,
    predictions,
    num_classes=None,
    iou_threshold=0.5,
    score_threshold=0.5,
    backend="faster_coco_eval",
) -> dict:
    """COCO metrics plus P/R/F1 in one flat dict (the default of ``BaseModel.evaluate``)."""
    result = coco_metrics(ground_truth, predictions, num_classes, backend=backend)
    prf = precision_recall_f1(
        ground_truth, predictions, num_classes, iou_threshold, score_threshold
    )
    result.update({k: v for k, v in prf.items() if k != "per_class"})
    return result
