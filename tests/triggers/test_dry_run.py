"""Dry run: a draft rule replayed against the recorded history, nothing saved."""

from datetime import UTC, time, timedelta

from django.utils import timezone

from apps.datasets.formats.base import LabeledBox
from apps.datasets.models import Annotation
from apps.datasets.services import submit_annotation
from apps.jobs.models import Job
from apps.loops.models import Deployment, Evaluation
from apps.triggers.dryrun import replay
from apps.triggers.models import TriggerRule
from apps.triggers.services import check_rule
from tests.triggers.conftest import label, trained_version


def draft(loop, **fields):
    return TriggerRule(loop=loop, **check_rule(loop, {"name": "draft", **fields}))


def back_date(samples, moments):
    for sample, moment in zip(samples, moments, strict=True):
        Annotation.objects.filter(sample=sample).update(created_at=moment)


def test_sample_count_replay_fires_at_every_nth_label(loop):
    now = timezone.now()
    samples = label(loop, 7)
    back_date(samples, [now - timedelta(hours=10 - i) for i in range(7)])
    result = replay(draft(loop, kind="sample_count", min_samples=3), days=1, now=now)
    # Labels at −10 h … −4 h: the 3rd and the 6th fire (a firing's training saw all before it).
    assert [m.at for m in result.firings] == [now - timedelta(hours=8), now - timedelta(hours=5)]
    assert result.events == 7
    assert not TriggerRule.objects.exists()


def test_replay_does_not_count_a_resave_of_unchanged_boxes(loop):
    now = timezone.now()
    samples = label(loop, 2)
    back_date(samples, [now - timedelta(hours=5)] * 2)
    for sample in samples:  # the same boxes saved again, an hour later
        submit_annotation(sample.pk, [LabeledBox("helmet", 1, 1, 20, 20)])
        Annotation.objects.filter(sample=sample, revision=2).update(
            created_at=now - timedelta(hours=4)
        )
    result = replay(draft(loop, kind="sample_count", min_samples=2), days=1, now=now)
    assert [m.at for m in result.firings] == [now - timedelta(hours=5)]


def test_a_disabled_draft_would_not_fire_and_says_it_is_disabled(loop):
    now = timezone.now()
    samples = label(loop, 6)
    back_date(samples, [now - timedelta(hours=6 - i) for i in range(6)])
    result = replay(draft(loop, kind="sample_count", min_samples=3, enabled=False), days=1, now=now)
    assert result.firings == []
    assert [(m.at, m.what) for m in result.held_back] == [(now - timedelta(hours=4), "disabled")]
    assert result.as_json()["would_fire"] == 0


def test_replay_respects_a_trained_version_window_and_cooldown(loop):
    now = timezone.now()
    old = label(loop, 2)
    back_date(old, [now - timedelta(days=3)] * 2)
    trained_version(loop)  # saw those two, but it is recorded after `now`: not in the replay
    fresh = label(loop, 4)
    back_date(fresh, [now - timedelta(hours=h) for h in (30, 29, 28, 27)])
    result = replay(draft(loop, kind="sample_count", min_samples=2), days=2, now=now)
    # Six unseen labels: 3 at −30 h (fires, its training sees all), 2 at −28 h (fires).
    assert len(result.firings) == 2
    cooled = replay(
        draft(loop, kind="sample_count", min_samples=2, cooldown_minutes=24 * 60),
        days=2,
        now=now,
    )
    assert len(cooled.firings) == 1 and cooled.held_back[0].what == "cooldown"
    start = (now - timedelta(hours=26)).time().replace(second=0, microsecond=0)
    windowed = replay(
        draft(
            loop,
            kind="sample_count",
            min_samples=2,
            window_start=start,
            window_end=(now - timedelta(hours=25)).time().replace(second=0, microsecond=0),
        ),
        days=2,
        now=now,
    )
    # Outside the window while the labels came; it fires when the window opens.
    assert windowed.held_back[0].what == "outside_window"
    assert len(windowed.firings) == 1
    opened = windowed.firings[0].at
    assert opened.astimezone(UTC).time().replace(second=0, microsecond=0) == start


def test_time_rule_replay_and_a_running_job_holds_it_back(loop):
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    job = Job.objects.create(
        kind="train", scope=loop.job_scope, trigger="manual", status="succeeded"
    )
    Job.objects.filter(pk=job.pk).update(
        created_at=now - timedelta(hours=5, minutes=30),
        finished_at=now - timedelta(hours=3, minutes=30),
    )
    result = replay(draft(loop, kind="time", every=1, every_unit="hours"), days=1, now=now)
    assert len(result.firings) == 24 - 2
    assert [m.what for m in result.held_back] == ["job_running"]
    hourly_in_window = replay(
        draft(
            loop,
            kind="time",
            cron="0 * * * *",
            window_start=time(3),
            window_end=time(4),
            action="evaluate",  # no evaluate job ran: nothing but the window holds it back
        ),
        days=3,
        now=now,
    )
    assert [m.at.astimezone(UTC).hour for m in hourly_in_window.firings] == [3, 3, 3]
    assert {m.what for m in hourly_in_window.held_back} == {"outside_window"}


def test_precision_replay_uses_recorded_evaluations_of_the_deployed_version(loop):
    now = timezone.now()
    version = trained_version(loop)
    Deployment.objects.create(loop=loop, version=version, action="deploy", started_by="t")
    Deployment.objects.update(created_at=now - timedelta(days=2))
    for hours, f1 in ((40, 0.8), (30, 0.65), (20, 0.75), (10, 0.6)):
        evaluation = Evaluation.objects.create(
            version=version,
            evaluation_set="edge",
            image_count=30,
            data_sha256="x",
            metrics={"f1": f1},
        )
        Evaluation.objects.filter(pk=evaluation.pk).update(created_at=now - timedelta(hours=hours))
    rule = draft(
        loop, kind="precision", metric="f1", comparison="below", threshold=0.7, min_fresh_samples=20
    )
    result = replay(rule, days=3, now=now)
    assert [m.at for m in result.firings] == [now - timedelta(hours=30), now - timedelta(hours=10)]
    too_many = replay(
        draft(
            loop,
            kind="precision",
            metric="f1",
            comparison="below",
            threshold=0.7,
            min_fresh_samples=31,
        ),
        days=3,
        now=now,
    )
    assert too_many.firings == []
