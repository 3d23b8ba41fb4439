"""Importing an upload: find the files, read the labels, check every image, store the good ones.

The report names every file as accepted, duplicate, rejected (with the reason) or ignored.
A problem with one image rejects that image; an annotation file that cannot be read rejects
the images it would have labeled (they are not stored unlabeled: the user fixes the file and
uploads again, and nothing already stored is touched).
"""

import contextlib
import hashlib
import posixpath
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.core.files.storage import default_storage
from django.db import transaction
from django.urls import reverse

from apps.datasets import services
from apps.datasets.boxes import BoxRejected, check_boxes, to_pixels
from apps.datasets.events import announce_labels_changed
from apps.datasets.formats import coco, voc, yolo
from apps.datasets.formats.base import Bundle, ParsedLabels, split_from_path
from apps.datasets.image_checks import (
    ImageInfo,
    ImageRejected,
    check_image,
    looks_like_image_name,
    unsupported_format_message,
)
from apps.datasets.import_report import ImportOutcome, ImportReport, report_storage_name
from apps.datasets.models import Dataset, Sample, SampleSource
from apps.datasets.orientation import boxes_on_shown_image
from apps.datasets.zip_safety import ZIP_MAGIC, ArchiveRejected, EntryRejected, SafeZip

FORMATS = {"coco": coco, "voc": voc, "yolo": yolo}
AUTO = "auto"
IMAGES_ONLY = "images"
FORMAT_CHOICES = [
    (AUTO, "Detect"),
    ("coco", "COCO JSON"),
    ("voc", "Pascal VOC XML"),
    ("yolo", "YOLO txt"),
    (IMAGES_ONLY, "Images only (unlabeled)"),
]
UNKNOWN_CLASSES_REJECT = "reject"
UNKNOWN_CLASSES_ADD = "add"
# A VOC image named in ImageSets/Main/<split>.txt that has no XML: not labeled yet, or labeled
# with no objects (Datumaro and CVAT write no XML for an image without objects).
LISTED_WITHOUT_LABELS_UNLABELED = "unlabeled"
LISTED_WITHOUT_LABELS_NO_OBJECTS = "no_objects"
LISTED_WITHOUT_LABELS_CHOICES = [
    (LISTED_WITHOUT_LABELS_UNLABELED, "Store them unlabeled"),
    (LISTED_WITHOUT_LABELS_NO_OBJECTS, "Store them as labeled with no objects"),
]
# Samples are committed in chunks, so progress is visible and a crash loses little; a failed
# or cancelled import then removes every sample it created (see discard_import).
CHUNK_SIZE = 50
# Threads that write a chunk's images to storage at once (S3 round trips overlap).
STORAGE_WRITERS = 8


class ImportFailed(Exception):
    """The upload as a whole cannot be imported (e.g. it holds no files at all)."""


class LabelsRejected(Exception):
    """The image's labels cannot be trusted for this image (the image is not stored)."""


@dataclass
class ImportOptions:
    format: str = AUTO
    unknown_classes: str = UNKNOWN_CLASSES_REJECT
    source: str = SampleSource.UPLOAD
    listed_without_labels: str = LISTED_WITHOUT_LABELS_UNLABELED


def detect_format(bundle: Bundle) -> tuple[str, list[str]]:
    """The first format whose files are present (COCO, then VOC, then YOLO), else images only."""
    for name, module in FORMATS.items():
        files = module.find_files(bundle)
        if files:
            return name, files
    if voc.has_image_sets(bundle):  # a VOC export whose images all lack objects has no XML
        return "voc", []
    return IMAGES_ONLY, []


def _parse(bundle: Bundle, chosen: str, dataset: Dataset) -> ParsedLabels | None:
    fmt, files = detect_format(bundle) if chosen == AUTO else (chosen, None)
    if fmt == IMAGES_ONLY:
        return None
    if fmt == "yolo":
        return yolo.parse(bundle, files, fallback_classes=dataset.class_names)
    return FORMATS[fmt].parse(bundle, files)


