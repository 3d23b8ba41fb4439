"""Speed of the ML core on this machine: one command, prints markdown tables.

``python bench/ml_speed.py`` measures
1. training images/s of the FPN (steady state, after the first traced steps);
2. inference ms/image, Keras (tf.function) vs LiteRT, batch 1 and 16: the network alone and
   end to end (resize + network + numpy decode/NMS);
3. COCO evaluation time, pycocotools vs faster-coco-eval on the same detections, with both
   results printed so that they can be seen to match.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from worker.ml.fpn import FPNModel  # noqa: E402
from worker.ml.litert import EdgeRunner  # noqa: E402
from worker.ml.metrics import coco_metrics  # noqa: E402
from worker.ml.synthetic import generate_samples  # noqa: E402


def best_of(function, repeats):
    """Smallest wall time of ``repeats`` calls (the least disturbed by other processes)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def training_speed(args, data):
    model = FPNModel(
        input_size=args.input_size,
        batch_size=args.batch_size,
        max_iteration=args.train_steps + args.warmup_steps,
    )
    marks = {}

    def progress(step, total, logs):
        marks[step] = time.perf_counter()

    # progress() is called at step 1, about every second, and at the end: take the first report
    # after the warm-up steps (tracing, allocation) as the start of the steady state.
    model.train(data, progress=progress)
    start_step = min(step for step in marks if step >= args.warmup_steps)
    end_step = max(marks)
    images = (end_step - start_step) * args.batch_size
    return model, images / (marks[end_step] - marks[start_step])


def inference_speed(model, runner, data, args):
    rows = []
    images = data.x
    for batch in (1, 16):
        chunk = list(images[:batch])
        stacked = np.stack(chunk)  # generated at the input size: no resize needed
        model.raw_outputs(stacked)  # trace once
        runner.raw_outputs(stacked)
        keras_network = best_of(lambda b=stacked: model.raw_outputs(b), args.repeats)
        litert_network = best_of(lambda b=stacked: runner.raw_outputs(b), args.repeats)
        keras_e2e = best_of(lambda c=chunk: model.predict_arrays(c), args.repeats)
        litert_e2e = best_of(lambda c=chunk: runner.predict(c), args.repeats)
        rows.append(
            (
                batch,
                keras_network / batch,
                litert_network / batch,
                keras_e2e / batch,
                litert_e2e / batch,
            )
        )
    return rows


def evaluation_speed(args):
    rng = np.random.default_rng(0)
    ground_truth, predictions = [], []
    for _ in range(args.eval_images):
        n = int(rng.integers(1, 8))
        xy = rng.uniform(0, 400, (n, 2))
        gt = np.column_stack([xy, xy + rng.uniform(10, 80, (n, 2)), rng.integers(0, 3, n)])
        m = args.detections_per_image
        source = gt[rng.integers(0, n, m)]
        noisy = source[:, :4] + rng.normal(0, 8, (m, 4))
        noisy[:, 2:] = np.maximum(noisy[:, 2:], noisy[:, :2] + 1)
        predictions.append(np.column_stack([noisy, rng.uniform(0.05, 1, m), source[:, 4]]))
        ground_truth.append(gt)
    rows = []
    for backend in ("pycocotools", "faster_coco_eval"):
        started = time.perf_counter()
        result = coco_metrics(ground_truth, predictions, 3, backend=backend)
        rows.append((backend, time.perf_counter() - started, result))
    return rows, sum(len(p) for p in predictions)


def main(argv=None):
    parser = argparse.ArgumentParser(description="ML speed benchmarks")
    parser.add_argument("--input-size", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--eval-images", type=int, default=3000)
    parser.add_argument("--detections-per-image", type=int, default=10)
    args = parser.parse_args(argv)
    print(f"# ml_speed {vars(args)}; {os.cpu_count()} CPU cores")

    data = generate_samples(64, "initial", seed=0, image_size=args.input_size)
    model, images_per_second = training_speed(args, data)
    print("\n## Training\n")
    print("| input | batch | steps timed | images/s |")
    print("|---|---|---|---|")
    print(
        f"| {args.input_size} px | {args.batch_size} | {args.train_steps} | "
        f"{images_per_second:.1f} |"
    )

    with tempfile.TemporaryDirectory() as scratch:
        tflite = model.export_litert(Path(scratch) / "fpn.tflite")
        size_mb = os.path.getsize(tflite) / 1e6
        runner = EdgeRunner(tflite)
        rows = inference_speed(model, runner, data, args)
    print(f"\n## Inference (ms/image, best of {args.repeats}; .tflite {size_mb:.1f} MB, float32)\n")
    print("| batch | Keras network | LiteRT network | Keras end-to-end | LiteRT end-to-end |")
    print("|---|---|---|---|---|")
    for batch, keras_net, litert_net, keras_e2e, litert_e2e in rows:
        print(
            f"| {batch} | {keras_net * 1e3:.2f} | {litert_net * 1e3:.2f} | "
            f"{keras_e2e * 1e3:.2f} | {litert_e2e * 1e3:.2f} |"
        )

    eval_rows, detections = evaluation_speed(args)
    print(f"\n## COCO evaluation ({args.eval_images} images, {detections} detections)\n")
    print("| backend | seconds | mAP | AP50 | AP75 | AR100 |")
    print("|---|---|---|---|---|---|")
    for backend, seconds, result in eval_rows:
        print(
            f"| {backend} | {seconds:.2f} | {result['mAP']:.6f} | {result['AP50']:.6f} | "
            f"{result['AP75']:.6f} | {result['AR100']:.6f} |"
        )
    same = all(abs(eval_rows[0][2][k] - eval_rows[1][2][k]) < 1e-9 for k in eval_rows[0][2])
    print(f"\nmetrics identical across backends: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
