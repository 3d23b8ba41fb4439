"""Writing a dataset (or a filtered part of it) as a zip in COCO, VOC or YOLO layout."""

import posixpath
import zipfile

from django.core.files.storage import default_storage

from apps.datasets.formats import coco, voc, yolo
from apps.datasets.formats.base import ExportEntry, LabeledBox
from apps.datasets.models import Dataset, Sample
from apps.datasets.services import boxes_by_annotation

EXPORTERS = {"coco": coco, "voc": voc, "yolo": yolo}
BATCH = 500


def export_file_name(sample: Sample) -> str:
    """Unique inside the zip (the hash prefix) and still recognisable (the original name)."""
    extension = posixpath.splitext(sample.image.name)[1]
    stem = posixpath.splitext(posixpath.basename(sample.original_name or "image"))[0]
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:60]
    return f"{sample.sha256[:12]}_{stem}{extension}"


def write_export(dataset: Dataset, samples, fmt: str, out) -> int:
    """Writes the zip into the binary file `out`; returns the number of images written.

    Labeled samples carry their current revision; unlabeled ones are written without labels
    (COCO lists them with no annotations; VOC and YOLO write no label file for them).
    """
    module = EXPORTERS[fmt]
    entries: list[ExportEntry] = []
    count = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        batch: list[Sample] = []
        for sample in samples.order_by("id").iterator(chunk_size=BATCH):
            batch.append(sample)
            if len(batch) == BATCH:
                count += _write_batch(archive, module, batch, entries)
                batch = []
        count += _write_batch(archive, module, batch, entries)
        # Unlabeled images go in the zip without labels, so they re-import as unlabeled.
        module.write(
            [entry for entry in entries if entry.boxes is not None],
            dataset.class_names,
            lambda path, data: archive.writestr(path, data, zipfile.ZIP_DEFLATED),
        )
    return count


def _write_batch(archive, module, batch: list[Sample], entries: list[ExportEntry]) -> int:
    boxes = boxes_by_annotation(sample.current_annotation_id for sample in batch)
    for sample in batch:
        path = module.image_path(sample.split, export_file_name(sample))
        with default_storage.open(sample.image.name, "rb") as image:
            archive.writestr(path, image.read())  # images are compressed already
        current = None
        if sample.current_annotation_id:
            current = [
                LabeledBox(box.class_name, box.x1, box.y1, box.x2, box.y2)
                for box in boxes.get(sample.current_annotation_id, [])
            ]
        entries.append(ExportEntry(path, sample.width, sample.height, sample.split, current))
    return len(batch)
