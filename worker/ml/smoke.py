"""Smoke test of a model archive, run in a fresh process before a deploy (TFX's infra validation).

    python -m worker.ml.smoke ARCHIVE [--sha256 HEX] [--images N]

Loads the archive, predicts on N seeded random images of a few sizes, checks every output
row is ``[x1, y1, x2, y2, score, class_id]`` with finite values inside the image, a score in
[0, 1] and a known class. Prints one JSON line; exits 0 when it passes, 1 when it does not.
"""

import argparse
import json
import math
import sys

import numpy as np


def check_predictions(predictions, images, num_classes: int) -> list[str]:
    problems = []
    if len(predictions) != len(images):
        return [f"{len(predictions)} results for {len(images)} images"]
    for index, (boxes, image) in enumerate(zip(predictions, images, strict=True)):
        height, width = image.shape[:2]
        for box in boxes:
            if len(box) != 6:
                problems.append(f"image {index}: a box has {len(box)} values, expected 6")
                continue
            x1, y1, x2, y2, score, class_id = (float(v) for v in box)
            if not all(math.isfinite(v) for v in (x1, y1, x2, y2, score)):
                problems.append(f"image {index}: non-finite values {box}")
            elif not (-1 <= x1 <= x2 <= width + 1 and -1 <= y1 <= y2 <= height + 1):
                problems.append(f"image {index}: box {box[:4]} outside {width}x{height}")
            elif not 0.0 <= score <= 1.0:
                problems.append(f"image {index}: score {score} outside [0, 1]")
            elif not (class_id.is_integer() and 0 <= class_id < num_classes):
                problems.append(f"image {index}: class {class_id} not in 0..{num_classes - 1}")
    return problems


def smoke_test(archive: str, sha256: str | None = None, image_count: int = 4) -> dict:
    from worker.ml.registry import ClassFactory, ClassType

    model = ClassFactory.get_cls(ClassType.GENERAL, "FPN")()
    model.load(archive, expected_sha256=sha256)
    rng = np.random.default_rng(0)
    sizes = [(120, 160), (200, 200), (97, 131), (64, 256)]
    images = [
        rng.integers(0, 256, (*sizes[i % len(sizes)], 3), dtype=np.uint8)
        for i in range(image_count)
    ]
    predictions = model.predict(images)
    problems = check_predictions(predictions, images, model.num_classes)
    return {
        "passed": not problems,
        "problems": problems[:20],
        "images": image_count,
        "boxes": sum(len(p) for p in predictions),
        "classes": model.class_names,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("archive")
    parser.add_argument("--sha256")
    parser.add_argument("--images", type=int, default=4)
    args = parser.parse_args(argv)
    try:
        report = smoke_test(args.archive, args.sha256, args.images)
    except Exception as exc:  # any failure to load or run is a failed smoke test, reported
        report = {"passed": False, "problems": [f"{type(exc).__name__}: {exc}"]}
    print(json.dumps(report))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
