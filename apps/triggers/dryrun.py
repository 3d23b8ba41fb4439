"""Dry run: replay the recorded history of a loop against a draft rule, before it is saved.

History is what the database keeps: annotation revisions (when each label was written), the
trained versions and what they saw (TrainedSample), the jobs that ran (a job of the rule's kind
then running holds it back), deployments and edge evaluations (recorded and trigger
measurements). The replay evaluates the draft at every recorded event and every schedule slot,
applies window and cooldown, and assumes a firing's training saw every label present then.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from croniter import croniter
from django.db.models import Q
from django.utils import timezone

from apps.datasets.models import Annotation, Box, Split
from apps.jobs.models import Job
from apps.loops.models import (
    Deployment,
    Evaluation,
    EvaluationSet,
    TrainedSample,
    VersionSource,
)
from apps.triggers import conditions, schedule
from apps.triggers.models import Comparison, IntervalUnit, RuleAction, RuleKind, TriggerRule

MAX_DAYS = 90
MAX_STEPS = 20_000
MAX_LISTED = 200


@dataclass
class Moment:
    at: datetime
    what: str  # "fire" or a suppression reason
    message: str

    def as_json(self) -> dict:
        return {"at": self.at.isoformat(), "verdict": self.what, "message": self.message}


@dataclass
class Replay:
    start: datetime
    end: datetime
    events: int = 0
    firings: list[Moment] = field(default_factory=list)
    held_back: list[Moment] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "events_replayed": self.events,
            "would_fire": len(self.firings),
            "firings": [m.as_json() for m in self.firings[:MAX_LISTED]],
            "held_back": [m.as_json() for m in self.held_back[:MAX_LISTED]],
        }


class _Gate:
    """Disabled, window, cooldown and a job of the action's kind then running, as the evaluator
    does."""

    def __init__(self, rule: TriggerRule, busy: list[tuple[datetime, datetime]], replay: Replay):
        self.rule, self.busy, self.replay = rule, busy, replay
        self.last_fired: datetime | None = None

    def try_fire(self, at: datetime, message: str) -> bool:
        rule = self.rule
        reason = None
        if not rule.enabled:
            reason = "disabled"
        elif not schedule.in_window(at, rule.window_start, rule.window_end, rule.time_zone):
            reason = "outside_window"
        elif (
            rule.cooldown_minutes
            and self.last_fired
            and at < self.last_fired + timedelta(minutes=rule.cooldown_minutes)
        ):
            reason = "cooldown"
        elif any(start <= at < end for start, end in self.busy):
            reason = "job_running"
        if reason:
            if not self.replay.held_back or self.replay.held_back[-1].what != reason:
                self.replay.held_back.append(Moment(at, reason, message))
            return False
        self.last_fired = at
        self.replay.firings.append(Moment(at, "fire", message))
        return True


def _busy_intervals(rule: TriggerRule, start: datetime, end: datetime):
    kind = "train" if rule.action == RuleAction.TRAIN else "evaluate"
    jobs = Job.objects.filter(kind=kind, scope=rule.loop.job_scope, created_at__lt=end).filter(
        Q(finished_at__isnull=True) | Q(finished_at__gt=start)
    )
    return [(job.created_at, job.finished_at or end) for job in jobs]


def replay(rule: TriggerRule, *, days: int, now: datetime | None = None) -> Replay:
    end = now or timezone.now()
    start = end - timedelta(days=days)
    result = Replay(start=start, end=end)
    gate = _Gate(rule, _busy_intervals(rule, start, end), result)
    if rule.kind == RuleKind.TIME:
        _replay_time(rule, gate, result)
    elif rule.kind == RuleKind.SAMPLE_COUNT:
        _replay_sample_count(rule, gate, result)
    else:
        _replay_precision(rule, gate, result)
    return result


def _replay_time(rule, gate, result):
    if rule.cron:
        slots = croniter(rule.cron, result.start.astimezone(schedule.zone(rule.time_zone)))
        step = lambda: slots.get_next(datetime)  # noqa: E731
    else:
        unit = 3600 if rule.every_unit == IntervalUnit.HOURS else 60
        period = timedelta(seconds=rule.every * unit)
        moments = iter(result.start + period * k for k in range(1, MAX_STEPS + 1))
        step = lambda: next(moments)  # noqa: E731
    for _ in range(MAX_STEPS):
        slot = step()
        if slot > result.end:
            break
        result.events += 1
        gate.try_fire(slot, "scheduled")


def _window_openings(rule, start, end):
    if rule.window_start is None:
        return []
    moment, found = start, []
    while moment < end and len(found) < MAX_DAYS + 2:
        opening = schedule.next_window_opening(
            moment, rule.window_start, rule.window_end, rule.time_zone
        )
        if opening != moment and opening < end:
            found.append(opening)
        moment = opening + timedelta(days=1) if opening != moment else moment + timedelta(hours=1)
    return found


def _replay_sample_count(rule, gate, result):
    loop = rule.loop
    annotations = Annotation.objects.filter(
        sample__dataset_id=loop.dataset_id, sample__split=Split.TRAIN, created_at__lte=result.end
    ).order_by("created_at", "id")
    with_class = None
    if rule.class_name:
        with_class = set(
            Box.objects.filter(
                annotation__sample__dataset_id=loop.dataset_id, class_name=rule.class_name
            ).values_list("annotation_id", flat=True)
        )
    versions = loop.versions.filter(source=VersionSource.TRAINED, created_at__lte=result.end)
    # A revision is seen when the version saw it or a revision of the same sample with the same
    # boxes (conditions.unseen_labeled): compared as (sample, content).
    content_of: dict[int, str] = {}
    seen_of = {}
    for version_id, sample_id, annotation_id, key in TrainedSample.objects.filter(
        version__in=versions
    ).values_list("version_id", "sample_id", "annotation_id", "annotation__boxes_key"):
        seen_of.setdefault(version_id, set()).add((sample_id, key or annotation_id))

    current: dict[int, int] = {}  # sample → its annotation at the replayed moment
    seen: set = set()
    events = []  # (time, order, kind, payload)
    for annotation in annotations.values("id", "sample_id", "created_at", "boxes_key"):
        content_of[annotation["id"]] = annotation["boxes_key"] or annotation["id"]
        if annotation["created_at"] <= result.start:
            current[annotation["sample_id"]] = annotation["id"]
        else:
            events.append((annotation["created_at"], 1, "label", annotation))
    for version in versions.order_by("created_at"):
        if version.created_at <= result.start:
            seen = seen_of.get(version.pk, set())
        else:
            events.append((version.created_at, 0, "trained", version.pk))
    for opening in _window_openings(rule, result.start, result.end):
        events.append((opening, 2, "window", None))
    events.sort(key=lambda event: (event[0], event[1]))

    def unseen() -> int:
        return sum(
            1
            for sample_id, annotation_id in current.items()
            if (sample_id, content_of[annotation_id]) not in seen
            and (with_class is None or annotation_id in with_class)
        )

    for at, _, kind, payload in events[:MAX_STEPS]:
        result.events += 1
        if kind == "label":
            current[payload["sample_id"]] = payload["id"]
        elif kind == "trained":
            seen = seen_of.get(payload, set())
        count = unseen()
        if count >= rule.min_samples and gate.try_fire(at, f"{count} of {rule.min_samples} labels"):
            # the firing's training sees everything present
            seen = {(sample_id, content_of[a]) for sample_id, a in current.items()}


def _replay_precision(rule, gate, result):
    """Recorded measurements of the version deployed at the time: edge evaluations and the
    measurements precision rules asked for."""
    loop = rule.loop
    deployments = list(Deployment.objects.filter(loop=loop).order_by("created_at", "id"))

    def deployed_at(moment):
        live = [d for d in deployments if d.created_at <= moment]
        return live[-1] if live else None

    measurements = []
    for evaluation in Evaluation.objects.filter(
        version__loop=loop,
        evaluation_set=EvaluationSet.EDGE,
        created_at__gt=result.start,
        created_at__lte=result.end,
    ):
        measurements.append(
            (
                evaluation.created_at,
                evaluation.version_id,
                evaluation.metrics,
                evaluation.image_count,
            )
        )
    for job in Job.objects.filter(
        kind="evaluate",
        scope__startswith=loop.job_scope,
        status="succeeded",
        finished_at__gt=result.start,
        finished_at__lte=result.end,
        params__has_key="sample_ids",
    ):
        pairs = job.result.get("pairs", [])
        measurements.append(
            (job.finished_at, job.params["version_id"], job.result.get("metrics"), len(pairs))
        )
    measurements.sort(key=lambda measurement: measurement[0])
    for at, version_id, metrics, count in measurements:
        result.events += 1
        deployment = deployed_at(at)
        if deployment is None or deployment.version_id != version_id:
            continue
        if count < rule.min_fresh_samples:
            continue
        value = conditions.metric_value(metrics, rule.metric, rule.class_name)
        if value is None:
            continue
        if rule.comparison == Comparison.BELOW:
            holds, text = value < rule.threshold, f"{rule.metric} {value:.3f} < {rule.threshold}"
        else:
            baseline = conditions.value_at_deploy(
                version_id, rule.metric, rule.class_name, deployment.created_at
            )
            if baseline is None:
                continue
            drop = baseline - value
            holds = drop >= rule.threshold - 1e-9
            text = f"{rule.metric} dropped {drop:.3f} since deploy"
        if holds:
            gate.try_fire(at, f"{text} on {count} samples")
