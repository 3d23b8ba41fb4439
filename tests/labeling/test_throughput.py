"""The labeling queue's numbers on the dashboard: waiting per loop, labels saved per day."""

from datetime import timedelta

from django.utils import timezone

from apps.dashboard.charts import last_days
from apps.datasets.formats.base import LabeledBox
from apps.datasets.models import Annotation
from apps.datasets.services import submit_annotation
from apps.labeling.throughput import labels_saved_per_day, loop_page_queue, waiting_by_loop
from apps.loops.models import Loop
from tests.factories import DatasetFactory
from tests.labeling.conftest import queued_samples


def test_waiting_counts_the_queued_samples_of_each_loops_dataset(dataset):
    other = DatasetFactory(name="other")
    queued_samples(dataset, 3)
    queued_samples(other, 1, start=50)
    first = Loop.objects.create(name="a", dataset=dataset, algorithm_yaml="x: 1\n")
    same_data = Loop.objects.create(name="b", dataset=dataset, algorithm_yaml="x: 1\n")
    elsewhere = Loop.objects.create(name="c", dataset=other, algorithm_yaml="x: 1\n")
    empty = Loop.objects.create(
        name="d", dataset=DatasetFactory(name="empty"), algorithm_yaml="x: 1\n"
    )
    waiting = waiting_by_loop([first.pk, same_data.pk, elsewhere.pk, empty.pk])
    assert {pk: q.waiting for pk, q in waiting.items()} == {
        first.pk: 3,
        same_data.pk: 3,
        elsewhere.pk: 1,
        empty.pk: 0,
    }
    assert waiting[elsewhere.pk].dataset_id == other.pk


def test_labels_per_day_count_samples_labeled_by_hand_once_a_day(dataset):
    samples = queued_samples(dataset, 3)
    box = [LabeledBox("helmet", 1, 1, 20, 20)]
    for sample in samples:
        submit_annotation(sample.pk, box)
    submit_annotation(samples[0].pk, box)  # relabeled the same day: still one sample
    submit_annotation(samples[1].pk, box, source="import")  # not by hand
    yesterday = Annotation.objects.filter(sample=samples[2]).latest("revision")
    Annotation.objects.filter(pk=yesterday.pk).update(created_at=timezone.now() - timedelta(days=1))
    today = timezone.localdate()
    days = last_days(3, today)
    assert labels_saved_per_day(dataset.pk, days) == {
        today: {"labels": 2},
        today - timedelta(days=1): {"labels": 1},
    }
    loop = Loop.objects.create(name="a", dataset=dataset, algorithm_yaml="x: 1\n")
    chart = loop_page_queue(loop.pk, today).labels_chart
    assert len(chart["points"]) == 30 and chart["points"][-1] == {
        "day": today.isoformat(),
        "labels": 2,
    }
    assert chart["points"][0]["labels"] == 0 and chart["xTitle"] and chart["yTitle"]
