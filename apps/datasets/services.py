"""Verbs on datasets, samples and annotations. Views, the API, tasks and commands call these."""

import hashlib
import logging
import re
import uuid
from dataclasses import dataclass, field

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import (
    Count,
    Exists,
    OuterRef,
    ProtectedError,
    QuerySet,
    RestrictedError,
    Subquery,
)
from django.db.models.functions import Coalesce

from apps.datasets.boxes import boxes_key, check_boxes
from apps.datasets.events import announce_labels_changed
from apps.datasets.formats.base import LabeledBox
from apps.datasets.image_checks import ImageInfo, check_image, stored_image_bytes
from apps.datasets.models import (
    Annotation,
    AnnotationSource,
    Box,
    Dataset,
    Sample,
    SampleStatus,
    Split,
)

logger = logging.getLogger(__name__)

CLASS_NAME_PATTERN = re.compile(r"^[\w][\w .+/-]{0,99}$")


class DatasetError(Exception):
    """Bad input to a dataset verb; the message is meant for the user."""


# --- Datasets ------------------------------------------------------------------------------


def check_class_names(names) -> list[str]:
    if not isinstance(names, list | tuple):
        raise DatasetError("Class names must be a list.")
    cleaned = [str(name).strip() for name in names]
    for name in cleaned:
        if not CLASS_NAME_PATTERN.match(name):
            raise DatasetError(
                f"{name!r} is not a usable class name (letters, digits, space . + / - _; "
                "at most 100 characters)."
            )
    if len(set(cleaned)) != len(cleaned):
        raise DatasetError("Class names must be unique.")
    return cleaned


def create_dataset(
    *,
    name: str,
    class_names: list[str],
    description: str = "",
    created_by=None,
    train_percent: int = 80,
    eval_percent: int = 10,
) -> Dataset:
    name = name.strip()
    if not name:
        raise DatasetError("A dataset needs a name.")
    if Dataset.objects.filter(name=name).exists():
        raise DatasetError(f"A dataset named {name!r} already exists.")
    if not (0 <= train_percent <= 100 and 0 <= eval_percent <= 100 - train_percent):
        raise DatasetError("Split percentages must lie in 0..100 and add up to at most 100.")
    return Dataset.objects.create(
        name=name,
        class_names=check_class_names(class_names),
        description=description,
        created_by=created_by,
        train_percent=train_percent,
        eval_percent=eval_percent,
    )


# Adding classes changes the dataset: the PATCH endpoint, and an import that adds the classes it
# meets (unknown_classes=add), need this permission (admins; not labelers, not device tokens).
ADD_CLASSES_PERMISSION = "datasets.change_dataset"
ADD_CLASSES_REFUSED = (
    "Only admins may add classes to a dataset; ask one, or reject unknown classes."
)


def add_classes(dataset_id: int, names: list[str]) -> list[str]:
    """Appends the names the dataset lacks (in the given order); returns those added."""
    with transaction.atomic():
        dataset = Dataset.objects.select_for_update().get(pk=dataset_id)
        added = [
            name
            for name in check_class_names(list(dict.fromkeys(names)))
            if name not in dataset.class_names
        ]
        if added:
            dataset.class_names = [*dataset.class_names, *added]
            dataset.save(update_fields=["class_names"])
    return added


def delete_dataset(dataset_id: int) -> None:
    """Deletes the rows, then (after the commit) the image and thumbnail files.

    Raises DatasetError while something else (a learning loop) still uses the dataset.
    """
    job_files = _import_and_export_files(dataset_id)
    try:
        _delete_rows_then_files(
            Dataset.objects.filter(pk=dataset_id), Sample.objects.filter(dataset_id=dataset_id)
        )
    except _StillReferenced as exc:
        users = sorted({str(obj) for obj in exc.holders})
        raise DatasetError(
            f"The dataset is still used by {', '.join(users[:5])}: delete or move those first."
        ) from exc
    transaction.on_commit(lambda: delete_files(job_files))


def _import_and_export_files(dataset_id: int) -> list[str]:
    """The full import reports and export zips of the dataset's jobs (they hold its data)."""
    from apps.datasets.exporting import export_storage_name
    from apps.datasets.import_report import report_storage_name
    from apps.jobs.models import Job

    jobs = Job.objects.filter(params__dataset_id=dataset_id)
    names = []
    for job_id, kind in jobs.values_list("pk", "kind"):
        if kind == "dataset_import":
            names.append(report_storage_name(job_id))
        elif kind == "dataset_export":
            names.append(export_storage_name(job_id))
    return names


