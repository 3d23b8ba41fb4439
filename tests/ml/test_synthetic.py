import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from worker.ml.data import DetectionData
from worker.ml.errors import MLInputError
from worker.ml.synthetic import (
    CLASS_NAMES,
    generate_dataset,
    generate_image,
    generate_samples,
    is_night,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_same_seed_same_images_and_boxes():
    a = generate_samples(4, "edge", seed=3, image_size=96)
    b = generate_samples(4, "edge", seed=3, image_size=96)
    for image_a, image_b, labels_a, labels_b in zip(a.x, b.x, a.y, b.y, strict=True):
        assert np.array_equal(image_a, image_b)
        assert np.array_equal(labels_a, labels_b)
    other = generate_samples(4, "edge", seed=4, image_size=96)
    assert not all(np.array_equal(p, q) for p, q in zip(a.x, other.x, strict=True))


def test_image_i_does_not_depend_on_n_images():
    image, labels = generate_image(5, "initial", seed=2, image_size=64)
    later = generate_samples(3, "initial", seed=2, image_size=64, start=4)
    assert np.array_equal(later.x[1], image) and np.array_equal(later.y[1], labels)


def test_images_and_boxes_are_valid_and_domains_differ():
    initial = generate_samples(30, "initial", seed=0, image_size=96)
    edge = generate_samples(30, "edge", seed=0, image_size=96)
    for data in (initial, edge):
        assert data.class_names == CLASS_NAMES
        for image, labels in zip(data.x, data.y, strict=True):
            assert image.shape == (96, 96, 3) and image.dtype == np.uint8
            assert len(labels) >= 1
            assert np.all(labels[:, :2] >= 0) and np.all(labels[:, 2:4] <= 96)
            assert set(labels[:, 4].astype(int)) <= {0, 1, 2}
    # The edge domain is darker and its objects are smaller.
    assert np.mean([x.mean() for x in edge.x]) < 0.8 * np.mean([x.mean() for x in initial.x])

    def mean_side(data):
        return np.mean([np.sqrt((y[:, 2] - y[:, 0]) * (y[:, 3] - y[:, 1])).mean() for y in data.y])

    assert mean_side(edge) < 0.85 * mean_side(initial)


def test_dataset_on_disk_round_trips_through_coco(tmp_path):
    out = tmp_path / "edge_set"
    annotation_file = generate_dataset(out, 5, domain="edge", seed=1, image_size=64)
    coco = json.loads(annotation_file.read_text())
    assert len(coco["images"]) == 5 and [c["name"] for c in coco["categories"]] == CLASS_NAMES
    loaded = DetectionData.from_coco(annotation_file)
    memory = generate_samples(5, "edge", seed=1, image_size=64)
    for a, b, la, lb in zip(loaded.x, memory.x, loaded.y, memory.y, strict=True):
        assert np.array_equal(a, b)  # PNG is lossless
        assert np.allclose(la, lb, atol=0.02)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
    with pytest.raises(MLInputError, match="not an empty directory"):
        generate_dataset(out, 2)


def test_cli_writes_a_dataset(tmp_path):
    out = tmp_path / "cli"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker.ml.synthetic",
            str(out),
            "--n-images",
            "3",
            "--domain",
            "initial",
            "--seed",
            "9",
            "--image-size",
            "64",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip().endswith("annotations.json")
    assert len(list((out / "images").glob("*.png"))) == 3
    bad = subprocess.run(
        [sys.executable, "-m", "worker.ml.synthetic", str(tmp_path / "x"), "--shift", "3"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "shift" in bad.stderr


def test_empty_share_empties_frames_without_changing_which():
    dense = generate_samples(40, "edge", seed=5, image_size=64)
    sparse = generate_samples(40, "edge", seed=5, image_size=64, empty_share=0.6)
    empty = [i for i, labels in enumerate(sparse.y) if len(labels) == 0]
    assert 12 <= len(empty) <= 36  # about 60 % of 40
    for i in set(range(40)) - set(empty):
        assert np.array_equal(sparse.x[i], dense.x[i]) and np.array_equal(sparse.y[i], dense.y[i])
    # Which frames are empty depends on the index only, not on how the stream is cut.
    later = generate_samples(10, "edge", seed=5, image_size=64, start=30, empty_share=0.6)
    assert [i + 30 for i, y in enumerate(later.y) if len(y) == 0] == [i for i in empty if i >= 30]
    everything_empty = generate_samples(5, "edge", seed=5, image_size=64, empty_share=1.0)
    assert all(len(labels) == 0 for labels in everything_empty.y)


def test_night_share_turns_edge_frames_grey_and_leaves_the_others_alone():
    day = generate_samples(30, "edge", seed=6, image_size=64)
    mixed = generate_samples(30, "edge", seed=6, image_size=64, night_share=0.4)
    night = [i for i in range(30) if not np.array_equal(day.x[i], mixed.x[i])]
    assert 4 <= len(night) <= 20  # about 40 % of 30
    for i in range(30):
        assert np.array_equal(day.y[i], mixed.y[i])  # the same objects either way

    def colourfulness(image):  # mean spread between the channels of a pixel
        return float(np.mean(image.max(axis=-1).astype(int) - image.min(axis=-1)))

    assert max(colourfulness(mixed.x[i]) for i in night) < 0.5 * np.median(
        [colourfulness(image) for image in day.x]
    )
    # is_night names the same frames, for benchmarks that count what a strategy picked.
    assert [i for i in range(30) if is_night(i, "edge", 6, 0.4)] == night
    assert not is_night(night[0], "edge", 6, 0.0) and not is_night(night[0], "initial", 6, 0.4)
    # Night mode is an edge-camera condition: the initial domain ignores it.
    initial = generate_samples(5, "initial", seed=6, image_size=64)
    also_initial = generate_samples(5, "initial", seed=6, image_size=64, night_share=1.0)
    assert all(np.array_equal(a, b) for a, b in zip(initial.x, also_initial.x, strict=True))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"domain": "night"},
        {"image_size": 8},
        {"shift": -1.0},
        {"empty_share": 1.5},
        {"night_share": -0.1},
    ],
)
def test_bad_generator_arguments(kwargs):
    with pytest.raises(MLInputError):
        generate_image(0, **{"domain": "edge", **kwargs})
    with pytest.raises(MLInputError):
        generate_samples(0)
