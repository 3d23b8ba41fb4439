"""What the benchmark's initial models see in each part of the mixed edge stream.

    .venv/bin/python bench/il_blind_spots.py [--seeds 0 1 2] [--initial-cache DIR]

For round 1's stream of `bench/il_rounds.py` (default settings), per seed and per kind of frame
(day/night × with/without objects): how many frames, how many have a candidate box scoring at
least 0.1 (what the Coverage selector calls "not looking empty"), the best score, and the median
pooled-feature shift. Uses the initial models of `--initial-cache` (trained if missing), so it
explains the rows of an il_rounds run made with the same cache. Prints one table.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker.ml import rounds  # noqa: E402
from worker.ml.synthetic import is_night  # noqa: E402

EMPTY_SCORE = 0.1  # CoverageSelector's default empty_score


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--initial-cache", default=None)
    args = parser.parse_args()
    settings = rounds.RoundSettings()
    print("| seed | frames | n | with a candidate ≥ 0.1 | best score (max) | median shift |")
    print("|---|---|---:|---:|---:|---:|")
    for seed in args.seeds:
        data = rounds.make_data(settings, seed)
        model, _ = rounds.initial_model(settings, seed, data, args.initial_cache)
        stream = data["stream"][0]
        kinds: dict[tuple[bool, bool], list[tuple[float, float]]] = {}
        for index, inference in enumerate(model.infer(stream, with_features=True)):
            pool = inference.candidates if inference.candidates is not None else inference.boxes
            pool = np.asarray(pool, dtype=np.float32).reshape(-1, 6)
            best = float(pool[:, 4].max()) if len(pool) else 0.0
            night = is_night(index, "edge", rounds.stream_seed(seed), settings.night_share)
            objects = len(stream.y[index]) > 0
            kinds.setdefault((night, objects), []).append((best, inference.feature_shift))
        for (night, objects), rows in sorted(kinds.items()):
            best = np.array([row[0] for row in rows])
            shift = np.array([row[1] for row in rows])
            name = f"{'night' if night else 'day'}, {'objects' if objects else 'empty'}"
            print(
                f"| {seed} | {name} | {len(rows)} | {int((best >= EMPTY_SCORE).sum())} | "
                f"{best.max():.3f} | {np.median(shift):.2f} |"
            )


if __name__ == "__main__":
    main()
