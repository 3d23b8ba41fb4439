"""The demo dataset: labeled synthetic "initial domain" images from the ML core's generator.

The only place the portal's dataset code depends on worker.ml.synthetic.
"""

import io
import logging
from dataclasses import dataclass

from django.db import transaction

from apps.datasets import services
from apps.datasets.formats.base import LabeledBox
from apps.datasets.models import AnnotationSource, Dataset, SampleSource

logger = logging.getLogger(__name__)

DEMO_DATASET_NAME = "demo-initial"


class GeneratorMissing(Exception):
    pass


def load_generator():
    """worker.ml.synthetic, or GeneratorMissing saying what is missing."""
    try:
        from worker.ml import synthetic
    except ImportError as exc:
        raise GeneratorMissing(
            f"The ML core's synthetic generator (worker/ml/synthetic.py) cannot be imported "
            f"({exc}); no demo dataset was created. Install the ML core (requirements.txt) and "
            "run `manage.py seed_demo` again."
        ) from exc
    return synthetic


@dataclass
class DemoResult:
    dataset: Dataset
    created: int
    already_there: bool


def seed_demo(*, images: int = 60, seed: int = 0, image_size: int = 192, user=None) -> DemoResult:
    """Creates (or tops up) the demo dataset; running it twice stores nothing twice."""
    synthetic = load_generator()
    dataset = Dataset.objects.filter(name=DEMO_DATASET_NAME).first()
    if dataset is not None and dataset.samples.count() >= images:
        return DemoResult(dataset, 0, already_there=True)
    if dataset is None:
        dataset = services.create_dataset(
            name=DEMO_DATASET_NAME,
            class_names=list(synthetic.CLASS_NAMES),
            description="Synthetic safety-gear images of the initial domain (seed_demo).",
            created_by=user,
        )
    created = add_generated_samples(
        dataset, count=images, domain="initial", seed=seed, image_size=image_size
    )
    return DemoResult(dataset, created, already_there=False)


def add_generated_samples(
    dataset: Dataset,
    *,
    count: int,
    domain: str = "initial",
    seed: int = 0,
    image_size: int = 192,
    split: str | None = None,
    source: str = SampleSource.GENERATOR,
) -> int:
    """Stores `count` labeled images of the generator's `domain`; returns how many were new."""
    synthetic = load_generator()
    from PIL import Image

    created = 0
    for index in range(count):
        pixels, labels = synthetic.generate_image(index, domain, seed, image_size)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        boxes = [
            LabeledBox(synthetic.CLASS_NAMES[int(c)], float(x1), float(y1), float(x2), float(y2))
            for x1, y1, x2, y2, c in labels.tolist()
        ]
        with transaction.atomic():
            stored = services.store_sample(
                dataset,
                buffer.getvalue(),
                original_name=f"{domain}_{seed}_{index:06d}.png",
                source=source,
                boxes=boxes,
                split=split,
                annotation_source=AnnotationSource.GENERATOR,
            )
        created += stored.created
    return created
