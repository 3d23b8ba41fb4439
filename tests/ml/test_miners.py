import math

import numpy as np
import pytest

from worker.ml.data import ImageInference
from worker.ml.errors import ConfigError, MLInputError
from worker.ml.miners import (
    CloudOnlyMiner,
    CrossEntropyMiner,
    EdgeOnlyMiner,
    IBTMiner,
    MiningResult,
    MissedObjectMiner,
    NoveltyMiner,
    RandomMiner,
    ThresholdMiner,
    rank_by_hardness,
)


def boxes(*scores, cls=0):
    return [[10 * i, 10, 10 * i + 8, 18, s, cls] for i, s in enumerate(scores)]


def test_sedna_defaults():
    assert IBTMiner().params == {"threshold_img": 0.5, "threshold_box": 0.5}
    assert ThresholdMiner().threshold == 0.5
    assert CrossEntropyMiner().threshold_cross_entropy == 0.5
    assert RandomMiner().random_ratio == 0.3


def test_ibt_share_of_low_score_boxes():
    miner = IBTMiner(threshold_img=0.5, threshold_box=0.5)
    # 2 of 4 boxes have score <= 0.5: share 0.5 >= 1 - 0.5 -> hard.
    result = miner.mine(boxes(0.9, 0.5, 0.3, 0.8))
    assert result == MiningResult(True, 0.5)
    # 1 of 4: share 0.25 < 0.5 -> not hard.
    assert miner.mine(boxes(0.9, 0.4, 0.7, 0.8)) == MiningResult(False, 0.25)
    # Ianvs leaderboard setting 0.9/0.9: one box of ten at <= 0.9 is enough.
    strict = IBTMiner(threshold_img=0.9, threshold_box=0.9)
    assert strict(boxes(0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.85)) is True
    assert strict(boxes(0.95, 0.95)) is False


def test_ibt_and_threshold_never_flag_an_image_without_boxes():
    assert IBTMiner().mine([]) == MiningResult(False, 0.0)
    assert ThresholdMiner().mine(None) == MiningResult(False, 0.0)


def test_threshold_mean_score():
    miner = ThresholdMiner(threshold=0.5)
    result = miner.mine(boxes(0.2, 0.6))  # mean 0.4
    assert result.is_hard and result.hardness == pytest.approx(0.6)
    assert miner.mine(boxes(0.5, 0.7)).is_hard is False  # mean 0.6


def test_cross_entropy_sedna_formula_on_a_flat_distribution():
    miner = CrossEntropyMiner(threshold_cross_entropy=0.5)
    p = np.array([0.5, 0.3, 0.2])
    expected = 1 + float(np.sum(p * np.log(p))) / math.log(3)
    result = miner.mine(list(p))
    assert result.hardness == pytest.approx(1 - expected)
    assert result.is_hard is (expected < 0.5)
    assert miner.mine([1.0, 0.0, 0.0]) == MiningResult(False, 0.0)  # certain
    assert miner.mine([1 / 3] * 3).is_hard is True  # uniform: confidence 0


def test_cross_entropy_uses_the_least_confident_box():
    miner = CrossEntropyMiner(threshold_cross_entropy=0.5)
    inference = ImageInference(
        boxes=np.array(boxes(0.9, 0.4), np.float32),
        class_probs=np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.3]]),
    )
    result = miner.mine(inference)
    assert result.is_hard
    assert result.hardness > 0.9


def test_random_is_seeded_and_near_its_ratio():
    miner_a, miner_b = RandomMiner(random_ratio=0.3, seed=4), RandomMiner(random_ratio=0.3, seed=4)
    draws_a = [miner_a.mine(None) for _ in range(2000)]
    draws_b = [miner_b.mine(None) for _ in range(2000)]
    assert draws_a == draws_b
    assert draws_a != [RandomMiner(random_ratio=0.3, seed=5).mine(None) for _ in range(2000)]
    share = np.mean([d.is_hard for d in draws_a])
    assert 0.26 < share < 0.34
    assert all((d.hardness > 0.7) == d.is_hard for d in draws_a)


def test_cloud_and_edge_only():
    assert CloudOnlyMiner()([]) is True
    assert EdgeOnlyMiner()(boxes(0.1)) is False


def test_missed_object_flags_orphan_candidates_ibt_misses():
    # No confident box at all, two uncertain candidates: IBT and Threshold see nothing.
    candidates = np.array(boxes(0.3, 0.4), np.float32)
    inference = ImageInference(boxes=np.zeros((0, 6), np.float32), candidates=candidates)
    assert IBTMiner()(inference) is False
    result = MissedObjectMiner(low_score=0.1, high_score=0.5, threshold=0.5).mine(inference)
    assert result.hardness == pytest.approx(1 - (1 - 0.3) * (1 - 0.4))
    assert result.is_hard


