"""How far a rule is from firing, in words: "37 of 50 labels", "next at 02:00"."""

from datetime import datetime

from django.utils import timezone

from apps.triggers import conditions, schedule
from apps.triggers.evaluator import next_slot
from apps.triggers.models import RuleKind, TriggerRule


def distance_to_firing(rule: TriggerRule, now: datetime | None = None) -> str:
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
        count = conditions.unseen_labeled_samples(rule.loop, rule.class_name).count()
        of_class = f" of class {rule.class_name}" if rule.class_name else ""
        return f"{count} of {rule.min_samples} labels{of_class}"
    return rule.last_message or "not evaluated yet"
