"""Offline incremental-learning benchmark (Ianvs's paradigm, done right).

One command: ``python bench/il_rounds.py`` (small settings, one seed; see docs/benchmarks.md for
the measured time); ``--seeds 0 1 2`` for the documented table; ``--full`` uses the portal's
default model size (192 px) and more rounds; every knob has a flag. ``python bench/il_rounds.py
--summarise run.json`` reprints the tables of a run saved with ``--json-out run.json``.

Per seed: train an initial FPN on the synthetic initial domain, then stream the edge domain in R
rounds. By default 60 % of the edge frames show no object (``--empty-share``), as most frames of a
fixed camera do, and 30 % are taken in the camera's night mode (``--night-share``); the gate and
test sets have the same mix. Each round and each strategy: infer the round's images with the
strategy's current model, rank them with the strategy's miner, label the top ``budget`` from
ground truth (a simulated annotator), fine-tune from the current model on all edge labels so far
(+ a replay sample of the initial training data), evaluate new vs current on a held-out edge
*gate* set and on an initial-domain *regression* set, and replace the model only when the gate
passes. The deployed model is then measured on separate edge *test* and initial *regression
test* sets.

What differs from Ianvs: equal label budgets for every miner (miners rank, the budget caps), every
ground-truth box counts in F1, the gate set is not the test set, forgetting is measured and gated,
and results are averaged over several seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.ml import rounds  # noqa: E402
from worker.ml.rounds import STRATEGIES, RoundSettings, f1_gains_by_seed  # noqa: E402
from worker.ml.synthetic import DEFAULT_EDGE_SHIFT  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="192 px, 3 rounds, more data")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="e.g. --seeds 0 1 2")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--stream-per-round", type=int)
    parser.add_argument(
        "--budget-ratio",
        type=float,
        default=0.1,
        help="labels per round / images streamed per round",
    )
    parser.add_argument(
        "--shift", type=float, default=DEFAULT_EDGE_SHIFT, help="edge-domain strength, 0..1"
    )
    parser.add_argument(
        "--empty-share",
        type=float,
        default=0.6,
        help="share of edge frames with no object (a fixed camera mostly sees an empty scene)",
    )
    parser.add_argument(
        "--night-share",
        type=float,
        default=0.3,
        help="share of edge frames in the camera's night mode (grayscale, dim, noisy)",
    )
    parser.add_argument("--input-size", type=int)
    parser.add_argument("--initial-images", type=int)
    parser.add_argument("--initial-steps", type=int)
    parser.add_argument("--finetune-steps", type=int)
    parser.add_argument("--finetune-lr", type=float, default=0.001)
    parser.add_argument("--replay-ratio", type=float, default=0.5)
    parser.add_argument(
        "--night-augment",
        type=float,
        help="share of fine-tuning images given a night-mode look (default: the model's, 0)",
    )
    parser.add_argument(
        "--initial-night-augment",
        type=float,
        default=0.0,
        help="share of the initial model's training images given a night-mode look (default 0)",
    )
    parser.add_argument("--gate-images", type=int)
    parser.add_argument("--test-images", type=int)
    parser.add_argument(
        "--max-forgetting",
        type=float,
        default=0.02,
        help="gate: largest allowed drop of regression mAP vs the initial model",
    )
    parser.add_argument("--json-out", help="write all per-round results here")
    parser.add_argument("--initial-cache", help="directory to keep/reuse the initial models")
    args = parser.parse_args(argv)
    small = dict(
        rounds=3,
        stream_per_round=40,
        input_size=128,
        initial_images=240,
        initial_steps=300,
        finetune_steps=120,
        gate_images=40,
        test_images=80,
    )
    full = dict(
        rounds=3,
        stream_per_round=60,
        input_size=192,
        initial_images=300,
        initial_steps=400,
        finetune_steps=160,
        gate_images=60,
        test_images=100,
    )
    for key, value in (full if args.full else small).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    unknown = [s for s in args.strategies if s not in STRATEGIES]
    if unknown:
        parser.error(f"unknown strategies {unknown}; choose from {list(STRATEGIES)}")
    return args


def settings_from(args) -> RoundSettings:
    fields = RoundSettings.__dataclass_fields__
    return RoundSettings(**{k: v for k, v in vars(args).items() if k in fields})


def mean_std(values, digits=3):
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main(argv=None):
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--summarise":
        saved = json.loads(Path(sys.argv[2]).read_text())  # reprint tables of a finished run
        summarise(saved["args"], saved["initial"], saved["rounds"])
        return
    args = parse_args(argv)
    print(f"# il_rounds {vars(args)}", flush=True)
    header = (
        "seed",
        "strategy",
        "round",
        "labels",
        "with objects",
        "at night",
        "night objects",
        "flagged",
        "STR",
        "replaced",
        "gate(edge/regr)",
        "edge_mAP",
        "edge_AP50",
        "edge_F1",
        "init_mAP",
        "forget",
        "wall_s",
    )
    print(" | ".join(header), flush=True)

    def log(row):
        print(
            " | ".join(
                [
                    str(row["seed"]),
                    row["strategy"],
                    str(row["round"]),
                    str(row["labels"]),
                    str(row.get("labels_with_objects", "–")),
                    str(row.get("labels_at_night", "–")),
                    str(row.get("labels_at_night_with_objects", "–")),
                    str(row["flagged_by_miner"]),
                    f"{row['samples_transfer_ratio']:.3f}",
                    "yes" if row["replaced"] else "no",
                    f"{row.get('candidate_gate_edge_mAP', 0):.3f}/"
                    f"{row.get('candidate_gate_regression_mAP', 0):.3f}",
                    f"{row['edge_mAP']:.3f}",
                    f"{row['edge_AP50']:.3f}",
                    f"{row['edge_f1']:.3f}",
                    f"{row['initial_mAP']:.3f}",
                    f"{row['forgetting']:+.3f}",
                    f"{row['wall_s']:.1f}",
                ]
            ),
            flush=True,
        )

    all_rows, initial_rows = [], []
    started = time.perf_counter()
    settings = settings_from(args)
    for seed in args.seeds:
        data = rounds.make_data(settings, seed)
        initial_started = time.perf_counter()
        initial, initial_path = rounds.initial_model(settings, seed, data, args.initial_cache)
        initial_row = rounds.initial_scores(
            initial, data, seed, wall_s=time.perf_counter() - initial_started
        )
        initial_rows.append(initial_row)
        log(initial_row)
        for name in args.strategies:
            all_rows += rounds.run_strategy(
                name, settings, seed, data, initial_path, initial_row, log
            )

    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s")
    summarise(vars(args), initial_rows, all_rows)
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps({"args": vars(args), "initial": initial_rows, "rounds": all_rows}, indent=1)
        )


def f1_gain_over_random(rows: list, all_rows: list) -> str:
    """Edge F1 minus Random's in the same seed and round, in points: mean ± std over seeds."""
    gains = list(f1_gains_by_seed(rows, all_rows).values())
    return mean_std(gains, 1) if gains else "–"


