import json
import zipfile

import numpy as np
import pytest

from worker.ml.errors import MLInputError, ModelArchiveError
from worker.ml.fpn import FPNModel
from worker.ml.litert import EdgeRunner


@pytest.fixture(scope="module")
def exported(tiny_archive, tmp_path_factory):
    model = FPNModel()
    model.load(tiny_archive)
    path = model.export_litert(tmp_path_factory.mktemp("edge") / "detector.tflite")
    return model, path


def test_litert_and_keras_agree(exported, tiny_data):
    model, path = exported
    runner = EdgeRunner(path)
    batch = np.stack(tiny_data.x)
    keras_raw = model.raw_outputs(batch)
    litert_raw = runner.raw_outputs(batch)
    assert litert_raw.shape == keras_raw.shape
    assert np.allclose(litert_raw, keras_raw, atol=1e-3)
    # Final detections: same boxes after the shared numpy decoder, batch 1 and a full batch.
    keras_boxes = model.predict_arrays(tiny_data, score_threshold=0.05)
    for batch_images in (tiny_data.x[:1], tiny_data.x):
        edge_boxes = runner.predict(batch_images, score_threshold=0.05)
        for expected, actual in zip(keras_boxes[: len(batch_images)], edge_boxes, strict=True):
            assert actual.shape == expected.shape
            assert np.allclose(actual, expected, atol=1e-2)


def test_runner_rejects_bad_files_and_input(exported, tmp_path):
    _, path = exported
    with pytest.raises(ModelArchiveError):
        EdgeRunner(tmp_path / "missing.tflite")
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"garbage")
    with pytest.raises(ModelArchiveError):
        EdgeRunner(broken, config=str(path) + ".json")
    runner = EdgeRunner(path)
    with pytest.raises(MLInputError):
        runner.predict([])
    with pytest.raises(MLInputError):
        runner.predict([np.zeros((64, 64, 3), np.float64)])


def test_archive_can_carry_the_litert_model(exported, tmp_path):
    model, _ = exported
    path = model.save(tmp_path / "with_edge.zip", include_litert=True)
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert "model.tflite" in manifest["sha256"]
        (tmp_path / "edge.tflite").write_bytes(archive.read("model.tflite"))
        config = json.loads(archive.read("config.json"))
    FPNModel().load(path)  # the extra member is verified like the others
    images = [np.full((64, 64, 3), 120, np.uint8)]
    assert EdgeRunner(tmp_path / "edge.tflite", config=config).predict(images)[0].shape[1] == 6
