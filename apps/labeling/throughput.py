"""The labeling queue of each loop at a glance: hard examples waiting, and labels saved per day
(the loop page's throughput chart). Counted in SQL, a fixed number of queries."""

from dataclasses import dataclass, field
from datetime import date

from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.dashboard.charts import chart, counts_per_day, last_days, per_day
from apps.datasets.models import Annotation, AnnotationSource, Sample, SampleStatus
from apps.loops.models import Loop

CHART_DAYS = 30


@dataclass
class LoopQueue:
    dataset_id: int
    waiting: int
    labels_chart: dict = field(default_factory=dict)  # the loop page only


def waiting_by_loop(loop_ids) -> dict[int, LoopQueue]:
    """Queued samples of each loop's dataset (loops may share a dataset): one query, each count
    a range of the queue's (dataset, status) index."""
    waiting = (
        Sample.objects.filter(dataset_id=OuterRef("dataset_id"), status=SampleStatus.QUEUED)
        .order_by()
        .values("dataset_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    rows = (
        Loop.objects.filter(pk__in=list(loop_ids))
        .annotate(waiting=Coalesce(Subquery(waiting), 0))
        .values_list("pk", "dataset_id", "waiting")
    )
    return {loop_id: LoopQueue(dataset_id, waiting) for loop_id, dataset_id, waiting in rows}


def labels_saved_per_day(dataset_id: int, days: list[date]) -> dict[date, dict[str, int]]:
    """Samples given a label by hand (a manual revision) each day, in the portal's time zone;
    a sample labeled twice in a day counts once, its relabel on another day counts again."""
    return counts_per_day(
        Annotation.objects.filter(sample__dataset_id=dataset_id, source=AnnotationSource.MANUAL),
        days,
        key="labels",
        distinct="sample_id",
    )


def loop_page_queue(loop_id: int, today: date | None = None) -> LoopQueue:
    queue = waiting_by_loop([loop_id])[loop_id]
    days = last_days(CHART_DAYS, today or timezone.localdate())
    queue.labels_chart = chart(
        per_day(labels_saved_per_day(queue.dataset_id, days), ["labels"], days),
        x="day",
        series={"labels": "samples labeled"},
        x_title="day",
        y_title="samples labeled per day",
        filename=f"labels-per-day-loop-{loop_id}.csv",
        kind="bar",
    )
    return queue