class _StillReferenced(Exception):
    def __init__(self, holders):
        super().__init__(f"{len(holders)} protected references")
        self.holders = holders


def _delete_rows_then_files(rows: QuerySet, samples: QuerySet) -> None:
    """Deletes ``rows`` and, once that commits, the image and thumbnail files of ``samples``.

    Raises _StillReferenced, deleting nothing, when protected rows elsewhere point at them.
    """
    try:
        with transaction.atomic():
            names = _file_names(samples)
            rows.delete()
            transaction.on_commit(lambda: delete_files(names))
    except (ProtectedError, RestrictedError) as exc:
        holders = getattr(exc, "protected_objects", None) or getattr(exc, "restricted_objects", ())
        raise _StillReferenced(list(holders)) from exc


def _file_names(samples: QuerySet) -> list[str]:
    names = []
    for image, thumbnail in samples.values_list("image", "thumbnail").iterator(chunk_size=2000):
        names.extend(name for name in (image, thumbnail) if name)
    return names


def delete_files(names) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except Exception:  # a file that stays behind must not undo the deletion of rows
            logger.exception("could not delete %s from storage", name)


# --- Samples -------------------------------------------------------------------------------


def split_for_hash(sha256: str, train_percent: int, eval_percent: int) -> str:
    """The same image always lands in the same split (for given percentages)."""
    bucket = int(sha256[:8], 16) % 100
    if bucket < train_percent:
        return Split.TRAIN
    if bucket < train_percent + eval_percent:
        return Split.EVAL
    return Split.TEST


def unique_key_suffix() -> str:
    """A short random part of a stored file's name, so that each write has a name of its own.

    Names must not be content-addressed alone: on S3 `file_overwrite: False` is only an
    exists() check before the PUT, so two writers of the same bytes at once (two imports, a
    device's retried upload, two first thumbnail requests) would get the same key, and the one
    that loses the race would remove the object the winner's row refers to. With a key per write,
    a writer only ever removes its own object (dedupe stays on the `sha256` column)."""
    return uuid.uuid4().hex[:12]


def image_storage_name(dataset_id: int, sha256: str, extension: str) -> str:
    return f"datasets/{dataset_id}/images/{sha256[:2]}/{sha256}-{unique_key_suffix()}.{extension}"


@dataclass
class StoredSample:
    sample: Sample
    created: bool
    warnings: list[str] = field(default_factory=list)


def store_sample(
    dataset: Dataset,
    data: bytes,
    *,
    original_name: str,
    source: str,
    user=None,
    boxes: list[LabeledBox] | None = None,
    split: str | None = None,
    captured_at=None,
    import_job_id: int | None = None,
    image_info: ImageInfo | None = None,
    annotation_source: str = AnnotationSource.IMPORT,
    sha256: str | None = None,
    stored_name: str | None = None,
    announce: bool = True,
) -> StoredSample:
    """Stores one image (and its first annotation when `boxes` is given, [] meaning "no objects").

    A duplicate of an image already in the dataset is not stored again: created=False.
    Raises ImageRejected / BoxRejected with the reason; nothing is stored then.
    `stored_name`: the file was already written there (by write_image_file); this call then owns
    it and removes it if no sample is created.
    `announce`: a labeled new sample is announced as a label change (after the commit); a caller
    storing many (an import) passes False and announces its batch once.
    The image is stored as shown (its EXIF orientation applied, see write_image_file), `boxes`
    are on the shown image, and `captured_at` defaults to the image's EXIF capture time.
    `sha256` (the duplicate key) is that of `data`, the bytes as received.
    """
    try:
        info = image_info or check_image(data)
        checked = (
            check_boxes(boxes, info.width, info.height, dataset.class_names) if boxes else None
        )
        sha256 = sha256 or hashlib.sha256(data).hexdigest()
        existing = Sample.objects.filter(dataset=dataset, sha256=sha256).only("pk").first()
        if existing is not None:
            if stored_name:
                default_storage.delete(stored_name)
            return StoredSample(Sample.objects.get(pk=existing.pk), created=False)
        if split is not None and split not in Split.values:
            raise DatasetError(f"Unknown split {split!r}; choose from {', '.join(Split.values)}.")
    except BaseException:
        if stored_name:
            default_storage.delete(stored_name)
        raise
    name = stored_name or write_image_file(dataset.pk, sha256, info, data)
    try:
        with transaction.atomic():
            sample = Sample.objects.create(
                dataset=dataset,
                image=name,
                sha256=sha256,
                width=info.width,
                height=info.height,
                original_name=original_name[-255:],
                source=source,
                captured_at=captured_at or info.captured_at,
                split=split or split_for_hash(sha256, dataset.train_percent, dataset.eval_percent),
                import_job_id=import_job_id,
            )
            if boxes is not None:
                _write_revision(
                    sample, checked.boxes if checked else [], user, annotation_source, first=True
                )
                if announce:
                    announce_labels_changed(
                        dataset.pk,
                        [sample.pk],
                        source=annotation_source,
                        user_id=getattr(user, "pk", None),
                    )
    except IntegrityError:
        # The same image arrived through another upload at the same moment: keep that one.
        default_storage.delete(name)
        existing = Sample.objects.filter(dataset=dataset, sha256=sha256).first()
        if existing is None:
            raise
        return StoredSample(existing, created=False)
    except BaseException:
        default_storage.delete(name)
        raise
    return StoredSample(sample, created=True, warnings=checked.warnings if checked else [])


