"""From database rows to the ML core's DetectionData: images from storage, boxes from revisions."""

import hashlib
import io
import json

import numpy as np
from django.core.files.storage import default_storage
from PIL import Image

from apps.datasets.models import Sample, SampleSource, SampleStatus, Split
from apps.datasets.services import boxes_by_annotation, labeled_snapshot
from worker.ml.orientation import as_rgb


class NoDataError(Exception):
    pass


def snapshot_sha256(pairs: list[tuple[int, int]]) -> str:
    return hashlib.sha256(json.dumps([list(p) for p in pairs]).encode()).hexdigest()


def training_snapshot(dataset_id: int) -> list[tuple[int, int]]:
    """The labeled train-split samples and their current revisions: frozen at training start."""
    return labeled_snapshot(dataset_id, split=Split.TRAIN)


def evaluation_snapshot(dataset_id: int, evaluation_set: str) -> list[tuple[int, int]]:
    """edge: eval split of samples from devices; regression: test split of the original data."""
    samples = Sample.objects.filter(
        dataset_id=dataset_id, status=SampleStatus.LABELED, current_annotation__isnull=False
    )
    if evaluation_set == "edge":
        samples = samples.filter(split=Split.EVAL, source=SampleSource.DEVICE)
    else:
        samples = samples.filter(split=Split.TEST).exclude(source=SampleSource.DEVICE)
    return list(samples.order_by("id").values_list("id", "current_annotation_id"))


def labeled_pairs(sample_ids) -> list[tuple[int, int]]:
    """(sample, current revision) of those of `sample_ids` that are labeled, in id order."""
    samples = Sample.objects.filter(
        pk__in=list(sample_ids), status=SampleStatus.LABELED, current_annotation__isnull=False
    )
    return list(samples.order_by("id").values_list("id", "current_annotation_id"))


def read_image(name: str) -> np.ndarray:
    """A stored image's pixels. They are already as shown (the EXIF orientation was applied when
    it was stored, see apps.datasets.image_checks): no orientation is applied here."""
    with default_storage.open(name, "rb") as handle:
        data = handle.read()
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(as_rgb(image))


def load_detection_data(pairs: list[tuple[int, int]], class_names: list[str]):
    """DetectionData of exactly these (sample, annotation revision) pairs, in their order."""
    from worker.ml.data import DetectionData

    if not pairs:
        raise NoDataError("no labeled samples")
    class_index = {name: index for index, name in enumerate(class_names)}
    images_by_sample = dict(
        Sample.objects.filter(pk__in=[s for s, _ in pairs]).values_list("pk", "image")
    )
    boxes = boxes_by_annotation([a for _, a in pairs])
    images, labels = [], []
    for sample_id, annotation_id in pairs:
        images.append(read_image(images_by_sample[sample_id]))
        labels.append(
            np.asarray(
                [
                    [b.x1, b.y1, b.x2, b.y2, class_index[b.class_name]]
                    for b in boxes.get(annotation_id, [])
                    if b.class_name in class_index
                ],
                dtype=np.float32,
            ).reshape(-1, 5)
        )
    return DetectionData(
        x=images, y=labels, class_names=list(class_names), image_ids=[s for s, _ in pairs]
    )
