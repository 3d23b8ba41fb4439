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

from worker.ml.data import DetectionData  # noqa: E402
from worker.ml.fpn import FPNModel  # noqa: E402
from worker.ml.metrics import samples_transfer_ratio  # noqa: E402
from worker.ml.miners import rank_by_hardness  # noqa: E402
from worker.ml.registry import ClassFactory, ClassType  # noqa: E402
from worker.ml.synthetic import DEFAULT_EDGE_SHIFT, generate_samples  # noqa: E402

# Strategy name -> (miner alias, miner hyperparameters). Sedna's defaults for Sedna's miners.
STRATEGIES = {
    "IBT": ("IBT", {}),
    "Threshold": ("Threshold", {}),
    "CrossEntropy": ("CrossEntropy", {}),
    "MissedObject": ("MissedObject", {}),
    "MissedObject+Novelty": ("MissedObject", {"use_novelty": True}),
    "Novelty": ("Novelty", {}),
    "Random": ("Random", {"random_ratio": 1.0}),  # ranks by a random draw: a uniform sample
    "All": ("CloudOnly", {}),  # labels everything: the upper bound, at a larger budget
}


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


def make_data(args, seed):
    size = args.input_size

    def edge(n_images, data_seed, start=0):
        return generate_samples(
            n_images,
            "edge",
            data_seed,
            size,
            shift=args.shift,
            start=start,
            empty_share=args.empty_share,
            night_share=args.night_share,
        )

    return {
        "initial_train": generate_samples(args.initial_images, "initial", 1000 + seed, size),
        "stream": [
            edge(args.stream_per_round, 2000 + seed, start=r * args.stream_per_round)
            for r in range(args.rounds)
        ],
        "edge_gate": edge(args.gate_images, 3000 + seed),
        "edge_test": edge(args.test_images, 4000 + seed),
        "regression_gate": generate_samples(args.gate_images, "initial", 5000 + seed, size),
        "regression_test": generate_samples(args.test_images, "initial", 6000 + seed, size),
    }


def measure(model, data) -> dict:
    edge = model.evaluate(data["edge_test"])
    regression = model.evaluate(data["regression_test"])
    return {
        "edge_mAP": edge["mAP"],
        "edge_AP50": edge["AP50"],
        "edge_f1": edge["f1"],
        "initial_mAP": regression["mAP"],
    }


def run_strategy(name, args, seed, data, initial_path, initial_scores, log):
    alias, params = STRATEGIES[name]
    miner_cls = ClassFactory.get_cls(ClassType.HEM, alias)
    miner = miner_cls(**params, **({"seed": seed} if alias == "Random" else {}))
    current = FPNModel()
    current.load(initial_path)
    current_gate = {
        "edge": initial_scores["gate_edge_mAP"],
        "regression": initial_scores["gate_regression_mAP"],
    }
    labeled: list[DetectionData] = []
    rows = []
    inferred_total = labeled_total = 0
    for round_index, stream in enumerate(data["stream"], start=1):
        started = time.perf_counter()
        inferences = current.infer(stream, flip=(alias == "MissedObject"))
        results = [miner.mine(inference) for inference in inferences]
        budget = len(stream) if name == "All" else int(args.budget_ratio * len(stream))
        chosen = rank_by_hardness(results)[:budget]
        flagged = sum(result.is_hard for result in results)
        labeled.append(stream.subset(chosen))  # the simulated annotator copies ground truth
        inferred_total += len(stream)
        labeled_total += len(chosen)

        candidate = FPNModel()
        candidate.load(current.checkpoint_path)
        candidate.train(
            DetectionData.concatenate(labeled),
            replay_data=data["initial_train"],
            replay_ratio=args.replay_ratio,
            max_iteration=args.finetune_steps,
            learning_rate=args.finetune_lr,
            warmup_steps=10,
            seed=seed * 100 + round_index,
        )
        gate_edge = candidate.evaluate(data["edge_gate"], metric="mAP")["mAP"]
        gate_regression = candidate.evaluate(data["regression_gate"], metric="mAP")["mAP"]
        passed = (
            gate_edge > current_gate["edge"]
            and gate_regression >= initial_scores["gate_regression_mAP"] - args.max_forgetting
        )
        if passed:
            current = candidate
            current_gate = {"edge": gate_edge, "regression": gate_regression}
        scores = measure(current, data)
        row = {
            "seed": seed,
            "strategy": name,
            "round": round_index,
            "labels": labeled_total,
            "flagged_by_miner": flagged,
            "replaced": passed,
            "candidate_gate_edge_mAP": gate_edge,
            "candidate_gate_regression_mAP": gate_regression,
            "samples_transfer_ratio": samples_transfer_ratio(labeled_total, inferred_total),
            "forgetting": initial_scores["initial_mAP"] - scores["initial_mAP"],
            "wall_s": time.perf_counter() - started,
            **scores,
        }
        rows.append(row)
        log(row)
    return rows


def initial_model(args, seed, data):
    """Train the initial model, or reuse one from ``--initial-cache`` with equal settings."""
    name = (
        f"initial-s{seed}-px{args.input_size}-n{args.initial_images}-steps{args.initial_steps}.zip"
    )
    cached = Path(args.initial_cache) / name if args.initial_cache else None
    model = FPNModel(input_size=args.input_size, seed=seed, max_iteration=args.initial_steps)
    if cached is not None and cached.is_file():
        model.load(cached)
        return model, str(cached)
    model.train(data["initial_train"])
    path = model.save(cached if cached is not None else Path(model.work_dir) / name)
    return model, path


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
    for seed in args.seeds:
        data = make_data(args, seed)
        initial_started = time.perf_counter()
        initial, initial_path = initial_model(args, seed, data)
        scores = measure(initial, data)
        scores["gate_edge_mAP"] = initial.evaluate(data["edge_gate"], metric="mAP")["mAP"]
        scores["gate_regression_mAP"] = initial.evaluate(data["regression_gate"], metric="mAP")[
            "mAP"
        ]
        initial_row = {
            "seed": seed,
            "strategy": "initial",
            "round": 0,
            "labels": 0,
            "flagged_by_miner": 0,
            "replaced": True,
            "samples_transfer_ratio": 0.0,
            "forgetting": 0.0,
            "wall_s": time.perf_counter() - initial_started,
            **scores,
        }
        initial_rows.append(initial_row)
        log(initial_row)
        for name in args.strategies:
            all_rows += run_strategy(name, args, seed, data, initial_path, scores, log)

    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s")
    summarise(vars(args), initial_rows, all_rows)
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps({"args": vars(args), "initial": initial_rows, "rounds": all_rows}, indent=1)
        )


def f1_gain_over_random(rows: list, all_rows: list) -> str:
    """Edge F1 minus Random's in the same seed and round, in points: mean ± std over seeds."""
    random_f1 = {
        (r["seed"], r["round"]): r["edge_f1"] for r in all_rows if r["strategy"] == "Random"
    }
    gains = [
        100 * (r["edge_f1"] - random_f1[r["seed"], r["round"]])
        for r in rows
        if (r["seed"], r["round"]) in random_f1
    ]
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


if __name__ == "__main__":
    main()
