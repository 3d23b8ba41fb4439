"""Benchmark strategies: the labeling strategies compared on a loop's algorithm, as a portal job.

The rounds are worker/ml/rounds.py's (the same code as ``bench/il_rounds.py``), on the synthetic
mixed edge stream: a loop's own dataset has no held-out stream with ground truth to simulate an
annotator on. The loop contributes its algorithm: the FPN's hyperparameters of its YAML (widths,
optimizer, thresholds...), except its class names (the synthetic classes) and what the benchmark
settings fix (input size, steps, learning rate, replay). The job stores every round's row and the
leaderboard in ``Job.result``; "use this miner" writes the winning miner into the loop's YAML
through ``services.update_loop`` (the settings page's validation).
"""

from __future__ import annotations

import csv
import io
import time

import yaml

from apps.jobs import services as jobs
from apps.jobs.models import Job, JobStatus, JobTrigger
from apps.jobs.runner import JobProgress
from apps.loops import services
from apps.loops.models import Loop

KIND = "benchmark"
DEFAULT_STRATEGIES = ("Coverage", "Threshold", "Random")


def _fpn_minimum(name: str) -> int:
    from worker.ml.rounds import fpn_param  # the FPN module imports no TensorFlow

    return int(fpn_param(name).minimum)


# Settings a user may change on the start page, with the portal's limits (a job, not a night run);
# input_size from the FPN's smallest, so the form never accepts a size the model refuses.
LIMITS = {
    "rounds": (1, 5),
    "stream_per_round": (4, 120),
    "input_size": (_fpn_minimum("input_size"), 256),
    "initial_images": (8, 600),
    "initial_steps": (1, 1000),
    "finetune_steps": (1, 500),
    "gate_images": (4, 200),
    "test_images": (4, 200),
}
MAX_SEEDS = 5
CSV_FIELDS = (
    "rank",
    "strategy",
    "round",
    "labels",
    "f1",
    "mAP",
    "AP50",
    "STR",
    "forgetting",
    "seeds",
)
ROW_FIELDS = (
    "seed",
    "strategy",
    "round",
    "labels",
    "edge_f1",
    "edge_mAP",
    "edge_AP50",
    "samples_transfer_ratio",
    "forgetting",
    "replaced",
)


def strategy_names() -> list[str]:
    from worker.ml.rounds import STRATEGIES

    return list(STRATEGIES)


def check_request(strategies, seeds, settings: dict) -> dict:
    """The job's params from a user's choice; LoopError says what is wrong."""
    from worker.ml.errors import ConfigError
    from worker.ml.rounds import RoundSettings, check_seeds, check_strategies

    try:
        strategies = check_strategies(dict.fromkeys(strategies))
    except ConfigError as exc:
        raise services.LoopError(f"Strategies: {exc}") from exc
    seeds = sorted(dict.fromkeys(int(seed) for seed in seeds))
    if not seeds or len(seeds) > MAX_SEEDS:
        raise services.LoopError(f"Choose 1 to {MAX_SEEDS} seeds.")
    for name, value in settings.items():
        if name in LIMITS and not LIMITS[name][0] <= value <= LIMITS[name][1]:
            low, high = LIMITS[name]
            raise services.LoopError(f"{name} must lie in [{low}, {high}], got {value}.")
    try:
        round_settings = RoundSettings(**settings)
        round_settings.check()
    except TypeError as exc:
        raise services.LoopError(f"Unknown benchmark setting: {exc}") from exc
    except ConfigError as exc:
        raise services.LoopError(f"Benchmark setting {exc}.") from exc
    try:
        check_seeds(seeds, round_settings.rounds)
    except ConfigError as exc:
        raise services.LoopError(f"Choose 1 to {MAX_SEEDS} {exc}.") from exc
    return {"strategies": strategies, "seeds": seeds, "settings": settings}


def start_benchmark(loop: Loop, *, user=None, strategies, seeds, settings: dict) -> Job:
    params = check_request(strategies, seeds, settings)
    _model_params(loop)  # a loop whose algorithm the benchmark cannot run fails here, not later
    return jobs.start_job(
        KIND,
        user=user,
        trigger=JobTrigger.MANUAL,
        scope=loop.job_scope,
        params={"loop_id": loop.pk, **params},
    )


def _model_params(loop: Loop) -> dict:
    config = services.check_algorithm_yaml(loop.algorithm_yaml, loop.dataset.class_names)
    if config.basemodel.name != "FPN":
        raise services.LoopError(
            f"The benchmark runs FPN models; this loop's base model is {config.basemodel.name}."
        )
    fixed = {"class_names", "input_size", "max_iteration", "seed", "learning_rate", "replay_ratio"}
    return {k: v for k, v in config.basemodel.hyperparameters.items() if k not in fixed}


