"""The Coverage batch selector on a constructed pool (no TensorFlow)."""

import numpy as np
import pytest

from worker.ml.config import load_algorithm_config
from worker.ml.data import ImageInference
from worker.ml.errors import ConfigError, MLInputError
from worker.ml.miners import ThresholdMiner, rank_by_hardness
from worker.ml.registry import ClassFactory, ClassType
from worker.ml.rounds import leaderboard
from worker.ml.selectors import CoverageSelector, farthest_point_order


def frame(best_score, shift, feature, n_boxes=1):
    """One image: ``n_boxes`` candidates at ``best_score``, a feature shift and a 2-D feature."""
    candidates = np.array(
        [[10 * i, 10, 10 * i + 8, 18, best_score, 0] for i in range(n_boxes)], np.float32
    ).reshape(-1, 6)
    kept = candidates[candidates[:, 4] >= 0.3]
    return ImageInference(
        boxes=kept,
        candidates=candidates,
        feature_shift=shift,
        features=np.asarray(feature, np.float64),
    )


@pytest.fixture
def pool():
    # 0-3: familiar frames (shift 1) with uncertain detections, Threshold hardness 1 - score.
    # 4-5: novel night frames with weak candidates (0.2), far apart in feature space.
    # 6: a novel night frame next to 4 (a near-duplicate scene).
    # 7-8: novel frames that look empty (no candidate at all / only a 0.05 one).
    return [
        frame(0.35, 1.0, [0.0, 0.0]),
        frame(0.40, 1.0, [0.1, 0.0]),
        frame(0.90, 1.0, [0.0, 0.1]),
        frame(0.45, 1.0, [0.1, 0.1]),
        frame(0.20, 4.0, [10.0, 0.0]),
        frame(0.20, 4.0, [0.0, 10.0]),
        frame(0.20, 4.0, [10.1, 0.1]),
        frame(0.0, 5.0, [-10.0, -10.0], n_boxes=0),
        frame(0.05, 5.0, [-10.0, 10.0]),
    ]


def test_registered_and_picked_by_name_in_the_yaml():
    assert ClassFactory.get_cls(ClassType.HEM, "Coverage") is CoverageSelector
    config = load_algorithm_config(
        "basemodel:\n  name: FPN\nhard_example_mining:\n  name: Coverage\n"
        "  hyperparameters:\n    novel_share: 0.3\n    score_miner: CrossEntropy\n"
    )
    assert config.hard_example_mining.name == "Coverage"
    assert config.hard_example_mining.hyperparameters["novel_share"] == 0.3


def test_bad_hyperparameters_name_the_field():
    with pytest.raises(ConfigError, match="score_miner"):
        CoverageSelector(score_miner="Random")
    with pytest.raises(ConfigError, match="novel_share"):
        CoverageSelector(novel_share=1.5)


def test_quota_of_novel_non_empty_frames_by_diversity_rest_by_score(pool):
    selector = CoverageSelector(novel_share=0.5, score_miner="Threshold")
    assert selector.novel_indices(pool) == [4, 5, 6]  # 7, 8 look empty
    chosen = selector.select(pool, 4, seed=0)
    assert len(chosen) == 4 and len(set(chosen)) == 4
    novel_part, score_part = chosen[:2], chosen[2:]
    # Two novel frames from distinct scenes: never the near-duplicate pair 4 and 6 together.
    assert set(novel_part) in ({4, 5}, {5, 6})
    # The rest: Threshold's two hardest frames among those left (scores 0.35, 0.40).
    assert score_part == [0, 1]
    assert not {7, 8} & set(chosen)


def test_a_blind_share_of_the_quota_goes_to_novel_frames_that_look_empty(pool):
    """A day-trained model finds nothing at night: such frames may still hold objects."""
    selector = CoverageSelector(novel_share=1.0, blind_share=0.5, score_miner="Threshold")
    assert selector.novel_indices(pool, empty=True) == [7, 8]
    chosen = selector.select(pool, 4, seed=0)
    assert set(chosen[:2]) in ({4, 5}, {5, 6}) and set(chosen[2:]) == {7, 8}
    # Fewer blind frames than their share: the score miner fills the rest.
    chosen = CoverageSelector(novel_share=1.0, blind_share=1.0).select(pool, 4, seed=0)
    assert set(chosen[:2]) == {7, 8} and chosen[2:] == [0, 1]
    # Off by default: the same choice as before the option existed.
    assert CoverageSelector(novel_share=0.5).select(pool, 4, seed=0)[2:] == [0, 1]