def write_image_file(dataset_id: int, sha256: str, info: ImageInfo, data: bytes) -> str:
    """Writes the image, as shown (stored_image_bytes), under the name of the received bytes'
    sha256; returns the name storage chose. Every stored image is written here."""
    return default_storage.save(
        image_storage_name(dataset_id, sha256, info.extension),
        ContentFile(stored_image_bytes(data, info)),
    )


def delete_sample(sample_id: int) -> None:
    """Deletes the sample and (after the commit) its files.

    Raises DatasetError when a model version was trained on it: its lineage must stay whole.
    """
    samples = Sample.objects.filter(pk=sample_id)
    try:
        _delete_rows_then_files(samples, samples)
    except _StillReferenced as exc:
        users = sorted({str(getattr(obj, "version", obj)) for obj in exc.holders})
        raise DatasetError(
            f"Model version(s) {', '.join(users[:5])} were trained on this sample: delete those "
            "versions first, or mark the sample 'skipped' to keep it out of future training."
        ) from exc


def set_sample_status(sample_id: int, status: str) -> Sample:
    if status not in SampleStatus.values:
        raise DatasetError(f"Unknown status {status!r}; choose from {', '.join(SampleStatus)}.")
    sample = Sample.objects.get(pk=sample_id)
    if status == SampleStatus.LABELED and sample.current_annotation_id is None:
        raise DatasetError("A sample becomes labeled by submitting an annotation.")
    sample.status = status
    sample.save(update_fields=["status"])
    return sample


# --- Annotations ---------------------------------------------------------------------------


class StaleRevision(DatasetError):
    """The labels were edited from a revision that is no longer the sample's newest."""


def latest_revision(sample: Sample) -> int:
    """The newest revision number of the sample (0 when it has none), current or not."""
    return sample.annotations.order_by("-revision").values_list("revision", flat=True).first() or 0


def _write_revision(
    sample: Sample,
    boxes: list[LabeledBox],
    user,
    source: str,
    *,
    first: bool = False,
    make_current: bool = True,
) -> Annotation:
    # A sample created a moment ago has no revision yet: spare the query.
    last = 0 if first else latest_revision(sample)
    annotation = Annotation.objects.create(
        sample=sample,
        revision=last + 1,
        source=source,
        created_by=user,
        boxes_key=boxes_key(boxes),
    )
    Box.objects.bulk_create(
        Box(annotation=annotation, class_name=b.class_name, x1=b.x1, y1=b.y1, x2=b.x2, y2=b.y2)
        for b in boxes
    )
    if make_current:
        sample.current_annotation = annotation
        sample.status = SampleStatus.LABELED
    else:
        # Held for review: the revision is kept, but what training and triggers read (the
        # current annotation) stays; the sample leaves the queue while it waits.
        sample.status = (
            SampleStatus.LABELED if sample.current_annotation_id else SampleStatus.UNLABELED
        )
    sample.save(update_fields=["current_annotation", "status"])
    return annotation


