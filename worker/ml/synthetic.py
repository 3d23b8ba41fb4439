"""Synthetic detection data: safety gear on real photo backgrounds, in two domains.

Classes: helmet (a dome with a brim), vest (a torso with a V neck and reflective stripes) and cone
(a striped trapezoid), plus distractor shapes that are not objects. Backgrounds are photos and
textures shipped inside scikit-image, so nothing is downloaded.

Domains:
- ``initial``: normal light, larger objects, colour photo backgrounds;
- ``edge``: darker, colour cast, sensor noise, blur, JPEG artefacts, smaller objects, texture /
  grayscale backgrounds the initial domain never shows. ``shift`` (0..1) scales how strong this is.

Deterministic: image ``i`` of a (seed, domain) pair is always the same, whatever ``n_images`` is.
``empty_share`` makes a share of the images empty (no object), as most frames of a fixed camera are;
``night_share`` puts a share of the edge images in a camera's night mode (grayscale, dim, noisy).
CLI: ``python -m worker.ml.synthetic OUT_DIR --n-images 50 --domain edge --seed 1``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from worker.ml.data import DetectionData
from worker.ml.errors import MLInputError

CLASS_NAMES = ["helmet", "vest", "cone"]
DOMAINS = ("initial", "edge")
# Strength of the edge domain's shift, tuned so that a model trained on the initial domain reaches
# an AP50 of roughly 0.05-0.3 on the edge domain (poor, but not zero): see docs/ml.md.
DEFAULT_EDGE_SHIFT = 0.48
_DOMAIN_CODE = {"initial": 1, "edge": 2}

INITIAL_BACKGROUNDS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")
EDGE_BACKGROUNDS = ("brick", "grass", "gravel", "camera", "moon", "coins")

HELMET_COLOURS = [(250, 210, 20), (245, 245, 240), (220, 40, 30), (30, 90, 200)]
VEST_COLOURS = [(255, 120, 0), (200, 240, 20), (255, 80, 40)]
CONE_COLOUR = (255, 100, 10)
DISTRACTOR_COLOURS = [(120, 60, 160), (30, 160, 160), (90, 90, 90), (160, 110, 60), (240, 240, 240)]


@cache
def _background_photo(name: str) -> np.ndarray:
    from skimage import data as skdata

    image = np.asarray(getattr(skdata, name)())
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def _background(rng: np.random.Generator, names, size: int) -> Image.Image:
    photo = _background_photo(names[rng.integers(len(names))])
    height, width = photo.shape[:2]
    crop = int(min(height, width) * rng.uniform(0.35, 1.0))
    top = rng.integers(0, height - crop + 1)
    left = rng.integers(0, width - crop + 1)
    patch = Image.fromarray(photo[top : top + crop, left : left + crop])
    if rng.random() < 0.5:
        patch = patch.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return patch.resize((size, size), Image.Resampling.BILINEAR)


def _jitter(colour, rng, amount=25):
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def _draw_helmet(draw, rng, x, y, w, h):
    colour = _jitter(HELMET_COLOURS[rng.integers(len(HELMET_COLOURS))], rng)
    brim = max(2, int(h * 0.18))
    draw.pieslice([x, y, x + w, y + 2 * (h - brim)], 180, 360, fill=colour)
    draw.rectangle([x - w * 0.0, y + h - brim, x + w, y + h], fill=_jitter(colour, rng, 15))
    # A ridge on top makes the dome read as a helmet rather than any half disc.
    draw.rectangle(
        [x + w * 0.45, y + h * 0.05, x + w * 0.55, y + h - brim], fill=_jitter(colour, rng)
    )


def _draw_vest(draw, rng, x, y, w, h):
    colour = _jitter(VEST_COLOURS[rng.integers(len(VEST_COLOURS))], rng)
    draw.polygon(
        [
            (x, y + h * 0.15),
            (x + w * 0.3, y),
            (x + w * 0.5, y + h * 0.35),
            (x + w * 0.7, y),
            (x + w, y + h * 0.15),
            (x + w, y + h),
            (x, y + h),
        ],
        fill=colour,
    )
    stripe = (215, 215, 215)
    for level in (0.55, 0.78):
        top = y + h * level
        draw.rectangle([x, top, x + w, top + max(2, h * 0.08)], fill=stripe)


def _draw_cone(draw, rng, x, y, w, h):
    colour = _jitter(CONE_COLOUR, rng)
    base = max(2, h * 0.1)
    draw.polygon(
        [
            (x + w * 0.38, y),
            (x + w * 0.62, y),
            (x + w * 0.9, y + h - base),
            (x + w * 0.1, y + h - base),
        ],
        fill=colour,
    )
    band_top = y + h * 0.35
    draw.polygon(
        [
            (x + w * 0.3, band_top),
            (x + w * 0.7, band_top),
            (x + w * 0.76, band_top + h * 0.15),
            (x + w * 0.24, band_top + h * 0.15),
        ],
        fill=(240, 240, 240),
    )
    draw.rectangle([x, y + h - base, x + w, y + h], fill=(40, 40, 40))


_DRAWERS = (_draw_helmet, _draw_vest, _draw_cone)
# Height / width of each class's box, so shapes keep their proportions.
_ASPECT = ((0.75, 0.95), (1.0, 1.3), (1.2, 1.6))


def _draw_distractor(draw, rng, size):
    colour = _jitter(DISTRACTOR_COLOURS[rng.integers(len(DISTRACTOR_COLOURS))], rng, 30)
    w, h = rng.uniform(0.06, 0.25, 2) * size
    x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
    kind = rng.integers(3)
    if kind == 0:
        draw.ellipse([x, y, x + w, y + h], fill=colour)
    elif kind == 1:
        draw.rectangle([x, y, x + w, y + h], fill=colour)
    else:
        draw.line([x, y, x + w, y + h], fill=colour, width=int(rng.integers(2, 6)))


def _place_objects(rng, size, scale_range, max_objects):
    boxes = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        class_id = int(rng.integers(len(CLASS_NAMES)))
        for _attempt in range(20):
            w = rng.uniform(*scale_range) * size
            h = w * rng.uniform(*_ASPECT[class_id])
            if h > size * 0.9:
                continue
            x, y = rng.uniform(1, size - w - 1), rng.uniform(1, size - h - 1)
            candidate = np.array([x, y, x + w, y + h])
            # Keep objects mostly apart so every box is visible enough to be labeled.
            if all(_overlap(candidate, other[:4]) < 0.15 for other in boxes):
                boxes.append(np.array([x, y, x + w, y + h, class_id], np.float32))
                break
    return boxes


def _overlap(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller


def _edge_degrade(image: Image.Image, rng, shift: float, night: bool) -> Image.Image:
    array = np.asarray(image).astype(np.float32)
    brightness = 1.0 - shift * rng.uniform(0.45, 0.65)
    cast = 1.0 - shift * rng.uniform(0.0, 0.45, 3)  # a random per-channel colour cast
    array = array * brightness * cast
    noise = 14 * shift
    if night:
        # A camera's infrared night mode: no colour, little light, more sensor noise.
        luma = array @ np.array([0.299, 0.587, 0.114], np.float32)
        array = np.repeat(luma[..., None] * 0.8, 3, axis=-1)
        noise *= 1.5
    array = array + rng.normal(0, noise, array.shape)
    image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    image = image.filter(ImageFilter.GaussianBlur(radius=shift * rng.uniform(0.6, 1.4)))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(60 - 45 * shift * rng.uniform(0.7, 1.0)))
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def generate_image(
    index: int,
    domain: str = "initial",
    seed: int = 0,
    image_size: int = 192,
    shift: float = DEFAULT_EDGE_SHIFT,
    empty_share: float = 0.0,
    night_share: float = 0.0,
):
    """One image (uint8 HxWx3) and its labels (N, 5) ``[x1, y1, x2, y2, class_id]``.

    ``empty_share`` is the chance that the image shows no object (background and distractors
    only), as most frames of a fixed camera do. The draw has its own random stream, so whether
    image ``i`` is empty does not depend on the rest of the image. ``night_share`` is the chance
    that an edge image is taken in night mode (grayscale, darker, noisier); it has a stream of its
    own too, and does not apply to the initial domain.
    """
    if domain not in DOMAINS:
        raise MLInputError(f"unknown domain {domain!r}; choose from {DOMAINS}")
    if not 32 <= image_size <= 2048:
        raise MLInputError(f"image_size must lie in [32, 2048], got {image_size}")
    if not 0.0 <= shift <= 1.0:
        raise MLInputError(f"shift must lie in [0, 1], got {shift}")
    if not 0.0 <= empty_share <= 1.0:
        raise MLInputError(f"empty_share must lie in [0, 1], got {empty_share}")
    if not 0.0 <= night_share <= 1.0:
        raise MLInputError(f"night_share must lie in [0, 1], got {night_share}")
    empty = np.random.default_rng([seed, _DOMAIN_CODE[domain], index, 1]).random() < empty_share
    night = is_night(index, domain, seed, night_share)
    rng = np.random.default_rng([seed, _DOMAIN_CODE[domain], index])
    edge = domain == "edge"
    image = _background(rng, EDGE_BACKGROUNDS if edge else INITIAL_BACKGROUNDS, image_size)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, 4))):
        _draw_distractor(draw, rng, image_size)
    scale = (0.14 - 0.05 * shift, 0.34 - 0.12 * shift) if edge else (0.14, 0.34)
    boxes = [] if empty else _place_objects(rng, image_size, scale, max_objects=4)
    for x1, y1, x2, y2, class_id in boxes:
        _DRAWERS[int(class_id)](draw, rng, x1, y1, x2 - x1, y2 - y1)
    if edge:
        image = _edge_degrade(image, rng, shift, night)
    labels = np.stack(boxes).astype(np.float32) if boxes else np.zeros((0, 5), np.float32)
    return np.asarray(image, dtype=np.uint8), labels


def is_night(index: int, domain: str, seed: int, night_share: float) -> bool:
    """Whether image ``index`` of that stream is taken in night mode (as generate_image draws
    it): for benchmarks that count what a strategy picked."""
    if domain != "edge" or not night_share:
        return False
    draw = np.random.default_rng([seed, _DOMAIN_CODE[domain], index, 2]).random()
    return bool(draw < night_share)


def generate_samples(
    n_images: int,
    domain: str = "initial",
    seed: int = 0,
    image_size: int = 192,
    shift: float = DEFAULT_EDGE_SHIFT,
    start: int = 0,
    empty_share: float = 0.0,
    night_share: float = 0.0,
) -> DetectionData:
    """In-memory dataset of ``n_images`` images numbered ``start .. start + n_images - 1``."""
    if not isinstance(n_images, int) or n_images < 1:
        raise MLInputError(f"n_images must be a positive integer, got {n_images!r}")
    images, labels = [], []
    for index in range(start, start + n_images):
        image, boxes = generate_image(
            index, domain, seed, image_size, shift, empty_share, night_share
        )
        images.append(image)
        labels.append(boxes)
    return DetectionData(
        x=images,
        y=labels,
        class_names=list(CLASS_NAMES),
        image_ids=list(range(start, start + n_images)),
    )


def generate_dataset(
    out_dir,
    n_images: int,
    domain: str = "initial",
    seed: int = 0,
    image_size: int = 192,
    shift: float = DEFAULT_EDGE_SHIFT,
    empty_share: float = 0.0,
    night_share: float = 0.0,
) -> Path:
    """Write ``images/*.png`` and ``annotations.json`` (COCO) into ``out_dir``; returns the JSON.

    The directory is built next to ``out_dir`` and moved into place at the end, so an interrupted
    run leaves nothing half written. ``out_dir`` must not exist or be empty.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise MLInputError(f"{out_dir} exists and is not an empty directory")
    data = generate_samples(
        n_images,
        domain,
        seed,
        image_size,
        shift,
        empty_share=empty_share,
        night_share=night_share,
    )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        (staging / "images").mkdir()
        coco = {
            "info": {"description": f"ilportal synthetic {domain}", "seed": seed, "shift": shift},
            "images": [],
            "annotations": [],
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASS_NAMES)],
        }
        annotation_id = 1
        for image_id, (image, labels) in enumerate(zip(data.x, data.y, strict=True), start=1):
            file_name = f"images/{domain}_{image_id - 1:06d}.png"
            Image.fromarray(image).save(staging / file_name)
            coco["images"].append(
                {"id": image_id, "file_name": file_name, "width": image_size, "height": image_size}
            )
            for x1, y1, x2, y2, class_id in labels.tolist():
                coco["annotations"].append(
                    {
                        "id": annotation_id,
                        "image_id": image_id,
                        "category_id": int(class_id) + 1,
                        "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                        "area": round((x2 - x1) * (y2 - y1), 2),
                        "iscrowd": 0,
                    }
                )
                annotation_id += 1
        (staging / "annotations.json").write_text(json.dumps(coco, indent=1))
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir / "annotations.json"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Generate synthetic detection images + COCO JSON.")
    parser.add_argument("out_dir")
    parser.add_argument("--n-images", type=int, default=50)
    parser.add_argument("--domain", choices=DOMAINS, default="initial")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=192)
    parser.add_argument(
        "--shift", type=float, default=DEFAULT_EDGE_SHIFT, help="edge-domain strength, 0..1"
    )
    parser.add_argument(
        "--empty-share", type=float, default=0.0, help="share of images with no object, 0..1"
    )
    parser.add_argument(
        "--night-share", type=float, default=0.0, help="share of edge images in night mode, 0..1"
    )
    args = parser.parse_args(argv)
    try:
        path = generate_dataset(
            args.out_dir,
            args.n_images,
            args.domain,
            args.seed,
            args.image_size,
            args.shift,
            args.empty_share,
            args.night_share,
        )
    except MLInputError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