def import_bundle(
    dataset_id: int,
    bundle: Bundle,
    options: ImportOptions,
    *,
    user=None,
    job_id: int | None = None,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
    report: ImportReport | None = None,
) -> ImportReport:
    report = report or ImportReport()
    dataset = Dataset.objects.get(pk=dataset_id)
    parsed = _parse(bundle, options.format, dataset)
    report.format = parsed.format if parsed else IMAGES_ONLY
    if parsed is not None and not parsed.annotation_files and options.format != AUTO:
        report.add(
            "(upload)",
            ImportOutcome.WARNING,
            f"no {options.format.upper()} annotation files found: images are imported unlabeled",
        )
    images = sorted(bundle.image_names())
    labels = dict(parsed.labels) if parsed else {}
    notes: dict[str, str] = {}  # image path → a note for its report line
    if parsed is not None:
        _apply_listed_without_labels(parsed, options, labels, notes)
    refused = dict(parsed.image_problems) if parsed else {}
    if parsed is not None:
        for name in parsed.annotation_files:
            if name in parsed.file_problems:
                report.add(name, ImportOutcome.REJECTED, parsed.file_problems[name])
        for name, problem in parsed.file_problems.items():
            if name not in parsed.annotation_files:
                report.add(name, ImportOutcome.REJECTED, problem)
        for reference, problem in parsed.missing_images.items():
            report.add(reference, ImportOutcome.REJECTED, problem)
        for file, outcome, message in parsed.notes:
            report.add(file, outcome, message)
        if parsed.file_problems:
            reason = (
                f"not imported: {', '.join(sorted(parsed.file_problems))} could not be "
                "read; fix it and upload again"
            )
            refused = dict.fromkeys(images, reason)
        else:
            _apply_class_policy(dataset, parsed, options, report, refused)
            dataset.refresh_from_db()
    if parsed is not None:
        for name in parsed.annotation_files:
            if name not in parsed.file_problems and name not in parsed.missing_images:
                report.add(name, ImportOutcome.READ, f"{parsed.format.upper()} labels read")
    handled = set(images)
    if parsed is not None:  # each already has its line (read or rejected)
        handled |= set(parsed.annotation_files) | set(parsed.file_problems)
    for name in bundle.names:
        if name in handled:
            continue
        if _is_side_file(name) and parsed is not None:
            report.add(name, ImportOutcome.READ, "class names or split lists read")
        elif parsed is not None and posixpath.splitext(name)[1].lower() in LABEL_SUFFIXES:
            report.add(
                name,
                ImportOutcome.IGNORED,
                f"not read: this upload's labels were read as {parsed.format.upper()}, and "
                "this file is not one of them",
            )
        elif bundle.content_format(name):  # an image, in a format the portal does not take
            report.add(
                name,
                ImportOutcome.REJECTED,
                unsupported_format_message(bundle.content_format(name)),
            )
        else:
            report.add(name, ImportOutcome.IGNORED, "not an image or an annotation file")

    seen: dict[str, str] = {}  # sha256 → the first file of this upload with that image
    with ThreadPoolExecutor(STORAGE_WRITERS, thread_name_prefix="import-write") as writers:
        for chunk_start in range(0, len(images), CHUNK_SIZE):
            chunk = images[chunk_start : chunk_start + CHUNK_SIZE]
            _import_chunk(
                dataset,
                bundle,
                chunk,
                labels,
                refused,
                parsed,
                options,
                user,
                job_id,
                report,
                seen,
                writers,
                notes,
            )
            on_progress(chunk_start + len(chunk), len(images))
    return report


def _apply_listed_without_labels(parsed, options, labels, notes) -> None:
    """VOC images listed in ImageSets with no XML: unlabeled, or labeled empty if asked."""
    treat_as_empty = options.listed_without_labels == LISTED_WITHOUT_LABELS_NO_OBJECTS
    for path, listing in parsed.listed_without_labels.items():
        if treat_as_empty:
            labels[path] = []
            notes[path] = f"listed in {listing} with no XML: stored as labeled with no objects"
        else:
            notes[path] = (
                f"listed in {listing} with no XML: stored unlabeled (if it has no objects, "
                "upload again choosing 'labeled with no objects' for such images)"
            )


# Files that describe a layout rather than label an image: Darknet's obj.data and its subset
# lists, VOC's labelmap.txt (read for the class order).
LAYOUT_FILES = ("obj.data", "labelmap.txt", "train.txt", "valid.txt", "val.txt", "test.txt")


# Files that may hold labels in one of the formats the portal reads.
LABEL_SUFFIXES = (".json", ".xml", ".txt")


def _is_side_file(name: str) -> bool:
    base = posixpath.basename(name)
    return base in yolo.CLASS_FILES + yolo.YAML_FILES + LAYOUT_FILES or "/ImageSets/" in f"/{name}"


