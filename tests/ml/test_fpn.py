import json
import os
import zipfile

import numpy as np
import pytest

from tests.ml.conftest import TINY_FPN
from worker.ml.data import DetectionData
from worker.ml.errors import (
    ChecksumMismatchError,
    ConfigError,
    MLInputError,
    ModelArchiveError,
    ModelNotReadyError,
)
from worker.ml.fpn import FPNModel, sha256_of_file
from worker.ml.registry import ClassFactory, ClassType


@pytest.fixture(scope="module")
def loaded(tiny_archive):
    model = FPNModel()
    model.load(tiny_archive)
    return model


def test_registered_under_general():
    assert ClassFactory.get_cls(ClassType.GENERAL, "FPN") is FPNModel


def test_network_is_a_feature_pyramid(loaded):
    names = {layer.name for layer in loaded.model.layers}
    assert {
        "lateral3",
        "lateral4",
        "lateral5",
        "up5",
        "up4",
        "topdown3",
        "topdown4",
        "smooth3",
        "smooth4",
        "smooth5",
        "class_logits",
        "box_deltas",
    } <= names
    # One shared head applied to three pyramid levels: 6 anchors x (8² + 4² + 2²) at 64 px.
    assert loaded.model.output_shape == (None, 6 * (64 + 16 + 4), 4 + 3)
    assert len(loaded.anchors()) == 6 * 84


def test_predict_returns_boxes_in_each_images_pixels(loaded):
    images = [np.full((80, 120, 3), 90, np.uint8), np.full((64, 64, 3), 200, np.uint8)]
    floor = loaded.params["candidate_threshold"]
    loaded.params["candidate_threshold"] = 0.0  # keep even the untrained model's weak boxes
    try:
        predictions = loaded.predict(images, score_threshold=0.0)
    finally:
        loaded.params["candidate_threshold"] = floor
    assert len(predictions) == 2
    for image, boxes in zip(images, predictions, strict=True):
        assert isinstance(boxes, list)
        for x1, y1, x2, y2, score, class_id in boxes:
            assert 0 <= x1 <= x2 <= image.shape[1] and 0 <= y1 <= y2 <= image.shape[0]
            assert 0 <= score <= 1 and class_id in (0, 1, 2)
    assert len(predictions[0]) > 0


def test_save_load_round_trip_gives_identical_outputs(loaded, tiny_data, tmp_path):
    path = loaded.save(tmp_path / "again")  # a directory gets model.zip inside, as the seed
    assert path.endswith(os.path.join("again", "model.zip"))
    assert not [p for p in os.listdir(tmp_path / "again") if p != "model.zip"]  # no temp files
    reloaded = FPNModel()
    reloaded.load(path, expected_sha256=sha256_of_file(path))
    batch = np.stack(tiny_data.x)
    assert np.array_equal(loaded.raw_outputs(batch), reloaded.raw_outputs(batch))
    assert loaded.predict(tiny_data) == reloaded.predict(tiny_data)
    assert reloaded.params == loaded.params


def test_load_keeps_explicit_hyperparameters_but_not_architecture(tiny_archive):
    model = FPNModel(score_threshold=0.2, max_iteration=7, input_size=320)
    model.load(tiny_archive)
    assert model.params["score_threshold"] == 0.2 and model.params["max_iteration"] == 7
    assert model.input_size == 64  # from the archive
    plain = FPNModel()
    plain.load(tiny_archive)
    assert plain.params["seed"] == TINY_FPN["seed"] and plain.params["max_iteration"] == 6


def test_few_training_steps_reduce_the_loss(tiny_data):
    model = FPNModel(**TINY_FPN, max_iteration=1)
    model.train(tiny_data, learning_rate=1e-7)  # builds the network, practically unchanged
    before = model.loss(tiny_data)
    reports = []
    model.train(tiny_data, max_iteration=40, progress=lambda *report: reports.append(report))
    after = model.loss(tiny_data)
    assert after < 0.6 * before
    assert reports[-1][:2] == (40, 40)
    assert {"loss", "class_loss", "box_loss", "images_per_second", "epoch"} <= set(reports[-1][2])


def test_seed_fixes_initialisation():
    first, second = FPNModel(**TINY_FPN), FPNModel(**TINY_FPN)
    first.build()
    second.build()
    for a, b in zip(first.model.get_weights(), second.model.get_weights(), strict=True):
        assert np.array_equal(a, b)
    other = FPNModel(**{**TINY_FPN, "seed": 4})
    other.build()
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(first.model.get_weights(), other.model.get_weights(), strict=True)
    )


