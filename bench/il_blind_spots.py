"""What the benchmark's initial models see in each part of the mixed edge stream.

    .venv/bin/python bench/il_blind_spots.py [--seeds 0 1 2] [--initial-cache DIR]

For round 1's stream of `bench/il_rounds.py` (default settings), per seed and per kind of frame
(day/night × with/without objects): how many frames, how many have a candidate box scoring at
least 0.1 (what the Coverage selector calls "not looking empty"), the best score, the median
best class score *before* any threshold (the network's raw output at its best anchor), and the
median pooled-feature shift. Then, over the whole stream (every round), whether anything the
model computes tells the night frames with objects from the empty night frames: the ROC AUC
of the raw best score, of the feature shift and of the features' spread (0.5: no signal).
Uses the initial models of `--initial-cache` (trained if missing), so it explains the rows of an
il_rounds run made with the same cache. Prints two tables.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker.ml import rounds  # noqa: E402
from worker.ml.boxes import sigmoid  # noqa: E402
from worker.ml.preprocess import resize_image  # noqa: E402
from worker.ml.synthetic import is_night  # noqa: E402

EMPTY_SCORE = 0.1  # CoverageSelector's default empty_score


def roc_auc(positives, negatives) -> float:
    """P(a positive scores above a negative), ties counting half; NaN without both kinds."""
    positives, negatives = np.asarray(positives), np.asarray(negatives)
    if not len(positives) or not len(negatives):
        return float("nan")
    above = (positives[:, None] > negatives[None, :]).mean()
    tied = (positives[:, None] == negatives[None, :]).mean()
    return float(above + tied / 2)


def describe_frames(model, stream, first_index: int, seed: int, settings) -> list[dict]:
    """Per frame: kind (night, objects) and what the model computes about it."""
    inferences = model.infer(stream, with_features=True)
    raw = model.raw_outputs(np.stack([resize_image(x, model.input_size) for x in stream.x]))
    frames = []
    for index, inference in enumerate(inferences):
        pool = inference.candidates if inference.candidates is not None else inference.boxes
        pool = np.asarray(pool, dtype=np.float32).reshape(-1, 6)
        class_scores = sigmoid(raw[index][:, 4 : 4 + model.num_classes].astype(np.float32))
        frames.append(
            {
                "night": is_night(
                    first_index + index, "edge", rounds.stream_seed(seed), settings.night_share
                ),
                "objects": len(stream.y[index]) > 0,
                "best": float(pool[:, 4].max()) if len(pool) else 0.0,
                "raw_best": float(class_scores.max()),
                "shift": inference.feature_shift,
                "spread": float(np.std(inference.features)),
            }
        )
    return frames


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--initial-cache", default=None)
    args = parser.parse_args()
    settings = rounds.RoundSettings()
    frames_by_seed = {}
    print(
        "| seed | frames | n | with a candidate ≥ 0.1 | best score (max) "
        "| raw best score (median) | median shift |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for seed in args.seeds:
        data = rounds.make_data(settings, seed)
        model, _ = rounds.initial_model(settings, seed, data, args.initial_cache)
        frames_by_seed[seed] = every = []
        for round_index, stream in enumerate(data["stream"]):
            first = round_index * settings.stream_per_round  # as make_data numbers the stream
            every += describe_frames(model, stream, first, seed, settings)
        first_round = every[: settings.stream_per_round]
        for night, objects in [(False, False), (False, True), (True, False), (True, True)]:
            kind = [f for f in first_round if f["night"] == night and f["objects"] == objects]
            if not kind:
                continue
            best = np.array([f["best"] for f in kind])
            name = f"{'night' if night else 'day'}, {'objects' if objects else 'empty'}"
            print(
                f"| {seed} | {name} | {len(kind)} | {int((best >= EMPTY_SCORE).sum())} | "
                f"{best.max():.3f} | {np.median([f['raw_best'] for f in kind]):.4f} | "
                f"{np.median([f['shift'] for f in kind]):.2f} |"
            )
    print()
    print(
        "| seed | night frames with objects / empty (all rounds) "
        "| AUC raw best score | AUC feature shift | AUC feature spread |"
    )
    print("|---|---|---:|---:|---:|")
    for seed, every in frames_by_seed.items():
        night = [f for f in every if f["night"]]
        with_objects = [f for f in night if f["objects"]]
        empty = [f for f in night if not f["objects"]]
        aucs = [
            roc_auc([f[name] for f in with_objects], [f[name] for f in empty])
            for name in ("raw_best", "shift", "spread")
        ]
        print(
            f"| {seed} | {len(with_objects)} / {len(empty)} | "
            + " | ".join(f"{auc:.2f}" for auc in aucs)
            + " |"
        )


if __name__ == "__main__":
    main()
