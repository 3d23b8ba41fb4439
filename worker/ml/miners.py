"""Hard-example miners.

Each miner takes one image's inference (``ImageInference``, or a plain list of
``[x1, y1, x2, y2, score, class_id]`` boxes as in Sedna) and returns a ``MiningResult`` with the
yes/no verdict and a hardness score in [0, 1], so a labeling queue can be ordered by hardness.

Sedna's four miners keep their semantics and defaults (formulas in docs/ml.md). ``MissedObject`` is
ours: it targets the blind spot of IBT/Threshold, which never flag an image with no confident
detection although missed objects are exactly what the model must learn.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

from worker.ml.boxes import iou_matrix
from worker.ml.data import ImageInference
from worker.ml.errors import ConfigError, MLInputError
from worker.ml.params import Param, validate_params
from worker.ml.registry import ClassFactory, ClassType


@dataclass(frozen=True)
class MiningResult:
    is_hard: bool
    hardness: float  # in [0, 1]; higher = more worth labeling


def _as_inference(inference) -> ImageInference:
    if isinstance(inference, ImageInference):
        result = inference
    elif inference is None:
        result = ImageInference.from_boxes([])
    else:
        try:
            result = ImageInference.from_boxes(inference)
        except ValueError as exc:
            raise MLInputError(
                f"miner input must be boxes [x1,y1,x2,y2,score,class]: {exc}"
            ) from exc
    scores = result.boxes[:, 4] if len(result.boxes) else np.zeros(0)
    if not np.all(np.isfinite(result.boxes)):
        raise MLInputError("miner input contains NaN or infinity")
    if np.any(scores < 0) or np.any(scores > 1):
        raise MLInputError("box scores must lie in [0, 1]")
    return result


class BaseMiner:
    """Common constructor: validates hyperparameters against ``HYPERPARAMETERS``."""

    HYPERPARAMETERS: tuple[Param, ...] = ()

    def __init__(self, **kwargs):
        self.params = validate_params(self.HYPERPARAMETERS, kwargs, type(self).__name__)
        for name, value in self.params.items():
            setattr(self, name, value)

    def mine(self, inference) -> MiningResult:
        raise NotImplementedError

    def __call__(self, inference=None) -> bool:
        """Sedna's call convention: returns only whether the image is hard."""
        return self.mine(inference).is_hard

    # A per-image miner needs no features; batch selectors (worker/ml/selectors.py) do.
    needs_features = False

    def select(self, inferences: list, k: int, seed: int = 0) -> list[int]:
        """Batch interface: indices of at most ``k`` images of the pool to label, best first.

        A per-image miner ranks by its own verdict and hardness (``rank_by_hardness``); batch
        selectors override this to look at the pool as a whole. ``seed`` makes a selector that
        draws anything reproducible; a score ranking ignores it.
        """
        if k < 0:
            raise MLInputError(f"k must be >= 0, got {k}")
        return rank_by_hardness([self.mine(inference) for inference in inferences])[:k]


def _unit(name: str, default: float, help_text: str) -> Param:
    return Param(name, float, default, minimum=0.0, maximum=1.0, help=help_text)


@ClassFactory.register(ClassType.HEM, alias="IBT")
class IBTMiner(BaseMiner):
    """Image-box threshold: hard when the share of low-score boxes is >= 1 - threshold_img."""

    HYPERPARAMETERS = (
        _unit("threshold_img", 0.5, "image is hard when low-score share >= 1 - threshold_img"),
        _unit("threshold_box", 0.5, "a box with score <= threshold_box is low-score"),
    )

    def mine(self, inference) -> MiningResult:
        boxes = _as_inference(inference).boxes
        if len(boxes) == 0:
            # Sedna's semantics: no boxes, not hard (MissedObject covers this case).
            return MiningResult(False, 0.0)
        low_share = float(np.mean(boxes[:, 4] <= self.threshold_box))
        return MiningResult(low_share >= 1.0 - self.threshold_img, low_share)


@ClassFactory.register(ClassType.HEM, alias="Threshold")
class ThresholdMiner(BaseMiner):
    """Hard when the mean box score is below ``threshold``; hardness = 1 - mean score."""

    HYPERPARAMETERS = (_unit("threshold", 0.5, "hard when the mean box score < threshold"),)

    def mine(self, inference) -> MiningResult:
        boxes = _as_inference(inference).boxes
        if len(boxes) == 0:
            return MiningResult(False, 0.0)
        mean_score = float(np.mean(boxes[:, 4]))
        return MiningResult(mean_score < self.threshold, 1.0 - mean_score)