def test_incremental_fine_tune_with_replay_keeps_architecture(tiny_archive, tiny_data):
    from worker.ml.synthetic import generate_samples

    model = FPNModel()
    model.load(tiny_archive)
    edge = generate_samples(6, "edge", seed=2, image_size=64)
    checkpoint = model.train(edge, replay_data=tiny_data, replay_ratio=0.5, max_iteration=2)
    assert os.path.isfile(checkpoint) and model.input_size == 64
    with pytest.raises(ConfigError, match="architecture"):
        model.train(edge, input_size=96, max_iteration=1)


def test_freeze_batchnorm_keeps_statistics(tiny_archive, tiny_data):
    model = FPNModel()
    model.load(tiny_archive)
    batchnorm = model.model.get_layer("stage1_down_bn")
    before = np.array(batchnorm.moving_mean)
    model.train(tiny_data, max_iteration=2, freeze_batchnorm=True)
    assert np.array_equal(before, np.array(batchnorm.moving_mean))
    assert batchnorm.trainable  # restored after the call
    model.train(tiny_data, max_iteration=2)
    assert not np.array_equal(before, np.array(batchnorm.moving_mean))


def test_evaluate_returns_metrics_and_accepts_seed_metric_pair(loaded, tiny_archive, tiny_data):
    results = loaded.evaluate(tiny_data)
    assert {"mAP", "AP50", "AP75", "AR100", "precision", "recall", "f1"} <= set(results)
    assert all(0.0 <= v <= 1.0 for v in results.values())
    assert set(loaded.evaluate(tiny_data, metric="AP50")) == {"AP50"}
    counted = loaded.evaluate(tiny_data, tiny_archive, metric=("n", lambda y, p: len(p)))
    assert counted == {"n": len(tiny_data)}
    with pytest.raises(MLInputError, match="unknown metric"):
        loaded.evaluate(tiny_data, metric="accuracy")


def _rewrite_member(source, target, name, content):
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for item in original.namelist():
            copy.writestr(item, content if item == name else original.read(item))


def test_feature_shift_is_small_for_training_images_and_large_for_unfamiliar_ones(
    loaded, tiny_data, tmp_path
):
    assert loaded.feature_stats["images"] == len(tiny_data)
    familiar = [inference.feature_shift for inference in loaded.infer(tiny_data)]
    # Over its own reference images the mean squared z-score averages 1, less where the std floor
    # of near-constant features applies.
    assert 0.5 < np.mean(familiar) <= 1.0 + 1e-6
    # The tiny network has learned little, so only starkly different images stand out here
    # (tests/ml/test_training_slow.py checks edge-domain images against a trained model).
    rng = np.random.default_rng(0)
    unfamiliar = [np.zeros((64, 64, 3), np.uint8), rng.integers(0, 256, (64, 64, 3), np.uint8)]
    shifts = [inference.feature_shift for inference in loaded.infer(unfamiliar)]
    assert min(shifts) > 1.5 * np.mean(familiar)
    # The statistics travel with the archive.
    path = loaded.save(tmp_path / "again.zip")
    reloaded = FPNModel()
    reloaded.load(path)
    assert reloaded.feature_stats == loaded.feature_stats
    again = [inference.feature_shift for inference in reloaded.infer(unfamiliar)]
    assert np.allclose(again, shifts, rtol=1e-5)


def test_too_few_images_keep_no_feature_stats(tiny_data):
    model = FPNModel(**TINY_FPN)
    model.build()
    assert model.fit_feature_stats(tiny_data.x[:3]) is None and model.feature_stats is None
    assert model.infer(tiny_data.x[:1])[0].feature_shift is None
    assert model.fit_feature_stats(tiny_data.x[:8])["images"] == 8


def test_infer_returns_pooled_features_only_when_asked(loaded, tiny_data):
    plain = loaded.infer(tiny_data.x[:2])
    assert all(inference.features is None for inference in plain)
    with_features = loaded.infer(tiny_data.x[:2], with_features=True)
    dims = {inference.features.shape for inference in with_features}
    assert len(dims) == 1 and next(iter(dims))[0] == len(loaded.feature_stats["mean"])
    # The shift is computed from exactly these features.
    assert np.allclose(
        loaded.feature_shift(np.stack([i.features for i in with_features])),
        [i.feature_shift for i in with_features],
    )
    # Without statistics (a fresh model) features still come back, the shift does not.
    fresh = FPNModel(**TINY_FPN)
    fresh.build()
    bare = fresh.infer(tiny_data.x[:1], with_features=True)[0]
    assert bare.features is not None and bare.feature_shift is None