def test_an_explore_share_of_the_budget_is_a_seeded_uniform_draw_first(pool):
    selector = CoverageSelector(novel_share=0.5, explore_share=0.5, score_miner="Threshold")
    chosen = selector.select(pool, 4, seed=3)
    assert len(chosen) == 4 and len(set(chosen)) == 4
    drawn = [int(i) for i in np.random.default_rng(5).permutation(len(pool))[:2]]
    assert chosen[:2] == drawn  # any frame may be drawn, empty-looking and familiar ones too
    # The rest as without exploration, over the frames not drawn: one novel, then by score.
    rest = chosen[2:]
    novel = [i for i in (4, 5, 6) if i not in drawn]
    assert rest[0] in novel
    ranked = rank_by_hardness([ThresholdMiner().mine(frame) for frame in pool])
    assert rest[1] == next(i for i in ranked if i not in chosen[:3])
    assert selector.select(pool, 4, seed=3) == chosen
    draws = {tuple(selector.select(pool, 4, seed=s)[:2]) for s in range(10)}
    assert len(draws) > 5  # the draw follows the seed
    # The whole budget drawn: a uniform sample, the same as the permutation's head.
    everything = CoverageSelector(explore_share=1.0).select(pool, 3, seed=0)
    assert everything == [int(i) for i in np.random.default_rng(2).permutation(len(pool))[:3]]


def test_deterministic_with_a_seed(pool):
    selector = CoverageSelector()
    runs = {tuple(selector.select(pool, 4, seed=seed)) for seed in range(20) for _ in range(2)}
    for seed in range(5):
        assert selector.select(pool, 4, seed=seed) == selector.select(pool, 4, seed=seed)
    # Different seeds may start the quota from another novel frame (4, 5 or 6).
    assert len(runs) >= 2


def test_fewer_novel_frames_than_the_quota_or_no_features_falls_back_to_the_score_miner(pool):
    selector = CoverageSelector(novel_share=1.0)
    chosen = selector.select(pool, 6, seed=1)
    assert set(chosen[:3]) == {4, 5, 6}
    assert len(chosen) == 6
    plain = [
        ImageInference(boxes=p.boxes, candidates=p.candidates, feature_shift=p.feature_shift)
        for p in pool
    ]
    assert selector.select(plain, 3) == ThresholdMiner().select(plain, 3)


def test_budget_edges(pool):
    selector = CoverageSelector()
    assert selector.select(pool, 0) == []
    assert sorted(selector.select(pool, 100)) == list(range(len(pool)))
    assert selector.select([], 3) == []
    with pytest.raises(MLInputError):
        selector.select(pool, -1)


def test_per_image_mine_is_the_score_miners():
    selector = CoverageSelector(score_miner="Threshold")
    image = ImageInference.from_boxes([[0, 0, 5, 5, 0.4, 0]])
    assert selector.mine(image) == ThresholdMiner().mine(image)


def test_farthest_point_covers_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [50, 0], [0, 50]], float)
    points = np.concatenate([c + rng.normal(size=(10, 2)) for c in centres])
    picked = farthest_point_order(points, 3, seed=4)
    assert sorted(i // 10 for i in picked) == [0, 1, 2]
    with pytest.raises(MLInputError):
        farthest_point_order(np.array([[np.nan, 0.0], [1.0, 1.0]]), 2, 0)


def row(strategy, f1, str_, seed=0, round_=1):
    return {
        "seed": seed,
        "strategy": strategy,
        "round": round_,
        "labels": 4,
        "edge_f1": f1,
        "edge_mAP": f1 / 2,
        "edge_AP50": f1,
        "samples_transfer_ratio": str_,
        "forgetting": 0.0,
    }


def test_leaderboard_ranks_by_f1_then_str_and_reports_gain_per_seed():
    rows = [
        row("Random", 0.5, 0.1, seed=0),
        row("Random", 0.4, 0.1, seed=1),
        row("All", 0.7, 0.9, seed=0),
        row("All", 0.7, 0.9, seed=1),
        row("Coverage", 0.7, 0.1, seed=0),
        row("Coverage", 0.7, 0.1, seed=1),
        row("Threshold", 0.6, 0.1, seed=0),
        row("Threshold", 0.3, 0.1, seed=1),
        row("Threshold", 0.9, 0.1, seed=0, round_=0),  # earlier rounds do not rank
    ]
    board = leaderboard(rows)
    assert [e["strategy"] for e in board] == ["Coverage", "All", "Random", "Threshold"]
    assert [e["rank"] for e in board] == [1, 2, 3, 4]
    coverage = board[0]
    assert coverage["f1"] == pytest.approx(0.7)
    assert coverage["f1_gain_by_seed"] == {"0": pytest.approx(20.0), "1": pytest.approx(30.0)}
    assert board[3]["f1_gain_by_seed"] == {"0": pytest.approx(10.0), "1": pytest.approx(-10.0)}