def submit_annotation(
    sample_id: int,
    boxes: list[LabeledBox],
    *,
    user=None,
    source: str = AnnotationSource.MANUAL,
    base_revision: int | None = None,
    hold_for_review: bool = False,
) -> tuple[Annotation, list[str]]:
    """A new revision of the sample's labels (earlier ones stay); returns it and clip warnings.

    Raises BoxRejected when a box is NaN, inverted, empty, outside the image or of an unknown
    class, and StaleRevision when `base_revision` (the revision the labeler started from, 0 for
    none) is not the sample's newest: nothing is written then. `base_revision=None` skips that
    check (API clients that do not edit a revision).
    `hold_for_review`: write the revision without making it current (see accept_revision); it is
    announced as a label change only when accepted.
    """
    with transaction.atomic():
        sample = Sample.objects.select_for_update().select_related("dataset").get(pk=sample_id)
        if base_revision is not None:
            newest = latest_revision(sample)
            if base_revision != newest:
                raise StaleRevision(
                    f"Sample {sample_id} was changed meanwhile: you started from revision "
                    f"{base_revision}, the newest is {newest}. Reload it to see the newer labels; "
                    "nothing was saved."
                )
        checked = check_boxes(boxes, sample.width, sample.height, sample.dataset.class_names)
        annotation = _write_revision(
            sample, checked.boxes, user, source, make_current=not hold_for_review
        )
        if not hold_for_review:
            announce_labels_changed(
                sample.dataset_id, [sample.pk], source=source, user_id=getattr(user, "pk", None)
            )
    return annotation, checked.warnings


def accept_revision(annotation_id: int, *, user=None) -> bool:
    """Makes a revision held for review the sample's current one (unless a newer revision is
    already current); announces the change with source "review". Returns whether it moved."""
    with transaction.atomic():
        annotation = Annotation.objects.get(pk=annotation_id)
        sample = Sample.objects.select_for_update().get(pk=annotation.sample_id)
        current = sample.current_annotation
        if current is not None and current.revision >= annotation.revision:
            return False
        sample.current_annotation = annotation
        sample.status = SampleStatus.LABELED
        sample.save(update_fields=["current_annotation", "status"])
        announce_labels_changed(
            sample.dataset_id, [sample.pk], source="review", user_id=getattr(user, "pk", None)
        )
    return True


def boxes_by_annotation(annotation_ids) -> dict[int, list[Box]]:
    """The boxes of many annotations in one query."""
    grouped: dict[int, list[Box]] = {}
    for box in Box.objects.filter(annotation_id__in=[a for a in annotation_ids if a]):
        grouped.setdefault(box.annotation_id, []).append(box)
    return grouped


def labeled_snapshot(dataset_id: int, *, split: str | None = None) -> list[tuple[int, int]]:
    """(sample id, current annotation id) of every labeled sample: what a training run freezes."""
    samples = Sample.objects.filter(
        dataset_id=dataset_id, status=SampleStatus.LABELED, current_annotation__isnull=False
    )
    if split:
        samples = samples.filter(split=split)
    return list(samples.order_by("id").values_list("id", "current_annotation_id"))


# --- Browsing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleFilters:
    status: str = ""
    split: str = ""
    source: str = ""
    class_name: str = ""

    @classmethod
    def from_query(cls, query) -> "SampleFilters":
        def value(key: str) -> str:
            # No stored value holds a NUL, and PostgreSQL refuses one in a query: drop it.
            return query.get(key, "").replace("\x00", "").strip()

        return cls(
            status=value("status"),
            split=value("split"),
            source=value("source"),
            class_name=value("class"),
        )

    def as_query(self) -> dict[str, str]:
        values = {
            "status": self.status,
            "split": self.split,
            "source": self.source,
            "class": self.class_name,
        }
        return {key: value for key, value in values.items() if value}


