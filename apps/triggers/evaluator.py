"""Evaluates one rule: its condition, then window, cooldown and the job table; fires once.

Each evaluation runs in one transaction holding the rule's row lock, so concurrent evaluators
(two beat schedulers, several workers handling events) take turns; the unique (rule, key) of
`Firing` makes a firing happen once even where the database has no row locks (SQLite). A
decision is logged only when it fires or when the rule's verdict or reason changes; unchanged
evaluations are counted on the rule.
"""

import functools
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Count, Max
from django.utils import timezone

from apps.jobs.models import ACTIVE_STATUSES, Job, JobStatus, JobTrigger
from apps.jobs.services import (
    JobAlreadyActive,
    JobError,
    JobPermissionDenied,
    never_queued,
    start_job,
)
from apps.loops import services as loops
from apps.triggers import conditions, schedule
from apps.triggers.models import (
    Comparison,
    Decision,
    Firing,
    IntervalUnit,
    RuleAction,
    RuleKind,
    TriggerRule,
    Verdict,
)

logger = logging.getLogger(__name__)
EPSILON = 1e-9
LATE_SLOT_GRACE = timedelta(minutes=5)


class Reason:
    NOT_DUE = "not_due"
    BELOW_COUNT = "below_count"
    TOO_FEW_SAMPLES = "too_few_samples"
    METRIC_OK = "metric_ok"
    NO_DEPLOYED_VERSION = "no_deployed_version"
    NO_BASELINE = "no_baseline"
    NO_VALUE = "no_value"
    MEASURING = "measuring"
    MEASURE_FAILED = "measure_failed"
    CONDITION_MET = "condition_met"
    DISABLED = "disabled"
    OUTSIDE_WINDOW = "outside_window"
    COOLDOWN = "cooldown"
    JOB_RUNNING = "job_running"
    ALREADY_FIRED = "already_fired"
    CANNOT_START = "cannot_start"
    MANUAL = "manual"


@dataclass
class Outcome:
    verdict: str
    reason: str
    message: str
    inputs: dict = field(default_factory=dict)
    fire_key: str | None = None  # set when the condition holds
    slot: datetime | None = None  # a time rule's schedule slot, consumed by this evaluation
    job: Job | None = None
    measure_pairs: list | None = None  # a precision rule needs a fresh measurement


def period(rule: TriggerRule) -> timedelta:
    unit = 3600 if rule.every_unit == IntervalUnit.HOURS else 60
    return timedelta(seconds=rule.every * unit)


def _schedule_start(rule: TriggerRule) -> datetime:
    return max(rule.anchor_at, rule.last_slot_at) if rule.last_slot_at else rule.anchor_at


def next_slot(rule: TriggerRule, now: datetime) -> datetime:
    """The next scheduled moment after `now` (the window may still hold it back)."""
    if rule.cron:
        return schedule.cron_next(rule.cron, rule.time_zone, now)
    step = period(rule)
    slot = schedule.interval_slot(rule.anchor_at, step, now)
    return (slot or rule.anchor_at) + step


def judge_time(rule: TriggerRule, now: datetime) -> Outcome:
    if rule.cron:
        slot = schedule.cron_slot(rule.cron, rule.time_zone, now)
    else:
        slot = schedule.interval_slot(rule.anchor_at, period(rule), now)
    due = slot is not None and slot > _schedule_start(rule)
    upcoming = next_slot(rule, now)
    inputs = {"slot": slot.isoformat() if due else None, "next": upcoming.isoformat()}
    if not due:
        return Outcome(
            Verdict.WAITING, Reason.NOT_DUE, f"Next at {upcoming:%Y-%m-%d %H:%M %Z}", inputs
        )
    return Outcome(
        Verdict.FIRED,
        Reason.CONDITION_MET,
        f"Scheduled for {slot:%Y-%m-%d %H:%M %Z}",
        inputs,
        # Cron slots are keyed by local wall time: a time the autumn clock change repeats
        # (02:30 twice) fires once, as cron does.
        fire_key=f"slot:{slot.replace(tzinfo=None).isoformat() if rule.cron else slot.isoformat()}",
        slot=slot,
    )


