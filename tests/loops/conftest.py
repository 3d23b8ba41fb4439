import pytest

# A tiny network and few steps keep each training in seconds on 2 CPU cores.
TINY_YAML = """
basemodel:
  name: FPN
  hyperparameters:
    learning_rate: 0.003
    max_iteration: {steps}
    warmup_steps: 2
    batch_size: 8
    input_size: 64
    backbone_width: 4
    fpn_channels: 16
    replay_ratio: 0.3
    seed: 3
hard_example_mining:
  name: IBT
"""


def tiny_yaml(steps: int = 6) -> str:
    return TINY_YAML.format(steps=steps)


def add_synthetic_samples(dataset, count, *, domain, split, source, seed):
    """Labeled 64 px samples from the ML core's generator, stored through the datasets service."""
    from apps.datasets.demo import add_generated_samples

    return add_generated_samples(
        dataset, count=count, domain=domain, seed=seed, image_size=64, split=split, source=source
    )


@pytest.fixture
def synthetic_dataset(db):
    from apps.datasets.services import create_dataset
    from worker.ml.synthetic import CLASS_NAMES

    dataset = create_dataset(name="site-cameras", class_names=list(CLASS_NAMES))
    add_synthetic_samples(dataset, 16, domain="initial", split="train", source="generator", seed=1)
    add_synthetic_samples(dataset, 6, domain="initial", split="test", source="generator", seed=2)
    add_synthetic_samples(dataset, 6, domain="edge", split="eval", source="device", seed=3)
    return dataset


@pytest.fixture
def tiny_loop(synthetic_dataset, admin_user):
    from apps.loops.services import create_loop

    return create_loop(
        name="line-3",
        dataset=synthetic_dataset,
        algorithm_yaml=tiny_yaml(),
        user=admin_user,
        gate_min_metrics={},
        gate_min_gain={},
        gate_max_forgetting=None,
        auto_deploy=False,
        auto_evaluate=False,
    )