def summarise(settings: dict, initial_rows: list, all_rows: list) -> None:
    """Print the markdown tables: every round (mean over seeds), and the final comparison."""
    seeds, rounds = settings["seeds"], settings["rounds"]
    metrics = ("edge_mAP", "edge_AP50", "edge_f1", "initial_mAP", "forgetting")
    print(f"\n## Per round, mean ± std over seeds {seeds}\n")
    print(
        "| strategy | round | labels | STR | replaced | edge mAP | edge AP50 | edge F1 "
        "| F1 gain over Random (points) | initial mAP | forgetting | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in settings["strategies"]:
        for round_index in range(1, rounds + 1):
            rows = [r for r in all_rows if r["strategy"] == name and r["round"] == round_index]
            cells = [mean_std([r[k] for r in rows]) for k in metrics]
            print(
                f"| {name} | {round_index} | {rows[0]['labels']} | "
                f"{rows[0]['samples_transfer_ratio']:.3f} | "
                f"{sum(r['replaced'] for r in rows)}/{len(rows)} | "
                + " | ".join(cells[:3])
                + f" | {f1_gain_over_random(rows, all_rows)} | "
                + " | ".join(cells[3:])
                + f" | {statistics.mean(r['wall_s'] for r in rows):.0f} |"
            )

    last_round = [row for row in all_rows if row["round"] == rounds]
    print(f"\n## After round {rounds}, mean ± std over seeds {seeds}\n")
    print(
        "| strategy | labels | samples_transfer_ratio | edge mAP | edge AP50 | edge F1 "
        "| F1 gain over Random (points) | initial mAP | forgetting |"
    )
    print("|---|---|---|---|---|---|---|---|---|")

    def table_row(name, rows):
        cells = [mean_std([r[k] for r in rows]) for k in metrics]
        gain = "–" if name == "initial model" else f1_gain_over_random(rows, all_rows)
        print(
            f"| {name} | {rows[0]['labels']} | {rows[0]['samples_transfer_ratio']:.3f} | "
            + " | ".join(cells[:3])
            + f" | {gain} | "
            + " | ".join(cells[3:])
            + " |"
        )

    table_row("initial model", initial_rows)
    for name in settings["strategies"]:
        table_row(name, [row for row in last_round if row["strategy"] == name])

    # "In every seed" is read here: the paired gain of each seed, and the worst of them.
    print(f"\n## F1 gain over Random after round {rounds}, per seed (points)\n")
    print("| strategy | " + " | ".join(f"seed {s}" for s in seeds) + " | worst seed |")
    print("|---|" + "---|" * (len(seeds) + 1))
    for name in settings["strategies"]:
        if name == "Random":
            continue
        gains = f1_gains_by_seed([r for r in last_round if r["strategy"] == name], all_rows)
        if not gains:
            continue
        cells = [f"{gains[s]:+.1f}" if s in gains else "–" for s in seeds]
        print(f"| {name} | " + " | ".join(cells) + f" | {min(gains.values()):+.1f} |")


if __name__ == "__main__":
    main()
