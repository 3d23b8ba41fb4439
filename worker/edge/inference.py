"""One image in, boxes with class names plus a hard-example verdict out, with LiteRT and numpy.

The portal's predict API and the edge agent both answer through ``EdgeDetector``, so a device
mining locally flags exactly the images the portal would flag.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from worker.ml.data import ImageInference
from worker.ml.errors import MLInputError
from worker.ml.litert import EdgeRunner
from worker.ml.orientation import as_rgb, oriented, read_orientation
from worker.ml.registry import ClassFactory, ClassType


class ImageUnusable(MLInputError):
    """The bytes are not an image the detector can read; the message says why."""


class ImageTooLarge(ImageUnusable):
    """Too many bytes or too many pixels."""


class TooManyPixels(ImageTooLarge):
    """More pixels than ``max_pixels`` (known from the header, before decoding)."""


SUPPORTED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP")


def decode_image(
    data: bytes, *, max_bytes: int, max_pixels: int, formats=SUPPORTED_FORMATS
) -> np.ndarray:
    """RGB uint8 array of an encoded image, turned upright by its EXIF orientation."""
    if len(data) > max_bytes:
        raise ImageTooLarge(f"{len(data):,} bytes, more than the limit of {max_bytes:,}")
    if not data:
        raise ImageUnusable("empty body: send the image's bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooLarge(f"too many pixels: {exc}") from exc
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise ImageUnusable(
                f"not an image in a supported format ({', '.join(_names(formats))})"
            ) from exc
        with image:
            if formats and image.format not in formats:
                raise ImageUnusable(
                    f"{image.format} images are not supported ({', '.join(_names(formats))})"
                )
            width, height = image.size
            if width * height > max_pixels:
                raise TooManyPixels(
                    f"{width}x{height} = {width * height:,} pixels, more than the limit of "
                    f"{max_pixels:,}"
                )
            if width < 8 or height < 8:
                raise ImageUnusable(f"{width}x{height} is too small (at least 8x8 pixels)")
            try:
                # No copy and no conversion when the image is upright RGB already: they would
                # cost as much as the JPEG decode itself.
                orientation = read_orientation(image)  # before load(): see its docstring
                image.load()
                array = np.asarray(as_rgb(oriented(image, orientation)))
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as exc:
                raise ImageUnusable(f"corrupt or truncated image ({exc})") from exc
    return array


def _names(formats) -> list[str]:
    """Format names as people know them: MPO is a JPEG to them."""
    return list(dict.fromkeys("JPEG" if name == "MPO" else name for name in formats or ()))


def perceptual_hash(image: np.ndarray) -> int:
    """64-bit difference hash: near-identical frames of a static scene differ in a few bits."""
    small = Image.fromarray(image).convert("L").resize((9, 8), Image.Resampling.BILINEAR)
    pixels = np.asarray(small, dtype=np.int16)
    bits = (pixels[:, 1:] > pixels[:, :-1]).flatten()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return value


def hash_distance(a: int, b: int) -> int:
    return bin((a ^ b) & 0xFFFFFFFFFFFFFFFF).count("1")


def to_signed64(value: int) -> int:
    """For a signed 64-bit database column."""
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass(frozen=True)
class MinerSpec:
    name: str
    hyperparameters: dict

    @classmethod
    def from_config(cls, config) -> MinerSpec | None:
        """From a validated ``AlgorithmConfig`` (None when it configures no miner)."""
        section = config.hard_example_mining
        if section is None:
            return None
        return cls(name=section.name, hyperparameters=dict(section.hyperparameters))

    def build(self):
        return ClassFactory.get_cls(ClassType.HEM, self.name)(**self.hyperparameters)

    def as_dict(self) -> dict:
        return {"name": self.name, "hyperparameters": self.hyperparameters}


@dataclass
class Detection:
    """One image's answer."""

    boxes: list[dict]  # {"class_name", "score", "x1", "y1", "x2", "y2"} in the image's pixels
    hard: bool
    hardness: float
    miner: str
    width: int
    height: int

    def as_dict(self) -> dict:
        return {
            "boxes": self.boxes,
            "hard": self.hard,
            "hardness": round(self.hardness, 4),
            "miner": self.miner,
            "width": self.width,
            "height": self.height,
        }


class EdgeDetector:
    """A LiteRT runner and a miner; thread-safe (the runner runs one inference at a time)."""

    def __init__(self, tflite_path, decoder_config: dict, miner: MinerSpec | None, threads=2):
        self.runner = EdgeRunner(tflite_path, decoder_config, num_threads=threads)
        self.class_names = list(decoder_config["class_names"])
        self.score_threshold = float(decoder_config["score_threshold"])
        self.candidate_threshold = float(decoder_config["candidate_threshold"])
        self.miner_spec = miner
        self._miner = miner.build() if miner else None  # stateless: shared by threads

    def detect(self, images: list[np.ndarray]) -> list[Detection]:
        floor = min(self.candidate_threshold, self.score_threshold)
        candidates = self.runner.predict(images, score_threshold=floor)
        results = []
        for image, found in zip(images, candidates, strict=True):
            kept = found[found[:, 4] >= self.score_threshold]
            results.append(self._answer(image, kept, found))
        return results

    def _answer(self, image: np.ndarray, kept: np.ndarray, candidates: np.ndarray) -> Detection:
        hard, hardness, miner = False, 0.0, "none"
        if self._miner is not None:
            verdict = self._miner.mine(
                ImageInference(
                    boxes=kept.astype(np.float32),
                    candidates=candidates.astype(np.float32),
                    image_size=image.shape[:2],
                )
            )
            hard, hardness, miner = verdict.is_hard, float(verdict.hardness), self.miner_spec.name
        boxes = [
            {
                "class_name": self.class_names[int(row[5])],
                "score": round(float(row[4]), 4),
                "x1": round(float(row[0]), 2),
                "y1": round(float(row[1]), 2),
                "x2": round(float(row[2]), 2),
                "y2": round(float(row[3]), 2),
            }
            for row in kept
        ]
        return Detection(boxes, hard, hardness, miner, image.shape[1], image.shape[0])