def judge_sample_count(rule: TriggerRule, now: datetime) -> Outcome:
    unseen = conditions.unseen_labeled_samples(rule.loop, rule.class_name).aggregate(
        count=Count("pk"), newest=Max("current_annotation_id")
    )
    count = unseen["count"]
    trained = conditions.latest_trained_version(rule.loop)
    of_class = f" of class {rule.class_name}" if rule.class_name else ""
    inputs = {
        "unseen_labels": count,
        "min_samples": rule.min_samples,
        "class_name": rule.class_name,
        "latest_trained": trained.label if trained else None,
    }
    text = f"{count} of {rule.min_samples} new labels{of_class}"
    if count < rule.min_samples:
        return Outcome(Verdict.WAITING, Reason.BELOW_COUNT, text, inputs)
    # The same labels fire once: a new label (or relabel), or a new trained version, is new
    # evidence. A failed training is therefore not retried until then (or "Fire now").
    evidence = f"labels:v{trained.pk if trained else 0}:a{unseen['newest']}:n{count}"
    return Outcome(Verdict.FIRED, Reason.CONDITION_MET, text, inputs, fire_key=evidence)


def judge_precision(rule: TriggerRule, now: datetime) -> Outcome:
    loop = rule.loop
    deployed = loop.deployed_version
    if deployed is None:
        return Outcome(Verdict.WAITING, Reason.NO_DEPLOYED_VERSION, "No version is deployed.")
    since = conditions.deployed_since(loop)
    pairs = conditions.fresh_edge_pairs(loop, since)
    label = f"{rule.metric}" + (f"[{rule.class_name}]" if rule.class_name else "")
    inputs = {
        "deployed": deployed.label,
        "since": since.isoformat(),
        "fresh_samples": len(pairs),
        "min_fresh_samples": rule.min_fresh_samples,
        "metric": label,
    }
    if len(pairs) < rule.min_fresh_samples:
        return Outcome(
            Verdict.WAITING,
            Reason.TOO_FEW_SAMPLES,
            f"{len(pairs)} of {rule.min_fresh_samples} fresh labeled edge samples since "
            f"{deployed.label} was deployed",
            inputs,
        )
    value = _measured_value(rule, deployed, pairs, inputs)
    if isinstance(value, Outcome):
        return value
    inputs["value"] = value
    if rule.comparison == Comparison.BELOW:
        inputs["bound"] = rule.threshold
        holds = value < rule.threshold
        text = f"{label} {value:.3f} on {rule.measured_count} fresh samples " + (
            f"< {rule.threshold}" if holds else f"≥ {rule.threshold}"
        )
    else:
        baseline = conditions.value_at_deploy(deployed.pk, rule.metric, rule.class_name, since)
        if baseline is None:
            return Outcome(
                Verdict.WAITING,
                Reason.NO_BASELINE,
                f"{deployed.label} has no edge evaluation of {label} to compare with.",
                inputs,
            )
        drop = baseline - value
        inputs.update(at_deploy=baseline, drop=drop, max_drop=rule.threshold)
        holds = drop >= rule.threshold - EPSILON
        text = (
            f"{label} {value:.3f} on {rule.measured_count} fresh samples, {baseline:.3f} at "
            f"deploy: drop {drop:.3f} " + ("≥" if holds else "<") + f" {rule.threshold}"
        )
    if not holds:
        return Outcome(Verdict.WAITING, Reason.METRIC_OK, text, inputs)
    return Outcome(
        Verdict.FIRED, Reason.CONDITION_MET, text, inputs, fire_key=f"fresh:{rule.measured_key}"
    )


def _measured_key_prefix(version_id) -> str:
    return f"v{version_id}:"


def _measured_key(version_id, pairs) -> str:
    """A measurement is of one deployed version on these pairs: its key names both."""
    return _measured_key_prefix(version_id) + conditions.pairs_key(pairs)