def run_benchmark(job: Job, progress: JobProgress) -> dict:
    """The job body: every seed, every strategy, every round; progress after each round."""
    from worker.ml import rounds

    loop = Loop.objects.select_related("dataset").get(pk=job.params["loop_id"])
    settings = rounds.RoundSettings(**job.params["settings"], model_params=_model_params(loop))
    strategies, seeds = job.params["strategies"], job.params["seeds"]
    total = len(seeds) * (1 + len(strategies) * settings.rounds)
    done = 0
    rows: list[dict] = []
    started = time.monotonic()

    # No chart points: the job page's chart plots a training loss; the log carries every round.
    def step(message: str) -> None:
        nonlocal done
        done += 1
        progress.update(2 + 96 * done / total, message, force=True)

    def training(step_index: int, steps: int, logs: dict) -> None:
        # Throttled; raises JobCancelled when the job was cancelled: a cancel stops a training
        # within about a second instead of at the end of the round.
        progress.update(2 + 96 * done / total, f"training: step {step_index}/{steps}")

    progress.update(1, f"Benchmark of {', '.join(strategies)} on seeds {seeds}", force=True)
    initial_rows = []
    for seed in seeds:
        data = rounds.make_data(settings, seed)
        initial, initial_path = rounds.initial_model(
            settings, seed, data, training_progress=training
        )
        initial_row = rounds.initial_scores(initial, data, seed)
        initial_rows.append(initial_row)
        step(f"seed {seed}: initial model edge F1 {initial_row['edge_f1']:.3f}")

        def log(row: dict) -> None:
            rows.append(row)
            line = (
                f"seed {row['seed']} · {row['strategy']} · round {row['round']}: "
                f"F1 {row['edge_f1']:.3f}, mAP {row['edge_mAP']:.3f}, "
                f"STR {row['samples_transfer_ratio']:.3f}"
            )
            progress.log(line)
            step(line)

        for name in strategies:
            rounds.run_strategy(
                name, settings, seed, data, initial_path, initial_rows[-1], log, training
            )
    progress.log(f"Benchmark finished in {time.monotonic() - started:.0f} s")
    board = rounds.leaderboard(rows)
    return {
        "strategies": strategies,
        "seeds": seeds,
        "settings": settings.as_dict(),
        "initial": [_plain(r) for r in initial_rows],
        "rows": [_plain(r) for r in rows],
        "leaderboard": board,
    }


def _plain(row: dict) -> dict:
    """JSON-safe: numpy scalars to Python numbers."""
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}


def benchmark_jobs(loop: Loop):
    return Job.objects.filter(kind=KIND, scope=loop.job_scope)


def finished_leaderboard(job: Job) -> list[dict]:
    if job.status != JobStatus.SUCCEEDED:
        return []
    return list(job.result.get("leaderboard", []))


def rounds_table(job: Job) -> list[dict]:
    """Every strategy's rows per round, averaged over seeds (the table under the leaderboard)."""
    rows = job.result.get("rows", []) if job.status == JobStatus.SUCCEEDED else []
    table = []
    for key in dict.fromkeys((r["strategy"], r["round"]) for r in rows):
        mine = [r for r in rows if (r["strategy"], r["round"]) == key]
        entry = {"strategy": key[0], "round": key[1], "labels": mine[0]["labels"]}
        for field, name in (
            ("edge_f1", "f1"),
            ("edge_mAP", "mAP"),
            ("edge_AP50", "AP50"),
            ("samples_transfer_ratio", "STR"),
            ("forgetting", "forgetting"),
        ):
            entry[name] = sum(r[field] for r in mine) / len(mine)
        table.append(entry)
    return table


def leaderboard_csv(job: Job) -> str:
    """The leaderboard, then every round of every seed, as CSV."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    for entry in finished_leaderboard(job):
        writer.writerow(
            [
                " ".join(str(s) for s in entry[f]) if f == "seeds" else _cell(entry[f])
                for f in CSV_FIELDS
            ]
        )
    writer.writerow([])
    writer.writerow(ROW_FIELDS)
    for row in job.result.get("rows", []) if job.status == JobStatus.SUCCEEDED else []:
        writer.writerow([_cell(row.get(f)) for f in ROW_FIELDS])
    return out.getvalue()


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value):
    if isinstance(value, float):
        return f"{value:.4f}"
    # A strategy name is ours, but a leading =, +, -, @, tab or CR would be a formula in a
    # spreadsheet (static/js/line_chart.js's csvCell applies the same rule to the charts' CSV).
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value


def use_miner(loop: Loop, strategy: str) -> Loop:
    """Write ``strategy``'s miner into the loop's YAML, validated as the settings page does."""
    from worker.ml.rounds import STRATEGIES

    if strategy not in STRATEGIES:
        raise services.LoopError(f"Unknown strategy {strategy!r}.")
    alias, params = STRATEGIES[strategy]
    if alias in ("CloudOnly", "Random"):
        raise services.LoopError(
            f"{strategy} is a benchmark baseline, not a miner for the labeling queue."
        )
    current = loop.algorithm_yaml.strip() or services.default_algorithm_yaml(
        loop.dataset.class_names
    )
    try:
        document = yaml.safe_load(current) or {}
    except yaml.YAMLError as exc:
        raise services.LoopError(f"The loop's algorithm YAML is unreadable: {exc}") from exc
    if not isinstance(document, dict):
        raise services.LoopError("The loop's algorithm YAML is not a mapping.")
    document["hard_example_mining"] = {"name": alias, "hyperparameters": dict(params)}
    if not params:
        del document["hard_example_mining"]["hyperparameters"]
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    return services.update_loop(loop, algorithm_yaml=text)
