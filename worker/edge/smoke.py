"""Smoke test of a LiteRT model before it serves: it loads, and its boxes are sane.

    python -m worker.edge.smoke MODEL.tflite DECODER.json

Prints one JSON line; exits 0 when it passes. The portal runs it in a child process at deploy
(a broken file cannot take the worker down); the edge agent calls ``smoke_test`` before a swap.
"""

import json
import sys

import numpy as np

from worker.ml.smoke import check_predictions


def smoke_test(tflite_path, decoder_config: dict, image_count: int = 3) -> dict:
    from worker.ml.litert import EdgeRunner

    runner = EdgeRunner(tflite_path, decoder_config, num_threads=1)
    rng = np.random.default_rng(0)
    sizes = [(120, 160), (97, 131), (64, 256)]
    images = [
        rng.integers(0, 256, (*sizes[i % len(sizes)], 3), dtype=np.uint8)
        for i in range(image_count)
    ]
    predictions = runner.predict(images)
    problems = check_predictions(predictions, images, len(decoder_config["class_names"]))
    return {"passed": not problems, "problems": problems[:20], "images": image_count}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m worker.edge.smoke MODEL.tflite DECODER.json", file=sys.stderr)
        return 2
    try:
        with open(argv[1]) as handle:
            config = json.load(handle)
        report = smoke_test(argv[0], config)
    except Exception as exc:  # any failure to load or run is a failed smoke test, reported
        report = {"passed": False, "problems": [f"{type(exc).__name__}: {exc}"]}
    print(json.dumps(report))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
