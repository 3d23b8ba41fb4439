import io

import pytest
from django.test import Client
from PIL import Image

from apps.accounts.services import create_device_token

LOOP_YAML = """
basemodel:
  name: FPN
  hyperparameters:
    input_size: 64
    backbone_width: 4
    fpn_channels: 16
    batch_size: 8
    max_iteration: 4
    seed: 3
hard_example_mining:
  name: {miner}
"""


def loop_yaml(miner: str = "CloudOnly") -> str:
    return LOOP_YAML.format(miner=miner)


@pytest.fixture(scope="session")
def edge_archive(tmp_path_factory):
    """A tiny FPN archive with its .tflite, trained for a few steps (once per session)."""
    from worker.ml.fpn import FPNModel
    from worker.ml.synthetic import generate_samples

    model = FPNModel(
        input_size=64, backbone_width=4, fpn_channels=16, batch_size=4, max_iteration=2, seed=1
    )
    model.train(generate_samples(4, "initial", seed=5, image_size=64))
    folder = tmp_path_factory.mktemp("edge-archive")
    with_litert = model.save(folder / "with-litert.zip", include_litert=True)
    without_litert = model.save(folder / "without-litert.zip")
    other = FPNModel(
        input_size=64, backbone_width=4, fpn_channels=16, batch_size=4, max_iteration=2, seed=2
    )
    other.train(generate_samples(4, "initial", seed=6, image_size=64))
    return {
        "with_litert": str(with_litert),
        "without_litert": str(without_litert),
        "other_with_litert": str(other.save(folder / "other.zip", include_litert=True)),
    }


def scene_png(seed: int, size=(96, 72), shift: int = 0) -> bytes:
    """A synthetic edge-domain scene: distinct seeds give distinct perceptual hashes."""
    from worker.ml.synthetic import generate_image

    image, _ = generate_image(seed, "edge", seed=seed, image_size=max(size))
    picture = Image.fromarray(image).resize(size)
    if shift:
        picture.putpixel((shift % size[0], 0), (255, 0, 0))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def edge_loop(db, admin_user, edge_archive):
    """A loop serving a registered version (pointer moved directly, no deploy job)."""
    from apps.datasets.services import create_dataset
    from apps.edge import serving
    from apps.loops import services as loops

    serving.clear()
    dataset = create_dataset(name="edge-site", class_names=["helmet", "vest", "cone"])
    loop = loops.create_loop(
        name="edge-line",
        dataset=dataset,
        algorithm_yaml=loop_yaml(),
        user=admin_user,
        gate_min_metrics={},
        gate_min_gain={},
        gate_max_forgetting=None,
    )
    version = loops.register_version(loop, edge_archive["with_litert"], source="uploaded")
    loops.move_deployed_pointer(
        version.pk, action="force", started_by="test", reason="test", job_id=None
    )
    loop.refresh_from_db()
    yield loop
    serving.clear()


def device_client(*loops, all_loops=False, name="cam-1"):
    issued = create_device_token(name=name, created_by=None, loops=loops, all_loops=all_loops)
    client = Client(headers={"Authorization": f"Bearer {issued.raw_token}"})
    client.token = issued.device_token
    client.raw_token = issued.raw_token
    return client


@pytest.fixture
def device(edge_loop):
    return device_client(edge_loop)
