"""How far a rule is from firing, in words ("37 of 50 labels", "next at 02:00") and as a
progress of labels; and the trigger overview of many loops at once (home page, loop page) in a
fixed number of queries."""

from dataclasses import dataclass, field
from datetime import datetime

from django.core.cache import cache
from django.db.models import Count, OuterRef, Subquery
from django.utils import timezone

from apps.datasets.counts import write_stamps
from apps.datasets.models import Sample
from apps.triggers import conditions, schedule
from apps.triggers.evaluator import next_slot
from apps.triggers.models import Decision, RuleKind, TriggerRule

LOOP_PAGE_DECISIONS = 10
UNSEEN_CACHE_SECONDS = 60


def distance_to_firing(
    rule: TriggerRule, now: datetime | None = None, *, unseen: int | None = None
) -> str:
    """`unseen`: the rule's count of unseen labels when already counted (unseen_label_counts)."""
    now = now or timezone.now()
    if not rule.enabled:
        return "disabled"
    if rule.kind == RuleKind.TIME:
        upcoming = next_slot(rule, now)
        opening = schedule.next_window_opening(
            upcoming, rule.window_start, rule.window_end, rule.time_zone
        )
        local = upcoming.astimezone(schedule.zone(rule.time_zone))
        text = f"next at {local:%Y-%m-%d %H:%M} {rule.time_zone}"
        if opening != upcoming:
            text += " (outside the window: skipped; the window opens again at "
            text += f"{opening.astimezone(schedule.zone(rule.time_zone)):%H:%M})"
        return text
    if rule.kind == RuleKind.SAMPLE_COUNT:
        if unseen is None:
            unseen = conditions.unseen_labeled_samples(rule.loop, rule.class_name).count()
        of_class = f" of class {rule.class_name}" if rule.class_name else ""
        return f"{unseen} of {rule.min_samples} labels{of_class}"
    return rule.last_message or "not evaluated yet"


def unseen_label_counts(rules, latest: dict[int, int] | None = None) -> dict[int, int]:
    """Each sample-count rule's unseen labels (what the evaluator counts), by rule id, in a
    fixed number of queries whatever the number of rules and loops: the datasets' write stamps,
    then (unless kept) one query of one filtered count per rule. `latest`: loop id → its latest
    trained version's id, when known.

    At 100,000 samples the count takes 0.1–0.2 s on SQLite, so a count is kept (cache) under
    the dataset's write stamp (apps.datasets.counts: any sample write or label changes it) and
    the latest trained version; at most UNSEEN_CACHE_SECONDS for a write that bypassed both."""
    counted = [rule for rule in rules if rule.kind == RuleKind.SAMPLE_COUNT]
    if not counted:
        return {}
    if latest is None:
        latest = conditions.latest_trained_version_ids({rule.loop_id for rule in counted})
    dataset_of = {rule.loop_id: rule.loop.dataset_id for rule in counted}
    stamps = write_stamps(dataset_of.values())
    keys = {}
    for rule in counted:
        dataset_id = dataset_of[rule.loop_id]
        version_id = latest.get(rule.loop_id)
        keys[rule.pk] = f"unseen-labels:{dataset_id}:{stamps[dataset_id]}:{version_id}"
        keys[rule.pk] += f":{rule.class_name}"
    kept = cache.get_many(list(keys.values()))
    missing = [rule for rule in counted if keys[rule.pk] not in kept]
    if missing:
        fresh = Sample.objects.filter(dataset_id__in={dataset_of[r.loop_id] for r in missing})
        fresh = fresh.aggregate(
            **{
                f"rule_{rule.pk}": Count(
                    "pk",
                    filter=conditions.unseen_labeled(
                        dataset_of[rule.loop_id], latest.get(rule.loop_id), rule.class_name
                    ),
                )
                for rule in missing
            }
        )
        now_counted = {keys[rule.pk]: fresh[f"rule_{rule.pk}"] for rule in missing}
        cache.set_many(now_counted, UNSEEN_CACHE_SECONDS)
        kept.update(now_counted)
    return {rule.pk: kept[keys[rule.pk]] for rule in counted}


