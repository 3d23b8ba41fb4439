"""Writing a dataset (or a filtered part of it) as a zip in COCO, VOC or YOLO layout, as a job.

The layouts are the ones Datumaro and CVAT read (round-trip tests read our zips with Datumaro):
COCO `annotations/instances_<subset>.json` + `images/<subset>/`; VOC `Annotations/`,
`JPEGImages/`, `ImageSets/Main/<subset>.txt`, `labelmap.txt`; YOLO (Ultralytics) `data.yaml`,
`obj.names`, `images/<subset>/`, `labels/<subset>/`; Darknet YOLO `obj.data`, `obj.names`,
`obj_<subset>_data/`. Subsets are train, val (our eval split) and test.

Memory stays bounded: samples are read in batches, each batch's images are fetched from storage
by several threads at once (object stores answer slowly, not busily), written to the zip and
dropped; label files are written as each sample comes (COCO's JSON goes through temporary
files). The export job writes the zip to a local temporary file, then saves it to storage,
where a permission-checked view serves it.
"""

import hashlib
import json
import posixpath
import tempfile
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from apps.datasets import services
from apps.datasets.formats import coco, voc, yolo, yolo_darknet
from apps.datasets.formats.base import ExportEntry, LabeledBox
from apps.datasets.models import Dataset, Sample, SampleStatus

EXPORTERS = {"coco": coco, "voc": voc, "yolo": yolo, "yolo_darknet": yolo_darknet}
EXPORT_FORMAT_LABELS = {
    "coco": "COCO",
    "voc": "Pascal VOC",
    "yolo": "YOLO (Ultralytics)",
    "yolo_darknet": "YOLO (Darknet)",
}
BATCH = 64


class ExportError(Exception):
    pass


def export_file_name(sample: Sample) -> str:
    """Unique inside the zip (the hash prefix) and still recognisable (the original name)."""
    extension = posixpath.splitext(sample.image.name)[1]
    stem = posixpath.splitext(posixpath.basename(sample.original_name or "image"))[0]
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:60]
    return f"{sample.sha256[:12]}_{stem}{extension}"


class _ZipSink:
    """What a format's Writer writes through: small files whole, large ones streamed."""

    def __init__(self, archive: zipfile.ZipFile):
        self.archive = archive

    def write(self, path: str, data: bytes) -> None:
        self.archive.writestr(path, data, zipfile.ZIP_DEFLATED)

    def open(self, path: str):
        info = zipfile.ZipInfo(path)
        info.compress_type = zipfile.ZIP_DEFLATED
        return self.archive.open(info, "w", force_zip64=True)


def _read_image(name: str) -> bytes:
    with default_storage.open(name, "rb") as image:
        return image.read()


