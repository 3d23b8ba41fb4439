"""Incremental-learning rounds on the synthetic edge stream: the benchmark of labeling strategies.

Shared by ``bench/il_rounds.py`` (the command line) and the portal's "Benchmark strategies" job
(apps/loops/benchmarks.py). Per seed: train an initial FPN on the *initial* domain, then stream the
*edge* domain in rounds; per round and strategy, the strategy's selector picks ``budget`` images of
the round's stream, the simulated annotator copies their ground truth, the current model is
fine-tuned on every label so far (with replay), and the candidate replaces it only if it passes a
gate on held-out sets. The deployed model is measured on separate test sets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from worker.ml.data import DetectionData
from worker.ml.errors import ConfigError
from worker.ml.metrics import samples_transfer_ratio
from worker.ml.registry import ClassFactory, ClassType
from worker.ml.synthetic import DEFAULT_EDGE_SHIFT, generate_samples, is_night

# Strategy name -> (miner alias, miner hyperparameters). Sedna's defaults for Sedna's miners.
STRATEGIES = {
    "IBT": ("IBT", {}),
    "Threshold": ("Threshold", {}),
    "CrossEntropy": ("CrossEntropy", {}),
    "MissedObject": ("MissedObject", {}),
    "MissedObject+Novelty": ("MissedObject", {"use_novelty": True}),
    "Novelty": ("Novelty", {}),
    "Coverage": ("Coverage", {}),  # novel non-empty frames by diversity + Threshold's ranking
    # ... with half of the novelty quota for novel frames that look empty (blind spots)
    "Coverage+Blind": ("Coverage", {"blind_share": 0.5}),
    # ... with half of the budget first drawn uniformly at random (exploration)
    "Coverage+Explore": ("Coverage", {"explore_share": 0.5}),
    "Random": ("Random", {"random_ratio": 1.0}),  # ranks by a random draw: a uniform sample
    "All": ("CloudOnly", {}),  # labels everything: the upper bound, at a larger budget
}


@dataclass
class RoundSettings:
    """Everything one benchmark run depends on (defaults: the command's small setting)."""

    rounds: int = 3
    stream_per_round: int = 40
    input_size: int = 128
    initial_images: int = 240
    initial_steps: int = 300
    finetune_steps: int = 120
    finetune_lr: float = 0.001
    replay_ratio: float = 0.5
    budget_ratio: float = 0.1
    shift: float = DEFAULT_EDGE_SHIFT
    empty_share: float = 0.6
    night_share: float = 0.3
    gate_images: int = 40
    test_images: int = 80
    max_forgetting: float = 0.02
    # Share of fine-tuning images given a night-mode look (FPN ``night_augment``); None: the
    # model's own setting. Fine-tuning only, so cached initial models stay valid.
    night_augment: float | None = None
    # ... and of the initial model's training images (FPN ``initial_night_augment``; 0: the
    # model's own setting, by default none: the benchmark's premise so far); part of the cached
    # initial model's name.
    initial_night_augment: float = 0.0
    # Extra FPN hyperparameters (the portal passes the loop's algorithm, minus what is set above).
    model_params: dict = field(default_factory=dict)

    def check(self) -> None:
        for name in (
            "rounds",
            "stream_per_round",
            "initial_images",
            "initial_steps",
            "finetune_steps",
            "gate_images",
            "test_images",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"must be >= 1, got {getattr(self, name)}", name)
        for name in ("budget_ratio", "replay_ratio", "shift", "empty_share", "night_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"must lie in [0, 1], got {getattr(self, name)}", name)
        for name in ("night_augment", "initial_night_augment"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"must lie in [0, 1], got {value}", name)
        self._check_fpn()
        labels = self.labels_per_round()
        if labels < 1:
            raise ConfigError(
                f"{self.budget_ratio:g} × {self.stream_per_round} images streamed per round gives "
                f"{labels} labels per round; at least 1 is needed (raise the budget or the "
                "images per round)",
                "budget_ratio",
            )

    def labels_per_round(self) -> int:
        """Labels a strategy other than All takes per round (run_strategy's budget)."""
        return int(self.budget_ratio * self.stream_per_round)

    def _check_fpn(self) -> None:
        """What the FPN would refuse mid-run, refused here: its declared limits (worker/ml/fpn.py)
        on the settings passed to it, then its own checks of the whole parameter set."""
        from worker.ml.fpn import FPNModel  # no TensorFlow: that comes with a network
        from worker.ml.params import validate_params

        for name, key in FPN_SETTINGS.items():
            replace(fpn_param(key), name=name).check(getattr(self, name), "")
        params = {**self.model_params, "input_size": self.input_size}
        FPNModel._check_params(validate_params(FPNModel.HYPERPARAMETERS, params, "FPN"))

    def as_dict(self) -> dict:
        return asdict(self)


# Settings handed to the FPN as its hyperparameters: setting -> the FPN's name for it.
FPN_SETTINGS = {
    "input_size": "input_size",
    "finetune_lr": "learning_rate",
    "replay_ratio": "replay_ratio",
}


def fpn_param(name: str):
    """The FPN's declaration of hyperparameter ``name`` (worker/ml/fpn.py), with its limits."""
    from worker.ml.fpn import FPNModel

    return next(param for param in FPNModel.HYPERPARAMETERS if param.name == name)


# numpy's RandomState and keras.utils.set_random_seed (the FPN's build) take seeds in [0, 2**32).
SEED_LIMIT = 2**32


def max_seed(rounds: int) -> int:
    """The largest seed whose derived seeds all stay below SEED_LIMIT in a run of ``rounds``
    rounds: the seed itself (the initial model), make_data's 1000 + seed ... 6000 + seed, and
    run_strategy's seed * 100 + round (fine-tuning and selection), to which the Coverage selector
    adds up to 2."""
    return min(SEED_LIMIT - 1 - 6000, (SEED_LIMIT - 1 - 2 - rounds) // 100)


def check_seeds(seeds, rounds: int) -> list[int]:
    """``seeds`` if every one of them (and every seed derived from it) is a valid numpy seed."""
    seeds = list(seeds)
    highest = max_seed(rounds)
    bad = [seed for seed in seeds if not 0 <= seed <= highest]
    if bad:
        raise ConfigError(
            f"each must lie in [0, {highest}], got {bad[0]} (numpy's seeds end at 2**32 - 1, "
            f"and a run derives seeds up to seed × 100 + {rounds + 2} from each)",
            "seeds",
        )
    return seeds


def check_strategies(names) -> list[str]:
    names = list(names)
    unknown = [name for name in names if name not in STRATEGIES]
    if unknown or not names:
        raise ConfigError(f"unknown strategies {unknown}; choose from {list(STRATEGIES)}")
    return names


def stream_seed(seed: int) -> int:
    """The generator seed of a run's edge stream."""
    return 2000 + seed


def make_data(settings: RoundSettings, seed: int) -> dict:
    size = settings.input_size

    def edge(n_images, data_seed, start=0):
        return generate_samples(
            n_images,
            "edge",
            data_seed,
            size,
            shift=settings.shift,
            start=start,
            empty_share=settings.empty_share,
            night_share=settings.night_share,
        )

    per_round = settings.stream_per_round
    return {
        "initial_train": generate_samples(settings.initial_images, "initial", 1000 + seed, size),
        "stream": [
            edge(per_round, stream_seed(seed), start=r * per_round) for r in range(settings.rounds)
        ],
        "edge_gate": edge(settings.gate_images, 3000 + seed),
        "edge_test": edge(settings.test_images, 4000 + seed),
        "regression_gate": generate_samples(settings.gate_images, "initial", 5000 + seed, size),
        "regression_test": generate_samples(settings.test_images, "initial", 6000 + seed, size),
    }


def measure(model, data) -> dict:
    edge = model.evaluate(data["edge_test"])
    regression = model.evaluate(data["regression_test"])
    return {
        "edge_mAP": edge["mAP"],
        "edge_AP50": edge["AP50"],
        "edge_f1": edge["f1"],
        # F1's parts, in the JSON rows: whether a strategy loses on missed or on false boxes.
        "edge_precision": edge["precision"],
        "edge_recall": edge["recall"],
        "initial_mAP": regression["mAP"],
    }


def _fpn(settings: RoundSettings, **params):
    from worker.ml.fpn import FPNModel  # TensorFlow only when a model is built

    return FPNModel(**{**settings.model_params, **params})


def initial_model(
    settings: RoundSettings, seed: int, data: dict, cache_dir=None, training_progress=None
):
    """Train the initial model, or reuse one from ``cache_dir`` with equal settings.
    ``training_progress`` is the FPN's ``train(progress=...)`` callback (it may raise to stop)."""
    params = {"input_size": settings.input_size, "seed": seed}
    if settings.initial_night_augment:  # else the algorithm's own (model_params), if any
        params["initial_night_augment"] = settings.initial_night_augment
    model = _fpn(settings, max_iteration=settings.initial_steps, **params)
    night = model.params["initial_night_augment"]
    name = (
        f"initial-s{seed}-px{settings.input_size}-n{settings.initial_images}"
        f"-steps{settings.initial_steps}" + (f"-night{night:g}" if night else "") + ".zip"
    )
    cached = Path(cache_dir) / name if cache_dir else None
    if cached is not None and cached.is_file():
        model.load(cached)
        return model, str(cached)
    # A model without weights: initial_night_augment applies.
    model.train(data["initial_train"], progress=training_progress)
    path = model.save(cached if cached is not None else Path(model.work_dir) / name)
    return model, path


def initial_scores(model, data, seed: int, wall_s: float = 0.0) -> dict:
    """The initial model's row (round 0), with the gate scores every strategy starts from."""
    scores = measure(model, data)
    scores["gate_edge_mAP"] = model.evaluate(data["edge_gate"], metric="mAP")["mAP"]
    scores["gate_regression_mAP"] = model.evaluate(data["regression_gate"], metric="mAP")["mAP"]
    return {
        "seed": seed,
        "strategy": "initial",
        "round": 0,
        "labels": 0,
        "flagged_by_miner": 0,
        "labels_with_objects": 0,
        "labels_at_night": 0,
        "labels_at_night_with_objects": 0,
        "replaced": True,
        "samples_transfer_ratio": 0.0,
        "forgetting": 0.0,
        "wall_s": wall_s,
        **scores,
    }


def build_strategy(name: str, seed: int):
    alias, params = STRATEGIES[name]
    miner_cls = ClassFactory.get_cls(ClassType.HEM, alias)
    return miner_cls(**params, **({"seed": seed} if alias in ("Random", "Coverage") else {}))


def run_strategy(
    name: str,
    settings: RoundSettings,
    seed: int,
    data: dict,
    initial_path: str,
    initial: dict,
    log: Callable[[dict], None] = lambda row: None,
    training_progress: Callable | None = None,
) -> list[dict]:
    """Every round of one strategy in one seed; ``log`` gets each round's row as it finishes,
    ``training_progress`` is each fine-tuning's ``train(progress=...)`` callback."""
    alias, _ = STRATEGIES[name]
    miner = build_strategy(name, seed)
    current = _fpn(settings)
    current.load(initial_path)
    current_gate = {"edge": initial["gate_edge_mAP"], "regression": initial["gate_regression_mAP"]}
    labeled: list[DetectionData] = []
    rows = []
    inferred_total = labeled_total = with_objects_total = at_night_total = 0
    night_objects_total = 0
    for round_index, stream in enumerate(data["stream"], start=1):
        started = time.perf_counter()
        inferences = current.infer(
            stream, flip=(alias == "MissedObject"), with_features=miner.needs_features
        )
        results = [miner.mine(inference) for inference in inferences]
        budget = len(stream) if name == "All" else settings.labels_per_round()
        chosen = miner.select(inferences, budget, seed=seed * 100 + round_index)
        flagged = sum(result.is_hard for result in results)
        labeled.append(stream.subset(chosen))  # the simulated annotator copies ground truth
        inferred_total += len(stream)
        labeled_total += len(chosen)
        # Labeled frames that show an object: an empty frame's label teaches only "background".
        with_objects_total += sum(len(stream.y[index]) > 0 for index in chosen)
        # ... and in night mode, the sub-domain that score-based miners cannot see.
        first = (round_index - 1) * settings.stream_per_round  # as make_data numbers the stream
        chosen_at_night = [
            index
            for index in chosen
            if is_night(first + index, "edge", stream_seed(seed), settings.night_share)
        ]
        at_night_total += len(chosen_at_night)
        # ... of which show an object: what the initial models are blind to (il_blind_spots.py).
        night_objects_total += sum(len(stream.y[index]) > 0 for index in chosen_at_night)

        candidate = _fpn(settings)
        candidate.load(current.checkpoint_path)
        candidate.train(
            DetectionData.concatenate(labeled),
            replay_data=data["initial_train"],
            replay_ratio=settings.replay_ratio,
            max_iteration=settings.finetune_steps,
            learning_rate=settings.finetune_lr,
            warmup_steps=min(10, settings.finetune_steps),
            seed=seed * 100 + round_index,
            progress=training_progress,
            **(
                {"night_augment": settings.night_augment}
                if settings.night_augment is not None
                else {}
            ),
        )
        gate_edge = candidate.evaluate(data["edge_gate"], metric="mAP")["mAP"]
        gate_regression = candidate.evaluate(data["regression_gate"], metric="mAP")["mAP"]
        passed = (
            gate_edge > current_gate["edge"]
            and gate_regression >= initial["gate_regression_mAP"] - settings.max_forgetting
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
            "labels_with_objects": with_objects_total,
            "labels_at_night": at_night_total,
            "labels_at_night_with_objects": night_objects_total,
            "replaced": passed,
            "candidate_gate_edge_mAP": gate_edge,
            "candidate_gate_regression_mAP": gate_regression,
            "samples_transfer_ratio": samples_transfer_ratio(labeled_total, inferred_total),
            "forgetting": initial["initial_mAP"] - scores["initial_mAP"],
            "wall_s": time.perf_counter() - started,
            **scores,
        }
        rows.append(row)
        log(row)
    return rows


def f1_gains_by_seed(rows: list[dict], all_rows: list[dict]) -> dict[int, float]:
    """Per seed, edge F1 minus Random's in the same seed and round, in points (rows of one round
    and one strategy). Seeds without a Random row are left out."""
    random_f1 = {
        (r["seed"], r["round"]): r["edge_f1"] for r in all_rows if r["strategy"] == "Random"
    }
    return {
        r["seed"]: 100 * (r["edge_f1"] - random_f1[r["seed"], r["round"]])
        for r in rows
        if (r["seed"], r["round"]) in random_f1
    }


def leaderboard(rows: list[dict]) -> list[dict]:
    """One entry per strategy after its last round, averaged over seeds, ranked as Ianvs ranks:
    edge F1 descending, then samples_transfer_ratio ascending (then the name, for a stable order).
    """
    last_round = max((r["round"] for r in rows if r["strategy"] != "initial"), default=0)
    final = [r for r in rows if r["round"] == last_round and r["strategy"] != "initial"]
    entries = []
    for name in dict.fromkeys(r["strategy"] for r in final):
        mine = [r for r in final if r["strategy"] == name]
        gains = f1_gains_by_seed(mine, rows)

        def mean(key, mine=mine):
            return sum(r[key] for r in mine) / len(mine)

        entries.append(
            {
                "strategy": name,
                "round": last_round,
                "seeds": [r["seed"] for r in mine],
                "labels": mine[0]["labels"],
                "f1": mean("edge_f1"),
                "mAP": mean("edge_mAP"),
                "AP50": mean("edge_AP50"),
                "STR": mean("samples_transfer_ratio"),
                "forgetting": mean("forgetting"),
                "f1_gain_by_seed": {str(seed): gain for seed, gain in gains.items()},
            }
        )
    entries.sort(key=lambda e: (-e["f1"], e["STR"], e["strategy"]))
    for rank, entry in enumerate(entries, start=1):
        entry["rank"] = rank
    return entries