def test_archive_without_or_with_broken_feature_stats(tiny_archive, tmp_path):
    config = json.loads(zipfile.ZipFile(tiny_archive).read("config.json"))
    for stats, expected in (
        (None, None),
        ({"mean": [0.0, 1.0], "std": [1.0]}, "do not match"),
        ({"mean": [0.0], "std": [0.0]}, "positive"),
        ({"average": [0.0]}, "unreadable"),
    ):
        rewritten = tmp_path / f"stats-{expected}.zip"
        _rewrite_member(
            tiny_archive, rewritten, "config.json", json.dumps({**config, "feature_stats": stats})
        )
        _fix_manifest(rewritten)
        model = FPNModel()
        if expected is None:
            model.load(rewritten)  # an archive from before feature statistics still loads
            assert model.feature_stats is None
            assert model.infer(np.zeros((64, 64, 3), np.uint8))[0].feature_shift is None
        else:
            with pytest.raises(ModelArchiveError, match=expected):
                model.load(rewritten)


def _fix_manifest(path):
    """Re-record the sha256 of every member, as a writer of a valid archive would."""
    import hashlib

    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    manifest = json.loads(members["manifest.json"])
    manifest["sha256"] = {
        n: hashlib.sha256(data).hexdigest() for n, data in members.items() if n != "manifest.json"
    }
    members["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_corrupt_and_tampered_archives_raise(tiny_archive, tmp_path):
    truncated = tmp_path / "truncated.zip"
    with open(tiny_archive, "rb") as handle:
        truncated.write_bytes(handle.read()[:2000])
    with pytest.raises(ModelArchiveError):
        FPNModel().load(truncated)
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(ModelArchiveError, match="not a valid zip"):
        FPNModel().load(garbage)
    tampered = tmp_path / "tampered.zip"
    config = json.loads(zipfile.ZipFile(tiny_archive).read("config.json"))
    config["score_threshold"] = 0.01
    _rewrite_member(tiny_archive, tampered, "config.json", json.dumps(config))
    with pytest.raises(ChecksumMismatchError, match="config.json"):
        FPNModel().load(tampered)
    with pytest.raises(ChecksumMismatchError):
        FPNModel().load(tiny_archive, expected_sha256="0" * 64)
    with pytest.raises(ModelArchiveError, match="not found"):
        FPNModel().load(tmp_path / "missing.zip")
    missing_member = tmp_path / "no_manifest.zip"
    with zipfile.ZipFile(tiny_archive) as original, zipfile.ZipFile(missing_member, "w") as copy:
        copy.writestr("config.json", original.read("config.json"))
    with pytest.raises(ModelArchiveError, match="missing"):
        FPNModel().load(missing_member)


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        np.zeros((0, 64, 64, 3), np.uint8),
        [np.zeros((64, 64, 3), np.float32)],
        [np.zeros((64, 64), np.uint8)],
        [np.zeros((64, 64, 1), np.uint8)],
        np.zeros((64,), np.uint8),
    ],
)
def test_bad_predict_input_raises(loaded, data):
    with pytest.raises(MLInputError):
        loaded.predict(data)


def test_bad_train_input_and_unready_model(tiny_data):
    model = FPNModel(**TINY_FPN)
    with pytest.raises(ModelNotReadyError):
        model.predict(tiny_data)
    with pytest.raises(ModelNotReadyError):
        model.save("/tmp/never-written.zip")
    assert not os.path.exists("/tmp/never-written.zip")
    with pytest.raises(MLInputError):
        model.train(None)
    with pytest.raises(MLInputError):
        model.train(DetectionData(x=tiny_data.x))  # unlabeled
    wrong_class = DetectionData(x=tiny_data.x[:1], y=[np.array([[1, 1, 20, 20, 5]])])
    with pytest.raises(MLInputError, match="class id"):
        model.train(wrong_class)
    with pytest.raises(ConfigError):
        model.train(tiny_data, max_iteration=0)
