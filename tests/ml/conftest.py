"""Shared fixtures of the ML tests (no Django, no database)."""

import os
import sys
from pathlib import Path

import pytest

# Make `worker` importable when pytest is started as `pytest tests/ml` without a configured
# pythonpath (the project-level pytest configuration also sets it).
REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# TensorFlow's C++ start-up chatter hides test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# A tiny network keeps every TensorFlow test in seconds on 2 CPU cores.
TINY_FPN = dict(
    input_size=64,
    backbone_width=4,
    fpn_channels=16,
    batch_size=8,
    warmup_steps=2,
    learning_rate=0.003,
    seed=3,
)


@pytest.fixture(scope="session")
def tiny_data():
    from worker.ml.synthetic import generate_samples

    return generate_samples(12, "initial", seed=11, image_size=64)


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory, tiny_data):
    """A tiny FPN trained for a few steps and saved; shared by the FPN and LiteRT tests."""
    from worker.ml.fpn import FPNModel

    model = FPNModel(**TINY_FPN, max_iteration=6)
    model.train(tiny_data)
    return model.save(tmp_path_factory.mktemp("tiny") / "tiny.zip")
