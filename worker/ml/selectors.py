"""Batch selectors: choose ``k`` images of a pool to label, looking at the pool as a whole.

A per-image miner (worker/ml/miners.py) scores each image alone, so with a small budget it spends
every label on one kind of difficulty: the score miners never pick a night frame (the model is
silent there), and Novelty alone wastes the budget on empty night frames (unfamiliar, but nothing to
learn). ``Coverage`` splits the budget: a quota of novel, non-empty frames spread over the feature
space (farthest-point / k-center over the pooled backbone features the FPN already computes), the
rest by a score miner's ranking. Its ``mine`` is that score miner's per-image verdict, so it can
stand in the YAML wherever a miner does (the intake queue ranks image by image).
"""

from __future__ import annotations

import numpy as np

from worker.ml.data import ImageInference
from worker.ml.errors import ConfigError, MLInputError
from worker.ml.miners import BaseMiner, MiningResult, _as_inference, _novelty, rank_by_hardness
from worker.ml.params import Param
from worker.ml.registry import ClassFactory, ClassType

# Score miners Coverage may delegate to (each with its own defaults).
SCORE_MINERS = ("Threshold", "IBT", "CrossEntropy", "MissedObject")


@ClassFactory.register(ClassType.HEM, alias="Coverage")
class CoverageSelector(BaseMiner):
    """Uncertainty plus coverage, for a batch.

    For a pool and a budget k:
    1. novel frames: feature shift known, novelty ``1 - 1/shift >= novelty_threshold``, and not
       looking empty (some candidate box scores at least ``empty_score``);
    2. ``round(novel_share * k)`` of them are chosen by farthest-point sampling over their pooled
       features (standardised over the pool), starting from a seeded random novel frame: each next
       pick is the frame farthest from every frame already picked, so a quota covers distinct
       scenes instead of near-duplicates;
    3. the rest of the budget goes to the other frames in ``score_miner``'s ranking.
    Fewer novel frames than the quota: the score miner fills the gap. Without features (a model
    archived without statistics, or plain boxes) it is the score miner.

    ``blind_share`` keeps that share of the quota for novel frames that *look* empty, also by
    farthest-point sampling. A model trained on day frames finds no candidate at all in night
    frames, objects or not, so "looks empty" drops exactly the sub-domain the quota is for; the
    benchmark showed it (docs/benchmarks.md, issue 15, second session). Some of those frames are
    truly empty: the share is a bet, off (0) by default.

    ``explore_share`` takes that share of the whole budget first, as a seeded uniform draw over
    the pool, before any model-based choice: the random baseline's strength (it labels night
    frames in proportion, because it ignores the model) kept for part of the budget; the budget
    left is chosen as above (``novel_share`` of it for the quota). Off (0) by default; the
    benchmark measures it.
    """

    HYPERPARAMETERS = (
        Param(
            "score_miner",
            str,
            "Threshold",
            choices=SCORE_MINERS,
            help="miner (with its defaults) that ranks the non-quota part of the budget",
        ),
        Param(
            "novel_share",
            float,
            0.5,
            minimum=0.0,
            maximum=1.0,
            help="share of the batch budget reserved for novel, non-empty frames",
        ),
        Param(
            "novelty_threshold",
            float,
            0.5,
            minimum=0.0,
            maximum=1.0,
            help="a frame is novel when 1 - 1/feature_shift >= this",
        ),
        Param(
            "empty_score",
            float,
            0.1,
            minimum=0.0,
            maximum=1.0,
            help="a frame whose best candidate box scores below this looks empty",
        ),
        Param(
            "blind_share",
            float,
            0.0,
            minimum=0.0,
            maximum=1.0,
            help="share of the quota for novel frames that look empty (the model may be blind "
            "there: a day-trained model at night)",
        ),
        Param(
            "explore_share",
            float,
            0.0,
            minimum=0.0,
            maximum=1.0,
            help="share of the batch budget drawn uniformly at random (seeded) before any "
            "model-based choice",
        ),
        Param("seed", int, 0, help="seed of the first farthest-point pick and of the draw"),
    )

    needs_features = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        try:
            self.scorer = ClassFactory.get_cls(ClassType.HEM, self.score_miner)()
        except Exception as exc:  # a registry problem is a configuration problem here
            raise ConfigError(str(exc), "Coverage.score_miner") from exc

    def mine(self, inference) -> MiningResult:
        """Per image (the intake queue): the score miner's verdict."""
        return self.scorer.mine(inference)

    def looks_empty(self, inference: ImageInference) -> bool:
        pool = inference.candidates if inference.candidates is not None else inference.boxes
        pool = np.asarray(pool, dtype=np.float32).reshape(-1, 6)
        return len(pool) == 0 or float(pool[:, 4].max()) < self.empty_score

    def novel_indices(self, inferences: list[ImageInference], *, empty: bool = False) -> list[int]:
        """Novel frames that show a candidate (``empty``: those that look empty)."""
        return [
            index
            for index, inference in enumerate(inferences)
            if inference.features is not None
            and inference.feature_shift is not None
            and _novelty(inference.feature_shift) >= self.novelty_threshold
            and self.looks_empty(inference) == empty
        ]

    def _diverse(self, inferences, indices: list[int], count: int, seed: int) -> list[int]:
        features = (
            np.stack([np.asarray(inferences[i].features, np.float64) for i in indices])
            if indices
            else np.zeros((0, 1))
        )
        return [indices[i] for i in farthest_point_order(features, count, seed)]

    def select(self, inferences: list, k: int, seed: int | None = None) -> list[int]:
        if k < 0:
            raise MLInputError(f"k must be >= 0, got {k}")
        inferences = [_as_inference(inference) for inference in inferences]
        k = min(k, len(inferences))
        seed = self.seed if seed is None else seed
        explore_quota = int(round(self.explore_share * k))
        picked = [
            int(index)
            for index in np.random.default_rng(seed + 2).permutation(len(inferences))[
                :explore_quota
            ]
        ]
        explored = set(picked)
        quota = int(round(self.novel_share * (k - len(picked))))  # of the budget left
        blind_quota = int(round(self.blind_share * quota))
        novel = [index for index in self.novel_indices(inferences) if index not in explored]
        picked += self._diverse(inferences, novel, min(quota - blind_quota, len(novel)), seed)
        if blind_quota:
            blind = [
                index
                for index in self.novel_indices(inferences, empty=True)
                if index not in explored
            ]
            picked += self._diverse(inferences, blind, min(blind_quota, len(blind)), seed + 1)
        taken = set(picked)
        ranked = rank_by_hardness([self.scorer.mine(inference) for inference in inferences])
        picked += [index for index in ranked if index not in taken][: k - len(picked)]
        return picked


def farthest_point_order(features: np.ndarray, k: int, seed: int) -> list[int]:
    """``k`` row indices of ``features`` by greedy k-center: a seeded random first row, then each
    time the row farthest (Euclidean, features standardised per dimension) from all rows picked."""
    n = len(features)
    k = min(k, n)
    if k <= 0:
        return []
    if features.ndim != 2 or not np.all(np.isfinite(features)):
        raise MLInputError("features must be a finite (N, D) array")
    std = features.std(axis=0)
    scaled = (features - features.mean(axis=0)) / np.where(std > 1e-12, std, 1.0)
    first = int(np.random.default_rng(seed).integers(n))
    picked = [first]
    distance = np.linalg.norm(scaled - scaled[first], axis=1)
    while len(picked) < k:
        distance[picked] = -1.0
        # argmax takes the lowest index among ties: deterministic for equal distances.
        nxt = int(np.argmax(distance))
        picked.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(scaled - scaled[nxt], axis=1))
    return picked
