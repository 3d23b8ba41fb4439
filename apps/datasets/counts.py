"""The dataset page's counts without recounting 100,000 samples on every view.

`dataset_counts` (three grouped queries over the whole dataset) runs once per change of the
dataset; its result is kept in a DatasetCountsCache row. Any write makes it stale: sample saves
and deletes (signals) and every labels_changed announcement add one to the row's generation.
Counts computed while a write happened are not kept: they are stored only if the generation is
still the one read before counting. The row lives in the database, so a write in a worker
process invalidates what the web process shows.
"""

from django.db.models import F
from django.db.models.signals import post_delete, post_save

from apps.datasets.events import labels_changed
from apps.datasets.models import Dataset, DatasetCountsCache, Sample
from apps.datasets.services import DatasetCounts, compose_counts, count_dataset


def cached_dataset_counts(dataset: Dataset) -> DatasetCounts:
    row, _ = DatasetCountsCache.objects.get_or_create(dataset_id=dataset.pk)
    if row.counts_generation == row.generation and row.counts:
        raw = row.counts
    else:
        raw = count_dataset(dataset.pk)
        DatasetCountsCache.objects.filter(dataset_id=dataset.pk, generation=row.generation).update(
            counts=raw, counts_generation=row.generation
        )
    return compose_counts(raw, dataset.class_names)


def write_stamps(dataset_ids) -> dict[int, str]:
    """A stamp per dataset that changes with every write to it (the generation above, with the
    dataset's creation time: ids are reused after a delete), to key counts kept elsewhere: one
    query (two the first time a dataset is stamped)."""
    dataset_ids = set(dataset_ids)
    rows = DatasetCountsCache.objects.filter(dataset_id__in=dataset_ids).values_list(
        "dataset_id", "generation", "dataset__created_at"
    )
    stamps = {pk: f"{generation}@{created.timestamp()}" for pk, generation, created in rows}
    if dataset_ids - set(stamps):
        DatasetCountsCache.objects.bulk_create(
            [DatasetCountsCache(dataset_id=pk) for pk in dataset_ids - set(stamps)],
            ignore_conflicts=True,
        )
        return write_stamps(dataset_ids)
    return stamps


def invalidate(dataset_id: int) -> None:
    DatasetCountsCache.objects.filter(dataset_id=dataset_id).update(generation=F("generation") + 1)


def _on_labels_changed(sender, dataset_id: int, **kwargs) -> None:
    invalidate(dataset_id)


def _on_sample_written(sender, instance: Sample, **kwargs) -> None:
    invalidate(instance.dataset_id)


def connect() -> None:
    labels_changed.connect(_on_labels_changed, dispatch_uid="dataset-counts-labels")
    post_save.connect(_on_sample_written, sender=Sample, dispatch_uid="dataset-counts-save")
    post_delete.connect(_on_sample_written, sender=Sample, dispatch_uid="dataset-counts-delete")
