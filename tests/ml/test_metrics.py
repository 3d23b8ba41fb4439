import numpy as np
import pytest

from worker.ml.errors import MLInputError
from worker.ml.metrics import (
    coco_metrics,
    detection_metrics,
    precision_recall_f1,
    samples_transfer_ratio,
)

GT = [
    np.array([[10, 10, 50, 50, 0], [60, 60, 100, 110, 1]], np.float32),
    np.array([[20, 20, 40, 60, 2]], np.float32),
    np.array([[5, 5, 30, 30, 0], [40, 5, 70, 30, 0]], np.float32),  # no predictions below
]


def perfect_predictions():
    return [np.column_stack([g[:, :4], np.full(len(g), 0.9), g[:, 4]]) for g in GT]


def test_perfect_predictions_score_one_with_both_backends():
    for backend in ("faster_coco_eval", "pycocotools"):
        result = coco_metrics(GT, perfect_predictions(), num_classes=3, backend=backend)
        assert result == pytest.approx({"mAP": 1.0, "AP50": 1.0, "AP75": 1.0, "AR100": 1.0})


def test_backends_agree_on_noisy_detections():
    rng = np.random.default_rng(0)
    ground_truth, predictions = [], []
    for _ in range(40):
        n = int(rng.integers(0, 5))
        xy = rng.uniform(0, 150, (n, 2))
        wh = rng.uniform(10, 60, (n, 2))
        gt = np.column_stack([xy, xy + wh, rng.integers(0, 3, n)])
        noisy = gt[:, :4] + rng.normal(0, 6, (n, 4))
        noisy[:, 2:] = np.maximum(noisy[:, 2:], noisy[:, :2] + 1)
        scores = rng.uniform(0.05, 1, n)
        classes = np.where(rng.random(n) < 0.85, gt[:, 4], rng.integers(0, 3, n))
        extra_xy = rng.uniform(0, 150, (2, 2))
        false_positives = np.column_stack(
            [extra_xy, extra_xy + 20, rng.uniform(0, 0.6, 2), rng.integers(0, 3, 2)]
        )
        ground_truth.append(gt)
        predictions.append(np.vstack([np.column_stack([noisy, scores, classes]), false_positives]))
    fast = coco_metrics(ground_truth, predictions, 3, backend="faster_coco_eval")
    reference = coco_metrics(ground_truth, predictions, 3, backend="pycocotools")
    assert 0.05 < fast["mAP"] < 0.95  # a non-trivial case
    for key in fast:
        assert fast[key] == pytest.approx(reference[key], abs=1e-6), key


def test_no_detections_at_all_gives_zero_not_an_error():
    empty = [np.zeros((0, 6))] * len(GT)
    assert coco_metrics(GT, empty, 3)["mAP"] == 0.0
    assert precision_recall_f1(GT, empty, 3)["recall"] == 0.0


def test_every_ground_truth_box_counts_also_on_images_without_predictions():
    predictions = perfect_predictions()
    predictions[2] = np.zeros((0, 6))  # the model saw nothing on image 3 (2 boxes of class 0)
    result = precision_recall_f1(GT, predictions, num_classes=3)
    assert result["precision"] == 1.0
    assert result["recall"] == pytest.approx(3 / 5)  # Ianvs's F1 would report 1.0 here
    assert result["f1"] == pytest.approx(2 * 0.6 / 1.6)
    class0 = result["per_class"][0]
    assert (class0["true_positives"], class0["false_negatives"]) == (1, 2)
    assert class0["recall"] == pytest.approx(1 / 3)
    assert result["macro_recall"] == pytest.approx((1 / 3 + 1 + 1) / 3)


def test_greedy_one_to_one_matching_and_thresholds():
    gt = [np.array([[0, 0, 10, 10, 0]], np.float32)]
    # Two predictions on one box: the higher score matches, the duplicate is a false positive.
    duplicate = [np.array([[0, 0, 10, 10, 0.9, 0], [0, 0, 10, 10, 0.8, 0]], np.float32)]
    result = precision_recall_f1(gt, duplicate, 1)
    assert (result["precision"], result["recall"]) == (0.5, 1.0)
    # A half-overlapping box: IoU 1/3 fails at 0.5, passes at 0.3.
    shifted = [np.array([[5, 0, 15, 10, 0.9, 0]], np.float32)]
    assert precision_recall_f1(gt, shifted, 1)["recall"] == 0.0
    assert precision_recall_f1(gt, shifted, 1, iou_threshold=0.3)["recall"] == 1.0
    # Below the score threshold the prediction does not count.
    assert precision_recall_f1(gt, duplicate, 1, score_threshold=0.95)["recall"] == 0.0
    # Wrong class: no match.
    wrong = [np.array([[0, 0, 10, 10, 0.9, 1]], np.float32)]
    assert precision_recall_f1(gt, wrong, 2)["f1"] == 0.0


def test_detection_metrics_merges_coco_and_prf():
    result = detection_metrics(GT, perfect_predictions(), 3)
    assert result["mAP"] == pytest.approx(1.0)
    assert result["f1"] == 1.0 and "per_class" not in result


def test_samples_transfer_ratio_is_ianvs_definition():
    assert samples_transfer_ratio(30, 99) == pytest.approx(0.3)
    assert samples_transfer_ratio(0, 0) == 0.0
    with pytest.raises(MLInputError):
        samples_transfer_ratio(5, 3)


@pytest.mark.parametrize(
    "ground_truth, predictions",
    [
        (GT, perfect_predictions()[:2]),  # lengths differ
        ([np.array([[0, 0, np.nan, 10, 0]])], [np.zeros((0, 6))]),
        ([np.zeros((0, 5))], [np.array([[0, 0, 1]])]),
        ([], []),
        (None, None),
    ],
)
def test_bad_metric_input_raises(ground_truth, predictions):
    with pytest.raises(MLInputError):
        coco_metrics(ground_truth, predictions)