def _measured_value(rule: TriggerRule, deployed, pairs: list, inputs: dict):
    """The metric on the fresh samples; an Outcome while it is being (or cannot be) measured.

    A measurement is repeated once min_fresh_samples more fresh samples have arrived. One of
    another deployed version never counts, even if the deploy's reset (an on-commit receiver in
    the deploying process) was lost."""
    key = _measured_key(deployed.pk, pairs)
    if rule.measured_key and not rule.measured_key.startswith(_measured_key_prefix(deployed.pk)):
        rule.measured_key, rule.measured_value, rule.measured_count = "", None, 0
    job = rule.measure_job  # one of another version, once done (an active one blocks its scope)
    if job and job.params.get("version_id") != deployed.pk and job.status not in ACTIVE_STATUSES:
        rule.measure_job = None
    stale_by = len(pairs) - rule.measured_count
    if rule.measured_key and (rule.measured_key == key or stale_by < rule.min_fresh_samples):
        if rule.measured_value is None:
            return Outcome(
                Verdict.WAITING,
                Reason.NO_VALUE,
                f"The evaluation gave no {rule.metric} for class {rule.class_name!r} "
                "(no such objects in the fresh samples).",
                inputs,
            )
        return rule.measured_value
    job = rule.measure_job
    if job is not None and never_queued(job):  # the broker was away: measure again
        inputs["unqueued_job"], rule.measure_job, job = job.pk, None, None
    if job is not None and job.status in ACTIVE_STATUSES:
        inputs["measure_job"] = job.pk
        return Outcome(
            Verdict.MEASURING, Reason.MEASURING, f"Measuring in job #{job.pk}", inputs, job=job
        )
    if job is not None and job.params.get("sample_ids") is not None:
        measured = [tuple(p) for p in job.result.get("pairs", [])] if job.result else []
        rule.measure_job = None
        if job.status == JobStatus.SUCCEEDED:
            rule.measured_key = _measured_key(job.params.get("version_id"), measured)
            rule.measured_count = len(measured)
            rule.measured_value = conditions.metric_value(
                job.result.get("metrics"), rule.metric, rule.class_name
            )
            inputs["measured_in_job"] = job.pk
            return _measured_value(rule, deployed, pairs, inputs)
        rule.measured_key, rule.measured_count = key, len(pairs)
        rule.measured_value = None
        return Outcome(
            Verdict.ERROR,
            Reason.MEASURE_FAILED,
            f"The measuring job #{job.pk} {job.status}: {job.message}"[:300],
            inputs,
            job=job,
        )
    return Outcome(
        Verdict.MEASURING,
        Reason.MEASURING,
        f"Measuring {rule.metric} on {len(pairs)} fresh samples",
        inputs,
        measure_pairs=pairs,
    )


JUDGES = {
    RuleKind.TIME: judge_time,
    RuleKind.SAMPLE_COUNT: judge_sample_count,
    RuleKind.PRECISION: judge_precision,
}


def _started_by(rule: TriggerRule, cause: str) -> str:
    return f"rule #{rule.pk} {rule.name} ({cause})"[:200]


class NothingToEvaluate(Exception):
    pass


def start_action(rule: TriggerRule, cause: str, *, user=None) -> Job:
    trigger = JobTrigger.MANUAL if user is not None else JobTrigger.RULE
    loop = rule.loop
    if rule.action == RuleAction.TRAIN:
        return loops.start_training(
            loop, user=user, trigger=trigger, started_by=_started_by(rule, cause), rule_id=rule.pk
        )
    if loop.deployed_version is None:
        raise NothingToEvaluate("No version is deployed: there is nothing to evaluate.")
    return loops.start_evaluation(
        loop.deployed_version, user=user, trigger=trigger, started_by=_started_by(rule, cause)
    )


