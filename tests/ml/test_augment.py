"""Night-mode augmentation: which images change, how, and that the FPN applies it in training."""

import numpy as np

from tests.ml.conftest import TINY_FPN
from worker.ml.augment import night_look
from worker.ml.fpn import FPNModel


def colour_images(n=40, size=16):
    return np.random.default_rng(0).integers(60, 255, (n, size, size, 3)).astype(np.uint8)


def test_share_zero_leaves_images_and_share_one_changes_all():
    images = colour_images()
    assert np.array_equal(night_look(images, 0.0, np.random.default_rng(1)), images)
    night = night_look(images, 1.0, np.random.default_rng(1))
    assert all(not np.array_equal(night[i], images[i]) for i in range(len(images)))


def test_changed_images_are_grayscale_darker_uint8_and_the_input_is_untouched():
    images = colour_images()
    before = images.copy()
    night = night_look(images, 1.0, np.random.default_rng(2))
    assert np.array_equal(images, before)
    assert night.dtype == np.uint8 and night.shape == images.shape
    assert np.array_equal(night[..., 0], night[..., 1])
    assert np.array_equal(night[..., 1], night[..., 2])
    assert night.astype(float).mean() < images.astype(float).mean() * 0.95


def test_about_the_share_of_images_change_and_the_seed_fixes_which():
    images = colour_images(n=400, size=4)
    night = night_look(images, 0.3, np.random.default_rng(3))
    changed = [not np.array_equal(night[i], images[i]) for i in range(len(images))]
    assert 0.2 < np.mean(changed) < 0.4
    assert np.array_equal(night, night_look(images, 0.3, np.random.default_rng(3)))


def is_grayscale(image):
    return np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(
        image[..., 1], image[..., 2]
    )


def test_fpn_batches_get_the_night_look_only_when_asked(tiny_data):
    model = FPNModel(**TINY_FPN)
    for share, grayscale_expected in ((0.0, False), (1.0, True)):
        params = {**model.params, "augment": False, "night_augment": share}
        next_batch = model._batch_sampler(tiny_data, None, params, np.random.default_rng(0))
        images, _, _ = next_batch()
        assert all(is_grayscale(image) == grayscale_expected for image in images)


def test_replayed_images_keep_their_colour(tiny_data):
    model = FPNModel(**TINY_FPN)  # batch 8: 4 new images, then 4 replayed ones
    params = {**model.params, "night_augment": 1.0, "replay_ratio": 0.5}
    next_batch = model._batch_sampler(tiny_data, tiny_data, params, np.random.default_rng(0))
    images, _, _ = next_batch()
    assert [is_grayscale(image) for image in images] == [True] * 4 + [False] * 4


def test_initial_night_augment_applies_to_the_first_training_only(tiny_data, night_shares_seen):
    seen = night_shares_seen
    model = FPNModel(
        **{**TINY_FPN, "max_iteration": 1, "night_augment": 0.1, "initial_night_augment": 0.5}
    )
    model.train(tiny_data)  # no weights yet: the first training
    model.train(tiny_data)  # fine-tuning
    reloaded = FPNModel(**{**TINY_FPN, "max_iteration": 1})
    reloaded.load(model.checkpoint_path)
    reloaded.train(tiny_data)  # a loaded model is fine-tuned too, with the archive's settings
    assert seen == [0.5, 0.1, 0.1]


def test_without_initial_night_augment_the_first_training_uses_night_augment(
    tiny_data, night_shares_seen
):
    seen = night_shares_seen
    FPNModel(**{**TINY_FPN, "max_iteration": 1, "night_augment": 0.2}).train(tiny_data)
    assert seen == [0.2]