def filtered_samples(dataset_id: int, filters: SampleFilters) -> QuerySet:
    samples = Sample.objects.filter(dataset_id=dataset_id)
    if filters.status:
        samples = samples.filter(status=filters.status)
    if filters.split:
        samples = samples.filter(split=filters.split)
    if filters.source:
        samples = samples.filter(source=filters.source)
    if filters.class_name:
        samples = samples.filter(
            Exists(
                Box.objects.filter(
                    annotation_id=OuterRef("current_annotation_id"),
                    class_name=filters.class_name,
                )
            )
        )
    return samples


@dataclass
class DatasetCounts:
    total: int
    by_status: dict[str, int]
    by_split: dict[str, int]
    boxes_by_class: dict[str, int]


def datasets_with_sample_counts() -> QuerySet:
    """Datasets with ``sample_count``: one index-only count per dataset (a correlated
    subquery), not a join of every sample grouped and sorted."""
    count = (
        Sample.objects.filter(dataset_id=OuterRef("pk"))
        .order_by()
        .values("dataset_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Dataset.objects.annotate(sample_count=Coalesce(Subquery(count), 0))


def count_dataset(dataset_id: int) -> dict:
    """Three grouped queries over the whole dataset, as JSON (see apps.datasets.counts)."""
    samples = Sample.objects.filter(dataset_id=dataset_id)
    return {
        "by_status": dict(samples.values_list("status").annotate(n=Count("id")).order_by()),
        "by_split": dict(samples.values_list("split").annotate(n=Count("id")).order_by()),
        "boxes_by_class": _boxes_by_class(dataset_id),
    }


def compose_counts(raw: dict, class_names: list[str]) -> DatasetCounts:
    by_status, by_split, boxes = raw["by_status"], raw["by_split"], raw["boxes_by_class"]
    return DatasetCounts(
        total=sum(by_status.values()),
        by_status={status: by_status.get(status, 0) for status in SampleStatus.values},
        by_split={split: by_split.get(split, 0) for split in Split.values},
        boxes_by_class={name: boxes.get(name, 0) for name in class_names}
        | {name: n for name, n in boxes.items() if name not in class_names},
    )


def dataset_counts(dataset: Dataset) -> DatasetCounts:
    """Counted now; pages use apps.datasets.counts.cached_dataset_counts."""
    return compose_counts(count_dataset(dataset.pk), dataset.class_names)


def _boxes_by_class(dataset_id: int) -> dict[str, int]:
    current = Sample.objects.filter(dataset_id=dataset_id, current_annotation__isnull=False).values(
        "current_annotation_id"
    )
    rows = (
        Box.objects.filter(annotation_id__in=current)
        .values_list("class_name")
        .annotate(n=Count("id"))
        .order_by()
    )
    return dict(rows)


# --- Uploads -------------------------------------------------------------------------------


def new_staging_prefix() -> str:
    return f"uploads/{uuid.uuid4().hex}"


def stage_upload_file(prefix: str, index: int, name: str, content) -> dict:
    """Keeps an uploaded file in storage until the import job has read it."""
    safe_name = re.sub(r"[^\w.+-]", "_", name.rsplit("/", 1)[-1])[-120:] or "file"
    key = default_storage.save(f"{prefix}/{index:05d}-{safe_name}", content)
    return {"name": name, "key": key}


def start_import(
    dataset: Dataset,
    files,
    *,
    user=None,
    format: str = "auto",
    unknown_classes: str = "reject",
    source: str = "upload",
    started_by: str = "",
    device=None,
    listed_without_labels: str = "unlabeled",
):
    """Stages the uploaded files in storage and queues the import job; returns the Job.

    `files`: (name, file object) pairs. If staging fails, what was staged is removed.
    `device`: the DeviceToken of an edge client that uploads; it may read the job afterwards.
    """
    from apps.jobs.services import start_job

    prefix = new_staging_prefix()
    staged: list[dict] = []
    try:
        for index, (name, content) in enumerate(files):
            staged.append(stage_upload_file(prefix, index, name, content))
        if not staged:
            raise DatasetError("Choose at least one file to upload.")
        return start_job(
            "dataset_import",
            user=user,
            started_by=started_by,
            device=device,
            params={
                "dataset_id": dataset.pk,
                "dataset": dataset.name,
                "format": format,
                "unknown_classes": unknown_classes,
                "listed_without_labels": listed_without_labels,
                "source": source,
                "staged": staged,
            },
        )
    except BaseException:
        delete_files(item["key"] for item in staged)
        raise