def write_export(
    dataset: Dataset,
    samples,
    fmt: str,
    out,
    *,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> int:
    """Writes the zip into the binary file `out`; returns the number of images written.

    Labeled samples carry their current revision; unlabeled ones are written without labels
    (their image is in the zip, no label file or JSON entry names them).
    """
    if fmt not in EXPORTERS:
        raise ExportError(f"Unknown export format {fmt!r}: use {', '.join(EXPORTERS)}.")
    module = EXPORTERS[fmt]
    writer = module.Writer(list(dataset.class_names))
    total = samples.count()
    count = 0
    with (
        zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as archive,
        ThreadPoolExecutor(settings.DATASET_EXPORT_READERS, "export-read") as readers,
    ):
        sink = _ZipSink(archive)
        batch: list[Sample] = []
        for sample in samples.order_by("id").iterator(chunk_size=500):
            batch.append(sample)
            if len(batch) == BATCH:
                count += _write_batch(archive, sink, module, writer, batch, readers)
                on_progress(count, total)
                batch = []
        count += _write_batch(archive, sink, module, writer, batch, readers)
        writer.finish(sink)
    on_progress(count, total)
    return count


def _write_batch(archive, sink, module, writer, batch: list[Sample], readers) -> int:
    boxes = services.boxes_by_annotation(sample.current_annotation_id for sample in batch)
    # map() keeps the order; at most one batch of images is in memory at a time.
    images = readers.map(_read_image, [sample.image.name for sample in batch])
    for sample, data in zip(batch, images, strict=True):
        path = module.image_path(sample.split, export_file_name(sample))
        archive.writestr(path, data)  # images are compressed already: stored as they are
        # A skipped or re-queued sample is out of training here: its labels stay out of the
        # export too, so that a re-import (another portal, a restore) does not train on them.
        if sample.current_annotation_id and sample.status == SampleStatus.LABELED:
            current = [
                LabeledBox(box.class_name, box.x1, box.y1, box.x2, box.y2)
                for box in boxes.get(sample.current_annotation_id, [])
            ]
            writer.add(ExportEntry(path, sample.width, sample.height, sample.split, current), sink)
    return len(batch)


# --- The export job ------------------------------------------------------------------------


def export_storage_name(job_id: int) -> str:
    return f"exports/{job_id}/export.zip"


def download_file_name(job) -> str:
    return f"{slugify(job.params.get('dataset', 'dataset'))}-{job.params.get('format')}.zip"


def start_export(
    dataset: Dataset, fmt: str, filters: dict, *, user=None, started_by: str = "", device=None
):
    """Queues an export job of the dataset (or the part `filters` selects); returns the Job.
    `device`: the device token that asked (the job is then that device's, as an import is)."""
    from apps.jobs.services import JobAlreadyActive, start_job

    if fmt not in EXPORTERS:
        raise ExportError(f"Unknown export format {fmt!r}: use {', '.join(EXPORTERS)}.")
    query = services.SampleFilters.from_query(filters).as_query()
    # The same export asked for twice while it runs (a double click, two tabs) is one job.
    key = hashlib.sha256(json.dumps([fmt, query], sort_keys=True).encode()).hexdigest()[:16]
    try:
        return start_job(
            "dataset_export",
            user=user,
            started_by=started_by,
            device=device,
            scope=f"dataset:{dataset.pk}:export:{key}",
            params={
                "dataset_id": dataset.pk,
                "dataset": dataset.name,
                "format": fmt,
                "filters": query,
            },
        )
    except JobAlreadyActive as exc:
        return exc.job


def run_export_job(job, progress) -> dict:
    """Body of the dataset-export job (see apps.jobs.runner.run_job)."""
    params = job.params
    dataset = Dataset.objects.filter(pk=params.get("dataset_id")).first()
    if dataset is None:
        raise ExportError("The dataset of this export no longer exists.")
    filters = services.SampleFilters.from_query(params.get("filters") or {})
    samples = services.filtered_samples(dataset.pk, filters)

    def on_progress(done: int, total: int) -> None:
        progress.update(95 * done / max(total, 1), f"{done} of {total} images written")

    progress.update(0, "Writing the zip", force=True)
    name = export_storage_name(job.pk)
    with tempfile.TemporaryFile(prefix="ilportal-export-") as out:
        count = write_export(dataset, samples, params["format"], out, on_progress=on_progress)
        size = out.tell()
        progress.update(96, f"Saving the zip ({size:,} bytes)", force=True)
        out.seek(0)
        if default_storage.exists(name):
            default_storage.delete(name)
        stored = default_storage.save(name, File(out, name=name))
    progress.log(f"{count} images, {size:,} bytes, saved as {stored}")
    return {
        "format": params["format"],
        "images": count,
        "bytes": size,
        "file": stored,
        "download_url": reverse("datasets:export-download", args=[job.pk]),
    }


def expire_old_exports(keep_hours: int) -> list[int]:
    """Deletes the zips of exports that finished more than `keep_hours` ago (a zip is a full
    copy of its images; storage would otherwise fill with old ones); their pages then say so."""
    from apps.jobs.models import Job, JobStatus

    cutoff = timezone.now() - timedelta(hours=keep_hours)
    expired = []
    old = Job.objects.filter(
        kind="dataset_export", status=JobStatus.SUCCEEDED, finished_at__lt=cutoff
    )
    for job in old.only("pk", "result").iterator():
        if (job.result or {}).get("expired"):
            continue
        services.delete_files([export_storage_name(job.pk)])
        result = {**job.result, "expired": True, "download_url": None}
        Job.objects.filter(pk=job.pk).update(result=result)
        expired.append(job.pk)
    return expired