def _normalised_entropy_confidence(probabilities: np.ndarray) -> float:
    """Sedna's confidence = 1 + sum(p ln p) / ln K, for one distribution over K classes."""
    k = len(probabilities)
    if k < 2:
        return 1.0
    p = probabilities / max(float(probabilities.sum()), 1e-12)
    p = p[p > 0]
    return float(1.0 + np.sum(p * np.log(p)) / math.log(k))


@ClassFactory.register(ClassType.HEM, alias="CrossEntropy")
class CrossEntropyMiner(BaseMiner):
    """Hard when the least confident box's class distribution has confidence < threshold.

    Accepts either an ``ImageInference`` with ``class_probs`` (one row per box) or, like Sedna, a
    single flat list of class probabilities.
    """

    HYPERPARAMETERS = (
        _unit("threshold_cross_entropy", 0.5, "hard when 1 + sum(p ln p)/ln K < threshold"),
    )

    def mine(self, inference) -> MiningResult:
        if isinstance(inference, (list, tuple, np.ndarray)) and np.asarray(inference).ndim == 1:
            rows = np.asarray(inference, dtype=np.float64)[None, :]
        else:
            inference = _as_inference(inference)
            if inference.class_probs is None or len(inference.class_probs) == 0:
                return MiningResult(False, 0.0)
            rows = np.asarray(inference.class_probs, dtype=np.float64)
        if rows.size == 0:
            return MiningResult(False, 0.0)
        if not np.all(np.isfinite(rows)) or np.any(rows < 0) or np.any(rows > 1):
            raise MLInputError("class probabilities must be finite and lie in [0, 1]")
        confidence = min(_normalised_entropy_confidence(row) for row in rows)
        confidence = min(max(confidence, 0.0), 1.0)
        return MiningResult(confidence < self.threshold_cross_entropy, 1.0 - confidence)