@dataclass
class LabelProgress:
    """Labels since the last training against a sample-count rule's N."""

    rule: TriggerRule
    count: int

    @property
    def needed(self) -> int:
        return self.rule.min_samples or 0

    @property
    def remaining(self) -> int:
        return max(0, self.needed - self.count)

    @property
    def percent(self) -> int:
        return 100 if not self.needed else min(100, round(100 * self.count / self.needed))


def nearest_sample_count_rule(rules, counts: dict[int, int]) -> LabelProgress | None:
    """The enabled sample-count rule with the fewest labels still missing (ties: the fuller)."""
    candidates = [
        LabelProgress(rule, counts[rule.pk])
        for rule in rules
        if rule.enabled and rule.kind == RuleKind.SAMPLE_COUNT and rule.pk in counts
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda p: (p.remaining, -p.percent, p.rule.pk))


@dataclass
class LoopTriggers:
    rules: list[tuple[TriggerRule, str]] = field(default_factory=list)  # with its distance
    nearest: LabelProgress | None = None
    last_decision: Decision | None = None
    decisions: list[Decision] = field(default_factory=list)  # the loop page's last ten


def triggers_by_loop(
    loop_ids, now: datetime | None = None, *, last_decision: bool = True
) -> dict[int, LoopTriggers]:
    """Every loop's rules with their distance to firing, the nearest sample-count rule and the
    last decision, in at most three queries whatever the number of loops, rules and decisions."""
    now = now or timezone.now()
    rules = TriggerRule.objects.filter(loop_id__in=list(loop_ids)).select_related("loop")
    rules = list(
        rules.annotate(
            latest_trained=conditions.latest_trained_version_id(OuterRef("loop_id")),
            newest_decision=Subquery(
                Decision.objects.filter(rule_id=OuterRef("pk"))
                .order_by("-at", "-id")
                .values("pk")[:1]
            ),
        )
    )
    counts = unseen_label_counts(
        rules, latest={rule.loop_id: rule.latest_trained for rule in rules if rule.latest_trained}
    )
    overview = {loop_id: LoopTriggers() for loop_id in loop_ids}
    for rule in rules:
        distance = distance_to_firing(rule, now, unseen=counts.get(rule.pk))
        overview[rule.loop_id].rules.append((rule, distance))
    for loop_triggers in overview.values():
        loop_rules = [rule for rule, _ in loop_triggers.rules]
        loop_triggers.nearest = nearest_sample_count_rule(loop_rules, counts)
    if last_decision:
        _attach_last_decisions(overview, rules)
    return overview


def _attach_last_decisions(overview: dict[int, LoopTriggers], rules: list[TriggerRule]) -> None:
    """The newest of the loop's rules' newest decisions (each found on the (rule, at) index)."""
    rule_by_id = {rule.pk: rule for rule in rules}
    newest = [rule.newest_decision for rule in rules if rule.newest_decision]
    for decision in Decision.objects.filter(pk__in=newest) if newest else []:
        decision.rule = rule_by_id[decision.rule_id]
        shown = overview[decision.rule.loop_id]
        if shown.last_decision is None or (decision.at, decision.pk) > (
            shown.last_decision.at,
            shown.last_decision.pk,
        ):
            shown.last_decision = decision


def loop_page_triggers(loop_id: int) -> LoopTriggers:
    """One loop's overview plus its last decisions (with their rule; the job by id)."""
    shown = triggers_by_loop([loop_id], last_decision=False)[loop_id]
    shown.decisions = list(
        Decision.objects.filter(rule__loop_id=loop_id).select_related("rule")[:LOOP_PAGE_DECISIONS]
    )
    shown.last_decision = shown.decisions[0] if shown.decisions else None
    return shown