def _fire(rule: TriggerRule, outcome: Outcome, now: datetime, cause: str, user=None) -> Outcome:
    """Starts the rule's job once for outcome.fire_key, or says why not."""
    try:
        with transaction.atomic():
            firing = Firing.objects.create(rule=rule, key=outcome.fire_key[:80])
            job = start_action(rule, cause, user=user)
            firing.job = job
            firing.save(update_fields=["job"])
    except IntegrityError:
        return _already_fired(rule, outcome)
    except JobAlreadyActive as exc:
        outcome = _suppress(outcome, Reason.JOB_RUNNING, f"{exc.job.kind} job #{exc.job.pk} runs")
        outcome.job = exc.job
        return outcome
    except NothingToEvaluate as exc:
        return Outcome(Verdict.WAITING, Reason.NO_DEPLOYED_VERSION, str(exc), outcome.inputs)
    except JobPermissionDenied:
        raise
    except (loops.LoopError, JobError) as exc:
        return _suppress(outcome, Reason.CANNOT_START, str(exc))
    rule.last_fired_at = now
    rule.fire_count += 1
    outcome.verdict, outcome.job = Verdict.FIRED, job
    outcome.message = f"{outcome.message}: started {job.kind} job #{job.pk}"[:300]
    return outcome


_FIRES_AGAIN = {
    RuleKind.TIME: "the next slot or Fire now starts it again",
    RuleKind.SAMPLE_COUNT: "a new label, a new trained version or Fire now starts it again",
    RuleKind.PRECISION: "new fresh samples or Fire now start it again",
}


def _already_fired(rule: TriggerRule, outcome: Outcome) -> Outcome:
    """The same evidence fired before (this rule's earlier firing, or a concurrent evaluator):
    says what became of that firing's job."""
    firing = (
        Firing.objects.filter(rule=rule, key=outcome.fire_key[:80]).select_related("job").first()
    )
    job = firing.job if firing else None
    if firing is None:
        why = "another evaluator already fired it"
    elif job is None:
        why = "it already fired for this (its job no longer exists)"
    elif job.status in ACTIVE_STATUSES:
        why = f"it already started {job.kind} job #{job.pk}, which is {job.status}"
    elif job.status == JobStatus.SUCCEEDED:
        why = f"it already fired: {job.kind} job #{job.pk} succeeded"
    else:
        ended = f"{job.status}" + (f" ({job.message[:120]})" if job.message else "")
        why = (
            f"it already fired: {job.kind} job #{job.pk} {ended}; not retried for the same "
            f"evidence: {_FIRES_AGAIN[rule.kind]}"
        )
    outcome = _suppress(outcome, Reason.ALREADY_FIRED, why)
    outcome.job = job
    if job is not None:
        outcome.inputs["fired_job"] = job.pk
        outcome.inputs["fired_job_status"] = job.status
    return outcome


def _suppress(outcome: Outcome, reason: str, why: str) -> Outcome:
    outcome.verdict, outcome.reason = Verdict.SUPPRESSED, reason
    outcome.message = f"{outcome.message} — not fired: {why}"[:300]
    return outcome


def measure_scope(loop) -> str:
    return f"{loop.job_scope}:measure"


def _start_measurement(rule: TriggerRule, outcome: Outcome, cause: str) -> Outcome:
    loop = rule.loop
    try:
        # Its own scope: a measurement never blocks the loop's evaluations (the one after a
        # training, a click on Evaluate), nor do they block it.
        job = start_job(
            "evaluate",
            trigger=JobTrigger.RULE,
            started_by=_started_by(rule, cause),
            scope=measure_scope(loop),
            params={
                "loop_id": loop.pk,
                "version_id": loop.deployed_version_id,
                "sample_ids": [sample_id for sample_id, _ in outcome.measure_pairs],
            },
        )
    except JobAlreadyActive as exc:
        outcome = _suppress(outcome, Reason.JOB_RUNNING, f"{exc.job.kind} job #{exc.job.pk} runs")
        outcome.job = exc.job
        return outcome
    except JobError as exc:  # another measurement finished in between: the next evaluation tries
        return _suppress(outcome, Reason.CANNOT_START, str(exc))
    rule.measure_job = job
    outcome.job = job
    outcome.message = f"{outcome.message}: started evaluation job #{job.pk}"
    outcome.inputs["measure_job"] = job.pk
    return outcome


