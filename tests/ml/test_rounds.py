"""One benchmark round on tiny settings: what a row records, and the fine-tuning settings."""

import numpy as np
import pytest

from worker.ml import rounds
from worker.ml.errors import ConfigError
from worker.ml.synthetic import generate_samples

TINY = rounds.RoundSettings(
    rounds=1,
    stream_per_round=6,
    budget_ratio=0.5,
    input_size=64,
    initial_images=16,
    initial_steps=3,
    finetune_steps=2,
    gate_images=4,
    test_images=4,
    empty_share=0.5,
    model_params={"backbone_width": 4, "fpn_channels": 16, "batch_size": 4},
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    data = rounds.make_data(TINY, seed=0)
    # A cache directory keeps the archive beyond the model object's scratch directory.
    model, path = rounds.initial_model(TINY, 0, data, tmp_path_factory.mktemp("initial"))
    return data, path, rounds.initial_scores(model, data, 0)


def test_all_labels_every_frame_and_counts_the_frames_with_objects(tiny_run):
    data, path, initial = tiny_run
    (row,) = rounds.run_strategy("All", TINY, 0, data, path, initial)
    stream = data["stream"][0]
    assert row["labels"] == len(stream.y)
    assert 0 < row["labels_with_objects"] < row["labels"]  # empty_share 0.5: some of each
    assert row["labels_with_objects"] == sum(len(boxes) > 0 for boxes in stream.y)
    # The night frames are those that differ from the same stream generated without night mode.
    day = generate_samples(
        len(stream.y), "edge", rounds.stream_seed(0), TINY.input_size,
        shift=TINY.shift, empty_share=TINY.empty_share,
    )  # fmt: skip
    night = sum(not np.array_equal(a, b) for a, b in zip(day.x, stream.x, strict=True))
    assert 0 < night < len(stream.y)
    assert row["labels_at_night"] == night
    night_objects = sum(
        len(boxes) > 0 and not np.array_equal(a, b)
        for a, b, boxes in zip(day.x, stream.x, stream.y, strict=True)
    )
    assert 0 < row["labels_at_night_with_objects"] == night_objects <= night


def test_night_augment_reaches_fine_tuning(tiny_run, night_shares_seen):
    data, path, initial = tiny_run
    seen = night_shares_seen
    settings = rounds.RoundSettings(**{**TINY.as_dict(), "night_augment": 0.4})
    rounds.run_strategy("Random", settings, 0, data, path, initial)
    rounds.run_strategy("Random", TINY, 0, data, path, initial)
    assert seen == [0.4, 0.0]


def test_initial_night_augment_reaches_the_initial_training_and_its_cache_name(
    tiny_run, tmp_path, night_shares_seen
):
    data, plain_path, _ = tiny_run
    seen = night_shares_seen
    settings = rounds.RoundSettings(**{**TINY.as_dict(), "initial_night_augment": 0.5})
    _, path = rounds.initial_model(settings, 0, data, tmp_path)
    assert seen == [0.5]
    assert str(path).endswith("-night0.5.zip") and not str(plain_path).endswith("-night0.5.zip")
    rounds.initial_model(settings, 0, data, tmp_path)  # cached: not trained again
    assert seen == [0.5]


@pytest.mark.parametrize("name", ["night_augment", "initial_night_augment"])
@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_night_augment_outside_unit_interval_is_rejected(name, value):
    with pytest.raises(ConfigError):
        rounds.RoundSettings(**{name: value}).check()


def test_the_algorithms_initial_night_augment_reaches_the_benchmarks_initial_model(
    tiny_run, tmp_path, night_shares_seen
):
    """The portal's benchmark passes a loop's algorithm as model_params: its setting counts."""
    data, _, _ = tiny_run
    settings = rounds.RoundSettings(
        **{**TINY.as_dict(), "model_params": {**TINY.model_params, "initial_night_augment": 0.25}}
    )
    _, path = rounds.initial_model(settings, 0, data, tmp_path)
    assert night_shares_seen == [0.25]
    assert str(path).endswith("-night0.25.zip")


def test_input_size_limits_are_the_fpns_own():
    from worker.ml.fpn import FPNModel

    declared = next(p for p in FPNModel.HYPERPARAMETERS if p.name == "input_size")
    smallest, largest = int(declared.minimum), int(declared.maximum)
    for size in (smallest, largest):
        rounds.RoundSettings(input_size=size).check()
        FPNModel(input_size=size)  # the model a run builds takes it too
    for size, message in (
        (smallest - 32, f"input_size: must be >= {smallest}"),  # 32: the job used to fail
        (largest + 32, f"input_size: must be <= {largest}"),
        (smallest + 1, "multiple of 32"),
    ):
        with pytest.raises(ConfigError, match=message):
            rounds.RoundSettings(input_size=size).check()


def test_other_settings_handed_to_the_fpn_are_checked_against_its_limits():
    with pytest.raises(ConfigError, match=r"replay_ratio: must be <= 0\.9"):
        rounds.RoundSettings(replay_ratio=0.95).check()
    with pytest.raises(ConfigError, match="finetune_lr: must be <= 1.0"):
        rounds.RoundSettings(finetune_lr=2.0).check()
    with pytest.raises(ConfigError, match="FPN.backbone_width"):
        rounds.RoundSettings(model_params={"backbone_width": 1}).check()


@pytest.mark.parametrize(
    "budget_ratio, stream_per_round, labels",
    [(0.01, 40, 0), (0.1, 6, 0), (0.16, 6, 0), (0.0, 40, 0)],
)
def test_a_budget_of_no_label_per_round_is_refused(budget_ratio, stream_per_round, labels):
    settings = rounds.RoundSettings(budget_ratio=budget_ratio, stream_per_round=stream_per_round)
    with pytest.raises(ConfigError, match=f"gives {labels} labels per round; at least 1 is needed"):
        settings.check()


def test_the_smallest_accepted_budget_labels_one_image_per_round(tiny_run):
    """check() counts labels as the rounds do: its 1 label is what a round then takes."""
    data, path, initial = tiny_run
    settings = rounds.RoundSettings(**{**TINY.as_dict(), "budget_ratio": 0.17})  # 6 x 0.17 = 1.02
    settings.check()
    assert settings.labels_per_round() == 1
    (row,) = rounds.run_strategy("Threshold", settings, 0, data, path, initial)
    assert row["labels"] == 1


@pytest.mark.parametrize("round_count", [1, 5, 40])
def test_the_largest_seed_keeps_every_derived_seed_valid_for_numpy(round_count):
    highest = rounds.max_seed(round_count)
    # What a run derives from its seed (rounds.py, selectors.py): all valid numpy seeds.
    derived = [highest, *(k * 1000 + highest for k in range(1, 7))]
    derived += [highest * 100 + r + extra for r in range(1, round_count + 1) for extra in (0, 1, 2)]
    for seed in derived:
        np.random.RandomState(seed)
    # ... and it is the largest such seed: one more derives an invalid one.
    with pytest.raises(ValueError):
        np.random.RandomState((highest + 1) * 100 + round_count + 2)
    assert rounds.check_seeds([0, highest], round_count) == [0, highest]
    for seed in (highest + 1, 2**32, -1):
        with pytest.raises(ConfigError, match=rf"seeds: each must lie in \[0, {highest}\]"):
            rounds.check_seeds([0, seed], round_count)