@ClassFactory.register(ClassType.HEM, alias="Random")
class RandomMiner(BaseMiner):
    """Hard with probability ``random_ratio`` (a baseline); seeded for reproducible benchmarks."""

    HYPERPARAMETERS = (
        _unit("random_ratio", 0.3, "share of images flagged hard"),
        Param("seed", int, 0, help="seed of the random stream"),
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._random = random.Random(self.seed)

    def mine(self, inference=None) -> MiningResult:
        draw = self._random.random()
        return MiningResult(draw < self.random_ratio, 1.0 - draw)


@ClassFactory.register(ClassType.HEM, alias="CloudOnly")
class CloudOnlyMiner(BaseMiner):
    """Every image is hard (send everything to the cloud)."""

    def mine(self, inference=None) -> MiningResult:
        return MiningResult(True, 1.0)


@ClassFactory.register(ClassType.HEM, alias="EdgeOnly")
class EdgeOnlyMiner(BaseMiner):
    """No image is hard (never send anything)."""

    def mine(self, inference=None) -> MiningResult:
        return MiningResult(False, 0.0)


def _unmatched_share(boxes_a: np.ndarray, boxes_b: np.ndarray, iou_threshold: float) -> float:
    """1 - Dice overlap of two box sets under greedy same-class IoU matching (0 when both empty)."""
    if len(boxes_a) == 0 and len(boxes_b) == 0:
        return 0.0
    if len(boxes_a) == 0 or len(boxes_b) == 0:
        return 1.0
    overlaps = iou_matrix(boxes_a[:, :4], boxes_b[:, :4])
    overlaps[boxes_a[:, 5][:, None] != boxes_b[:, 5][None, :]] = 0.0
    matched = 0
    while overlaps.size and overlaps.max() >= iou_threshold:
        row, column = np.unravel_index(np.argmax(overlaps), overlaps.shape)
        overlaps[row, :] = 0.0
        overlaps[:, column] = 0.0
        matched += 1
    return 1.0 - 2.0 * matched / (len(boxes_a) + len(boxes_b))


@ClassFactory.register(ClassType.HEM, alias="MissedObject")
class MissedObjectMiner(BaseMiner):
    """Flags images where objects were probably missed or detections are unstable.

    band evidence = 1 - prod(1 - s_c) over "orphan" candidates c: boxes with score in
    [low_score, high_score) that overlap no confident box (score >= high_score) by IoU >= 0.5.
    Read as the chance that at least one orphan is a real object if scores were calibrated.
    flip evidence = 1 - Dice(confident boxes on the image, confident boxes on its mirror image),
    only when the caller supplied ``flipped_boxes``.
    novelty evidence = the Novelty miner's hardness, 1 - 1/feature_shift, when ``use_novelty`` and
    the inference has a feature shift: in a scene unlike its training images the model's silence
    says little, so objects may be missed there even without any candidate.
    hardness = max(band, flip, novelty evidence); hard when hardness >= threshold.
    """

    HYPERPARAMETERS = (
        _unit("low_score", 0.1, "lower end of the uncertain score band"),
        _unit("high_score", 0.5, "scores at or above this count as confident detections"),
        _unit("threshold", 0.5, "hard when hardness >= threshold"),
        _unit("match_iou", 0.5, "IoU to consider two boxes the same object"),
        Param("use_novelty", bool, False, help="count an unfamiliar scene as evidence of misses"),
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.low_score >= self.high_score:
            raise ConfigError("low_score must be below high_score", "MissedObjectMiner.low_score")

    def mine(self, inference) -> MiningResult:
        inference = _as_inference(inference)
        pool = inference.candidates if inference.candidates is not None else inference.boxes
        pool = np.asarray(pool, dtype=np.float32).reshape(-1, 6)
        confident = pool[pool[:, 4] >= self.high_score]
        uncertain = pool[(pool[:, 4] >= self.low_score) & (pool[:, 4] < self.high_score)]
        if len(uncertain) and len(confident):
            covered = iou_matrix(uncertain[:, :4], confident[:, :4]).max(axis=1) >= self.match_iou
            uncertain = uncertain[~covered]
        band_evidence = float(1.0 - np.prod(1.0 - uncertain[:, 4])) if len(uncertain) else 0.0
        flip_evidence = 0.0
        if inference.flipped_boxes is not None:
            flipped = np.asarray(inference.flipped_boxes, dtype=np.float32).reshape(-1, 6)
            flipped = flipped[flipped[:, 4] >= self.high_score]
            flip_evidence = _unmatched_share(confident, flipped, self.match_iou)
        novelty_evidence = 0.0
        if self.use_novelty and inference.feature_shift is not None:
            novelty_evidence = _novelty(inference.feature_shift)
        hardness = min(max(band_evidence, flip_evidence, novelty_evidence), 1.0)
        return MiningResult(hardness >= self.threshold, hardness)


@ClassFactory.register(ClassType.HEM, alias="Novelty")
class NoveltyMiner(BaseMiner):
    """Flags images unlike anything the model was trained on: a new scene, light or camera mode.

    Box scores cannot tell these apart: in an unfamiliar scene the model often detects nothing at
    all, so IBT, Threshold and the score band stay silent. Instead it reads the image's feature
    shift ``d`` (``ImageInference.feature_shift``): the mean squared z-score of the backbone's
    pooled features against the training images' statistics, about 1 for a familiar image.
    hardness = max(0, 1 - 1/d): 0.5 when the image's features spread twice as far from the
    training mean as the training images' do. Hard when hardness >= threshold. An inference
    without a feature shift (plain boxes, a model archived without statistics) is not hard.
    """

    HYPERPARAMETERS = (_unit("threshold", 0.5, "hard when 1 - 1/feature_shift >= threshold"),)

    def mine(self, inference) -> MiningResult:
        inference = _as_inference(inference)
        if inference.feature_shift is None:
            return MiningResult(False, 0.0)
        hardness = _novelty(inference.feature_shift)
        return MiningResult(hardness >= self.threshold, hardness)


def _novelty(feature_shift: float) -> float:
    """1 - 1/feature_shift, floored at 0: how much farther than the training images it lies."""
    if not math.isfinite(feature_shift) or feature_shift < 0:
        raise MLInputError(f"feature_shift must be a finite number >= 0, got {feature_shift}")
    return max(0.0, 1.0 - 1.0 / feature_shift) if feature_shift > 0 else 0.0


def rank_by_hardness(results: list[MiningResult]) -> list[int]:
    """Indices ordered for a labeling queue: hard images first, then by descending hardness."""
    return sorted(range(len(results)), key=lambda i: (not results[i].is_hard, -results[i].hardness))
