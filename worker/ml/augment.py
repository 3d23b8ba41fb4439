"""Training-time photometric augmentation for cameras that switch to an infrared night mode.

A fixed camera's night frames are grayscale, dim and noisy; a model fine-tuned on a handful of
labels sees few of them, because the score miners rarely pick them. ``night_look`` turns a share
of the new images of each training batch into that look, so a day label also teaches the night
sub-domain. Replayed images are left as they were: greying them too made the model forget the
earlier domain (docs/benchmarks.md). Its ranges are deliberately broad rather than copied from the
synthetic generator: it should describe night cameras in general, not the benchmark.
"""

from __future__ import annotations

import numpy as np

LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601


def night_look(images: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``images`` (N, H, W, 3, uint8) where each image, with probability ``share``, is
    made grayscale, darker (x 0.4..0.9) and noisier (Gaussian, sigma 4..16 grey levels)."""
    result = images.copy()
    for i in np.flatnonzero(rng.random(len(images)) < share):
        luma = images[i].astype(np.float32) @ LUMA_WEIGHTS
        luma = luma * rng.uniform(0.4, 0.9) + rng.normal(0.0, rng.uniform(4.0, 16.0), luma.shape)
        result[i] = np.clip(luma, 0, 255).astype(images.dtype)[..., None]
    return result