def test_missed_object_ignores_candidates_covered_by_confident_boxes():
    confident = [10, 10, 50, 50, 0.9, 0]
    duplicate = [11, 11, 50, 50, 0.4, 0]  # same object, lower score: not a missed object
    inference = ImageInference(
        boxes=np.array([confident], np.float32),
        candidates=np.array([confident, duplicate], np.float32),
    )
    assert MissedObjectMiner().mine(inference) == MiningResult(False, 0.0)


def test_missed_object_flip_disagreement():
    a = [10, 10, 50, 50, 0.9, 0]
    b = [60, 10, 90, 50, 0.9, 1]
    stable = ImageInference(
        boxes=np.array([a, b], np.float32), flipped_boxes=np.array([b, a], np.float32)
    )
    assert MissedObjectMiner().mine(stable).hardness == 0.0
    unstable = ImageInference(
        boxes=np.array([a, b], np.float32), flipped_boxes=np.array([a], np.float32)
    )
    result = MissedObjectMiner(threshold=0.3).mine(unstable)
    assert result.hardness == pytest.approx(1 - 2 * 1 / 3)
    assert result.is_hard


def test_novelty_reads_the_feature_shift_that_box_scores_cannot_show():
    # An unfamiliar scene where the model detects nothing: the score-based miners stay silent.
    unfamiliar = ImageInference(boxes=np.zeros((0, 6), np.float32), feature_shift=4.0)
    assert not IBTMiner().mine(unfamiliar).is_hard
    assert not MissedObjectMiner().mine(unfamiliar).is_hard
    result = NoveltyMiner().mine(unfamiliar)
    assert result.is_hard and result.hardness == pytest.approx(0.75)  # 1 - 1/4
    # Asked to, MissedObject counts the unfamiliar scene as evidence of missed objects.
    assert MissedObjectMiner(use_novelty=True).mine(unfamiliar) == result
    familiar = ImageInference(boxes=np.zeros((0, 6), np.float32), feature_shift=0.8)
    assert NoveltyMiner().mine(familiar) == MiningResult(False, 0.0)
    at_threshold = ImageInference(boxes=np.zeros((0, 6), np.float32), feature_shift=2.0)
    assert NoveltyMiner().mine(at_threshold) == MiningResult(True, 0.5)
    assert not NoveltyMiner(threshold=0.8).mine(unfamiliar).is_hard
    # Plain Sedna-style boxes carry no feature shift: nothing to judge by.
    assert NoveltyMiner().mine(boxes(0.2, 0.3)) == MiningResult(False, 0.0)
    for bad in (float("nan"), -1.0, float("inf")):
        with pytest.raises(MLInputError, match="feature_shift"):
            NoveltyMiner().mine(ImageInference(boxes=np.zeros((0, 6)), feature_shift=bad))


def test_hardness_always_in_unit_interval():
    rng = np.random.default_rng(0)
    miners = [
        IBTMiner(),
        ThresholdMiner(),
        CrossEntropyMiner(),
        RandomMiner(),
        MissedObjectMiner(),
        NoveltyMiner(),
    ]
    for _ in range(50):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 50, (n, 2))
        det = np.column_stack([xy, xy + 10, rng.uniform(0, 1, n), rng.integers(0, 3, n)])
        probs = rng.dirichlet(np.ones(3), n) if n else np.zeros((0, 3))
        inference = ImageInference(
            boxes=det.astype(np.float32),
            class_probs=probs,
            candidates=det.astype(np.float32),
            feature_shift=float(rng.uniform(0, 10)),
        )
        for miner in miners:
            assert 0.0 <= miner.mine(inference).hardness <= 1.0


def test_rank_by_hardness_puts_hard_first():
    results = [MiningResult(False, 0.9), MiningResult(True, 0.2), MiningResult(True, 0.7)]
    assert rank_by_hardness(results) == [2, 1, 0]


@pytest.mark.parametrize(
    "miner_cls, params",
    [
        (IBTMiner, {"threshold_img": 1.2}),
        (IBTMiner, {"threshold_box": -0.5}),
        (ThresholdMiner, {"threshold": float("nan")}),
        (CrossEntropyMiner, {"threshold_cross_entropy": 3}),
        (RandomMiner, {"random_ratio": -0.1}),
        (IBTMiner, {"unknown": 0.5}),
        (MissedObjectMiner, {"low_score": 0.6, "high_score": 0.5}),
        (NoveltyMiner, {"threshold": 2.0}),
    ],
)
def test_parameters_outside_unit_interval_raise_config_error(miner_cls, params):
    with pytest.raises(ConfigError):
        miner_cls(**params)


def test_bad_miner_input_raises_input_error():
    with pytest.raises(MLInputError):
        IBTMiner().mine([[0, 0, 1, 1, float("nan"), 0]])
    with pytest.raises(MLInputError):
        ThresholdMiner().mine([[0, 0, 1, 1, 1.5, 0]])
    with pytest.raises(MLInputError):
        IBTMiner().mine([[0, 0, 1]])
    with pytest.raises(MLInputError):
        CrossEntropyMiner().mine([0.5, -0.2, 0.7])