def evaluate_rule(rule_id: int, *, now: datetime | None = None, cause: str = "beat"):
    """One evaluation of one rule; returns the logged Decision, or None if nothing changed."""
    now = now or timezone.now()
    with transaction.atomic():
        rule = (
            TriggerRule.objects.select_for_update(of=("self",))
            .select_related("loop__deployed_version", "loop__dataset", "measure_job")
            .filter(pk=rule_id)
            .first()
        )
        if rule is None:
            return None
        _release_unqueued_firing(rule, now, cause)
        outcome = JUDGES[rule.kind](rule, now)
        if outcome.slot is not None:
            rule.last_slot_at = outcome.slot  # a slot is used once, whatever comes of it
        if not rule.enabled:
            outcome = Outcome(
                Verdict.SUPPRESSED, Reason.DISABLED, f"Disabled ({outcome.message})", outcome.inputs
            )
        elif outcome.fire_key is not None or outcome.measure_pairs is not None:
            outcome = _gate(rule, outcome, now)
            if outcome.fire_key is not None and outcome.verdict == Verdict.FIRED:
                outcome = _fire(rule, outcome, now, cause)
            elif outcome.measure_pairs is not None and outcome.verdict == Verdict.MEASURING:
                outcome = _start_measurement(rule, outcome, cause)
        return _record(rule, outcome, now, cause)


def _in_window(rule: TriggerRule, outcome: Outcome, now: datetime) -> bool:
    """A time rule's slot is judged at its own time: the beat (or a backlog on the default
    queue) may reach a slot from the window's last seconds after the window closed. A slot
    judged more than LATE_SLOT_GRACE after it came (downtime) also needs `now` in the window."""
    inside = functools.partial(
        schedule.in_window, start=rule.window_start, end=rule.window_end, tz=rule.time_zone
    )
    if outcome.slot is None:
        return inside(now)
    return inside(outcome.slot) and (now - outcome.slot <= LATE_SLOT_GRACE or inside(now))


def _release_unqueued_firing(rule: TriggerRule, now: datetime, cause: str) -> None:
    """A firing whose job never reached the queue (the broker was away when the firing's
    transaction committed) is not used up: it is deleted, its slot is due again, and this
    evaluation may fire again. Logged as `cannot_start` with the job's reason."""
    # Looked at in every evaluation: one between the firing's commit and the failed enqueue
    # saw the job still queued and logged something else (cooldown, already_fired).
    firing = rule.firings.select_related("job").order_by("-id").first()
    if firing is None or firing.job is None or not never_queued(firing.job):
        return
    job = firing.job
    fired = rule.decisions.filter(job=job, verdict=Verdict.FIRED).order_by("-id").first()
    slot = fired.inputs.get("slot") if fired and firing.key.startswith("slot:") else None
    if slot:
        rule.last_slot_at = datetime.fromisoformat(slot) - timedelta(microseconds=1)
    firing.delete()
    rule.fire_count = max(rule.fire_count - 1, 0)
    earlier = (
        rule.decisions.filter(verdict=Verdict.FIRED)
        .exclude(job__status=JobStatus.FAILED, job__started_at=None)
        .order_by("-at", "-id")
        .first()
    )
    rule.last_fired_at = earlier.at if earlier else None
    _record(
        rule,
        Outcome(
            Verdict.SUPPRESSED,
            Reason.CANNOT_START,
            f"{job.kind} job #{job.pk} was never started: {job.message}"[:240]
            + " — not counted as a firing; tried again now",
            {"unqueued_job": job.pk},
            job=job,
        ),
        now,
        cause,
    )


