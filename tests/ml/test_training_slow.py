import numpy as np
import pytest

from worker.ml.fpn import FPNModel
from worker.ml.synthetic import generate_samples


@pytest.mark.slow
def test_training_clearly_beats_an_untrained_model():
    train = generate_samples(160, "initial", seed=21, image_size=128)
    held_out = generate_samples(40, "initial", seed=22, image_size=128)
    settings = dict(input_size=128, seed=5, batch_size=16)

    untrained = FPNModel(**settings)
    untrained.build()
    baseline = untrained.evaluate(held_out)

    model = FPNModel(**settings, max_iteration=250)
    model.train(train)
    trained = model.evaluate(held_out)

    assert trained["mAP"] > baseline["mAP"] + 0.3
    assert trained["AP50"] > 0.6
    assert trained["f1"] > baseline["f1"] + 0.3

    # A trained backbone sees night-mode edge frames as unlike its training images.
    night = generate_samples(20, "edge", seed=23, image_size=128, night_share=1.0)
    familiar = np.median([i.feature_shift for i in model.infer(held_out)])
    unfamiliar = np.median([i.feature_shift for i in model.infer(night)])
    assert familiar < 2.0 and unfamiliar > 2 * familiar