def _apply_class_policy(dataset, parsed, options, report, refused) -> None:
    """Classes the dataset lacks are added (when asked) or their images refused, never dropped."""
    used = [b.class_name for boxes in parsed.labels.values() for b in boxes]
    ordered = [n for n in parsed.declared_classes if n in used] + used
    unknown = [name for name in dict.fromkeys(ordered) if name not in dataset.class_names]
    if not unknown:
        return
    if options.unknown_classes == UNKNOWN_CLASSES_ADD:
        try:
            report.classes_added = services.add_classes(dataset.pk, unknown)
        except services.DatasetError as exc:
            for path, boxes in parsed.labels.items():
                if any(b.class_name in unknown for b in boxes):
                    refused.setdefault(path, f"cannot add its classes: {exc}")
            return
        report.add(
            "(classes)",
            ImportOutcome.WARNING,
            f"added classes to {dataset.name!r}: {', '.join(report.classes_added)}",
        )
        return
    for path, boxes in parsed.labels.items():
        missing = sorted({b.class_name for b in boxes if b.class_name in unknown})
        if missing:
            refused.setdefault(
                path,
                f"uses class {', '.join(repr(m) for m in missing)} that dataset {dataset.name!r} "
                "does not have: add the class, or upload again with 'add new classes'",
            )


@dataclass
class _Checked:
    path: str
    data: bytes
    info: ImageInfo
    sha256: str
    boxes: list | None
    split: str | None
    warnings: list[str]
    stored_name: str = ""


def _check_one(dataset, bundle, path, labels, parsed) -> _Checked:
    """Everything about one image that needs no database: raises with the reason to reject."""
    data = bundle.read(path)
    if not data:
        raise ImageRejected("the file is empty (0 bytes)")
    info = check_image(data)
    boxes = labels.get(path)
    if boxes is not None and parsed is not None:
        _check_declared_size(parsed.declared_sizes.get(path), info)
    if boxes is not None and parsed.normalized:
        boxes = to_pixels(boxes, info.width, info.height)
    declared_size = parsed.declared_sizes.get(path) if parsed else None
    boxes, orientation_note = boxes_on_shown_image(boxes, info, declared_size)
    warnings = [orientation_note] if orientation_note else []
    if boxes:
        checked = check_boxes(boxes, info.width, info.height, dataset.class_names)
        boxes, warnings = checked.boxes, warnings + checked.warnings
    split = (parsed.splits.get(path) if parsed else None) or split_from_path(path)
    return _Checked(path, data, info, hashlib.sha256(data).hexdigest(), boxes, split, warnings)


def _check_declared_size(declared: tuple[int, int, str] | None, info: ImageInfo) -> None:
    """Boxes are in the pixels of the size the label file states: on an image of another size
    they would land in the wrong place, so the image is refused rather than stored wrong.
    (A stated size with width and height swapped is accepted: that is how a file labeled on
    the EXIF-rotated view of a photo describes it.)"""
    if declared is None:
        return
    width, height, source = declared
    if (width, height) in ((info.width, info.height), (info.height, info.width)):
        return
    raise LabelsRejected(
        f"{source} says this image is {width}x{height} but it is {info.width}x{info.height}: "
        "its boxes would be misplaced; fix the size in the labels or upload the matching image"
    )


