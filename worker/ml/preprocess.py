"""Image preprocessing and box rescaling shared by the Keras model and the edge runner."""

from __future__ import annotations

import numpy as np
from PIL import Image


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to the square model input (bilinear, PIL): the same function on worker and edge."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def scale_detections(detections: np.ndarray, image_shape, input_size: int) -> np.ndarray:
    """Map boxes from model-input pixels back to the original image's pixels (clipped)."""
    result = detections.copy()
    height, width = image_shape[:2]
    result[:, [0, 2]] = np.clip(result[:, [0, 2]] * width / input_size, 0, width)
    result[:, [1, 3]] = np.clip(result[:, [1, 3]] * height / input_size, 0, height)
    return result