def _gate(rule: TriggerRule, outcome: Outcome, now: datetime) -> Outcome:
    """Disabled, window and cooldown hold back a rule whose condition holds."""
    if not _in_window(rule, outcome, now):
        outcome.inputs["window"] = (
            f"{rule.window_start:%H:%M}–{rule.window_end:%H:%M} {rule.time_zone}"
        )
        return _suppress(
            outcome, Reason.OUTSIDE_WINDOW, "outside its window " + outcome.inputs["window"]
        )
    if outcome.measure_pairs is None and rule.cooldown_minutes and rule.last_fired_at:
        ready_at = rule.last_fired_at + timedelta(minutes=rule.cooldown_minutes)
        if now < ready_at:
            outcome.inputs["cooldown_until"] = ready_at.isoformat()
            return _suppress(outcome, Reason.COOLDOWN, f"cooling down until {ready_at:%H:%M:%S}")
    return outcome


def _record(rule: TriggerRule, outcome: Outcome, now: datetime, cause: str):
    started_something = outcome.verdict == Verdict.FIRED or (
        outcome.verdict == Verdict.MEASURING and outcome.measure_pairs is not None
    )
    changed = (outcome.verdict, outcome.reason) != (rule.last_verdict, rule.last_reason)
    # An earlier firing's job that ended (ran, failed, was lost) is news, though the reason stays.
    changed = changed or (
        outcome.reason == Reason.ALREADY_FIRED
        and outcome.inputs.get("fired_job_status") != rule.last_inputs.get("fired_job_status")
    )
    decision = None
    if started_something or changed or cause == "manual":
        decision = Decision.objects.create(
            rule=rule,
            at=now,
            cause=cause,
            verdict=outcome.verdict,
            reason=outcome.reason,
            message=outcome.message[:300],
            inputs=outcome.inputs,
            job=outcome.job,
            idle_before=rule.idle_evaluations,
        )
        rule.idle_evaluations = 0
    else:
        rule.idle_evaluations += 1
    rule.last_verdict, rule.last_reason = outcome.verdict, outcome.reason
    rule.last_message = outcome.message[:300]
    rule.last_inputs = outcome.inputs
    rule.last_evaluated_at = now
    rule.save(
        update_fields=[
            "last_slot_at",
            "last_fired_at",
            "fire_count",
            "last_verdict",
            "last_reason",
            "last_message",
            "last_inputs",
            "last_evaluated_at",
            "idle_evaluations",
            "measure_job",
            "measured_key",
            "measured_value",
            "measured_count",
        ]
    )
    return decision


def fire_now(rule_id: int, *, user, now: datetime | None = None) -> Decision:
    """ "Fire now": the rule's action at once, whatever its condition, window and cooldown.

    The job table still refuses a second job of the same kind for the loop (logged as such)."""
    now = now or timezone.now()
    with transaction.atomic():
        rule = (
            TriggerRule.objects.select_for_update(of=("self",))
            .select_related("loop__deployed_version", "loop__dataset")
            .get(pk=rule_id)
        )
        outcome = Outcome(
            Verdict.FIRED,
            Reason.MANUAL,
            f"Fired by hand by {user.get_username()}",
            {"by": user.get_username()},
            fire_key=f"manual:{now.isoformat()}:{rule.fire_count + 1}",
        )
        outcome = _fire(rule, outcome, now, "manual", user=user)
        return _record(rule, outcome, now, "manual")


def evaluate_rules(rule_ids, *, cause: str, now: datetime | None = None) -> int:
    """Evaluates each rule on its own; one that fails is logged and the others go on."""
    evaluated = 0
    for rule_id in rule_ids:
        try:
            evaluate_rule(rule_id, now=now, cause=cause)
            evaluated += 1
        except Exception:
            logger.exception("evaluating trigger rule %s failed", rule_id)
    return evaluated


def reset_since_deploy(loop_id: int) -> None:
    """A new deployed version: measurements of the previous one no longer apply."""
    TriggerRule.objects.filter(loop_id=loop_id, kind=RuleKind.PRECISION).update(
        measured_key="", measured_value=None, measured_count=0, measure_job=None
    )