def _import_chunk(
    dataset,
    bundle,
    chunk,
    labels,
    refused,
    parsed,
    options,
    user,
    job_id,
    report,
    seen,
    writers,
    notes=None,
) -> None:
    """Checks the chunk's images, writes the new ones to storage in parallel (object stores
    answer slowly, not busily), then records them in one transaction. If that transaction rolls
    back, the files it would have recorded are removed."""
    checked: list[_Checked] = []
    for path in chunk:
        if path in refused:
            report.add(path, ImportOutcome.REJECTED, refused[path])
            continue
        try:
            item = _check_one(dataset, bundle, path, labels, parsed)
        except (EntryRejected, ImageRejected, BoxRejected, LabelsRejected) as exc:
            report.add(path, ImportOutcome.REJECTED, str(exc))
            continue
        if notes and path in notes:
            item.warnings.append(notes[path])
        if item.sha256 in seen:
            report.add(
                path,
                ImportOutcome.DUPLICATE,
                f"the same image as {seen[item.sha256]} in this upload: stored once"
                + _labels_not_applied(item.boxes),
            )
            continue
        seen[item.sha256] = path
        checked.append(item)
    existing = dict(
        Sample.objects.filter(dataset=dataset, sha256__in=[c.sha256 for c in checked]).values_list(
            "sha256", "pk"
        )
    )
    new = []
    for item in checked:
        if item.sha256 in existing:
            report.add(
                item.path,
                ImportOutcome.DUPLICATE,
                f"the same image is already sample #{existing[item.sha256]}: not stored again"
                + _labels_not_applied(item.boxes),
            )
        else:
            new.append(item)
    futures = [
        writers.submit(services.write_image_file, dataset.pk, c.sha256, c.info, c.data) for c in new
    ]
    written: list[str] = []
    failure = None
    for item, future in zip(new, futures, strict=True):
        try:  # wait for every write, so that none is left running when this chunk gives up
            item.stored_name = future.result()
            written.append(item.stored_name)
        except BaseException as exc:
            failure = failure or exc
    try:
        if failure is not None:
            raise failure
        with transaction.atomic():
            labeled = []
            for item in new:
                sample_id = _record_one(dataset, item, options, user, job_id, report)
                if sample_id is not None and item.boxes is not None:
                    labeled.append(sample_id)
            announce_labels_changed(
                dataset.pk, labeled, source="import", user_id=getattr(user, "pk", None)
            )
    except BaseException:
        services.delete_files(written)
        raise


def _labels_not_applied(boxes) -> str:
    """What a duplicate's own labels became: nothing, and the report says so."""
    if boxes is None:
        return ""
    count = f"{len(boxes)} box{'es' if len(boxes) != 1 else ''}"
    return f"; its labels in this upload ({count}) were not applied"


def _record_one(dataset, item: _Checked, options, user, job_id, report) -> int | None:
    """Stores one checked image; returns the new sample's id (None: refused or a duplicate)."""
    try:
        stored = services.store_sample(
            dataset,
            item.data,
            original_name=posixpath.basename(item.path),
            source=options.source,
            user=user,
            boxes=item.boxes,
            split=item.split,
            import_job_id=job_id,
            image_info=item.info,
            sha256=item.sha256,
            stored_name=item.stored_name,
            announce=False,
        )
    except (ImageRejected, BoxRejected, services.DatasetError) as exc:
        report.add(item.path, ImportOutcome.REJECTED, str(exc))
        return None
    if not stored.created:  # another upload stored it a moment ago
        report.add(
            item.path,
            ImportOutcome.DUPLICATE,
            f"the same image is already sample #{stored.sample.pk}: not stored again"
            + _labels_not_applied(item.boxes),
        )
        return None
    note = "labeled" if item.boxes is not None else "unlabeled"
    if item.boxes is not None:
        note += f", {len(item.boxes)} box{'es' if len(item.boxes) != 1 else ''}"
    report.add(item.path, ImportOutcome.ACCEPTED, "; ".join([note, *item.warnings]))
    return stored.sample.pk


# --- Uploaded files → a bundle ------------------------------------------------------------


@contextlib.contextmanager
def bundle_from_staged(staged: list[dict], report: ImportReport):
    """Opens the staged upload (zips and loose files) as one bundle; archive-level problems
    go to the report. Zips are copied to a local temporary file first (zipfile needs seek)."""
    readers: dict[str, Callable[[], bytes]] = {}
    heads: dict[str, Callable[[], bytes]] = {}
    zips: list[SafeZip] = []
    temporary = tempfile.TemporaryDirectory(prefix="ilportal-import-")
    archives = [item for item in staged if _is_zip(item)]
    try:
        for number, item in enumerate(staged):
            if item in archives:
                local = f"{temporary.name}/{number}.zip"
                with default_storage.open(item["key"], "rb") as source, open(local, "wb") as out:
                    shutil.copyfileobj(source, out, 1024 * 1024)
                try:
                    archive = SafeZip(local)
                except ArchiveRejected as exc:
                    report.add(item["name"], ImportOutcome.REJECTED, str(exc))
                    continue
                zips.append(archive)
                prefix = f"{posixpath.splitext(item['name'])[0]}/" if len(archives) > 1 else ""
                if not archive.names() and not archive.rejected:
                    report.add(item["name"], ImportOutcome.REJECTED, "the zip archive is empty")
                for name, reason in archive.rejected:
                    report.add(prefix + name, ImportOutcome.REJECTED, reason)
                for name in archive.names():
                    if _name_is_free(prefix + name, readers, report):
                        readers[prefix + name] = lambda a=archive, n=name: a.read(n)
                        heads[prefix + name] = lambda a=archive, n=name: a.read_head(n)
            else:
                name = posixpath.basename(item["name"].replace("\\", "/"))
                if _name_is_free(name, readers, report):
                    readers[name] = lambda key=item["key"]: _read_stored(key)
                    heads[name] = lambda key=item["key"]: _read_stored(key, 32)
        if not readers:
            raise ImportFailed(_nothing_to_import(staged, report))
        yield Bundle(
            names=list(readers),
            read=lambda name: readers[name](),
            read_head=lambda name: heads[name](),
        )
    finally:
        for archive in zips:
            archive.close()
        temporary.cleanup()


