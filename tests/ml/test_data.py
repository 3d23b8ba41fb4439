import numpy as np
import pytest

from worker.ml.data import DetectionData
from worker.ml.errors import MLInputError

IMAGE = np.zeros((32, 40, 3), np.uint8)


def test_valid_data_and_subset():
    data = DetectionData(x=[IMAGE, IMAGE], y=[[[1, 2, 10, 12, 0]], []], class_names=["a"])
    assert len(data) == 2 and data.y[1].shape == (0, 5)
    part = data.subset([1])
    assert len(part) == 1 and part.image_ids == [1]
    both = DetectionData.concatenate([data, part])
    assert len(both) == 3


@pytest.mark.parametrize(
    "x, message",
    [
        (None, "x is None"),
        ([], "empty"),
        ([np.zeros((32, 32, 3), np.float32)], "dtype uint8"),
        ([np.zeros((32, 32), np.uint8)], "shape"),
        ([np.zeros((32, 32, 4), np.uint8)], "shape"),
        (["image.png"], "numpy array"),
    ],
)
def test_bad_images(x, message):
    with pytest.raises(MLInputError, match=message):
        DetectionData(x=x)


@pytest.mark.parametrize(
    "labels, message",
    [
        ([[1, 2, np.nan, 12, 0]], "NaN"),
        ([[1, 2, 50, 12, 0]], "outside"),
        ([[-5, 2, 10, 12, 0]], "outside"),
        ([[10, 2, 5, 12, 0]], "x2 <= x1"),
        ([[1, 2, 10, 12, 7]], "class id"),
        ([[1, 2, 10, 12, 0.5]], "integers"),
        ([[1, 2, 10]], "shape"),
    ],
)
def test_bad_labels(labels, message):
    with pytest.raises(MLInputError, match=message):
        DetectionData(x=[IMAGE], y=[labels], class_names=["a", "b"])


def test_label_count_must_match():
    with pytest.raises(MLInputError, match="label arrays"):
        DetectionData(x=[IMAGE, IMAGE], y=[[]])