def _nothing_to_import(staged: list[dict], report: ImportReport) -> str:
    problems = [f"{line['file']}: {line['message']}" for line in report.lines[:5]]
    detail = f" ({'; '.join(problems)})" if problems else ""
    names = ", ".join(item["name"] for item in staged[:5])
    return f"Nothing to import: the upload ({names}) holds no files{detail}."


def _name_is_free(name: str, readers: dict, report: ImportReport) -> bool:
    if name in readers:
        report.add(
            name,
            ImportOutcome.REJECTED,
            "another file of this upload has the same name: only the first is read",
        )
        return False
    return True


def _is_zip(item: dict) -> bool:
    if item["name"].lower().endswith(".zip"):
        return True
    if looks_like_image_name(item["name"]):
        return False
    with default_storage.open(item["key"], "rb") as stream:
        return stream.read(4) == ZIP_MAGIC


def _read_stored(key: str, size: int = -1) -> bytes:
    with default_storage.open(key, "rb") as stream:
        return stream.read(size)


def discard_import(job_id: int) -> int:
    """Removes every sample a failed or cancelled import created, and their files."""
    samples = Sample.objects.filter(import_job_id=job_id)
    names = []
    for image, thumbnail in samples.values_list("image", "thumbnail"):
        names.extend(name for name in (image, thumbnail) if name)
    deleted, _ = samples.delete()
    services.delete_files(names)
    return len(names)


def discard_staged(staged: list[dict]) -> None:
    services.delete_files(item["key"] for item in staged)


# --- The import job ------------------------------------------------------------------------

REPORT_LINES_IN_LOG = 200


def run_import_job(job, progress) -> dict:
    """Body of the dataset-import job (see apps.jobs.runner.run_job). On failure or cancel it
    removes what it stored; the staged upload is removed in every case."""
    params = job.params
    if "staged" not in params or "dataset_id" not in params:
        raise ValueError("A dataset import starts from a dataset's upload page or the API.")
    staged = params["staged"]
    report = ImportReport()
    options = ImportOptions(
        format=params.get("format", AUTO),
        unknown_classes=params.get("unknown_classes", UNKNOWN_CLASSES_REJECT),
        source=params.get("source", SampleSource.UPLOAD),
        listed_without_labels=params.get("listed_without_labels", LISTED_WITHOUT_LABELS_UNLABELED),
    )

    def on_progress(done: int, total: int) -> None:
        progress.update(99 * done / max(total, 1), f"{done} of {total} images checked")

    try:
        with bundle_from_staged(staged, report) as bundle:
            progress.update(1, f"{len(bundle.names)} files in the upload", force=True)
            import_bundle(
                params["dataset_id"],
                bundle,
                options,
                user=job.created_by,
                job_id=job.pk,
                on_progress=on_progress,
                report=report,
            )
    except ImportFailed as exc:
        progress.log(str(exc))
        raise
    except BaseException:
        removed = discard_import(job.pk)
        progress.log(f"Import stopped: removed the {removed} files it had stored.")
        raise
    finally:
        discard_staged(staged)
    try:
        report.save(job.pk)
    finally:
        report.close()
    result = report.as_dict() | {
        "report_file": report_storage_name(job.pk),
        "report_url": reverse("datasets:import-report", args=[job.pk]),
    }
    for line in [line for line in report.lines if line["outcome"] != "accepted"][
        :REPORT_LINES_IN_LOG
    ]:
        progress.log(f"{line['outcome']}: {line['file']}: {line['message']}")
    counts = result["counts"]
    progress.log(
        f"{counts['accepted']} accepted, {counts['duplicate']} duplicates, "
        f"{counts['rejected']} rejected, {counts['ignored']} ignored ({report.format}); "
        f"the full report has {report.total_lines} lines"
    )
    return result
